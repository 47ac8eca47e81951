//! # actioncable-server
//!
//! A cable server for a Rails app, with no Rust to write: point the app's
//! `config.action_cable.url` here, give it the app's `SECRET_KEY_BASE` and Redis, and the stock
//! `@rails/actioncable` consumer (and Turbo's `turbo_stream_from`) connects here instead of to
//! Rails. Configured by environment variables, or the same settings as flags (`--help`).
//!
//! - identification ([`identify`]): the app's encrypted cookie, a key of its cookie-store
//!   session, an AnyCable JWT in `jid`, or none;
//! - channels: `Turbo::StreamsChannel` (Turbo's signed stream names) and AnyCable's `$pubsub`
//!   (signed stream names, or plain ones with public streams);
//! - broadcasts: through Redis in Rails' own format (`ActionCable.server.broadcast` and
//!   `Turbo::StreamsChannel.broadcast_*` in the app reach the clients here), and
//!   `POST /_broadcast` in AnyCable's format ([`broadcast`]);
//! - `GET /health`, logs through `tracing` (`RUST_LOG`, default `info`), and a graceful stop
//!   on SIGTERM.
//!
//! The settings are in [`settings`]; the crate's README has the table, and `docs/rails.md` moves
//! a Rails app over step by step. Exit status: 0 after a clean stop, 2 for settings that are
//! wrong (with a message naming them), 1 when serving fails.

mod app;
mod broadcast;
mod identify;
mod settings;

use clap::Parser as _;
use std::io::IsTerminal as _;
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
    let args = match settings::Args::try_parse() {
        Ok(args) => args,
        Err(e) => return settings::parse_failure(&e),
    };
    let settings = match settings::Settings::new(&args) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("actioncable-server: invalid settings: {e:#}");
            return ExitCode::from(2);
        }
    };
    drop(args);
    match app::run(settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("actioncable-server: {e:#}");
            ExitCode::FAILURE
        }
    }
}
