//! Opening a socket: the URL, the upgrade request (headers, cookies, `Origin`, the offered
//! subprotocols), TCP from an optional source address, the handshake; and the write half
//! shared by everyone who sends.
//!
//! The request is built once from the builder's settings and checked then, so that a bad
//! header is an error of [`ConsumerBuilder::connect`](crate::ConsumerBuilder::connect), not of
//! every reconnection.

use crate::error::Error;
use crate::wire::{EXT_PROTOCOL, PROTOCOL, UNSUPPORTED_PROTOCOL};
use futures_util::SinkExt as _;
use futures_util::stream::{SplitSink, SplitStream};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::error::{ProtocolError, SubProtocolError};
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue, Request};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};

pub(crate) type Ws = WebSocketStream<TcpStream>;
pub(crate) type ReadHalf = SplitStream<Ws>;
type WriteHalf = SplitSink<Ws, Message>;

/// The header AnyCable's server reads a session id to resume from (its
/// `cli/session_options.go`; `?sid=` works too).
#[cfg(feature = "ext")]
const RESTORE_SID_HEADER: &str = "x-anycable-restore-sid";

/// Where and how to connect; everything checked when the consumer is built.
#[derive(Clone)]
pub(crate) struct Endpoint {
    url: String,
    host: String,
    port: u16,
    headers: Vec<(HeaderName, HeaderValue)>,
    /// The subprotocols offered, in order: the extended protocol first when asked for, the
    /// plain one, the builder's own (a token, say), `actioncable-unsupported` last.
    offer: Vec<String>,
    /// `offer` as the `Sec-WebSocket-Protocol` header.
    offer_header: HeaderValue,
    local_ip: Option<IpAddr>,
    config: WebSocketConfig,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Header values may hold credentials (cookies, tokens): names only.
        f.debug_struct("Endpoint")
            .field("url", &self.url)
            .field(
                "headers",
                &self.headers.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("offer", &self.offer)
            .field("local_ip", &self.local_ip)
            .finish_non_exhaustive()
    }
}

/// What the builder collected for the request.
#[derive(Debug, Default, Clone)]
pub(crate) struct RequestParts {
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) cookies: Vec<(String, String)>,
    pub(crate) origin: Option<String>,
    pub(crate) subprotocols: Vec<String>,
    pub(crate) local_ip: Option<IpAddr>,
    pub(crate) extended: bool,
    pub(crate) read_buffer_size: Option<usize>,
}

/// The protocol a server selected, as far as the consumer cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Negotiated {
    Plain,
    #[cfg_attr(not(feature = "ext"), allow(dead_code))]
    Extended,
}

fn header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), Error> {
    let bad = || Error::Header {
        name: name.to_owned(),
    };
    let name_ok = HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad())?;
    let value_ok = HeaderValue::from_str(value).map_err(|_| bad())?;
    Ok((name_ok, value_ok))
}

impl Endpoint {
    pub(crate) fn new(url: &str, parts: RequestParts) -> Result<Endpoint, Error> {
        let bad = |why| Error::Url {
            url: url.to_owned(),
            why,
        };
        let request = url.into_client_request().map_err(|_| bad("not a URL"))?;
        let uri = request.uri();
        match uri.scheme_str() {
            Some("ws") => {}
            Some("wss") => return Err(bad("wss:// is not supported (no TLS); use ws://")),
            _ => return Err(bad("the scheme must be ws://")),
        }
        let host = uri
            .host()
            .ok_or_else(|| bad("no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(80);

        let mut headers = Vec::new();
        for (name, value) in &parts.headers {
            headers.push(header(name, value)?);
        }
        if let Some(origin) = &parts.origin {
            headers.push(header("origin", origin)?);
        }
        if !parts.cookies.is_empty() {
            let cookie = parts
                .cookies
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect::<Vec<_>>()
                .join("; ");
            headers.push(header("cookie", &cookie)?);
        }
        let mut offer = Vec::new();
        if parts.extended {
            offer.push(EXT_PROTOCOL.to_owned());
        }
        offer.push(PROTOCOL.to_owned());
        offer.extend(parts.subprotocols.iter().cloned());
        offer.push(UNSUPPORTED_PROTOCOL.to_owned());
        for protocol in &parts.subprotocols {
            // A token: one token of the header's comma-separated list.
            if protocol.is_empty() || protocol.contains([',', ' ']) {
                return Err(Error::Header {
                    name: "sec-websocket-protocol".to_owned(),
                });
            }
        }
        let (_, offer_header) = header("sec-websocket-protocol", &offer.join(", "))?;
        // Small reads: an ActionCable client mostly gets small frames, and a process may hold
        // thousands of consumers (the load generator does). Writes go out at once.
        let config = WebSocketConfig::default()
            .read_buffer_size(parts.read_buffer_size.unwrap_or(8 * 1024))
            .write_buffer_size(0);
        Ok(Endpoint {
            url: url.to_owned(),
            host,
            port,
            headers,
            offer,
            offer_header,
            local_ip: parts.local_ip,
            config,
        })
    }

    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// Opens a socket and completes the handshake; `sid` is the session to resume (extended
    /// protocol).
    ///
    /// # Errors
    /// [`Error::UnsupportedProtocol`] when the server selected no protocol the consumer speaks;
    /// [`Error::Refused`] for an HTTP answer; [`Error::Transport`] for the rest.
    pub(crate) async fn open(&self, sid: Option<&str>) -> Result<(Ws, Negotiated), Error> {
        let addr = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await?
            .next()
            .ok_or_else(|| {
                Error::Transport(format!("{} resolves to no address", self.host).into())
            })?;
        let stream = self.tcp(addr).await?;
        let mut request: Request<()> = self.url.as_str().into_client_request()?;
        let headers = request.headers_mut();
        for (name, value) in &self.headers {
            headers.append(name.clone(), value.clone());
        }
        headers.insert("sec-websocket-protocol", self.offer_header.clone());
        #[cfg(feature = "ext")]
        if let Some(sid) = sid
            && let Ok(value) = HeaderValue::from_str(sid)
        {
            headers.insert(RESTORE_SID_HEADER, value);
        }
        #[cfg(not(feature = "ext"))]
        let _ = sid;
        let (ws, response) =
            match tokio_tungstenite::client_async_with_config(request, stream, Some(self.config))
                .await
            {
                Ok(opened) => opened,
                Err(tungstenite::Error::Protocol(ProtocolError::SecWebSocketSubProtocolError(
                    SubProtocolError::NoSubProtocol | SubProtocolError::InvalidSubProtocol,
                ))) => return Err(Error::UnsupportedProtocol { selected: None }),
                Err(e) => return Err(e.into()),
            };
        let selected = response
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        match selected.as_deref() {
            Some(PROTOCOL) => Ok((ws, Negotiated::Plain)),
            #[cfg(feature = "ext")]
            Some(EXT_PROTOCOL) if self.offer.iter().any(|p| p == EXT_PROTOCOL) => {
                Ok((ws, Negotiated::Extended))
            }
            _ => {
                // `connection.js`: "Protocol is unsupported. Stopping monitor and
                // disconnecting."
                close_quietly(ws);
                Err(Error::UnsupportedProtocol { selected })
            }
        }
    }

    async fn tcp(&self, addr: SocketAddr) -> Result<TcpStream, Error> {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if let Some(ip) = self.local_ip {
            socket.bind(SocketAddr::new(ip, 0))?;
        }
        let stream = socket.connect(addr).await?;
        // Commands are small and latency matters more than packets.
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}

/// Sends a close frame and waits briefly for the server's, on a task of its own, so that
/// nobody waits for a server that may be gone.
pub(crate) fn close_quietly(ws: Ws) {
    tokio::spawn(async move {
        let mut ws = ws;
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async {
            let _ = ws.close(None).await;
            while let Some(Ok(_)) = futures_util::StreamExt::next(&mut ws).await {}
        })
        .await;
    });
}

/// The write half of the current socket, shared by the connection task (subscribe,
/// unsubscribe) and every subscription's `perform`, which writes from its own task without a
/// hop through the connection's.
#[derive(Default)]
pub(crate) struct Writer {
    half: tokio::sync::Mutex<Option<WriteHalf>>,
    closed: AtomicBool,
}

impl fmt::Debug for Writer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Writer")
            .field("closed", &self.closed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Writer {
    /// Sends one text frame now.
    ///
    /// # Errors
    /// [`Error::NotConnected`] without an open socket, [`Error::Closed`] once the consumer
    /// stopped, [`Error::Transport`] when the write fails.
    pub(crate) async fn send(&self, text: String) -> Result<(), Error> {
        let mut half = self.half.lock().await;
        match half.as_mut() {
            Some(sink) => sink.send(Message::text(text)).await.map_err(Error::from),
            None if self.closed.load(Ordering::Acquire) => Err(Error::Closed),
            None => Err(Error::NotConnected),
        }
    }

    pub(crate) async fn install(&self, half: WriteHalf) {
        *self.half.lock().await = Some(half);
    }

    pub(crate) async fn take(&self) -> Option<WriteHalf> {
        self.half.lock().await.take()
    }

    /// From now on, sends fail with [`Error::Closed`].
    pub(crate) fn close_for_good(&self) {
        self.closed.store(true, Ordering::Release);
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

/// Puts the two halves of a socket the consumer is done with back together and closes it
/// politely, in the background.
pub(crate) fn close_halves(write: Option<WriteHalf>, read: ReadHalf) {
    // Halves of different sockets cannot happen; without the write half (taken by nobody
    // else), dropping the read half closes the TCP connection.
    if let Some(Ok(ws)) = write.map(|w| w.reunite(read)) {
        close_quietly(ws);
    }
}
