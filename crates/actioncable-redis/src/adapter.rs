//! [`RedisPubSub`]: the adapter, its two connection supervisors and the desired set.

use crate::config::{RedisConfig, RedisConfigError};
use crate::history::{self, Read};
use crate::link::{Connector, LinkState, Role, Up, describe, is_connection_error};
use crate::presence::{self, Timing};
use crate::wire::{self, INTERNAL_CHANNEL, Naming, POSITION_CHANNEL, PRESENCE_CHANNEL, Pairing};
use actioncable::PubSubError;
use actioncable::pubsub::{AdapterEvent, Backoff, TRACE_CHANNEL, TraceNote};
use actioncable::pubsub::{
    History, HistorySettings, Inbound, Kept, Position, Presence, PresenceMember, PresenceSettings,
    PubSub,
};
use async_trait::async_trait;
use redis::aio::MultiplexedConnection;
use redis::{PushInfo, PushKind, Value};
use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, SystemTime};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout, timeout_at};
use tokio_util::sync::CancellationToken;

/// How many channels one `SUBSCRIBE`/`UNSUBSCRIBE` names when resubscribing.
const CHUNK: usize = 512;

/// The Redis pub/sub adapter. See the [crate docs](crate) for how it works.
///
/// Cloning gives another handle to the same adapter (keep one to ask
/// [`is_connected`](Self::is_connected) after handing a clone to the cable).
///
/// ```no_run
/// use actioncable::Cable;
/// use actioncable_redis::{RedisConfig, RedisPubSub};
///
/// async fn doc_main() -> Result<(), Box<dyn std::error::Error>> {
///     let redis = RedisPubSub::new(
///         RedisConfig::from_url("redis://127.0.0.1:6379/1")?
///             .channel_prefix(Some("myapp_production".into())),
///     );
///     let cable = Cable::builder().pubsub(redis.clone()).build()?;
///     cable.handle().broadcast("chat:lobby", &"hello").await?;
///     assert!(redis.is_connected());
///     Ok(())
/// }
/// ```
#[derive(Clone)]
pub struct RedisPubSub {
    inner: Arc<Inner>,
}

struct Inner {
    config: RedisConfig,
    naming: Naming,
    connector: Connector,
    /// The Redis channels that should be subscribed, and the subscriber connection.
    desired: Mutex<Desired>,
    /// The subscriber connection. Written only while `desired` is locked, so that a stream
    /// added to `desired` is either seen by a resubscription or finds the connection up.
    subscriber: watch::Sender<LinkState>,
    publisher: watch::Sender<LinkState>,
    generation: AtomicU64,
    /// Set when the cable keeps history: streams then also subscribe their position notes.
    history: OnceLock<HistorySettings>,
    /// Set when the cable keeps presence: the subscriber listens to presence events and a
    /// task refreshes this node's records and sweeps expired ones.
    presence: OnceLock<Arc<PresenceState>>,
    started: AtomicBool,
    stop: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

#[derive(Default)]
struct Desired {
    channels: HashSet<String>,
    /// Bumped on every change, so a resubscription can tell it is out of date.
    version: u64,
}

impl RedisPubSub {
    /// An adapter for `config`. It connects when the cable starts it.
    pub fn new(config: RedisConfig) -> RedisPubSub {
        let now = Instant::now();
        let inner = Inner {
            naming: Naming::new(config.prefix()),
            connector: Connector::new(&config),
            config,
            desired: Mutex::new(Desired::default()),
            subscriber: watch::Sender::new(LinkState::Down { since: now }),
            publisher: watch::Sender::new(LinkState::Down { since: now }),
            generation: AtomicU64::new(0),
            history: OnceLock::new(),
            presence: OnceLock::new(),
            started: AtomicBool::new(false),
            stop: CancellationToken::new(),
            tasks: Mutex::new(Vec::new()),
        };
        RedisPubSub {
            inner: Arc::new(inner),
        }
    }

    /// An adapter configured by [`RedisConfig::from_env`].
    ///
    /// # Errors
    /// As [`RedisConfig::from_env`].
    pub fn from_env() -> Result<RedisPubSub, RedisConfigError> {
        Ok(RedisPubSub::new(RedisConfig::from_env()?))
    }

    /// The configuration.
    pub fn config(&self) -> &RedisConfig {
        &self.inner.config
    }

    /// Whether both connections (subscriber and publisher) are up right now. Useful for a
    /// readiness probe; broadcasts fail while this is `false` for longer than the publish
    /// timeout.
    pub fn is_connected(&self) -> bool {
        matches!(*self.inner.subscriber.borrow(), LinkState::Up(_))
            && matches!(*self.inner.publisher.borrow(), LinkState::Up(_))
    }
}

impl fmt::Debug for RedisPubSub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisPubSub")
            .field("config", &self.inner.config)
            .field("connected", &self.is_connected())
            .field("streams", &self.inner.lock_desired().channels.len())
            .finish()
    }
}

impl Inner {
    fn lock_desired(&self) -> MutexGuard<'_, Desired> {
        // Every update is a single insert/remove plus a counter, so a poisoned lock still
        // holds a consistent set.
        self.desired.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Changes the desired set and returns the subscriber connection as it is at that moment.
    fn update_desired(&self, change: impl FnOnce(&mut HashSet<String>)) -> LinkState {
        let mut desired = self.lock_desired();
        change(&mut desired.channels);
        desired.version += 1;
        self.subscriber.borrow().clone()
    }

    fn next_generation(&self) -> u64 {
        self.generation.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn not_running(&self) -> Option<PubSubError> {
        if self.stop.is_cancelled() {
            Some(PubSubError::Closed)
        } else if !self.started.load(Ordering::Acquire) {
            Some(PubSubError::Unavailable(
                "the Redis adapter was not started".into(),
            ))
        } else {
            None
        }
    }

    /// The Redis channels of `stream`: its channel, then (history on) its position notes'.
    fn channels(&self, stream: &str) -> Vec<String> {
        let mut channels = vec![self.naming.channel(stream).into_owned()];
        if self.history.get().is_some() {
            channels.push(wire::position_channel(&self.naming, stream));
        }
        channels
    }

    /// The publisher connection, waiting for it a little right after it was lost.
    async fn publisher_up(&self) -> Result<Up, PubSubError> {
        if let Some(e) = self.not_running() {
            return Err(e);
        }
        let limit = self.config.publish_timeout;
        let mut changes = self.publisher.subscribe();
        loop {
            let state = changes.borrow_and_update().clone();
            match state {
                LinkState::Up(up) => return Ok(up),
                LinkState::Closed => return Err(PubSubError::Closed),
                LinkState::Down { since } => {
                    // Right after a connection is lost (or at startup) wait for it a little;
                    // during a longer outage fail at once.
                    let deadline = since + limit;
                    let unavailable = || {
                        PubSubError::Unavailable(format!(
                            "no Redis connection (down for {:.1?})",
                            since.elapsed()
                        ))
                    };
                    if Instant::now() >= deadline {
                        return Err(unavailable());
                    }
                    if timeout_at(deadline, changes.changed()).await.is_err() {
                        return Err(unavailable());
                    }
                }
            }
        }
    }

    /// Waits (up to the publish timeout) for the answer to a request on the publisher
    /// connection `up`; a broken or silent connection is replaced.
    async fn answer<T>(
        &self,
        up: &Up,
        what: &str,
        request: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, PubSubError> {
        let limit = self.config.publish_timeout;
        match timeout(limit, request).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => {
                if is_connection_error(&e) {
                    up.alive.cancel();
                    Err(PubSubError::Unavailable(describe(&e)))
                } else {
                    Err(PubSubError::Backend(
                        format!("Redis refused {what}: {e}").into(),
                    ))
                }
            }
            Err(_) => {
                up.alive.cancel();
                Err(PubSubError::Unavailable(format!(
                    "Redis did not answer {what} within {limit:?}"
                )))
            }
        }
    }

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let handle = tokio::spawn(task);
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(handle);
    }
}

#[async_trait]
impl PubSub for RedisPubSub {
    fn is_connected(&self) -> bool {
        RedisPubSub::is_connected(self)
    }

    fn start(&self, inbound: Inbound) -> Result<(), PubSubError> {
        let inner = &self.inner;
        let name = inner.connector.client_name();
        if name.is_empty() || name.chars().any(|c| c == ' ' || c.is_control()) {
            return Err(PubSubError::Backend(
                format!("invalid Redis client name {name:?}: no spaces or control characters")
                    .into(),
            ));
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(PubSubError::Backend(
                "the Redis adapter must be started inside a Tokio runtime".into(),
            ));
        }
        if inner.started.swap(true, Ordering::AcqRel) {
            return Err(PubSubError::Backend(
                "this RedisPubSub was already started (use one per cable)".into(),
            ));
        }
        #[cfg(feature = "tls")]
        {
            // rustls needs a process-wide crypto provider; keep one the app installed.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let now = Instant::now();
        inner
            .subscriber
            .send_replace(LinkState::Down { since: now });
        inner.publisher.send_replace(LinkState::Down { since: now });
        inner.spawn(run_subscriber(self.inner.clone(), inbound));
        inner.spawn(run_publisher(self.inner.clone()));
        if let Some(state) = inner.presence.get() {
            inner.spawn(run_presence(self.inner.clone(), state.clone()));
        }
        tracing::debug!(config = ?inner.config, "Redis pub/sub adapter started");
        Ok(())
    }

    async fn subscribe(&self, stream: &str) -> Result<(), PubSubError> {
        let inner = &self.inner;
        if let Some(e) = inner.not_running() {
            return Err(e);
        }
        let channel = inner.naming.channel(stream).into_owned();
        let channels = inner.channels(stream);
        let deadline = Instant::now() + inner.config.subscribe_timeout;
        let mut changes = inner.subscriber.subscribe();
        let mut state = inner.update_desired(|d| {
            d.extend(channels.iter().cloned());
        });
        let mut failed_generation = None;
        let mut reason = format!(
            "no Redis connection within {:?}",
            inner.config.subscribe_timeout
        );
        let outcome = loop {
            match &state {
                LinkState::Closed => break Err(PubSubError::Closed),
                LinkState::Up(up) if failed_generation != Some(up.generation) => {
                    let mut conn = up.conn.clone();
                    // One SUBSCRIBE for both channels of a kept stream: no message of one is
                    // received without the other being subscribed.
                    match timeout_at(deadline, conn.subscribe(&channels)).await {
                        Ok(Ok(())) => return Ok(()),
                        Ok(Err(e)) if !is_connection_error(&e) => {
                            break Err(PubSubError::Backend(
                                format!("Redis refused SUBSCRIBE {channel}: {e}").into(),
                            ));
                        }
                        Ok(Err(e)) => {
                            // The connection is broken; wait for its replacement, which
                            // subscribes everything in the desired set.
                            reason = describe(&e);
                            failed_generation = Some(up.generation);
                            up.alive.cancel();
                        }
                        Err(_) => {
                            reason = "Redis did not acknowledge SUBSCRIBE in time".into();
                            // A connection that does not answer is replaced.
                            up.alive.cancel();
                            break Err(PubSubError::Unavailable(reason));
                        }
                    }
                }
                _ => {}
            }
            match timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => state = changes.borrow_and_update().clone(),
                Ok(Err(_)) => break Err(PubSubError::Closed),
                Err(_) => break Err(PubSubError::Unavailable(reason)),
            }
        };
        // The caller treats the stream as not subscribed: forget it. A SUBSCRIBE that is
        // still in flight may succeed later; the next reconnection drops it.
        inner.update_desired(|d| {
            for channel in &channels {
                d.remove(channel);
            }
        });
        if let Err(e) = &outcome {
            tracing::warn!(stream, error = %e, "Redis SUBSCRIBE failed");
        }
        outcome
    }

    async fn unsubscribe(&self, stream: &str) -> Result<(), PubSubError> {
        let inner = &self.inner;
        if let Some(e) = inner.not_running() {
            return Err(e);
        }
        let channel = inner.naming.channel(stream);
        let mut channels = inner.channels(stream);
        let state = inner.update_desired(|d| {
            for channel in &channels {
                d.remove(channel);
            }
        });
        let LinkState::Up(up) = state else {
            // Not connected: the next connection subscribes only the desired set.
            return Ok(());
        };
        if channel == INTERNAL_CHANNEL {
            return Ok(());
        }
        // The note channel first: a note is never received without its payload's channel.
        channels.reverse();
        let mut conn = up.conn.clone();
        match timeout(inner.config.subscribe_timeout, conn.unsubscribe(&channels)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) if !is_connection_error(&e) => Err(PubSubError::Backend(
                format!("Redis refused UNSUBSCRIBE {channel}: {e}").into(),
            )),
            // The connection is gone, and with it the subscription; its replacement does
            // not subscribe what is no longer desired.
            Ok(Err(_)) => Ok(()),
            Err(_) => {
                up.alive.cancel();
                Err(PubSubError::Unavailable(
                    "Redis did not acknowledge UNSUBSCRIBE in time; reconnecting".into(),
                ))
            }
        }
    }

    async fn publish(&self, stream: &str, payload: &str) -> Result<(), PubSubError> {
        let inner = &self.inner;
        let up = inner.publisher_up().await?;
        let channel = inner.naming.channel(stream);
        let mut command = redis::cmd("PUBLISH");
        command.arg(channel.as_ref()).arg(payload);
        let mut conn = up.conn.clone();
        inner
            .answer(&up, "PUBLISH", command.query_async::<i64>(&mut conn))
            .await
            .map(|_receivers| ())
    }

    /// A trace note on `_action_cable_trace`, then the payload, in one `MULTI`/`EXEC`: every
    /// node listening gets the two back to back and times the payload's deliveries.
    async fn publish_traced(
        &self,
        stream: &str,
        payload: &str,
        sent: SystemTime,
    ) -> Result<(), PubSubError> {
        let inner = &self.inner;
        let up = inner.publisher_up().await?;
        let channel = inner.naming.channel(stream);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("PUBLISH")
            .arg(TRACE_CHANNEL)
            .arg(
                TraceNote {
                    channel: &channel,
                    sent,
                }
                .encode(),
            )
            .ignore()
            .cmd("PUBLISH")
            .arg(channel.as_ref())
            .arg(payload)
            .ignore();
        let mut conn = up.conn.clone();
        inner
            .answer(&up, "PUBLISH", pipe.query_async::<()>(&mut conn))
            .await
    }

    fn history(&self, settings: &HistorySettings) -> Result<Arc<dyn History>, PubSubError> {
        // Once the adapter runs, whether it subscribes position notes is settled: another
        // handle on the same history is fine, a change is not.
        if self.inner.started.load(Ordering::Acquire) && self.inner.history.get().is_none() {
            return Err(PubSubError::Backend(
                "history must be asked for before the Redis adapter starts".into(),
            ));
        }
        let kept = *self.inner.history.get_or_init(|| *settings);
        if kept != *settings {
            return Err(PubSubError::Backend(
                format!("this RedisPubSub already keeps history with {kept:?}").into(),
            ));
        }
        Ok(Arc::new(RedisHistory {
            inner: self.inner.clone(),
            settings: *settings,
            ttl_millis: history::ttl_millis(settings),
        }))
    }

    fn presence(&self, settings: &PresenceSettings) -> Result<Arc<dyn Presence>, PubSubError> {
        if self.inner.started.load(Ordering::Acquire) && self.inner.presence.get().is_none() {
            return Err(PubSubError::Backend(
                "presence must be asked for before the Redis adapter starts".into(),
            ));
        }
        let state = self
            .inner
            .presence
            .get_or_init(|| Arc::new(PresenceState::new(*settings)))
            .clone();
        if state.settings != *settings {
            return Err(PubSubError::Backend(
                format!(
                    "this RedisPubSub already keeps presence with {:?}",
                    state.settings
                )
                .into(),
            ));
        }
        Ok(Arc::new(RedisPresence {
            inner: self.inner.clone(),
            state,
        }))
    }

    async fn shutdown(&self) -> Result<(), PubSubError> {
        let inner = &self.inner;
        inner.stop.cancel();
        let tasks = std::mem::take(&mut *inner.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for task in tasks {
            if timeout(Duration::from_secs(2), task).await.is_err() {
                tracing::warn!("a Redis adapter task did not stop in time");
            }
        }
        inner.subscriber.send_replace(LinkState::Closed);
        inner.publisher.send_replace(LinkState::Closed);
        Ok(())
    }
}

/// Keeps the publisher connection up.
async fn run_publisher(inner: Arc<Inner>) {
    let role = Role::Publisher;
    loop {
        let Some((conn, alive)) = inner
            .connector
            .connect_with_retry(role, &inner.stop, publisher_push)
            .await
        else {
            break;
        };
        let up = Up {
            generation: inner.next_generation(),
            conn,
            alive,
        };
        inner.publisher.send_replace(LinkState::Up(up.clone()));
        let lost = watch_connection(&inner, role, up.conn, up.alive).await;
        inner.publisher.send_replace(LinkState::Down {
            since: Instant::now(),
        });
        if !lost {
            break;
        }
    }
    inner.publisher.send_replace(LinkState::Closed);
}

/// Keeps the subscriber connection up and subscribed to every desired channel.
async fn run_subscriber(inner: Arc<Inner>, inbound: Inbound) {
    let role = Role::Subscriber;
    let naming = Arc::new(inner.naming.clone());
    // Paces reconnections after failed resubscriptions (connecting has its own backoff).
    let mut backoff = Backoff::new(inner.config.backoff_min, inner.config.backoff_max);
    // Whether the subscriber connection was lost since it last was up (for the cable's metrics).
    let mut was_lost = false;
    loop {
        let make_push = |alive: CancellationToken| subscriber_push(&naming, &inbound, alive);
        let Some((mut conn, alive)) = inner
            .connector
            .connect_with_retry(role, &inner.stop, make_push)
            .await
        else {
            break;
        };
        let resubscribed = tokio::select! {
            _ = inner.stop.cancelled() => break,
            _ = alive.cancelled() => Err("the connection closed while resubscribing".to_owned()),
            r = resubscribe(&inner, &mut conn, &alive) => r,
        };
        if let Err(error) = resubscribed {
            alive.cancel();
            inbound.report(AdapterEvent::Error);
            was_lost = true;
            let delay = backoff.next_delay();
            tracing::warn!(%role, error, retry_in = ?delay, "cannot resubscribe; reconnecting");
            tokio::select! {
                _ = inner.stop.cancelled() => break,
                _ = tokio::time::sleep(delay) => continue,
            }
        }
        backoff = Backoff::new(inner.config.backoff_min, inner.config.backoff_max);
        if std::mem::take(&mut was_lost) {
            inbound.report(AdapterEvent::Reconnected);
        }
        let lost = watch_connection(&inner, role, conn, alive).await;
        if lost {
            inbound.report(AdapterEvent::Error);
            was_lost = true;
        }
        {
            let _desired = inner.lock_desired();
            inner.subscriber.send_replace(LinkState::Down {
                since: Instant::now(),
            });
        }
        if !lost {
            break;
        }
    }
    inner.subscriber.send_replace(LinkState::Closed);
}

/// Subscribes a fresh connection to `_action_cable_internal` and every desired channel, then
/// publishes it as the subscriber connection. Repeats until the desired set did not change
/// during the round trip, so no concurrent `subscribe`/`unsubscribe` is missed.
async fn resubscribe(
    inner: &Inner,
    conn: &mut MultiplexedConnection,
    alive: &CancellationToken,
) -> Result<(), String> {
    let refused = subscribe_all(inner, conn, &[INTERNAL_CHANNEL, TRACE_CHANNEL]).await?;
    if !refused.is_empty() {
        // A marker for Redis tools, and the latency metric's notes; streams work without both.
        tracing::warn!(
            ?refused,
            "Redis refused SUBSCRIBE of an internal channel; continuing without it"
        );
    }
    if inner.presence.get().is_some() {
        let refused = subscribe_all(inner, conn, &[PRESENCE_CHANNEL]).await?;
        if !refused.is_empty() {
            tracing::error!(
                "Redis refused SUBSCRIBE _action_cable_presence; no presence events from other nodes"
            );
        }
    }
    let limit = inner.config.subscribe_timeout;
    let mut acked: HashSet<String> = HashSet::new();
    loop {
        let (wanted, version) = {
            let desired = inner.lock_desired();
            (desired.channels.clone(), desired.version)
        };
        let mut add: Vec<&str> = wanted.difference(&acked).map(String::as_str).collect();
        let mut remove: Vec<&str> = acked
            .difference(&wanted)
            .map(String::as_str)
            .filter(|c| *c != INTERNAL_CHANNEL)
            .collect();
        // Stream channels are subscribed before, and unsubscribed after, position notes'
        // channels: a note is never received without its payload (see `history.rs`).
        add.sort_by_key(|c| c.starts_with(POSITION_CHANNEL));
        remove.sort_by_key(|c| !c.starts_with(POSITION_CHANNEL));
        let refused = subscribe_all(inner, conn, &add).await?;
        for chunk in remove.chunks(CHUNK) {
            match timeout(limit, conn.unsubscribe(chunk)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(format!("UNSUBSCRIBE: {}", describe(&e))),
                Err(_) => return Err(format!("UNSUBSCRIBE: no answer within {limit:?}")),
            }
        }
        if !add.is_empty() || !remove.is_empty() {
            tracing::debug!(
                subscribed = add.len() - refused.len(),
                unsubscribed = remove.len(),
                "resubscribed Redis channels"
            );
        }
        acked = wanted;
        let mut desired = inner.lock_desired();
        if !refused.is_empty() {
            // Redis (e.g. a changed ACL) refuses these channels: their streams get nothing
            // more until they are subscribed anew.
            tracing::error!(channels = ?refused, "Redis refused SUBSCRIBE; those streams receive nothing");
            for channel in &refused {
                acked.remove(channel);
                desired.channels.remove(channel);
            }
            desired.version += 1;
            continue;
        }
        if desired.version == version {
            inner.subscriber.send_replace(LinkState::Up(Up {
                generation: inner.next_generation(),
                conn: conn.clone(),
                alive: alive.clone(),
            }));
            return Ok(());
        }
    }
}

/// `SUBSCRIBE`s `channels` in chunks and returns those Redis refuses (an ACL, say); a chunk
/// that is refused is retried channel by channel. `Err` when the connection fails.
async fn subscribe_all(
    inner: &Inner,
    conn: &mut MultiplexedConnection,
    channels: &[&str],
) -> Result<Vec<String>, String> {
    let limit = inner.config.subscribe_timeout;
    let mut refused = Vec::new();
    for chunk in channels.chunks(CHUNK) {
        match timeout(limit, conn.subscribe(chunk)).await {
            Ok(Ok(())) => continue,
            Ok(Err(e)) if is_connection_error(&e) => {
                return Err(format!("SUBSCRIBE: {}", describe(&e)));
            }
            Ok(Err(_)) => {}
            Err(_) => return Err(format!("SUBSCRIBE: no answer within {limit:?}")),
        }
        for channel in chunk {
            match timeout(limit, conn.subscribe(*channel)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) if is_connection_error(&e) => {
                    return Err(format!("SUBSCRIBE: {}", describe(&e)));
                }
                Ok(Err(_)) => refused.push((*channel).to_owned()),
                Err(_) => return Err(format!("SUBSCRIBE: no answer within {limit:?}")),
            }
        }
    }
    Ok(refused)
}

/// Waits until the connection dies (returns `true`) or the adapter stops (`false`), checking
/// its health meanwhile.
async fn watch_connection(
    inner: &Inner,
    role: Role,
    mut conn: MultiplexedConnection,
    alive: CancellationToken,
) -> bool {
    let every = inner.config.health_check_interval;
    let mut ticks = tokio::time::interval_at(Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = inner.stop.cancelled() => return false,
            _ = alive.cancelled() => {
                tracing::warn!(%role, "Redis connection lost; reconnecting");
                return true;
            }
            _ = ticks.tick() => {
                if let Err(error) = inner.connector.health_check(&mut conn).await {
                    tracing::warn!(%role, error, "Redis health check failed; reconnecting");
                    alive.cancel();
                    return true;
                }
            }
        }
    }
}

/// The publisher's push handler: only notices the connection closing.
fn publisher_push(alive: CancellationToken) -> impl Fn(PushInfo) -> Result<(), Infallible> {
    move |info: PushInfo| {
        if info.kind == PushKind::Disconnection {
            alive.cancel();
        }
        Ok(())
    }
}

/// The subscriber's push handler. It runs inside the connection's driver task as each
/// message is decoded and hands the message to the local fan-out directly (which never
/// waits), so a message costs no allocation beyond its decoding and no extra hop.
fn subscriber_push(
    naming: &Arc<Naming>,
    inbound: &Inbound,
    alive: CancellationToken,
) -> impl Fn(PushInfo) -> Result<(), Infallible> + use<> {
    let naming = naming.clone();
    let inbound = inbound.clone();
    // Only this connection's driver calls the handler, one message at a time.
    let pairing = Mutex::new(Pairing::default());
    move |info: PushInfo| {
        match info.kind {
            PushKind::Message => match info.data.as_slice() {
                [Value::BulkString(channel), Value::BulkString(payload)] => {
                    let mut pairing = pairing.lock().unwrap_or_else(|p| p.into_inner());
                    wire::deliver(&naming, &inbound, &mut pairing, channel, payload);
                }
                other => tracing::warn!(parts = other.len(), "malformed Redis message push"),
            },
            PushKind::Disconnection => alive.cancel(),
            _ => {}
        }
        Ok(())
    }
}

/// The history kept in Redis (see `history.rs`): shares the adapter's connections.
struct RedisHistory {
    inner: Arc<Inner>,
    settings: HistorySettings,
    ttl_millis: u64,
}

impl RedisHistory {
    async fn read(&self, stream: &str, since_millis: u64) -> Result<Read, PubSubError> {
        let inner = &self.inner;
        let up = inner.publisher_up().await?;
        let (meta, log) = history::keys(&inner.naming, stream);
        // EVAL rather than EVALSHA: Redis caches the compiled script by its hash anyway, and
        // a restarted Redis needs no reloading.
        let mut invocation = redis::cmd("EVAL");
        invocation
            .arg(history::READ_SCRIPT)
            .arg(2)
            .arg(meta)
            .arg(log)
            .arg(self.ttl_millis)
            .arg(since_millis);
        let mut conn = up.conn.clone();
        let value: Value = inner
            .answer(&up, "the history read", invocation.query_async(&mut conn))
            .await?;
        history::decode_read(value)
    }
}

impl RedisHistory {
    /// Keeps and publishes `payload` through the script, with a trace note first when `sent`.
    async fn keep(
        &self,
        stream: &str,
        payload: &str,
        sent: Option<SystemTime>,
    ) -> Result<Position, PubSubError> {
        let inner = &self.inner;
        let up = inner.publisher_up().await?;
        let (meta, log) = history::keys(&inner.naming, stream);
        let channel = inner.naming.channel(stream);
        let trace = sent
            .map(|sent| {
                TraceNote {
                    channel: &channel,
                    sent,
                }
                .encode()
            })
            .unwrap_or_default();
        let mut invocation = redis::cmd("EVAL");
        invocation
            .arg(history::PUBLISH_SCRIPT)
            .arg(2)
            .arg(meta)
            .arg(log)
            .arg(wire::position_channel(&inner.naming, stream))
            .arg(channel.as_ref())
            .arg(payload)
            .arg(history::fresh_epoch())
            .arg(self.settings.limit)
            .arg(self.ttl_millis)
            .arg(trace)
            .arg(TRACE_CHANNEL);
        let mut conn = up.conn.clone();
        let (epoch, offset): (String, u64) = inner
            .answer(&up, "the history script", invocation.query_async(&mut conn))
            .await?;
        Ok(Position {
            epoch: Arc::from(epoch),
            offset,
        })
    }
}

#[async_trait]
impl History for RedisHistory {
    async fn publish(&self, stream: &str, payload: &str) -> Result<Position, PubSubError> {
        self.keep(stream, payload, None).await
    }

    /// The script publishes the trace note first, then the position note and the payload.
    async fn publish_traced(
        &self,
        stream: &str,
        payload: &str,
        sent: SystemTime,
    ) -> Result<Position, PubSubError> {
        self.keep(stream, payload, Some(sent)).await
    }

    async fn after(
        &self,
        stream: &str,
        epoch: &str,
        offset: u64,
    ) -> Result<Option<Vec<Kept>>, PubSubError> {
        Ok(self.read(stream, 0).await?.after(epoch, offset))
    }

    async fn since(&self, stream: &str, unix_secs: u64) -> Result<Vec<Kept>, PubSubError> {
        Ok(self
            .read(stream, unix_secs.saturating_mul(1000))
            .await?
            .entries)
    }
}

impl fmt::Debug for RedisHistory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisPubSub history")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// What this node knows of its presence records in Redis (see `presence.rs`).
struct PresenceState {
    settings: PresenceSettings,
    timing: Timing,
    /// Makes this node's record keys unique among nodes.
    node: String,
    /// This node's records by deadline entry: refreshed while they last, joined again when
    /// Redis lost them.
    records: Mutex<HashMap<String, Record>>,
}

/// One of this node's records, enough to join it again.
#[derive(Clone)]
struct Record {
    stream: String,
    key: String,
    id: String,
    info: Option<String>,
}

impl PresenceState {
    fn new(settings: PresenceSettings) -> PresenceState {
        PresenceState {
            settings,
            timing: Timing::new(settings.ttl),
            node: presence::node_id(),
            records: Mutex::new(HashMap::new()),
        }
    }

    fn records(&self) -> MutexGuard<'_, HashMap<String, Record>> {
        // Single inserts and removals: a poisoned map is still consistent.
        self.records.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The presence kept in Redis: shares the adapter's publisher connection.
struct RedisPresence {
    inner: Arc<Inner>,
    state: Arc<PresenceState>,
}

impl RedisPresence {
    fn key(&self, key: &str) -> String {
        format!("{}-{key}", self.state.node)
    }
}

/// Runs the join script for `record`; whether its member is new.
async fn join_record(
    inner: &Inner,
    state: &PresenceState,
    record: &Record,
) -> Result<bool, PubSubError> {
    let up = inner.publisher_up().await?;
    let keys = presence::keys(&inner.naming, &record.stream);
    let mut invocation = redis::cmd("EVAL");
    invocation
        .arg(presence::join_script())
        .arg(4)
        .arg(&keys.records)
        .arg(&keys.members)
        .arg(&keys.counts)
        .arg(presence::DEADLINES)
        .arg(&record.key)
        .arg(&record.id)
        .arg(record.info.as_deref().unwrap_or(""))
        .arg(presence::millis(state.timing.lifetime))
        .arg(presence::entry(&record.key, &keys.channel))
        .arg(PRESENCE_CHANNEL)
        .arg(&keys.channel)
        .arg(presence::millis(state.timing.keys_ttl));
    let mut conn = up.conn.clone();
    let joined: i64 = inner
        .answer(&up, "the presence join", invocation.query_async(&mut conn))
        .await?;
    Ok(joined == 1)
}

#[async_trait]
impl Presence for RedisPresence {
    async fn join(
        &self,
        stream: &str,
        key: &str,
        id: &str,
        info: Option<&str>,
    ) -> Result<bool, PubSubError> {
        let record = Record {
            stream: stream.to_owned(),
            key: self.key(key),
            id: id.to_owned(),
            info: info.map(str::to_owned),
        };
        let entry = presence::entry(
            &record.key,
            &presence::keys(&self.inner.naming, stream).channel,
        );
        // Known before Redis has it, so a refresh racing this join cannot miss it.
        self.state.records().insert(entry.clone(), record.clone());
        let joined = join_record(&self.inner, &self.state, &record).await;
        if joined.is_err() {
            self.state.records().remove(&entry);
        }
        joined
    }

    async fn leave(&self, stream: &str, key: &str) -> Result<bool, PubSubError> {
        let inner = &self.inner;
        let key = self.key(key);
        let keys = presence::keys(&inner.naming, stream);
        let entry = presence::entry(&key, &keys.channel);
        // Forgotten first: if Redis cannot be told, the record expires there within the TTL.
        self.state.records().remove(&entry);
        let up = inner.publisher_up().await?;
        let mut invocation = redis::cmd("EVAL");
        invocation
            .arg(presence::leave_script())
            .arg(1)
            .arg(presence::DEADLINES)
            .arg(&keys.base)
            .arg(&key)
            .arg(&entry)
            .arg(PRESENCE_CHANNEL)
            .arg(&keys.channel);
        let mut conn = up.conn.clone();
        let left: i64 = inner
            .answer(&up, "the presence leave", invocation.query_async(&mut conn))
            .await?;
        Ok(left == 1)
    }

    async fn members(&self, stream: &str) -> Result<Vec<PresenceMember>, PubSubError> {
        let inner = &self.inner;
        let up = inner.publisher_up().await?;
        let keys = presence::keys(&inner.naming, stream);
        let mut command = redis::cmd("HGETALL");
        command.arg(&keys.members);
        let mut conn = up.conn.clone();
        let all: HashMap<String, String> = inner
            .answer(&up, "HGETALL", command.query_async(&mut conn))
            .await?;
        let mut members: Vec<PresenceMember> = all
            .into_iter()
            .map(|(id, info)| PresenceMember {
                id,
                info: (!info.is_empty()).then_some(info),
            })
            .collect();
        members.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(members)
    }
}

impl fmt::Debug for RedisPresence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisPubSub presence")
            .field("settings", &self.state.settings)
            .field("records", &self.state.records().len())
            .finish_non_exhaustive()
    }
}

/// Every `ttl/3`: sweeps the records whose time is up (any node's), then refreshes this
/// node's and joins again those Redis lost. Failures are logged and retried next round; a
/// record left unrefreshed that long expires, as if this node had died.
async fn run_presence(inner: Arc<Inner>, state: Arc<PresenceState>) {
    let every = state.timing.every;
    let mut ticks = tokio::time::interval_at(Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = inner.stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        if let Err(e) = presence_round(&inner, &state).await {
            tracing::warn!(error = %e, "presence refresh failed; retrying");
        }
    }
}

async fn presence_round(inner: &Inner, state: &PresenceState) -> Result<(), PubSubError> {
    let up = inner.publisher_up().await?;
    let mut conn = up.conn.clone();
    let mut sweep = redis::cmd("EVAL");
    sweep
        .arg(presence::sweep_script())
        .arg(1)
        .arg(presence::DEADLINES)
        .arg(presence::key_prefix())
        .arg(PRESENCE_CHANNEL)
        .arg(presence::SWEEP_LIMIT);
    let left: i64 = inner
        .answer(&up, "the presence sweep", sweep.query_async(&mut conn))
        .await?;
    if left > 0 {
        tracing::info!(left, "presence: members of silent nodes left");
    }
    let entries: Vec<String> = state.records().keys().cloned().collect();
    for chunk in entries.chunks(presence::REFRESH_CHUNK) {
        let mut refresh = redis::cmd("EVAL");
        refresh
            .arg(presence::refresh_script())
            .arg(1)
            .arg(presence::DEADLINES)
            .arg(presence::millis(state.timing.lifetime))
            .arg(presence::millis(state.timing.keys_ttl))
            .arg(presence::key_prefix())
            .arg(chunk);
        let missing: Vec<String> = inner
            .answer(&up, "the presence refresh", refresh.query_async(&mut conn))
            .await?;
        for entry in missing {
            // Left meanwhile, or lost by Redis (a restart, an outage past the TTL): join
            // again what this node still holds.
            let record = state.records().get(&entry).cloned();
            if let Some(record) = record {
                tracing::info!(
                    stream = record.stream,
                    "presence: joining again a record Redis lost"
                );
                join_record(inner, state, &record).await?;
            }
        }
    }
    Ok(())
}
