//! `cable-ref`: the raw reference server the framework is measured against.
//!
//! The leanest correct Tokio server that speaks just what `cable-bench` needs of the
//! ActionCable protocol (`actioncable-v1-json`) with the websocket-shootout `BenchmarkChannel`:
//! it stands for what this machine can do, so the framework's `example-bench` is reported as a
//! ratio to it, measured in the same run. It is not a server to use for anything else.
//!
//! - every connection gets `{"type":"welcome"}`, and one timer sends every connection
//!   `{"type":"ping","message":<unix seconds>}` every 3 s (one frame, shared);
//! - `subscribe` to `{"channel":"BenchmarkChannel"}` is confirmed (any other channel is
//!   rejected); the subscriber then receives the stream `all`;
//! - action `echo` transmits the data back; action `broadcast` sends the data to every
//!   subscriber of `all` as one frame, encoded once and shared (a reference-counted
//!   `Utf8Bytes`) by every subscriber with the same identifier, then transmits the data back to
//!   the sender with `"action":"broadcastResult"` — exactly what `example-bench` does.
//!
//! What makes it lean, so that the ratios point at the real limit:
//! - one task per connection, which owns its socket; the WebSocket handshake's future is boxed
//!   and gone once the connection is open, so the task stays small while it idles;
//! - no channel per connection: a connection's queue is a `Mutex<VecDeque>` with a `Notify`
//!   (nothing is allocated until a frame waits), and the registry of connections is a slab
//!   (`Vec` slots reused through a free list), not a hash map;
//! - the identifier string is stored once and shared by every connection that subscribes with
//!   it (and by the broadcast's frame cache);
//! - commands are read borrowed (`Cow<str>`, `RawValue`): no `serde_json::Value` for `echo`;
//! - whatever is queued leaves in one write per flush (tungstenite's write buffer).
//!
//! WebSocket framing is tungstenite's. Anything a client sends that is not understood is
//! ignored. On SIGINT or SIGTERM every client gets
//! `{"type":"disconnect","reason":"server_restart","reconnect":true}` and a close, as from the
//! framework.
//!
//! Settings (environment, like `example-bench`): `PORT` (3001), `BIND` (127.0.0.1),
//! `READ_BUFFER` (tungstenite's read buffer per connection, bytes; 512, the framework's
//! default), `WRITE_BUFFER` (bytes of frames gathered before a write; 8192, the framework's
//! default). The path of the request is not checked.

use futures_util::{SinkExt as _, StreamExt as _};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_tungstenite::WebSocketStream;
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

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A connection's queue of frames to write, filled by broadcasts and pings.
#[derive(Default)]
struct Queue {
    frames: Mutex<VecDeque<Utf8Bytes>>,
    ready: Notify,
    /// Set at shutdown: write what is queued, then close.
    closing: AtomicBool,
}

impl Queue {
    fn push(&self, frame: Utf8Bytes) {
        lock(&self.frames).push_back(frame);
        self.ready.notify_one();
    }

    fn pop(&self) -> Option<Utf8Bytes> {
        let mut frames = lock(&self.frames);
        let frame = frames.pop_front();
        if frames.is_empty() && frames.capacity() > 0 {
            // A queue that grew in a burst gives its memory back once drained.
            *frames = VecDeque::new();
        }
        frame
    }
}

/// One connection as the rest of the server sees it.
struct Peer {
    queue: Arc<Queue>,
    /// The identifier it subscribed with, exactly as sent; `None` until it subscribes.
    identifier: Option<Arc<str>>,
}

/// Every open connection, in slots reused through a free list.
#[derive(Default)]
struct Peers {
    slots: Vec<Option<Peer>>,
    free: Vec<usize>,
    /// Every identifier in use, once.
    identifiers: HashSet<Arc<str>>,
}

#[derive(Default)]
struct Registry {
    peers: Mutex<Peers>,
    /// Connection tasks still running, for shutdown.
    open: AtomicUsize,
}

impl Registry {
    fn insert(&self, queue: Arc<Queue>) -> usize {
        let mut peers = lock(&self.peers);
        let peer = Some(Peer {
            queue,
            identifier: None,
        });
        match peers.free.pop() {
            Some(slot) => {
                peers.slots[slot] = peer;
                slot
            }
            None => {
                peers.slots.push(peer);
                peers.slots.len() - 1
            }
        }
    }

    fn remove(&self, slot: usize) {
        let mut peers = lock(&self.peers);
        let Some(peer) = peers.slots.get_mut(slot).and_then(Option::take) else {
            return;
        };
        peers.free.push(slot);
        // The set's and this peer's: nobody else uses the identifier any more.
        if let Some(identifier) = peer.identifier.filter(|id| Arc::strong_count(id) == 2) {
            peers.identifiers.remove(&identifier);
        }
    }

    /// Records `slot`'s subscription; the identifier is shared with any other connection that
    /// subscribed with the same one.
    fn subscribe(&self, slot: usize, identifier: &str) -> Arc<str> {
        let mut peers = lock(&self.peers);
        let shared = match peers.identifiers.get(identifier) {
            Some(shared) => shared.clone(),
            None => {
                let shared: Arc<str> = Arc::from(identifier);
                peers.identifiers.insert(shared.clone());
                shared
            }
        };
        if let Some(Some(peer)) = peers.slots.get_mut(slot) {
            peer.identifier = Some(shared.clone());
        }
        shared
    }

    /// Queues `{"identifier":…,"message":<data>}` for every subscriber: one encoding per
    /// distinct identifier, shared by all who use it.
    fn broadcast(&self, data: &RawValue) {
        let mut frames: Vec<(Arc<str>, Utf8Bytes)> = Vec::with_capacity(1);
        for peer in lock(&self.peers).slots.iter().flatten() {
            let Some(identifier) = &peer.identifier else {
                continue;
            };
            let frame = match frames.iter().find(|(id, _)| Arc::ptr_eq(id, identifier)) {
                Some((_, frame)) => frame.clone(),
                None => {
                    let frame = data_frame(identifier, data);
                    frames.push((identifier.clone(), frame.clone()));
                    frame
                }
            };
            peer.queue.push(frame);
        }
    }

    /// Tells every client to reconnect; each task closes once its queue is written.
    fn shut_down(&self) {
        let frame = Utf8Bytes::from_static(SERVER_RESTART);
        for peer in lock(&self.peers).slots.iter().flatten() {
            peer.queue.closing.store(true, Ordering::Release);
            peer.queue.push(frame.clone());
        }
    }

    fn ping_all(&self) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let frame = Utf8Bytes::from(format!(r#"{{"type":"ping","message":{now}}}"#));
        for peer in lock(&self.peers).slots.iter().flatten() {
            peer.queue.push(frame.clone());
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
    slot: usize,
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
            let identifier = registry.subscribe(slot, &command.identifier);
            out.push(typed_frame(&identifier, "confirm_subscription"));
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
    // Boxed: the handshake's future is large and only lives until the connection is open.
    let handshake = Box::pin(tokio_tungstenite::accept_hdr_async_with_config(
        stream,
        select_protocol,
        Some(config),
    ));
    let Ok(ws) = handshake.await else {
        return;
    };
    registry.open.fetch_add(1, Ordering::AcqRel);
    let queue = Arc::new(Queue::default());
    let slot = registry.insert(queue.clone());
    serve(ws, &queue, slot, &registry).await;
    registry.remove(slot);
    registry.open.fetch_sub(1, Ordering::AcqRel);
}

/// The open connection's loop: the client's commands, and the queue's frames.
async fn serve(
    mut ws: WebSocketStream<TcpStream>,
    queue: &Queue,
    slot: usize,
    registry: &Registry,
) {
    let mut subscribed = None;
    let mut out = Vec::new();
    if ws
        .send(Message::text(r#"{"type":"welcome"}"#))
        .await
        .is_err()
    {
        return;
    }
    loop {
        tokio::select! {
            () = queue.ready.notified() => {
                if write(&mut ws, queue).await.is_err() {
                    return;
                }
                if queue.closing.load(Ordering::Acquire) {
                    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
                    return;
                }
            }
            message = ws.next() => match message {
                Some(Ok(Message::Text(text))) => {
                    handle(&text, &mut subscribed, slot, registry, &mut out);
                    for frame in out.drain(..) {
                        if ws.feed(Message::Text(frame)).await.is_err() {
                            return;
                        }
                    }
                    if ws.flush().await.is_err() {
                        return;
                    }
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
        }
    }
    // tungstenite queued the reply to a client's close; send it if the socket takes it.
    let _ = tokio::time::timeout(Duration::from_secs(1), ws.flush()).await;
}

/// Writes what is queued (up to a batch), then flushes once; a longer queue is notified again.
async fn write(
    ws: &mut WebSocketStream<TcpStream>,
    queue: &Queue,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    for _ in 0..WRITE_BATCH {
        match queue.pop() {
            Some(frame) => ws.feed(Message::Text(frame)).await?,
            None => return ws.flush().await,
        }
    }
    queue.ready.notify_one();
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
        .read_buffer_size(env_or("READ_BUFFER", 512)?)
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
