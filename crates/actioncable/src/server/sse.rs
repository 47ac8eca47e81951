//! The Server-Sent Events transport: a connection whose client only listens (a browser's
//! `EventSource`, `curl -N`), one subscription per request, its frames written as events into
//! a streamed `text/event-stream` response.
//!
//! **Why it is a transport and not a second server.** Everything but the socket is the
//! WebSocket's: the request authenticates with the app's `Connection` (the same
//! `ConnectRequest`: cookies, headers, query), is admitted, reserved and registered by the
//! registry (so `max_connections`, `max_connections_per_identity`, the beat, shutdown, remote
//! disconnect, statistics and metrics see it), and runs on a `Dispatcher` (the same subscribe,
//! callbacks, streams, history replay, timers and cleanup). Its frames are queued in the same
//! bounded `Outbox`, so a slow reader overflows it and is dropped `too_slow` exactly like a
//! slow WebSocket. What the request asks for, and what each frame becomes, is
//! `protocol/sse.rs` (AnyCable's mapping).
//!
//! **Why two tasks.** hyper polls a response body only when it can write, and stops polling
//! one whose client does not read. So the body (polled by hyper) only takes frames from the
//! outbox and turns them into events, while a session task of its own owns the dispatcher: it
//! runs control events (timers, server-side unsubscribes) and watches for the end, which can
//! come while the body is stuck: a close request (too slow, shutdown, remote disconnect, an
//! expired credential), the response gone (the client left), or a client that stopped reading
//! (frames waiting and none taken for `client_timeout`). To end, it hands the body a last
//! `disconnect` event and waits `close_timeout` for the body to finish; a body hyper will not
//! poll is cut off through `serve`'s connection handle.
//!
//! **Answers before the stream**, as anycable-go's `sse/handler.go`: a query that names no
//! subscription `400`; no credentials (`Connection::connect` refused) `401`; a rejected
//! subscription `400`, after `Connection::disconnect` ran (the stream never starts, so no
//! `reject_subscription` event is sent). Ours besides: another site's `Origin` not allowed
//! `403`; a node at `max_connections` or shutting down `503`; an identity at
//! `max_connections_per_identity` `429`; any method but `GET` `405`.

use super::Shared;
use super::dispatch::Dispatcher;
use crate::connection::ConnectRequest;
use crate::metrics::{Metrics, Transport};
use crate::outbox::{Event, Frames, Outbox};
use crate::protocol::sse::{self as wire, SseEvent, SseRequest};
use crate::protocol::{Command, Extras, ServerMessage};
use crate::registry::{Admission, Reservation};
use crate::serve::ConnectionHandle;
use crate::sync::lock;
use crate::untrusted::untrusted;
use axum::extract::ws::Utf8Bytes;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

/// The answer to a request that gets no stream: a status and a line saying why.
fn refusal(status: StatusCode, why: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{why}\n"),
    )
        .into_response()
}

/// The `Origin` check of a request for an event stream, and the CORS headers that let an
/// allowed page of another origin read the stream (`EventSource` is a CORS request there).
///
/// A browser sends `Origin` only with a cross-origin `EventSource`, never with a same-origin
/// one, so a request without it is admitted whatever `require_origin` says: it is either the
/// page's own origin or a client that is no browser.
fn check_origin(
    headers: &HeaderMap,
    origins: &super::AllowedOrigins,
) -> Result<Option<HeaderValue>, ()> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(None);
    };
    if origins.allows_request(headers) {
        Ok(Some(origin.clone()))
    } else {
        Err(())
    }
}

pub(crate) async fn events<S: Send + Sync + 'static>(
    State(shared): State<Arc<Shared<S>>>,
    request: Request,
) -> Response {
    let started = std::time::Instant::now();
    let (parts, _body) = request.into_parts();
    if parts.method != Method::GET {
        let mut response = refusal(
            StatusCode::METHOD_NOT_ALLOWED,
            "an event stream is opened with GET",
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET"));
        return response;
    }
    let metrics = shared.handle.hub().metrics().cloned();
    let refused = |reason: &'static str| {
        if let Some(metrics) = &metrics {
            metrics.rejected(reason);
        }
    };
    let last_event_id = parts
        .headers
        .get(wire::LAST_EVENT_ID)
        .and_then(|v| v.to_str().ok());
    let wanted = match SseRequest::parse(parts.uri.query(), last_event_id) {
        Ok(wanted) => wanted,
        Err(e) => {
            refused("bad_request");
            tracing::info!(error = %untrusted(&e), "refusing an event stream: bad request");
            return refusal(StatusCode::BAD_REQUEST, &e.to_string());
        }
    };
    let cors = match check_origin(&parts.headers, &shared.config.origins) {
        Ok(cors) => cors,
        Err(()) => {
            refused("origin");
            let origin = parts.headers.get(header::ORIGIN).map(|o| o.as_bytes());
            tracing::warn!(origin = %untrusted(String::from_utf8_lossy(origin.unwrap_or_default())),
                "Request origin not allowed (event stream)");
            return refusal(StatusCode::FORBIDDEN, "origin not allowed");
        }
    };
    let registry = shared.handle.registry();
    if registry.is_shutting_down() {
        refused("shutting_down");
        return refusal(StatusCode::SERVICE_UNAVAILABLE, "Server is restarting");
    }
    let Some(admission) = registry.admit() else {
        refused("over_capacity");
        tracing::warn!(
            limit = registry.max_connections(),
            "refusing an event stream: too many connections open"
        );
        let mut response = refusal(StatusCode::SERVICE_UNAVAILABLE, "Too many connections");
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    };
    let remote = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let connection_handle = parts.extensions.get::<ConnectionHandle>().cloned();
    let request = ConnectRequest::new(parts, remote);
    let outcome = shared.connection.connect(&request).await;
    drop(request);
    let identity = match outcome {
        Ok(identity) => Arc::new(identity),
        Err(reject) => {
            refused(reject.reason().as_str());
            tracing::info!(reason = %reject.reason(), ?remote,
                "An unauthorized event stream request was rejected");
            return refusal(StatusCode::UNAUTHORIZED, "unauthorized");
        }
    };
    let Some(reservation) = registry.reserve(&identity) else {
        refused("too_many_connections");
        tracing::warn!(identity = %untrusted(&*identity), limit = registry.max_per_identity(),
            "refusing an event stream: too many open for this identity");
        return refusal(
            StatusCode::TOO_MANY_REQUESTS,
            "too many connections for this identity",
        );
    };
    let id = registry.next_id();
    let span = tracing::info_span!("cable", conn = %id, identity = %untrusted(&*identity), transport = "sse");
    // From here on the connection exists: it is opened and subscribed on a task of its own,
    // which hands the response body back. hyper drops this handler if the client leaves
    // meanwhile; the task then finds nobody to hand the body to and cleans up.
    let (ready, body) = tokio::sync::oneshot::channel();
    let opening = Opening {
        identity,
        id,
        wanted,
        reservation,
        admission,
        connection: connection_handle,
        started,
        ready,
    };
    let tracker = registry.tracker().clone();
    tokio::spawn(tracker.track_future(run(shared, opening).instrument(span)));
    let body = match body.await {
        Ok(Some(body)) => body,
        Ok(None) => return refusal(StatusCode::BAD_REQUEST, "subscription rejected"),
        Err(_) => {
            return refusal(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the event stream could not start",
            );
        }
    };
    let stream = futures_util::stream::unfold(body, Body::next);
    let mut response = Response::new(axum::body::Body::from_stream(stream));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    // anycable-go's headers: never cached, never buffered by a proxy (nginx).
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache, no-store, must-revalidate, max-age=0"),
    );
    headers.insert(
        HeaderName::from_static("x-accel-buffering"),
        HeaderValue::from_static("no"),
    );
    if let Some(origin) = cors {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
        headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    response
}

/// What the session task starts from: an authenticated, admitted, reserved connection and
/// what it asked for.
struct Opening {
    identity: Arc<crate::connection::Identity>,
    id: crate::connection::ConnectionId,
    wanted: SseRequest,
    reservation: Reservation,
    admission: Admission,
    connection: Option<ConnectionHandle>,
    started: std::time::Instant,
    /// The response body, once subscribed; `None` when the subscription was rejected.
    ready: tokio::sync::oneshot::Sender<Option<Body>>,
}

/// The session task: opens the connection, subscribes, hands the body to the handler, then
/// watches the stream until it ends and cleans up.
async fn run<S: Send + Sync + 'static>(shared: Arc<Shared<S>>, opening: Opening) {
    let Opening {
        identity,
        id,
        wanted,
        reservation,
        admission,
        connection,
        started,
        ready,
    } = opening;
    let metrics = shared.handle.hub().metrics().cloned();
    // The extended protocol's dispatcher: positions (the events' ids) and presence events.
    let (mut dispatcher, frames) = Dispatcher::open(shared, identity, id, true).await;
    let SseRequest {
        identifier,
        history,
        raw,
        ..
    } = wanted;
    let subscribe = Command::Subscribe {
        identifier: identifier.clone(),
    };
    let extras = Extras {
        history,
        ..Extras::default()
    };
    // Its outcome is logged where it happened; whether it stands is the dispatcher's.
    let _ = dispatcher.run_with(subscribe, extras).await;
    if !dispatcher.subscriptions.contains_key(identifier.as_str()) {
        if let Some(metrics) = &metrics {
            metrics.rejected("subscription_rejected");
        }
        tracing::info!(identifier = %untrusted(&identifier), "event stream refused: its subscription was rejected");
        drop(reservation);
        drop(admission);
        dispatcher.close().await;
        let _ = ready.send(None);
        return;
    }
    let link = Arc::new(Link::default());
    let body = Body {
        frames,
        link: link.clone(),
        raw,
        welcome: (!raw).then(|| ServerMessage::WELCOME.encode()),
        metrics: metrics.clone(),
        done: false,
    };
    if let Some(metrics) = &metrics {
        metrics.connections(Transport::Sse).inc();
        metrics.accepted.inc();
        metrics.welcome.observe(started.elapsed().as_secs_f64());
    }
    if let Some(handle) = &connection {
        handle.hand_over();
    }
    tracing::debug!(identifier = %untrusted(&identifier), raw, "event stream open");
    // A handler that is gone drops the body it was sent: the stream ends as the client's.
    let _ = ready.send(Some(body));
    let session = Session {
        dispatcher,
        link,
        reservation,
        admission,
        connection,
        metrics,
    };
    session.run().await;
}

/// What the session task and the response body share.
#[derive(Default)]
struct Link {
    /// Set by the session: the response must end, after [`last`](Self::last) if any.
    finish: CancellationToken,
    /// The last frame (a `disconnect`) the body writes before it ends.
    last: Mutex<Option<String>>,
    /// Set when the body is dropped: hyper finished the response, or the client went away.
    gone: CancellationToken,
    /// Frames the body has taken from the outbox: a client that reads keeps it moving.
    taken: AtomicU64,
}

/// At most about this many bytes of events in one chunk of the response.
const CHUNK_BYTES: usize = 64 * 1024;

/// The response body's state: the connection's frame queue, turned into events as hyper asks
/// for them: every event waiting when it asks goes into one chunk (up to [`CHUNK_BYTES`]), as
/// a WebSocket session writes its waiting frames and flushes once.
struct Body {
    frames: Frames,
    link: Arc<Link>,
    /// Data events only ([`SseRequest::raw`]).
    raw: bool,
    /// The `welcome` frame, sent before anything queued (none in raw mode).
    welcome: Option<String>,
    metrics: Option<Arc<Metrics>>,
    /// The last event was handed out: the stream ends.
    done: bool,
}

impl Drop for Body {
    fn drop(&mut self) {
        self.link.gone.cancel();
    }
}

impl Body {
    /// The next chunk of the stream: the events waiting, at least one; `None` once the session
    /// has ended it.
    async fn next(mut self) -> Option<(Result<Bytes, Infallible>, Body)> {
        let mut out = String::new();
        if let Some(welcome) = self.welcome.take() {
            write_frame(&welcome, false, &mut out);
        }
        while !self.done && out.len() < CHUNK_BYTES {
            let frame = if out.is_empty() {
                tokio::select! {
                    biased;
                    () = self.link.finish.cancelled() => {
                        self.done = true;
                        let last = lock(&self.link.last).take();
                        match last {
                            Some(frame) => Utf8Bytes::from(frame),
                            None => break,
                        }
                    }
                    frame = self.frames.recv() => self.took(frame),
                }
            } else if self.link.finish.is_cancelled() {
                // The end comes next, in a chunk of its own.
                break;
            } else {
                match self.frames.try_recv() {
                    Some(frame) => self.took(frame),
                    None => break,
                }
            };
            write_frame(frame.as_str(), self.raw, &mut out);
        }
        if out.is_empty() {
            return None;
        }
        Some((Ok(Bytes::from(out)), self))
    }

    /// Counts a frame taken from the outbox (the stall check reads it), and times the traced.
    fn took(&mut self, frame: Utf8Bytes) -> Utf8Bytes {
        self.link.taken.fetch_add(1, Ordering::Relaxed);
        if let Some(metrics) = &self.metrics {
            for trace in self.frames.written_traces() {
                metrics.written(trace);
            }
        }
        frame
    }
}

/// Appends the event a frame becomes (`protocol/sse.rs`) to `out`; nothing for a protocol
/// event in raw mode.
fn write_frame(frame: &str, raw: bool, out: &mut String) {
    let event = wire::sse_event(frame);
    if raw && matches!(event, SseEvent::Typed { .. }) {
        return;
    }
    wire::write_event(&event, out);
}

/// How an event stream ended.
enum End {
    /// The server closes it with `disconnect` (too slow, shutdown, remote, expired credential).
    Disconnect(crate::protocol::DisconnectReason, bool),
    /// The response went away: the client closed it, or the network did.
    Gone,
    /// Frames waited and none was taken for `client_timeout`: a client that stopped reading.
    Stalled,
}

/// The session task of one event stream: the dispatcher and what ends the stream.
struct Session<S> {
    dispatcher: Dispatcher<S>,
    link: Arc<Link>,
    /// Its place among its identity's connections.
    reservation: Reservation,
    /// Its place among `max_connections`.
    admission: Admission,
    /// `serve`'s handle on the HTTP connection, to cut a stream its client does not read.
    connection: Option<ConnectionHandle>,
    metrics: Option<Arc<Metrics>>,
}

impl<S: Send + Sync + 'static> Session<S> {
    async fn run(mut self) {
        let outbox = self.dispatcher.outbox().clone();
        let end = self.watch(&outbox).await;
        self.finish(end, &outbox).await;
    }

    /// Runs control events until the stream must end.
    async fn watch(&mut self, outbox: &Outbox) -> End {
        let timeout = self.dispatcher.shared.config.client_timeout;
        let mut check =
            tokio::time::interval_at(tokio::time::Instant::now() + timeout / 2, timeout / 2);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stall = Stall::default();
        loop {
            tokio::select! {
                biased;
                event = outbox.next_event() => match event {
                    Event::Close(reason, reconnect) => return End::Disconnect(reason, reconnect),
                    Event::Control(event) => Box::pin(self.dispatcher.control(event)).await,
                },
                () = self.link.gone.cancelled() => return End::Gone,
                _ = check.tick() => {
                    let taken = self.link.taken.load(Ordering::Relaxed);
                    if stall.stalled(taken, outbox.queued()) {
                        return End::Stalled;
                    }
                }
            }
        }
    }

    async fn finish(self, end: End, outbox: &Outbox) {
        let Session {
            dispatcher,
            link,
            reservation,
            admission,
            connection,
            metrics,
        } = self;
        let timeout = dispatcher.shared.config.close_timeout;
        let cut = || {
            if let Some(connection) = &connection {
                connection.abort();
            }
        };
        match end {
            End::Disconnect(reason, reconnect) => {
                tracing::info!(%reason, reconnect, dropped_frames = outbox.dropped(), "disconnecting");
                *lock(&link.last) = Some(ServerMessage::disconnect(reason, reconnect).encode());
                link.finish.cancel();
                if tokio::time::timeout(timeout, link.gone.cancelled())
                    .await
                    .is_err()
                {
                    tracing::info!(
                        "the client did not read its last event in time; connection cut"
                    );
                    cut();
                }
            }
            End::Gone => tracing::debug!("the event stream's client went away"),
            End::Stalled => {
                tracing::info!(timeout = ?dispatcher.shared.config.client_timeout,
                    queued = outbox.queued(), "closing an event stream whose client stopped reading");
                link.finish.cancel();
                cut();
            }
        }
        drop(admission);
        if let Some(metrics) = &metrics {
            metrics.connections(Transport::Sse).dec();
            metrics.disconnected(match end {
                End::Disconnect(reason, _) => reason.as_str(),
                End::Gone => "client_close",
                End::Stalled => "timeout",
            });
            metrics.dropped.inc_by(outbox.dropped());
        }
        // Another connection of the same identity may take its place.
        drop(reservation);
        dispatcher.close().await;
        tracing::debug!("closed");
    }
}

/// A client that stopped reading: frames wait and none was taken on two checks in a row (half
/// of `client_timeout` apart), so for at least `client_timeout`'s half and at most all of it
/// after the last one was taken. The beat queues a frame every `ping_interval`, so a stream
/// always has something to take.
#[derive(Default)]
struct Stall {
    last_taken: u64,
    quiet_checks: u8,
}

impl Stall {
    fn stalled(&mut self, taken: u64, queued: usize) -> bool {
        if taken != self.last_taken || queued == 0 {
            self.last_taken = taken;
            self.quiet_checks = 0;
            return false;
        }
        self.quiet_checks += 1;
        self.quiet_checks >= 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `frame` becomes on the wire.
    fn text(frame: &str, raw: bool) -> String {
        let mut out = String::new();
        write_frame(frame, raw, &mut out);
        out
    }

    #[test]
    fn frames_are_written_as_anycable_writes_them() {
        let confirm = r#"{"identifier":"{\"channel\":\"C\"}","type":"confirm_subscription"}"#;
        assert_eq!(
            text(confirm, false),
            format!("event: confirm_subscription\ndata: {confirm}\n\n")
        );
        assert_eq!(text(confirm, true), "", "raw: data only");
        let at = r#"{"identifier":"i","message":{"n":1},"stream_id":"s/1","epoch":"e","offset":2}"#;
        assert_eq!(text(at, true), "data: {\"n\":1}\nid: 2/e/s/1\n\n");
        let gone = r#"{"type":"disconnect","reason":"remote","reconnect":false}"#;
        assert_eq!(
            text(gone, false),
            format!("event: disconnect\ndata: {gone}\nretry: 31536000000\n\n")
        );
        let ping = r#"{"type":"ping","message":1}"#;
        assert_eq!(text(ping, false), ": ping\n\n");
        assert_eq!(text(ping, true), ": ping\n\n", "heartbeats in raw mode too");
        // A multi-line string message: one `data:` line per line.
        let lines = r#"{"identifier":"i","message":"a\r\nb"}"#;
        assert_eq!(text(lines, false), "data: a\ndata: b\n\n");
        // A frame passed through whole keeps no raw line break inside a line.
        let spaced = "{\"type\":\"note\",\r\n\"n\":1}";
        assert_eq!(
            text(spaced, false),
            "event: note\ndata: {\"type\":\"note\",\ndata: \"n\":1}\n\n"
        );
        // An empty message is still a message (an empty `data:` line).
        assert_eq!(
            text(r#"{"identifier":"i","message":""}"#, false),
            "data: \n\n"
        );
    }

    #[test]
    fn a_stall_is_frames_waiting_and_none_taken_twice_in_a_row() {
        let mut stall = Stall::default();
        assert!(!stall.stalled(0, 0), "nothing waiting");
        assert!(!stall.stalled(0, 0));
        assert!(!stall.stalled(0, 3), "first quiet check");
        assert!(stall.stalled(0, 3), "second quiet check");
        let mut moving = Stall::default();
        for taken in 1..10 {
            assert!(!moving.stalled(taken, 5), "frames taken meanwhile");
        }
    }
}
