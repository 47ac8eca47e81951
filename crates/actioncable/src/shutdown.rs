//! [`shutdown_signal`]: when a server process should stop.
//!
//! Process managers and container orchestrators stop a server with SIGTERM, people with
//! Ctrl-C (SIGINT). A server that only waits for Ctrl-C is killed outright by SIGTERM, and its
//! clients see an abnormal close (1006) instead of `disconnect` with `server_restart` and a
//! prompt reconnect. Every binary in this project stops on both, through this one function.

/// Resolves when the process receives SIGINT (Ctrl-C) or, on Unix, SIGTERM; logs which.
///
/// Pass it to the server's graceful shutdown ([`serve`](crate::serve())'s, or axum's), then
/// shut the cable down so every client is told `server_restart` and reconnects elsewhere:
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
///
/// If a signal cannot be listened for, that is logged and the other one still works.
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => tracing::info!("received SIGINT; shutting down"),
        () = terminate => tracing::info!("received SIGTERM; shutting down"),
    }
}
