//! [`CableBuilder`]: the channels, the connection, the adapter and the settings of a cable,
//! each setter documenting its default and what it costs.

use super::AllowedOrigins;
use super::cable::{Cable, Shared, spawn_beat};
use super::config::Config;
use super::identifiers::Identifiers;
use super::resume::ParkedSessions;
use crate::channel::erased::{ErasedFactory, Factory};
use crate::channel::{Callbacks, Channel};
use crate::connection::{AcceptAll, Connection};
use crate::error::ConfigError;
use crate::error::PubSubError;
use crate::handle::CableHandle;
use crate::hub::Hub;
use crate::metrics::{Metrics, Sampling};
use crate::pubsub::{Inbound, MemoryPubSub, PubSub};
use crate::registry::Registry;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Builds a [`Cable`]. Defaults follow Rails: ping every 3 s, same-origin check, in-memory
/// pub/sub.
#[must_use]
pub struct CableBuilder<S = ()> {
    state: S,
    config: Config,
    connection: Arc<dyn Connection>,
    pubsub: Arc<dyn PubSub>,
    channels: Vec<(&'static str, Arc<dyn ErasedFactory<S>>)>,
    callbacks: Vec<Arc<dyn Callbacks<S>>>,
}

impl<S: Send + Sync + 'static> CableBuilder<S> {
    pub(super) fn new(state: S) -> CableBuilder<S> {
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
        self.channels
            .push((C::CLASS, Arc::new(Factory::<C>::new())));
        self
    }

    /// The pub/sub adapter (default: [`MemoryPubSub`]): an adapter value, or one already
    /// shared as `Arc<dyn PubSub>` (what `actioncable_adapters::Adapter::from_env` gives).
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

    /// Largest subscription identifier accepted, in bytes (default 4 KiB; Rails has no limit).
    /// A larger one is rejected like a malformed one. Every frame to a subscription repeats its
    /// identifier, so without this bound one client could subscribe `max_subscriptions` times
    /// with identifiers of `max_message_size` and turn every broadcast into hundreds of MiB.
    /// The stock consumer's identifiers are the JSON of a channel's params: tens to hundreds of
    /// bytes.
    pub fn max_identifier_size(mut self, bytes: usize) -> Self {
        self.config.max_identifier_size = bytes;
        self
    }

    /// Frames that may wait for one slow client (default 1024). When a client falls this far
    /// behind it is disconnected with reason `too_slow` and `reconnect: true`.
    pub fn outbound_capacity(mut self, frames: usize) -> Self {
        self.config.outbound_capacity = frames;
        self
    }

    /// Bytes of frames that may wait for one slow client (default 8 MiB), the other bound of
    /// the same queue: a client that many bytes behind is disconnected with `too_slow` too, so
    /// large frames cannot make one connection hold `outbound_capacity` × their size. A single
    /// frame larger than this is still sent to a client that has nothing else waiting.
    pub fn outbound_bytes(mut self, bytes: usize) -> Self {
        self.config.outbound_bytes = bytes;
        self
    }

    /// WebSocket read buffer per connection (default 512 bytes). It is allocated and
    /// zero-filled for every connection and kept while it idles, so it is a large part of what
    /// an idle connection costs (`docs/benchmarks.md`), and tungstenite zeroes it again before
    /// every read. Commands are small (a subscribe or an action is typically 100–300 bytes); a
    /// larger message is still read whole, in reads of this size, so a cable whose clients
    /// send large messages trades density for fewer reads with a larger buffer (4–8 KiB).
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

    /// Most connections one identity may have open on this node (default 100), counted by
    /// Rails' connection identifier; anonymous connections are not counted (limit them by
    /// address in front of the server). One more is sent `disconnect` with reason
    /// `too_many_connections` and `reconnect: false` right after its upgrade, before any
    /// `welcome`: one logged-in account cannot hold a node's connections by itself.
    pub fn max_connections_per_identity(mut self, connections: usize) -> Self {
        self.config.max_connections_per_identity = connections;
        self
    }

    /// How long a session of the extended protocol (`actioncable-v1-ext-json`) is kept after
    /// its socket drops without a server `disconnect` (default 2 minutes, as AnyCable's
    /// `sessions_ttl`; zero turns resuming off). A client that reconnects within it with the
    /// `sid` of its `welcome` (`?sid=` or the `X-ANYCABLE-RESTORE-SID` header) gets its
    /// identity and subscriptions back without `Connection::connect` or `Channel::subscribed`
    /// running again; `unsubscribed` and `disconnect` run once the time is up unclaimed. See
    /// `docs/reliability.md`, "Session resume".
    pub fn session_ttl(mut self, ttl: Duration) -> Self {
        self.config.session_ttl = ttl;
        self
    }

    /// Most sessions this node keeps waiting for a reconnect at once (default 10,000). A
    /// session that drops when this many wait is closed at once, callbacks and all, as without
    /// resuming. A waiting session holds what its connection held, minus its socket and its
    /// queued frames: its identity, subscriptions and timers.
    pub fn max_parked_sessions(mut self, sessions: usize) -> Self {
        self.config.max_parked_sessions = sessions;
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

    /// Keeps the last messages of every stream (default: off) so that clients of the extended
    /// protocol (`actioncable-v1-ext-json`, `@anycable/core`) get each message's position and,
    /// after a reconnect, what they missed (see `docs/reliability.md`). The adapter stores the
    /// history: [`MemoryPubSub`] keeps it in this process; an adapter that keeps none makes
    /// [`build`](Self::build) fail.
    ///
    /// Off by default because only extended-protocol clients can use it, while every broadcast
    /// would pay for it (a copy kept per message, up to [`history_limit`](Self::history_limit)
    /// per stream for [`history_ttl`](Self::history_ttl)); stock `@rails/actioncable`
    /// consumers get the same bytes either way. Per stream, a subscription can do without
    /// positions ([`StreamOptions::history`](crate::StreamOptions::history)); per broadcast,
    /// [`CableHandle::broadcast_transient`] skips the history.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use actioncable::Cable;
    /// use std::time::Duration;
    /// let cable = Cable::builder()
    ///     .history(true)
    ///     .history_limit(500)
    ///     .history_ttl(Duration::from_secs(120))
    ///     .build()
    ///     .unwrap();
    /// # }
    /// ```
    pub fn history(mut self, on: bool) -> Self {
        self.config.history = on;
        self
    }

    /// Counts and times what the node does, for Prometheus (off by default): connections,
    /// subscriptions, broadcasts, deliveries, slow clients dropped, disconnects by reason, and
    /// histograms of delivery latency, fan-out and command time. Serve them with
    /// [`Cable::metrics_router`]; `docs/operations.md` lists every metric.
    ///
    /// Off, the hot path pays one branch per broadcast; on, an atomic add or two per broadcast
    /// and per command, a clock read per broadcast, and the sampled latency
    /// ([`metrics_sampling`](Self::metrics_sampling)).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use actioncable::Cable;
    /// let cable = Cable::builder().metrics(true).build().unwrap();
    /// let app: axum::Router = axum::Router::new()
    ///     .merge(cable.router("/cable"))
    ///     .merge(cable.metrics_router("/metrics"));
    /// # }
    /// ```
    pub fn metrics(mut self, on: bool) -> Self {
        self.config.metrics = on;
        self
    }

    /// How often delivery latency is measured when [`metrics`](Self::metrics) is on: one
    /// broadcast in `broadcasts` made on this node (default 100) is stamped with the time it
    /// was made, and on every node one delivery in `deliveries` of it (default 100; the first
    /// subscriber, then every `deliveries`-th) is timed until its frame is written to the socket
    /// (`actioncable_broadcast_latency_seconds`). `1, 1` measures everything (tests).
    pub fn metrics_sampling(mut self, broadcasts: u32, deliveries: u32) -> Self {
        self.config.sampling = Sampling {
            broadcasts,
            deliveries,
        };
        self
    }

    /// Messages kept per stream when [`history`](Self::history) is on (default 100, as
    /// AnyCable); older ones are evicted, and a client that missed them is told so
    /// (`reject_history`).
    pub fn history_limit(mut self, messages: usize) -> Self {
        self.config.history_settings.limit = messages;
        self
    }

    /// How long a message stays in the history (default 5 minutes, as AnyCable).
    pub fn history_ttl(mut self, ttl: Duration) -> Self {
        self.config.history_settings.ttl = ttl;
        self
    }

    /// How long a member stays present after its last connection went (default 15 s, as
    /// AnyCable's `presence_ttl`), so that a page reload or a quick reconnect does not show
    /// `leave` then `join` to everyone. An explicit `leave` or an `unsubscribe` is immediate.
    /// Zero leaves at once. See [`StreamOptions::presence`](crate::StreamOptions::presence).
    pub fn presence_grace(mut self, grace: Duration) -> Self {
        self.config.presence_grace = grace;
        self
    }

    /// With an adapter shared by several nodes (Redis): how long a presence record outlives
    /// the last sign of life of its node (default 15 s). Live nodes refresh their records; a
    /// node that dies without a goodbye (SIGKILL, a lost machine) takes its members with it
    /// within this time. The in-memory adapter has nothing to expire and ignores it.
    pub fn presence_ttl(mut self, ttl: Duration) -> Self {
        self.config.presence_settings.ttl = ttl;
        self
    }

    /// Largest `whisper` a client may send, in bytes of JSON (default 4 KiB: typing indicators
    /// and cursor positions are tens of bytes). A larger one is dropped and logged, once per
    /// subscription.
    pub fn max_whisper_size(mut self, bytes: usize) -> Self {
        self.config.max_whisper_size = bytes;
        self
    }

    /// Largest presence a client may join with, its `id` and `info` together, in bytes of
    /// JSON (default 4 KiB). Every presence answer carries every member's, so this bounds
    /// what one member costs the others. A larger one is refused and logged.
    pub fn max_presence_size(mut self, bytes: usize) -> Self {
        self.config.max_presence_size = bytes;
        self
    }

    /// Builds the cable, starts the pub/sub adapter and the ping timer.
    ///
    /// # Errors
    /// A channel name registered twice, an unusable setting, an adapter that fails to start,
    /// or history asked of an adapter that keeps none.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn build(self) -> Result<Cable<S>, ConfigError> {
        let mut channels = HashMap::new();
        for (class, factory) in self.channels {
            if channels.insert(class, factory).is_some() {
                return Err(ConfigError::DuplicateChannel(class));
            }
        }
        self.config.validate()?;
        let history = if self.config.history {
            Some(self.pubsub.history(&self.config.history_settings)?)
        } else {
            None
        };
        // Presence is there whenever the adapter keeps it; channels choose the streams.
        let presence = match self.pubsub.presence(&self.config.presence_settings) {
            Ok(presence) => Some(presence),
            Err(PubSubError::Unsupported(why)) => {
                tracing::debug!(why, "no presence on this cable");
                None
            }
            Err(e) => return Err(e.into()),
        };
        let metrics = self
            .config
            .metrics
            .then(|| Arc::new(Metrics::new(self.config.sampling)));
        let hub = Arc::new(Hub::new(self.pubsub.clone(), history, presence, metrics));
        self.pubsub.start(Inbound::new(&hub))?;
        let registry = Arc::new(Registry::new(
            self.config.max_connections,
            self.config.max_connections_per_identity,
        ));
        let shared = Shared {
            handle: CableHandle::new(hub, registry),
            config: self.config,
            state: Arc::new(self.state),
            connection: self.connection,
            channels,
            callbacks: self.callbacks,
            parked: ParkedSessions::new(),
            identifiers: Identifiers::default(),
        };
        spawn_beat(&shared);
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
