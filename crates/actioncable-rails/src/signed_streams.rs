//! AnyCable's signed streams: the `$pubsub` channel, which subscribes a client to a stream by
//! name with no channel code on the server, as long as the name is signed.
//!
//! A page that only needs "tell me what is broadcast to `notifications/17`" gets a signed name
//! from the app (`AnyCable::Streams.signed("notifications/17")` in Rails) and subscribes with
//! `{channel: "$pubsub", signed_stream_name: …}`; the server verifies the signature and streams
//! the name inside. Clients of an AnyCable server (`@anycable/web`'s `streamFromSigned`, or the
//! stock consumer with that identifier) work unchanged against this one, and names signed by
//! the Rails app or by AnyCable's own signing code verify here.
//!
//! The facts, from `github.com/anycable/anycable` (`docs/signed_streams.md`,
//! `streams/controller.go`, `utils/message_verifier.go`):
//!
//! - **The signature** is Rails' `MessageVerifier` format with HMAC-SHA256 and a JSON string
//!   payload: `base64(json(name))--hex(HMAC-SHA256(secret, base64(json(name))))`. Unlike
//!   Turbo's, the secret is the HMAC key *as it is* (AnyCable's `--streams_secret`, by default
//!   its `--secret`; the Rails side signs with `streams_secret`, by default
//!   `secret_key_base`); no key is derived.
//! - **The params**: a non-empty `signed_stream_name` is verified and must hold a JSON string;
//!   otherwise a non-empty `stream_name` is streamed as it is, but only when public streams are
//!   on (`--public_streams`); anything else is rejected. A `signed_stream_name` wins when both
//!   are given.
//!
//! Whispers (client-to-client broadcasts on these streams) are not supported yet.
//!
//! ```
//! use actioncable::Cable;
//! use actioncable_rails::signed_streams::{PubSubChannel, SignedStreams};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let streams = SignedStreams::new("the streams secret")?;
//! let signed = streams.signed_stream_name("notifications/17");
//! assert_eq!(streams.verified_stream_name(&signed)?, "notifications/17");
//! let cable = Cable::builder_with_state(streams)
//!     .channel::<PubSubChannel>()
//!     .build()?;
//! // Whoever holds `signed` may subscribe to `notifications/17` and gets what is broadcast there.
//! cable.handle().broadcast("notifications/17", &serde_json::json!({"unread": 3})).await?;
//! # Ok(())
//! # }
//! ```

use crate::{HmacDigest, MessageVerifier, RailsError};
use actioncable::{AnyAction, Channel, ChannelContext, ChannelError, async_trait};
use serde_json::{Map, Value};

/// The channel class of AnyCable's signed streams.
const PUBSUB_CHANNEL: &str = "$pubsub";

/// AnyCable's signed stream names and whether unsigned (public) names are allowed.
///
/// Its `Debug` output never shows the secret.
///
/// ```
/// use actioncable_rails::signed_streams::SignedStreams;
///
/// let streams = SignedStreams::new("secret")?;
/// assert!(!streams.allows_public_streams());
/// assert!(streams.clone().public_streams(true).allows_public_streams());
/// // The value AnyCable's documented Node.js signer makes for this secret and name.
/// assert_eq!(
///     streams.signed_stream_name("chat/2024"),
///     "ImNoYXQvMjAyNCI=--ebab31648e761fb439a6c3a5d5317fc9b018681613fdf9ca861ab6a8615a6fd3"
/// );
/// # Ok::<(), actioncable_rails::RailsError>(())
/// ```
#[derive(Clone)]
pub struct SignedStreams {
    verifier: MessageVerifier,
    public: bool,
}

impl std::fmt::Debug for SignedStreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedStreams")
            .field("secret", &"[redacted]")
            .field("public_streams", &self.public)
            .finish()
    }
}

impl AsRef<SignedStreams> for SignedStreams {
    fn as_ref(&self) -> &SignedStreams {
        self
    }
}

impl SignedStreams {
    /// Signed streams verified with `secret` (used as the HMAC key as it is); public streams
    /// off.
    ///
    /// # Errors
    /// [`RailsError::InvalidKey`] for an empty secret.
    pub fn new(secret: impl AsRef<[u8]>) -> Result<SignedStreams, RailsError> {
        Ok(SignedStreams {
            verifier: MessageVerifier::new(secret, HmacDigest::Sha256)?,
            public: false,
        })
    }

    /// Whether a client may subscribe to any stream by its plain name (`stream_name`), as
    /// AnyCable's `--public_streams`. Off by default: with it on, every stream is readable by
    /// anyone who can guess its name.
    #[must_use]
    pub fn public_streams(mut self, allow: bool) -> SignedStreams {
        self.public = allow;
        self
    }

    /// Whether public streams are on.
    pub fn allows_public_streams(&self) -> bool {
        self.public
    }

    /// Signs `name` (`AnyCable::Streams.signed(name)`).
    pub fn signed_stream_name(&self, name: &str) -> String {
        let json = serde_json::to_vec(name)
            .unwrap_or_else(|_| unreachable!("a string always serializes to JSON"));
        self.verifier.sign_bytes(&json)
    }

    /// The stream name inside `signed`, if its signature holds and it carries a JSON string.
    ///
    /// # Errors
    /// As [`TurboStreams::verified_stream_name`](crate::turbo::TurboStreams::verified_stream_name).
    pub fn verified_stream_name(&self, signed: &str) -> Result<String, RailsError> {
        self.verifier.verified::<String>(signed)
    }

    /// The stream a `$pubsub` subscription with `params` may listen to, or why not.
    fn stream_for(&self, params: &Map<String, Value>) -> Result<String, Refusal> {
        let text = |key: &'static str| match params.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(Refusal::NotAString(key)),
        };
        match (text("signed_stream_name")?, text("stream_name")?) {
            (Some(signed), _) => self
                .verified_stream_name(signed)
                .map_err(Refusal::NotVerified),
            (None, Some(name)) if self.public => Ok(name.to_owned()),
            (None, Some(_)) => Err(Refusal::PublicStreamsOff),
            (None, None) => Err(Refusal::NoName),
        }
    }
}

/// Why a `$pubsub` subscription was refused (for the log; never carries the name).
#[derive(Debug)]
enum Refusal {
    NoName,
    NotAString(&'static str),
    PublicStreamsOff,
    NotVerified(RailsError),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NoName => f.write_str("neither signed_stream_name nor stream_name given"),
            Refusal::NotAString(key) => write!(f, "{key} is not a string"),
            Refusal::PublicStreamsOff => {
                f.write_str("stream_name given but public streams are off")
            }
            Refusal::NotVerified(error) => write!(f, "signed_stream_name not verified: {error}"),
        }
    }
}

/// AnyCable's `$pubsub` channel: streams the verified `signed_stream_name`, or the plain
/// `stream_name` when public streams are on; rejects the subscription otherwise.
///
/// Register it on a cable whose state gives the [`SignedStreams`]
/// (`S: AsRef<SignedStreams>`). A refusal is logged at debug level with its reason, never with
/// the name. Broadcasts reach subscribers untouched.
#[derive(Debug)]
pub struct PubSubChannel {
    stream: String,
}

impl PubSubChannel {
    /// The stream this subscription listens to.
    pub fn stream(&self) -> &str {
        &self.stream
    }
}

#[async_trait]
impl<S> Channel<S> for PubSubChannel
where
    S: AsRef<SignedStreams> + Send + Sync + 'static,
{
    const CLASS: &'static str = PUBSUB_CHANNEL;
    type Params = Map<String, Value>;
    type Action = AnyAction;

    async fn subscribed(
        ctx: &mut ChannelContext<S>,
        params: Map<String, Value>,
    ) -> Result<Self, ChannelError> {
        let stream = match ctx.state().as_ref().stream_for(&params) {
            Ok(stream) => stream,
            Err(reason) => {
                tracing::debug!(channel = PUBSUB_CHANNEL, %reason, "rejecting the subscription");
                return Err(ChannelError::reject());
            }
        };
        ctx.stream_from(stream.clone()).await?;
        Ok(PubSubChannel { stream })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    #[test]
    fn signed_names_win_and_public_names_need_the_switch() {
        let closed = SignedStreams::new("s").unwrap();
        let open = closed.clone().public_streams(true);
        let signed = closed.signed_stream_name("a");
        let both = params(json!({"signed_stream_name": signed, "stream_name": "b"}));
        assert_eq!(closed.stream_for(&both).unwrap(), "a");
        assert_eq!(open.stream_for(&both).unwrap(), "a");

        let plain = params(json!({"stream_name": "b"}));
        assert!(matches!(
            closed.stream_for(&plain),
            Err(Refusal::PublicStreamsOff)
        ));
        assert_eq!(open.stream_for(&plain).unwrap(), "b");

        // Empty counts as absent, as in AnyCable: an empty signed name falls back to the plain one.
        let empty_signed = params(json!({"signed_stream_name": "", "stream_name": "b"}));
        assert_eq!(open.stream_for(&empty_signed).unwrap(), "b");
        for nothing in [
            json!({}),
            json!({"stream_name": ""}),
            json!({"stream_name": null}),
        ] {
            assert!(matches!(
                open.stream_for(&params(nothing)),
                Err(Refusal::NoName)
            ));
        }
    }

    #[test]
    fn forged_or_odd_params_are_refused_without_the_name() {
        let streams = SignedStreams::new("s").unwrap().public_streams(true);
        let forged = SignedStreams::new("other")
            .unwrap()
            .signed_stream_name("secret-stream");
        let refusal = streams
            .stream_for(&params(json!({ "signed_stream_name": forged })))
            .unwrap_err();
        assert!(matches!(
            refusal,
            Refusal::NotVerified(RailsError::InvalidSignature)
        ));
        assert!(!refusal.to_string().contains("secret-stream"));
        assert!(!refusal.to_string().contains(&forged));
        assert!(matches!(
            streams.stream_for(&params(json!({"stream_name": 5}))),
            Err(Refusal::NotAString("stream_name"))
        ));
    }

    #[test]
    fn debug_hides_the_secret() {
        let streams = SignedStreams::new("hunter2").unwrap();
        assert_eq!(
            format!("{streams:?}"),
            r#"SignedStreams { secret: "[redacted]", public_streams: false }"#
        );
    }
}
