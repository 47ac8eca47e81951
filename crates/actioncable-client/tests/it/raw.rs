//! A scripted server for what no well-behaved server does: ignoring a `subscribe`, selecting
//! an unknown protocol, sending frames of any shape. A real WebSocket server on a loopback
//! port (tokio-tungstenite's), whose every frame the test writes by hand.

use crate::support::{WAIT, within};
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;

/// Accepts WebSocket connections, selecting `protocol`, and hands each to the test.
pub(crate) struct RawCable {
    addr: SocketAddr,
    peers: mpsc::UnboundedReceiver<RawPeer>,
}

/// One accepted connection and the request that opened it.
pub(crate) struct RawPeer {
    ws: WebSocketStream<TcpStream>,
    /// The upgrade request's URI (path and query).
    pub(crate) uri: String,
    /// Its headers, names in lowercase.
    pub(crate) headers: Vec<(String, String)>,
}

impl RawCable {
    pub(crate) async fn start(protocol: &'static str) -> RawCable {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, peers) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let seen = Arc::new(Mutex::new((String::new(), Vec::new())));
                let record = seen.clone();
                // tungstenite's callback type fixes the size of its error.
                #[allow(clippy::result_large_err)]
                let callback = move |request: &Request, mut response: Response| {
                    let headers = request
                        .headers()
                        .iter()
                        .map(|(n, v)| {
                            (
                                n.as_str().to_owned(),
                                v.to_str().unwrap_or_default().to_owned(),
                            )
                        })
                        .collect();
                    *record.lock().unwrap() = (request.uri().to_string(), headers);
                    response
                        .headers_mut()
                        .insert("sec-websocket-protocol", HeaderValue::from_static(protocol));
                    Ok(response)
                };
                let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
                    continue;
                };
                let (uri, headers) = seen.lock().unwrap().clone();
                if tx.send(RawPeer { ws, uri, headers }).is_err() {
                    return;
                }
            }
        });
        RawCable { addr, peers }
    }

    pub(crate) fn url(&self) -> String {
        format!("ws://{}/cable", self.addr)
    }

    /// The next connection, within [`WAIT`].
    pub(crate) async fn accept(&mut self) -> RawPeer {
        within("a connection", self.peers.recv())
            .await
            .expect("the raw server stopped")
    }

    /// Whether a connection arrives within `wait`.
    pub(crate) async fn accepts_within(&mut self, wait: std::time::Duration) -> bool {
        tokio::time::timeout(wait, self.peers.recv())
            .await
            .is_ok_and(|p| p.is_some())
    }
}

impl RawPeer {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) async fn send(&mut self, text: impl Into<String>) {
        self.ws
            .send(Message::text(text.into()))
            .await
            .expect("send to the consumer");
    }

    pub(crate) async fn send_message(&mut self, message: Message) {
        self.ws.send(message).await.expect("send to the consumer");
    }

    /// The next text frame from the consumer, as JSON, within [`WAIT`].
    pub(crate) async fn recv_json(&mut self) -> Value {
        loop {
            let frame = within("a frame from the consumer", self.ws.next())
                .await
                .expect("the consumer closed")
                .expect("read from the consumer");
            if let Message::Text(text) = frame {
                return serde_json::from_str(&text).expect("the consumer sends JSON");
            }
        }
    }

    /// The next command, and when it arrived.
    pub(crate) async fn recv_command(&mut self) -> (Value, tokio::time::Instant) {
        let command = self.recv_json().await;
        (command, tokio::time::Instant::now())
    }

    /// Whether the consumer closed this connection (or it ended) within [`WAIT`].
    pub(crate) async fn ends(&mut self) -> bool {
        let ended = async {
            loop {
                match self.ws.next().await {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                    Some(Ok(_)) => {}
                }
            }
        };
        tokio::time::timeout(WAIT, ended).await.is_ok()
    }
}

/// `{"identifier":<identifier>,"type":<kind>}`
pub(crate) fn typed(identifier: &str, kind: &str) -> String {
    serde_json::json!({ "identifier": identifier, "type": kind }).to_string()
}

/// `{"identifier":<identifier>,"message":<message>}`
pub(crate) fn data(identifier: &str, message: &Value) -> String {
    serde_json::json!({ "identifier": identifier, "message": message }).to_string()
}
