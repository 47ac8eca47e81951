//! One client connection: TCP (optionally from a chosen source address), the WebSocket
//! handshake with the ActionCable subprotocol, the welcome, one `BenchmarkChannel`
//! subscription; plus the frames the modes send and the parts of received frames they read.

use crate::{ConnectArgs, secs};
use actioncable_client::{ConnectionState, Consumer, Event, Subscription};
use anyhow::{Context as _, anyhow, bail};
use futures_util::{SinkExt as _, StreamExt as _};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::{HeaderValue, Uri};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// A subscribed client connection.
pub(crate) type Ws = WebSocketStream<TcpStream>;

/// The subscription identifier every client uses (the client's exact string is echoed back).
pub(crate) const IDENTIFIER: &str = r#"{"channel":"BenchmarkChannel"}"#;

/// [`IDENTIFIER`] as a consumer's subscription params (a channel name alone).
const IDENTIFIER_PARAMS: &str = "BenchmarkChannel";

/// The subprotocol the clients offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Protocol {
    /// `actioncable-v1-json`, Rails' protocol (the stock consumer's).
    Plain,
    /// `actioncable-v1-ext-json`, AnyCable's extended protocol (`@anycable/core`'s): with
    /// history on, every broadcast frame carries its stream position.
    Ext,
}

impl Protocol {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Protocol::Plain => "actioncable-v1-json",
            Protocol::Ext => "actioncable-v1-ext-json",
        }
    }
}

/// Where to connect and how; resolved once per run.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    url: String,
    protocol: Protocol,
    addr: SocketAddr,
    origin: Option<HeaderValue>,
    bind_ips: Vec<IpAddr>,
    /// The request target of an event stream (`--events-path`).
    events_path: String,
}

/// A subscribed [`Consumer`] (the `echo` mode's client): the consumer and its
/// `BenchmarkChannel` subscription, with messages read as `T`.
#[derive(Debug)]
pub(crate) struct Subscribed<T> {
    pub(crate) consumer: Consumer,
    pub(crate) subscription: Subscription<T>,
}

impl Target {
    pub(crate) async fn resolve(args: &ConnectArgs) -> anyhow::Result<Target> {
        let uri: Uri = args
            .url
            .parse()
            .with_context(|| format!("invalid --url {:?}", args.url))?;
        match uri.scheme_str() {
            Some("ws") => {}
            Some("wss") => bail!("wss:// is not supported; benchmark over ws://"),
            _ => bail!("--url must start with ws://"),
        }
        let host = uri.host().ok_or_else(|| anyhow!("--url has no host"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = uri.port_u16().unwrap_or(80);
        let addr = tokio::net::lookup_host((host, port))
            .await
            .with_context(|| format!("cannot resolve {host}"))?
            .next()
            .ok_or_else(|| anyhow!("{host} resolves to no address"))?;
        for ip in &args.bind_ips {
            if ip.is_ipv4() != addr.is_ipv4() {
                bail!("--bind-ips {ip} is not of the same family as the server address {addr}");
            }
        }
        let origin = match &args.origin {
            Some(o) => Some(HeaderValue::from_str(o).context("invalid --origin")?),
            None => None,
        };
        Ok(Target {
            url: args.url.clone(),
            protocol: args.protocol,
            addr,
            origin,
            bind_ips: args.bind_ips.clone(),
            events_path: args.events_path.clone(),
        })
    }

    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    pub(crate) fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Client `index` as an `actioncable-client` consumer, returned once its subscription is
    /// confirmed. The consumer would reconnect by itself; the modes count a disconnect as a
    /// lost connection and stop the consumer instead.
    ///
    /// With `--protocol ext` the consumer offers the extended protocol and, unlike
    /// [`open`](Self::open), goes on with the plain one if the server selects that.
    pub(crate) async fn subscribe<T>(&self, index: usize) -> anyhow::Result<Subscribed<T>>
    where
        T: DeserializeOwned,
    {
        let mut builder = Consumer::builder(self.url.as_str())
            .read_buffer_size(4096)
            .extended_protocol(self.protocol == Protocol::Ext);
        if let Some(origin) = &self.origin {
            builder = builder.origin(origin.to_str().context("--origin")?);
        }
        if !self.bind_ips.is_empty() {
            builder = builder.local_address(self.bind_ips[index % self.bind_ips.len()]);
        }
        let consumer = builder.connect()?;
        let mut subscription = consumer.subscribe::<T>(IDENTIFIER_PARAMS)?;
        let mut state = consumer.state_changes();
        let failed = state.wait_for(|s| {
            matches!(
                s,
                ConnectionState::Disconnected { .. } | ConnectionState::Closed { .. }
            )
        });
        tokio::select! {
            event = subscription.recv() => match event {
                Some(Event::Connected { .. }) => Ok(Subscribed { consumer, subscription }),
                Some(Event::Rejected) => bail!("the server rejected {IDENTIFIER}"),
                Some(Event::Disconnected { reason, .. }) => bail!("disconnected: {reason}"),
                Some(_) | None => bail!("the consumer stopped before the subscription was confirmed"),
            },
            state = failed => match state.as_deref() {
                Ok(ConnectionState::Disconnected { reason } | ConnectionState::Closed { reason }) => {
                    bail!("cannot connect: {reason}")
                }
                _ => bail!("the consumer stopped"),
            },
        }
    }

    /// The server's address (the host and port of `--url`).
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The path and query event-stream clients request (`--events-path`).
    pub(crate) fn events_path(&self) -> &str {
        &self.events_path
    }

    /// The `Origin` header to send, if any.
    pub(crate) fn origin(&self) -> Option<&HeaderValue> {
        self.origin.as_ref()
    }

    /// A TCP connection to the server for client `index`, from the next of `--bind-ips`.
    pub(crate) async fn tcp(&self, index: usize) -> anyhow::Result<TcpStream> {
        let socket = if self.addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if !self.bind_ips.is_empty() {
            let ip = self.bind_ips[index % self.bind_ips.len()];
            socket
                .bind(SocketAddr::new(ip, 0))
                .with_context(|| format!("bind {ip}"))?;
        }
        let stream = socket
            .connect(self.addr)
            .await
            .with_context(|| format!("TCP connect to {}", self.addr))?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    /// Connects client `index` and returns it once its subscription is confirmed.
    pub(crate) async fn open(&self, index: usize) -> anyhow::Result<Ws> {
        let stream = self.tcp(index).await?;

        let mut request = self.url.as_str().into_client_request()?;
        let headers = request.headers_mut();
        headers.insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static(self.protocol.name()),
        );
        if let Some(origin) = &self.origin {
            headers.insert("Origin", origin.clone());
        }
        // Small buffers: thousands of mostly idle clients, small frames.
        let config = WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(0);
        let (mut ws, response) =
            tokio_tungstenite::client_async_with_config(request, stream, Some(config))
                .await
                .context("WebSocket handshake")?;
        let selected = response.headers().get("Sec-WebSocket-Protocol");
        if selected.and_then(|v| v.to_str().ok()) != Some(self.protocol.name()) {
            bail!(
                "the server selected {selected:?}, not {}",
                self.protocol.name()
            );
        }

        wait_for(&mut ws, "welcome").await?;
        let subscribe = serde_json::json!({ "command": "subscribe", "identifier": IDENTIFIER });
        ws.send(Message::text(subscribe.to_string())).await?;
        wait_for(&mut ws, "confirm_subscription").await?;
        Ok(ws)
    }
}

/// Reads frames until one of type `kind`; pings are skipped, anything else fails.
async fn wait_for(ws: &mut Ws, kind: &str) -> anyhow::Result<()> {
    loop {
        let text = match ws.next().await {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(frame))) => bail!("closed by the server ({frame:?})"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e).context(format!("waiting for {kind}")),
            None => bail!("connection closed while waiting for {kind}"),
        };
        match Incoming::parse(&text) {
            Some(Incoming::Control(k)) if k == kind => return Ok(()),
            Some(Incoming::Control(k)) if k == "ping" => {}
            _ => bail!("expected {kind}, got {text}"),
        }
    }
}

/// A received frame, as far as the modes care.
#[derive(Debug, PartialEq)]
pub(crate) enum Incoming<'a> {
    /// A frame with a `type` (welcome, ping, confirm_subscription, disconnect, …).
    Control(Cow<'a, str>),
    /// A message for the subscription: the benchmark's data, if it has that shape.
    Data(BenchData<'a>),
}

#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    message: Option<&'a RawValue>,
    /// The stream position's offset, on the extended protocol with history on.
    #[serde(default)]
    offset: Option<u64>,
}

/// The data the benchmark sends and gets back: `{"action":…,"payload":{…}}`.
#[derive(Debug, PartialEq, Deserialize)]
pub(crate) struct BenchData<'a> {
    #[serde(borrow, default)]
    pub(crate) action: Option<Cow<'a, str>>,
    #[serde(default)]
    pub(crate) payload: Option<Payload>,
    /// The frame carried a stream position (`offset`; extended protocol, history on).
    #[serde(skip)]
    pub(crate) positioned: bool,
}

/// The benchmark's payload (the padding, if any, is not read back).
#[derive(Debug, PartialEq, Deserialize)]
pub(crate) struct Payload {
    /// The sending client (broadcast) or the client itself (echo).
    #[serde(default)]
    pub(crate) sender: u32,
    /// The round (broadcast) or the round trip (echo).
    pub(crate) seq: u32,
    /// The sender's [`Clock`](crate::Clock) at the send.
    pub(crate) sent_ns: u64,
}

impl<'a> Incoming<'a> {
    /// `None` for a frame that is not an ActionCable frame of a known shape.
    pub(crate) fn parse(text: &'a str) -> Option<Incoming<'a>> {
        let frame: Frame<'a> = serde_json::from_str(text).ok()?;
        if let Some(kind) = frame.kind {
            return Some(Incoming::Control(kind));
        }
        let mut data: BenchData<'_> = serde_json::from_str(frame.message?.get()).ok()?;
        data.positioned = frame.offset.is_some();
        Some(Incoming::Data(data))
    }
}

/// The `message` command performing `action` with `payload`.
pub(crate) fn perform(action: &str, payload: serde_json::Value) -> Utf8Bytes {
    let data = serde_json::json!({ "action": action, "payload": payload });
    let command = serde_json::json!({
        "command": "message",
        "identifier": IDENTIFIER,
        "data": data.to_string(),
    });
    command.to_string().into()
}

/// The benchmark payload, with `pad` bytes of padding when asked.
pub(crate) fn payload(sender: u32, seq: u32, sent_ns: u64, pad: &str) -> serde_json::Value {
    let mut payload = serde_json::json!({ "sender": sender, "seq": seq, "sent_ns": sent_ns });
    if !pad.is_empty() {
        payload["pad"] = pad.into();
    }
    payload
}

/// Settings for opening many connections.
#[derive(Debug)]
pub(crate) struct Ramp {
    pub(crate) target: Arc<Target>,
    pub(crate) per_sec: f64,
    pub(crate) max_handshakes: usize,
    pub(crate) connect_timeout: Duration,
}

impl Ramp {
    pub(crate) fn new(target: Target, args: &ConnectArgs) -> anyhow::Result<Ramp> {
        if !args.ramp_per_sec.is_finite() || args.ramp_per_sec <= 0.0 {
            bail!("--ramp-per-sec must be positive");
        }
        Ok(Ramp {
            target: Arc::new(target),
            per_sec: args.ramp_per_sec,
            max_handshakes: args.max_handshakes.max(1),
            connect_timeout: secs(args.connect_timeout_secs, "--connect-timeout-secs")?,
        })
    }

    /// Opens `count` connections at the ramp's pace, at most `max_handshakes` at once; each
    /// subscribed connection is handed to `session` on its own task in `tasks` (the call to
    /// `session` happens before the connection counts as ready; the future it returns runs
    /// after). Returns once `count` connections are subscribed. Fails at the first connection that fails, or
    /// at `deadline`.
    pub(crate) async fn open_all<F, Fut>(
        &self,
        count: usize,
        deadline: Instant,
        tasks: &mut JoinSet<()>,
        session: F,
    ) -> anyhow::Result<Duration>
    where
        F: Fn(usize, Ws) -> Fut + Send + Sync + Clone + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let open = |target: Arc<Target>, index| async move { target.open(index).await };
        self.open_all_with(count, deadline, tasks, open, session)
            .await
    }

    /// [`open_all`](Self::open_all) with clients that `open` makes (client `index` of the
    /// target, subscribed), such as [`Target::subscribe`]'s consumers or event streams
    /// ([`EventStream::open`](crate::sse::EventStream::open)).
    pub(crate) async fn open_all_with<C, O, OFut, F, Fut>(
        &self,
        count: usize,
        deadline: Instant,
        tasks: &mut JoinSet<()>,
        open: O,
        session: F,
    ) -> anyhow::Result<Duration>
    where
        C: Send + 'static,
        O: Fn(Arc<Target>, usize) -> OFut + Send + Sync + Clone + 'static,
        OFut: Future<Output = anyhow::Result<C>> + Send + 'static,
        F: Fn(usize, C) -> Fut + Send + Sync + Clone + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let started = Instant::now();
        let handshakes = Arc::new(Semaphore::new(self.max_handshakes));
        let (ready_tx, mut ready_rx) = mpsc::channel::<anyhow::Result<()>>(1024);
        let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / self.per_sec));
        let mut launched = 0;
        let mut ready = 0;
        let progress_every = (count / 10).max(1);
        while ready < count {
            tokio::select! {
                biased;
                outcome = ready_rx.recv() => {
                    let outcome = outcome.ok_or_else(|| anyhow!("connection tasks vanished"))?;
                    outcome?;
                    ready += 1;
                    if ready % progress_every == 0 {
                        eprintln!("  {ready}/{count} subscribed");
                    }
                }
                permit = handshakes.clone().acquire_owned(), if launched < count => {
                    let permit = permit?;
                    ticks.tick().await;
                    let index = launched;
                    launched += 1;
                    tasks.spawn(connect_one(
                        open(self.target.clone(), index),
                        index,
                        self.connect_timeout,
                        permit,
                        ready_tx.clone(),
                        session.clone(),
                    ));
                }
                _ = tokio::time::sleep_until(deadline) => {
                    bail!("only {ready} of {count} connections subscribed before the run's deadline");
                }
            }
        }
        Ok(started.elapsed())
    }
}

async fn connect_one<C, OFut, F, Fut>(
    open: OFut,
    index: usize,
    limit: Duration,
    permit: OwnedSemaphorePermit,
    ready: mpsc::Sender<anyhow::Result<()>>,
    session: F,
) where
    OFut: Future<Output = anyhow::Result<C>>,
    F: Fn(usize, C) -> Fut,
    Fut: Future<Output = ()>,
{
    let opened = match tokio::time::timeout(limit, open).await {
        Ok(opened) => opened,
        Err(_) => Err(anyhow!("not subscribed within {limit:?}")),
    };
    drop(permit);
    match opened {
        Ok(client) => {
            // The closure's synchronous part (e.g. handing over the write half) runs before
            // the connection counts as ready.
            let run = session(index, client);
            if ready.send(Ok(())).await.is_ok() {
                drop(ready);
                run.await;
            }
        }
        Err(e) => {
            let _ = ready
                .send(Err(e.context(format!("connection {index}"))))
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_control_frames_and_data() {
        assert_eq!(
            Incoming::parse(r#"{"type":"welcome"}"#),
            Some(Incoming::Control("welcome".into()))
        );
        assert_eq!(
            Incoming::parse(r#"{"type":"ping","message":1700000000}"#),
            Some(Incoming::Control("ping".into()))
        );
        let frame = r#"{"identifier":"{\"channel\":\"BenchmarkChannel\"}","message":{"action":"broadcast","payload":{"sender":3,"seq":7,"sent_ns":42,"pad":"xx"}}}"#;
        assert_eq!(
            Incoming::parse(frame),
            Some(Incoming::Data(BenchData {
                action: Some("broadcast".into()),
                payload: Some(Payload {
                    sender: 3,
                    seq: 7,
                    sent_ns: 42
                }),
                positioned: false,
            }))
        );
        let positioned = r#"{"identifier":"{\"channel\":\"BenchmarkChannel\"}","message":{"action":"broadcast","payload":{"sender":3,"seq":7,"sent_ns":42}},"stream_id":"all","epoch":"e1","offset":12}"#;
        assert!(matches!(
            Incoming::parse(positioned),
            Some(Incoming::Data(BenchData {
                positioned: true,
                ..
            }))
        ));
        assert_eq!(Incoming::parse("not json"), None);
    }

    #[test]
    fn perform_wraps_data_as_a_json_string() {
        let text = perform("broadcast", payload(1, 2, 3, "ab"));
        let command: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(command["command"], "message");
        assert_eq!(command["identifier"], IDENTIFIER);
        let data: serde_json::Value =
            serde_json::from_str(command["data"].as_str().unwrap()).unwrap();
        assert_eq!(
            data,
            serde_json::json!({"action":"broadcast","payload":{"sender":1,"seq":2,"sent_ns":3,"pad":"ab"}})
        );
    }
}
