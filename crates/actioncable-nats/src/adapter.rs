//! [`NatsPubSub`]: the adapter, its connection's life, one subscription per local stream, and
//! the history kept in JetStream.

use crate::config::{NatsConfig, NatsConfigError};
use crate::error::NatsError;
use crate::history::{self, After, Head};
use crate::wire::{
    self, EPOCH_HEADER, EXPECTED_LAST_HEADER, Naming, Notices, PREV_HEADER, SENT_HEADER,
};
use actioncable::PubSubError;
use actioncable::pubsub::{
    AdapterEvent, Backoff, History, HistorySettings, Inbound, Kept, Position, PubSub,
};
use async_nats::connection::State;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::stream::{LastRawMessageErrorKind, Stream};
use async_nats::jetstream::{self, ErrorCode};
use async_nats::{Client, ConnectOptions, Event, HeaderMap, RequestErrorKind, Subscriber};
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt as _;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, SystemTime};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout, timeout_at};
use tokio_util::sync::CancellationToken;

/// The NATS pub/sub adapter. See the [crate docs](crate) for how it works.
///
/// Cloning gives another handle to the same adapter (keep one to ask
/// [`is_connected`](Self::is_connected) after handing a clone to the cable).
///
/// ```no_run
/// use actioncable::Cable;
/// use actioncable_nats::{NatsConfig, NatsPubSub};
///
/// async fn doc_main() -> Result<(), Box<dyn std::error::Error>> {
///     let nats = NatsPubSub::new(
///         NatsConfig::from_url("nats://127.0.0.1:4222")?
///             .channel_prefix(Some("myapp_production".into())),
///     );
///     let cable = Cable::builder().pubsub(nats.clone()).build()?;
///     cable.handle().broadcast("chat:lobby", &"hello").await?;
///     assert!(nats.is_connected());
///     Ok(())
/// }
/// ```
#[derive(Clone)]
pub struct NatsPubSub {
    inner: Arc<Inner>,
}

struct Inner {
    config: NatsConfig,
    naming: Naming,
    /// Set by `start`; the client reconnects by itself for the adapter's whole life.
    client: OnceLock<Client>,
    link: watch::Sender<Link>,
    /// The local streams' subscriptions: each read by a task of its own, stopped by its token.
    streams: Mutex<HashMap<String, Reader>>,
    /// Where received messages go, set by `start`.
    inbound: OnceLock<Inbound>,
    /// Set when the cable keeps history.
    history: OnceLock<Arc<HistoryState>>,
    notices: Notices,
    syncs: AtomicU64,
    started: AtomicBool,
    stop: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// The connection as the adapter sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// Not connected (yet, or any more) since `since`; the client is connecting.
    Down { since: Instant },
    /// Connected, and every subscription is in place on the server.
    Up,
    /// The adapter was shut down.
    Closed,
}

struct Reader {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl NatsPubSub {
    /// An adapter for `config`. It connects when the cable starts it.
    pub fn new(config: NatsConfig) -> NatsPubSub {
        let inner = Inner {
            naming: config.naming(),
            config,
            client: OnceLock::new(),
            link: watch::Sender::new(Link::Down {
                since: Instant::now(),
            }),
            streams: Mutex::new(HashMap::new()),
            inbound: OnceLock::new(),
            history: OnceLock::new(),
            notices: Notices::default(),
            syncs: AtomicU64::new(0),
            started: AtomicBool::new(false),
            stop: CancellationToken::new(),
            tasks: Mutex::new(Vec::new()),
        };
        NatsPubSub {
            inner: Arc::new(inner),
        }
    }

    /// An adapter configured by [`NatsConfig::from_env`].
    ///
    /// # Errors
    /// As [`NatsConfig::from_env`].
    pub fn from_env() -> Result<NatsPubSub, NatsConfigError> {
        Ok(NatsPubSub::new(NatsConfig::from_env()?))
    }

    /// The configuration.
    pub fn config(&self) -> &NatsConfig {
        &self.inner.config
    }

    /// Whether the connection is up and every local stream's subscription is in place on the
    /// server. Useful for a readiness probe; broadcasts fail while this is `false` for longer
    /// than the publish timeout.
    pub fn is_connected(&self) -> bool {
        *self.inner.link.borrow() == Link::Up
    }
}

impl fmt::Debug for NatsPubSub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsPubSub")
            .field("config", &self.inner.config)
            .field("connected", &self.is_connected())
            .field("streams", &self.inner.lock_streams().len())
            .finish()
    }
}

impl Inner {
    fn lock_streams(&self) -> MutexGuard<'_, HashMap<String, Reader>> {
        // Single inserts and removals: a poisoned map is still consistent.
        self.streams.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let handle = tokio::spawn(task);
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(handle);
    }

    fn not_running(&self) -> Option<PubSubError> {
        if self.stop.is_cancelled() {
            Some(PubSubError::Closed)
        } else if !self.started.load(Ordering::Acquire) {
            Some(PubSubError::Unavailable(
                "the NATS adapter was not started".into(),
            ))
        } else {
            None
        }
    }

    /// The client once the connection is up, waiting until `deadline` (or, with `None`, a
    /// publish timeout after the connection was lost: during a longer outage it fails at once).
    async fn up(&self, deadline: Option<Instant>) -> Result<Client, PubSubError> {
        if let Some(e) = self.not_running() {
            return Err(e);
        }
        let mut changes = self.link.subscribe();
        loop {
            let link = *changes.borrow_and_update();
            let since = match link {
                Link::Closed => return Err(PubSubError::Closed),
                Link::Down { since } => since,
                Link::Up => {
                    let client = self
                        .client
                        .get()
                        .ok_or_else(|| PubSubError::Unavailable("no NATS client yet".into()))?;
                    if client.connection_state() == State::Connected {
                        return Ok(client.clone());
                    }
                    // The client lost the connection a moment ago and the event is on its
                    // way: nothing is handed to it meanwhile (it would sit in the client's
                    // queue until the connection is back).
                    Instant::now()
                }
            };
            let deadline = deadline.unwrap_or(since + self.config.publish_timeout);
            let unavailable = || {
                PubSubError::Unavailable(format!(
                    "no NATS connection (down for {:.1?})",
                    since.elapsed()
                ))
            };
            if Instant::now() >= deadline {
                return Err(unavailable());
            }
            match timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(PubSubError::Closed),
                Err(_) => return Err(unavailable()),
            }
        }
    }

    /// One round trip to the server on the client's connection: a request nobody answers,
    /// which the server turns down ("no responders") after everything sent before it on this
    /// connection (subscriptions included) has been processed.
    async fn sync(&self, client: &Client) -> Result<(), String> {
        let n = self.syncs.fetch_add(1, Ordering::Relaxed);
        let subject = self.naming.sync_subject(n);
        match client.request(subject, Bytes::new()).await {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == RequestErrorKind::NoResponders => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Publishes one message and flushes it to the server within the publish timeout.
    async fn send(
        &self,
        subject: String,
        headers: Option<HeaderMap>,
        payload: &str,
    ) -> Result<(), PubSubError> {
        let client = self.up(None).await?;
        check_size(&client, headers.as_ref(), payload.len())?;
        let deadline = Instant::now() + self.config.publish_timeout;
        let payload = Bytes::copy_from_slice(payload.as_bytes());
        let sent = match headers {
            Some(headers) => {
                timeout_at(
                    deadline,
                    client.publish_with_headers(subject, headers, payload),
                )
                .await
            }
            None => timeout_at(deadline, client.publish(subject, payload)).await,
        };
        match sent {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(publish_error(&e.kind(), e.to_string())),
            Err(_) => return Err(self.too_slow()),
        }
        match timeout_at(deadline, client.flush()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(PubSubError::Unavailable(format!("NATS flush failed: {e}"))),
            Err(_) => Err(self.too_slow()),
        }
    }

    fn too_slow(&self) -> PubSubError {
        PubSubError::Unavailable(format!(
            "NATS did not take the broadcast within {:?}",
            self.config.publish_timeout
        ))
    }
}

/// Refuses a message larger than the server's `max_payload` with a clear error, before
/// anything is sent.
fn check_size(
    client: &Client,
    headers: Option<&HeaderMap>,
    payload: usize,
) -> Result<(), PubSubError> {
    let max = client.server_info().max_payload;
    let size = payload + headers.map_or(0, wire::headers_len);
    if max > 0 && size > max {
        return Err(PubSubError::Backend(Box::new(NatsError::PayloadTooLarge {
            size,
            max,
        })));
    }
    Ok(())
}

fn publish_error(kind: &async_nats::client::PublishErrorKind, reason: String) -> PubSubError {
    match kind {
        async_nats::client::PublishErrorKind::MaxPayloadExceeded => {
            PubSubError::Backend(Box::new(NatsError::Refused {
                what: "the broadcast",
                reason,
            }))
        }
        _ => PubSubError::Unavailable(format!("NATS publish failed: {reason}")),
    }
}

/// Reads one stream's subscription until told to stop (or the connection is closed for good);
/// dropping the subscription unsubscribes it.
async fn read_stream(
    stream: String,
    mut subscriber: Subscriber,
    inbound: Inbound,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            message = subscriber.next() => match message {
                Some(m) => wire::deliver(&inbound, &stream, &m.payload, m.headers.as_ref()),
                None => break,
            },
        }
    }
}

/// Reads AnyCable's subject.
async fn read_anycable(inner: Arc<Inner>, mut subscriber: Subscriber, inbound: Inbound) {
    loop {
        tokio::select! {
            biased;
            _ = inner.stop.cancelled() => break,
            message = subscriber.next() => match message {
                Some(m) => {
                    let reached = wire::deliver_anycable(&inbound, &inner.notices, &m.payload);
                    tracing::trace!(reached, "delivered an AnyCable broadcast");
                }
                None => break,
            },
        }
    }
}

/// The client's reconnection delays: the first attempt at once, then [`Backoff`]'s
/// (doubling, with jitter) from the configured minimum to the maximum.
fn reconnect_delay(min: Duration, max: Duration) -> impl Fn(usize) -> Duration + Send + Sync {
    move |attempt| {
        if attempt <= 1 {
            return Duration::ZERO;
        }
        let mut backoff = Backoff::new(min, max);
        let mut delay = backoff.next_delay();
        for _ in 2..attempt.min(64) {
            delay = backoff.next_delay();
        }
        delay
    }
}

/// Connects, subscribes AnyCable's subject, and follows the connection's events for the
/// adapter's life: the link state, logs, and the cable's adapter events.
async fn run_link(inner: Arc<Inner>, inbound: Inbound) {
    let config = &inner.config;
    let (events, mut events_rx) = mpsc::unbounded_channel::<Event>();
    let mut options = ConnectOptions::new()
        .name(config.client_name())
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(config.connect_timeout)
        .ping_interval(config.health_check_interval)
        .request_timeout(Some(config.subscribe_timeout))
        .reconnect_delay_callback(reconnect_delay(config.backoff_min, config.backoff_max))
        .event_callback(move |event| {
            let events = events.clone();
            async move {
                let _ = events.send(event);
            }
        });
    options = config.apply_auth(options);
    if let Some(path) = &config.tls_root_certificates {
        options = options.add_root_certificates(path.clone());
    }
    // With `retry_on_initial_connect` this returns at once; the client connects (and later
    // reconnects and resubscribes) by itself.
    let client = match options.connect(config.servers.clone()).await {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, "the NATS client could not be set up");
            inner.link.send_replace(Link::Closed);
            return;
        }
    };
    let _ = inner.client.set(client.clone());
    if let Some(subject) = &config.anycable_subject {
        match client.subscribe(subject.clone()).await {
            Ok(subscriber) => {
                tracing::debug!(subject, "listening to AnyCable broadcasts");
                inner.spawn(read_anycable(inner.clone(), subscriber, inbound.clone()));
            }
            Err(e) => tracing::error!(subject, error = %e, "cannot subscribe AnyCable's subject"),
        }
    }
    let mut ever_up = false;
    // Set while connected but the round trip that proves the subscriptions are in place has
    // not come back yet.
    let mut settling: Option<Instant> = None;
    let mut retry = Backoff::new(config.backoff_min, config.backoff_max);
    loop {
        let settle_at = settling.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            _ = inner.stop.cancelled() => break,
            _ = tokio::time::sleep_until(settle_at), if settling.is_some() => {
                // Resubscriptions are queued before this request: once it is answered,
                // every stream is live again.
                match timeout(config.connect_timeout, inner.sync(&client)).await {
                    Ok(Ok(())) => {
                        settling = None;
                        if let Some(state) = inner.history.get() {
                            // A restarted server may have lost the history stream.
                            state.forget_stream().await;
                        }
                        inner.link.send_replace(Link::Up);
                        if ever_up {
                            tracing::info!("NATS connection restored; subscriptions in place");
                            inbound.report(AdapterEvent::Reconnected);
                        } else {
                            tracing::info!(server = %client.server_info().host, "connected to NATS");
                        }
                        ever_up = true;
                        retry = Backoff::new(config.backoff_min, config.backoff_max);
                    }
                    failed => {
                        let error = match failed {
                            Ok(Err(e)) => e,
                            _ => "no answer".to_owned(),
                        };
                        tracing::warn!(
                            error,
                            "connected to NATS, but a round trip to the server failed; retrying \
                             (is publishing to `{}._sync.*` allowed?)",
                            config.subject_prefix
                        );
                        settling = Some(Instant::now() + retry.next_delay());
                    }
                }
            }
            event = events_rx.recv() => match event {
                None => break,
                Some(Event::Connected) => settling = Some(Instant::now()),
                Some(Event::Disconnected) => {
                    settling = None;
                    let was_up = *inner.link.borrow() == Link::Up;
                    inner.link.send_replace(Link::Down { since: Instant::now() });
                    if was_up {
                        tracing::warn!("NATS connection lost; reconnecting");
                        inbound.report(AdapterEvent::Error);
                    }
                }
                Some(Event::Closed) => {
                    inner.link.send_replace(Link::Closed);
                    break;
                }
                Some(Event::ServerError(e)) => {
                    tracing::warn!(error = %e, "NATS server error");
                    inbound.report(AdapterEvent::Error);
                }
                Some(Event::ClientError(e)) => {
                    tracing::debug!(error = %e, "NATS connection attempt failed");
                }
                Some(Event::SlowConsumer(sid)) => {
                    tracing::warn!(sid, "a NATS subscription fell behind; messages were dropped");
                    inbound.report(AdapterEvent::Error);
                }
                Some(Event::LameDuckMode) => {
                    tracing::info!("the NATS server is shutting down (lame duck mode); the client will move");
                }
                Some(other) => tracing::debug!(event = %other, "NATS client event"),
            },
        }
    }
}

#[async_trait]
impl PubSub for NatsPubSub {
    fn is_connected(&self) -> bool {
        NatsPubSub::is_connected(self)
    }

    fn start(&self, inbound: Inbound) -> Result<(), PubSubError> {
        let inner = &self.inner;
        inner
            .config
            .validate()
            .map_err(|e| PubSubError::Backend(Box::new(e)))?;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(PubSubError::Backend(
                "the NATS adapter must be started inside a Tokio runtime".into(),
            ));
        }
        if inner.started.swap(true, Ordering::AcqRel) {
            return Err(PubSubError::Backend(
                "this NatsPubSub was already started (use one per cable)".into(),
            ));
        }
        // rustls needs a process-wide crypto provider for `tls://` servers; keep one the app
        // installed.
        let _ = async_nats::rustls::crypto::ring::default_provider().install_default();
        inner.link.send_replace(Link::Down {
            since: Instant::now(),
        });
        {
            let mut streams = inner.lock_streams();
            streams.clear();
        }
        let _ = inner.inbound.set(inbound.clone());
        inner.spawn(run_link(inner.clone(), inbound));
        tracing::debug!(config = ?inner.config, "NATS pub/sub adapter started");
        Ok(())
    }

    async fn subscribe(&self, stream: &str) -> Result<(), PubSubError> {
        let inner = &self.inner;
        let deadline = Instant::now() + inner.config.subscribe_timeout;
        let client = inner.up(Some(deadline)).await?;
        let subject = inner.naming.subject(stream);
        let subscriber = match timeout_at(deadline, client.subscribe(subject)).await {
            Ok(Ok(subscriber)) => subscriber,
            Ok(Err(e)) => {
                return Err(PubSubError::Backend(Box::new(NatsError::Refused {
                    what: "the subscription",
                    reason: e.to_string(),
                })));
            }
            Err(_) => {
                return Err(PubSubError::Unavailable(
                    "the NATS client did not take the subscription in time".into(),
                ));
            }
        };
        // The server has the subscription once a later request of ours comes back.
        match timeout_at(deadline, inner.sync(&client)).await {
            Ok(Ok(())) => {}
            failed => {
                // Dropping `subscriber` unsubscribes it: the stream is not subscribed.
                let reason = match failed {
                    Ok(Err(e)) => e,
                    _ => format!("no answer within {:?}", inner.config.subscribe_timeout),
                };
                tracing::warn!(stream, error = reason, "NATS subscription failed");
                return Err(PubSubError::Unavailable(format!(
                    "NATS did not confirm the subscription: {reason}"
                )));
            }
        }
        let Some(inbound) = inner.inbound.get().cloned() else {
            return Err(PubSubError::Unavailable(
                "the NATS adapter was not started".into(),
            ));
        };
        let stop = inner.stop.child_token();
        let task = tokio::spawn(read_stream(
            stream.to_owned(),
            subscriber,
            inbound,
            stop.clone(),
        ));
        if let Some(old) = inner
            .lock_streams()
            .insert(stream.to_owned(), Reader { stop, task })
        {
            old.stop.cancel();
        }
        Ok(())
    }

    async fn unsubscribe(&self, stream: &str) -> Result<(), PubSubError> {
        if let Some(reader) = self.inner.lock_streams().remove(stream) {
            // The reader stops before its next message and drops the subscription, which
            // unsubscribes it (after a reconnection it is not resubscribed either).
            reader.stop.cancel();
        }
        Ok(())
    }

    async fn publish(&self, stream: &str, payload: &str) -> Result<(), PubSubError> {
        self.inner
            .send(self.inner.naming.subject(stream), None, payload)
            .await
    }

    /// The publish time travels in a header (`Cable-Sent`), which clients and AnyCable-format
    /// consumers never see.
    async fn publish_traced(
        &self,
        stream: &str,
        payload: &str,
        sent: SystemTime,
    ) -> Result<(), PubSubError> {
        let mut headers = HeaderMap::new();
        headers.insert(SENT_HEADER, wire::sent_value(sent).as_str());
        self.inner
            .send(self.inner.naming.subject(stream), Some(headers), payload)
            .await
    }

    async fn shutdown(&self) -> Result<(), PubSubError> {
        let inner = &self.inner;
        inner.stop.cancel();
        inner.link.send_replace(Link::Closed);
        let readers: Vec<Reader> = inner.lock_streams().drain().map(|(_, r)| r).collect();
        for reader in &readers {
            reader.stop.cancel();
        }
        if let Some(client) = inner.client.get()
            && timeout(inner.config.publish_timeout, client.drain())
                .await
                .is_err()
        {
            tracing::debug!("the NATS connection did not drain in time");
        }
        for reader in readers {
            reader.task.abort();
        }
        let tasks: Vec<JoinHandle<()>> =
            std::mem::take(&mut *inner.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for task in tasks {
            task.abort();
        }
        Ok(())
    }

    fn history(&self, settings: &HistorySettings) -> Result<Arc<dyn History>, PubSubError> {
        let inner = &self.inner;
        let state = inner
            .history
            .get_or_init(|| Arc::new(HistoryState::new(&inner.config, *settings)))
            .clone();
        if state.settings != *settings {
            return Err(PubSubError::Backend(
                format!(
                    "this NatsPubSub already keeps history with {:?}",
                    state.settings
                )
                .into(),
            ));
        }
        Ok(Arc::new(NatsHistory {
            inner: inner.clone(),
            state,
        }))
    }
}

/// What this node knows of the history stream (see `history.rs`).
struct HistoryState {
    settings: HistorySettings,
    name: String,
    stream_config: jetstream::stream::Config,
    context: OnceLock<jetstream::Context>,
    /// The history stream once created or updated (forgotten after a reconnection, since a
    /// restarted server may have lost it).
    stream: tokio::sync::Mutex<Option<Stream<()>>>,
    /// Per broadcast stream: this node's kept broadcasts one at a time, and the stream's
    /// chain head as this node last saw it (`None`: read it from JetStream).
    heads: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Head>>>>>,
}

/// Broadcast streams whose heads are remembered before the idle ones are forgotten.
const HEADS: usize = 4096;

/// Attempts at a kept broadcast while other nodes keep getting theirs in first.
const KEEP_ATTEMPTS: usize = 32;

/// Why a history read failed.
enum ReadError {
    /// JetStream does not know the history stream (a restarted server without it).
    StreamLost,
    Failed(PubSubError),
}

impl From<PubSubError> for ReadError {
    fn from(e: PubSubError) -> Self {
        ReadError::Failed(e)
    }
}

impl HistoryState {
    fn new(config: &NatsConfig, settings: HistorySettings) -> HistoryState {
        let name = config.history_stream_name();
        HistoryState {
            stream_config: history::stream_config(
                &config.naming(),
                &name,
                &settings,
                config.history_storage,
                config.history_replicas,
            ),
            name,
            settings,
            context: OnceLock::new(),
            stream: tokio::sync::Mutex::new(None),
            heads: Mutex::new(HashMap::new()),
        }
    }

    async fn forget_stream(&self) {
        *self.stream.lock().await = None;
    }

    fn context(&self, client: &Client, timeout: Duration) -> jetstream::Context {
        self.context
            .get_or_init(|| {
                jetstream::ContextBuilder::new()
                    .timeout(timeout)
                    .build(client.clone())
            })
            .clone()
    }

    /// The history stream, created (or its settings updated) once per connection.
    async fn stream(
        &self,
        client: &Client,
        timeout: Duration,
        deadline: Instant,
    ) -> Result<Stream<()>, PubSubError> {
        let mut slot = match timeout_at(deadline, self.stream.lock()).await {
            Ok(slot) => slot,
            Err(_) => return Err(slow("the history stream")),
        };
        if let Some(stream) = &*slot {
            return Ok(stream.clone());
        }
        let context = self.context(client, timeout);
        match timeout_at(
            deadline,
            context.create_or_update_stream(self.stream_config.clone()),
        )
        .await
        {
            Ok(Ok(_info)) => {}
            Ok(Err(e)) => {
                use async_nats::jetstream::context::CreateStreamErrorKind as Kind;
                return Err(match e.kind() {
                    Kind::TimedOut | Kind::JetStreamUnavailable => PubSubError::Unavailable(
                        format!("JetStream unavailable for the history stream: {e}"),
                    ),
                    _ => PubSubError::Backend(Box::new(NatsError::Refused {
                        what: "the history stream",
                        reason: e.to_string(),
                    })),
                });
            }
            Err(_) => return Err(slow("the history stream")),
        }
        let stream = context.get_stream_no_info(&self.name).await.map_err(|e| {
            PubSubError::Backend(Box::new(NatsError::Refused {
                what: "the history stream",
                reason: e.to_string(),
            }))
        })?;
        tracing::debug!(stream = self.name, "history stream ready");
        *slot = Some(stream.clone());
        Ok(stream)
    }

    fn head(&self, stream: &str) -> Arc<tokio::sync::Mutex<Option<Head>>> {
        let mut heads = self.heads.lock().unwrap_or_else(|p| p.into_inner());
        if heads.len() >= HEADS {
            // Forget the streams nobody is publishing to right now.
            heads.retain(|_, head| Arc::strong_count(head) > 1);
        }
        heads.entry(stream.to_owned()).or_default().clone()
    }
}

fn slow(what: &str) -> PubSubError {
    PubSubError::Unavailable(format!("JetStream did not answer for {what} in time"))
}

/// A raw-message read's failure.
fn read_error(e: &async_nats::jetstream::stream::LastRawMessageError) -> ReadError {
    if let LastRawMessageErrorKind::JetStream(js) = e.kind()
        && js.error_code() == ErrorCode::STREAM_NOT_FOUND
    {
        return ReadError::StreamLost;
    }
    ReadError::Failed(PubSubError::Unavailable(format!(
        "history read failed: {e}"
    )))
}

/// The stream kept in JetStream (see `history.rs`): shares the adapter's connection.
struct NatsHistory {
    inner: Arc<Inner>,
    state: Arc<HistoryState>,
}

impl NatsHistory {
    /// The message at or after `from` on `subject` (`None`: there is none).
    async fn next(
        stream: &Stream<()>,
        subject: &str,
        from: u64,
        deadline: Instant,
    ) -> Result<Option<async_nats::jetstream::message::StreamMessage>, ReadError> {
        let read = stream
            .raw_message_builder()
            .sequence(from)
            .next_by_subject(subject.to_owned())
            .send();
        match timeout_at(deadline, read).await {
            Ok(Ok(message)) => Ok(Some(message)),
            Ok(Err(e)) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Ok(Err(e)) => Err(read_error(&e)),
            Err(_) => Err(slow("a history read").into()),
        }
    }

    /// The last message on `subject`.
    async fn last(
        stream: &Stream<()>,
        subject: &str,
        deadline: Instant,
    ) -> Result<Option<async_nats::jetstream::message::StreamMessage>, ReadError> {
        match timeout_at(deadline, stream.get_last_raw_message_by_subject(subject)).await {
            Ok(Ok(message)) => Ok(Some(message)),
            Ok(Err(e)) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Ok(Err(e)) => Err(read_error(&e)),
            Err(_) => Err(slow("a history read").into()),
        }
    }

    /// Runs `read` on the history stream, once more if JetStream lost the stream meanwhile.
    async fn reading<T, F, Fut>(&self, read: F) -> Result<T, PubSubError>
    where
        F: Fn(Stream<()>, Instant) -> Fut,
        Fut: Future<Output = Result<T, ReadError>>,
    {
        let inner = &self.inner;
        let client = inner.up(None).await?;
        let limit = inner.config.publish_timeout;
        let deadline = Instant::now() + limit;
        let mut lost_once = false;
        loop {
            let stream = self.state.stream(&client, limit, deadline).await?;
            match read(stream, deadline).await {
                Ok(value) => return Ok(value),
                Err(ReadError::StreamLost) if !lost_once => {
                    lost_once = true;
                    self.state.forget_stream().await;
                }
                Err(ReadError::StreamLost) => {
                    return Err(PubSubError::Unavailable(
                        "JetStream lost the history stream".into(),
                    ));
                }
                Err(ReadError::Failed(e)) => return Err(e),
            }
        }
    }

    /// Keeps `payload` at the end of `stream`'s chain (see `history.rs`), with its publish time
    /// when `sent`.
    async fn keep(
        &self,
        stream: &str,
        payload: &str,
        sent: Option<SystemTime>,
    ) -> Result<Position, PubSubError> {
        let inner = &self.inner;
        let client = inner.up(None).await?;
        let limit = inner.config.publish_timeout;
        let deadline = Instant::now() + limit;
        let subject = inner.naming.history_subject(stream);
        let slot = self.state.head(stream);
        let Ok(mut head) = timeout_at(deadline, slot.lock()).await else {
            return Err(inner.too_slow());
        };
        let context = self.state.context(&client, limit);
        let payload = Bytes::copy_from_slice(payload.as_bytes());
        let mut lost_once = false;
        for _ in 0..KEEP_ATTEMPTS {
            let js_stream = self.state.stream(&client, limit, deadline).await?;
            if head.is_none() {
                *head = match Self::last(&js_stream, &subject, deadline).await {
                    // A last message without an epoch is not ours: start a new chain after it.
                    Ok(Some(last)) => Some(Head::of(&last).unwrap_or_else(|| Head {
                        sequence: last.sequence,
                        epoch: Arc::from(history::fresh_epoch()),
                    })),
                    Ok(None) => None,
                    Err(ReadError::StreamLost) if !lost_once => {
                        lost_once = true;
                        self.state.forget_stream().await;
                        continue;
                    }
                    Err(ReadError::StreamLost) => {
                        return Err(PubSubError::Unavailable(
                            "JetStream lost the history stream".into(),
                        ));
                    }
                    Err(ReadError::Failed(e)) => return Err(e),
                };
            }
            let (prev, epoch) = match &*head {
                Some(h) => (h.sequence, h.epoch.clone()),
                // Nothing kept: a new epoch.
                None => (0, Arc::from(history::fresh_epoch())),
            };
            let prev_text = prev.to_string();
            let mut headers = HeaderMap::new();
            headers.insert(EXPECTED_LAST_HEADER, prev_text.as_str());
            headers.insert(PREV_HEADER, prev_text.as_str());
            headers.insert(EPOCH_HEADER, &*epoch);
            if let Some(sent) = sent {
                headers.insert(SENT_HEADER, wire::sent_value(sent).as_str());
            }
            check_size(&client, Some(&headers), payload.len())?;
            let published = match timeout_at(
                deadline,
                context.publish_with_headers(subject.clone(), headers, payload.clone()),
            )
            .await
            {
                Ok(Ok(ack)) => match timeout_at(deadline, ack).await {
                    Ok(result) => result,
                    Err(_) => return Err(inner.too_slow()),
                },
                Ok(Err(e)) => Err(e),
                Err(_) => return Err(inner.too_slow()),
            };
            match published {
                Ok(ack) => {
                    *head = Some(Head {
                        sequence: ack.sequence,
                        epoch: epoch.clone(),
                    });
                    return Ok(Position {
                        epoch,
                        offset: ack.sequence,
                    });
                }
                Err(e) => match e.kind() {
                    // Another node kept one first: read the new head and go on from it.
                    PublishErrorKind::WrongLastSequence => *head = None,
                    PublishErrorKind::StreamNotFound if !lost_once => {
                        lost_once = true;
                        *head = None;
                        self.state.forget_stream().await;
                    }
                    PublishErrorKind::MaxPayloadExceeded => {
                        return Err(PubSubError::Backend(Box::new(NatsError::Refused {
                            what: "the kept broadcast",
                            reason: e.to_string(),
                        })));
                    }
                    PublishErrorKind::TimedOut
                    | PublishErrorKind::BrokenPipe
                    | PublishErrorKind::StreamNotFound => {
                        return Err(PubSubError::Unavailable(format!(
                            "JetStream did not keep the broadcast: {e}"
                        )));
                    }
                    _ => {
                        return Err(PubSubError::Backend(Box::new(NatsError::Refused {
                            what: "the kept broadcast",
                            reason: e.to_string(),
                        })));
                    }
                },
            }
        }
        Err(PubSubError::Unavailable(format!(
            "other nodes kept broadcasts to this stream first {KEEP_ATTEMPTS} times in a row"
        )))
    }
}

#[async_trait]
impl History for NatsHistory {
    async fn publish(&self, stream: &str, payload: &str) -> Result<Position, PubSubError> {
        self.keep(stream, payload, None).await
    }

    /// The publish time is kept in a header with the message and republished with it.
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
        let subject = self.inner.naming.history_subject(stream);
        let most = self.state.settings.limit.saturating_add(64);
        self.reading(|js_stream, deadline| {
            let subject = subject.clone();
            async move {
                let last = Self::last(&js_stream, &subject, deadline).await?;
                let head = last.as_ref().and_then(Head::of);
                match history::after_head(head.as_ref(), epoch, offset) {
                    After::Refused => return Ok(None),
                    After::UpToDate => return Ok(Some(Vec::new())),
                    After::ReadOn => {}
                }
                let newest = head.map_or(0, |h| h.sequence);
                let Some(first) = Self::next(&js_stream, &subject, offset + 1, deadline).await?
                else {
                    // Expired meanwhile.
                    return Ok(None);
                };
                if !history::continues(&first, epoch, offset) {
                    return Ok(None);
                }
                let mut sequence = first.sequence;
                let mut out = vec![history::kept(first)?];
                while sequence < newest && out.len() < most {
                    let Some(message) =
                        Self::next(&js_stream, &subject, sequence + 1, deadline).await?
                    else {
                        break;
                    };
                    if wire::epoch_of(&message.headers) != Some(epoch) {
                        break;
                    }
                    sequence = message.sequence;
                    out.push(history::kept(message)?);
                }
                Ok(Some(out))
            }
        })
        .await
    }

    async fn since(&self, stream: &str, unix_secs: u64) -> Result<Vec<Kept>, PubSubError> {
        let subject = self.inner.naming.history_subject(stream);
        let most = self.state.settings.limit.saturating_add(64);
        self.reading(|js_stream, deadline| {
            let subject = subject.clone();
            async move {
                let mut out = Vec::new();
                let mut from = 0;
                for _ in 0..most {
                    let Some(message) = Self::next(&js_stream, &subject, from, deadline).await?
                    else {
                        break;
                    };
                    from = message.sequence + 1;
                    let recent =
                        u64::try_from(message.time.unix_timestamp()).is_ok_and(|t| t >= unix_secs);
                    if recent && wire::epoch_of(&message.headers).is_some() {
                        out.push(history::kept(message)?);
                    }
                }
                Ok(out)
            }
        })
        .await
    }
}

impl fmt::Debug for NatsHistory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsPubSub history")
            .field("stream", &self.state.name)
            .field("settings", &self.state.settings)
            .finish_non_exhaustive()
    }
}
