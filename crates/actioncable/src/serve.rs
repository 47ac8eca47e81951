//! [`serve`]: the one way to serve an app's router, with limits on every connection that has
//! not (yet) become a cable. Why it exists, its settings and their defaults are in
//! [`serve`]'s documentation; this is how it works.
//!
//! hyper's own HTTP/1.1 connection ([`hyper::server::conn::http1`]) with hyper-util's
//! [`TokioTimer`], so its header-read timeout runs: hyper starts it as soon as it waits for a
//! request head, on a new connection and again after every response, and closes the connection
//! when the head is not complete in time. (`axum::serve` builds hyper without a timer, so there
//! the timeout never runs.) Upgrades are served with `with_upgrades`, as axum's WebSocket
//! extractor needs.
//!
//! hyper-util's `auto` builder (HTTP/1 and HTTP/2, what `axum::serve` uses) is not used: before
//! hyper's timer starts, it reads the first bytes to tell the two protocols apart, with no
//! timeout of its own, so a silent connection would never be timed out. This serves HTTP/1.x
//! only: browsers speak HTTP/2 only over TLS, which is a proxy's job in front of this server,
//! and WebSockets are HTTP/1.1 upgrades.
//!
//! hyper times request heads only. The idle timeout covers the rest (request bodies, responses,
//! handlers): each accepted socket is wrapped in a counter of the reads and writes that moved
//! bytes, and the connection's task closes it when the counter has not moved for the timeout.
//! The wrapper stays on the upgraded WebSocket (hyper hands the same socket over), at the cost
//! of a plain load and store per system call; only the pending connection's task looks at it.
//!
//! The limit on connections is a semaphore taken before `accept`: at the limit the server stops
//! accepting, so waiting connections cost the process no descriptor and no memory; a timeout
//! that closes a connection lets the next one in. A connection's permit is released when its
//! task ends: when it closes, or when hyper hands it over as upgraded. Accept errors (running
//! out of descriptors, among others) are logged once a minute and retried every 100 ms, so the
//! server recovers by itself once descriptors are free again.
//!
//! Graceful shutdown is axum's: the signal runs on a task of its own while everything is served;
//! then the listener is closed, each connection is asked to finish (hyper closes idle ones at
//! once), and a task tracker waits for them all.
//!
//! A request's handler finds its connection's [`ConnectionHandle`] among the request's
//! extensions. A long-lived response that is a cable connection of its own (the event stream
//! of `server/sse.rs`) hands its connection over with it, as an upgrade does: its place among
//! the pending connections is given back, since `max_connections` counts it from then on. And
//! it can cut the connection: hyper stops polling a response body whose client does not read,
//! so a stream that must end (a slow client dropped, a shutdown) could not otherwise end while
//! the client refuses to read its last bytes. Under another server the extension is absent and
//! neither happens.

use crate::error::ServeError;
use crate::sync::lock;
use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::fmt;
use std::future::{Future, IntoFuture};
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;

/// How long to wait before accepting again after an accept error (no descriptor left, say).
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// The least time between two warnings about the same trouble (accept errors, the limit).
const WARN_EVERY: Duration = Duration::from_secs(60);

/// How many times per [`idle_timeout`](Serve::idle_timeout) a connection's activity is looked
/// at: an idle connection is closed between the timeout and a quarter more after its last byte.
const IDLE_CHECKS: u32 = 4;

/// Serves `router` on `listener` until the process ends or, with
/// [`with_graceful_shutdown`](Serve::with_graceful_shutdown), until a signal.
///
/// It does what `axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())`
/// does, with limits on every connection that has not upgraded to a WebSocket. Settings are
/// chained on the returned [`Serve`]; awaiting it runs the server.
///
/// # Why not `axum::serve`
///
/// `axum::serve` is deliberately simple and takes no settings. It builds hyper without a timer,
/// so hyper's header-read timeout never applies, and it accepts every connection the kernel
/// hands it. A connection that sends nothing, or half of a request, therefore stays open for as
/// long as its client likes. Against a cable server that was an attack: 2,000 half-sent upgrade
/// requests and 500 silent TCP connections stayed open indefinitely, and with a 1,024-descriptor
/// limit 1,100 silent connections made the node unreachable until the attacker let go.
/// [`max_connections`](crate::CableBuilder::max_connections) could not help: it counts cables,
/// and these connections never upgrade.
///
/// # Settings
///
/// | setting | default | stops |
/// |---|---|---|
/// | [`header_read_timeout`](Serve::header_read_timeout) | 5 s | connections that send nothing or only part of a request head (slowloris); keep-alive connections left idle |
/// | [`idle_timeout`](Serve::idle_timeout) | 60 s | request bodies that stall, clients that stop reading a response, handlers that hang |
/// | [`max_pending_connections`](Serve::max_pending_connections) | 1,024 | a flood of connections using unbounded descriptors and memory: beyond the limit new ones wait, unaccepted, in the kernel's queue |
/// | [`max_header_size`](Serve::max_header_size) | 64 KiB | request heads that fill memory (answered `431`) |
/// | [`tcp_nodelay`](Serve::tcp_nodelay) | on | the delayed-ACK stall of a frame sent right after another |
///
/// Every request carries [`ConnectInfo<SocketAddr>`](axum::extract::ConnectInfo), so
/// [`ConnectRequest::remote_addr`](crate::ConnectRequest::remote_addr) and axum's `ConnectInfo`
/// extractor work.
///
/// Once a connection has upgraded to a WebSocket none of these apply: it is the cable's, bounded
/// by `max_connections`, `client_timeout` and the cable's other settings. Only HTTP/1.x is
/// served (WebSockets are HTTP/1.1 upgrades; browsers speak HTTP/2 only over TLS, which a proxy
/// in front of this server terminates).
///
/// ```no_run
/// use actioncable::{AcceptAll, Cable};
/// use axum::{routing::get, Router};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let cable = Cable::builder().connection(AcceptAll).build()?;
/// let app = Router::new()
///     .route("/health", get(|| async { "ok" }))
///     .merge(cable.router("/cable"));
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// actioncable::serve(listener, app).await?;
/// # Ok(()) }
/// ```
pub fn serve(listener: TcpListener, router: Router) -> Serve {
    Serve {
        listener,
        router,
        settings: Settings::default(),
        signal: None,
    }
}

/// A server being configured; [`serve`] makes one, awaiting it runs it.
///
/// Every setting has a default; each method below says which attack it stops.
///
/// ```no_run
/// use std::time::Duration;
///
/// # async fn run(app: axum::Router, handle: actioncable::CableHandle) -> Result<(), actioncable::ServeError> {
/// let listener = tokio::net::TcpListener::bind("0.0.0.0:3000").await.expect("port 3000 is free");
/// actioncable::serve(listener, app)
///     // Behind a load balancer that keeps idle connections to us for 60 s:
///     .header_read_timeout(Duration::from_secs(65))
///     .max_pending_connections(4096)
///     .with_graceful_shutdown(async move {
///         actioncable::shutdown_signal().await;
///         handle.shutdown(Duration::from_secs(5)).await;
///     })
///     .await
/// # }
/// ```
///
/// # Errors
/// Awaiting it fails only when a setting cannot work ([`ServeError::Invalid`]), before anything
/// is accepted.
#[must_use = "a server does nothing until it is awaited"]
pub struct Serve {
    listener: TcpListener,
    router: Router,
    settings: Settings,
    signal: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

/// The settings of [`Serve`], with their defaults.
#[derive(Debug, Clone, Copy)]
struct Settings {
    header_read_timeout: Option<Duration>,
    idle_timeout: Option<Duration>,
    max_pending_connections: usize,
    max_header_size: usize,
    tcp_nodelay: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            header_read_timeout: Some(Serve::DEFAULT_HEADER_READ_TIMEOUT),
            idle_timeout: Some(Serve::DEFAULT_IDLE_TIMEOUT),
            max_pending_connections: Serve::DEFAULT_MAX_PENDING_CONNECTIONS,
            max_header_size: Serve::DEFAULT_MAX_HEADER_SIZE,
            tcp_nodelay: true,
        }
    }
}

impl Settings {
    fn validate(&self) -> Result<(), ServeError> {
        let invalid = |name, reason: &str| ServeError::Invalid {
            name,
            reason: reason.into(),
        };
        if self.header_read_timeout.is_some_and(|t| t.is_zero()) {
            return Err(invalid(
                "header_read_timeout",
                "must be positive (None disables it)",
            ));
        }
        if self.idle_timeout.is_some_and(|t| t.is_zero()) {
            return Err(invalid(
                "idle_timeout",
                "must be positive (None disables it)",
            ));
        }
        if self.max_pending_connections == 0 {
            return Err(invalid("max_pending_connections", "must be positive"));
        }
        if self.max_pending_connections > Semaphore::MAX_PERMITS {
            return Err(invalid(
                "max_pending_connections",
                &format!("must be at most {}", Semaphore::MAX_PERMITS),
            ));
        }
        if self.max_header_size < 1024 {
            return Err(invalid("max_header_size", "must be at least 1 KiB"));
        }
        Ok(())
    }
}

impl Serve {
    /// The default [`header_read_timeout`](Self::header_read_timeout): 5 s.
    pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
    /// The default [`idle_timeout`](Self::idle_timeout): 60 s.
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
    /// The default [`max_pending_connections`](Self::max_pending_connections): 1,024.
    pub const DEFAULT_MAX_PENDING_CONNECTIONS: usize = 1024;
    /// The default [`max_header_size`](Self::max_header_size): 64 KiB.
    pub const DEFAULT_MAX_HEADER_SIZE: usize = 64 * 1024;

    /// How long a client has to send a complete request head (default 5 s), counted from the
    /// moment the server waits for one: when the connection is accepted, and again when the
    /// previous response on a keep-alive connection is done. A connection that is late is
    /// closed. `None` disables the timeout.
    ///
    /// Stops silent TCP connections, half-sent requests (slowloris) and keep-alive connections
    /// left idle from holding a descriptor for longer than this. Browsers send a head at once
    /// and open a new connection when an idle one was closed. Behind a load balancer or proxy
    /// that keeps idle connections to this server open (AWS' load balancers: 60 s by default),
    /// set it above the proxy's idle timeout: otherwise the proxy may send a request on a
    /// connection this server is closing, and answers it with `502`. Slow clients are then the
    /// proxy's to time out.
    pub fn header_read_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.settings.header_read_timeout = timeout.into();
        self
    }

    /// How long a connection that has not upgraded may go without reading or writing a byte
    /// (default 60 s, as nginx's `client_body_timeout` and `send_timeout`), whatever it is
    /// doing: it is then closed, and a request still being handled on it is cancelled. `None`
    /// disables the timeout. It is checked four times per period, so a connection is closed
    /// between the timeout and a quarter more after its last byte.
    ///
    /// Stops what the header-read timeout does not see: a request whose body stops arriving
    /// (`Content-Length: 1000000`, then nothing), a client that stops reading a response (the
    /// server's writes block), a handler that never answers. A streamed response that sends
    /// something more often than this (server-sent events with a keep-alive comment, say) is
    /// not affected.
    pub fn idle_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.settings.idle_timeout = timeout.into();
        self
    }

    /// Most connections that have not upgraded, open at once (default 1,024). At the limit the
    /// server stops accepting: new connections wait in the kernel's accept queue (which holds
    /// 1,024 more with tokio's `TcpListener::bind`; beyond it the kernel drops new attempts and
    /// clients retry) and are accepted in order as others close, upgrade or time out. Reaching
    /// the limit is logged, at most once a minute.
    ///
    /// Stops a flood of connections from using more than this many descriptors and buffers
    /// (with [`max_header_size`](Self::max_header_size), at most about 64 MiB of request heads
    /// by default) however many the attacker opens. Waiting rather than refusing means a burst
    /// of honest clients (a reconnect storm after a restart) is delayed, not failed. Upgraded
    /// cables do not count: [`max_connections`](crate::CableBuilder::max_connections) limits
    /// them. Keep the process's descriptor limit (`ulimit -n`) above this plus
    /// `max_connections` plus what the app opens itself; when descriptors run out anyway,
    /// accepting is retried every 100 ms until the timeouts above free some.
    pub fn max_pending_connections(mut self, connections: usize) -> Self {
        self.settings.max_pending_connections = connections;
        self
    }

    /// Largest request head (request line and headers) the server reads (default 64 KiB); a
    /// larger one is answered `431 Request Header Fields Too Large` and the connection closed.
    /// hyper also refuses more than 100 headers.
    ///
    /// Stops heads that fill memory: without it hyper buffers up to about 400 KiB per
    /// connection. Browsers send a few KiB (Rails' cookie store refuses cookies over 4 KiB).
    pub fn max_header_size(mut self, bytes: usize) -> Self {
        self.settings.max_header_size = bytes;
        self
    }

    /// Whether accepted sockets get TCP_NODELAY (default on).
    ///
    /// With Nagle's algorithm on, a small frame written right after another waits for the
    /// client's acknowledgement of the first, which the client delays (40 ms on Linux): a
    /// latency stall on the cable. The upgraded socket is out of the app's reach, so it is set
    /// here, on every accepted connection.
    pub fn tcp_nodelay(mut self, nodelay: bool) -> Self {
        self.settings.tcp_nodelay = nodelay;
        self
    }

    /// Shuts the server down gracefully when `signal` resolves, as axum's
    /// `with_graceful_shutdown` does: until then (while `signal` runs) everything is served as
    /// usual; then the server stops accepting and closes its listening socket, lets each
    /// connection finish the request it is serving (idle ones are closed at once), and the
    /// `Serve` future resolves when they all have. Upgraded WebSockets are not waited for:
    /// shut the cable down inside `signal`, so that every client is told `server_restart`.
    ///
    /// ```no_run
    /// use actioncable::{shutdown_signal, Cable};
    /// use std::time::Duration;
    ///
    /// # async fn run(cable: Cable, app: axum::Router) -> Result<(), Box<dyn std::error::Error>> {
    /// let handle = cable.handle();
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    /// actioncable::serve(listener, app)
    ///     .with_graceful_shutdown(async move {
    ///         shutdown_signal().await;
    ///         handle.shutdown(Duration::from_secs(5)).await;
    ///     })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn with_graceful_shutdown(
        mut self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> Self {
        self.signal = Some(Box::pin(signal));
        self
    }

    /// The address the server listens on.
    ///
    /// # Errors
    /// When the operating system cannot tell.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    async fn run(self) -> Result<(), ServeError> {
        let Serve {
            listener,
            router,
            settings,
            signal,
        } = self;
        settings.validate()?;
        let stop = CancellationToken::new();
        if let Some(signal) = signal {
            // On a task of its own, as axum does: a signal that shuts the cable down keeps
            // running while connections are accepted and served.
            let stop = stop.clone();
            tokio::spawn(async move {
                signal.await;
                stop.cancel();
            });
        }
        let pending = Arc::new(Semaphore::new(settings.max_pending_connections));
        let connections = TaskTracker::new();
        let mut limit_warned: Option<Instant> = None;
        let mut accept_warned: Option<Instant> = None;
        loop {
            let permit = match pending.clone().try_acquire_owned() {
                Ok(permit) => permit,
                Err(_) => {
                    if warn_due(&mut limit_warned) {
                        tracing::warn!(
                            limit = settings.max_pending_connections,
                            "too many HTTP connections have not upgraded; new ones wait to be \
                             accepted (max_pending_connections)"
                        );
                    }
                    tokio::select! {
                        biased;
                        () = stop.cancelled() => break,
                        permit = pending.clone().acquire_owned() => match permit {
                            Ok(permit) => permit,
                            // The semaphore is never closed.
                            Err(_) => break,
                        },
                    }
                }
            };
            let accepted = tokio::select! {
                biased;
                () = stop.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, remote)) => {
                    connections.spawn(connection(
                        stream,
                        remote,
                        router.clone(),
                        settings,
                        stop.clone(),
                        permit,
                    ));
                }
                // The peer gave up before we accepted it: nothing to do.
                Err(e) if is_connection_error(&e) => {}
                Err(e) => {
                    if warn_due(&mut accept_warned) {
                        tracing::warn!(
                            error = %e,
                            "cannot accept connections; retrying every {ACCEPT_RETRY:?} \
                             (out of file descriptors? see `ulimit -n`)"
                        );
                    }
                    tokio::select! {
                        biased;
                        () = stop.cancelled() => break,
                        () = tokio::time::sleep(ACCEPT_RETRY) => {}
                    }
                }
            }
        }
        drop(listener);
        connections.close();
        tracing::debug!(
            connections = connections.len(),
            "stopped accepting; waiting for HTTP connections to finish"
        );
        connections.wait().await;
        Ok(())
    }
}

impl IntoFuture for Serve {
    type Output = Result<(), ServeError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<(), ServeError>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

impl fmt::Debug for Serve {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Serve")
            .field("listener", &self.listener)
            .field("settings", &self.settings)
            .field("graceful_shutdown", &self.signal.is_some())
            .finish_non_exhaustive()
    }
}

/// Whether a warning is due (none in the last [`WARN_EVERY`]); notes it if so.
fn warn_due(last: &mut Option<Instant>) -> bool {
    let now = Instant::now();
    if last.is_some_and(|at| now.duration_since(at) < WARN_EVERY) {
        return false;
    }
    *last = Some(now);
    true
}

/// Errors of one connection that went away before it was accepted, not of the listener.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// What a request's handler may do with the connection the request came on: a request
/// extension [`serve`] adds to every request (absent under any other server).
#[derive(Clone)]
pub(crate) struct ConnectionHandle(Arc<HandleInner>);

struct HandleInner {
    /// The connection's place among `max_pending_connections`, until handed over or closed.
    permit: Mutex<Option<OwnedSemaphorePermit>>,
    /// Cancelled to close the connection at once.
    abort: CancellationToken,
}

impl ConnectionHandle {
    fn new(permit: OwnedSemaphorePermit) -> ConnectionHandle {
        ConnectionHandle(Arc::new(HandleInner {
            permit: Mutex::new(Some(permit)),
            abort: CancellationToken::new(),
        }))
    }

    /// The connection now carries a cable connection of its own (counted by
    /// `max_connections`): it gives back its place among the pending connections, as an
    /// upgraded one does. It keeps the idle timeout.
    pub(crate) fn hand_over(&self) {
        lock(&self.0.permit).take();
    }

    /// Closes the connection now, whatever it is doing: a response in flight is abandoned.
    pub(crate) fn abort(&self) {
        self.0.abort.cancel();
    }
}

/// Gives the connection's place back when its task ends, whoever still holds its handle.
struct ReleaseOnDrop(ConnectionHandle);

impl Drop for ReleaseOnDrop {
    fn drop(&mut self) {
        self.0.hand_over();
    }
}

/// Serves one accepted connection until it closes, upgrades, times out, is aborted through its
/// [`ConnectionHandle`] or is shut down; `permit` holds its place under
/// `max_pending_connections` until then, or until the handle hands it over.
async fn connection(
    stream: TcpStream,
    remote: SocketAddr,
    router: Router,
    settings: Settings,
    stop: CancellationToken,
    permit: OwnedSemaphorePermit,
) {
    configure(&stream, &settings, remote);
    let activity = Arc::new(AtomicU64::new(0));
    let io = TokioIo::new(Watched {
        stream,
        activity: activity.clone(),
    });
    let handle = ConnectionHandle::new(permit);
    let aborted = handle.0.abort.clone();
    let _release = ReleaseOnDrop(handle.clone());
    let service = hyper::service::service_fn(move |request: http::Request<Incoming>| {
        let mut request = request.map(Body::new);
        request.extensions_mut().insert(ConnectInfo(remote));
        request.extensions_mut().insert(handle.clone());
        router.clone().oneshot(request)
    });
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        .max_header_size(settings.max_header_size);
    let mut served = pin!(http.serve_connection(io, service).with_upgrades());
    let mut idle = pin!(idle(&activity, settings.idle_timeout));
    let mut stopping = false;
    loop {
        tokio::select! {
            result = served.as_mut() => {
                if let Err(e) = result {
                    // A header-read timeout, a malformed request, a peer that went away.
                    tracing::debug!(%remote, error = %e, "HTTP connection closed");
                }
                return;
            }
            () = stop.cancelled(), if !stopping => {
                stopping = true;
                served.as_mut().graceful_shutdown();
            }
            () = idle.as_mut() => {
                tracing::debug!(%remote, "closing an HTTP connection idle for longer than idle_timeout");
                return;
            }
            () = aborted.cancelled() => {
                tracing::debug!(%remote, "closing an HTTP connection its handler gave up on");
                return;
            }
        }
    }
}

/// Sets what `settings` ask of an accepted socket: TCP_NODELAY.
fn configure(stream: &TcpStream, settings: &Settings, remote: SocketAddr) {
    if settings.tcp_nodelay
        && let Err(e) = stream.set_nodelay(true)
    {
        tracing::debug!(%remote, error = %e, "cannot set TCP_NODELAY");
    }
}

/// Resolves once `activity` has not changed for `timeout` (checked [`IDLE_CHECKS`] times per
/// period); never with no timeout.
async fn idle(activity: &AtomicU64, timeout: Option<Duration>) {
    let Some(timeout) = timeout else {
        return std::future::pending().await;
    };
    let step = (timeout / IDLE_CHECKS).max(Duration::from_millis(1));
    let mut seen = activity.load(Ordering::Relaxed);
    let mut quiet = 0;
    loop {
        tokio::time::sleep(step).await;
        let now = activity.load(Ordering::Relaxed);
        if now == seen {
            quiet += 1;
            if quiet >= IDLE_CHECKS {
                return;
            }
        } else {
            seen = now;
            quiet = 0;
        }
    }
}

/// An accepted socket that counts the reads and writes that moved bytes, for [`idle`].
///
/// Only the task that owns the socket changes the count, so a plain load and store do (no
/// read-modify-write): this stays on the upgraded WebSocket, and costs it next to nothing.
#[derive(Debug)]
struct Watched {
    stream: TcpStream,
    activity: Arc<AtomicU64>,
}

impl Watched {
    fn moved(&self) {
        let count = self.activity.load(Ordering::Relaxed);
        self.activity
            .store(count.wrapping_add(1), Ordering::Relaxed);
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.moved();
        }
        poll
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.stream).poll_write(cx, buf);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            this.moved();
        }
        poll
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            this.moved();
        }
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_and_unworkable_values_are_named() {
        assert!(Settings::default().validate().is_ok());
        let named = |settings: Settings| match settings.validate() {
            Err(ServeError::Invalid { name, .. }) => name,
            Ok(()) => panic!("{settings:?} was accepted"),
        };
        let default = Settings::default();
        assert_eq!(
            named(Settings {
                header_read_timeout: Some(Duration::ZERO),
                ..default
            }),
            "header_read_timeout"
        );
        assert_eq!(
            named(Settings {
                idle_timeout: Some(Duration::ZERO),
                ..default
            }),
            "idle_timeout"
        );
        assert_eq!(
            named(Settings {
                max_pending_connections: 0,
                ..default
            }),
            "max_pending_connections"
        );
        assert_eq!(
            named(Settings {
                max_header_size: 100,
                ..default
            }),
            "max_header_size"
        );
        let disabled = Settings {
            header_read_timeout: None,
            idle_timeout: None,
            ..default
        };
        assert!(disabled.validate().is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn idle_resolves_after_the_timeout_without_activity_and_not_while_bytes_move() {
        let activity = AtomicU64::new(0);
        let timeout = Duration::from_secs(8);
        let start = Instant::now();
        idle(&activity, Some(timeout)).await;
        let waited = start.elapsed();
        assert!(
            waited >= timeout && waited <= timeout + timeout / IDLE_CHECKS,
            "{waited:?}"
        );

        // Bytes every second for 30 s keep it waiting; it resolves a timeout after the last.
        let start = Instant::now();
        let watching = idle(&activity, Some(timeout));
        let mut watching = pin!(watching);
        for _ in 0..30 {
            tokio::select! {
                () = watching.as_mut() => panic!("idle while bytes moved"),
                () = tokio::time::sleep(Duration::from_secs(1)) => {
                    activity.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        watching.await;
        let after_last = start.elapsed() - Duration::from_secs(30);
        assert!(
            after_last >= timeout && after_last <= timeout + timeout / IDLE_CHECKS,
            "{after_last:?}"
        );
    }

    #[tokio::test]
    async fn requests_carry_connect_info() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let app = Router::new().route(
            "/peer",
            axum::routing::get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move {
                peer.to_string()
            }),
        );
        let server = tokio::spawn(serve(listener, app).into_future());
        let mut client = TcpStream::connect(addr).await.expect("connect");
        let local = client.local_addr().expect("the client's address");
        client
            .write_all(b"GET /peer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .expect("send");
        let mut reply = String::new();
        client.read_to_string(&mut reply).await.expect("reply");
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        assert!(reply.ends_with(&local.to_string()), "{reply}");
        server.abort();
    }

    #[tokio::test]
    async fn accepted_sockets_get_tcp_nodelay_unless_turned_off() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        for nodelay in [true, false] {
            let _client = TcpStream::connect(addr).await.expect("connect");
            let (stream, remote) = listener.accept().await.expect("accept");
            assert!(
                !stream.nodelay().expect("TCP_NODELAY"),
                "the kernel's default"
            );
            let settings = Settings {
                tcp_nodelay: nodelay,
                ..Settings::default()
            };
            configure(&stream, &settings, remote);
            assert_eq!(stream.nodelay().expect("TCP_NODELAY"), nodelay);
        }
    }
}
