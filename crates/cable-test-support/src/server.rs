//! Servers on free loopback ports: a cable, any axum router, or an app's own serve function.

use crate::client::{CableClient, Connect};
use crate::logs::init_tracing;
use crate::timing::{SHUTDOWN_WAIT, WAIT, within_for};
use actioncable::{CableBuilder, CableHandle, Serve, ServeError};
use axum::Router;
use std::fmt::Display;
use std::future::{Future, IntoFuture as _};
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Resolves when the test asks a served app to stop ([`TestServer::shutdown`]); what an app's
/// serve function takes as its graceful-shutdown signal.
pub type ShutdownSignal = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A cable served by [`spawn_cable`]; `handle` broadcasts, counts and shuts it down.
pub type CableServer = TestServer<CableHandle>;

/// An app served on `127.0.0.1:<free port>` by a task of the test's runtime, with `handle`
/// (whatever the app hands out to its tests; `()` for a plain router).
///
/// [`shutdown`](Self::shutdown) stops it gracefully and checks that it stopped cleanly.
/// Dropping it instead stops accepting connections at once (sockets already open keep their
/// tasks until the runtime ends).
#[derive(Debug)]
pub struct TestServer<H = ()> {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The app's handle.
    pub handle: H,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), String>>,
}

impl<H> Drop for TestServer<H> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestServer {
    /// Serves `router` with `actioncable::serve` (its defaults) until
    /// [`shutdown`](Self::shutdown).
    pub async fn serve(router: Router) -> TestServer {
        TestServer::serve_with(router, |serve| serve).await
    }

    /// As [`serve`](Self::serve), with `actioncable::serve`'s settings changed by `settings`
    /// (shorter timeouts, a lower limit…).
    pub async fn serve_with(router: Router, settings: impl FnOnce(Serve) -> Serve) -> TestServer {
        TestServer::start((), |listener, stop| {
            settings(actioncable::serve(listener, router))
                .with_graceful_shutdown(stop)
                .into_future()
        })
        .await
    }
}

impl<H> TestServer<H> {
    /// Binds a free loopback port and runs `serve(listener, shutdown_signal)` on it, for an app
    /// with a serve function of its own (the one under test). `serve` returns when the app has
    /// stopped; an `Err` fails [`shutdown`](Self::shutdown).
    pub async fn start<F, Fut, E>(handle: H, serve: F) -> TestServer<H>
    where
        F: FnOnce(TcpListener, ShutdownSignal) -> Fut,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Display,
    {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        TestServer::start_on(listener, handle, serve)
    }

    /// As [`start`](Self::start), on `listener`: e.g. the address of a server that was
    /// stopped, for a test of clients that reconnect to a restarted server.
    pub fn start_on<F, Fut, E>(listener: TcpListener, handle: H, serve: F) -> TestServer<H>
    where
        F: FnOnce(TcpListener, ShutdownSignal) -> Fut,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Display,
    {
        init_tracing();
        let addr = listener.local_addr().expect("the bound address");
        let (stop, stopped) = oneshot::channel::<()>();
        let signal: ShutdownSignal = Box::pin(async move {
            let _ = stopped.await;
        });
        let served = serve(listener, signal);
        let task = tokio::spawn(async move { served.await.map_err(|e| e.to_string()) });
        TestServer {
            addr,
            handle,
            stop: Some(stop),
            task,
        }
    }

    /// `ws://<addr><path_and_query>`
    pub fn url(&self, path_and_query: &str) -> String {
        format!("ws://{}{}", self.addr, path_and_query)
    }

    /// The `Origin` that is same-origin with the `Host` our clients send.
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Connects like the stock consumer (both protocols, same-origin `Origin`) to `/cable`,
    /// and checks the welcome.
    pub async fn client(&self) -> CableClient {
        self.client_at("/cable").await
    }

    /// As [`client`](Self::client), with a path and query, e.g. `/cable?token=…`.
    pub async fn client_at(&self, path_and_query: &str) -> CableClient {
        CableClient::welcomed(self.addr, Connect::new().path(path_and_query)).await
    }

    /// A welcomed client of user `user` (`/cable?user=<user>`, the fixture connections' way of
    /// naming the user).
    pub async fn user(&self, user: &str) -> CableClient {
        self.client_at(&format!("/cable?user={user}")).await
    }

    /// Triggers the graceful shutdown and waits (bounded by [`SHUTDOWN_WAIT`]) for the app to
    /// stop; panics if it failed or panicked.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let result = within_for(SHUTDOWN_WAIT, "the server's shutdown", &mut self.task)
            .await
            .expect("the server task panicked");
        if let Err(e) = result {
            panic!("the server failed: {e}");
        }
    }
}

/// `actioncable::serve` on `listener` (TCP_NODELAY, connect info, the connection limits),
/// stopping on `stop`: what every binary of the workspace serves with.
async fn serve_router(
    listener: TcpListener,
    router: Router,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    actioncable::serve(listener, router)
        .with_graceful_shutdown(stop)
        .await
}

/// The operator key of [`spawn_cable`]'s stats route (`GET /admin/stats`).
pub const ADMIN_KEY: &str = "test-operator-key-0123456789abcdef";

/// Serves `builder`'s cable at `/cable` (and its event streams at `/events`) on a free
/// loopback port. Its graceful
/// [`shutdown`](TestServer::shutdown) shuts the cable down first (every client gets
/// `server_restart`, bounded by [`WAIT`]), then stops serving.
pub async fn spawn_cable<S: Send + Sync + 'static>(builder: CableBuilder<S>) -> CableServer {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    serve_cable(listener, builder)
}

/// [`spawn_cable`] on `addr`, which must be free: the same port as a cable that was shut
/// down, so that its clients reconnect to a restarted server. Binding is retried for a while
/// (the old listener's port may take a moment to be free).
pub async fn spawn_cable_at<S: Send + Sync + 'static>(
    addr: SocketAddr,
    builder: CableBuilder<S>,
) -> CableServer {
    let deadline = tokio::time::Instant::now() + WAIT;
    let listener = loop {
        match TcpListener::bind(addr).await {
            Ok(listener) => break listener,
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::debug!(%addr, error = %e, "port not free yet");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("cannot bind {addr} again within {WAIT:?}: {e}"),
        }
    };
    serve_cable(listener, builder)
}

fn serve_cable<S: Send + Sync + 'static>(
    listener: TcpListener,
    builder: CableBuilder<S>,
) -> CableServer {
    init_tracing();
    let cable = builder.build().expect("the test cable builds");
    let handle = cable.handle();
    let router: Router = cable
        .router("/cable")
        .merge(cable.sse_router("/events"))
        .merge(handle.readiness_router("/ready"))
        .merge(handle.stats_router("/admin/stats", ADMIN_KEY));
    let cable_handle = handle.clone();
    TestServer::start_on(listener, handle, |listener, stop| {
        serve_router(listener, router, async move {
            stop.await;
            cable_handle.shutdown(WAIT).await;
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::http_request;
    use actioncable::Cable;
    use axum::routing::get;

    #[tokio::test]
    async fn a_served_router_answers_and_stops_gracefully() {
        let server = TestServer::serve(Router::new().route("/hi", get(|| async { "hello" }))).await;
        let addr = server.addr;
        let reply = http_request(addr, "GET", "/hi", &[], None).await;
        assert_eq!((reply.status, reply.body_text()), (200, "hello"));
        server.shutdown().await;
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "still listening after the shutdown"
        );
    }

    #[tokio::test]
    async fn a_cable_shutdown_tells_its_clients_to_reconnect() {
        let server = spawn_cable(Cable::builder()).await;
        let addr = server.addr;
        let mut client = server.client().await;
        let stopping = tokio::spawn(server.shutdown());
        client.expect_disconnect("server_restart", true).await;
        within_for(SHUTDOWN_WAIT, "the shutdown", stopping)
            .await
            .expect("the shutdown panicked");
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "still listening after the shutdown"
        );
    }
}
