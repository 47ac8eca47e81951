//! [`PostgresPubSub`]: the adapter, its two connection supervisors, the wanted channels and
//! the delivery of notifications (resolving stored large payloads).

use crate::config::{PostgresConfig, PostgresConfigError};
use crate::link::{Connector, LinkState, Note, Role, Up, describe, is_connection_error};
use crate::wire::{self, LARGE_PAYLOAD_MARKER, Naming, quote_identifier};
use actioncable::PubSubError;
use actioncable::pubsub::{AdapterEvent, Backoff, PendingTrace, TRACE_CHANNEL, TraceNote};
use actioncable::pubsub::{Inbound, PubSub};
use async_trait::async_trait;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout, timeout_at};
use tokio_postgres::Client;
use tokio_postgres::types::ToSql;
use tokio_util::sync::CancellationToken;

/// How many `LISTEN`s one round trip carries when a new connection listens again.
const CHUNK: usize = 256;

/// The PostgreSQL `LISTEN`/`NOTIFY` adapter. See the [crate docs](crate) for how it works.
///
/// Cloning gives another handle to the same adapter (keep one to ask
/// [`is_connected`](Self::is_connected) after handing a clone to the cable).
///
/// ```no_run
/// use actioncable::Cable;
/// use actioncable_postgres::{PostgresConfig, PostgresPubSub};
///
/// async fn doc_main() -> Result<(), Box<dyn std::error::Error>> {
///     let postgres = PostgresPubSub::new(
///         PostgresConfig::from_url("postgres://app@127.0.0.1/app_production")?
///             .channel_prefix(Some("myapp_production".into())),
///     );
///     let cable = Cable::builder().pubsub(postgres.clone()).build()?;
///     cable.handle().broadcast("chat:lobby", &"hello").await?;
///     assert!(postgres.is_connected());
///     Ok(())
/// }
/// ```
#[derive(Clone)]
pub struct PostgresPubSub {
    inner: Arc<Inner>,
}

struct Inner {
    config: PostgresConfig,
    naming: Naming,
    connector: Connector,
    /// The table name, quoted for SQL.
    table: String,
    /// The channels that should be listened to, and the listening connection.
    desired: Mutex<Desired>,
    /// The listening connection. Written only while `desired` is locked, so that a channel
    /// added to `desired` is either seen by a re-listen or finds the connection up.
    listener: watch::Sender<LinkState>,
    publisher: watch::Sender<LinkState>,
    /// Notifications from the listening connection's driver to the dispatcher.
    notes: mpsc::UnboundedSender<Note>,
    notes_rx: Mutex<Option<mpsc::UnboundedReceiver<Note>>>,
    generation: AtomicU64,
    /// Whether this node stored a large payload, so it deletes expired ones.
    stored_large: AtomicBool,
    last_cleanup: Mutex<Option<Instant>>,
    started: AtomicBool,
    stop: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

#[derive(Default)]
struct Desired {
    /// Channel identifier → stream name (they differ by the prefix, or the identifier is a
    /// SHA1 digest).
    channels: HashMap<String, String>,
    /// Bumped on every change, so a re-listen can tell it is out of date.
    version: u64,
}

impl PostgresPubSub {
    /// An adapter for `config`. It connects when the cable starts it.
    pub fn new(config: PostgresConfig) -> PostgresPubSub {
        let now = Instant::now();
        let (notes, notes_rx) = mpsc::unbounded_channel();
        let table = quote_identifier(&config.large_payload_table)
            .expect("large_payload_table checks the name");
        let inner = Inner {
            naming: Naming::new(config.prefix()),
            connector: Connector::new(&config),
            table,
            config,
            desired: Mutex::new(Desired::default()),
            listener: watch::Sender::new(LinkState::Down { since: now }),
            publisher: watch::Sender::new(LinkState::Down { since: now }),
            notes,
            notes_rx: Mutex::new(Some(notes_rx)),
            generation: AtomicU64::new(0),
            stored_large: AtomicBool::new(false),
            last_cleanup: Mutex::new(None),
            started: AtomicBool::new(false),
            stop: CancellationToken::new(),
            tasks: Mutex::new(Vec::new()),
        };
        PostgresPubSub {
            inner: Arc::new(inner),
        }
    }

    /// An adapter configured by [`PostgresConfig::from_env`] (`DATABASE_URL`,
    /// `CABLE_CHANNEL_PREFIX`).
    ///
    /// # Errors
    /// As [`PostgresConfig::from_env`].
    pub fn from_env() -> Result<PostgresPubSub, PostgresConfigError> {
        Ok(PostgresPubSub::new(PostgresConfig::from_env()?))
    }

    /// The configuration.
    pub fn config(&self) -> &PostgresConfig {
        &self.inner.config
    }

    /// Whether both connections (listener and publisher) are up right now. Useful for a
    /// readiness probe; broadcasts fail while this is `false` for longer than the publish
    /// timeout.
    pub fn is_connected(&self) -> bool {
        matches!(*self.inner.listener.borrow(), LinkState::Up(_))
            && matches!(*self.inner.publisher.borrow(), LinkState::Up(_))
    }
}

impl fmt::Debug for PostgresPubSub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresPubSub")
            .field("config", &self.inner.config)
            .field("connected", &self.is_connected())
            .field("streams", &self.inner.lock_desired().channels.len())
            .finish()
    }
}

impl Inner {
    fn lock_desired(&self) -> MutexGuard<'_, Desired> {
        // Every update is a single insert/remove plus a counter, so a poisoned lock still
        // holds a consistent map.
        self.desired.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Changes the wanted channels and returns the listening connection as it is then.
    fn update_desired(&self, change: impl FnOnce(&mut HashMap<String, String>)) -> LinkState {
        let mut desired = self.lock_desired();
        change(&mut desired.channels);
        desired.version += 1;
        self.listener.borrow().clone()
    }

    fn next_generation(&self) -> u64 {
        self.generation.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn not_running(&self) -> Option<PubSubError> {
        if self.stop.is_cancelled() {
            Some(PubSubError::Closed)
        } else if !self.started.load(Ordering::Acquire) {
            Some(PubSubError::Unavailable(
                "the PostgreSQL adapter was not started".into(),
            ))
        } else {
            None
        }
    }

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let handle = tokio::spawn(task);
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(handle);
    }

    /// Stores `payload` and notifies `channel` of its row, in one statement (so the row is
    /// committed before any listener hears of it), after `trace` (a trace note) if any.
    async fn store_and_notify(
        &self,
        up: &Up,
        channel: &str,
        payload: &str,
        trace: Option<&str>,
    ) -> Result<(), tokio_postgres::Error> {
        if !up.table_ready.load(Ordering::Acquire) {
            self.create_table(&up.client).await?;
            up.table_ready.store(true, Ordering::Release);
        }
        let due = {
            let last = self.last_cleanup.lock().unwrap_or_else(|p| p.into_inner());
            last.is_none_or(|at| at.elapsed() >= Duration::from_secs(1))
        };
        if due {
            self.delete_expired(&up.client).await;
        }
        let table = &self.table;
        let insert = format!("INSERT INTO {table} (channel, payload) VALUES ($1, $2) RETURNING id");
        let notify = "pg_notify($1, $3::text || stored.id::text)";
        match trace {
            None => {
                let sql = format!("WITH stored AS ({insert}) SELECT {notify} FROM stored");
                up.client
                    .execute(&sql, &[&channel, &payload, &LARGE_PAYLOAD_MARKER])
                    .await?
            }
            // The trace note first: see `link::NotifyStatements::traced`.
            Some(note) => {
                let sql = format!(
                    "WITH trace AS (SELECT pg_notify($4, $5)), stored AS ({insert}) \
                     SELECT {notify} FROM trace, stored"
                );
                let params: [&(dyn ToSql + Sync); 5] = [
                    &channel,
                    &payload,
                    &LARGE_PAYLOAD_MARKER,
                    &TRACE_CHANNEL,
                    &note,
                ];
                up.client.execute(&sql, &params).await?
            }
        };
        self.stored_large.store(true, Ordering::Release);
        Ok(())
    }

    async fn create_table(&self, client: &Client) -> Result<(), tokio_postgres::Error> {
        let table = &self.table;
        let sql = format!(
            "CREATE TABLE IF NOT EXISTS {table} (id bigserial PRIMARY KEY, channel text NOT NULL, \
             payload text NOT NULL, created_at timestamptz NOT NULL DEFAULT now())"
        );
        match client.batch_execute(&sql).await {
            Ok(()) => Ok(()),
            // Another node created it at the same moment (`IF NOT EXISTS` is not atomic).
            Err(e) if matches!(e.code().map(|c| c.code()), Some("42P07" | "23505")) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Deletes stored payloads older than the retention. Failures are only logged: a row
    /// left behind is deleted next time.
    async fn delete_expired(&self, client: &Client) {
        *self.last_cleanup.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        let table = &self.table;
        let sql =
            format!("DELETE FROM {table} WHERE created_at < now() - make_interval(secs => $1)");
        let seconds = self.config.large_payload_retention.as_secs_f64();
        let limit = self.config.connect_timeout;
        match timeout(limit, client.execute(&sql, &[&seconds])).await {
            Ok(Ok(deleted)) => tracing::trace!(deleted, "deleted expired large payloads"),
            Ok(Err(e)) => {
                tracing::warn!(error = %describe(&e), "cannot delete expired large payloads")
            }
            Err(_) => tracing::warn!("deleting expired large payloads took longer than {limit:?}"),
        }
    }

    /// Reads a stored payload through the listening connection.
    async fn fetch_large(&self, id: i64, channel: &str) -> Result<String, String> {
        let LinkState::Up(up) = self.listener.borrow().clone() else {
            return Err("the listening connection is down".into());
        };
        let table = &self.table;
        let sql = format!("SELECT payload FROM {table} WHERE id = $1 AND channel = $2");
        let limit = self.config.connect_timeout;
        match timeout(limit, up.client.query_opt(&sql, &[&id, &channel])).await {
            Ok(Ok(Some(row))) => row.try_get(0).map_err(|e| describe(&e)),
            Ok(Ok(None)) => Err("no such row (deleted after the retention?)".into()),
            Ok(Err(e)) => Err(describe(&e)),
            Err(_) => Err(format!("no answer within {limit:?}")),
        }
    }

    /// Publishes `payload` to `stream`, after a trace note when `sent` is given.
    async fn publish(
        &self,
        stream: &str,
        payload: &str,
        sent: Option<SystemTime>,
    ) -> Result<(), PubSubError> {
        let inner = self;

        if let Some(e) = inner.not_running() {
            return Err(e);
        }
        let limit = inner.config.publish_timeout;
        let mut changes = inner.publisher.subscribe();
        let up = loop {
            let state = changes.borrow_and_update().clone();
            match state {
                LinkState::Up(up) => break up,
                LinkState::Closed => return Err(PubSubError::Closed),
                LinkState::Down { since } => {
                    // Right after a connection is lost (or at startup) wait for it a little;
                    // during a longer outage fail at once.
                    let deadline = since + limit;
                    let unavailable = || {
                        PubSubError::Unavailable(format!(
                            "no PostgreSQL connection (down for {:.1?})",
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
        };
        let channel = inner.naming.channel(stream);
        let large = payload.len() > inner.config.max_notify_payload;
        let note = sent.map(|sent| {
            TraceNote {
                channel: &channel,
                sent,
            }
            .encode()
        });
        let done = async {
            if large {
                return inner
                    .store_and_notify(&up, &channel, payload, note.as_deref())
                    .await;
            }
            let notify = up.notify.as_ref().expect("the publisher prepares NOTIFY");
            match &note {
                None => {
                    up.client
                        .execute(&notify.plain, &[&channel, &payload])
                        .await
                }
                Some(note) => {
                    let params: [&(dyn ToSql + Sync); 4] =
                        [&channel, &payload, &TRACE_CHANNEL, note];
                    up.client.execute(&notify.traced, &params).await
                }
            }
            .map(drop)
        };
        match timeout(limit, done).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(failure(
                &e,
                &up,
                if large {
                    "storing a large payload"
                } else {
                    "NOTIFY"
                },
            )),
            Err(_) => {
                up.alive.cancel();
                Err(PubSubError::Unavailable(format!(
                    "PostgreSQL did not answer NOTIFY within {limit:?}"
                )))
            }
        }
    }
}

/// A failed statement as the adapter reports it. A broken connection is also replaced.
fn failure(e: &tokio_postgres::Error, up: &Up, what: &str) -> PubSubError {
    if is_connection_error(e) {
        up.alive.cancel();
        PubSubError::Unavailable(format!("{what}: {}", describe(e)))
    } else {
        PubSubError::Backend(format!("PostgreSQL refused {what}: {}", describe(e)).into())
    }
}

fn quoted_channel(channel: &str) -> Result<String, PubSubError> {
    quote_identifier(channel).ok_or_else(|| {
        PubSubError::Backend("a stream name with a NUL character cannot be a channel".into())
    })
}

#[async_trait]
impl PubSub for PostgresPubSub {
    fn is_connected(&self) -> bool {
        PostgresPubSub::is_connected(self)
    }

    fn start(&self, inbound: Inbound) -> Result<(), PubSubError> {
        let inner = &self.inner;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(PubSubError::Backend(
                "the PostgreSQL adapter must be started inside a Tokio runtime".into(),
            ));
        }
        if inner.started.swap(true, Ordering::AcqRel) {
            return Err(PubSubError::Backend(
                "this PostgresPubSub was already started (use one per cable)".into(),
            ));
        }
        let notes = inner
            .notes_rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .ok_or(PubSubError::Closed)?;
        let now = Instant::now();
        inner.listener.send_replace(LinkState::Down { since: now });
        inner.publisher.send_replace(LinkState::Down { since: now });
        inner.spawn(run_listener(inner.clone(), inbound.clone()));
        inner.spawn(run_publisher(inner.clone()));
        inner.spawn(run_dispatcher(inner.clone(), inbound, notes));
        tracing::debug!(config = ?inner.config, "PostgreSQL pub/sub adapter started");
        Ok(())
    }

    async fn subscribe(&self, stream: &str) -> Result<(), PubSubError> {
        let inner = &self.inner;
        if let Some(e) = inner.not_running() {
            return Err(e);
        }
        let channel = inner.naming.channel(stream);
        let sql = format!("LISTEN {}", quoted_channel(&channel)?);
        let deadline = Instant::now() + inner.config.subscribe_timeout;
        let mut changes = inner.listener.subscribe();
        let mut state = inner.update_desired(|d| {
            d.insert(channel.clone(), stream.to_owned());
        });
        let mut failed_generation = None;
        let mut reason = format!(
            "no PostgreSQL connection within {:?}",
            inner.config.subscribe_timeout
        );
        let outcome = loop {
            match &state {
                LinkState::Closed => break Err(PubSubError::Closed),
                LinkState::Up(up) if failed_generation != Some(up.generation) => {
                    match timeout_at(deadline, up.client.batch_execute(&sql)).await {
                        Ok(Ok(())) => return Ok(()),
                        Ok(Err(e)) if !is_connection_error(&e) => {
                            break Err(PubSubError::Backend(
                                format!("PostgreSQL refused {sql}: {}", describe(&e)).into(),
                            ));
                        }
                        Ok(Err(e)) => {
                            // The connection is broken; wait for its replacement, which
                            // listens to every wanted channel.
                            reason = describe(&e);
                            failed_generation = Some(up.generation);
                            up.alive.cancel();
                        }
                        Err(_) => {
                            up.alive.cancel();
                            break Err(PubSubError::Unavailable(
                                "PostgreSQL did not answer LISTEN in time".into(),
                            ));
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
        // The caller treats the stream as not subscribed: forget it. A LISTEN that is still
        // in flight may succeed later; notifications of a channel not wanted are dropped,
        // and the next connection does not listen to it.
        inner.update_desired(|d| {
            d.remove(&channel);
        });
        if let Err(e) = &outcome {
            tracing::warn!(stream, error = %e, "PostgreSQL LISTEN failed");
        }
        outcome
    }

    async fn unsubscribe(&self, stream: &str) -> Result<(), PubSubError> {
        let inner = &self.inner;
        if let Some(e) = inner.not_running() {
            return Err(e);
        }
        let channel = inner.naming.channel(stream);
        let state = inner.update_desired(|d| {
            d.remove(&channel);
        });
        let LinkState::Up(up) = state else {
            // Not connected: the next connection listens to the wanted channels only.
            return Ok(());
        };
        let sql = format!("UNLISTEN {}", quoted_channel(&channel)?);
        match timeout(
            inner.config.subscribe_timeout,
            up.client.batch_execute(&sql),
        )
        .await
        {
            Ok(Ok(())) => Ok(()),
            // The connection is gone, and with it the LISTEN.
            Ok(Err(e)) if is_connection_error(&e) => {
                up.alive.cancel();
                Ok(())
            }
            Ok(Err(e)) => Err(PubSubError::Backend(
                format!("PostgreSQL refused {sql}: {}", describe(&e)).into(),
            )),
            Err(_) => {
                up.alive.cancel();
                Err(PubSubError::Unavailable(
                    "PostgreSQL did not answer UNLISTEN in time; reconnecting".into(),
                ))
            }
        }
    }

    async fn publish(&self, stream: &str, payload: &str) -> Result<(), PubSubError> {
        self.inner.publish(stream, payload, None).await
    }

    /// A trace note on `_action_cable_trace`, then the payload, in one statement: every node
    /// listening gets the two back to back and times the payload's deliveries.
    async fn publish_traced(
        &self,
        stream: &str,
        payload: &str,
        sent: SystemTime,
    ) -> Result<(), PubSubError> {
        self.inner.publish(stream, payload, Some(sent)).await
    }

    async fn shutdown(&self) -> Result<(), PubSubError> {
        let inner = &self.inner;
        inner.stop.cancel();
        let tasks = std::mem::take(&mut *inner.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for task in tasks {
            if timeout(Duration::from_secs(2), task).await.is_err() {
                tracing::warn!("a PostgreSQL adapter task did not stop in time");
            }
        }
        inner.listener.send_replace(LinkState::Closed);
        inner.publisher.send_replace(LinkState::Closed);
        Ok(())
    }
}

/// Keeps the publisher connection up.
async fn run_publisher(inner: Arc<Inner>) {
    let role = Role::Publisher;
    loop {
        let Some(up) = inner
            .connector
            .connect_with_retry(role, || inner.next_generation(), &inner.stop, None)
            .await
        else {
            break;
        };
        inner.publisher.send_replace(LinkState::Up(up.clone()));
        let lost = watch_connection(&inner, role, &up).await;
        inner.publisher.send_replace(LinkState::Down {
            since: Instant::now(),
        });
        if !lost {
            break;
        }
    }
    inner.publisher.send_replace(LinkState::Closed);
}

/// Keeps the listening connection up and listening to every wanted channel.
/// Losing it and getting it back are reported to the cable (`inbound`, for its metrics).
async fn run_listener(inner: Arc<Inner>, inbound: Inbound) {
    let role = Role::Listener;
    // Paces reconnections after failed re-listens (connecting has its own backoff).
    let mut backoff = Backoff::new(inner.config.backoff_min, inner.config.backoff_max);
    let mut was_lost = false;
    loop {
        let Some(up) = inner
            .connector
            .connect_with_retry(
                role,
                || inner.next_generation(),
                &inner.stop,
                Some(&inner.notes),
            )
            .await
        else {
            break;
        };
        let listened = tokio::select! {
            _ = inner.stop.cancelled() => break,
            _ = up.alive.cancelled() => Err("the connection closed while listening again".to_owned()),
            r = relisten(&inner, &up) => r,
        };
        if let Err(error) = listened {
            up.alive.cancel();
            inbound.report(AdapterEvent::Error);
            was_lost = true;
            let delay = backoff.next_delay();
            tracing::warn!(%role, error, retry_in = ?delay, "cannot LISTEN again; reconnecting");
            tokio::select! {
                _ = inner.stop.cancelled() => break,
                _ = tokio::time::sleep(delay) => continue,
            }
        }
        backoff = Backoff::new(inner.config.backoff_min, inner.config.backoff_max);
        if std::mem::take(&mut was_lost) {
            inbound.report(AdapterEvent::Reconnected);
        }
        let lost = watch_connection(&inner, role, &up).await;
        if lost {
            inbound.report(AdapterEvent::Error);
            was_lost = true;
        }
        {
            let _desired = inner.lock_desired();
            inner.listener.send_replace(LinkState::Down {
                since: Instant::now(),
            });
        }
        if !lost {
            break;
        }
    }
    inner.listener.send_replace(LinkState::Closed);
}

/// `LISTEN`s a fresh connection to every wanted channel and to the trace channel (sampled
/// publish times, for the metrics), then publishes it as the listening connection. Repeats until the wanted set did not change during the round trip, so no
/// concurrent `subscribe`/`unsubscribe` is missed.
async fn relisten(inner: &Inner, up: &Up) -> Result<(), String> {
    let limit = inner.config.subscribe_timeout;
    let mut listening: HashSet<String> = HashSet::new();
    loop {
        let (wanted, version) = {
            let desired = inner.lock_desired();
            let mut wanted: HashSet<String> = desired.channels.keys().cloned().collect();
            wanted.insert(TRACE_CHANNEL.to_owned());
            (wanted, desired.version)
        };
        let add: Vec<String> = wanted
            .difference(&listening)
            .filter_map(|c| quote_identifier(c).map(|q| format!("LISTEN {q};")))
            .collect();
        let remove: Vec<String> = listening
            .difference(&wanted)
            .filter_map(|c| quote_identifier(c).map(|q| format!("UNLISTEN {q};")))
            .collect();
        for chunk in add.chunks(CHUNK).chain(remove.chunks(CHUNK)) {
            match timeout(limit, up.client.batch_execute(&chunk.concat())).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(format!("LISTEN: {}", describe(&e))),
                Err(_) => return Err(format!("LISTEN: no answer within {limit:?}")),
            }
        }
        if !add.is_empty() || !remove.is_empty() {
            tracing::debug!(
                listened = add.len(),
                unlistened = remove.len(),
                "listening again"
            );
        }
        listening = wanted;
        let desired = inner.lock_desired();
        if desired.version == version {
            inner.listener.send_replace(LinkState::Up(up.clone()));
            return Ok(());
        }
    }
}

/// Waits until the connection dies (returns `true`) or the adapter stops (`false`), checking
/// its health meanwhile. The publisher also deletes expired large payloads then.
async fn watch_connection(inner: &Inner, role: Role, up: &Up) -> bool {
    let every = inner.config.health_check_interval;
    let mut ticks = tokio::time::interval_at(Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = inner.stop.cancelled() => return false,
            _ = up.alive.cancelled() => {
                tracing::warn!(%role, "PostgreSQL connection lost; reconnecting");
                return true;
            }
            _ = ticks.tick() => {
                if let Err(error) = inner.connector.health_check(&up.client).await {
                    tracing::warn!(%role, error, "PostgreSQL health check failed; reconnecting");
                    up.alive.cancel();
                    return true;
                }
                if role == Role::Publisher && inner.stored_large.load(Ordering::Acquire) {
                    inner.delete_expired(&up.client).await;
                }
            }
        }
    }
}

/// Hands notifications to the local fan-out, one at a time and in the order they arrived, so
/// a stored payload (which takes a read) is not overtaken by a later message of its stream.
async fn run_dispatcher(
    inner: Arc<Inner>,
    inbound: Inbound,
    mut notes: mpsc::UnboundedReceiver<Note>,
) {
    // A new connection's first notification can follow a note the old one never delivered the
    // payload of; the channel check keeps a wrong pairing from happening.
    let mut trace = PendingTrace::default();
    loop {
        let note = tokio::select! {
            _ = inner.stop.cancelled() => break,
            note = notes.recv() => match note {
                Some(note) => note,
                None => break,
            },
        };
        if note.channel == TRACE_CHANNEL {
            trace.noted(&note.payload);
            continue;
        }
        let sent = trace.take_for(&note.channel);
        let stream = inner.lock_desired().channels.get(&note.channel).cloned();
        let Some(stream) = stream else {
            tracing::trace!(
                channel = note.channel,
                "ignoring a notification of a channel not listened to"
            );
            continue;
        };
        match wire::large_payload_id(&note.payload) {
            None => {
                let reached = deliver(&inbound, &stream, &note.payload, sent);
                tracing::trace!(stream, reached, "delivered a notification");
            }
            Some(id) => match inner.fetch_large(id, &note.channel).await {
                Ok(payload) => {
                    let reached = deliver(&inbound, &stream, &payload, sent);
                    tracing::trace!(
                        stream,
                        reached,
                        bytes = payload.len(),
                        "delivered a stored payload"
                    );
                }
                Err(error) => {
                    tracing::error!(
                        stream,
                        id,
                        error,
                        "dropping a large payload that cannot be read"
                    );
                }
            },
        }
    }
}

/// Delivers with the publish time when the message came with a trace note.
fn deliver(inbound: &Inbound, stream: &str, payload: &str, sent: Option<SystemTime>) -> usize {
    match sent {
        Some(sent) => inbound.deliver_traced(stream, payload, None, sent),
        None => inbound.deliver(stream, payload),
    }
}
