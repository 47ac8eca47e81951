//! The server: [`Cable`] (built once with [`CableBuilder`]), its axum route, and the cloneable
//! [`CableHandle`] that broadcasts from anywhere.
//!
//! ```no_run
//! use actioncable::{AcceptAll, Cable};
//! use axum::Router;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let cable = Cable::builder().connection(AcceptAll).build()?;
//! let handle = cable.handle();
//! let app: Router = Router::new().merge(cable.router("/cable"));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! let server = axum::serve(listener, app).with_graceful_shutdown(async {
//!     let _ = tokio::signal::ctrl_c().await;
//! });
//! tokio::spawn(async move { handle.broadcast("news", &"hello").await });
//! server.await?;
//! # Ok(()) }
//! ```

pub(crate) mod commands;
mod handler;
mod origin;
mod session;

pub use origin::AllowedOrigins;

use crate::channel::registry::{ErasedFactory, Factory};
use crate::channel::{Callbacks, Channel};
use crate::connection::{
    AcceptAll, Connection, ConnectionId, ConnectionInfo, ConnectionRef, Identity,
};
use crate::error::{BroadcastError, ConfigError};
use crate::hub::Hub;
use crate::protocol::{DisconnectReason, ServerMessage};
use crate::pubsub::{Inbound, MemoryPubSub, PubSub};
use crate::stream::{self, ToStreamParam};
use axum::Router;
use axum::extract::ws::Utf8Bytes;
use axum::routing::any;
use serde::Serialize;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Server settings. Every field has a default; see the builder methods.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) ping_interval: Duration,
    pub(crate) max_message_size: usize,
    pub(crate) max_subscriptions: usize,
    pub(crate) outbound_capacity: usize,
    pub(crate) read_buffer_size: usize,
    pub(crate) write_buffer_size: usize,
    pub(crate) close_timeout: Duration,
    pub(crate) max_connections: usize,
    pub(crate) client_timeout: Duration,
    pub(crate) max_commands_per_second: u32,
    pub(crate) origins: AllowedOrigins,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            ping_interval: Duration::from_secs(3),
            max_message_size: 1024 * 1024,
            max_subscriptions: 256,
            outbound_capacity: 1024,
            read_buffer_size: 1024,
            write_buffer_size: 8192,
            close_timeout: Duration::from_secs(2),
            max_connections: 50_000,
            client_timeout: Duration::from_secs(20),
            max_commands_per_second: 100,
            origins: AllowedOrigins::same_origin(),
        }
    }
}

/// What every connection shares, whatever the app state type.
pub(crate) struct Core {
    pub(crate) hub: Arc<Hub>,
    pub(crate) config: Config,
    sessions: Mutex<HashMap<u64, SessionEntry>>,
    next_id: AtomicU64,
    /// Connections admitted and not yet finished, upgrades in flight included.
    admitted: AtomicUsize,
    pub(crate) shutdown: CancellationToken,
    pub(crate) tracker: TaskTracker,
    connection: Arc<dyn Connection>,
}

/// Work for a session that does not come from its client: it runs in order with the client's
/// commands, on the session's task, because it needs the subscription's channel value.
pub(crate) enum Control {
    /// A periodic timer of subscription `subscription` (`identifier`) is due.
    Tick {
        identifier: Arc<str>,
        subscription: u64,
        timer: usize,
    },
    /// End a subscription from the server side (`None`: whichever has this identifier).
    Unsubscribe {
        identifier: Arc<str>,
        subscription: Option<u64>,
    },
}

type SessionEntry = ConnectionRef;

impl Core {
    pub(crate) fn register(&self, connection: &ConnectionRef) {
        self.lock_sessions()
            .insert(connection.id().0, connection.clone());
    }

    pub(crate) fn unregister(&self, id: u64) {
        self.lock_sessions().remove(&id);
    }

    /// Admits one more connection unless `max_connections` are already open or opening.
    pub(crate) fn admit(self: &Arc<Self>) -> Option<Admission> {
        let max = self.config.max_connections;
        self.admitted
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Admission(self.clone()))
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn lock_sessions(&self) -> std::sync::MutexGuard<'_, HashMap<u64, SessionEntry>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn beat(&self) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let frame = Utf8Bytes::from(ServerMessage::ping(now).encode());
        let sessions = self.lock_sessions();
        for entry in sessions.values() {
            entry.outbox.push(frame.clone());
        }
        for entry in sessions.values() {
            let hook = std::panic::AssertUnwindSafe(|| self.connection.beat(entry));
            if std::panic::catch_unwind(hook).is_err() {
                tracing::error!(conn = %entry.id(), "the connection's beat callback panicked");
            }
        }
    }
}

/// One admitted connection; dropping it (when the session ends, or the upgrade fails) frees
/// its place.
pub(crate) struct Admission(Arc<Core>);

impl Drop for Admission {
    fn drop(&mut self) {
        self.0.admitted.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Everything a session needs: the core plus the typed parts (state, channels, connection).
pub(crate) struct Shared<S> {
    pub(crate) core: Arc<Core>,
    pub(crate) state: S,
    pub(crate) connection: Arc<dyn Connection>,
    pub(crate) channels: HashMap<&'static str, Registered<S>>,
    pub(crate) callbacks: Vec<Arc<dyn Callbacks<S>>>,
}

pub(crate) struct Registered<S> {
    pub(crate) name: &'static str,
    pub(crate) factory: Arc<dyn ErasedFactory<S>>,
}

impl<S> Clone for Registered<S> {
    fn clone(&self) -> Self {
        Registered {
            name: self.name,
            factory: self.factory.clone(),
        }
    }
}

/// A configured ActionCable server. Mount it with [`router`](Cable::router); broadcast through
/// [`handle`](Cable::handle).
pub struct Cable<S = ()> {
    pub(crate) shared: Arc<Shared<S>>,
}

impl Cable<()> {
    /// A builder for a cable without app state.
    pub fn builder() -> CableBuilder<()> {
        CableBuilder::new(())
    }
}

impl<S: Send + Sync + 'static> Cable<S> {
    /// A builder for a cable whose channels reach `state` through `ChannelContext::state`
    /// (implement `Channel<S>` for them).
    pub fn builder_with_state(state: S) -> CableBuilder<S> {
        CableBuilder::new(state)
    }

    /// An axum router serving the cable at `path` (Rails mounts it at `/cable`). Merge it into
    /// the app's router; it works with any router state.
    pub fn router<RS: Clone + Send + Sync + 'static>(&self, path: &str) -> Router<RS> {
        Router::new().route(
            path,
            any(handler::cable::<S>).with_state(self.shared.clone()),
        )
    }

    /// A cloneable handle to broadcast and to shut down.
    pub fn handle(&self) -> CableHandle {
        CableHandle::new(self.shared.core.clone())
    }
}

impl<S> fmt::Debug for Cable<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<_> = self.shared.channels.keys().collect();
        names.sort();
        f.debug_struct("Cable")
            .field("channels", &names)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Cable`]. Defaults follow Rails: ping every 3 s, same-origin check, in-memory
/// pub/sub.
#[must_use]
pub struct CableBuilder<S = ()> {
    state: S,
    config: Config,
    connection: Arc<dyn Connection>,
    pubsub: Arc<dyn PubSub>,
    channels: Vec<Registered<S>>,
    callbacks: Vec<Arc<dyn Callbacks<S>>>,
}

impl<S: Send + Sync + 'static> CableBuilder<S> {
    fn new(state: S) -> CableBuilder<S> {
        CableBuilder {
            state,
            config: Config::default(),
            connection: Arc::new(AcceptAll),
            pubsub: Arc::new(MemoryPubSub::new()),
            channels: Vec::new(),
            callbacks: Vec::new(),
        }
    }

    /// Adds callbacks that run for every channel: before/after subscribe and unsubscribe,
    /// around every command (Rails' channel callbacks and 7.1's command callbacks). Several
    /// may be added; they run in the order they were added, the first one outermost.
    pub fn callbacks(mut self, callbacks: impl Callbacks<S>) -> Self {
        self.callbacks.push(Arc::new(callbacks));
        self
    }

    /// How connections authenticate (default: [`AcceptAll`]).
    pub fn connection(mut self, connection: impl Connection) -> Self {
        self.connection = Arc::new(connection);
        self
    }

    /// Registers channel `C` under `C::CLASS`. Only registered channels can be subscribed to.
    pub fn channel<C: Channel<S>>(mut self) -> Self {
        self.channels.push(Registered {
            name: C::CLASS,
            factory: Arc::new(Factory::<C>::new()),
        });
        self
    }

    /// The pub/sub adapter (default: [`MemoryPubSub`]): an adapter value, or one already
    /// shared as `Arc<dyn PubSub>` (what `actioncable_redis::adapter_from_env` returns).
    pub fn pubsub(mut self, pubsub: impl PubSub) -> Self {
        self.pubsub = Arc::new(pubsub);
        self
    }

    /// Interval between `ping` messages (Rails' `BEAT_INTERVAL`: 3 s). The consumer considers a
    /// connection stale after 6 s without a message.
    pub fn ping_interval(mut self, interval: Duration) -> Self {
        self.config.ping_interval = interval;
        self
    }

    /// Largest accepted message (and frame), in bytes (default 1 MiB, what Rails accepts).
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.config.max_message_size = bytes;
        self
    }

    /// Most subscriptions one connection may hold (default 256); further `subscribe`s are
    /// rejected.
    pub fn max_subscriptions(mut self, count: usize) -> Self {
        self.config.max_subscriptions = count;
        self
    }

    /// Frames that may wait for one slow client (default 1024). When a client falls this far
    /// behind it is disconnected with reason `too_slow` and `reconnect: true`.
    pub fn outbound_capacity(mut self, frames: usize) -> Self {
        self.config.outbound_capacity = frames;
        self
    }

    /// WebSocket read buffer per connection (default 1 KiB). It is allocated and zero-filled
    /// for every connection, so it is a large part of what an idle connection costs (4 KiB
    /// made an idle connection about 3 KiB dearer in `docs/benchmarks.md`), and tungstenite
    /// zeroes it again before every read. Commands are small; a larger message is still read
    /// whole, in reads of this size.
    pub fn read_buffer_size(mut self, bytes: usize) -> Self {
        self.config.read_buffer_size = bytes;
        self
    }

    /// Bytes of frames gathered before a write to the socket (default 8 KiB). A session
    /// writes what is queued for its client (up to 64 frames) and then flushes, so with a
    /// buffer the batch leaves in one system call instead of one per frame: at 10,000
    /// subscribers this cut the server's CPU per delivery by about a third
    /// (`docs/benchmarks.md`). 0 writes every frame at once.
    pub fn write_buffer_size(mut self, bytes: usize) -> Self {
        self.config.write_buffer_size = bytes;
        self
    }

    /// Most connections this process holds at once, upgrades in progress included (default
    /// 50,000). Beyond it new upgrade requests are refused with `503 Service Unavailable` and
    /// `Retry-After`, before any handshake; the stock consumer retries with its backoff.
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.config.max_connections = connections;
        self
    }

    /// How long a connection may stay silent before it is considered dead (default 20 s).
    /// After half of it without a frame from the client the server sends a WebSocket ping
    /// (browsers and WebSocket libraries answer it by themselves); a peer that answers nothing
    /// for the whole period — a half-open TCP connection, a frozen client — is dropped and its
    /// subscriptions are cleaned up. The stock consumer's own check is the other way round: it
    /// reconnects after 6 s without the server's `ping`.
    pub fn client_timeout(mut self, timeout: Duration) -> Self {
        self.config.client_timeout = timeout;
        self
    }

    /// Commands (subscribe, unsubscribe, message) one connection may send per second, with a
    /// burst of the same size (default 100). Beyond it the server stops reading that socket
    /// until the budget refills: the commands are delayed, never dropped, and TCP pushes back
    /// on the client. Other connections are not affected.
    pub fn max_commands_per_second(mut self, commands: u32) -> Self {
        self.config.max_commands_per_second = commands;
        self
    }

    /// How long to wait for a client's close reply and for final writes (default 2 s).
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.config.close_timeout = timeout;
        self
    }

    /// Which `Origin`s may connect (default: only the same origin as the `Host` header).
    pub fn allowed_origins(mut self, origins: AllowedOrigins) -> Self {
        self.config.origins = origins;
        self
    }

    /// Builds the cable, starts the pub/sub adapter and the ping timer.
    ///
    /// # Errors
    /// A channel name registered twice, an unusable setting, or an adapter that fails to start.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn build(self) -> Result<Cable<S>, ConfigError> {
        let mut channels = HashMap::new();
        for reg in self.channels {
            if channels.insert(reg.name, reg.clone()).is_some() {
                return Err(ConfigError::DuplicateChannel(reg.name));
            }
        }
        let c = &self.config;
        if c.ping_interval.is_zero() {
            return Err(ConfigError::Invalid {
                name: "ping_interval",
                reason: "must be positive".into(),
            });
        }
        if c.max_message_size < 1024 {
            return Err(ConfigError::Invalid {
                name: "max_message_size",
                reason: "must be at least 1 KiB".into(),
            });
        }
        if c.client_timeout < Duration::from_millis(100) {
            return Err(ConfigError::Invalid {
                name: "client_timeout",
                reason: "must be at least 100 ms".into(),
            });
        }
        if c.outbound_capacity == 0 || c.max_subscriptions == 0 || c.max_commands_per_second == 0 {
            return Err(ConfigError::Invalid {
                name: "outbound_capacity/max_subscriptions/max_commands_per_second",
                reason: "must be positive".into(),
            });
        }
        let hub = Arc::new(Hub::new(self.pubsub.clone()));
        self.pubsub.start(Inbound::new(&hub))?;
        let core = Arc::new(Core {
            hub,
            config: self.config,
            sessions: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            admitted: AtomicUsize::new(0),
            shutdown: CancellationToken::new(),
            tracker: TaskTracker::new(),
            connection: self.connection.clone(),
        });
        spawn_beat(&core);
        let shared = Shared {
            core,
            state: self.state,
            connection: self.connection,
            channels,
            callbacks: self.callbacks,
        };
        Ok(Cable {
            shared: Arc::new(shared),
        })
    }
}

impl<S> fmt::Debug for CableBuilder<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CableBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// One timer pings every connection at the same moment, like Rails' beat, so an idle
/// connection costs no timer of its own.
fn spawn_beat(core: &Arc<Core>) {
    let weak = Arc::downgrade(core);
    let interval = core.config.ping_interval;
    let stop = core.shutdown.clone();
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let Some(core) = weak.upgrade() else { return };
            core.beat();
        }
    });
}

/// A cloneable handle to the server: broadcast from an axum handler or a background task
/// (Rails' `ActionCable.server.broadcast`), count connections, shut down.
#[derive(Clone)]
pub struct CableHandle {
    core: Arc<Core>,
}

impl CableHandle {
    pub(crate) fn new(core: Arc<Core>) -> CableHandle {
        CableHandle { core }
    }

    /// Broadcasts `message`, serialized to JSON, to every subscriber of `stream` on every node.
    ///
    /// # Errors
    /// When the message does not serialize or the pub/sub adapter does not accept it; then
    /// nobody received it.
    pub async fn broadcast<T: Serialize + ?Sized>(
        &self,
        stream: &str,
        message: &T,
    ) -> Result<(), BroadcastError> {
        let json = serde_json::to_string(message)?;
        self.broadcast_json(stream, &json).await
    }

    /// Broadcasts an already-encoded JSON document.
    ///
    /// # Errors
    /// When `json` is not JSON or the adapter does not accept it.
    pub async fn broadcast_json(&self, stream: &str, json: &str) -> Result<(), BroadcastError> {
        crate::protocol::raw_json(json)?;
        match self.core.hub.pubsub().publish(stream, json).await {
            Ok(()) => Ok(()),
            Err(e) => {
                tracing::error!(stream, error = %e, "broadcast failed");
                Err(e.into())
            }
        }
    }

    /// Broadcasts to the stream `stream_for(model)` gives in channel class `channel_class`
    /// (Rails' `NotificationChannel.broadcast_to(user, message)`).
    ///
    /// # Errors
    /// As [`broadcast`](Self::broadcast).
    pub async fn broadcast_to<M: ToStreamParam + ?Sized, T: Serialize + ?Sized>(
        &self,
        channel_class: &str,
        model: &M,
        message: &T,
    ) -> Result<(), BroadcastError> {
        self.broadcast(&stream::stream_for(channel_class, model), message)
            .await
    }

    /// Number of open connections on this node.
    pub fn connection_count(&self) -> usize {
        self.core.lock_sessions().len()
    }

    /// A snapshot of every open connection on this node: id, identity, start time,
    /// subscriptions, queued frames.
    pub fn connections(&self) -> Vec<ConnectionInfo> {
        let mut all: Vec<ConnectionInfo> = self
            .core
            .lock_sessions()
            .values()
            .map(ConnectionRef::info)
            .collect();
        all.sort_by_key(|c| c.id);
        all
    }

    /// One open connection on this node, to transmit to it, end one of its subscriptions or
    /// disconnect it.
    pub fn connection(&self, id: ConnectionId) -> Option<ConnectionRef> {
        self.core.lock_sessions().get(&id.0).cloned()
    }

    /// Broadcasts to every subscriber of `stream` except connection `except` (usually the
    /// sender, so it does not get its own message back). The message on the pub/sub adapter
    /// is the same as for [`broadcast`](Self::broadcast) — Rails nodes sharing the Redis see
    /// an ordinary broadcast — and the node holding `except` skips it when it comes back.
    ///
    /// # Errors
    /// As [`broadcast`](Self::broadcast).
    pub async fn broadcast_except<T: Serialize + ?Sized>(
        &self,
        stream: &str,
        message: &T,
        except: ConnectionId,
    ) -> Result<(), BroadcastError> {
        let json = serde_json::to_string(message)?;
        self.broadcast_json_except(stream, &json, except).await
    }

    pub(crate) async fn broadcast_json_except(
        &self,
        stream: &str,
        json: &str,
        except: ConnectionId,
    ) -> Result<(), BroadcastError> {
        crate::protocol::raw_json(json)?;
        let hub = &self.core.hub;
        let excluded = hub.exclude(stream, json, except.0);
        let result = self.broadcast_json(stream, json).await;
        if excluded && result.is_err() {
            hub.cancel_exclusion(stream, json, except.0);
        }
        result
    }

    /// Number of streams with subscribers on this node, each identified connection's internal
    /// `action_cable/<identifier>` stream included.
    pub fn stream_count(&self) -> usize {
        self.core.hub.stream_count()
    }

    /// Closes every connection of `identity` on every node, like Rails'
    /// `ActionCable.server.remote_connections.where(current_user: user).disconnect(reconnect:)`:
    /// publishes `{"type":"disconnect","reconnect":…}` on the identity's internal stream
    /// `action_cable/<connection identifier>` (identifier values sorted, joined with `:`). Each
    /// such connection is sent `disconnect` with reason `remote` and closed. A Rails process on
    /// the same Redis can disconnect our clients the same way, and we its.
    ///
    /// # Errors
    /// When the pub/sub adapter does not take the message.
    pub async fn remote_disconnect(
        &self,
        identity: &Identity,
        reconnect: bool,
    ) -> Result<(), BroadcastError> {
        let stream = crate::protocol::internal_stream(&identity.connection_identifier());
        let message = crate::protocol::remote_disconnect_message(reconnect);
        self.broadcast_json(&stream, &message).await
    }

    /// Closes every connection on this node whose identity has identifier `name` equal to
    /// `value`, sending `disconnect` with reason `remote`. Returns how many were closed.
    pub fn disconnect_local(&self, name: &str, value: &str, reconnect: bool) -> usize {
        let sessions = self.core.lock_sessions();
        let mut n = 0;
        for entry in sessions
            .values()
            .filter(|e| e.identity().get(name) == Some(value))
        {
            entry.disconnect(reconnect);
            n += 1;
        }
        n
    }

    /// Stops accepting connections, sends every client `disconnect` with reason
    /// `server_restart` and `reconnect: true`, runs the `unsubscribed` and `disconnect`
    /// callbacks, and waits up to `deadline` for all of it. Returns whether everything
    /// finished in time.
    pub async fn shutdown(&self, deadline: Duration) -> bool {
        self.core.shutdown.cancel();
        for entry in self.core.lock_sessions().values() {
            entry.outbox.close(DisconnectReason::ServerRestart, true);
        }
        self.core.tracker.close();
        let done = tokio::time::timeout(deadline, self.core.tracker.wait())
            .await
            .is_ok();
        if let Err(e) = self.core.hub.pubsub().shutdown().await {
            tracing::warn!(error = %e, "pub/sub shutdown failed");
        }
        done
    }
}

impl fmt::Debug for CableHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CableHandle")
            .field("connections", &self.connection_count())
            .finish()
    }
}
