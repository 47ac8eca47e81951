//! The one ActionCable test client.

use crate::frames::{
    CONSUMER_PROTOCOLS, WELCOME, confirm_frame, data_frame, disconnect_frame, is_ping,
    perform_data, reject_frame,
};
use crate::timing::{WAIT, within};
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderName;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::{self, Message};

/// The `Origin` header a [`Connect`] sends.
#[derive(Debug, Clone)]
pub enum OriginHeader {
    /// `http://<Host>`: same-origin, as a page served by the app itself.
    SameAsHost,
    /// No `Origin` header (a non-browser client).
    Missing,
    /// Exactly this `Origin`.
    Exactly(String),
}

/// How [`CableClient::connect`] opens its socket. The default is the stock consumer on a page
/// of the same origin: `/cable`, both subprotocols offered, a same-origin `Origin`, no cookie.
#[derive(Debug, Clone)]
pub struct Connect {
    /// Path and query, e.g. `/cable?token=…`.
    pub path: String,
    /// The `Origin` header.
    pub origin: OriginHeader,
    /// The `Sec-WebSocket-Protocol` offer, if any.
    pub protocols: Option<String>,
    /// The `Cookie` header, if any.
    pub cookie: Option<String>,
    /// Further request headers, in order.
    pub headers: Vec<(String, String)>,
}

impl Default for Connect {
    fn default() -> Self {
        Connect {
            path: "/cable".into(),
            origin: OriginHeader::SameAsHost,
            protocols: Some(CONSUMER_PROTOCOLS.into()),
            cookie: None,
            headers: Vec::new(),
        }
    }
}

impl Connect {
    /// The stock consumer's defaults (see [`Connect`]).
    pub fn new() -> Connect {
        Connect::default()
    }

    /// Path and query, e.g. `/cable?user=alice`.
    pub fn path(mut self, path_and_query: &str) -> Connect {
        self.path = path_and_query.into();
        self
    }

    /// Sends exactly this `Origin`.
    pub fn origin(mut self, origin: &str) -> Connect {
        self.origin = OriginHeader::Exactly(origin.into());
        self
    }

    /// Sends no `Origin` header.
    pub fn no_origin(mut self) -> Connect {
        self.origin = OriginHeader::Missing;
        self
    }

    /// Offers these subprotocols (the header's value, e.g. `"a, b"`).
    pub fn protocols(mut self, offer: &str) -> Connect {
        self.protocols = Some(offer.into());
        self
    }

    /// Offers no subprotocol at all.
    pub fn no_protocols(mut self) -> Connect {
        self.protocols = None;
        self
    }

    /// Sends this `Cookie` header (`name=value; other=value`).
    pub fn cookie(mut self, cookie: &str) -> Connect {
        self.cookie = Some(cookie.into());
        self
    }

    /// Adds a request header.
    pub fn header(mut self, name: &str, value: &str) -> Connect {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// The server's reply to a `subscribe`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscribeReply {
    /// `confirm_subscription`.
    Confirmed,
    /// `reject_subscription`.
    Rejected,
}

/// A WebSocket client speaking the ActionCable JSON protocol like the stock consumer.
///
/// Reads skip `{"type":"ping",…}` frames unless a method says otherwise, and are bounded by
/// [`WAIT`]. Two styles of reading can be mixed:
///
/// - in order (`recv_*`, `expect_*`, [`subscribe`](Self::subscribe)): the next frame must be
///   what the test expects, compared byte for byte where the method takes a frame;
/// - by match (`take_*`): the first frame that matches is returned and the frames read before
///   it are kept, in order, for later reads. For traffic whose order between subscriptions is
///   not defined (several nodes, a pub/sub adapter).
#[derive(Debug)]
pub struct CableClient {
    ws: WebSocketStream<TcpStream>,
    /// The subprotocol the server selected (`Sec-WebSocket-Protocol` of its 101).
    pub protocol: Option<String>,
    /// Text frames (never pings) read by a `take_*` method while it looked for another.
    kept: VecDeque<String>,
    /// The session id of an extended-protocol `welcome` (what a reconnect resumes with).
    pub sid: Option<String>,
    /// The extended-protocol `welcome` as received (`restored`, `restored_ids`).
    pub welcome: Option<Value>,
}

impl CableClient {
    /// Opens the socket to `addr` as `opts` says, without reading anything (no welcome check).
    /// A refused upgrade is an `Err` (e.g. `tungstenite::Error::Http` with the response).
    pub async fn connect(
        addr: SocketAddr,
        opts: Connect,
    ) -> Result<CableClient, tungstenite::Error> {
        let mut request = format!("ws://{addr}{}", opts.path).into_client_request()?;
        let headers = request.headers_mut();
        let value = |v: &str| v.parse().expect("a valid header value");
        match &opts.origin {
            OriginHeader::SameAsHost => {
                headers.insert("origin", value(&format!("http://{addr}")));
            }
            OriginHeader::Missing => {}
            OriginHeader::Exactly(o) => {
                headers.insert("origin", value(o));
            }
        }
        if let Some(p) = &opts.protocols {
            headers.insert("sec-websocket-protocol", value(p));
        }
        if let Some(c) = &opts.cookie {
            headers.insert("cookie", value(c));
        }
        for (name, v) in &opts.headers {
            let name: HeaderName = name.parse().expect("a valid header name");
            headers.append(name, value(v));
        }
        let tcp = within("TCP connect", TcpStream::connect(addr))
            .await
            .map_err(tungstenite::Error::Io)?;
        // Small frames go out at once (no Nagle delay against the server's delayed ACKs).
        tcp.set_nodelay(true).map_err(tungstenite::Error::Io)?;
        let (ws, response) = within(
            "WebSocket handshake",
            tokio_tungstenite::client_async(request, tcp),
        )
        .await?;
        let protocol = response
            .headers()
            .get("sec-websocket-protocol")
            .map(|v| v.to_str().expect("an ASCII protocol").to_owned());
        Ok(CableClient::new(ws, protocol))
    }

    /// Connects as `opts` says and checks the welcome; panics if either fails.
    pub async fn welcomed(addr: SocketAddr, opts: Connect) -> CableClient {
        let path = opts.path.clone();
        let mut c = CableClient::connect(addr, opts)
            .await
            .unwrap_or_else(|e| panic!("connect to {path}: {e}"));
        c.expect_welcome().await;
        c
    }

    /// Wraps a socket whose handshake was done by hand ([`raw_upgrade`](crate::raw_upgrade));
    /// `leftover` is what was read past the response head.
    pub async fn from_upgraded(
        tcp: TcpStream,
        leftover: Vec<u8>,
        protocol: Option<String>,
    ) -> CableClient {
        let ws = WebSocketStream::from_partially_read(tcp, leftover, Role::Client, None).await;
        CableClient::new(ws, protocol)
    }

    fn new(ws: WebSocketStream<TcpStream>, protocol: Option<String>) -> CableClient {
        CableClient {
            ws,
            protocol,
            kept: VecDeque::new(),
            sid: None,
            welcome: None,
        }
    }

    // -----------------------------------------------------------------------------------------
    // Sending
    // -----------------------------------------------------------------------------------------

    /// Sends one WebSocket message.
    pub async fn send(&mut self, message: Message) {
        within("send", self.ws.send(message))
            .await
            .expect("send a frame");
    }

    /// Sends a text frame.
    pub async fn send_text(&mut self, text: impl Into<String>) {
        self.send(Message::text(text.into())).await;
    }

    /// Sends `value` as a text frame.
    pub async fn send_json(&mut self, value: &Value) {
        self.send_text(value.to_string()).await;
    }

    /// Sends `subscribe` (without waiting for the reply).
    pub async fn send_subscribe(&mut self, identifier: &str) {
        self.send_json(&json!({ "command": "subscribe", "identifier": identifier }))
            .await;
    }

    /// Sends `unsubscribe` (the server does not reply).
    pub async fn send_unsubscribe(&mut self, identifier: &str) {
        self.send_json(&json!({ "command": "unsubscribe", "identifier": identifier }))
            .await;
    }

    /// A `message` command with `data` exactly as given (normally a JSON-encoded string).
    pub async fn send_message(&mut self, identifier: &str, data: &str) {
        self.send_json(&json!({ "command": "message", "identifier": identifier, "data": data }))
            .await;
    }

    /// A `message` command whose `data` is `data` JSON-encoded, keys in the order given
    /// (`{"action":"speak","text":"hi"}` goes as that string).
    pub async fn send_data(&mut self, identifier: &str, data: &Value) {
        self.send_message(identifier, &data.to_string()).await;
    }

    /// `subscription.perform(action, data)` as the stock consumer sends it: `data` gets
    /// `action` (last) and goes as a JSON string.
    pub async fn perform(&mut self, identifier: &str, action: &str, data: Value) {
        self.send_message(identifier, &perform_data(action, data))
            .await;
    }

    // -----------------------------------------------------------------------------------------
    // Reading in order
    // -----------------------------------------------------------------------------------------

    /// The next frame of any kind (a kept frame first), or `None` when `wait` passes first.
    /// Panics if the socket ends without a close frame or fails.
    pub async fn next_frame(&mut self, wait: Duration) -> Option<Message> {
        if let Some(text) = self.kept.pop_front() {
            return Some(Message::text(text));
        }
        match timeout(wait, self.ws.next()).await {
            Err(_) => None,
            Ok(None) => panic!("the socket ended (no close frame)"),
            Ok(Some(Err(e))) => panic!("WebSocket error while reading: {e}"),
            Ok(Some(Ok(m))) => Some(m),
        }
    }

    /// The next text frame, pings included, or `None` once the connection ends (cleanly, by a
    /// close frame, by a reset or by a protocol error such as a truncated frame). A close frame
    /// is not answered.
    pub async fn next_frame_or_end(&mut self) -> Option<String> {
        if let Some(text) = self.kept.pop_front() {
            return Some(text);
        }
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

    /// The next frame that is not a ping, as JSON, or `None` once the socket ended (a close
    /// frame, the end of the stream or an error). A close frame is answered at once, as a
    /// browser does, so the server need not wait for the reply.
    pub async fn next_json_or_end(&mut self) -> Option<Value> {
        loop {
            if let Some(text) = self.kept.pop_front() {
                return Some(parse(&text));
            }
            match timeout(WAIT, self.ws.next()).await {
                Err(_) => panic!("timed out waiting for a frame or the end"),
                Ok(Some(Ok(Message::Text(text)))) => {
                    let value = parse(text.as_str());
                    if value["type"] != "ping" {
                        return Some(value);
                    }
                }
                Ok(Some(Ok(Message::Close(_)))) => {
                    // tungstenite queued the close reply while reading; send it now.
                    let _ = timeout(WAIT, self.ws.flush()).await;
                    return None;
                }
                Ok(None | Some(Err(_))) => return None,
                Ok(Some(Ok(_))) => {}
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

    /// The next frame that is not a ping, as JSON.
    pub async fn recv_json(&mut self) -> Value {
        parse(&self.recv_text().await)
    }

    /// The next frame that is not a ping, which must be a message of `identifier`; returns
    /// the message.
    pub async fn recv_message(&mut self, identifier: &str) -> Value {
        let mut frame = self.recv_json().await;
        assert_eq!(frame["identifier"], identifier, "{frame}");
        match frame.get_mut("message") {
            Some(message) => message.take(),
            None => panic!("not a message: {frame}"),
        }
    }

    /// Asserts the next frame that is not a ping is exactly `expected`.
    pub async fn expect_frame(&mut self, expected: &str) {
        let got = self.recv_text().await;
        assert_eq!(got, expected, "unexpected frame");
    }

    /// Asserts the very first frame is the welcome (no ping may come before it).
    pub async fn expect_welcome(&mut self) {
        let first = self.recv_text_with_pings().await;
        if self.protocol.as_deref() != Some("actioncable-v1-ext-json") {
            assert_eq!(first, WELCOME);
            return;
        }
        // The extended protocol's welcome carries a session id (and, resumed, what was
        // restored); the plain one stays byte for byte Rails'.
        let welcome: Value = serde_json::from_str(&first).expect("a JSON welcome");
        assert_eq!(welcome["type"], "welcome", "{first}");
        let sid = welcome["sid"].as_str().expect("an ext welcome has a sid");
        assert_eq!(sid.len(), 32, "128 bits as hex: {first}");
        self.sid = Some(sid.to_owned());
        self.welcome = Some(welcome);
    }

    /// Asserts the next frame is exactly the confirmation of `identifier`.
    pub async fn expect_confirm(&mut self, identifier: &str) {
        self.expect_frame(&confirm_frame(identifier)).await;
    }

    /// Asserts the next frame is exactly the rejection of `identifier`.
    pub async fn expect_reject(&mut self, identifier: &str) {
        self.expect_frame(&reject_frame(identifier)).await;
    }

    /// Asserts the next frame is exactly `{"identifier":<identifier>,"message":<message>}`.
    pub async fn expect_data(&mut self, identifier: &str, message: &Value) {
        self.expect_frame(&data_frame(identifier, message)).await;
    }

    /// Sends `subscribe` and returns the server's answer, which must be the next frame; checks
    /// its exact bytes.
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

    /// Asserts that no frame other than a ping arrives for `wait` (and that no frame was
    /// kept unread).
    pub async fn expect_silence(&mut self, wait: Duration) {
        assert!(self.kept.is_empty(), "unexpected frames {:?}", self.kept);
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

    // -----------------------------------------------------------------------------------------
    // Reading by match
    // -----------------------------------------------------------------------------------------

    /// The first frame, kept or new, for which `matches` holds, as JSON; the frames read before
    /// it are kept. `None` after `wait`. Panics if the socket closes or a `disconnect` arrives
    /// (a test that reads by match expects the connection to stay).
    pub async fn take_json(
        &mut self,
        what: &str,
        wait: Duration,
        matches: impl Fn(&Value) -> bool,
    ) -> Option<Value> {
        if let Some(i) = self.kept.iter().position(|t| matches(&parse(t))) {
            return self.kept.remove(i).map(|t| parse(&t));
        }
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let text = match timeout(left, self.ws.next()).await {
                Err(_) => return None,
                Ok(None) => panic!("the server closed the socket"),
                Ok(Some(Err(e))) => panic!("WebSocket error: {e}"),
                Ok(Some(Ok(Message::Close(c)))) => panic!("the server closed the socket: {c:?}"),
                Ok(Some(Ok(Message::Text(text)))) => text.as_str().to_owned(),
                Ok(Some(Ok(_))) => continue,
            };
            let value = parse(&text);
            match value["type"].as_str() {
                Some("ping") => continue,
                Some("disconnect") => panic!("the server sent {value}"),
                _ => {}
            }
            if matches(&value) {
                return Some(value);
            }
            tracing::trace!(what, %value, "kept a frame for later");
            self.kept.push_back(text);
        }
    }

    /// Sends `subscribe` and returns the server's answer, found among other traffic (as
    /// [`take_subscribe_reply`](Self::take_subscribe_reply)).
    pub async fn take_subscribe(&mut self, identifier: &str) -> SubscribeReply {
        self.send_subscribe(identifier).await;
        self.take_subscribe_reply(identifier).await
    }

    /// The reply to a `subscribe` of `identifier` sent before, found among other traffic.
    pub async fn take_subscribe_reply(&mut self, identifier: &str) -> SubscribeReply {
        let reply = self
            .take_json("confirmation", WAIT, |v| {
                v["identifier"] == identifier && v.get("type").is_some()
            })
            .await
            .unwrap_or_else(|| panic!("no confirm or reject for {identifier}"));
        match reply["type"].as_str() {
            Some("confirm_subscription") => SubscribeReply::Confirmed,
            Some("reject_subscription") => SubscribeReply::Rejected,
            _ => panic!("unexpected reply {reply}"),
        }
    }

    /// The first message of any of `identifiers`, found among other traffic; `None` after
    /// `wait`.
    pub async fn take_message(&mut self, identifiers: &[&str], wait: Duration) -> Option<Value> {
        self.take_json("message", wait, |v| {
            v.get("message").is_some() && identifiers.iter().any(|id| v["identifier"] == *id)
        })
        .await
        .map(|mut v| v["message"].take())
    }

    // -----------------------------------------------------------------------------------------
    // Closing
    // -----------------------------------------------------------------------------------------

    /// Reads (skipping pings) until the server's close frame, which it returns. Any other frame
    /// first is a failure.
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

    /// Asserts `disconnect` with `reason` and `reconnect` (exact bytes), then close 1000.
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
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("frame is not JSON ({e}): {text}"))
}
