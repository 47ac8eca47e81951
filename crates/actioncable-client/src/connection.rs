//! The connection task: one per consumer, owning the socket's read half, the monitor, the
//! subscriptions and the guarantor.
//!
//! It is `connection.js`, `subscriptions.js` and `subscription_guarantor.js` in one loop, so
//! that every decision about the connection is taken in one place and in order: a frame, a
//! monitor poll, a retry of unconfirmed subscriptions, a subscription added or removed. What
//! the stock consumer does with callbacks, this task does by sending events to each
//! subscription's queue. Writes go through the shared [`Writer`]; a subscription's `perform`
//! uses it directly, without passing through here.
//!
//! Where it differs from the stock consumer, on purpose:
//!
//! - a socket found stale is dropped at once and its subscriptions told `Disconnected` (the
//!   stock consumer starts a close handshake that a frozen server never finishes, and by then
//!   has replaced the socket's handlers, so `disconnected` is never called);
//! - an attempt still connecting when a poll finds the connection stale is abandoned and
//!   started again (a browser leaves it to its own timeouts);
//! - `reconnected` is per subscription: `true` on every confirmation after its first (the
//!   stock consumer sets it on the first confirmation after a reconnection only);
//! - a consumer that stops reconnecting is done: its subscriptions' events end, and a new
//!   [`Consumer`](crate::Consumer) is how to connect again (the stock consumer can be
//!   `connect()`ed again).

use crate::consumer::{ConnectionState, DisconnectReason};
use crate::error::Error;
#[cfg(feature = "ext")]
use crate::history::History;
use crate::monitor::{Monitor, Poll, Timing};
use crate::socket::{Endpoint, Negotiated, ReadHalf, Writer, close_halves};
use crate::wire::{self, Frame};
use futures_util::StreamExt as _;
use serde_json::value::RawValue;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, sleep_until};
use tokio_tungstenite::tungstenite::Message;

/// What a subscription handle asks of the connection task.
#[derive(Debug)]
pub(crate) enum Command {
    Subscribe {
        id: u64,
        identifier: Arc<str>,
        events: mpsc::UnboundedSender<RawEvent>,
    },
    Unsubscribe {
        id: u64,
        done: Option<oneshot::Sender<()>>,
    },
    Disconnect {
        done: oneshot::Sender<()>,
    },
}

/// An event for one subscription, before its message is deserialized into the
/// subscription's type (which the task does not know).
#[derive(Debug)]
pub(crate) enum RawEvent {
    Connected {
        reconnected: bool,
    },
    Message(Box<RawValue>),
    Rejected,
    Disconnected {
        reason: DisconnectReason,
        reconnect: bool,
    },
    #[cfg_attr(not(feature = "ext"), allow(dead_code))]
    HistoryConfirmed,
    #[cfg_attr(not(feature = "ext"), allow(dead_code))]
    HistoryRejected,
}

/// One subscription, as the task knows it.
#[derive(Debug)]
struct Entry {
    id: u64,
    identifier: Arc<str>,
    events: mpsc::UnboundedSender<RawEvent>,
    /// Confirmed on some socket before: its next confirmation is a reconnection.
    confirmed_once: bool,
}

type Opening = Pin<Box<dyn Future<Output = Result<(crate::socket::Ws, Negotiated), Error>> + Send>>;

/// The socket's state (`connection.js`'s `getState`, minus `closing`: a socket being closed
/// is no longer the consumer's).
enum Socket {
    Idle,
    Connecting(Opening),
    Open(ReadHalf),
}

/// What woke the task.
enum Wake {
    Frame(Option<Result<Message, tokio_tungstenite::tungstenite::Error>>),
    Opened(Box<Result<(crate::socket::Ws, Negotiated), Error>>),
    Command(Option<Command>),
    Poll,
    Retry,
    Reopen,
}

pub(crate) struct Task {
    endpoint: Arc<Endpoint>,
    writer: Arc<Writer>,
    state: watch::Sender<ConnectionState>,
    commands: mpsc::UnboundedReceiver<Command>,
    subs: Vec<Entry>,
    /// The guarantor's unconfirmed subscriptions (by id), and when it sends them again.
    pending: Vec<u64>,
    retry_at: Option<Instant>,
    monitor: Monitor,
    next_poll: Instant,
    socket: Socket,
    /// When to open after a stale socket was closed (`reopenDelay`).
    reopen_at: Option<Instant>,
    negotiated: Negotiated,
    #[cfg(feature = "ext")]
    history: History,
}

/// Why the loop ended.
enum End {
    /// Every handle is gone.
    Dropped,
    /// The monitor stopped.
    Stopped,
}

impl Task {
    pub(crate) fn new(
        endpoint: Arc<Endpoint>,
        writer: Arc<Writer>,
        state: watch::Sender<ConnectionState>,
        commands: mpsc::UnboundedReceiver<Command>,
        timing: Timing,
    ) -> Task {
        let now = Instant::now();
        let monitor = Monitor::start(timing, now);
        let next_poll = now + monitor.poll_interval(rand::random());
        Task {
            endpoint,
            writer,
            state,
            commands,
            subs: Vec::new(),
            pending: Vec::new(),
            retry_at: None,
            monitor,
            next_poll,
            socket: Socket::Idle,
            reopen_at: None,
            negotiated: Negotiated::Plain,
            #[cfg(feature = "ext")]
            history: History::new(unix_now()),
        }
    }

    /// Opens the first socket and runs until the consumer stops or every handle is dropped.
    pub(crate) async fn run(mut self) {
        self.open();
        let end = loop {
            let wake = self.next_wake().await;
            match wake {
                Wake::Frame(Some(Ok(Message::Text(text)))) => self.frame(text.as_str()).await,
                Wake::Frame(Some(Ok(Message::Close(_)) | Err(_)) | None) => {
                    self.lost(DisconnectReason::ConnectionLost).await;
                }
                // Binary frames are not ActionCable's; WebSocket pings are answered by the
                // library and, as in a browser, are not messages.
                Wake::Frame(Some(Ok(_))) => {}
                Wake::Opened(result) => self.opened(*result).await,
                Wake::Command(None) => break End::Dropped,
                Wake::Command(Some(command)) => self.command(command).await,
                Wake::Poll => self.poll().await,
                Wake::Retry => self.retry().await,
                Wake::Reopen => {
                    self.reopen_at = None;
                    self.open();
                }
            }
            if !self.monitor.is_running() {
                break End::Stopped;
            }
        };
        if let Socket::Open(read) = std::mem::replace(&mut self.socket, Socket::Idle) {
            close_halves(self.writer.take().await, read);
        }
        self.writer.close_for_good();
        if let End::Dropped = end {
            tracing::debug!(url = self.endpoint.url(), "consumer dropped");
        }
        // Dropping the entries ends every subscription's events.
        self.subs.clear();
    }

    async fn next_wake(&mut self) -> Wake {
        let poll_at = self.next_poll;
        let retry_at = self.retry_at;
        let reopen_at = self.reopen_at;
        let socket = &mut self.socket;
        let commands = &mut self.commands;
        tokio::select! {
            // Frames first: a poll must see every message that already arrived.
            biased;
            frame = read(socket) => frame,
            command = commands.recv() => Wake::Command(command),
            () = sleep_until(poll_at) => Wake::Poll,
            () = sleep_until(retry_at.unwrap_or(poll_at)), if retry_at.is_some() => Wake::Retry,
            () = sleep_until(reopen_at.unwrap_or(poll_at)), if reopen_at.is_some() => Wake::Reopen,
        }
    }

    fn set_state(&self, state: ConnectionState) {
        self.state.send_replace(state);
    }

    /// `connection.open()`: starts connecting, unless a socket is open or opening.
    fn open(&mut self) {
        if !matches!(self.socket, Socket::Idle) {
            return;
        }
        let endpoint = self.endpoint.clone();
        #[cfg(feature = "ext")]
        let sid = self.history.sid().map(str::to_owned);
        #[cfg(not(feature = "ext"))]
        let sid: Option<String> = None;
        self.socket =
            Socket::Connecting(Box::pin(async move { endpoint.open(sid.as_deref()).await }));
        self.set_state(ConnectionState::Connecting {
            attempt: self.monitor.attempts(),
        });
    }

    async fn opened(&mut self, result: Result<(crate::socket::Ws, Negotiated), Error>) {
        match result {
            Ok((ws, negotiated)) => {
                let (write, read) = ws.split();
                self.writer.install(write).await;
                self.socket = Socket::Open(read);
                self.negotiated = negotiated;
                tracing::debug!(url = self.endpoint.url(), ?negotiated, "socket open");
            }
            Err(Error::UnsupportedProtocol { selected }) => {
                // The socket was open, then closed for good: subscriptions hear of it, with
                // `willAttemptReconnect: false`.
                self.socket = Socket::Idle;
                self.monitor.stop();
                let reason = DisconnectReason::UnsupportedProtocol(selected);
                self.notify_all(|| RawEvent::Disconnected {
                    reason: reason.clone(),
                    reconnect: false,
                });
                self.set_state(ConnectionState::Closed { reason });
            }
            Err(e) => {
                // A socket that never opened: the stock consumer's `disconnected` flag is still
                // set, so no subscription hears of it; the monitor tries again.
                self.socket = Socket::Idle;
                tracing::debug!(url = self.endpoint.url(), error = %e, "connection failed");
                self.set_state(ConnectionState::Disconnected {
                    reason: DisconnectReason::Failed(Arc::new(e)),
                });
            }
        }
    }

    /// The open socket ended (or the consumer ended it): `connection.js`'s `close` event.
    async fn lost(&mut self, reason: DisconnectReason) {
        let Socket::Open(read) = std::mem::replace(&mut self.socket, Socket::Idle) else {
            return;
        };
        close_halves(self.writer.take().await, read);
        self.monitor.record_disconnect(Instant::now());
        let reconnect = self.monitor.is_running();
        tracing::debug!(
            url = self.endpoint.url(),
            ?reason,
            reconnect,
            "disconnected"
        );
        self.notify_all(|| RawEvent::Disconnected {
            reason: reason.clone(),
            reconnect,
        });
        self.set_state(if reconnect {
            ConnectionState::Disconnected { reason }
        } else {
            ConnectionState::Closed { reason }
        });
    }

    async fn frame(&mut self, text: &str) {
        let Some(frame) = Frame::decode(text) else {
            tracing::debug!(frame = %cut(text), "dropped a frame that is not a JSON object");
            return;
        };
        self.monitor.record_message(Instant::now());
        match frame {
            Frame::Welcome {
                sid,
                restored,
                restored_ids,
            } => self.welcome(sid, restored, restored_ids).await,
            Frame::Ping { at } => {
                #[cfg(feature = "ext")]
                if let Some(at) = at {
                    self.history.ping(at);
                }
                #[cfg(not(feature = "ext"))]
                let _ = at;
            }
            Frame::Disconnect { reason, reconnect } => {
                tracing::debug!(?reason, reconnect, "the server disconnects");
                if !reconnect {
                    self.monitor.stop();
                }
                #[cfg(feature = "ext")]
                self.history.forget_session();
                let reason = DisconnectReason::Server(reason.unwrap_or_default().into_owned());
                self.lost(reason).await;
            }
            Frame::Confirm { identifier } => {
                self.pending
                    .retain(|id| !matches_identifier(&self.subs, *id, &identifier));
                for entry in self
                    .subs
                    .iter_mut()
                    .filter(|e| *e.identifier == *identifier)
                {
                    let _ = entry.events.send(RawEvent::Connected {
                        reconnected: entry.confirmed_once,
                    });
                    entry.confirmed_once = true;
                }
            }
            Frame::Reject { identifier } => {
                self.pending
                    .retain(|id| !matches_identifier(&self.subs, *id, &identifier));
                // `subscriptions.reject`: forgotten, then told; dropping the entry ends its
                // events after `Rejected`.
                self.subs.retain(|entry| {
                    if *entry.identifier == *identifier {
                        let _ = entry.events.send(RawEvent::Rejected);
                        false
                    } else {
                        true
                    }
                });
                #[cfg(feature = "ext")]
                self.history.forget(&identifier);
            }
            Frame::ConfirmHistory { identifier } => {
                if self.negotiated == Negotiated::Extended {
                    self.notify(&identifier, || RawEvent::HistoryConfirmed);
                }
            }
            Frame::RejectHistory { identifier } => {
                if self.negotiated == Negotiated::Extended {
                    self.notify(&identifier, || RawEvent::HistoryRejected);
                }
            }
            Frame::Message {
                identifier,
                message,
                position,
            } => {
                #[cfg(feature = "ext")]
                if let Some(position) = &position
                    && self.negotiated == Negotiated::Extended
                {
                    self.history.track(&identifier, position);
                }
                #[cfg(not(feature = "ext"))]
                let _ = position;
                self.notify(&identifier, || RawEvent::Message(message.0.to_owned()));
            }
            Frame::Other => {}
        }
    }

    /// `welcome`: the connection is up again; every subscription is sent `subscribe` (or, in a
    /// resumed session, those it kept are asked for their history).
    async fn welcome(
        &mut self,
        sid: Option<String>,
        restored: bool,
        restored_ids: Option<Vec<String>>,
    ) {
        self.monitor.record_connect();
        self.set_state(ConnectionState::Connected);
        let kept: Vec<String> = if self.negotiated == Negotiated::Extended {
            #[cfg(feature = "ext")]
            self.history.welcome(sid);
            if restored {
                restored_ids
                    .unwrap_or_else(|| self.subs.iter().map(|e| e.identifier.to_string()).collect())
            } else {
                Vec::new()
            }
        } else {
            let _ = (sid, restored, restored_ids);
            Vec::new()
        };
        let ids: Vec<(u64, Arc<str>)> = self
            .subs
            .iter()
            .map(|e| (e.id, e.identifier.clone()))
            .collect();
        for (id, identifier) in ids {
            if kept.iter().any(|k| **k == *identifier) {
                self.resume(id, &identifier).await;
            } else {
                self.subscribe(id, &identifier).await;
            }
        }
    }

    /// A subscription the resumed session kept: live again without a `subscribe`; what it
    /// missed comes after a `history` command.
    async fn resume(&mut self, id: u64, identifier: &str) {
        #[cfg(feature = "ext")]
        {
            let request = self.history.request_for(identifier);
            let _ = self.writer.send(wire::history(identifier, &request)).await;
        }
        self.pending.retain(|p| *p != id);
        if let Some(entry) = self.subs.iter_mut().find(|e| e.id == id) {
            let _ = entry.events.send(RawEvent::Connected {
                reconnected: entry.confirmed_once,
            });
            entry.confirmed_once = true;
        }
        let _ = identifier;
    }

    /// `subscriptions.subscribe`: sends `subscribe`; once sent, the guarantor watches for
    /// the confirmation.
    async fn subscribe(&mut self, id: u64, identifier: &str) {
        let frame = self.subscribe_frame(identifier);
        if self.writer.send(frame).await.is_ok() {
            // `guarantor.guarantee`: pending once, and the one timer restarted.
            if !self.pending.contains(&id) {
                self.pending.push(id);
            }
            self.retry_at = Some(Instant::now() + self.monitor.timing().subscribe_retry);
        }
    }

    fn subscribe_frame(&self, identifier: &str) -> String {
        #[cfg(feature = "ext")]
        if self.negotiated == Negotiated::Extended {
            let request = self.history.request_for(identifier);
            return wire::subscribe_with_history(identifier, &request);
        }
        wire::subscribe(identifier)
    }

    /// The guarantor's timer: every subscription still unconfirmed is sent `subscribe` again.
    async fn retry(&mut self) {
        self.retry_at = None;
        let unconfirmed: Vec<(u64, Arc<str>)> = self
            .pending
            .iter()
            .filter_map(|id| self.subs.iter().find(|e| e.id == *id))
            .map(|e| (e.id, e.identifier.clone()))
            .collect();
        for (id, identifier) in unconfirmed {
            tracing::debug!(identifier = %cut(&identifier), "subscribing again");
            self.subscribe(id, &identifier).await;
        }
    }

    async fn command(&mut self, command: Command) {
        match command {
            Command::Subscribe {
                id,
                identifier,
                events,
            } => {
                self.subs.push(Entry {
                    id,
                    identifier: identifier.clone(),
                    events,
                    confirmed_once: false,
                });
                self.subscribe(id, &identifier).await;
            }
            Command::Unsubscribe { id, done } => {
                self.pending.retain(|p| *p != id);
                if let Some(at) = self.subs.iter().position(|e| e.id == id) {
                    let entry = self.subs.remove(at);
                    // `subscriptions.remove`: `unsubscribe` goes out only when no other
                    // subscription has the same identifier.
                    if !self.subs.iter().any(|e| e.identifier == entry.identifier) {
                        let _ = self.writer.send(wire::unsubscribe(&entry.identifier)).await;
                        #[cfg(feature = "ext")]
                        self.history.forget(&entry.identifier);
                    }
                }
                if let Some(done) = done {
                    let _ = done.send(());
                }
            }
            Command::Disconnect { done } => {
                // `consumer.disconnect()`: `close({allowReconnect: false})`.
                self.monitor.stop();
                self.socket = match std::mem::replace(&mut self.socket, Socket::Idle) {
                    // Abandoning an attempt: nothing was open.
                    Socket::Connecting(_) => Socket::Idle,
                    other => other,
                };
                self.lost(DisconnectReason::Closed).await;
                self.set_state(ConnectionState::Closed {
                    reason: DisconnectReason::Closed,
                });
                let _ = done.send(());
            }
        }
    }

    /// A monitor poll (`reconnectIfStale`), then the next one scheduled.
    async fn poll(&mut self) {
        let now = Instant::now();
        if self.monitor.poll(now) == Poll::Reopen {
            tracing::debug!(
                url = self.endpoint.url(),
                attempts = self.monitor.attempts(),
                "stale connection: reopening"
            );
            self.reopen().await;
        }
        self.next_poll = Instant::now() + self.monitor.poll_interval(rand::random());
    }

    /// `connection.reopen()`: an open socket is closed and the next opened after the reopen
    /// delay; an attempt still connecting is abandoned the same way; otherwise open now.
    async fn reopen(&mut self) {
        match self.socket {
            Socket::Open(_) => {
                self.lost(DisconnectReason::Stale).await;
                self.reopen_at = Some(Instant::now() + self.monitor.timing().reopen_delay);
            }
            Socket::Connecting(_) => {
                self.socket = Socket::Idle;
                self.reopen_at = Some(Instant::now() + self.monitor.timing().reopen_delay);
            }
            Socket::Idle => self.open(),
        }
    }

    fn notify(&self, identifier: &str, event: impl Fn() -> RawEvent) {
        for entry in self.subs.iter().filter(|e| *e.identifier == *identifier) {
            let _ = entry.events.send(event());
        }
    }

    fn notify_all(&self, event: impl Fn() -> RawEvent) {
        for entry in &self.subs {
            let _ = entry.events.send(event());
        }
    }
}

fn matches_identifier(subs: &[Entry], id: u64, identifier: &str) -> bool {
    subs.iter()
        .any(|e| e.id == id && *e.identifier == *identifier)
}

/// The next frame of an open socket, the outcome of an attempt, or never.
async fn read(socket: &mut Socket) -> Wake {
    match socket {
        Socket::Open(read) => Wake::Frame(read.next().await),
        Socket::Connecting(opening) => Wake::Opened(Box::new(opening.await)),
        Socket::Idle => std::future::pending().await,
    }
}

/// Server text in a log line: at most 200 characters.
fn cut(text: &str) -> &str {
    match text.char_indices().nth(200) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

#[cfg(feature = "ext")]
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
