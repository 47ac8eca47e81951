//! The fixtures of the core crate's tests: an event log the channels and connections write to,
//! connections (query/cookie user, JWT, signed cookie), test channels, and the cable made of
//! them. Everything else (the client, servers on loopback ports, timing bounds, raw HTTP)
//! comes from `cable-test-support`, re-exported here.

pub(crate) use cable_test_support::*;

use actioncable::AnyAction;
use actioncable::{
    AllowedOrigins, Cable, CableBuilder, Channel, ChannelContext, ChannelError, ConnectRequest,
    Connection, Identity, NoParams, Reject, async_trait,
};
use actioncable::{CookieKey, JwtVerifier};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;

pub(crate) const ECHO: &str = r#"{"channel":"EchoChannel"}"#;
pub(crate) const LOBBY: &str = r#"{"channel":"ChatChannel","room":"lobby"}"#;
pub(crate) const KITCHEN: &str = r#"{"channel":"ChatChannel","room":"kitchen"}"#;
pub(crate) const NOTIFICATIONS: &str = r#"{"channel":"NotificationChannel"}"#;
pub(crate) const RECEIVER: &str = r#"{"channel":"ReceiveChannel"}"#;

// ---------------------------------------------------------------------------------------------
// Events recorded by channels and connections
// ---------------------------------------------------------------------------------------------

/// An append-only log of callback events (`subscribed:<id>`, `unsubscribed:<id>`,
/// `disconnect:<identity>`), shared by the test and the server.
#[derive(Clone, Debug)]
pub(crate) struct Recorder {
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
    pub(crate) fn new() -> Recorder {
        Recorder::default()
    }

    pub(crate) fn record(&self, event: impl Into<String>) {
        self.events.lock().unwrap().push(event.into());
        self.changed.send_replace(());
    }

    /// Lets one waiting `EchoChannel#hold` action finish.
    pub(crate) fn release(&self) {
        self.release.add_permits(1);
    }

    pub(crate) fn events(&self) -> Vec<String> {
        self.events.lock().unwrap().clone()
    }

    pub(crate) fn count(&self, event: &str) -> usize {
        self.events().iter().filter(|e| *e == event).count()
    }

    /// Waits until `event` has been recorded at least `n` times.
    pub(crate) async fn wait_for_n(&self, event: &str, n: usize) {
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
    pub(crate) async fn wait_for(&self, event: &str) {
        self.wait_for_n(event, 1).await;
    }
}

// ---------------------------------------------------------------------------------------------
// App state, connections and channels
// ---------------------------------------------------------------------------------------------

/// The app state of the test cable: the event log.
#[derive(Debug, Clone)]
pub(crate) struct TestState {
    pub(crate) rec: Recorder,
}

/// Identity from `?user=` or the `user` cookie; anonymous without either; `banned` is
/// rejected. Records `disconnect:<identity>`.
#[derive(Debug, Clone)]
pub(crate) struct TestConnection {
    pub(crate) rec: Recorder,
}

#[async_trait]
impl Connection for TestConnection {
    async fn connect(&self, req: &ConnectRequest) -> Result<Identity, Reject> {
        let user = req
            .query("user")
            .or_else(|| req.cookie("user").map(str::to_owned));
        match user.as_deref() {
            Some("banned") => Err(Reject::Unauthorized),
            Some(user) => Ok(Identity::new("current_user", user)),
            None => Ok(Identity::anonymous()),
        }
    }

    async fn disconnect(&self, identity: &Identity) {
        self.rec.record(format!("disconnect:{identity}"));
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Claims {
    pub(crate) sub: String,
    pub(crate) exp: u64,
}

/// Authenticates with a JWT in `?token=`; the connection ends when the token expires.
#[derive(Debug, Clone)]
pub(crate) struct JwtConnection {
    pub(crate) verifier: JwtVerifier,
    pub(crate) rec: Recorder,
}

#[async_trait]
impl Connection for JwtConnection {
    async fn connect(&self, req: &ConnectRequest) -> Result<Identity, Reject> {
        let token = req.query("token").ok_or(Reject::Unauthorized)?;
        let (claims, expiry) = self.verifier.verify_expiring::<Claims>(&token)?;
        Ok(Identity::new("current_user", claims.sub).with_expiry(expiry))
    }

    async fn disconnect(&self, identity: &Identity) {
        self.rec.record(format!("disconnect:{identity}"));
    }
}

/// Authenticates with the signed cookie `user`.
#[derive(Debug, Clone)]
pub(crate) struct CookieConnection {
    pub(crate) key: CookieKey,
    pub(crate) rec: Recorder,
}

#[async_trait]
impl Connection for CookieConnection {
    async fn connect(&self, req: &ConnectRequest) -> Result<Identity, Reject> {
        let user = req
            .signed_cookie("user", &self.key)
            .ok_or(Reject::Unauthorized)?;
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
pub(crate) struct EchoChannel;

#[derive(Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub(crate) enum EchoAction {
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
pub(crate) struct ChatChannel {
    room: String,
}

#[derive(Deserialize)]
pub(crate) struct RoomParams {
    room: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub(crate) enum ChatAction {
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
pub(crate) struct NotificationChannel {
    user: String,
}

#[derive(Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub(crate) enum NotificationAction {
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
pub(crate) struct ReceiveChannel;

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
pub(crate) struct PanickyChannel;

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
pub(crate) fn builder(rec: &Recorder) -> CableBuilder<TestState> {
    Cable::builder_with_state(TestState { rec: rec.clone() })
        .connection(TestConnection { rec: rec.clone() })
        .channel::<EchoChannel>()
        .channel::<ChatChannel>()
        .channel::<NotificationChannel>()
        .channel::<ReceiveChannel>()
        .channel::<PanickyChannel>()
        .allowed_origins(AllowedOrigins::same_origin())
}

/// The default test server and its event log.
pub(crate) async fn spawn_default() -> (CableServer, Recorder) {
    let rec = Recorder::new();
    (spawn_cable(builder(&rec)).await, rec)
}

// ---------------------------------------------------------------------------------------------
// The client against the fixture channels
// ---------------------------------------------------------------------------------------------

/// Round trips through [`EchoChannel`].
pub(crate) trait EchoRoundTrip {
    /// Echo round trip on `identifier` (an [`EchoChannel`] subscription): proves the connection
    /// and that subscription still work and everything sent before was handled.
    async fn assert_echo(&mut self, identifier: &str, payload: Value);
}

impl EchoRoundTrip for CableClient {
    async fn assert_echo(&mut self, identifier: &str, payload: Value) {
        self.perform(identifier, "echo", json!({ "payload": payload.clone() }))
            .await;
        self.expect_data(identifier, &json!({ "echo": payload }))
            .await;
    }
}
