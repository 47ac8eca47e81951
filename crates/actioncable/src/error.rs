//! Error types.
//!
//! Framework operations have one `thiserror` enum each ([`BroadcastError`], [`PubSubError`],
//! [`ConfigError`], [`ServeError`]). User code in channels returns [`ChannelError`], which any
//! error converts into with `?`, the way `anyhow::Error` does; it also carries the deliberate
//! outcome "reject this subscription".

use std::fmt;

/// A boxed error, what user hooks may return.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The error of a channel callback or action.
///
/// Returned from `subscribed` it rejects the subscription (`reject_subscription` on the wire);
/// returned from an action it is logged with the channel, action and identifier, and the
/// connection and its other subscriptions carry on, as in Rails.
///
/// Any `std::error::Error` converts into it, so `?` works in channel code:
///
/// ```
/// use actioncable::ChannelError;
/// fn parse(n: &str) -> Result<u32, ChannelError> {
///     Ok(n.parse::<u32>()?)
/// }
/// assert!(parse("x").is_err());
/// assert!(ChannelError::reject().is_rejection());
/// ```
pub struct ChannelError {
    kind: Kind,
}

enum Kind {
    Rejected(Option<String>),
    Failed(BoxError),
}

impl ChannelError {
    /// Rejects the subscription on purpose (Rails' `reject`). Logged at debug level only.
    pub fn reject() -> ChannelError {
        ChannelError {
            kind: Kind::Rejected(None),
        }
    }

    /// Rejects the subscription because of something the client sent (bad params, say).
    /// Logged at warning level with `reason`, never as a server error.
    pub fn reject_because(reason: impl fmt::Display) -> ChannelError {
        ChannelError {
            kind: Kind::Rejected(Some(reason.to_string())),
        }
    }

    /// The reason given to [`reject_because`](Self::reject_because).
    pub fn rejection_reason(&self) -> Option<&str> {
        match &self.kind {
            Kind::Rejected(reason) => reason.as_deref(),
            Kind::Failed(_) => None,
        }
    }

    /// Wraps any error.
    pub fn new(error: impl Into<BoxError>) -> ChannelError {
        ChannelError {
            kind: Kind::Failed(error.into()),
        }
    }

    /// An error with just a message.
    pub fn msg(message: impl fmt::Display) -> ChannelError {
        ChannelError::new(message.to_string())
    }

    /// Whether this is a deliberate rejection rather than a failure.
    pub fn is_rejection(&self) -> bool {
        matches!(self.kind, Kind::Rejected(_))
    }

    /// The underlying error, unless this is a rejection.
    pub fn source_error(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        match &self.kind {
            Kind::Rejected(_) => None,
            Kind::Failed(e) => Some(e.as_ref()),
        }
    }

    /// The [`InvalidAction`] this error is, when the client's data did not fit the channel's
    /// actions (what a `rescue` checks to answer the client).
    pub fn invalid_action(&self) -> Option<&InvalidAction> {
        self.source_error()?.downcast_ref()
    }
}

/// Data a client sent that cannot be one of the channel's actions: an unknown action, a field
/// missing or of the wrong type (`"3"` where a number is expected), `data` that is not a JSON
/// object. It is the client's mistake, not the server's: the channel's
/// [`rescue`](crate::Channel::rescue) receives it (as a [`ChannelError`];
/// [`ChannelError::invalid_action`] finds it) and may answer the client; if `rescue` returns
/// it, it is logged at warning level with the channel, the action and serde's explanation, and
/// the subscription carries on.
///
/// ```
/// use actioncable::{ChannelContext, ChannelError};
/// # async fn rescue(ctx: &mut ChannelContext, action: &str, error: ChannelError) -> Result<(), ChannelError> {
/// if let Some(invalid) = error.invalid_action() {
///     // e.g. "invalid type: string \"lots\", expected u32"
///     return ctx.transmit(&serde_json::json!({ "error": invalid.reason(), "action": action }));
/// }
/// Err(error)
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid data for action `{action}`: {reason}")]
pub struct InvalidAction {
    action: String,
    reason: String,
}

impl InvalidAction {
    pub(crate) fn new(action: impl Into<String>, reason: impl fmt::Display) -> InvalidAction {
        InvalidAction {
            action: action.into(),
            reason: reason.to_string(),
        }
    }

    /// The action the client named (`receive` when it named none).
    pub fn action(&self) -> &str {
        &self.action
    }

    /// What does not fit, in serde's words (e.g. ``unknown variant `nope`, expected one of
    /// `speak`, `typing` ``).
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for ChannelError {
    fn from(error: E) -> Self {
        ChannelError::new(error)
    }
}

impl fmt::Display for ChannelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Rejected(None) => f.write_str("subscription rejected"),
            Kind::Rejected(Some(reason)) => write!(f, "subscription rejected: {reason}"),
            Kind::Failed(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl fmt::Debug for ChannelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Rejected(reason) => f
                .debug_tuple("ChannelError::Rejected")
                .field(reason)
                .finish(),
            Kind::Failed(e) => f.debug_tuple("ChannelError").field(e).finish(),
        }
    }
}

/// `ChannelError` cannot implement `std::error::Error` itself (any error converts into it),
/// so `?` into a boxed error goes through this wrapper, as with `anyhow`.
struct BoxedChannelError(ChannelError);

impl fmt::Display for BoxedChannelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for BoxedChannelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl std::error::Error for BoxedChannelError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.0.kind {
            Kind::Failed(e) => Some(e.as_ref()),
            Kind::Rejected(_) => None,
        }
    }
}

impl From<ChannelError> for BoxError {
    fn from(error: ChannelError) -> Self {
        Box::new(BoxedChannelError(error))
    }
}

impl From<ChannelError> for Box<dyn std::error::Error + 'static> {
    fn from(error: ChannelError) -> Self {
        Box::new(BoxedChannelError(error))
    }
}

/// A pub/sub adapter failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PubSubError {
    /// The backend cannot be reached right now (e.g. Redis is down).
    #[error("pub/sub backend unavailable: {0}")]
    Unavailable(String),
    /// The adapter was shut down.
    #[error("pub/sub adapter is shut down")]
    Closed,
    /// Any other backend error.
    #[error("pub/sub backend error: {0}")]
    Backend(#[source] BoxError),
    /// The adapter cannot do what was asked (e.g. keep stream history).
    #[error("pub/sub adapter unsupported: {0}")]
    Unsupported(String),
}

/// A broadcast was not accepted. Nothing was delivered to anyone.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BroadcastError {
    /// The message could not be serialized to JSON.
    #[error("broadcast message is not serializable: {0}")]
    Encode(#[from] serde_json::Error),
    /// The pub/sub adapter did not take the message.
    #[error(transparent)]
    PubSub(#[from] PubSubError),
}

/// The server was configured wrongly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Two channels were registered under the same class name.
    #[error("channel {0:?} is registered twice")]
    DuplicateChannel(&'static str),
    /// A setting has a value that cannot work.
    #[error("invalid setting `{name}`: {reason}")]
    Invalid {
        /// The setting.
        name: &'static str,
        /// Why it cannot work.
        reason: String,
    },
    /// The pub/sub adapter failed to start.
    #[error("pub/sub adapter failed to start: {0}")]
    PubSub(#[from] PubSubError),
}

/// Serving a router with [`serve`](crate::serve()) could not start. Once it runs it does not
/// fail: a connection that errs is closed and logged, and accept errors (such as running out
/// of file descriptors) are retried.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// A setting has a value that cannot work.
    #[error("invalid setting `{name}`: {reason}")]
    Invalid {
        /// The setting.
        name: &'static str,
        /// Why it cannot work.
        reason: String,
    },
}

/// Authentication helpers failed (bad token, bad key, tampered cookie).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No credential was presented.
    #[error("no credentials")]
    Missing,
    /// The JWT is invalid: bad signature, expired, wrong algorithm, malformed.
    #[error("invalid token: {0}")]
    InvalidToken(#[from] jsonwebtoken::errors::Error),
    /// A key or secret is unusable.
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// Claims given to `JwtVerifier::sign` that verification would refuse.
    #[error("claims that would never verify: {0}")]
    InvalidClaims(String),
}

impl AuthError {
    /// Whether the credential was good but has expired (a JWT past its `exp`).
    pub fn is_expired(&self) -> bool {
        matches!(self, AuthError::InvalidToken(e)
            if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::ExpiredSignature))
    }
}
