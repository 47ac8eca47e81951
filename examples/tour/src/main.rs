//! Serves the tour's cable (see the library docs): `cargo run -p example-tour`, then connect
//! to `ws://127.0.0.1:3000/cable?user=alice`. `PORT` picks the port (0: any free one).

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cable = example_tour::cable_builder().build()?;
    let handle = cable.handle();
    let app = axum::Router::new()
        .merge(cable.router("/cable"))
        // Liveness (the process answers) and readiness (not while shutting down or while the
        // pub/sub adapter is down): docs/operations.md.
        .route("/health", axum::routing::get(|| async { "ok" }))
        .merge(handle.readiness_router("/ready"));
    let port = std::env::var("PORT").unwrap_or_else(|_| "3000".into());
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    println!("tour listening on ws://{}/cable", listener.local_addr()?);
    // Timeouts and a limit for connections that have not upgraded, TCP_NODELAY, connect info.
    actioncable::serve(listener, app)
        .with_graceful_shutdown(async move {
            actioncable::shutdown_signal().await;
            handle.shutdown(std::time::Duration::from_secs(5)).await;
        })
        .await?;
    Ok(())
}
