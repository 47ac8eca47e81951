//! Authenticating the WebSocket request: the [`Connection`] trait (Rails'
//! `ApplicationCable::Connection`).
//!
//! `connect` runs once per WebSocket upgrade, sees the request ([`ConnectRequest`]: headers,
//! cookies, query params, remote address) and answers with the connection's [`Identity`] (Rails'
//! `identified_by`) or [`Reject`]. A rejected client still gets its WebSocket, then
//! `{"type":"disconnect","reason":"unauthorized","reconnect":false}` and a close with code 1000,
//! exactly as Rails does it, so the stock consumer stops retrying; an expired credential says
//! `token_expired` instead, as AnyCable does, so that its client refreshes the token.
//!
//! A credential that expires later ends the connection then: an [`Identity`] given an
//! [`expiry`](Identity::with_expiry) (the JWT helpers read it from `exp`) is sent
//! `{"type":"disconnect","reason":"token_expired","reconnect":true}` at that moment and closed,
//! so no socket outlives the credential that opened it.
//!
//! ```
//! use actioncable::{async_trait, ConnectRequest, Connection, Identity, Reject};
//!
//! struct UserFromQuery;
//!
//! #[async_trait]
//! impl Connection for UserFromQuery {
//!     async fn connect(&self, req: &ConnectRequest) -> Result<Identity, Reject> {
//!         let user = req.query("user").ok_or(Reject::Unauthorized)?;
//!         Ok(Identity::new("current_user", user))
//!     }
//! }
//! ```

mod identity;
mod live;
mod request;

pub use identity::Identity;
pub use live::{ConnectionId, ConnectionInfo, ConnectionRef};
pub use request::ConnectRequest;

use crate::error::AuthError;
use crate::protocol::DisconnectReason;
use async_trait::async_trait;
use std::fmt;

/// Authenticates WebSocket requests. One value serves every connection.
#[async_trait]
pub trait Connection: Send + Sync + 'static {
    /// Decides who is connecting, or rejects the connection.
    async fn connect(&self, request: &ConnectRequest) -> Result<Identity, Reject>;

    /// Runs once the connection has closed, after every subscription's `unsubscribed`.
    async fn disconnect(&self, identity: &Identity) {
        let _ = identity;
    }

    /// Runs for every open connection at every beat, right after its `ping` is queued (Rails'
    /// `Connection#beat`). Keep it quick — it runs for every connection in turn; spawn a task
    /// for anything that waits. Use it to refresh presence, say, or to
    /// [`transmit`](ConnectionRef::transmit) connection-level frames.
    fn beat(&self, connection: &ConnectionRef) {
        let _ = connection;
    }
}

/// Why `connect` refuses a connection; the client is sent `disconnect` with this reason and
/// `reconnect: false`, then the socket closes.
///
/// `?` on an [`AuthError`] gives `TokenExpired` for an expired token and `Unauthorized` for
/// anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Reject {
    /// Not allowed in (Rails' `reject_unauthorized_connection`): reason `unauthorized`.
    #[default]
    Unauthorized,
    /// The credential has expired: reason `token_expired` (AnyCable's), which its client
    /// answers by refreshing the token and connecting again.
    TokenExpired,
}

impl Reject {
    pub(crate) fn reason(self) -> DisconnectReason {
        match self {
            Reject::Unauthorized => DisconnectReason::Unauthorized,
            Reject::TokenExpired => DisconnectReason::TokenExpired,
        }
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reject::Unauthorized => f.write_str("connection rejected as unauthorized"),
            Reject::TokenExpired => f.write_str("connection rejected: its token has expired"),
        }
    }
}

impl std::error::Error for Reject {}

/// `?` on an [`AuthError`] in `connect` rejects the connection and logs why at debug level:
/// the kind of failure (an expired token, a bad signature, a missing claim…), never the
/// credential itself. Turn on `RUST_LOG=actioncable=debug` when every connection is refused
/// and the cause is not obvious.
impl From<AuthError> for Reject {
    fn from(error: AuthError) -> Self {
        tracing::debug!(%error, "rejecting the connection: its credentials did not verify");
        if error.is_expired() {
            Reject::TokenExpired
        } else {
            Reject::Unauthorized
        }
    }
}

/// Accepts every connection with an anonymous identity (what the benchmark server uses).
#[derive(Debug, Clone, Copy, Default)]
pub struct AcceptAll;

#[async_trait]
impl Connection for AcceptAll {
    async fn connect(&self, _: &ConnectRequest) -> Result<Identity, Reject> {
        Ok(Identity::anonymous())
    }
}
