//! `cable-ref`: the raw reference server the framework is measured against.
//!
//! The leanest Tokio server that speaks just what `cable-bench` needs of the ActionCable
//! protocol (`actioncable-v1-json`) with the websocket-shootout `BenchmarkChannel`: it stands
//! for what this machine can do, so the framework's `example-bench` is reported as a ratio to
//! it, measured in the same run. It is not a server to use for anything else.
//!
//! - every connection gets `{"type":"welcome"}`, and one timer sends every connection
//!   `{"type":"ping","message":<unix seconds>}` every 3 s;
//! - `subscribe` to `{"channel":"BenchmarkChannel"}` is confirmed (any other channel is
//!   rejected); the subscriber then receives the stream `all`;
//! - action `echo` transmits the data back; action `broadcast` sends the data to every
//!   subscriber of `all` as one frame, encoded once and shared (a reference-counted
//!   `Utf8Bytes`) by every subscriber with the same identifier, then transmits the data back to
//!   the sender with `"action":"broadcastResult"` — exactly what `example-bench` does.
//!
//! WebSocket framing is tungstenite's. Each connection is one task that owns its socket and an
//! unbounded queue of frames to write; a broadcast only pushes the shared frame onto every
//! queue. Anything a client sends that is not understood is ignored. On SIGINT or SIGTERM
//! every client gets `{"type":"disconnect","reason":"server_restart","reconnect":true}` and a
//! close, as from the framework.
//!
//! Settings (environment, like `example-bench`): `PORT` (3001), `BIND` (127.0.0.1),
//! `READ_BUFFER` (tungstenite's read buffer per connection, bytes; 1024, the framework's
//! default), `WRITE_BUFFER` (bytes of frames gathered before a write; 8192, the framework's
//! default: what is queued leaves in one write per flush). The path of the request is not
//! checked.

use futures_util::{SinkExt as _, StreamExt as _};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

const PROTOCOL: &str = "actioncable-v1-json";
const CHANNEL: &str = "BenchmarkChannel";
const PING_EVERY: Duration = Duration::from_secs(3);
const SERVER_RESTART: &str = r#"{"type":"disconnect","reason":"server_restart","reconnect":true}"#;
/// How long a shutdown waits for the connections to close.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(5);
/// Frames written per flush when several are queued.
const WRITE_BATCH: usize = 64;

/// One connection as the rest of the server sees it.
struct Peer {
    tx: mpsc::UnboundedSender<Utf8Bytes>,
    /// The identifier it subscribed with, exactly as sent; `None` until it subscribes.
    identifier: Option<Arc<str>>,
}

/// Every open connection, for pings and broadcasts.
#[derive(Default)]
struct Registry {
    peers: Mutex<HashMap<u64, Peer>>,
    next_id: AtomicU64,
    /// Connection tasks still running, for shutdown.
    open: AtomicUsize,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Peer>> {
        self.peers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `{"identifier":…,"message":<data>}` for every subscriber: one encoding per
    /// distinct identifier, shared by all who use it.
    fn broadcast(&self, data: &RawValue) {
        let mut frames: Vec<(Arc<str>, Utf8Bytes)> = Vec::with_capacity(1);
        for peer in self.lock().values() {
            let Some(identifier) = &peer.identifier else {
                continue;
            };
            let frame = match frames.iter().find(|(id, _)| id == identifier) {
                Some((_, frame)) => frame.clone(),
                None => {
                    let frame = data_frame(identifier, data);
                    frames.push((identifier.clone(), frame.clone()));
                    frame
                }
            };
            let _ = peer.tx.send(frame);
        }
    }

    /// Tells every client to reconnect and drops their queues, which ends their tasks once
    /// the last frame is written.
    fn shut_down(&self) {
        for (_, peer) in self.lock().drain() {
            let _ = peer.tx.send(Utf8Bytes::from_static(SERVER_RESTART));
        }
    }

    fn ping_all(&self) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let frame = Utf8Bytes::from(format!(r#"{{"type":"ping","message":{now}}}"#));
        for peer in self.lock().values() {
            let _ = peer.tx.send(frame.clone());
        }
    }
}

#[derive(Serialize)]
struct DataFrame<'a> {
    identifier: &'a str,
    message: &'a RawValue,
}

#[derive(Serialize)]
struct Typed<'a> {
    identifier: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
}

fn data_frame(identifier: &str, message: &RawValue) -> Utf8Bytes {
    let frame = DataFrame {
        identifier,
        message,
    };
    serde_json::to_string(&frame).unwrap_or_default().into()
}

fn typed_frame(identifier: &str, kind: &'static str) -> Utf8Bytes {
    serde_json::to_string(&Typed { identifier, kind })
        .unwrap_or_default()
        .into()
}

/// A client command; `identifier` and `data` are JSON strings, so they may need unescaping.
#[derive(Deserialize)]
struct Command<'a> {
    #[serde(borrow)]
    command: Cow<'a, str>,
    #[serde(borrow)]
    identifier: Cow<'a, str>,
    #[serde(borrow, default)]
    data: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct ChannelName<'a> {
    #[serde(borrow)]
    channel: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Action<'a> {
    #[serde(borrow)]
    action: Option<Cow<'a, str>>,
}

/// What a connection does with one text frame; frames for the client go to `out`.
fn handle(
    text: &str,
    subscribed: &mut Option<Arc<str>>,
    id: u64,
    registry: &Registry,
    out: &mut Vec<Utf8Bytes>,
) {
    let Ok(command) = serde_json::from_str::<Command<'_>>(text) else {
        return;
    };
    match command.command.as_ref() {
        "subscribe" => {
            let is_bench = serde_json::from_str::<ChannelName<'_>>(&command.identifier)
                .is_ok_and(|c| c.channel.as_deref() == Some(CHANNEL));
            if !is_bench || subscribed.is_some() {
                if !is_bench {
                    out.push(typed_frame(&command.identifier, "reject_subscription"));
                }
                return;
            }
            let identifier: Arc<str> = Arc::from(command.identifier.as_ref());
            out.push(typed_frame(&identifier, "confirm_subscription"));
            if let Some(peer) = registry.lock().get_mut(&id) {
                peer.identifier = Some(identifier.clone());
            }
            *subscribed = Some(identifier);
        }
        "message" => {
            let (Some(identifier), Some(data)) = (subscribed.as_deref(), command.data) else {
                return;
            };
            if identifier != command.identifier {
                return;
            }
            let Ok(raw) = serde_json::from_str::<&RawValue>(&data) else {
                return;
            };
            let Ok(action) = serde_json::from_str::<Action<'_>>(raw.get()) else {
                return;
            };
            match action.action.as_deref() {
                Some("echo") => out.push(data_frame(identifier, raw)),
                Some("broadcast") => {
                    registry.broadcast(raw);
                    let Ok(mut map) =
                        serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&data)
                    else {
                        return;
                    };
                    map.insert("action".into(), "broadcastResult".into());
                    let Ok(result) = serde_json::value::to_raw_value(&map) else {
                        return;
                    };
                    out.push(data_frame(identifier, &result));
                }
                _ => {}
            }
        }
        _ => {}
    }
}

/// Selects `actioncable-v1-json` when the client offers it.
// The signature is tungstenite's handshake callback's.
#[allow(clippy::result_large_err)]
fn select_protocol(request: &Request, mut response: Response) -> Result<Response, ErrorResponse> {
    let offered = request
        .headers()
        .get_all("Sec-WebSocket-Protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == PROTOCOL);
    if offered {
        response
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_static(PROTOCOL));
    }
    Ok(response)
}

async fn connection(stream: TcpStream, registry: Arc<Registry>, config: WebSocketConfig) {
    let _ = stream.set_nodelay(true);
    let Ok(mut ws) =
        tokio_tungstenite::accept_hdr_async_with_config(stream, select_protocol, Some(config))
            .await
    else {
        return;
    };
    let id = registry.next_id.fetch_add(1, Ordering::Relaxed);
    registry.open.fetch_add(1, Ordering::AcqRel);
    let (tx, mut rx) = mpsc::unbounded_channel();
    registry.lock().insert(
        id,
        Peer {
            tx,
            identifier: None,
        },
    );
    let mut subscribed = None;
    let mut out = Vec::new();
    // Whether the server dropped this connection's queue: it is shutting down.
    let mut dropped = false;
    if ws
        .send(Message::text(r#"{"type":"welcome"}"#))
        .await
        .is_ok()
    {
        loop {
            tokio::select! {
                frame = rx.recv() => {
                    let Some(frame) = frame else { dropped = true; break };
                    if write(&mut ws, &mut rx, frame).await.is_err() {
                        break;
                    }
                }
                message = ws.next() => match message {
                    Some(Ok(Message::Text(text))) => {
                        handle(&text, &mut subscribed, id, &registry, &mut out);
                        for frame in out.drain(..) {
                            if ws.feed(Message::Text(frame)).await.is_err() {
                                break;
                            }
                        }
                        if ws.flush().await.is_err() {
                            break;
                        }
                    }
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                    Some(Ok(_)) => {}
                },
            }
        }
    }
    registry.lock().remove(&id);
    if dropped {
        let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
    } else {
        // tungstenite queued the reply to a client's close; send it if the socket takes it.
        let _ = tokio::time::timeout(Duration::from_secs(1), ws.flush()).await;
    }
    registry.open.fetch_sub(1, Ordering::AcqRel);
}

/// Writes `first` and whatever else is already queued, then flushes once.
async fn write(
    ws: &mut tokio_tungstenite::WebSocketStream<TcpStream>,
    rx: &mut mpsc::UnboundedReceiver<Utf8Bytes>,
    first: Utf8Bytes,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    ws.feed(Message::Text(first)).await?;
    for _ in 1..WRITE_BATCH {
        match rx.try_recv() {
            Ok(frame) => ws.feed(Message::Text(frame)).await?,
            Err(_) => break,
        }
    }
    ws.flush().await
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> Result<T, String> {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .map_err(|_| format!("invalid {name}: {value:?}")),
        Err(_) => Ok(default),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bind: String = env_or("BIND", "127.0.0.1".to_owned())?;
    let port: u16 = env_or("PORT", 3001)?;
    let config = WebSocketConfig::default()
        .read_buffer_size(env_or("READ_BUFFER", 1024)?)
        .write_buffer_size(env_or("WRITE_BUFFER", 8192)?)
        .max_message_size(Some(1 << 20))
        .max_frame_size(Some(1 << 20));
    let listener = tokio::net::TcpListener::bind((bind.as_str(), port)).await?;
    println!(
        "cable-ref listening on ws://{}/cable (pid {})",
        listener.local_addr()?,
        std::process::id()
    );
    let registry = Arc::new(Registry::default());
    {
        let registry = registry.clone();
        tokio::spawn(async move {
            let mut beat =
                tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
            loop {
                beat.tick().await;
                registry.ping_all();
            }
        });
    }
    let stop = actioncable::shutdown_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(connection(stream, registry.clone(), config));
                }
                // Out of file descriptors, say: wait a little rather than spin.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            () = &mut stop => break,
        }
    }
    registry.shut_down();
    let deadline = tokio::time::Instant::now() + SHUTDOWN_DEADLINE;
    while registry.open.load(Ordering::Acquire) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}
