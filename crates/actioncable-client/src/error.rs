//! The crate's one error type.

use std::error::Error as StdError;

/// What can go wrong, from building a consumer to reading a message.
///
/// The consumer itself never fails on what a server sends: a frame it cannot read is dropped,
/// a connection that fails is retried. Errors reach the caller where the caller asked for
/// something (a URL, a subscription, a `perform`), as the reason a connection attempt failed
/// ([`DisconnectReason::Failed`](crate::DisconnectReason::Failed)), and as
/// [`Event::Undecodable`](crate::Event::Undecodable) for a message that is not the
/// subscription's type.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The URL is not a `ws://` URL with a host. (`wss://` needs TLS, which this crate does not
    /// build yet.)
    #[error("invalid cable URL {url:?}: {why}")]
    Url {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A header name or value (`header`, `cookie`, `origin`, a subprotocol) that HTTP cannot
    /// carry.
    #[error("invalid header {name:?}")]
    Header {
        /// The header's name.
        name: String,
    },
    /// Subscription params that are neither a channel name (a string) nor a JSON object, or
    /// `perform` data that is not a JSON object.
    #[error("{what} must be a JSON object, not {found}")]
    NotAnObject {
        /// What was given: `"params"` or `"data"`.
        what: &'static str,
        /// What it was instead.
        found: &'static str,
    },
    /// Params or data that do not serialize to JSON.
    #[error("cannot serialize {what} as JSON")]
    Serialize {
        /// `"params"` or `"data"`.
        what: &'static str,
        /// Serde's explanation.
        #[source]
        source: serde_json::Error,
    },
    /// A message that does not deserialize into the subscription's type. The message is
    /// skipped; the subscription goes on.
    #[error(
        "message does not deserialize into the subscription's type: {source}; message: {message}"
    )]
    Decode {
        /// The message, as JSON text.
        message: String,
        /// Serde's explanation.
        #[source]
        source: serde_json::Error,
    },
    /// The cable is not connected at the moment: the command was not sent (the stock
    /// consumer's `send` returns `false` then, and drops the command too).
    #[error("the cable is not connected")]
    NotConnected,
    /// The consumer stopped for good: [`Consumer::disconnect`](crate::Consumer::disconnect),
    /// or the server said not to reconnect.
    #[error("the consumer is closed")]
    Closed,
    /// The server selected no subprotocol the consumer speaks (or none at all). The stock
    /// consumer stops for good then ("Protocol is unsupported"), and so does this one.
    #[error("the server selected no protocol this consumer speaks ({selected:?})")]
    UnsupportedProtocol {
        /// What it selected, if anything.
        selected: Option<String>,
    },
    /// The server answered the WebSocket upgrade with an HTTP status instead of `101` (Rails
    /// and this project's server answer `404` to a refused origin, our server `503` when full).
    #[error("the server refused the WebSocket upgrade with HTTP {status}")]
    Refused {
        /// The HTTP status.
        status: u16,
    },
    /// TCP, the WebSocket handshake or a read or write failed.
    #[error("WebSocket transport failed: {0}")]
    Transport(#[source] Box<dyn StdError + Send + Sync>),
}

impl From<tokio_tungstenite::tungstenite::Error> for Error {
    fn from(e: tokio_tungstenite::tungstenite::Error) -> Error {
        match e {
            tokio_tungstenite::tungstenite::Error::Http(response) => Error::Refused {
                status: response.status().as_u16(),
            },
            other => Error::Transport(Box::new(other)),
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Error {
        Error::Transport(Box::new(e))
    }
}
