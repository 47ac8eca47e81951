//! The server: [`Cable`] (built once with [`CableBuilder`]), its axum route, and what runs
//! for each connection.
//!
//! - `config.rs`: the settings, their defaults and validation; `builder.rs`: [`CableBuilder`];
//!   `cable.rs`: [`Cable`], what its sessions share, and the beat; `identifiers.rs`: one parse
//!   per identifier string in use, shared by its subscriptions;
//! - `handler.rs`: the axum side of an upgrade (origin check, admission, `Connection::connect`),
//!   with `origin.rs` ([`AllowedOrigins`]);
//! - `session.rs`: one task per WebSocket, moving frames between the socket and
//! - `dispatch.rs`: what a connection's commands and control events do, without a socket
//!   (shared with the `testing` harness and the fuzz targets);
//! - `sse.rs`: the Server-Sent Events transport, a listen-only connection on the same
//!   dispatcher, whose frames are written as events into an HTTP response.
//!
//! ```no_run
//! use actioncable::{AcceptAll, Cable};
//! use axum::Router;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let cable = Cable::builder().connection(AcceptAll).build()?;
//! let handle = cable.handle();
//! let app: Router = Router::new().merge(cable.router("/cable"));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! let broadcaster = handle.clone();
//! tokio::spawn(async move { broadcaster.broadcast("news", &"hello").await });
//! actioncable::serve(listener, app)
//!     .with_graceful_shutdown(async move {
//!         actioncable::shutdown_signal().await;
//!         handle.shutdown(std::time::Duration::from_secs(5)).await;
//!     })
//!     .await?;
//! # Ok(()) }
//! ```

mod builder;
mod cable;
mod config;
pub(crate) mod dispatch;
mod handler;
mod identifiers;
mod origin;
mod resume;
mod session;
mod sse;

pub use builder::CableBuilder;
pub use cable::Cable;
pub(crate) use cable::Shared;
pub use origin::AllowedOrigins;
