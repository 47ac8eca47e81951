//! The demo app as a library, so the binary stays thin and tests can run the real router
//! in-process.
//!
//! Modelled on the classic Rails chat + notifications app:
//!
//! - [`config`]: settings from the environment;
//! - [`db`]: SQLite storage (messages, notifications, session versions), with retention;
//! - [`auth`]: login tokens, the signed `user` cookie, sessions, and the cable's `Connection`;
//! - [`channels`]: `ChatChannel` and `NotificationChannel`;
//! - [`http`]: the JSON API, which broadcasts to the cable through a `CableHandle`;
//! - [`limits`]: the rate limits' token buckets;
//! - [`assets`]: the web page (`js-client/public`), the consumer's ES module, and the security
//!   headers every answer carries.
//!
//! [`app`] wires them into one axum router with the cable mounted at `/cable`, its
//! Server-Sent Events transport at `/events` (the same credentials; the channel identifier in
//! the `identifier` query parameter, for a browser's `EventSource`) and the page at `/`;
//! [`serve`] runs it with graceful shutdown.

pub mod assets;
pub mod auth;
pub mod channels;
pub mod config;
pub mod db;
pub mod http;
pub mod limits;
pub mod validate;

use actioncable::{AllowedOrigins, Cable, CableBuilder, CableHandle};
use anyhow::Context as _;
use axum::Router;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

pub use config::Config;

/// How long the cable gets to say goodbye to its clients on shutdown.
pub const CABLE_SHUTDOWN_DEADLINE: Duration = Duration::from_secs(5);
/// How long plain HTTP requests get to finish after the cable has shut down.
pub const HTTP_SHUTDOWN_DEADLINE: Duration = Duration::from_secs(5);

/// The assembled app: the router (HTTP API, `/cable`, `/events`) and the cable's handle.
#[derive(Debug)]
pub struct Demo {
    /// Serve this (with connect info, see [`serve`]).
    pub router: Router,
    /// Broadcast or shut down through this.
    pub handle: CableHandle,
}

/// Builds the app: opens the database, builds the cable, mounts everything.
///
/// Must be called inside a Tokio runtime (the cable starts its ping timer).
///
/// # Errors
/// When the database cannot be opened or the cable cannot be built.
pub fn app(config: &Config) -> anyhow::Result<Demo> {
    let db = db::Db::open_with(&config.database, config.retention)
        .with_context(|| format!("cannot open the database {:?}", config.database))?;
    let auth = Arc::new(
        auth::Auth::new(config.secret_key_base(), db.clone())?
            .with_lifetime(config.session_lifetime),
    );
    let private_rooms = Arc::new(config.private_rooms.clone());

    let state = channels::DemoState::new(
        db.clone(),
        private_rooms.clone(),
        config.limits.chat_messages_per_minute,
    );
    let cable = cable_builder(state, auth.clone())
        .allowed_origins(allowed_origins(config))
        .ping_interval(config.ping_interval)
        .pubsub(config.adapter.pubsub())
        .history(config.history)
        .metrics(config.metrics)
        .presence_grace(config.presence_grace)
        .presence_ttl(config.presence_ttl)
        .build()
        .context("cannot build the cable")?;
    let handle = cable.handle();

    let http_state = http::AppState {
        db,
        auth,
        handle: handle.clone(),
        private_rooms,
        login_limit: Arc::new(limits::RateLimiter::per_minute(
            config.limits.logins_per_minute,
        )),
        notify_limit: Arc::new(limits::RateLimiter::per_minute(
            config.limits.notifications_per_minute,
        )),
    };
    // `/ready`: not ready while shutting down or while Redis is down (`/health` is liveness).
    let mut routes = http::routes(http_state)
        .merge(cable.router("/cable"))
        // Listen-only clients (`EventSource`): `?identifier=<channel params JSON>` plus the
        // same `?token=` or cookie as `/cable`; 401 without them.
        .merge(cable.sse_router("/events"))
        .merge(cable.handle().readiness_router("/ready"))
        .merge(cable.metrics_router("/metrics"));
    // The node's counts, top streams and slowest queues, for operators holding `ADMIN_KEY`.
    if let Some(key) = config.admin_key() {
        routes = routes.merge(cable.handle().stats_router("/admin/stats", key));
    }
    let router = assets::Assets::new(&config.assets).serve(routes);
    Ok(Demo {
        router: assets::security_headers(router),
        handle,
    })
}

/// The cable's application part: the connection (token or signed cookie) and both channels
/// over `state`. [`app`] adds the deployment settings (origins, ping interval, pub/sub adapter);
/// the channel tests build an `actioncable::testing::TestCable` from it, so they exercise
/// exactly what is served.
pub fn cable_builder(
    state: channels::DemoState,
    auth: Arc<auth::Auth>,
) -> CableBuilder<channels::DemoState> {
    Cable::builder_with_state(state)
        .connection(auth::DemoConnection::new(auth))
        .channel::<channels::ChatChannel>()
        .channel::<channels::NotificationChannel>()
}

/// The same origin as the `Host` header, plus `ALLOWED_ORIGINS` when set, else the
/// development default: `http://localhost` and `http://127.0.0.1` on any port.
fn allowed_origins(config: &Config) -> AllowedOrigins {
    match &config.allowed_origins {
        Some(origins) => origins.clone(),
        None => AllowedOrigins::same_origin()
            .allow_any_port("http://localhost")
            .allow_any_port("http://127.0.0.1"),
    }
}

/// Serves `demo` on `listener` with `actioncable::serve` (timeouts and a limit for connections
/// that have not upgraded, TCP_NODELAY, connect info for the logs) until `shutdown` resolves,
/// then shuts the cable down (every client gets `disconnect` `server_restart` with
/// `reconnect: true`) before the HTTP server finishes. The HTTP server's graceful shutdown does
/// not track upgraded WebSockets; the cable's own shutdown does.
///
/// # Errors
/// When the server fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    demo: Demo,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let handle = demo.handle;
    let (drained_tx, drained_rx) = tokio::sync::oneshot::channel::<()>();
    let server = actioncable::serve(listener, demo.router).with_graceful_shutdown(async move {
        shutdown.await;
        tracing::info!("shutting down: closing cable connections");
        if handle.shutdown(CABLE_SHUTDOWN_DEADLINE).await {
            tracing::info!("cable closed");
        } else {
            tracing::warn!("cable connections did not all close in time");
        }
        let _ = drained_tx.send(());
    });
    // Once the cable is down, HTTP requests still in flight get a bounded time to finish.
    let deadline = async {
        if drained_rx.await.is_ok() {
            tokio::time::sleep(HTTP_SHUTDOWN_DEADLINE).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        result = server => result.context("HTTP server failed")?,
        () = deadline => tracing::warn!("HTTP requests did not finish in time; stopping anyway"),
    }
    tracing::info!("stopped");
    Ok(())
}
