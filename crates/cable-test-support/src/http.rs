//! HTTP/1.1 by hand over a `TcpStream`: what a test must send exactly (a malformed upgrade, a
//! `HEAD`, a huge header) or read exactly (status, headers and body of a refusal).

use crate::client::CableClient;
use crate::timing::within;
use serde_json::Value;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// A parsed HTTP/1.1 response: status, headers in order, body.
pub struct HttpReply {
    /// The status code.
    pub status: u16,
    /// The headers, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked where the server chunked it).
    pub body: Vec<u8>,
}

/// The body as (lossy) text, so a failed assertion shows what the server said.
impl std::fmt::Debug for HttpReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpReply")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("body", &String::from_utf8_lossy(&self.body))
            .finish()
    }
}

impl HttpReply {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as UTF-8 text; panics if it is not.
    pub fn body_text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("UTF-8 body")
    }

    /// The body as JSON; panics if it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body_text()))
    }
}

/// Splits a response at its head: the parsed head (no body yet) and the bytes after it, or
/// `None` while the head is incomplete.
fn parse_head(buf: &[u8]) -> Option<(HttpReply, Vec<u8>)> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..end]).expect("UTF-8 head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers = lines
        .map(|l| {
            let (n, v) = l
                .split_once(':')
                .unwrap_or_else(|| panic!("bad header line {l:?}"));
            (n.trim().to_owned(), v.trim().to_owned())
        })
        .collect();
    let reply = HttpReply {
        status,
        headers,
        body: Vec::new(),
    };
    Some((reply, buf[end + 4..].to_vec()))
}

/// Reads one response head from `tcp`; returns it and the bytes read past the head.
async fn read_head(tcp: &mut TcpStream) -> (HttpReply, Vec<u8>) {
    let mut buf = Vec::new();
    loop {
        if let Some(parsed) = parse_head(&buf) {
            return parsed;
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
    }
}

/// Reads the `Content-Length` body that follows a head (`body`: bytes already read).
async fn read_body(tcp: &mut TcpStream, reply: &HttpReply, mut body: Vec<u8>) -> Vec<u8> {
    let len: usize = reply
        .header("content-length")
        .map(|l| l.parse().expect("a numeric Content-Length"))
        .unwrap_or(0);
    while body.len() < len {
        let mut chunk = [0u8; 4096];
        let n = within("HTTP body", tcp.read(&mut chunk))
            .await
            .expect("read the body");
        assert!(n > 0, "connection closed mid-body");
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(len);
    body
}

/// Sends `request` (a whole HTTP/1.1 request head, `\r\n\r\n`-terminated) and reads the
/// response, with a body of `Content-Length` bytes unless `head_request`.
pub async fn http_raw(addr: SocketAddr, request: &str, head_request: bool) -> HttpReply {
    let mut tcp = within("TCP connect", TcpStream::connect(addr))
        .await
        .expect("TCP connect");
    tcp.write_all(request.as_bytes())
        .await
        .expect("send the request");
    let (mut reply, rest) = read_head(&mut tcp).await;
    if !head_request {
        reply.body = read_body(&mut tcp, &reply, rest).await;
    }
    reply
}

/// `method path` with `headers` and, if given, a JSON `body`, on a connection of its own
/// (`Connection: close`); reads the whole response (chunked bodies de-chunked).
pub async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> HttpReply {
    let exchange = async {
        let mut tcp = TcpStream::connect(addr).await.expect("TCP connect");
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        if let Some(body) = body {
            head.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        head.push_str("\r\n");
        head.push_str(body.unwrap_or(""));
        tcp.write_all(head.as_bytes())
            .await
            .expect("send the request");
        let mut raw = Vec::new();
        tcp.read_to_end(&mut raw).await.expect("read the response");
        raw
    };
    let raw = within(&format!("{method} {path}"), exchange).await;
    let (mut reply, rest) = parse_head(&raw).expect("no end of the response head");
    let chunked = reply
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    reply.body = if chunked { dechunk(&rest) } else { rest };
    reply
}

/// The data of a `Transfer-Encoding: chunked` body.
fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("bad chunk");
        let size = std::str::from_utf8(&body[..line_end]).expect("bad chunk size");
        let size = usize::from_str_radix(size.trim(), 16).expect("bad chunk size");
        if size == 0 {
            return out;
        }
        let data = &body[line_end + 2..];
        out.extend_from_slice(&data[..size]);
        body = &data[size + 2..];
    }
}

/// A WebSocket upgrade request head for `path` (and query) with the given extra header lines.
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

/// Performs the upgrade by hand; returns the response (head, and body if refused) and, on
/// `101`, a client on the socket.
pub async fn raw_upgrade(
    addr: SocketAddr,
    path: &str,
    extra_headers: &[(&str, &str)],
) -> (HttpReply, Option<CableClient>) {
    let mut tcp = within("TCP connect", TcpStream::connect(addr))
        .await
        .expect("TCP connect");
    tcp.set_nodelay(true).expect("TCP_NODELAY");
    tcp.write_all(upgrade_request(addr, path, extra_headers).as_bytes())
        .await
        .expect("send the upgrade");
    let (mut reply, rest) = read_head(&mut tcp).await;
    if reply.status != 101 {
        reply.body = read_body(&mut tcp, &reply, rest).await;
        return (reply, None);
    }
    let protocol = reply.header("sec-websocket-protocol").map(str::to_owned);
    let client = CableClient::from_upgraded(tcp, rest, protocol).await;
    (reply, Some(client))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_head_is_parsed_and_a_chunked_body_decoded() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n";
        let (reply, rest) = parse_head(raw).expect("a whole head");
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("content-type"), Some("text/plain"));
        assert_eq!(dechunk(&rest), b"hello, world");
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-").is_none());
    }
}
