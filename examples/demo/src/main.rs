//! Run with: cargo run -p example-demo
//!
//! The classic Rails chat + notifications demo on actioncable-rs: log in with a name
//! (`POST /login`), chat in rooms over `ChatChannel`, and receive the notifications posted to
//! `POST /notifications` live over `NotificationChannel`. The stock `@rails/actioncable`
//! consumer connects to `/cable` with `?token=` or the login cookie. The web page at `/` does
//! all of that in a browser. Settings come from the environment (see `config.rs`); logs go to
//! stderr (`RUST_LOG`, default `info`).

use actioncable::shutdown_signal;
use anyhow::Context as _;
use example_demo::assets::Assets;
use example_demo::{Config, app, serve};
use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    // Logs go to stderr: stdout carries only the ready line.
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("example-demo: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let config = Config::from_env().context("invalid settings")?;
    if config.using_dev_secret {
        tracing::warn!(
            "SECRET_KEY_BASE is not set: using the built-in DEVELOPMENT secret. Anyone can forge logins; set SECRET_KEY_BASE (>= 32 bytes) outside development."
        );
    }
    for problem in Assets::new(&config.assets).problems() {
        tracing::warn!("{problem}");
    }
    let demo = app(&config)?;
    let addr = SocketAddr::new(config.bind, config.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener
        .local_addr()
        .context("cannot read the bound address")?;
    tracing::info!(database = %config.database, private_rooms = config.private_rooms.len(), "demo ready");
    tracing::info!("open the web page: http://{local}/");
    println!("demo listening on http://{local}");

    serve(listener, demo, shutdown_signal()).await
}
