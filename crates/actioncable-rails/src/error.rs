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
}
