//! One task per WebSocket: read commands, run them in order, write queued frames.
//!
//! A session handles its client's commands one after another, in the order they arrived
//! (Rails dispatches them to a worker pool in any order, which causes its
//! unsubscribe/subscribe races). Everything sent to the client — confirmations, transmits,
//! stream deliveries, pings — goes through the session's bounded [`Outbox`], so frames leave
//! in the order they were queued and nothing any other task does ever waits on this socket.
//!
//! What the commands do is in `dispatch.rs`; this module only moves frames between the
//! socket and it, and decides when the connection ends.

use super::Shared;
use super::dispatch::Dispatcher;
use super::resume::{self, Parked, Resumed};
use crate::connection::{Identity, Reject};
use crate::metrics::{Metrics, Transport};
use crate::outbox::{Control, Event, Frames, Outbox};
use crate::protocol::{self, Command, DisconnectReason, EXT_PROTOCOL, Extras, ServerMessage};
use crate::registry::{Admission, Reservation};
use crate::untrusted::untrusted;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, close_code};
use futures_util::SinkExt as _;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tokio::time::{Instant, Sleep};
use tracing::Instrument as _;

/// Frames written per flush when a backlog is waiting.
const WRITE_BATCH: usize = 64;
/// Commands read ahead while one runs; beyond this (or beyond `max_message_size` bytes of
/// them) the socket is left unread, which pushes back on the client.
const READ_AHEAD: usize = 32;

struct Session<S> {
    socket: WebSocket,
    /// The frames queued for the client, oldest first.
    frames: Frames,
    dispatcher: Dispatcher<S>,
    /// Text frames read while a command ran, waiting their turn.
    backlog: Backlog,
    liveness: Liveness,
    budget: Budget,
    /// Binary frames refused so far (only the first is logged).
    binary_frames: u32,
    /// This connection's place among its identity's; freed as soon as the session ends.
    reservation: Reservation,
    /// The client negotiated the extended protocol (`actioncable-v1-ext-json`).
    ext: bool,
    /// This connection's session id (extended protocol only), sent in its `welcome`: the key
    /// it is kept under for a resume when its socket drops.
    sid: Option<String>,
    /// Its place among `max_connections`, freed when the socket goes (a kept session has none).
    admission: Admission,
    /// The cable's metrics, when on.
    metrics: Option<Arc<Metrics>>,
}

/// Dead-peer detection: when the client was last heard from, and whether it was pinged since.
/// The timer is re-armed only when it fires, so a busy connection does not touch it per frame.
/// The timeout itself is the cable's (`client_timeout`), passed in rather than kept here: every
/// byte of a session is paid by every idle connection.
struct Liveness {
    last_heard: Instant,
    pinged: bool,
    timer: Pin<Box<Sleep>>,
}

enum Alive {
    Yes,
    /// Quiet for half the timeout: ask for a pong.
    Ping,
    Dead,
}

impl Liveness {
    fn new(timeout: Duration) -> Liveness {
        let now = Instant::now();
        Liveness {
            last_heard: now,
            pinged: false,
            timer: Box::pin(tokio::time::sleep_until(now + timeout / 2)),
        }
    }

    fn heard(&mut self) {
        self.last_heard = Instant::now();
        self.pinged = false;
    }

    /// Called when the timer fired: re-arms it and says what to do.
    fn check(&mut self, timeout: Duration) -> Alive {
        let now = Instant::now();
        let (next, verdict) = if now < self.last_heard + timeout / 2 {
            (self.last_heard + timeout / 2, Alive::Yes)
        } else if now >= self.last_heard + timeout {
            (now + timeout, Alive::Dead)
        } else if self.pinged {
            (self.last_heard + timeout, Alive::Yes)
        } else {
            self.pinged = true;
            (self.last_heard + timeout, Alive::Ping)
        };
        self.timer.as_mut().reset(next);
        verdict
    }
}

/// Text frames read ahead while a command runs: at most [`READ_AHEAD`] of them, and reading
/// stops once they hold `max_bytes` (one client's read-ahead costs about one largest message,
/// not 32 of them).
struct Backlog {
    frames: VecDeque<Utf8Bytes>,
    bytes: usize,
}

impl Backlog {
    fn new() -> Backlog {
        Backlog {
            frames: VecDeque::new(),
            bytes: 0,
        }
    }

    /// `max_bytes`: the cable's `max_message_size`.
    fn has_room(&self, max_bytes: usize) -> bool {
        self.frames.len() < READ_AHEAD && self.bytes < max_bytes
    }

    fn push(&mut self, frame: Utf8Bytes) {
        self.bytes += frame.len();
        self.frames.push_back(frame);
    }

    fn pop(&mut self) -> Option<Utf8Bytes> {
        let frame = self.frames.pop_front()?;
        self.bytes -= frame.len();
        Some(frame)
    }
}

/// Commands per second: a token bucket whose burst equals the rate.
struct Budget {
    rate: f64,
    tokens: f64,
    updated: Instant,
    /// Whether this throttling episode was logged already.
    logged: bool,
    /// The next command waited for a token (it is counted when it is read).
    waited: bool,
    /// Counts the commands that waited, when metrics are on.
    throttled: Option<prometheus_client::metrics::counter::Counter>,
}

impl Budget {
    fn new(per_second: u32, metrics: Option<&Metrics>) -> Budget {
        let rate = f64::from(per_second.max(1));
        Budget {
            rate,
            tokens: rate,
            updated: Instant::now(),
            logged: false,
            waited: false,
            throttled: metrics.map(|m| m.throttled.clone()),
        }
    }

    fn refill(&mut self, now: Instant) {
        let refill = now.saturating_duration_since(self.updated).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.rate);
        self.updated = now;
    }

    /// Whether a frame may be read now (without logging a throttling episode).
    fn has_token(&mut self) -> bool {
        self.refill(Instant::now());
        self.tokens >= 1.0
    }

    /// `None` when a command may run now; otherwise when the next token arrives.
    fn wait(&mut self) -> Option<Instant> {
        let now = Instant::now();
        self.refill(now);
        if self.tokens >= 1.0 {
            if self.tokens >= self.rate {
                self.logged = false;
            }
            return None;
        }
        self.waited = true;
        if !self.logged {
            self.logged = true;
            tracing::warn!(
                limit = self.rate,
                "throttling a connection: too many commands per second"
            );
        }
        Some(now + Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
    }

    fn spend(&mut self) {
        self.tokens -= 1.0;
        if self.waited {
            self.waited = false;
            if let Some(throttled) = &self.throttled {
                throttled.inc();
            }
        }
    }
}

/// What the session runs next: a client frame or a control event.
enum Work {
    Frame(Utf8Bytes),
    Control(Control),
}

/// What a session does once it stops waiting.
enum Next {
    /// Run a client's command (read now, or earlier into the backlog).
    Command(Utf8Bytes),
    Control(Control),
    /// Write this queued frame and those behind it.
    Write(Utf8Bytes),
    LivenessDue,
    /// Nothing to run (a pong, a refused binary frame, the throttle lifted).
    Nothing,
}

/// How the read loop ended.
enum End {
    /// The socket failed or vanished: nothing more can be sent.
    Gone,
    /// The client sent a close frame: echo it (tungstenite queued the reply), as Rails does.
    ClientClosed,
    /// The server closes with `disconnect` then a close frame.
    Disconnect(DisconnectReason, bool),
    /// The client broke a protocol limit: close with this code.
    Close(u16, &'static str),
    /// Nothing arrived from the client within `client_timeout`: a dead peer.
    TimedOut,
}

/// How a session begins: with the app's `connect` answer, or with a parked session claimed by
/// its `sid` (`resume.rs`).
pub(crate) enum Opening<S: Send + Sync + 'static> {
    Connect(Result<Identity, Reject>),
    Resume(Resumed<S>),
}

/// Opens a session on an upgraded socket: refuses it, or builds its [`Session`] and spawns the
/// task that serves it.
///
/// The session gets a task of its own, spawned here once the opening work is done, rather than
/// running inside the upgrade's task: a task's future is as large as its largest state, and the
/// upgrade's (axum's upgrade and WebSocket setup, this function's authentication outcome,
/// refusals, `Dispatcher::open`) would otherwise stay allocated beside every idle session. The
/// spawned future is [`Session::run`] alone.
pub(crate) async fn start<S: Send + Sync + 'static>(
    socket: WebSocket,
    shared: Arc<Shared<S>>,
    opening: Opening<S>,
    remote: Option<SocketAddr>,
    admission: Admission,
    started: std::time::Instant,
) {
    let metrics = shared.handle.hub().metrics().cloned();
    let ext = is_ext(&socket);
    let outcome = match opening {
        Opening::Connect(outcome) => outcome,
        Opening::Resume(resumed) => {
            let Parked {
                dispatcher,
                frames,
                reservation,
            } = resumed.take();
            let restored: Vec<Arc<str>> = dispatcher.subscriptions.keys().cloned().collect();
            let span = tracing::info_span!("cable", conn = %dispatcher.id(),
                identity = %untrusted(dispatcher.connection.identity()));
            let session = Session::new(socket, dispatcher, frames, reservation, admission);
            launch(session, Some(restored), started, span).await;
            return;
        }
    };
    let registry = shared.handle.registry();
    let id = registry.next_id();
    let identity = match outcome {
        Ok(identity) => Arc::new(identity),
        Err(reject) => {
            if let Some(metrics) = &metrics {
                metrics.rejected(reject.reason().as_str());
            }
            let span = tracing::info_span!("cable", conn = %id, ?remote);
            refuse(socket, &shared, reject).instrument(span).await;
            return;
        }
    };
    let Some(reservation) = registry.reserve(&identity) else {
        if let Some(metrics) = &metrics {
            metrics.rejected(DisconnectReason::TooManyConnections.as_str());
        }
        let span = tracing::info_span!("cable", conn = %id, identity = %untrusted(&*identity));
        let limit = registry.max_per_identity();
        turn_away(socket, &shared, limit).instrument(span).await;
        return;
    };
    let span = tracing::info_span!("cable", conn = %id, identity = %untrusted(&*identity));
    let (dispatcher, frames) = Dispatcher::open(shared, identity, id, ext)
        .instrument(span.clone())
        .await;
    let session = Session::new(socket, dispatcher, frames, reservation, admission);
    launch(session, None, started, span).await;
}

/// The protocol the upgrade selected (`handler.rs`): anything but the extended one is the
/// plain protocol, byte for byte.
fn is_ext(socket: &WebSocket) -> bool {
    socket.protocol().is_some_and(|p| p == EXT_PROTOCOL)
}

/// Welcomes the client, then gives the session its own task, tracked for shutdown like the
/// upgrade's.
async fn launch<S: Send + Sync + 'static>(
    mut session: Session<S>,
    restored: Option<Vec<Arc<str>>>,
    started: std::time::Instant,
    span: tracing::Span,
) {
    let ended = session
        .welcome(restored.as_deref(), started)
        .instrument(span.clone())
        .await;
    let tracker = session
        .dispatcher
        .shared
        .handle
        .registry()
        .tracker()
        .clone();
    tracker.spawn(session.run(ended).instrument(span));
}

/// Rails: upgrade, `disconnect` unauthorized without reconnect, close 1000, no welcome (or
/// AnyCable's `token_expired` for an expired credential).
async fn refuse<S>(mut socket: WebSocket, shared: &Shared<S>, reject: Reject) {
    match reject {
        Reject::TokenExpired => {
            tracing::info!("A connection attempt with an expired credential was rejected");
        }
        _ => tracing::info!("An unauthorized connection attempt was rejected"),
    }
    let frame = ServerMessage::disconnect(reject.reason(), false).encode();
    close_politely(&mut socket, Some(frame), shared.config.close_timeout).await;
}

/// An identity already at `max_connections_per_identity`: like a rejection, but saying why.
async fn turn_away<S>(mut socket: WebSocket, shared: &Shared<S>, limit: usize) {
    tracing::warn!(
        limit,
        "refusing a connection: too many open for this identity"
    );
    let frame = ServerMessage::disconnect(DisconnectReason::TooManyConnections, false).encode();
    close_politely(&mut socket, Some(frame), shared.config.close_timeout).await;
}

/// Sends an optional last frame and a close 1000, then waits (bounded) for the client's close.
async fn close_politely(
    socket: &mut WebSocket,
    last: Option<String>,
    timeout: std::time::Duration,
) {
    let _ = tokio::time::timeout(timeout, async {
        if let Some(frame) = last {
            socket.send(Message::Text(frame.into())).await?;
        }
        socket
            .send(Message::Close(Some(CloseFrame {
                code: close_code::NORMAL,
                reason: Utf8Bytes::default(),
            })))
            .await?;
        while let Some(Ok(msg)) = socket.recv().await {
            if matches!(msg, Message::Close(_)) {
                break;
            }
        }
        Ok::<_, axum::Error>(())
    })
    .await;
}

impl<S: Send + Sync + 'static> Session<S> {
    /// A session for an opened (or resumed) dispatcher: its timers and limits start now.
    fn new(
        socket: WebSocket,
        dispatcher: Dispatcher<S>,
        frames: Frames,
        reservation: Reservation,
        admission: Admission,
    ) -> Session<S> {
        let config = &dispatcher.shared.config;
        let metrics = dispatcher.shared.handle.hub().metrics().cloned();
        let ext = is_ext(&socket);
        Session {
            liveness: Liveness::new(config.client_timeout),
            budget: Budget::new(config.max_commands_per_second, metrics.as_deref()),
            socket,
            frames,
            dispatcher,
            backlog: Backlog::new(),
            binary_frames: 0,
            reservation,
            ext,
            sid: ext.then(resume::new_sid),
            admission,
            metrics,
        }
    }

    /// Serves the client until the connection ends (`ended`: it already has), then finishes.
    ///
    /// Not an `async fn`: its arguments would be stored twice in its future (once as passed,
    /// once moved into the body), which for a `Session` is most of what an idle connection's
    /// task holds. The block below captures `self` once and works on it in place.
    // The lint's suggestion is exactly the double storage this avoids.
    #[allow(clippy::manual_async_fn)]
    fn run(mut self, ended: Option<End>) -> impl Future<Output = ()> + Send {
        async move {
            let end = match ended {
                Some(end) => end,
                None => self.serve().await,
            };
            // Boxed, as the command futures below: the session future stays small while idle.
            Box::pin(self.finish(end)).await;
        }
    }

    /// Sends `welcome` (with the identifiers of a resumed session's subscriptions, `restored`);
    /// `None` when it went, else how the session ends. It runs before the session's task is
    /// spawned, so that task's future holds none of it.
    async fn welcome(
        &mut self,
        restored: Option<&[Arc<str>]>,
        started: std::time::Instant,
    ) -> Option<End> {
        tracing::debug!(resumed = restored.is_some(), "connected");
        let welcome = match &self.sid {
            Some(sid) => protocol::encode_welcome_ext(sid, restored),
            None => ServerMessage::WELCOME.encode(),
        };
        if let Some(metrics) = &self.metrics {
            metrics.connections(Transport::websocket(self.ext)).inc();
        }
        match self.socket.send(Message::Text(welcome.into())).await {
            Ok(()) => {
                if let Some(metrics) = &self.metrics {
                    metrics.accepted.inc();
                    metrics.welcome.observe(started.elapsed().as_secs_f64());
                }
                None
            }
            Err(_) => Some(End::Gone),
        }
    }

    async fn serve(&mut self) -> End {
        let outbox = self.dispatcher.outbox().clone();
        loop {
            let throttled = self.budget.wait();
            let next = if throttled.is_none()
                && let Some(text) = self.backlog.pop()
            {
                Next::Command(text)
            } else {
                match self.wait(&outbox, throttled).await {
                    Ok(next) => next,
                    Err(end) => return end,
                }
            };
            // Each step below runs after the wait is over, so the session's future holds
            // either the wait or the step, never both.
            let ended = match next {
                Next::Command(text) => {
                    self.budget.spend();
                    match self.handle(Work::Frame(text), &outbox).await {
                        Some(end) => Some(end),
                        None => self.write_replies(&outbox).await,
                    }
                }
                Next::Control(event) => match self.handle(Work::Control(event), &outbox).await {
                    Some(end) => Some(end),
                    None => self.write_replies(&outbox).await,
                },
                Next::Write(frame) => self.write_watching(frame, &outbox).await,
                // Boxed: it runs once per ping interval at most.
                Next::LivenessDue => Box::pin(self.liveness_due()).await,
                Next::Nothing => None,
            };
            if let Some(end) = ended {
                return end;
            }
        }
    }

    /// Waits for the session's next step: a close request, a control event, the liveness
    /// timer, a client frame (unless `throttled`) or a frame to write.
    async fn wait(&mut self, outbox: &Outbox, throttled: Option<Instant>) -> Result<Next, End> {
        // The socket is read before queued frames are written: a steady stream of
        // deliveries must not keep the client's commands and pongs unread (reading is
        // bounded by the command budget and the read-ahead).
        tokio::select! {
            biased;
            event = outbox.next_event() => match event {
                Event::Close(reason, reconnect) => Err(End::Disconnect(reason, reconnect)),
                Event::Control(event) => Ok(Next::Control(event)),
            },
            () = &mut self.liveness.timer => Ok(Next::LivenessDue),
            message = self.socket.recv(), if throttled.is_none() => {
                self.liveness.heard();
                match message {
                    Some(Ok(Message::Text(text))) => Ok(Next::Command(text)),
                    Some(Ok(Message::Binary(bytes))) => {
                        self.budget.spend();
                        refuse_binary(&mut self.binary_frames, bytes.len());
                        Ok(Next::Nothing)
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => Ok(Next::Nothing),
                    Some(Ok(Message::Close(_))) => Err(End::ClientClosed),
                    None => Err(End::Gone),
                    Some(Err(e)) => Err(read_error(e)),
                }
            }
            frame = self.frames.recv() => Ok(Next::Write(frame)),
            // Boxed, and only made while throttled: a `Sleep` inline would sit in every idle
            // session's future.
            () = throttle_sleep(throttled), if throttled.is_some() => Ok(Next::Nothing),
        }
    }

    /// Writes `first` and what is queued behind it. A client that stops reading blocks this
    /// write; a close request (too slow, shutdown) still gets through, and so does the client
    /// timeout. The write itself is never dropped half-way for anything short of closing: a
    /// frame taken from the queue and not written would be a silent gap.
    async fn write_watching(&mut self, first: Utf8Bytes, outbox: &Outbox) -> Option<End> {
        let mut ping_owed = false;
        {
            let metrics = self.metrics.as_deref();
            let write = write_batch(&mut self.socket, &mut self.frames, first, metrics);
            tokio::pin!(write);
            // A socket with room takes the batch at once: then there is nothing to watch.
            if let Poll::Ready(written) = poll_once(write.as_mut()).await {
                return written.is_err().then_some(End::Gone);
            }
            loop {
                tokio::select! {
                    biased;
                    (reason, reconnect) = outbox.closed() => return Some(End::Disconnect(reason, reconnect)),
                    () = &mut self.liveness.timer => match self.liveness.check(self.dispatcher.shared.config.client_timeout) {
                        Alive::Dead => return Some(End::TimedOut),
                        Alive::Ping => ping_owed = true,
                        Alive::Yes => {}
                    },
                    written = &mut write => {
                        if written.is_err() {
                            return Some(End::Gone);
                        }
                        break;
                    }
                }
            }
        }
        if ping_owed {
            // Boxed: a ping with its timeout inline would grow every session's future.
            return Box::pin(self.send_ping()).await;
        }
        None
    }

    /// Writes what a command or control event just queued (its reply, say) before the session
    /// waits again: the common command answers at once, and going round the loop for it would
    /// cost a full wait on every source for nothing.
    async fn write_replies(&mut self, outbox: &Outbox) -> Option<End> {
        let first = self.frames.try_recv()?;
        self.write_watching(first, outbox).await
    }

    /// The liveness timer fired: ping a quiet client, or give up on a silent one.
    async fn liveness_due(&mut self) -> Option<End> {
        match self
            .liveness
            .check(self.dispatcher.shared.config.client_timeout)
        {
            Alive::Yes => None,
            Alive::Dead => Some(End::TimedOut),
            Alive::Ping => self.send_ping().await,
        }
    }

    async fn send_ping(&mut self) -> Option<End> {
        let timeout = self.dispatcher.shared.config.close_timeout;
        let ping = self.socket.send(Message::Ping(bytes::Bytes::new()));
        match tokio::time::timeout(timeout, ping).await {
            Ok(Ok(())) => None,
            _ => Some(End::Gone),
        }
    }

    /// Runs one command or control event. Most finish without waiting (an action that
    /// transmits, an unsubscribe): the run is polled once and, done, the session goes on. One
    /// that waits (for the pub/sub adapter, the app's own I/O) is watched by
    /// [`run_while_writing`](Self::run_while_writing).
    ///
    /// The run is boxed: a session's future is as large as the largest thing it awaits, and a
    /// command's run (the app's callbacks, a `subscribe` with its streams) would otherwise sit
    /// in every idle connection's task.
    async fn handle(&mut self, work: Work, outbox: &Outbox) -> Option<End> {
        let max_read_ahead = self.dispatcher.shared.config.max_message_size;
        let (mut run, subscribing): (Pin<Box<dyn Future<Output = ()> + Send + '_>>, _) = match work
        {
            Work::Frame(text) => {
                let text = text.as_str();
                let decoded = if self.ext {
                    Command::decode_ext(text)
                } else {
                    Command::decode(text).map(|command| (command, Extras::default()))
                };
                let (command, extras) = match decoded {
                    Ok(decoded) => decoded,
                    Err(e) => {
                        tracing::warn!(error = %untrusted(&e), frame = %untrusted(text), "ignoring a frame that is not a command");
                        return None;
                    }
                };
                let subscribing = match &command {
                    Command::Subscribe { identifier } => Some(identifier.clone()),
                    _ => None,
                };
                let run = self.dispatcher.run_with(command, extras);
                (Box::pin(async move { drop(run.await) }), subscribing)
            }
            Work::Control(event) => (Box::pin(self.dispatcher.control(event)), None),
        };
        if poll_once(run.as_mut()).await.is_ready() {
            return None;
        }
        // Every part of the session but the dispatcher, which `run` holds.
        let watch = Watch {
            socket: &mut self.socket,
            frames: &mut self.frames,
            backlog: &mut self.backlog,
            liveness: &mut self.liveness,
            budget: &mut self.budget,
            binary_frames: &mut self.binary_frames,
            metrics: self.metrics.as_deref(),
        };
        Box::pin(watch.run_while_writing(run, subscribing, outbox, max_read_ahead)).await
    }
}

/// What a session watches while a command runs: every part of it but the dispatcher, which
/// the command holds.
struct Watch<'a> {
    socket: &'a mut WebSocket,
    frames: &'a mut Frames,
    backlog: &'a mut Backlog,
    liveness: &'a mut Liveness,
    budget: &'a mut Budget,
    binary_frames: &'a mut u32,
    metrics: Option<&'a Metrics>,
}

impl Watch<'_> {
    /// Finishes `run` while still writing the frames queued meanwhile (its own transmits,
    /// stream deliveries, pings), so a command that awaits something does not make its own
    /// client look too slow, and while reading the next commands into the backlog. The command
    /// itself is never cancelled: dropping it half-way could leave streams registered for a
    /// subscription that no longer exists. A close request or a dead socket only stops the
    /// writing; the command finishes first.
    ///
    /// While a `subscribe` waits (for the pub/sub adapter, say), the stock consumer resends it
    /// every 500 ms. Those copies are dropped here: the subscription already exists, pending,
    /// as Rails would see it. Run later, after a rejection the client has already accepted,
    /// they would subscribe it to something it no longer knows about.
    async fn run_while_writing(
        self,
        mut run: Pin<Box<dyn Future<Output = ()> + Send + '_>>,
        subscribing: Option<String>,
        outbox: &Outbox,
        max_read_ahead: usize,
    ) -> Option<End> {
        let Watch {
            socket,
            frames,
            backlog,
            liveness,
            budget,
            binary_frames,
            metrics,
        } = self;
        let end = loop {
            tokio::select! {
                biased;
                () = &mut run => return None,
                (reason, reconnect) = outbox.closed() => break End::Disconnect(reason, reconnect),
                // Reading ahead is bounded by the backlog and by the command budget, which
                // binary frames spend too.
                message = socket.recv(), if backlog.has_room(max_read_ahead) && budget.has_token() => match message.inspect(|_| liveness.heard()) {
                    Some(Ok(Message::Text(next))) => {
                        if subscribing.as_deref().is_some_and(|id| is_subscribe_to(&next, id)) {
                            tracing::debug!(identifier = %untrusted(subscribing.as_deref().unwrap_or_default()),
                                "subscribe repeated while pending; ignored");
                        } else {
                            backlog.push(next);
                        }
                    }
                    Some(Ok(Message::Binary(bytes))) => {
                        budget.spend();
                        refuse_binary(binary_frames, bytes.len());
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(Message::Close(_))) => break End::ClientClosed,
                    None => break End::Gone,
                    Some(Err(e)) => break read_error(e),
                },
                frame = frames.recv() => {
                    tokio::select! {
                        biased;
                        (reason, reconnect) = outbox.closed() => break End::Disconnect(reason, reconnect),
                        written = write_batch(socket, frames, frame, metrics) => if written.is_err() { break End::Gone },
                    }
                }
            }
        };
        run.await;
        Some(end)
    }
}

/// Polls `future` once, in the caller's task: `Pending` leaves it registered for a wake-up
/// and ready to be awaited (or selected on) from where it stands.
async fn poll_once<F: Future + ?Sized>(mut future: Pin<&mut F>) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(future.as_mut().poll(cx))).await
}

/// Sleeps until `until`, or never.
async fn throttle_sleep(until: Option<Instant>) {
    match until {
        Some(until) => Box::pin(tokio::time::sleep_until(until)).await,
        None => std::future::pending().await,
    }
}

/// A binary frame is not a command (Rails refuses them too: "Couldn't handle non-string
/// message"). It costs a command's budget, so a flood of them is read no faster than commands
/// are, and only the first is logged: a flood cannot flood the log.
fn refuse_binary(count: &mut u32, len: usize) {
    *count += 1;
    if *count == 1 {
        tracing::warn!(
            len,
            "ignoring a binary frame: commands are text (further ones on this connection are counted, not logged)"
        );
    }
}

fn is_subscribe_to(text: &str, identifier: &str) -> bool {
    matches!(Command::decode(text), Ok(Command::Subscribe { identifier: id }) if id == identifier)
}

/// Writes `first` and up to a batch of queued frames, then flushes once; the traced frames
/// among them (sampled deliveries, see `metrics.rs`) are timed once flushed.
async fn write_batch(
    socket: &mut WebSocket,
    frames: &mut Frames,
    first: Utf8Bytes,
    metrics: Option<&Metrics>,
) -> Result<(), axum::Error> {
    socket.feed(Message::Text(first)).await?;
    for _ in 1..WRITE_BATCH {
        match frames.try_recv() {
            Some(frame) => socket.feed(Message::Text(frame)).await?,
            None => break,
        }
    }
    socket.flush().await?;
    // Only a sampled broadcast leaves traces, and only with metrics on.
    for trace in frames.written_traces() {
        if let Some(metrics) = metrics {
            metrics.written(trace);
        }
    }
    Ok(())
}

impl<S: Send + Sync + 'static> Session<S> {
    async fn finish(self, end: End) {
        let Session {
            mut socket,
            dispatcher,
            frames,
            binary_frames,
            reservation,
            sid,
            admission,
            metrics,
            ext,
            ..
        } = self;
        if binary_frames > 1 {
            tracing::info!(binary_frames, "binary frames refused on this connection");
        }
        let timeout = dispatcher.shared.config.close_timeout;
        match end {
            End::Gone => {}
            End::ClientClosed => {
                let _ = tokio::time::timeout(timeout, socket.flush()).await;
            }
            End::Disconnect(reason, reconnect) => {
                tracing::info!(%reason, reconnect, dropped_frames = dispatcher.outbox().dropped(), "disconnecting");
                let frame = ServerMessage::disconnect(reason, reconnect).encode();
                close_politely(&mut socket, Some(frame), timeout).await;
            }
            End::TimedOut => {
                tracing::info!(timeout = ?dispatcher.shared.config.client_timeout,
                    "closing a connection that stopped answering");
            }
            End::Close(code, why) => {
                tracing::warn!(code, why, "closing");
                let close = CloseFrame {
                    code,
                    reason: Utf8Bytes::from_static(why),
                };
                let _ =
                    tokio::time::timeout(timeout, socket.send(Message::Close(Some(close)))).await;
            }
        }
        drop(socket);
        drop(admission);
        if let Some(metrics) = &metrics {
            metrics.connections(Transport::websocket(ext)).dec();
            metrics.disconnected(match end {
                End::Gone => "gone",
                End::ClientClosed => "client_close",
                End::Disconnect(reason, _) => reason.as_str(),
                End::TimedOut => "timeout",
                End::Close(..) => "protocol_error",
            });
            metrics.dropped.inc_by(dispatcher.outbox().dropped());
        }
        // A socket that dropped without the server's `disconnect` (network gone, client
        // closed, peer silent) leaves its session kept for a resume; any other end is final.
        let resumable = matches!(end, End::Gone | End::ClientClosed | End::TimedOut);
        match sid {
            Some(sid) if resumable => resume::park(sid, dispatcher, frames, reservation).await,
            _ => {
                // Another connection of the same identity may take its place.
                drop(reservation);
                dispatcher.close().await;
            }
        }
        tracing::debug!("closed");
    }
}

fn read_error(e: axum::Error) -> End {
    use std::error::Error as _;
    use tungstenite::error::ProtocolError as P;
    match e
        .source()
        .and_then(|s| s.downcast_ref::<tungstenite::Error>())
    {
        Some(tungstenite::Error::Capacity(_)) => End::Close(close_code::SIZE, "message too big"),
        // RFC 6455 (7.1.7, 8.1): fail the connection with a close frame saying why, as Rails'
        // websocket-driver does, rather than just dropping it.
        Some(tungstenite::Error::Utf8(_)) => End::Close(close_code::INVALID, "invalid UTF-8"),
        Some(tungstenite::Error::Protocol(p))
            if !matches!(
                p,
                P::ResetWithoutClosingHandshake | P::SendAfterClosing | P::ReceivedAfterClosing
            ) =>
        {
            tracing::info!(error = %p, "WebSocket protocol error");
            End::Close(close_code::PROTOCOL, "protocol error")
        }
        _ => {
            tracing::info!(error = %untrusted(&e), "WebSocket error");
            End::Gone
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_read_ahead_is_bounded_in_frames_and_in_bytes() {
        let mut backlog = Backlog::new();
        backlog.push(Utf8Bytes::from("x".repeat(600)));
        assert!(backlog.has_room(1000));
        backlog.push(Utf8Bytes::from("y".repeat(600)));
        assert!(
            !backlog.has_room(1000),
            "1,200 bytes read ahead: stop reading"
        );
        assert_eq!(backlog.pop().map(|f| f.len()), Some(600));
        assert!(backlog.has_room(1000));

        let mut small = Backlog::new();
        for _ in 0..READ_AHEAD {
            assert!(small.has_room(usize::MAX));
            small.push(Utf8Bytes::from_static("{}"));
        }
        assert!(
            !small.has_room(usize::MAX),
            "{READ_AHEAD} frames read ahead: stop reading"
        );
    }
}

#[cfg(test)]
mod size {
    use super::*;

    /// The size of the future `f` returns, without running it.
    fn future_size<A, F>(_: impl FnOnce(A) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// What an idle connection's task holds is mostly this future (`docs/benchmarks.md`,
    /// "Memory per idle connection"): tokio rounds a task up to 128 bytes, and above about
    /// 1,300 bytes it takes the next step, 128 bytes more for every connection. A field or an
    /// inline future added to the session should be a deliberate choice, so this fails first.
    /// A command's run is boxed for every command a client sends (`Session::handle`): at this
    /// size the allocation comes from the allocator's per-thread cache (glibc's ends at 1,032
    /// bytes). A larger one (the 2,456-byte watch used to be boxed whole) costs every command.
    #[test]
    fn a_commands_run_stays_a_small_allocation() {
        let run =
            future_size(|d: &mut Dispatcher<()>| d.run_with(Command::Pong, Extras::default()));
        assert!(
            run <= 1_000,
            "a command's run grew to {run} bytes; box what only rare commands do"
        );
    }

    #[test]
    fn an_idle_session_future_stays_within_its_budget() {
        let run = future_size(|s: Session<()>| s.run(None));
        assert!(
            run <= 1_264,
            "the session future grew to {run} bytes (Session {} + serve {}); box what runs rarely",
            std::mem::size_of::<Session<()>>(),
            future_size(|s: &mut Session<()>| s.serve()),
        );
    }
}
