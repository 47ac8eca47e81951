//! Run with: cargo run -p example-turbo, then open http://127.0.0.1:3000/ in two windows.
//!
//! Settings from the environment:
//! - `SECRET_KEY_BASE`: the secret Turbo's key is derived from (a Rails app's own, to share
//!   signed stream names with it); a development default, with a warning, when unset.
//! - `KEY_GENERATOR_HASH_DIGEST`: `sha256` (Rails 7.0+ defaults, the default here) or `sha1`.
//! - `PORT` (default 3000; 0 picks a free port) and `BIND` (default 127.0.0.1).
//! - `TURBO_ASSETS`: the `js-client` folder whose `node_modules` holds the page's JavaScript.
//! - `RUST_LOG` (default `info`); logs go to stderr, stdout carries only the ready line.

use actioncable_rails::KeyDigest;
use actioncable_rails::turbo::TurboStreams;
use example_turbo::{DEFAULT_ASSETS, Settings, app, asset_problems};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// Used when `SECRET_KEY_BASE` is unset: anyone can sign stream names with it.
const DEVELOPMENT_SECRET: &str =
    "example-turbo development secret_key_base: never use it in production";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let secret = env("SECRET_KEY_BASE").unwrap_or_else(|| {
        tracing::warn!(
            "SECRET_KEY_BASE is not set: using the built-in DEVELOPMENT secret, with which anyone \
             can sign stream names; set SECRET_KEY_BASE outside development"
        );
        DEVELOPMENT_SECRET.to_owned()
    });
    let digest = match env("KEY_GENERATOR_HASH_DIGEST").as_deref() {
        None | Some("sha256") => KeyDigest::Sha256,
        Some("sha1") => KeyDigest::Sha1,
        Some(other) => {
            return Err(
                format!("KEY_GENERATOR_HASH_DIGEST is sha1 or sha256, not {other:?}").into(),
            );
        }
    };
    let assets = PathBuf::from(env("TURBO_ASSETS").unwrap_or_else(|| DEFAULT_ASSETS.to_owned()));
    for problem in asset_problems(&assets) {
        tracing::warn!("{problem}");
    }
    let port: u16 = env("PORT").map_or(Ok(3000), |p| p.parse())?;
    let bind: IpAddr = env("BIND").map_or(Ok(IpAddr::V4(Ipv4Addr::LOCALHOST)), |b| b.parse())?;

    let turbo = TurboStreams::from_secret_key_base(secret, digest)?;
    let (router, handle) = app(Settings { turbo, assets })?;
    let listener = tokio::net::TcpListener::bind(SocketAddr::new(bind, port)).await?;
    println!("turbo listening on http://{}", listener.local_addr()?);
    // Timeouts and a limit for connections that have not upgraded, TCP_NODELAY, connect info;
    // on SIGINT or SIGTERM every client is told `server_restart` before the process exits.
    actioncable::serve(listener, router)
        .with_graceful_shutdown(async move {
            actioncable::shutdown_signal().await;
            handle.shutdown(Duration::from_secs(5)).await;
        })
        .await?;
    Ok(())
}
