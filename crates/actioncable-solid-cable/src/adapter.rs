//! [`SolidCablePubSub`]: the adapter. Subscribed streams, the one poller task, publishing and
//! trimming.

use crate::config::{SolidCableConfig, SolidCableConfigError};
use crate::db::{DbError, Failure, NewRow};
use crate::link::{Link, Role};
use crate::sql::Poll;
use crate::window::Window;
use crate::wire::{Timestamp, channel_hash, channel_name, trims};
use actioncable::PubSubError;
use actioncable::pubsub::{AdapterEvent, Backoff, Inbound, PubSub};
use async_trait::async_trait;
use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher as _, Hasher as _};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, SystemTime};
use tokio::sync::Mutex as AsyncMutex;
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout, timeout_at};
use tokio_util::sync::CancellationToken;

/// The longest one poll may take before its connection is given up.
const POLL_TIMEOUT: Duration = Duration::from_secs(10);

/// The Solid Cable adapter. See the [crate docs](crate) for how it works.
///
/// Cloning gives another handle to the same adapter (keep one to ask
/// [`is_connected`](Self::is_connected) after handing a clone to the cable).
///
/// ```no_run
/// use actioncable::Cable;
/// use actioncable_solid_cable::{SolidCableConfig, SolidCablePubSub};
///
/// async fn doc_main() -> Result<(), Box<dyn std::error::Error>> {
///     let solid = SolidCablePubSub::new(SolidCableConfig::from_url(
///         "postgres://app@127.0.0.1/app_production_cable",
///     )?);
///     let cable = Cable::builder().pubsub(solid.clone()).build()?;
///     cable.handle().broadcast("chat:lobby", &"hello").await?;
///     assert!(solid.is_connected());
///     Ok(())
/// }
/// ```
#[derive(Clone)]
pub struct SolidCablePubSub {
    inner: Arc<Inner>,
}

struct Inner {
    config: SolidCableConfig,
    /// The subscribed streams by channel (the stored bytes, prefix included).
    streams: Mutex<HashMap<Vec<u8>, Entry>>,
    /// Which ids the poller still looks at; made with the first largest id read.
    window: Mutex<Option<Window>>,
    poller: AsyncMutex<Link>,
    publisher: AsyncMutex<Link>,
    poller_up: AtomicBool,
    publisher_up: AtomicBool,
    /// The poller lost its connection: the publisher pings before its next insert.
    publisher_suspect: AtomicBool,
    /// A task is bringing the publisher's connection back.
    reviving: AtomicBool,
    /// A trim is running.
    trimming: AtomicBool,
    random: RandomState,
    draws: AtomicU64,
    inbound: OnceLock<Inbound>,
    started: AtomicBool,
    stop: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// A subscribed stream.
#[derive(Debug)]
struct Entry {
    stream: String,
    hash: i64,
    /// The largest id when it was subscribed: only later rows are its messages.
    start: i64,
}

impl SolidCablePubSub {
    /// An adapter for `config`. It connects when the cable starts it.
    pub fn new(config: SolidCableConfig) -> SolidCablePubSub {
        let inner = Inner {
            poller: AsyncMutex::new(Link::new(Role::Poller, &config)),
            publisher: AsyncMutex::new(Link::new(Role::Publisher, &config)),
            config,
            streams: Mutex::new(HashMap::new()),
            window: Mutex::new(None),
            poller_up: AtomicBool::new(false),
            publisher_up: AtomicBool::new(false),
            publisher_suspect: AtomicBool::new(false),
            reviving: AtomicBool::new(false),
            trimming: AtomicBool::new(false),
            random: RandomState::new(),
            draws: AtomicU64::new(0),
            inbound: OnceLock::new(),
            started: AtomicBool::new(false),
            stop: CancellationToken::new(),
            tasks: Mutex::new(Vec::new()),
        };
        SolidCablePubSub {
            inner: Arc::new(inner),
        }
    }

    /// An adapter configured by [`SolidCableConfig::from_env`] (`CABLE_DATABASE_URL` or
    /// `DATABASE_URL`, `CABLE_CHANNEL_PREFIX`, `SOLID_CABLE_*`).
    ///
    /// # Errors
    /// As [`SolidCableConfig::from_env`].
    pub fn from_env() -> Result<SolidCablePubSub, SolidCableConfigError> {
        Ok(SolidCablePubSub::new(SolidCableConfig::from_env()?))
    }

    /// The configuration.
    pub fn config(&self) -> &SolidCableConfig {
        &self.inner.config
    }

    /// Whether both connections (poller and publisher) answered their last statement. Useful
    /// for a readiness probe; broadcasts fail while the database is away.
    pub fn is_connected(&self) -> bool {
        self.inner.poller_up.load(Ordering::Acquire)
            && self.inner.publisher_up.load(Ordering::Acquire)
    }
}

impl fmt::Debug for SolidCablePubSub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SolidCablePubSub")
            .field("config", &self.inner.config)
            .field("connected", &self.is_connected())
            .field("streams", &self.inner.lock_streams().len())
            .finish()
    }
}

fn to_pubsub(e: &DbError, what: &str) -> PubSubError {
    match e.kind {
        Failure::Connection | Failure::Busy => {
            PubSubError::Unavailable(format!("{what}: {}", e.message))
        }
        Failure::Refused => {
            PubSubError::Backend(format!("the database refused {what}: {}", e.message).into())
        }
    }
}

impl Inner {
    // Every update of these maps is a single insert or remove, so a poisoned lock still holds
    // a consistent map.
    fn lock_streams(&self) -> MutexGuard<'_, HashMap<Vec<u8>, Entry>> {
        self.streams.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_window(&self) -> MutexGuard<'_, Option<Window>> {
        self.window.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn not_running(&self) -> Option<PubSubError> {
        if self.stop.is_cancelled() {
            Some(PubSubError::Closed)
        } else if !self.started.load(Ordering::Acquire) {
            Some(PubSubError::Unavailable(
                "the Solid Cable adapter was not started".into(),
            ))
        } else {
            None
        }
    }

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let handle = tokio::spawn(task);
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.retain(|t| !t.is_finished());
        tasks.push(handle);
    }

    fn report(&self, event: AdapterEvent) {
        if let Some(inbound) = self.inbound.get() {
            inbound.report(event);
        }
    }

    /// `id` is committed now: the poller may settle up to it once the commit window passed.
    fn mark(&self, id: i64) {
        let mut window = self.lock_window();
        let window = window.get_or_insert_with(|| Window::new(id, self.config.commit_window));
        window.mark(id, Instant::now());
    }

    /// A uniform number in `[0, 1)` for the trim's chance.
    fn draw(&self) -> f64 {
        let mut hasher = self.random.build_hasher();
        hasher.write_u64(self.draws.fetch_add(1, Ordering::Relaxed));
        (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Brings the publisher's connection back in the background (after an outage the
    /// poller saw end), so that readiness and the next broadcast need not wait for it.
    fn revive_publisher(self: &Arc<Self>) {
        if self.reviving.swap(true, Ordering::AcqRel) {
            return;
        }
        let inner = self.clone();
        self.spawn(async move {
            let limit = inner
                .config
                .publish_timeout
                .max(inner.config.connect_timeout);
            let mut link = inner.publisher.lock().await;
            if inner.publisher_suspect.swap(false, Ordering::AcqRel) {
                link.suspect();
            }
            let outcome = timeout(limit, async { link.conn().await.map(drop) }).await;
            match outcome {
                Ok(Ok(())) => inner.publisher_up.store(true, Ordering::Release),
                Ok(Err(e)) => {
                    link.failed(&e);
                    inner.publisher_up.store(false, Ordering::Release);
                }
                Err(_) => {
                    link.close();
                    inner.publisher_up.store(false, Ordering::Release);
                }
            }
            drop(link);
            inner.reviving.store(false, Ordering::Release);
        });
    }

    /// Deletes old rows in the background, at most one trim at a time.
    fn trim(self: &Arc<Self>) {
        if self.trimming.swap(true, Ordering::AcqRel) {
            return;
        }
        let inner = self.clone();
        self.spawn(async move {
            let config = &inner.config;
            let cutoff = Timestamp::before(SystemTime::now(), config.message_retention);
            // Publishes wait for the connection meanwhile: no longer than one of them may take.
            let limit = config.publish_timeout;
            let mut link = inner.publisher.lock().await;
            let outcome = timeout(limit, async {
                let conn = link.conn().await?;
                conn.trim(cutoff, config.trim_batch_size, config.use_skip_locked)
                    .await
            })
            .await;
            match outcome {
                Ok(Ok(deleted)) => {
                    tracing::debug!(deleted, cutoff = %cutoff.to_rails(), "trimmed old rows");
                }
                Ok(Err(e)) => {
                    link.failed(&e);
                    inner.report(AdapterEvent::Error);
                    tracing::warn!(error = %e, "trimming old rows failed");
                }
                Err(_) => {
                    link.close();
                    inner.report(AdapterEvent::Error);
                    tracing::warn!("trimming old rows took longer than {limit:?}");
                }
            }
            drop(link);
            inner.trimming.store(false, Ordering::Release);
        });
    }
}

#[async_trait]
impl PubSub for SolidCablePubSub {
    fn is_connected(&self) -> bool {
        SolidCablePubSub::is_connected(self)
    }

    fn start(&self, inbound: Inbound) -> Result<(), PubSubError> {
        let inner = &self.inner;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(PubSubError::Backend(
                "the Solid Cable adapter must be started inside a Tokio runtime".into(),
            ));
        }
        if inner.started.swap(true, Ordering::AcqRel) {
            return Err(PubSubError::Backend(
                "this SolidCablePubSub was already started (use one per cable)".into(),
            ));
        }
        let _ = inner.inbound.set(inbound.clone());
        inner.spawn(run_poller(inner.clone(), inbound));
        inner.revive_publisher();
        tracing::debug!(config = ?inner.config, "Solid Cable pub/sub adapter started");
        Ok(())
    }

    async fn subscribe(&self, stream: &str) -> Result<(), PubSubError> {
        let inner = &self.inner;
        if let Some(e) = inner.not_running() {
            return Err(e);
        }
        let channel = channel_name(inner.config.prefix(), stream).into_bytes();
        let deadline = Instant::now() + inner.config.subscribe_timeout;
        let unavailable = |why: String| {
            tracing::warn!(stream, error = why, "cannot subscribe");
            PubSubError::Unavailable(why)
        };
        // The largest id now: rows above it are this stream's messages from now on, as the
        // gem's `add_channel` (`channels[channel] = last_message_id`).
        let start = loop {
            let Ok(mut link) = timeout_at(deadline, inner.poller.lock()).await else {
                return Err(unavailable("the poller's connection stayed busy".into()));
            };
            let read = timeout_at(deadline, async { link.conn().await?.max_id().await }).await;
            let error = match read {
                Ok(Ok(id)) => break id,
                Ok(Err(e)) => {
                    link.failed(&e);
                    e
                }
                Err(_) => {
                    link.close();
                    return Err(unavailable(format!(
                        "no answer from the database within {:?}",
                        inner.config.subscribe_timeout
                    )));
                }
            };
            if error.kind == Failure::Refused {
                return Err(to_pubsub(&error, "reading the largest id"));
            }
            let retry = link
                .retry_at()
                .unwrap_or_else(|| Instant::now() + Duration::from_millis(50));
            drop(link);
            if retry >= deadline {
                return Err(unavailable(format!(
                    "no database within {:?}: {error}",
                    inner.config.subscribe_timeout
                )));
            }
            tokio::time::sleep_until(retry).await;
        };
        // The window first: one made by the poller after this stream is registered would start
        // above this stream's start.
        inner.mark(start);
        let hash = channel_hash(&channel);
        inner.lock_streams().insert(
            channel,
            Entry {
                stream: stream.to_owned(),
                hash,
                start,
            },
        );
        Ok(())
    }

    async fn unsubscribe(&self, stream: &str) -> Result<(), PubSubError> {
        let inner = &self.inner;
        if let Some(e) = inner.not_running() {
            return Err(e);
        }
        let channel = channel_name(inner.config.prefix(), stream).into_bytes();
        inner.lock_streams().remove(&channel);
        Ok(())
    }

    async fn publish(&self, stream: &str, payload: &str) -> Result<(), PubSubError> {
        let inner = &self.inner;
        if let Some(e) = inner.not_running() {
            return Err(e);
        }
        let config = &inner.config;
        let channel = channel_name(config.prefix(), stream);
        let row = NewRow {
            channel: channel.as_bytes(),
            payload: payload.as_bytes(),
            channel_hash: channel_hash(channel.as_bytes()),
            created_at: Timestamp::now(),
        };
        let deadline = Instant::now() + config.publish_timeout;
        let Ok(mut link) = timeout_at(deadline, inner.publisher.lock()).await else {
            inner.report(AdapterEvent::Error);
            return Err(PubSubError::Unavailable(format!(
                "the publisher's connection stayed busy for {:?}",
                config.publish_timeout
            )));
        };
        if inner.publisher_suspect.swap(false, Ordering::AcqRel) {
            link.suspect();
        }
        let inserted = timeout_at(deadline, async { link.conn().await?.insert(&row).await }).await;
        let error = match inserted {
            Ok(Ok(id)) => {
                drop(link);
                inner.publisher_up.store(true, Ordering::Release);
                inner.mark(id);
                if config.autotrim
                    && trims(config.trim_chance, config.trim_batch_size, inner.draw())
                {
                    inner.trim();
                }
                return Ok(());
            }
            Ok(Err(e)) => {
                link.failed(&e);
                to_pubsub(&e, "the insert")
            }
            Err(_) => {
                // The statement's outcome is unknown, and the connection may be mid-reply.
                link.close();
                PubSubError::Unavailable(format!(
                    "no answer to the insert within {:?}",
                    config.publish_timeout
                ))
            }
        };
        if !link.is_up() {
            inner.publisher_up.store(false, Ordering::Release);
        }
        drop(link);
        inner.report(AdapterEvent::Error);
        tracing::debug!(stream, error = %error, "broadcast not stored");
        Err(error)
    }

    async fn shutdown(&self) -> Result<(), PubSubError> {
        let inner = &self.inner;
        inner.stop.cancel();
        let tasks = std::mem::take(&mut *inner.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for task in tasks {
            if timeout(Duration::from_secs(2), task).await.is_err() {
                tracing::warn!("a Solid Cable adapter task did not stop in time");
            }
        }
        inner.poller.lock().await.close();
        inner.publisher.lock().await.close();
        inner.poller_up.store(false, Ordering::Release);
        inner.publisher_up.store(false, Ordering::Release);
        Ok(())
    }
}

/// The one poller of this node: every polling interval, one query for the rows of all
/// subscribed streams; delivers them, in id order, to the local subscribers.
async fn run_poller(inner: Arc<Inner>, inbound: Inbound) {
    let config = &inner.config;
    // Paces polls that the database refused (a missing table, say); a lost connection is
    // paced by its link's own backoff.
    let mut refused = Backoff::new(config.backoff_min, config.backoff_max);
    let mut failing_since: Option<Instant> = None;
    loop {
        let outcome = tokio::select! {
            _ = inner.stop.cancelled() => break,
            outcome = poll_once(&inner, &inbound) => outcome,
        };
        let pause = match outcome {
            Ok(full) => {
                refused = Backoff::new(config.backoff_min, config.backoff_max);
                inner.poller_up.store(true, Ordering::Release);
                if let Some(since) = failing_since.take() {
                    tracing::info!(down_for = ?since.elapsed(), "polling the database again");
                    inbound.report(AdapterEvent::Reconnected);
                }
                if !inner.publisher_up.load(Ordering::Acquire) {
                    inner.revive_publisher();
                }
                if full {
                    Duration::ZERO
                } else {
                    config.polling_interval
                }
            }
            Err((error, retry_at)) => {
                if failing_since.is_none() {
                    failing_since = Some(Instant::now());
                    inbound.report(AdapterEvent::Error);
                    tracing::warn!(error = %error, "polling the database failed");
                } else {
                    tracing::debug!(error = %error, "polling the database failed again");
                }
                if error.kind == Failure::Connection {
                    inner.poller_up.store(false, Ordering::Release);
                    inner.publisher_suspect.store(true, Ordering::Release);
                    match retry_at {
                        Some(at) => at.saturating_duration_since(Instant::now()),
                        // The link reconnects at once on its first attempt.
                        None => Duration::ZERO,
                    }
                } else {
                    refused.next_delay()
                }
            }
        };
        if pause.is_zero() {
            tokio::task::yield_now().await;
            continue;
        }
        tokio::select! {
            _ = inner.stop.cancelled() => break,
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

/// One poll. `Ok(true)` when it read a full batch (poll again at once); on failure, the error
/// and when the link may try to connect again.
async fn poll_once(
    inner: &Arc<Inner>,
    inbound: &Inbound,
) -> Result<bool, (DbError, Option<Instant>)> {
    let config = &inner.config;
    let mut link = inner.poller.lock().await;
    let read = timeout(POLL_TIMEOUT, read_rows(inner, &mut link)).await;
    let (started, rows) = match read {
        Ok(Ok(read)) => read,
        Ok(Err(e)) => {
            link.failed(&e);
            return Err((e, link.retry_at()));
        }
        Err(_) => {
            link.close();
            let e = DbError::new(
                Failure::Connection,
                format!("no answer to a poll within {POLL_TIMEOUT:?}"),
            );
            return Err((e, None));
        }
    };
    drop(link);
    let full = rows.len() >= config.poll_batch_size as usize;
    let last = rows.last().map(|row| row.id);
    let received = rows.len();
    let mut deliveries = Vec::new();
    {
        let now = Instant::now();
        let mut window = inner.lock_window();
        let streams = inner.lock_streams();
        if let Some(window) = window.as_mut() {
            for row in rows {
                if !window.take(row.id, now) {
                    continue;
                }
                // The exact channel: rows of another channel with the same hash are passed
                // over.
                match streams.get(&row.channel) {
                    Some(entry) if row.id > entry.start => {
                        deliveries.push((entry.stream.clone(), row.id, row.payload));
                    }
                    _ => {}
                }
            }
            window.settle(started, if full { last } else { None });
        }
    }
    let delivered = deliveries.len();
    for (stream, id, payload) in deliveries {
        match String::from_utf8(payload) {
            Ok(text) => {
                let reached = inbound.deliver(&stream, &text);
                tracing::trace!(stream, id, reached, "delivered a row");
            }
            Err(_) => {
                tracing::error!(stream, id, "dropping a row whose payload is not UTF-8");
            }
        }
    }
    if !config.silence_polling {
        tracing::debug!(received, delivered, "polled");
    }
    Ok(full)
}

/// Reads the next rows of the subscribed streams; also when the poll started (its snapshot
/// of the table is at least that recent).
async fn read_rows(
    inner: &Inner,
    link: &mut Link,
) -> Result<(Instant, Vec<crate::db::Row>), DbError> {
    let config = &inner.config;
    let conn = link.conn().await?;
    let ready = inner.lock_window().is_some();
    if !ready {
        // The gem's listener starts from the largest id too (`@last_id = last_message_id`).
        let low = conn.max_id().await?;
        inner
            .lock_window()
            .get_or_insert_with(|| Window::new(low, config.commit_window));
    }
    let (low, exclude, settled, young, young_after) = {
        let window = inner.lock_window();
        let streams = inner.lock_streams();
        let (low, exclude) = match window.as_ref() {
            Some(w) => (w.low(), w.handled().collect::<Vec<_>>()),
            None => (0, Vec::new()),
        };
        let mut settled = Vec::new();
        let mut young = Vec::new();
        let mut young_after = i64::MAX;
        for entry in streams.values() {
            if entry.start <= low {
                settled.push(entry.hash);
            } else {
                young.push(entry.hash);
                young_after = young_after.min(entry.start);
            }
        }
        (low, exclude, settled, young, young_after)
    };
    let poll = Poll {
        low,
        settled: &settled,
        young: &young,
        young_after: if young.is_empty() { low } else { young_after },
        exclude: &exclude,
        limit: config.poll_batch_size,
    };
    let started = Instant::now();
    let rows = conn.poll(&poll).await?;
    Ok((started, rows))
}
