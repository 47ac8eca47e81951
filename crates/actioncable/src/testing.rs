//! Testing channels and connections without sockets (feature `testing`), in the spirit of
//! Rails' `ActionCable::Channel::TestCase` / `Connection::TestCase` and Phoenix's
//! `ChannelTest`.
//!
//! A [`TestCable`] is built from the same [`CableBuilder`] the app uses, with an in-memory
//! pub/sub adapter that also records every broadcast. Its connections run the server's own
//! command code — callbacks, typed params and actions, `rescue`, streams, filters, timers,
//! server-side unsubscribes — minus the WebSocket, so a test reads like a Rails channel test
//! and runs in microseconds:
//!
//! ```
//! use actioncable::testing::{TestCable, TestRequest};
//! use actioncable::{async_trait, Cable, Channel, ChannelContext, ChannelError, ConnectRequest, Connection, Identity, Reject};
//! use serde::Deserialize;
//! use serde_json::json;
//!
//! struct UserFromCookie;
//!
//! #[async_trait]
//! impl Connection for UserFromCookie {
//!     async fn connect(&self, req: &ConnectRequest) -> Result<Identity, Reject> {
//!         let user = req.cookie("user_id").ok_or(Reject::Unauthorized)?;
//!         Ok(Identity::new("current_user", user))
//!     }
//! }
//!
//! #[derive(Deserialize)]
//! struct Room { room: String }
//!
//! #[derive(Deserialize)]
//! #[serde(tag = "action", rename_all = "snake_case")]
//! enum ChatAction { Speak { text: String } }
//!
//! struct ChatChannel { room: String }
//!
//! #[async_trait]
//! impl Channel for ChatChannel {
//!     const CLASS: &'static str = "ChatChannel";
//!     type Params = Room;
//!     type Action = ChatAction;
//!
//!     async fn subscribed(ctx: &mut ChannelContext, p: Room) -> Result<Self, ChannelError> {
//!         ctx.stream_from(format!("chat:{}", p.room)).await?;
//!         Ok(ChatChannel { room: p.room })
//!     }
//!
//!     async fn perform(&mut self, ctx: &mut ChannelContext, action: ChatAction) -> Result<(), ChannelError> {
//!         let ChatAction::Speak { text } = action;
//!         let user = ctx.identity().get("current_user").unwrap_or_default().to_owned();
//!         ctx.broadcast(format!("chat:{}", self.room), &json!({ "user": user, "text": text })).await?;
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let cable = TestCable::new(Cable::builder().connection(UserFromCookie).channel::<ChatChannel>())?;
//!
//! // Connection tests: rejected without the cookie, identified with it.
//! assert!(cable.connect(TestRequest::new()).await.is_err());
//! let conn = cable.connect(TestRequest::new().cookie("user_id", "42")).await?;
//! assert_eq!(conn.identity().get("current_user"), Some("42"));
//!
//! // Channel tests: subscribe, check streams, perform, check broadcasts and transmissions.
//! let sub = conn.subscribe::<ChatChannel>(json!({ "room": "lobby" })).await;
//! assert!(sub.is_confirmed());
//! assert!(sub.has_stream("chat:lobby"));
//! sub.perform("speak", json!({ "text": "hi" })).await?;
//! assert_eq!(cable.broadcasts("chat:lobby"), vec![json!({ "user": "42", "text": "hi" })]);
//! assert_eq!(sub.transmissions(), vec![json!({ "user": "42", "text": "hi" })]);
//! # Ok(()) }
//! ```
//!
//! **Time.** Periodic timers run on Tokio's clock. Start the test with a paused clock
//! (`#[tokio::test(start_paused = true)]`) and call [`TestConnection::advance`] to move it
//! forward and run whatever timers came due, deterministically.

use crate::auth::CookieKey;
use crate::channel::{Channel, ChannelContext};
use crate::connection::{ConnectRequest, ConnectionId, ConnectionRef, Identity, Reject};
use crate::error::{ChannelError, ConfigError, PubSubError};
use crate::handle::CableHandle;
use crate::outbox::{Control, Frames};
use crate::protocol::{Command, Extras};
use crate::pubsub::history::MemoryHistory;
use crate::pubsub::presence::MemoryPresence;
use crate::pubsub::{
    History, HistorySettings, Inbound, Kept, Position, Presence, PresenceSettings, PubSub,
};
use crate::server::dispatch::Dispatcher;
use crate::server::{Cable, CableBuilder, Shared};
use crate::sync::lock;
use async_trait::async_trait;
use serde::Serialize;
use serde_json::{Map, Value};
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio_util::sync::{CancellationToken, DropGuard};

/// A cable for tests: the app's builder, an in-memory adapter that records broadcasts, and
/// connections without sockets.
pub struct TestCable<S = ()> {
    cable: Cable<S>,
    recorder: Arc<RecordingPubSub>,
    open: Open<S>,
}

/// The cable's test connections, so that moving the clock runs every connection's timers.
type Open<S> = Arc<Mutex<Vec<Weak<Inner<S>>>>>;

impl<S: Send + Sync + 'static> TestCable<S> {
    /// Builds `builder` with a recording in-memory pub/sub adapter in place of its own.
    ///
    /// # Errors
    /// As [`CableBuilder::build`].
    pub fn new(builder: CableBuilder<S>) -> Result<TestCable<S>, ConfigError> {
        let recorder = Arc::new(RecordingPubSub::default());
        let cable = builder.pubsub(recorder.clone()).build()?;
        Ok(TestCable {
            cable,
            recorder,
            open: Arc::default(),
        })
    }

    /// The server handle, to broadcast as the app would.
    pub fn handle(&self) -> CableHandle {
        self.cable.handle()
    }

    /// Runs the app's `Connection::connect` on `request`: the connection, or the rejection.
    ///
    /// # Errors
    /// [`Reject`] when `connect` rejects the request.
    pub async fn connect(&self, request: TestRequest) -> Result<TestConnection<S>, Reject> {
        let shared = self.shared();
        let identity = shared.connection.connect(&request.into_request()).await?;
        Ok(self.open(identity, false).await)
    }

    /// A connection with `identity`, without running `connect` (Rails' `stub_connection`).
    pub async fn connect_as(&self, identity: Identity) -> TestConnection<S> {
        self.open(identity, false).await
    }

    /// As [`connect_as`](Self::connect_as), for a client of the extended protocol
    /// (`actioncable-v1-ext-json`): with history on the cable, its stream deliveries carry
    /// `stream_id`, `epoch` and `offset`.
    pub async fn connect_ext_as(&self, identity: Identity) -> TestConnection<S> {
        self.open(identity, true).await
    }

    async fn open(&self, identity: Identity, ext: bool) -> TestConnection<S> {
        let shared = self.shared();
        let id = shared.handle.registry().next_id();
        let (dispatcher, frames) = Dispatcher::open(shared, Arc::new(identity), id, ext).await;
        let stop = CancellationToken::new();
        let connection = dispatcher.connection.clone();
        let inner = Arc::new(Inner {
            dispatcher: tokio::sync::Mutex::new(Some(dispatcher)),
            ext,
            log: Mutex::new(Log {
                queue: frames,
                frames: Vec::new(),
            }),
            connection,
            open: self.open.clone(),
            _driver: stop.clone().drop_guard(),
        });
        spawn_driver(&inner, stop);
        let mut open = lock(&self.open);
        open.retain(|w| w.strong_count() > 0);
        open.push(Arc::downgrade(&inner));
        TestConnection { inner }
    }

    /// Moves Tokio's (paused) clock forward by `duration` and runs the timers of every
    /// connection that came due, tick by tick.
    ///
    /// # Panics
    /// Unless the clock is paused (`#[tokio::test(start_paused = true)]`).
    pub async fn advance(&self, duration: Duration) {
        advance(&self.open, duration).await;
    }

    /// Every message broadcast on `stream` so far, in order, from anywhere.
    pub fn broadcasts(&self, stream: &str) -> Vec<Value> {
        lock(&self.recorder.log)
            .iter()
            .filter(|(s, _)| s == stream)
            .filter_map(|(_, json)| serde_json::from_str(json).ok())
            .collect()
    }

    /// Forgets the broadcasts recorded so far.
    pub fn clear_broadcasts(&self) {
        lock(&self.recorder.log).clear();
    }

    fn shared(&self) -> Arc<Shared<S>> {
        self.cable.shared.clone()
    }
}

impl<S> fmt::Debug for TestCable<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestCable").finish_non_exhaustive()
    }
}

/// An upgrade request for [`TestCable::connect`]: cookies, headers, query params, address.
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct TestRequest {
    path: String,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    cookies: Vec<(String, String)>,
    remote: Option<SocketAddr>,
}

impl TestRequest {
    /// A request for `/cable` with nothing in it.
    pub fn new() -> TestRequest {
        TestRequest {
            path: "/cable".into(),
            ..TestRequest::default()
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Adds a plain cookie.
    pub fn cookie(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.cookies.push((name.into(), value.into()));
        self
    }

    /// Adds a cookie signed with `key`, as [`CookieKey::signed_set_cookie`] would set it.
    pub fn signed_cookie(self, key: &CookieKey, name: &str, value: &str) -> Self {
        let mut jar = cookie::CookieJar::new();
        jar.signed_mut(key.inner())
            .add(cookie::Cookie::new(name.to_owned(), value.to_owned()));
        self.jar_cookie(&jar, name)
    }

    /// Adds a cookie encrypted with `key`, as [`CookieKey::private_set_cookie`] would set it.
    pub fn private_cookie(self, key: &CookieKey, name: &str, value: &str) -> Self {
        let mut jar = cookie::CookieJar::new();
        jar.private_mut(key.inner())
            .add(cookie::Cookie::new(name.to_owned(), value.to_owned()));
        self.jar_cookie(&jar, name)
    }

    fn jar_cookie(self, jar: &cookie::CookieJar, name: &str) -> Self {
        match jar.get(name) {
            Some(c) => self.cookie(name, c.value()),
            None => self,
        }
    }

    /// Adds a query parameter (`/cable?token=…`).
    pub fn query(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.query.push((name.into(), value.into()));
        self
    }

    /// Sets the peer's address.
    pub fn remote_addr(mut self, addr: SocketAddr) -> Self {
        self.remote = Some(addr);
        self
    }

    fn into_request(self) -> ConnectRequest {
        let mut uri = self.path;
        if !self.query.is_empty() {
            let query = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(&self.query)
                .finish();
            uri = format!("{uri}?{query}");
        }
        let mut builder = http::Request::get(uri);
        for (name, value) in &self.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        if !self.cookies.is_empty() {
            let cookie = self
                .cookies
                .iter()
                .map(|(n, v)| {
                    cookie::Cookie::new(n.as_str(), v.as_str())
                        .encoded()
                        .to_string()
                })
                .collect::<Vec<_>>()
                .join("; ");
            builder = builder.header(http::header::COOKIE, cookie);
        }
        let request = match builder.body(()) {
            Ok(request) => request,
            // Only an invalid header name or value gets here: a bug in the test itself.
            Err(e) => panic!("TestRequest: invalid request: {e}"),
        };
        let (parts, ()) = request.into_parts();
        ConnectRequest::new(parts, self.remote)
    }
}

/// A connection without a socket; its [`TestSubscription`]s share it.
pub struct TestConnection<S = ()> {
    inner: Arc<Inner<S>>,
}

struct Inner<S> {
    /// `None` once disconnected.
    dispatcher: tokio::sync::Mutex<Option<Dispatcher<S>>>,
    /// Whether the client speaks the extended protocol (its frames decode as such).
    ext: bool,
    log: Mutex<Log>,
    connection: ConnectionRef,
    open: Open<S>,
    /// Stops the task that runs this connection's timer ticks.
    _driver: DropGuard,
}

struct Log {
    /// The connection's frame queue, drained into `frames`.
    queue: Frames,
    /// Every frame sent to the client, decoded.
    frames: Vec<Value>,
}

impl Log {
    fn drain(&mut self) -> &[Value] {
        while let Some(frame) = self.queue.try_recv() {
            if let Ok(value) = serde_json::from_str(frame.as_str()) {
                self.frames.push(value);
            }
        }
        &self.frames
    }
}

impl<S: Send + Sync + 'static> TestConnection<S> {
    /// Who the connection belongs to.
    pub fn identity(&self) -> &Identity {
        self.inner.connection.identity()
    }

    /// The connection's id, for [`CableHandle::broadcast_except`] and friends.
    pub fn id(&self) -> ConnectionId {
        self.inner.connection.id()
    }

    /// The live connection, as the server sees it.
    pub fn connection(&self) -> &ConnectionRef {
        &self.inner.connection
    }

    /// Subscribes to channel `C` with `params` (a JSON object; `channel` is added).
    pub async fn subscribe<C: Channel<S>>(&self, params: Value) -> TestSubscription<S> {
        let mut identifier = match params {
            Value::Object(map) => map,
            Value::Null => Map::new(),
            other => {
                let mut map = Map::new();
                map.insert("params".into(), other);
                map
            }
        };
        identifier.remove("channel");
        // The `channel` key first, as the stock consumer sends it.
        let mut ordered = Map::new();
        ordered.insert("channel".into(), Value::String(C::CLASS.into()));
        ordered.extend(identifier);
        self.subscribe_identifier(&Value::Object(ordered).to_string())
            .await
    }

    /// Subscribes with a raw identifier, exactly as a client would send it.
    pub async fn subscribe_identifier(&self, identifier: &str) -> TestSubscription<S> {
        let _ = self
            .command(Command::Subscribe {
                identifier: identifier.to_owned(),
            })
            .await;
        TestSubscription {
            inner: self.inner.clone(),
            identifier: identifier.to_owned(),
        }
    }

    /// Sends a raw text frame as the client would: decoded (by the extended protocol's rules
    /// for a [`connect_ext_as`](TestCable::connect_ext_as) connection, so a `subscribe` may
    /// carry `history`), then run like any command. Frames that do not decode are ignored, as
    /// the server ignores them.
    pub async fn send_frame(&self, frame: &str) {
        let decoded = if self.inner.ext {
            Command::decode_ext(frame)
        } else {
            Command::decode(frame).map(|command| (command, Extras::default()))
        };
        if let Ok((command, extras)) = decoded {
            let _ = self.inner.command_with(command, extras).await;
        }
    }

    /// Every frame the client has been sent, decoded (confirmations, transmissions, stream
    /// deliveries, connection-level frames, pings, disconnects), oldest first.
    pub fn frames(&self) -> Vec<Value> {
        lock(&self.inner.log).drain().to_vec()
    }

    /// Forgets every frame sent to the client so far (Rails' `transmissions.clear`): later
    /// calls to [`frames`](Self::frames) and `transmissions` see only what comes next.
    pub fn clear_frames(&self) {
        let mut log = lock(&self.inner.log);
        while log.queue.try_recv().is_some() {}
        log.frames.clear();
    }

    /// Frames sent outside any subscription through [`ConnectionRef::transmit`], pings left out.
    pub fn connection_transmissions(&self) -> Vec<Value> {
        self.frames()
            .into_iter()
            .filter(|f| f.get("identifier").is_none() && f.get("type") != Some(&"ping".into()))
            .collect()
    }

    /// Moves Tokio's (paused) clock forward by `duration` and runs the timers that came due,
    /// on every connection of the cable (the clock is shared), as [`TestCable::advance`].
    ///
    /// # Panics
    /// Unless the clock is paused (`#[tokio::test(start_paused = true)]`).
    pub async fn advance(&self, duration: Duration) {
        advance(&self.inner.open, duration).await;
    }

    /// Runs pending control events (due timers, server-side unsubscribes) of every connection
    /// of the cable.
    pub async fn settle(&self) {
        settle(&self.inner.open).await;
    }

    /// Closes the connection: every subscription's `unsubscribed` callbacks, then the
    /// connection's `disconnect`.
    pub async fn disconnect(&self) {
        let dispatcher = self.inner.dispatcher.lock().await.take();
        if let Some(dispatcher) = dispatcher {
            dispatcher.close().await;
        }
    }

    async fn command(&self, command: Command) -> Result<(), ChannelError> {
        self.inner.command(command).await
    }
}

impl<S: Send + Sync + 'static> Inner<S> {
    async fn command(&self, command: Command) -> Result<(), ChannelError> {
        self.command_with(command, Extras::default()).await
    }

    async fn command_with(&self, command: Command, extras: Extras) -> Result<(), ChannelError> {
        let result = {
            let mut guard = self.dispatcher.lock().await;
            match guard.as_mut() {
                Some(dispatcher) => dispatcher.run_with(command, extras).await,
                None => Err(ChannelError::msg("the test connection is disconnected")),
            }
        };
        settle(&self.open).await;
        result
    }

    /// Runs this connection's queued control events; whether there were any.
    async fn run_control(&self) -> bool {
        let mut ran = false;
        while let Some(event) = self.connection.outbox().try_control() {
            ran = true;
            self.control(event).await;
        }
        ran
    }

    /// Runs one control event, unless the connection is disconnected.
    async fn control(&self, event: Control) {
        if let Some(dispatcher) = self.dispatcher.lock().await.as_mut() {
            dispatcher.control(event).await;
        }
    }
}

fn live<S>(open: &Open<S>) -> Vec<Arc<Inner<S>>> {
    lock(open).iter().filter_map(Weak::upgrade).collect()
}

/// Runs every connection's control events until none is left (bounded).
async fn settle<S: Send + Sync + 'static>(open: &Open<S>) {
    for _ in 0..64 {
        tokio::task::yield_now().await;
        let mut ran = false;
        for inner in live(open) {
            ran |= inner.run_control().await;
        }
        if !ran {
            return;
        }
    }
}

/// Sleeps through `duration` on the paused clock: Tokio then moves time from one timer to the
/// next, in order, and each connection's driver runs its ticks as they come, exactly as they
/// would in real time.
async fn advance<S: Send + Sync + 'static>(open: &Open<S>, duration: Duration) {
    // Panics unless the clock is paused, which is what `advance` needs.
    tokio::time::advance(Duration::ZERO).await;
    tokio::time::sleep(duration).await;
    settle(open).await;
}

/// Runs a connection's control events as they arrive (timer ticks, mostly), like the session
/// task does for a real connection.
fn spawn_driver<S: Send + Sync + 'static>(inner: &Arc<Inner<S>>, stop: CancellationToken) {
    let weak = Arc::downgrade(inner);
    let outbox = inner.connection.outbox().clone();
    tokio::spawn(async move {
        loop {
            let event = tokio::select! {
                () = stop.cancelled() => return,
                event = outbox.next_control() => event,
            };
            let Some(inner) = weak.upgrade() else { return };
            inner.control(event).await;
        }
    });
}

impl<S> Drop for Inner<S> {
    fn drop(&mut self) {
        // Dropped without `disconnect`: at least leave the server's connection list.
        if let Some(dispatcher) = self.dispatcher.get_mut().as_ref() {
            let registry = dispatcher.shared.handle.registry();
            registry.unregister(dispatcher.connection.id());
        }
    }
}

impl<S> fmt::Debug for TestConnection<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestConnection")
            .field("connection", &self.inner.connection)
            .finish_non_exhaustive()
    }
}

/// One subscription of a [`TestConnection`].
pub struct TestSubscription<S = ()> {
    inner: Arc<Inner<S>>,
    identifier: String,
}

impl<S: Send + Sync + 'static> TestSubscription<S> {
    /// The identifier it was subscribed with.
    pub fn identifier(&self) -> &str {
        &self.identifier
    }

    /// Whether the latest answer for this identifier is `confirm_subscription`.
    pub fn is_confirmed(&self) -> bool {
        self.status() == Some("confirm_subscription")
    }

    /// Whether the latest answer for this identifier is `reject_subscription` (rejected at
    /// subscribe time, or ended by the server later).
    pub fn is_rejected(&self) -> bool {
        self.status() == Some("reject_subscription")
    }

    fn status(&self) -> Option<&'static str> {
        let mut log = lock(&self.inner.log);
        log.drain()
            .iter()
            .rev()
            .filter(|f| f["identifier"] == self.identifier.as_str())
            .find_map(|f| match f["type"].as_str() {
                Some("confirm_subscription") => Some("confirm_subscription"),
                Some("reject_subscription") => Some("reject_subscription"),
                _ => None,
            })
    }

    /// The streams the subscription currently streams from.
    pub fn streams(&self) -> Vec<String> {
        self.with_ctx(|ctx| ctx.streams().map(str::to_owned).collect())
            .unwrap_or_default()
    }

    /// Whether it streams from `stream` (Rails' `assert_has_stream`).
    pub fn has_stream(&self, stream: &str) -> bool {
        self.streams().iter().any(|s| s == stream)
    }

    /// The names of its running periodic timers.
    pub fn timers(&self) -> Vec<&'static str> {
        self.with_ctx(|ctx| ctx.timers().collect())
            .unwrap_or_default()
    }

    fn with_ctx<T>(&self, f: impl FnOnce(&ChannelContext<S>) -> T) -> Option<T> {
        let guard = match self.inner.dispatcher.try_lock() {
            Ok(guard) => guard,
            Err(_) => panic!("TestSubscription inspected while one of its commands is running"),
        };
        let dispatcher = guard.as_ref()?;
        dispatcher
            .subscriptions
            .get(self.identifier.as_str())
            .map(|s| f(&s.ctx))
    }

    /// The messages this subscription's client received, oldest first: its transmissions
    /// and its streams' deliveries (the `message` of each frame for this identifier).
    pub fn transmissions(&self) -> Vec<Value> {
        let mut log = lock(&self.inner.log);
        log.drain()
            .iter()
            .filter(|f| f["identifier"] == self.identifier.as_str() && f.get("message").is_some())
            .map(|f| f["message"].clone())
            .collect()
    }

    /// Performs `action` with `data` (a JSON object; `action` is added), as the consumer's
    /// `subscription.perform(action, data)` does. Returns the action's outcome.
    ///
    /// # Errors
    /// What the action (or its `rescue`) returned, or why the data could not be decoded.
    pub async fn perform(&self, action: &str, data: Value) -> Result<(), ChannelError> {
        let mut map = match data {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        map.insert("action".into(), Value::String(action.into()));
        self.send(&Value::Object(map)).await
    }

    /// Sends `data` as the consumer's `subscription.send(data)` does (to `receive` unless it
    /// has an `action`).
    ///
    /// # Errors
    /// As [`perform`](Self::perform).
    pub async fn send<T: Serialize + ?Sized>(&self, data: &T) -> Result<(), ChannelError> {
        let data = serde_json::to_string(data)?;
        self.inner
            .command(Command::Message {
                identifier: self.identifier.clone(),
                data,
            })
            .await
    }

    /// Unsubscribes as the client would.
    pub async fn unsubscribe(&self) {
        let _ = self
            .inner
            .command(Command::Unsubscribe {
                identifier: self.identifier.clone(),
            })
            .await;
    }
}

impl<S> fmt::Debug for TestSubscription<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestSubscription")
            .field("identifier", &self.identifier)
            .finish_non_exhaustive()
    }
}

/// An in-process adapter that delivers each broadcast before `publish` returns (so a test sees
/// its effects at once, deterministically) and records it. The real `MemoryPubSub` delivers on
/// a task of its own, in the same order.
#[derive(Default)]
struct RecordingPubSub {
    inbound: Arc<std::sync::OnceLock<Inbound>>,
    log: Arc<Mutex<Vec<(String, String)>>>,
}

#[async_trait]
impl PubSub for RecordingPubSub {
    fn start(&self, inbound: Inbound) -> Result<(), PubSubError> {
        self.inbound
            .set(inbound)
            .map_err(|_| PubSubError::Backend("the test adapter started twice".into()))
    }

    async fn subscribe(&self, _stream: &str) -> Result<(), PubSubError> {
        Ok(())
    }

    async fn unsubscribe(&self, _stream: &str) -> Result<(), PubSubError> {
        Ok(())
    }

    async fn publish(&self, stream: &str, payload: &str) -> Result<(), PubSubError> {
        lock(&self.log).push((stream.to_owned(), payload.to_owned()));
        let inbound = self.inbound.get().ok_or(PubSubError::Closed)?;
        inbound.deliver(stream, payload);
        Ok(())
    }

    fn presence(&self, _settings: &PresenceSettings) -> Result<Arc<dyn Presence>, PubSubError> {
        Ok(Arc::new(MemoryPresence::new(self.inbound.clone())))
    }

    fn history(&self, settings: &HistorySettings) -> Result<Arc<dyn History>, PubSubError> {
        Ok(Arc::new(RecordingHistory {
            store: MemoryHistory::new(*settings),
            inbound: self.inbound.clone(),
            log: self.log.clone(),
        }))
    }
}

/// The test adapter's history: the in-process store, delivering before `publish` returns.
struct RecordingHistory {
    store: MemoryHistory,
    inbound: Arc<std::sync::OnceLock<Inbound>>,
    log: Arc<Mutex<Vec<(String, String)>>>,
}

#[async_trait]
impl History for RecordingHistory {
    async fn publish(&self, stream: &str, payload: &str) -> Result<Position, PubSubError> {
        lock(&self.log).push((stream.to_owned(), payload.to_owned()));
        let inbound = self.inbound.get().ok_or(PubSubError::Closed)?;
        let (position, _) = self.store.append(stream, payload, |position| {
            inbound.deliver_at(stream, payload, Some(position))
        });
        Ok(position)
    }

    async fn after(
        &self,
        stream: &str,
        epoch: &str,
        offset: u64,
    ) -> Result<Option<Vec<Kept>>, PubSubError> {
        Ok(self.store.after(stream, epoch, offset))
    }

    async fn since(&self, stream: &str, unix_secs: u64) -> Result<Vec<Kept>, PubSubError> {
        Ok(self.store.since(stream, unix_secs))
    }
}

impl fmt::Debug for RecordingHistory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordingHistory").finish_non_exhaustive()
    }
}

impl fmt::Debug for RecordingPubSub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordingPubSub").finish_non_exhaustive()
    }
}
