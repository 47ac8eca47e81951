//! The crate's one error type.
//!
//! Its messages name what failed and why, never the secret, the key or the message itself: a
//! cookie or a signed name is a credential, and the error may end up in a log.

/// Why a Rails message (a cookie, a session, a signed stream name) was not accepted, or why a
/// key could not be made.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RailsError {
    /// The message is not in the `data--digest` (signed) or `data--iv--tag` (encrypted) shape,
    /// or a part of it is not strict Base64.
    #[error("the message is not in Rails' format")]
    Malformed,
    /// The signature or the authentication tag does not match: tampered with, or made with
    /// another secret.
    #[error("the message's signature does not match (tampered with, or another secret)")]
    InvalidSignature,
    /// The payload is not JSON: made with `cookies_serializer = :marshal` (or `:hybrid`
    /// before the cookie was rewritten). Ruby's Marshal format is not read, on purpose: loading
    /// it means running whatever classes it names.
    #[error(
        "the payload is Ruby Marshal data (cookies_serializer :marshal or :hybrid), which is \
         not read; switch the Rails app to `cookies_serializer = :json`"
    )]
    MarshalPayload,
    /// The payload is not the JSON value expected.
    #[error("the payload is not the JSON expected: {0}")]
    Payload(String),
    /// The message was made for another purpose (another cookie's name, say).
    #[error("the message was made for another purpose")]
    WrongPurpose,
    /// The message's expiry has passed.
    #[error("the message has expired")]
    Expired,
    /// A secret or a key that cannot be used (empty, or the wrong length for the cipher).
    #[error("invalid key: {0}")]
    InvalidKey(&'static str),
    /// An encrypted cookie in the AES-256-CBC format (`data--digest`, the data holding
    /// `ciphertext--iv`): written by Rails before 5.2, or by an app that never turned on
    /// `use_authenticated_cookie_encryption`. Not read; only AES-256-GCM is.
    #[error(
        "the cookie is encrypted with AES-256-CBC (Rails before 5.2, or \
         use_authenticated_cookie_encryption = false), which is not read; only AES-256-GCM is"
    )]
    LegacyCipher,
    /// A cookie that would be over 4096 bytes (name and value), which browsers drop (Rails'
    /// `ActionDispatch::Cookies::CookieOverflow`).
    #[error("the cookie would be {0} bytes, over the 4096 browsers keep")]
    CookieOverflow(usize),
}

impl RailsError {
    /// A short name for the kind of failure, safe to log: unlike `Payload`'s message, it
    /// never quotes any part of the value.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            RailsError::Malformed => "malformed",
            RailsError::InvalidSignature => "invalid signature",
            RailsError::MarshalPayload => "marshal payload",
            RailsError::Payload(_) => "unexpected payload",
            RailsError::WrongPurpose => "wrong purpose",
            RailsError::Expired => "expired",
            RailsError::InvalidKey(_) => "invalid key",
            RailsError::LegacyCipher => "AES-256-CBC cookie",
            RailsError::CookieOverflow(_) => "cookie overflow",
        }
    }
}

/// `?` on a [`RailsError`] in `Connection::connect` rejects the connection and logs the kind of
/// failure at debug level (tampered with, expired, a Marshal cookie…), never the cookie.
/// Turn on `RUST_LOG=actioncable_rails=debug` when every connection is refused.
impl From<RailsError> for actioncable::Reject {
    fn from(error: RailsError) -> Self {
        tracing::debug!(
            kind = error.kind(),
            "rejecting the connection: its Rails credentials did not verify"
        );
        actioncable::Reject::Unauthorized
    }
}
