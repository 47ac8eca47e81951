//! The consumer: one cable connection, kept alive, and the subscriptions on it.
//!
//! `consumer.js` in Rust. Building a consumer checks its settings and starts its connection
//! task; from then on the task connects, notices a stale connection, reconnects with the stock
//! consumer's backoff and resubscribes, until the server says not to reconnect,
//! [`Consumer::disconnect`] is called, or every handle (the consumer's clones and its
//! subscriptions) is dropped.

use crate::connection::{Command, Task};
use crate::error::Error;
use crate::monitor::Timing;
use crate::socket::{Endpoint, RequestParts, Writer};
use crate::subscription::{Subscription, SubscriptionHandle};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

/// A connection to an ActionCable server, with the stock `@rails/actioncable` consumer's
/// behaviour: it resubscribes after every reconnection, tells a stale connection from missing
/// pings, and backs off between attempts.
///
/// Cloning is cheap; every clone is the same consumer. The connection lasts as long as a clone
/// or a [`Subscription`] of it exists (or until [`disconnect`](Self::disconnect), or a server
/// `disconnect` with `reconnect: false`).
///
/// ```no_run
/// use actioncable_client::{Consumer, Event};
/// use serde::Deserialize;
/// use serde_json::json;
///
/// #[derive(Debug, Deserialize)]
/// struct ChatMessage {
///     user: String,
///     text: String,
/// }
///
/// # async fn run() -> Result<(), actioncable_client::Error> {
/// let consumer = Consumer::builder("ws://127.0.0.1:3000/cable")
///     .query("token", "a signed token")
///     .origin("http://127.0.0.1:3000")
///     .connect()?;
/// let mut chat = consumer.subscribe::<ChatMessage>(json!({ "channel": "ChatChannel", "room": "lobby" }))?;
/// while let Some(event) = chat.recv().await {
///     match event {
///         Event::Connected { .. } => chat.perform("speak", json!({ "text": "hello" })).await?,
///         Event::Received(message) => println!("{}: {}", message.user, message.text),
///         Event::Undecodable(error) => eprintln!("skipped: {error}"),
///         Event::Rejected => break,
///         Event::Disconnected { reconnect: false, .. } => break,
///         _ => {}
///     }
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Consumer {
    inner: Arc<Inner>,
}

struct Inner {
    url: String,
    commands: mpsc::UnboundedSender<Command>,
    writer: Arc<Writer>,
    state: watch::Receiver<ConnectionState>,
    next_id: AtomicU64,
}

impl fmt::Debug for Consumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("url", &self.inner.url)
            .field("state", &*self.inner.state.borrow())
            .finish()
    }
}

/// Where the consumer's connection stands; [`Consumer::state`] and
/// [`Consumer::state_changes`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ConnectionState {
    /// Opening a socket, or open and waiting for the server's `welcome`. `attempt` counts the
    /// monitor's reconnection attempts since the last welcome (0 for the first connection and
    /// right after a server restart).
    Connecting {
        /// Attempts since the last welcome.
        attempt: u32,
    },
    /// Open and welcomed: subscriptions are being (re)confirmed.
    Connected,
    /// No socket at the moment; the monitor will open one (from 6 to 18 s after the last
    /// message, later after failed attempts: see [`crate::monitor`]).
    Disconnected {
        /// Why the last socket ended or the last attempt failed.
        reason: DisconnectReason,
    },
    /// Done for good: the consumer will not connect again.
    Closed {
        /// Why.
        reason: DisconnectReason,
    },
}

/// Why a socket ended or did not open.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// The server sent `disconnect` with this reason (`server_restart`, `unauthorized`,
    /// `remote`, `too_slow`, `token_expired`…; empty when it gave none).
    Server(String),
    /// Nothing came from the server for the stale threshold (two missed pings): the consumer
    /// closed the socket to open another.
    Stale,
    /// The socket closed or failed without a `disconnect` from the server.
    ConnectionLost,
    /// The server selected no protocol the consumer speaks; the consumer stopped.
    UnsupportedProtocol(Option<String>),
    /// A connection attempt failed (refused, an HTTP answer such as 404, a failed handshake).
    Failed(Arc<Error>),
    /// [`Consumer::disconnect`].
    Closed,
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DisconnectReason::Server(reason) if reason.is_empty() => {
                f.write_str("the server disconnected")
            }
            DisconnectReason::Server(reason) => write!(f, "the server disconnected: {reason}"),
            DisconnectReason::Stale => f.write_str("no ping from the server: stale connection"),
            DisconnectReason::ConnectionLost => f.write_str("connection lost"),
            DisconnectReason::UnsupportedProtocol(selected) => {
                write!(f, "unsupported protocol {selected:?}")
            }
            DisconnectReason::Failed(error) => write!(f, "cannot connect: {error}"),
            DisconnectReason::Closed => f.write_str("disconnected by the consumer"),
        }
    }
}

/// Settings of a [`Consumer`]: the URL, credentials, `Origin`, and the monitor's timings.
///
/// ```no_run
/// use actioncable_client::Consumer;
///
/// # async fn run() -> Result<(), actioncable_client::Error> {
///
/// let consumer = Consumer::builder("ws://127.0.0.1:3000/cable")
///     .header("Authorization", "Bearer a-jwt")
///     .cookie("user", "signed-cookie-value")
///     .origin("http://localhost:3000")
///     .connect()?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct ConsumerBuilder {
    url: String,
    query: Vec<(String, String)>,
    parts: RequestParts,
    timing: Timing,
}

impl ConsumerBuilder {
    /// A request header on every upgrade (e.g. `Authorization`).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.parts.headers.push((name.into(), value.into()));
        self
    }

    /// A cookie on every upgrade, its value as given (already signed or encrypted by whoever
    /// issued it).
    pub fn cookie(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.parts.cookies.push((name.into(), value.into()));
        self
    }

    /// The `Origin` header. None is sent by default (a non-browser client): this project's
    /// server admits that, Rails refuses it unless told otherwise
    /// (`allowed_request_origins`), so set it to an origin the server allows.
    pub fn origin(mut self, origin: impl Into<String>) -> Self {
        self.parts.origin = Some(origin.into());
        self
    }

    /// A query parameter added to the URL, percent-encoded: the way browser clients send a
    /// token (`?token=…`, AnyCable's `?jid=…`).
    pub fn query(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.query.push((name.into(), value.into()));
        self
    }

    /// One more subprotocol offered after `actioncable-v1-json` (`consumer.addSubProtocol`,
    /// e.g. a token for a server that reads it there).
    pub fn subprotocol(mut self, protocol: impl Into<String>) -> Self {
        self.parts.subprotocols.push(protocol.into());
        self
    }

    /// Connect from this local address (for many connections from one machine, spread over
    /// several loopback addresses).
    pub fn local_address(mut self, ip: IpAddr) -> Self {
        self.parts.local_ip = Some(ip);
        self
    }

    /// How long without a message before the connection is stale. Default: 6 s
    /// ([`STALE_THRESHOLD`](crate::monitor::STALE_THRESHOLD)), twice the 3 s ping of Rails and
    /// of this project's server; change it with the server's ping interval.
    pub fn stale_threshold(mut self, threshold: Duration) -> Self {
        self.timing.stale_threshold = threshold;
        self
    }

    /// How much later each failed attempt polls. Default: 0.15
    /// ([`RECONNECTION_BACKOFF_RATE`](crate::monitor::RECONNECTION_BACKOFF_RATE)).
    pub fn reconnection_backoff_rate(mut self, rate: f64) -> Self {
        self.timing.backoff_rate = if rate.is_finite() { rate.max(0.0) } else { 0.0 };
        self
    }

    /// The pause between closing a stale socket and opening the next. Default: 500 ms
    /// ([`REOPEN_DELAY`](crate::monitor::REOPEN_DELAY)).
    pub fn reopen_delay(mut self, delay: Duration) -> Self {
        self.timing.reopen_delay = delay;
        self
    }

    /// How often an unconfirmed `subscribe` is sent again. Default: 500 ms
    /// ([`SUBSCRIBE_RETRY`](crate::monitor::SUBSCRIBE_RETRY)).
    pub fn subscribe_retry(mut self, every: Duration) -> Self {
        self.timing.subscribe_retry = every;
        self
    }

    /// The read buffer of each socket, in bytes (default 8 KiB; frames larger than it are
    /// still read whole).
    pub fn read_buffer_size(mut self, bytes: usize) -> Self {
        self.parts.read_buffer_size = Some(bytes.max(64));
        self
    }

    /// Offer AnyCable's extended protocol (`actioncable-v1-ext-json`) before the plain one.
    /// When the server selects it, a dropped connection resumes its session (the server
    /// keeps the subscriptions) and each subscription is sent what it missed, from the
    /// stream positions the consumer saw (`docs/reliability.md`); a server that does not
    /// speak it selects the plain protocol and nothing changes. Off by default.
    #[cfg(feature = "ext")]
    pub fn extended_protocol(mut self, on: bool) -> Self {
        self.parts.extended = on;
        self
    }

    /// Checks the settings and starts connecting in the background (on the current tokio
    /// runtime); returns at once. [`Consumer::connected`] waits for the connection.
    ///
    /// # Errors
    /// [`Error::Url`] for a URL that is not `ws://`, [`Error::Header`] for a header, cookie,
    /// origin or subprotocol HTTP cannot carry, [`Error::Transport`] outside a tokio runtime.
    pub fn connect(self) -> Result<Consumer, Error> {
        let url = with_query(&self.url, &self.query);
        let endpoint = Arc::new(Endpoint::new(&url, self.parts)?);
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|e| Error::Transport(Box::new(e)))?;
        let writer = Arc::new(Writer::default());
        let (state_tx, state) = watch::channel(ConnectionState::Connecting { attempt: 0 });
        let (commands, command_rx) = mpsc::unbounded_channel();
        let task = Task::new(endpoint, writer.clone(), state_tx, command_rx, self.timing);
        runtime.spawn(task.run());
        Ok(Consumer {
            inner: Arc::new(Inner {
                url,
                commands,
                writer,
                state,
                next_id: AtomicU64::new(1),
            }),
        })
    }
}

fn with_query(url: &str, query: &[(String, String)]) -> String {
    if query.is_empty() {
        return url.to_owned();
    }
    let mut serializer = form_urlencoded::Serializer::new(String::new());
    for (name, value) in query {
        serializer.append_pair(name, value);
    }
    let encoded = serializer.finish();
    let (base, fragment) = match url.split_once('#') {
        Some((base, fragment)) => (base, Some(fragment)),
        None => (url, None),
    };
    let joiner = if !base.contains('?') {
        "?"
    } else if base.ends_with('?') || base.ends_with('&') {
        ""
    } else {
        "&"
    };
    match fragment {
        Some(fragment) => format!("{base}{joiner}{encoded}#{fragment}"),
        None => format!("{base}{joiner}{encoded}"),
    }
}

impl Consumer {
    /// A consumer of `url` with the default settings, connecting in the background.
    ///
    /// # Errors
    /// As [`ConsumerBuilder::connect`].
    pub fn connect(url: impl Into<String>) -> Result<Consumer, Error> {
        Consumer::builder(url).connect()
    }

    /// Settings for a consumer of `url` (`ws://host:port/cable`).
    pub fn builder(url: impl Into<String>) -> ConsumerBuilder {
        ConsumerBuilder {
            url: url.into(),
            query: Vec::new(),
            parts: RequestParts::default(),
            timing: Timing::default(),
        }
    }

    /// The URL it connects to (with the builder's query parameters).
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// Subscribes to a channel: `params` is the channel's name (`"EchoChannel"`) or a value
    /// that serializes to a JSON object with a `channel` key
    /// (`json!({"channel": "ChatChannel", "room": "lobby"})`). As in the stock consumer, the
    /// identifier is that object's JSON text, keys in the order given.
    ///
    /// The subscription's messages are deserialized into `T` (`serde_json::Value` takes
    /// anything). It is sent `subscribe` now if the cable is connected, and again after every
    /// reconnection; until confirmed or rejected, `subscribe` is repeated every 500 ms.
    ///
    /// # Errors
    /// [`Error::NotAnObject`] or [`Error::Serialize`] for params that are not a channel name or
    /// an object; [`Error::Closed`] once the consumer stopped.
    pub fn subscribe<T: DeserializeOwned>(
        &self,
        params: impl Serialize,
    ) -> Result<Subscription<T>, Error> {
        let identifier = identifier(&params)?;
        if self.inner.writer.is_closed() {
            return Err(Error::Closed);
        }
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let identifier: Arc<str> = Arc::from(identifier);
        let (events_tx, events) = mpsc::unbounded_channel();
        self.inner
            .commands
            .send(Command::Subscribe {
                id,
                identifier: identifier.clone(),
                events: events_tx,
            })
            .map_err(|_| Error::Closed)?;
        let handle = SubscriptionHandle::new(identifier, self.inner.writer.clone());
        Ok(Subscription::new(
            id,
            handle,
            events,
            self.inner.commands.clone(),
        ))
    }

    /// Where the connection stands now.
    pub fn state(&self) -> ConnectionState {
        self.inner.state.borrow().clone()
    }

    /// Every change of [`state`](Self::state), for a status display.
    pub fn state_changes(&self) -> watch::Receiver<ConnectionState> {
        self.inner.state.clone()
    }

    /// Waits until the cable is connected (welcomed).
    ///
    /// # Errors
    /// [`Error::Closed`] if the consumer stops first.
    pub async fn connected(&self) -> Result<(), Error> {
        let mut state = self.inner.state.clone();
        let outcome = state
            .wait_for(|s| {
                matches!(
                    s,
                    ConnectionState::Connected | ConnectionState::Closed { .. }
                )
            })
            .await;
        match outcome.as_deref() {
            Ok(ConnectionState::Connected) => Ok(()),
            _ => Err(Error::Closed),
        }
    }

    /// Closes the connection for good (`consumer.disconnect()`): every subscription is told
    /// `Disconnected { reconnect: false }` (if the socket was open) and its events end.
    pub async fn disconnect(&self) {
        let (done, closed) = oneshot::channel();
        if self
            .inner
            .commands
            .send(Command::Disconnect { done })
            .is_ok()
        {
            let _ = closed.await;
        }
    }
}

/// The identifier of `params`: `subscriptions.js`'s `typeof channel === "object" ? channel :
/// {channel}`, then `JSON.stringify`.
fn identifier(params: &impl Serialize) -> Result<String, Error> {
    let serialize = |source| Error::Serialize {
        what: "params",
        source,
    };
    let value = serde_json::to_value(params).map_err(serialize)?;
    match value {
        serde_json::Value::String(channel) => {
            Ok(serde_json::json!({ "channel": channel }).to_string())
        }
        // Serialized straight from `params`, so the keys keep their order whatever
        // serde_json's map does.
        serde_json::Value::Object(_) => serde_json::to_string(params).map_err(serialize),
        other => Err(Error::NotAnObject {
            what: "params",
            found: crate::wire::kind_of(&other),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn identifiers_are_the_params_json_text_in_their_order() {
        assert_eq!(
            identifier(&"EchoChannel").unwrap(),
            r#"{"channel":"EchoChannel"}"#
        );
        assert_eq!(
            identifier(&json!({"channel": "ChatChannel", "room": "lobby"})).unwrap(),
            r#"{"channel":"ChatChannel","room":"lobby"}"#
        );
        #[derive(Serialize)]
        struct Params {
            room: &'static str,
            channel: &'static str,
        }
        assert_eq!(
            identifier(&Params {
                room: "a",
                channel: "ChatChannel"
            })
            .unwrap(),
            r#"{"room":"a","channel":"ChatChannel"}"#
        );
        assert!(matches!(
            identifier(&[1, 2]),
            Err(Error::NotAnObject {
                what: "params",
                found: "an array"
            })
        ));
    }

    #[test]
    fn query_parameters_are_appended_and_encoded() {
        let q = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        assert_eq!(with_query("ws://h/cable", &[]), "ws://h/cable");
        assert_eq!(
            with_query("ws://h/cable", &q(&[("token", "a b&c")])),
            "ws://h/cable?token=a+b%26c"
        );
        assert_eq!(
            with_query("ws://h/cable?x=1", &q(&[("token", "t")])),
            "ws://h/cable?x=1&token=t"
        );
    }

    #[tokio::test]
    async fn bad_settings_are_errors_of_connect() {
        assert!(matches!(
            Consumer::connect("http://127.0.0.1/cable"),
            Err(Error::Url { .. })
        ));
        assert!(matches!(
            Consumer::connect("wss://127.0.0.1/cable"),
            Err(Error::Url { .. })
        ));
        assert!(matches!(
            Consumer::connect("not a url"),
            Err(Error::Url { .. })
        ));
        assert!(matches!(
            Consumer::builder("ws://127.0.0.1/cable")
                .header("x-bad", "line\nbreak")
                .connect(),
            Err(Error::Header { .. })
        ));
        assert!(matches!(
            Consumer::builder("ws://127.0.0.1/cable")
                .subprotocol("two words")
                .connect(),
            Err(Error::Header { .. })
        ));
    }

    #[test]
    fn connect_outside_a_runtime_is_an_error() {
        assert!(matches!(
            Consumer::connect("ws://127.0.0.1:1/cable"),
            Err(Error::Transport(_))
        ));
    }
}
