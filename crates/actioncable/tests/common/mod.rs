//! Shared harness for the whole-server tests: a real cable served by axum on 127.0.0.1:0, a
//! WebSocket client that speaks the ActionCable JSON protocol the way the stock
//! `@rails/actioncable` consumer does, raw-HTTP helpers, and a few small test channels.
//!
//! Every wait is bounded: positive waits use [`WAIT`] (generous, for a loaded machine), "nothing
//! arrives" checks use [`SILENCE`].

// Each test binary uses a different part of this module.
#![allow(dead_code, unreachable_pub)]

use actioncable::AnyAction;
use actioncable::{
    AllowedOrigins, Cable, CableBuilder, CableHandle, Channel, ChannelContext, ChannelError,
    ConnectRequest, Connection, Identity, NoParams, Reject, async_trait,
};
use actioncable::{CookieKey, JwtVerifier};
use axum::serve::ListenerExt as _;
use futures_util::{SinkExt as _, StreamExt as _};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::{self, Message};

/// Upper bound for anything we expect to happen.
pub const WAIT: Duration = Duration::from_secs(10);
/// How long "nothing arrives" is observed.
pub const SILENCE: Duration = Duration::from_millis(300);

/// What the stock consumer offers, in its order.
pub const CONSUMER_PROTOCOLS: &str = "actioncable-v1-json, actioncable-unsupported";

pub const ECHO: &str = r#"{"channel":"EchoChannel"}"#;
pub const LOBBY: &str = r#"{"channel":"ChatChannel","room":"lobby"}"#;
pub const KITCHEN: &str = r#"{"channel":"ChatChannel","room":"kitchen"}"#;
pub const NOTIFICATIONS: &str = r#"{"channel":"NotificationChannel"}"#;
pub const RECEIVER: &str = r#"{"channel":"ReceiveChannel"}"#;

/// Installs a tracing subscriber once (honours `RUST_LOG`; silent by default).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off")),
        )
        .with_test_writer()
        .try_init();
}

// ---------------------------------------------------------------------------------------------
// Events recorded by channels and connections
// ---------------------------------------------------------------------------------------------

/// An append-only log of callback events (`subscribed:<id>`, `unsubscribed:<id>`,
/// `disconnect:<identity>`), shared by the test and the server.
#[derive(Clone, Debug)]
pub struct Recorder {
    events: Arc<Mutex<Vec<String>>>,
    changed: Arc<watch::Sender<()>>,
    /// Permits for `EchoChannel#hold`; see [`Recorder::release`].
    release: Arc<Semaphore>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            events: Arc::default(),
            changed: Arc::new(watch::channel(()).0),
            release: Arc::new(Semaphore::new(0)),
        }
    }
}

impl Recorder {
    pub fn new() -> Recorder {
        Recorder::default()
    }

    pub fn record(&self, event: impl Into<String>) {
        self.events.lock().unwrap().push(event.into());
        self.changed.send_replace(());
    }

    /// Lets one waiting `EchoChannel#hold` action finish.
    pub fn release(&self) {
        self.release.add_permits(1);
    }

    pub fn events(&self) -> Vec<String> {
        self.events.lock().unwrap().clone()
    }

    pub fn count(&self, event: &str) -> usize {
        self.events().iter().filter(|e| *e == event).count()
    }

    /// Waits until `event` has been recorded at least `n` times.
    pub async fn wait_for_n(&self, event: &str, n: usize) {
        let mut rx = self.changed.subscribe();
        let deadline = Instant::now() + WAIT;
        loop {
            rx.borrow_and_update();
            if self.count(event) >= n {
                return;
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                panic!(
                    "timed out waiting for event {event:?} x{n}; recorded: {:?}",
                    self.events()
                );
            }
        }
    }

    /// Waits until `event` has been recorded.
    pub async fn wait_for(&self, event: &str) {
        self.wait_for_n(event, 1).await;
    }
}

/// Polls `cond` until it holds (bounded by [`WAIT`]).
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Runs `fut` with the [`WAIT`] bound.
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match timeout(WAIT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out: {what}"),
    }
}

// ---------------------------------------------------------------------------------------------
// App state, connections and channels
// ---------------------------------------------------------------------------------------------

/// The app state of the test cable: the event log.
#[derive(Debug, Clone)]
pub struct TestState {
    pub rec: Recorder,
}

/// Identity from `?user=` or the `user` cookie; anonymous without either; `banned` is
/// rejected. Records `disconnect:<identity>`.
#[derive(Debug, Clone)]
pub struct TestConnection {
    pub rec: Recorder,
}

#[async_trait]
impl Connection for TestConnection {
    async fn connect(&self, req: &ConnectRequest) -> Result<Identity, Reject> {
        let user = req
            .query("user")
            .or_else(|| req.cookie("user").map(str::to_owned));
        match user.as_deref() {
            Some("banned") => Err(Reject),
            Some(user) => Ok(Identity::new("current_user", user)),
            None => Ok(Identity::anonymous()),
        }
    }

    async fn disconnect(&self, identity: &Identity) {
        self.rec.record(format!("disconnect:{identity}"));
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: u64,
}

/// Authenticates with a JWT in `?token=`.
#[derive(Debug, Clone)]
pub struct JwtConnection {
    pub verifier: JwtVerifier,
    pub rec: Recorder,
}

#[async_trait]
impl Connection for JwtConnection {
    async fn connect(&self, req: &ConnectRequest) -> Result<Identity, Reject> {
        let token = req.query("token").ok_or(Reject)?;
        let claims: Claims = self.verifier.verify(&token)?;
        Ok(Identity::new("current_user", claims.sub))
    }

    async fn disconnect(&self, identity: &Identity) {
        self.rec.record(format!("disconnect:{identity}"));
    }
}

/// Authenticates with the signed cookie `user`.
#[derive(Debug, Clone)]
pub struct CookieConnection {
    pub key: CookieKey,
    pub rec: Recorder,
}

#[async_trait]
impl Connection for CookieConnection {
    async fn connect(&self, req: &ConnectRequest) -> Result<Identity, Reject> {
        let user = req.signed_cookie("user", &self.key).ok_or(Reject)?;
        Ok(Identity::new("current_user", user))
    }

    async fn disconnect(&self, identity: &Identity) {
        self.rec.record(format!("disconnect:{identity}"));
    }
}

fn current_user<S: Send + Sync + 'static>(ctx: &ChannelContext<S>) -> String {
    ctx.identity()
        .get("current_user")
        .unwrap_or("anonymous")
        .to_owned()
}

/// Typed actions; no `receive`.
pub struct EchoChannel;

#[derive(Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum EchoAction {
    /// Transmits `{"echo": payload}`.
    Echo { payload: Value },
    /// Transmits `{"sum": a + b}`.
    Add { a: i64, b: i64 },
    /// Returns an error.
    Fail,
    /// Panics.
    Panic,
    /// Broadcasts `message` to `stream`.
    Broadcast { stream: String, message: Value },
    /// Transmits `{"drip": i}` for i in 0..n, awaiting between transmits (as an action that
    /// pages through a database would).
    Drip { n: u64 },
    /// Records `holding`, waits for [`Recorder::release`], then transmits `{"released": true}`.
    Hold,
}

#[async_trait]
impl Channel<TestState> for EchoChannel {
    const CLASS: &'static str = "EchoChannel";
    type Params = NoParams;
    type Action = EchoAction;

    async fn subscribed(
        ctx: &mut ChannelContext<TestState>,
        _: NoParams,
    ) -> Result<Self, ChannelError> {
        ctx.state()
            .rec
            .record(format!("subscribed:{}", ctx.identifier()));
        Ok(EchoChannel)
    }

    async fn perform(
        &mut self,
        ctx: &mut ChannelContext<TestState>,
        action: EchoAction,
    ) -> Result<(), ChannelError> {
        match action {
            EchoAction::Echo { payload } => ctx.transmit(&json!({ "echo": payload })),
            EchoAction::Add { a, b } => ctx.transmit(&json!({ "sum": a + b })),
            EchoAction::Fail => Err(ChannelError::msg("this action always fails")),
            EchoAction::Panic => panic!("EchoChannel#panic panicked on purpose"),
            EchoAction::Broadcast { stream, message } => {
                ctx.broadcast(stream, &message).await?;
                Ok(())
            }
            EchoAction::Drip { n } => {
                for i in 0..n {
                    ctx.transmit(&json!({ "drip": i }))?;
                    tokio::task::yield_now().await;
                }
                Ok(())
            }
            EchoAction::Hold => {
                let rec = ctx.state().rec.clone();
                rec.record("holding");
                rec.release
                    .acquire()
                    .await
                    .expect("the release semaphore is never closed")
                    .forget();
                ctx.transmit(&json!({ "released": true }))
            }
        }
    }

    async fn unsubscribed(
        &mut self,
        ctx: &mut ChannelContext<TestState>,
    ) -> Result<(), ChannelError> {
        ctx.state()
            .rec
            .record(format!("unsubscribed:{}", ctx.identifier()));
        Ok(())
    }
}

/// `{channel, room}`: rejects a missing or empty room, streams `chat:<room>`.
/// Room `forbidden` starts its stream and then rejects (the stream must be cleaned up).
pub struct ChatChannel {
    room: String,
}

#[derive(Deserialize)]
pub struct RoomParams {
    room: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum ChatAction {
    /// Broadcasts `{"user", "text"}` to the room.
    Speak { text: String },
    /// Transmits `{"user": <current_user>}`.
    Whoami,
    /// `stream_from(stream)`.
    Follow { stream: String },
    /// `stop_stream_from(stream)`.
    StopStream { stream: String },
    /// `stop_all_streams()`.
    StopAll,
    /// Transmits `{"streams": [...]}` (sorted).
    Streams,
}

#[async_trait]
impl Channel<TestState> for ChatChannel {
    const CLASS: &'static str = "ChatChannel";
    type Params = RoomParams;
    type Action = ChatAction;

    async fn subscribed(
        ctx: &mut ChannelContext<TestState>,
        params: RoomParams,
    ) -> Result<Self, ChannelError> {
        let room = match params.room {
            Some(room) if !room.is_empty() => room,
            _ => return Err(ChannelError::reject()),
        };
        ctx.stream_from(format!("chat:{room}")).await?;
        if room.starts_with("announce") {
            // Like the demo's `joined`: a broadcast to its own stream from `subscribed`.
            ctx.broadcast(format!("chat:{room}"), &json!({ "type": "joined" }))
                .await?;
        }
        if room == "forbidden" {
            return Err(ChannelError::reject());
        }
        ctx.state()
            .rec
            .record(format!("subscribed:{}", ctx.identifier()));
        Ok(ChatChannel { room })
    }

    async fn perform(
        &mut self,
        ctx: &mut ChannelContext<TestState>,
        action: ChatAction,
    ) -> Result<(), ChannelError> {
        match action {
            ChatAction::Speak { text } => {
                let msg = json!({ "user": current_user(ctx), "text": text });
                ctx.broadcast(format!("chat:{}", self.room), &msg).await?;
            }
            ChatAction::Whoami => ctx.transmit(&json!({ "user": current_user(ctx) }))?,
            ChatAction::Follow { stream } => ctx.stream_from(stream).await?,
            ChatAction::StopStream { stream } => ctx.stop_stream_from(&stream).await,
            ChatAction::StopAll => ctx.stop_all_streams().await,
            ChatAction::Streams => {
                let mut streams: Vec<&str> = ctx.streams().collect();
                streams.sort_unstable();
                ctx.transmit(&json!({ "streams": streams }))?;
            }
        }
        Ok(())
    }

    async fn unsubscribed(
        &mut self,
        ctx: &mut ChannelContext<TestState>,
    ) -> Result<(), ChannelError> {
        ctx.state()
            .rec
            .record(format!("unsubscribed:{}", ctx.identifier()));
        Ok(())
    }
}

/// `stream_for(current_user)`; rejects anonymous connections.
pub struct NotificationChannel {
    user: String,
}

#[derive(Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum NotificationAction {
    /// `broadcast_to(current_user, {"read": id})`.
    MarkRead { id: u64 },
    /// `stop_stream_for(current_user)`.
    Mute,
}

#[async_trait]
impl Channel<TestState> for NotificationChannel {
    const CLASS: &'static str = "NotificationChannel";
    type Params = NoParams;
    type Action = NotificationAction;

    async fn subscribed(
        ctx: &mut ChannelContext<TestState>,
        _: NoParams,
    ) -> Result<Self, ChannelError> {
        let user = ctx
            .identity()
            .get("current_user")
            .ok_or_else(ChannelError::reject)?
            .to_owned();
        ctx.stream_for(user.as_str()).await?;
        Ok(NotificationChannel { user })
    }

    async fn perform(
        &mut self,
        ctx: &mut ChannelContext<TestState>,
        action: NotificationAction,
    ) -> Result<(), ChannelError> {
        match action {
            NotificationAction::MarkRead { id } => {
                ctx.broadcast_to(self.user.as_str(), &json!({ "read": id }))
                    .await?;
            }
            NotificationAction::Mute => ctx.stop_stream_for(self.user.as_str()).await,
        }
        Ok(())
    }
}

/// Implements `receive` (data without an action); has no actions.
pub struct ReceiveChannel;

#[async_trait]
impl Channel<TestState> for ReceiveChannel {
    const CLASS: &'static str = "ReceiveChannel";
    type Params = NoParams;
    type Action = AnyAction;

    async fn subscribed(
        _: &mut ChannelContext<TestState>,
        _: NoParams,
    ) -> Result<Self, ChannelError> {
        Ok(ReceiveChannel)
    }

    async fn receive(
        &mut self,
        ctx: &mut ChannelContext<TestState>,
        data: Value,
    ) -> Result<(), ChannelError> {
        ctx.transmit(&json!({ "received": data }))
    }
}

/// Panics in `subscribed`.
pub struct PanickyChannel;

#[async_trait]
impl Channel<TestState> for PanickyChannel {
    const CLASS: &'static str = "PanickyChannel";
    type Params = NoParams;
    type Action = AnyAction;

    async fn subscribed(
        ctx: &mut ChannelContext<TestState>,
        _: NoParams,
    ) -> Result<Self, ChannelError> {
        ctx.stream_from("panicky").await?;
        panic!("PanickyChannel#subscribed panicked on purpose");
    }
}

/// The test cable: every test channel, [`TestConnection`], same-origin check, state holding
/// `rec`.
pub fn builder(rec: &Recorder) -> CableBuilder<TestState> {
    Cable::builder_with_state(TestState { rec: rec.clone() })
        .connection(TestConnection { rec: rec.clone() })
        .channel::<EchoChannel>()
        .channel::<ChatChannel>()
        .channel::<NotificationChannel>()
        .channel::<ReceiveChannel>()
        .channel::<PanickyChannel>()
        .allowed_origins(AllowedOrigins::same_origin())
}

// ---------------------------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------------------------

/// A cable served on 127.0.0.1 by `axum::serve`. Dropping it stops accepting connections.
#[derive(Debug)]
pub struct TestServer {
    pub addr: SocketAddr,
    pub handle: CableHandle,
    task: JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestServer {
    /// `ws://<addr><path_and_query>`
    pub fn url(&self, path_and_query: &str) -> String {
        format!("ws://{}{}", self.addr, path_and_query)
    }

    /// The Origin that is same-origin with the Host header our clients send.
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Connects like the stock consumer (both protocols, same-origin `Origin`) to `/cable`,
    /// and checks the welcome.
    pub async fn client(&self) -> CableClient {
        self.client_at("/cable").await
    }

    /// As [`client`](Self::client), with a path and query, e.g. `/cable?user=alice`.
    pub async fn client_at(&self, path_and_query: &str) -> CableClient {
        let mut c = CableClient::connect(self.addr, Connect::new().path(path_and_query))
            .await
            .unwrap_or_else(|e| panic!("connect to {path_and_query}: {e}"));
        c.expect_welcome().await;
        c
    }

    /// A client of user `user` (`?user=`), welcomed.
    pub async fn user(&self, user: &str) -> CableClient {
        self.client_at(&format!("/cable?user={user}")).await
    }
}

/// Serves `builder`'s cable at `/cable` on 127.0.0.1:0, with connect info.
pub async fn spawn_cable<S: Send + Sync + 'static>(builder: CableBuilder<S>) -> TestServer {
    init_tracing();
    let cable = builder.build().expect("the test cable builds");
    let handle = cable.handle();
    let app: axum::Router = cable.router("/cable");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let task = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    TestServer { addr, handle, task }
}

/// The default test server and its event log.
pub async fn spawn_default() -> (TestServer, Recorder) {
    let rec = Recorder::new();
    (spawn_cable(builder(&rec)).await, rec)
}

// ---------------------------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub enum OriginHeader {
    /// `http://<Host>`, same-origin.
    SameAsHost,
    /// No Origin header.
    Missing,
    /// This Origin.
    Exactly(String),
}

/// How [`CableClient::connect`] opens its socket.
#[derive(Debug, Clone)]
pub struct Connect {
    pub path: String,
    pub origin: OriginHeader,
    /// The `Sec-WebSocket-Protocol` offer, if any.
    pub protocols: Option<String>,
    pub cookie: Option<String>,
}

impl Default for Connect {
    fn default() -> Self {
        Connect {
            path: "/cable".into(),
            origin: OriginHeader::SameAsHost,
            protocols: Some(CONSUMER_PROTOCOLS.into()),
            cookie: None,
        }
    }
}

impl Connect {
    pub fn new() -> Connect {
        Connect::default()
    }

    pub fn path(mut self, path_and_query: &str) -> Connect {
        self.path = path_and_query.into();
        self
    }

    pub fn origin(mut self, origin: &str) -> Connect {
        self.origin = OriginHeader::Exactly(origin.into());
        self
    }

    pub fn no_origin(mut self) -> Connect {
        self.origin = OriginHeader::Missing;
        self
    }

    pub fn protocols(mut self, offer: &str) -> Connect {
        self.protocols = Some(offer.into());
        self
    }

    pub fn cookie(mut self, cookie: &str) -> Connect {
        self.cookie = Some(cookie.into());
        self
    }
}

/// The reply to a `subscribe`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscribeReply {
    Confirmed,
    Rejected,
}

/// A WebSocket client speaking the ActionCable JSON protocol like the stock consumer.
/// Reads skip `{"type":"ping",…}` frames unless a method says otherwise.
#[derive(Debug)]
pub struct CableClient {
    ws: WebSocketStream<TcpStream>,
    /// The subprotocol the server selected (`Sec-WebSocket-Protocol` of the 101).
    pub protocol: Option<String>,
}

/// Whether `text` is a `{"type":"ping",…}` frame.
pub fn is_ping(text: &str) -> bool {
    serde_json::from_str::<Value>(text).is_ok_and(|v| v["type"] == "ping")
}

/// `{"identifier":<id>,"message":<message>}` as the server encodes it.
pub fn data_frame(identifier: &str, message: &Value) -> String {
    format!(
        r#"{{"identifier":{},"message":{}}}"#,
        serde_json::to_string(identifier).unwrap(),
        serde_json::to_string(message).unwrap()
    )
}

pub fn confirm_frame(identifier: &str) -> String {
    format!(
        r#"{{"identifier":{},"type":"confirm_subscription"}}"#,
        serde_json::to_string(identifier).unwrap()
    )
}

pub fn reject_frame(identifier: &str) -> String {
    format!(
        r#"{{"identifier":{},"type":"reject_subscription"}}"#,
        serde_json::to_string(identifier).unwrap()
    )
}

pub fn disconnect_frame(reason: &str, reconnect: bool) -> String {
    format!(r#"{{"type":"disconnect","reason":"{reason}","reconnect":{reconnect}}}"#)
}

/// The `data` string the stock consumer sends for `perform(action, data)`.
pub fn perform_data(action: &str, data: Value) -> String {
    let mut map = match data {
        Value::Object(map) => map,
        Value::Null => Map::new(),
        other => panic!("perform data must be an object, got {other}"),
    };
    map.insert("action".into(), Value::String(action.into()));
    serde_json::to_string(&map).unwrap()
}

impl CableClient {
    /// Opens the socket (no welcome check). A refused upgrade is an `Err`.
    pub async fn connect(
        addr: SocketAddr,
        opts: Connect,
    ) -> Result<CableClient, tungstenite::Error> {
        let mut request = format!("ws://{addr}{}", opts.path).into_client_request()?;
        let headers = request.headers_mut();
        match &opts.origin {
            OriginHeader::SameAsHost => {
                headers.insert("origin", format!("http://{addr}").parse().unwrap());
            }
            OriginHeader::Missing => {}
            OriginHeader::Exactly(o) => {
                headers.insert("origin", o.parse().unwrap());
            }
        }
        if let Some(p) = &opts.protocols {
            headers.insert("sec-websocket-protocol", p.parse().unwrap());
        }
        if let Some(c) = &opts.cookie {
            headers.insert("cookie", c.parse().unwrap());
        }
        let tcp = within("TCP connect", TcpStream::connect(addr))
            .await
            .map_err(tungstenite::Error::Io)?;
        tcp.set_nodelay(true).map_err(tungstenite::Error::Io)?;
        let (ws, response) = within(
            "WebSocket handshake",
            tokio_tungstenite::client_async(request, tcp),
        )
        .await?;
        let protocol = response
            .headers()
            .get("sec-websocket-protocol")
            .map(|v| v.to_str().unwrap().to_owned());
        Ok(CableClient { ws, protocol })
    }

    /// Wraps a socket whose handshake was done by hand ([`raw_upgrade`]).
    pub async fn from_upgraded(
        tcp: TcpStream,
        leftover: Vec<u8>,
        protocol: Option<String>,
    ) -> CableClient {
        let ws = WebSocketStream::from_partially_read(tcp, leftover, Role::Client, None).await;
        CableClient { ws, protocol }
    }

    pub async fn send(&mut self, message: Message) {
        within("send", self.ws.send(message))
            .await
            .expect("send a frame");
    }

    pub async fn send_text(&mut self, text: impl Into<String>) {
        self.send(Message::text(text.into())).await;
    }

    pub async fn send_json(&mut self, value: &Value) {
        self.send_text(value.to_string()).await;
    }

    pub async fn send_subscribe(&mut self, identifier: &str) {
        self.send_json(&json!({ "command": "subscribe", "identifier": identifier }))
            .await;
    }

    pub async fn send_unsubscribe(&mut self, identifier: &str) {
        self.send_json(&json!({ "command": "unsubscribe", "identifier": identifier }))
            .await;
    }

    /// A `message` command with `data` as given (normally a JSON-encoded string).
    pub async fn send_message(&mut self, identifier: &str, data: &str) {
        self.send_json(&json!({ "command": "message", "identifier": identifier, "data": data }))
            .await;
    }

    /// `subscription.perform(action, data)`: `data` gets `action` and goes as a JSON string.
    pub async fn perform(&mut self, identifier: &str, action: &str, data: Value) {
        self.send_message(identifier, &perform_data(action, data))
            .await;
    }

    /// The next frame of any kind, or `None` when `wait` passes first.
    pub async fn next_frame(&mut self, wait: Duration) -> Option<Message> {
        match timeout(wait, self.ws.next()).await {
            Err(_) => None,
            Ok(None) => panic!("the socket ended (no close frame)"),
            Ok(Some(Err(e))) => panic!("WebSocket error while reading: {e}"),
            Ok(Some(Ok(m))) => Some(m),
        }
    }

    /// The next text frame, pings included, or `None` once the connection ends (cleanly, by
    /// a close frame, by a reset or by a protocol error such as a truncated frame).
    pub async fn next_frame_or_end(&mut self) -> Option<String> {
        loop {
            match timeout(WAIT, self.ws.next()).await {
                Err(_) => panic!("timed out waiting for a frame or the end"),
                Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => return None,
                Ok(Some(Ok(Message::Text(t)))) => return Some(t.as_str().to_owned()),
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
                Ok(Some(Ok(other))) => panic!("unexpected frame {other:?}"),
            }
        }
    }

    /// The next text frame, pings included.
    pub async fn recv_text_with_pings(&mut self) -> String {
        loop {
            match self.next_frame(WAIT).await {
                None => panic!("timed out waiting for a text frame"),
                Some(Message::Text(t)) => return t.as_str().to_owned(),
                Some(Message::Ping(_) | Message::Pong(_)) => {}
                Some(other) => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// The next text frame that is not a ping.
    pub async fn recv_text(&mut self) -> String {
        loop {
            let text = self.recv_text_with_pings().await;
            if !is_ping(&text) {
                return text;
            }
        }
    }

    pub async fn recv_json(&mut self) -> Value {
        let text = self.recv_text().await;
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("frame is not JSON ({e}): {text}"))
    }

    /// Asserts the next non-ping frame is exactly `expected`.
    pub async fn expect_frame(&mut self, expected: &str) {
        let got = self.recv_text().await;
        assert_eq!(got, expected, "unexpected frame");
    }

    pub async fn expect_welcome(&mut self) {
        // The welcome is the very first frame: no ping may come before it.
        let first = self.recv_text_with_pings().await;
        assert_eq!(first, r#"{"type":"welcome"}"#);
    }

    pub async fn expect_confirm(&mut self, identifier: &str) {
        self.expect_frame(&confirm_frame(identifier)).await;
    }

    pub async fn expect_reject(&mut self, identifier: &str) {
        self.expect_frame(&reject_frame(identifier)).await;
    }

    /// Asserts the next frame is exactly `{"identifier":<identifier>,"message":<message>}`.
    pub async fn expect_data(&mut self, identifier: &str, message: &Value) {
        self.expect_frame(&data_frame(identifier, message)).await;
    }

    /// Sends `subscribe` and returns the server's answer, checking its exact bytes.
    pub async fn subscribe(&mut self, identifier: &str) -> SubscribeReply {
        self.send_subscribe(identifier).await;
        let got = self.recv_text().await;
        if got == confirm_frame(identifier) {
            SubscribeReply::Confirmed
        } else if got == reject_frame(identifier) {
            SubscribeReply::Rejected
        } else {
            panic!("expected a confirm or reject for {identifier}, got {got}")
        }
    }

    /// Subscribes and asserts the subscription was confirmed.
    pub async fn confirm(&mut self, identifier: &str) {
        assert_eq!(
            self.subscribe(identifier).await,
            SubscribeReply::Confirmed,
            "subscription {identifier}"
        );
    }

    /// Asserts that no frame other than a ping arrives for `wait`.
    pub async fn expect_silence(&mut self, wait: Duration) {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            match self.next_frame(left).await {
                None => return,
                Some(Message::Text(t)) if is_ping(&t) => {}
                Some(Message::Ping(_) | Message::Pong(_)) => {}
                Some(other) => panic!("expected silence, got {other:?}"),
            }
        }
    }

    /// Reads (skipping pings) until the server's close frame, which it returns.
    /// Any other frame first is a failure.
    pub async fn expect_close(&mut self) -> Option<CloseFrame> {
        loop {
            match self.next_frame(WAIT).await {
                None => panic!("timed out waiting for a close frame"),
                Some(Message::Close(frame)) => return frame,
                Some(Message::Text(t)) if is_ping(&t) => {}
                Some(Message::Ping(_) | Message::Pong(_)) => {}
                Some(other) => panic!("expected a close frame, got {other:?}"),
            }
        }
    }

    /// Asserts the server closes with `code` (after its close frame the TCP stream ends).
    pub async fn expect_close_code(&mut self, code: u16) {
        let frame = self.expect_close().await;
        let got = frame.as_ref().map(|f| u16::from(f.code));
        assert_eq!(got, Some(code), "close frame {frame:?}");
        self.expect_end().await;
    }

    /// After a close frame: the stream ends (our automatic close reply went out).
    pub async fn expect_end(&mut self) {
        match timeout(WAIT, self.ws.next()).await {
            Err(_) => panic!("the socket did not end after the close handshake"),
            Ok(None) => {}
            Ok(Some(Err(
                tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed,
            ))) => {}
            Ok(Some(other)) => panic!("expected the end of the socket, got {other:?}"),
        }
    }

    /// For a close after a protocol violation: the server sends its close frame and drops the
    /// socket without reading the rest of what we sent (axum's socket cannot be read after a
    /// size error), so the kernel may answer our close reply with a TCP reset. The close frame
    /// itself was delivered before that reset. Returns the close code.
    pub async fn expect_violation_close(&mut self) -> u16 {
        let frame = self.expect_close().await;
        let code = frame
            .as_ref()
            .map(|f| u16::from(f.code))
            .unwrap_or_else(|| panic!("close frame without a code: {frame:?}"));
        match timeout(WAIT, self.ws.next()).await {
            Err(_) => panic!("the socket did not end after the close frame"),
            Ok(None) => {}
            Ok(Some(Err(
                tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed,
            ))) => {}
            Ok(Some(Err(tungstenite::Error::Io(e))))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
                ) => {}
            Ok(Some(other)) => panic!("expected the end of the socket, got {other:?}"),
        }
        code
    }

    /// `disconnect` with `reason`, then close 1000.
    pub async fn expect_disconnect(&mut self, reason: &str, reconnect: bool) {
        self.expect_frame(&disconnect_frame(reason, reconnect))
            .await;
        self.expect_close_code(1000).await;
    }

    /// Closes politely (close 1000) and checks the server echoes the close and ends the socket.
    pub async fn close(self) {
        self.close_with(1000, "").await;
    }

    /// Sends a close frame with `code` and `reason`; asserts the server answers with the same
    /// close (frames queued before it may still arrive first) and then ends the socket.
    pub async fn close_with(mut self, code: u16, reason: &str) {
        let frame = CloseFrame {
            code: code.into(),
            reason: reason.into(),
        };
        within("close", self.ws.close(Some(frame)))
            .await
            .expect("send close");
        loop {
            match timeout(WAIT, self.ws.next()).await {
                Err(_) => panic!("the server did not answer our close"),
                Ok(Some(Ok(Message::Close(reply)))) => {
                    let reply = reply.expect("the close reply has a code");
                    assert_eq!(u16::from(reply.code), code);
                    assert_eq!(reply.reason.as_str(), reason);
                    break;
                }
                Ok(Some(Ok(Message::Text(_) | Message::Ping(_) | Message::Pong(_)))) => {}
                Ok(other) => panic!("expected the server's close reply, got {other:?}"),
            }
        }
        self.expect_end().await;
    }

    /// Echo round trip on `identifier` (an [`EchoChannel`] subscription): proves the connection
    /// and that subscription still work and everything sent before was handled.
    pub async fn assert_echo(&mut self, identifier: &str, payload: Value) {
        self.perform(identifier, "echo", json!({ "payload": payload.clone() }))
            .await;
        self.expect_data(identifier, &json!({ "echo": payload }))
            .await;
    }
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP
// ---------------------------------------------------------------------------------------------

/// A parsed HTTP/1.1 response head plus body.
#[derive(Debug)]
pub struct HttpReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpReply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn body_text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("UTF-8 body")
    }
}

/// Reads one response head from `tcp`; returns it and the bytes read past the head.
async fn read_head(tcp: &mut TcpStream) -> (HttpReply, Vec<u8>) {
    let mut buf = Vec::new();
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let mut chunk = [0u8; 4096];
        let n = within("HTTP response head", tcp.read(&mut chunk))
            .await
            .expect("read response");
        assert!(
            n > 0,
            "connection closed before a full response head: {buf:?}"
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..end])
        .expect("UTF-8 head")
        .to_owned();
    let rest = buf[end + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers = lines
        .map(|l| {
            let (n, v) = l.split_once(':').expect("header line");
            (n.trim().to_owned(), v.trim().to_owned())
        })
        .collect();
    (
        HttpReply {
            status,
            headers,
            body: Vec::new(),
        },
        rest,
    )
}

/// Sends `request` (a full HTTP/1.1 request head, `\r\n`-terminated) and reads the response,
/// with a body of `Content-Length` bytes unless `head_request`.
pub async fn http_raw(addr: SocketAddr, request: &str, head_request: bool) -> HttpReply {
    let mut tcp = within("TCP connect", TcpStream::connect(addr))
        .await
        .unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let (mut reply, rest) = read_head(&mut tcp).await;
    if !head_request {
        reply.body = read_body(&mut tcp, &reply, rest).await;
    }
    reply
}

/// Reads the `Content-Length` body that follows a head (`rest`: bytes already read).
async fn read_body(tcp: &mut TcpStream, reply: &HttpReply, mut body: Vec<u8>) -> Vec<u8> {
    let len: usize = reply
        .header("content-length")
        .map(|l| l.parse().unwrap())
        .unwrap_or(0);
    while body.len() < len {
        let mut chunk = [0u8; 4096];
        let n = within("HTTP body", tcp.read(&mut chunk)).await.unwrap();
        assert!(n > 0, "connection closed mid-body");
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(len);
    body
}

/// A WebSocket upgrade request head for `/cable` with the given extra header lines.
pub fn upgrade_request(addr: SocketAddr, path: &str, extra_headers: &[(&str, &str)]) -> String {
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    );
    for (n, v) in extra_headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req
}

/// Performs the upgrade by hand; returns the response head and, on 101, a client on the socket.
pub async fn raw_upgrade(
    addr: SocketAddr,
    path: &str,
    extra_headers: &[(&str, &str)],
) -> (HttpReply, Option<CableClient>) {
    let mut tcp = within("TCP connect", TcpStream::connect(addr))
        .await
        .unwrap();
    tcp.set_nodelay(true).unwrap();
    tcp.write_all(upgrade_request(addr, path, extra_headers).as_bytes())
        .await
        .unwrap();
    let (mut reply, rest) = read_head(&mut tcp).await;
    if reply.status != 101 {
        reply.body = read_body(&mut tcp, &reply, rest).await;
        return (reply, None);
    }
    let protocol = reply.header("sec-websocket-protocol").map(str::to_owned);
    let client = CableClient::from_upgraded(tcp, rest, protocol).await;
    (reply, Some(client))
}
