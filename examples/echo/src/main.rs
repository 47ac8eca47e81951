//! The smallest complete cable server: one channel that echoes what it receives.
//!
//! Run with: `cargo run -p example-echo` (then subscribe to `EchoChannel` at ws://127.0.0.1:3000/cable).
use actioncable::AnyAction;
use actioncable::{
    AllowedOrigins, Cable, Channel, ChannelContext, ChannelError, NoParams, async_trait,
};

struct EchoChannel;

#[async_trait]
impl Channel for EchoChannel {
    const CLASS: &'static str = "EchoChannel";
    type Params = NoParams;
    type Action = AnyAction;

    async fn subscribed(_: &mut ChannelContext, _: NoParams) -> Result<Self, ChannelError> {
        Ok(EchoChannel)
    }

    /// `perform("echo", {text: "hi"})` comes back as `{"action":"echo","text":"hi"}`.
    async fn perform(
        &mut self,
        ctx: &mut ChannelContext,
        action: AnyAction,
    ) -> Result<(), ChannelError> {
        ctx.transmit(&action.data)
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter("info,actioncable=debug")
        .init();
    let cable = Cable::builder()
        .channel::<EchoChannel>()
        .allowed_origins(AllowedOrigins::same_origin().allow_any_port("http://localhost"))
        .build()?;
    let handle = cable.handle();
    let app = axum::Router::new()
        .merge(cable.router("/cable"))
        // Liveness (the process answers) and readiness (not while shutting down or while the
        // pub/sub adapter is down): docs/operations.md.
        .route("/health", axum::routing::get(|| async { "ok" }))
        .merge(handle.readiness_router("/ready"));
    let port = std::env::var("PORT").unwrap_or_else(|_| "3000".into());
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    println!(
        "echo cable listening on ws://{}/cable",
        listener.local_addr()?
    );
    // Timeouts and a limit for connections that have not upgraded, TCP_NODELAY, connect info.
    // On SIGINT or SIGTERM every client is told `server_restart` and reconnects.
    actioncable::serve(listener, app)
        .with_graceful_shutdown(async move {
            actioncable::shutdown_signal().await;
            handle.shutdown(std::time::Duration::from_secs(5)).await;
        })
        .await?;
    Ok(())
}
