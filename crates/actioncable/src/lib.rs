//! # actioncable
//!
//! An [ActionCable](https://guides.rubyonrails.org/action_cable_overview.html)-compatible
//! channel server for [axum]. The unmodified `@rails/actioncable` JavaScript consumer connects
//! to it, subscribes to channels written in Rust, performs their actions and receives their
//! broadcasts, exactly as it would against Rails.
//!
//! - [`Connection`] authenticates the WebSocket request (cookies, JWT, anything in the request)
//!   and gives it an [`Identity`], or rejects it. Helpers in [`auth`].
//! - [`Channel`] is what a subscription does: `subscribed`, typed actions, `unsubscribed`, with
//!   [`ChannelContext`] to `transmit`, `stream_from`, `stream_for` and `broadcast`.
//! - [`Cable`] is the server: built with [`Cable::builder`], mounted with one line in a
//!   [`Router`](axum::Router), broadcast to from anywhere through a [`CableHandle`].
//! - [`PubSub`] carries broadcasts between nodes: [`MemoryPubSub`]
//!   in one process, the `actioncable-redis` crate across many (wire-compatible with Rails).
//! - [`serve`] serves the app's router as `axum::serve` does, with limits on connections that
//!   have not upgraded (header-read and idle timeouts, how many at once), TCP_NODELAY and
//!   connect info: what a server on the open internet needs and `axum::serve` leaves out.
//!
//! ## Example
//!
//! ```no_run
//! use actioncable::{async_trait, AnyAction, AllowedOrigins, Cable, Channel, ChannelContext, ChannelError, NoParams};
//! use axum::Router;
//!
//! /// Echoes every action back to its sender.
//! struct EchoChannel;
//!
//! #[async_trait]
//! impl Channel for EchoChannel {
//!     const CLASS: &'static str = "EchoChannel";
//!     type Params = NoParams;
//!     type Action = AnyAction;
//!
//!     async fn subscribed(_: &mut ChannelContext, _: NoParams) -> Result<Self, ChannelError> {
//!         Ok(EchoChannel)
//!     }
//!
//!     async fn perform(&mut self, ctx: &mut ChannelContext, action: AnyAction) -> Result<(), ChannelError> {
//!         ctx.transmit(&action.data)
//!     }
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let cable = Cable::builder()
//!         .channel::<EchoChannel>()
//!         .allowed_origins(AllowedOrigins::same_origin().allow_any_port("http://localhost"))
//!         .build()?;
//!     let app: Router = Router::new().merge(cable.router("/cable"));
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//!     actioncable::serve(listener, app).await?;
//!     Ok(())
//! }
//! ```
//!
//! The wire protocol, the differences from Rails, and the architecture are described in the
//! repository's `docs/` folder (`protocol.md`, `guide.md`, `architecture.md`).
//!
//! ## Stopping
//!
//! [`shutdown_signal`] resolves on SIGINT or SIGTERM; pass it to
//! [`Serve::with_graceful_shutdown`] and call [`CableHandle::shutdown`] there, so that every
//! client is told `server_restart` and reconnects.
//!
//! ## Features
//!
//! | feature | what it adds |
//! |---|---|
//! | `testing` | the `testing` module: channels and connections tested without sockets (Rails' `ActionCable::Channel::TestCase`) |
//!
//! Every type named in the guide is re-exported here at the root; the modules group the rest
//! (`auth`, `stream`, `pubsub` for adapter authors).

mod admin;
pub mod auth;
pub mod channel;
pub mod connection;
pub mod error;
mod handle;
mod hub;
mod metrics;
mod outbox;
#[cfg(feature = "__internals")]
#[doc(hidden)]
pub mod protocol;
#[cfg(not(feature = "__internals"))]
#[allow(unreachable_pub)]
mod protocol;
pub mod pubsub;
mod registry;
mod serve;
mod server;
mod shutdown;
pub mod stream;
mod sync;
#[cfg(feature = "testing")]
pub mod testing;
mod untrusted;

pub use admin::{NodeStats, OutboxStats, StreamStats};
#[doc(inline)]
pub use auth::{CookieKey, JwtVerifier};
#[doc(inline)]
pub use channel::{
    AnyAction, Callbacks, Channel, ChannelContext, CommandInfo, CommandKind, Next, NoParams,
    StreamOptions,
};
#[doc(inline)]
pub use connection::{
    AcceptAll, ConnectRequest, Connection, ConnectionId, ConnectionInfo, ConnectionRef, Identity,
    Reject,
};
#[doc(inline)]
pub use error::{
    AuthError, BoxError, BroadcastError, ChannelError, ConfigError, InvalidAction, PubSubError,
    ServeError,
};
pub use handle::{CableHandle, Readiness};
pub use protocol::DisconnectReason;
#[doc(inline)]
pub use pubsub::{MemoryPubSub, PubSub};
pub use serve::{Serve, serve};
pub use server::{AllowedOrigins, Cable, CableBuilder};
pub use shutdown::shutdown_signal;
#[doc(inline)]
pub use stream::{GlobalId, ToStreamParam};

/// Re-exported so channel and connection impls need no direct dependency.
pub use async_trait::async_trait;

/// The guide's examples are compiled as doctests so the guide cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/guide.md")]
struct GuideDoctests;

/// The testing guide's examples too, when the harness is built.
#[cfg(all(doctest, feature = "testing"))]
#[doc = include_str!("../../../docs/testing.md")]
struct TestingDoctests;

/// The README's example is compiled too.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
