//! An event-stream client by hand, as `curl -N` reads one: the request head written on a
//! `TcpStream`, the response head parsed, the chunked body de-chunked as it arrives, and the
//! text cut into events at their blank lines. Nothing is interpreted away: a test can compare
//! the exact bytes ([`SseClient::text`]) as well as parsed events ([`SseClient::next_event`]).

use crate::timing::{WAIT, within, within_for};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// One event of a stream, its fields as the Server-Sent Events standard parses them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// `event:` (empty: a `message` event to `EventSource`).
    pub event: String,
    /// The `data:` lines, joined with `\n`.
    pub data: String,
    /// `id:`, when there is one.
    pub id: Option<String>,
    /// `retry:` in milliseconds, when there is one.
    pub retry: Option<u64>,
    /// Comment lines (`: …`), without the colon and the space.
    pub comments: Vec<String>,
    /// The event's exact text, its blank line included.
    pub text: String,
}

impl SseEvent {
    /// Parses one event's text (up to and including its blank line).
    pub fn parse(text: &str) -> SseEvent {
        let mut event = SseEvent {
            text: text.to_owned(),
            ..SseEvent::default()
        };
        let mut data: Vec<&str> = Vec::new();
        for line in text.split('\n').filter(|l| !l.is_empty()) {
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "" => event.comments.push(value.to_owned()),
                "event" => event.event = value.to_owned(),
                "data" => data.push(value),
                "id" => event.id = Some(value.to_owned()),
                "retry" => event.retry = value.parse().ok(),
                _ => {}
            }
        }
        event.data = data.join("\n");
        event
    }

    /// Whether this is only a comment (a heartbeat).
    pub fn is_comment(&self) -> bool {
        self.event.is_empty() && self.data.is_empty() && !self.comments.is_empty()
    }

    /// The data as JSON; panics when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|e| panic!("event data is not JSON ({e}): {self:?}"))
    }
}

/// An open event stream: status `200`, reading as the server writes.
#[derive(Debug)]
pub struct SseClient {
    tcp: TcpStream,
    /// The response head's headers.
    pub headers: Vec<(String, String)>,
    /// Bytes read past what was de-chunked.
    raw: Vec<u8>,
    /// The body so far, de-chunked.
    body: Vec<u8>,
    /// How much of `body` was handed out as events.
    consumed: usize,
    /// The terminating chunk arrived, or the server closed the connection.
    ended: bool,
}

/// The answer to a request for an event stream: a stream, or a refusal with its status.
#[derive(Debug)]
pub enum SseOpen {
    /// `200`: the stream.
    Stream(Box<SseClient>),
    /// Any other status, with the body.
    Refused {
        /// The status.
        status: u16,
        /// The headers.
        headers: Vec<(String, String)>,
        /// The body (a short reason).
        body: String,
    },
}

impl SseOpen {
    /// The stream; panics with what the server said when it refused.
    pub fn stream(self) -> SseClient {
        match self {
            SseOpen::Stream(client) => *client,
            SseOpen::Refused { status, body, .. } => {
                panic!("the event stream was refused: {status} {body:?}")
            }
        }
    }

    /// The refusal's status and body; panics when the stream was opened.
    pub fn refused(self) -> (u16, String) {
        match self {
            SseOpen::Refused { status, body, .. } => (status, body),
            SseOpen::Stream(client) => panic!(
                "the event stream was opened, not refused: {:?}",
                client.text()
            ),
        }
    }

    /// The status either way.
    pub fn status(&self) -> u16 {
        match self {
            SseOpen::Stream(_) => 200,
            SseOpen::Refused { status, .. } => *status,
        }
    }
}

impl SseClient {
    /// `GET path_and_query` with `Accept: text/event-stream` and `headers`, as a browser's
    /// `EventSource` (or `curl -N`) asks; reads the response head.
    pub async fn open(addr: SocketAddr, path_and_query: &str, headers: &[(&str, &str)]) -> SseOpen {
        let mut tcp = within("TCP connect", TcpStream::connect(addr))
            .await
            .expect("TCP connect");
        tcp.set_nodelay(true).expect("TCP_NODELAY");
        let mut head = format!(
            "GET {path_and_query} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\
             Cache-Control: no-cache\r\n"
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        tcp.write_all(head.as_bytes())
            .await
            .expect("send the request");
        let mut buf = Vec::new();
        let (status, headers, rest) = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                let mut lines = head.split("\r\n");
                let status = lines
                    .next()
                    .and_then(|l| l.split(' ').nth(1))
                    .and_then(|s| s.parse::<u16>().ok())
                    .unwrap_or_else(|| panic!("bad status line in {head:?}"));
                let headers: Vec<(String, String)> = lines
                    .filter_map(|l| l.split_once(':'))
                    .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
                    .collect();
                break (status, headers, buf[end + 4..].to_vec());
            }
            let mut chunk = [0u8; 4096];
            let n = within("the response head", tcp.read(&mut chunk))
                .await
                .expect("read the response head");
            assert!(n > 0, "closed before a whole response head: {buf:?}");
            buf.extend_from_slice(&chunk[..n]);
        };
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        if status != 200 {
            let len: usize = header("content-length")
                .and_then(|l| l.parse().ok())
                .unwrap_or(0);
            let mut body = rest;
            while body.len() < len {
                let mut chunk = [0u8; 4096];
                let n = within("the refusal's body", tcp.read(&mut chunk))
                    .await
                    .expect("read the body");
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
            body.truncate(len);
            return SseOpen::Refused {
                status,
                headers,
                body: String::from_utf8_lossy(&body).into_owned(),
            };
        }
        assert!(
            header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")),
            "an event stream is chunked: {headers:?}"
        );
        let mut client = SseClient {
            tcp,
            headers,
            raw: rest,
            body: Vec::new(),
            consumed: 0,
            ended: false,
        };
        client.dechunk();
        SseOpen::Stream(Box::new(client))
    }

    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The whole body received so far, as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Moves whole chunks from `raw` to `body`; notes the terminating chunk.
    fn dechunk(&mut self) {
        loop {
            let Some(line_end) = self.raw.windows(2).position(|w| w == b"\r\n") else {
                return;
            };
            let size = std::str::from_utf8(&self.raw[..line_end])
                .ok()
                .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
                .unwrap_or_else(|| panic!("bad chunk size line: {:?}", &self.raw[..line_end]));
            if size == 0 {
                self.ended = true;
                self.raw.clear();
                return;
            }
            let start = line_end + 2;
            if self.raw.len() < start + size + 2 {
                return;
            }
            self.body.extend_from_slice(&self.raw[start..start + size]);
            self.raw.drain(..start + size + 2);
        }
    }

    /// Reads more of the stream, within `limit`; `false` once it has ended.
    async fn fill(&mut self, limit: Duration) -> bool {
        if self.ended {
            return false;
        }
        let mut chunk = [0u8; 16 * 1024];
        let n = within_for(limit, "more of the event stream", self.tcp.read(&mut chunk))
            .await
            .unwrap_or(0);
        if n == 0 {
            self.ended = true;
            return false;
        }
        self.raw.extend_from_slice(&chunk[..n]);
        self.dechunk();
        true
    }

    /// The next whole event not handed out yet, if one has arrived.
    fn take_event(&mut self) -> Option<SseEvent> {
        let rest = &self.body[self.consumed..];
        let end = rest.windows(2).position(|w| w == b"\n\n")?;
        let text = String::from_utf8_lossy(&rest[..end + 2]).into_owned();
        self.consumed += end + 2;
        Some(SseEvent::parse(&text))
    }

    /// The next event, comments (heartbeats) included; panics after [`WAIT`] or when the
    /// stream ends first.
    pub async fn next_any(&mut self) -> SseEvent {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(event) = self.take_event() {
                return event;
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            assert!(
                self.fill(left).await,
                "the event stream ended; it held {:?}",
                self.text()
            );
        }
    }

    /// The next event that is not a heartbeat.
    pub async fn next_event(&mut self) -> SseEvent {
        loop {
            let event = self.next_any().await;
            if !event.is_comment() {
                return event;
            }
        }
    }

    /// The next unnamed event: what `EventSource` hands to `onmessage` (named events, such as
    /// `presence`, go only to listeners of their name).
    pub async fn next_message(&mut self) -> SseEvent {
        loop {
            let event = self.next_event().await;
            if event.event.is_empty() {
                return event;
            }
        }
    }

    /// The next event, which must be named `name`; returns it.
    pub async fn expect_event(&mut self, name: &str) -> SseEvent {
        let event = self.next_event().await;
        assert_eq!(event.event, name, "{event:?}");
        event
    }

    /// `welcome`, then `confirm_subscription`: a stream whose subscription stands.
    pub async fn expect_confirmed(&mut self) {
        self.expect_event("welcome").await;
        self.expect_event("confirm_subscription").await;
    }

    /// Reads until the response ends (its last chunk, or the connection closed), within
    /// `limit`; returns the events that came before the end, heartbeats included.
    pub async fn until_end(&mut self, limit: Duration) -> Vec<SseEvent> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut events = Vec::new();
        loop {
            while let Some(event) = self.take_event() {
                events.push(event);
            }
            if self.ended {
                return events;
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            assert!(
                !left.is_zero(),
                "the event stream did not end within {limit:?}; it held {:?}",
                self.text()
            );
            self.fill(left).await;
        }
    }

    /// Whether the stream has ended (its last chunk arrived or the connection closed).
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Nothing but heartbeats arrives for `quiet`; returns them.
    pub async fn expect_silence(&mut self, quiet: Duration) -> Vec<SseEvent> {
        let deadline = tokio::time::Instant::now() + quiet;
        let mut seen = Vec::new();
        loop {
            while let Some(event) = self.take_event() {
                assert!(event.is_comment(), "expected silence, got {event:?}");
                seen.push(event);
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() || self.ended {
                return seen;
            }
            let mut chunk = [0u8; 16 * 1024];
            match tokio::time::timeout(left, self.tcp.read(&mut chunk)).await {
                Err(_) => {}
                Ok(Ok(0) | Err(_)) => self.ended = true,
                Ok(Ok(n)) => {
                    self.raw.extend_from_slice(&chunk[..n]);
                    self.dechunk();
                }
            }
        }
    }

    /// The socket itself, for a test that stops reading it.
    pub fn into_tcp(self) -> TcpStream {
        self.tcp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_parse_as_the_standard_says() {
        let e = SseEvent::parse("event: confirm\ndata: {\"a\":1}\nid: 3/e/s\nretry: 500\n\n");
        assert_eq!(
            (e.event.as_str(), e.data.as_str()),
            ("confirm", "{\"a\":1}")
        );
        assert_eq!((e.id.as_deref(), e.retry), (Some("3/e/s"), Some(500)));
        let lines = SseEvent::parse("data: a\ndata: b\n\n");
        assert_eq!(lines.data, "a\nb");
        let beat = SseEvent::parse(": ping\n\n");
        assert!(beat.is_comment());
        assert_eq!(beat.comments, ["ping"]);
    }
}
