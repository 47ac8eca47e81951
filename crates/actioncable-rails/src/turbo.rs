//! Turbo Streams over the cable: the `<turbo-cable-stream-source>` element of
//! `@hotwired/turbo-rails` subscribes here exactly as it does to a Rails app, and a Rust app
//! broadcasts the same `<turbo-stream>` HTML that Rails' `broadcast_append_to` sends.
//!
//! # Why the names are signed
//!
//! A page that wants live updates carries the stream's name in its HTML
//! (`<turbo-cable-stream-source signed-stream-name="…">`), so the name is in the user's hands.
//! If it were plain, anyone could edit it and listen to another account's stream. Turbo signs it
//! with a key only the server has, and its channel refuses any name whose signature does not
//! hold. The name is signed, not encrypted: it is Base64 JSON that anyone can read, so it must
//! not itself be a secret. It never expires; a page served a year ago still subscribes.
//!
//! What this module does, each from turbo-rails' own source (read in
//! `github.com/hotwired/turbo-rails`, v8.0.21):
//!
//! - **The verifier** (`lib/turbo-rails.rb`, `Turbo.signed_stream_verifier`): Rails'
//!   `MessageVerifier` with `digest: "SHA256"` and `serializer: JSON`, so a signed name is
//!   `base64(json_string)--hex(HMAC-SHA256(key, base64(json_string)))`; see
//!   [`TurboStreams`].
//! - **The key** (`lib/turbo/engine.rb`, initializer `"turbo.signed_stream_verifier_key"`):
//!   `config.turbo.signed_stream_verifier_key` when the app sets one
//!   ([`TurboStreams::from_key`]; AnyCable's `--turbo_streams_secret` is that key), else
//!   `Rails.application.key_generator.generate_key("turbo/signed_stream_verifier_key")`: 64
//!   bytes of PBKDF2 over `secret_key_base` with 1,000 iterations, SHA1 or SHA256 as the app's
//!   `key_generator_hash_digest_class` says ([`TurboStreams::from_secret_key_base`]).
//! - **Stream names** (`app/channels/turbo/streams/stream_name.rb`, `stream_name_from`): the
//!   streamables joined with `:`, a record by its GlobalID param, anything else by `to_param`;
//!   see [`stream_name_from`].
//! - **The channel** (`app/channels/turbo/streams_channel.rb`): `Turbo::StreamsChannel`
//!   streams from the verified `signed_stream_name` param and rejects the subscription
//!   otherwise; see [`StreamsChannel`]. The element's identifier is
//!   `{channel, signed_stream_name, ...snakeize(dataset)}`
//!   (`app/javascript/turbo/cable_stream_source_element.js`): the element's `data-*` attributes
//!   ride along, and the channel ignores them.
//! - **Broadcasts** (`app/channels/turbo/streams/broadcasts.rb`, `broadcast_stream_to`):
//!   `ActionCable.server.broadcast(stream_name, html)`, so each message is one JSON *string* of
//!   HTML, the same bytes for every subscriber; the element hands it to Turbo, which applies
//!   the `<turbo-stream>` elements in it. A [`TurboStream`] serializes to exactly that string.
//! - **The HTML** (`app/helpers/turbo/streams/action_helper.rb`, `turbo_stream_action_tag`, and
//!   `app/models/turbo/streams/tag_builder.rb`): see [`TurboStream`] and [`Html`].
//!
//! The tests (`tests/it/turbo.rs`) compare all of this with values Rails' own Ruby code makes.
//!
//! # A cable for Turbo
//!
//! ```
//! use actioncable::Cable;
//! use actioncable_rails::turbo::{StreamsChannel, TurboStream, TurboStreams, Html, stream_name_from};
//! use actioncable_rails::KeyDigest;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! // Derive the key once, when the app starts (PBKDF2 is slow on purpose).
//! let turbo = TurboStreams::from_secret_key_base("the app's secret_key_base", KeyDigest::Sha256)?;
//! let cable = Cable::builder_with_state(turbo.clone())
//!     .channel::<StreamsChannel>()
//!     .build()?;
//!
//! // In the page: Rails' `turbo_stream_from "rooms", "lobby"`.
//! let stream = stream_name_from(&[&"rooms", &"lobby"]);
//! let tag = turbo.turbo_stream_from(&stream);
//! assert!(tag.as_str().starts_with(r#"<turbo-cable-stream-source channel="Turbo::StreamsChannel" signed-stream-name=""#));
//!
//! // Anywhere: Rails' `broadcast_append_to "rooms", "lobby", target: "messages", html: …`.
//! let update = TurboStream::append("messages", Html::text("<b>hi</b>"));
//! cable.handle().broadcast(&stream, &update).await?;
//! # Ok(())
//! # }
//! ```
//!
//! # A channel of your own
//!
//! Turbo's channel lets in anyone who holds a signed name. A channel that also checks who is
//! asking (Rails' documented `CustomChannel` with `verified_stream_name_from_params`) verifies
//! the name itself and is named in the page's `channel` attribute:
//!
//! ```
//! use actioncable::{async_trait, AnyAction, Channel, ChannelContext, ChannelError};
//! use actioncable_rails::turbo::TurboStreams;
//! use serde::Deserialize;
//!
//! #[derive(Deserialize)]
//! struct Params { signed_stream_name: String }
//!
//! struct AdminStreams;
//!
//! #[async_trait]
//! impl Channel<TurboStreams> for AdminStreams {
//!     const CLASS: &'static str = "AdminStreamsChannel";
//!     type Params = Params;
//!     type Action = AnyAction;
//!
//!     async fn subscribed(ctx: &mut ChannelContext<TurboStreams>, p: Params) -> Result<Self, ChannelError> {
//!         let name = ctx.state().verified_stream_name(&p.signed_stream_name)
//!             .map_err(|_| ChannelError::reject())?;
//!         if ctx.identity().get("role") != Some("admin") {
//!             return Err(ChannelError::reject());
//!         }
//!         ctx.stream_from(name).await?;
//!         Ok(AdminStreams)
//!     }
//! }
//! ```

mod tag;

pub use tag::{Html, TurboAction, TurboStream, escape_html};

use crate::{HmacDigest, KeyDigest, KeyGenerator, MessageVerifier, RailsError};
use actioncable::stream::ToStreamParam;
use actioncable::{AnyAction, Channel, ChannelContext, ChannelError, async_trait};
use serde_json::{Map, Value};

/// The salt Turbo derives its key with from `secret_key_base`.
pub const SIGNED_STREAM_VERIFIER_SALT: &str = "turbo/signed_stream_verifier_key";

/// The length of the derived key: `generate_key`'s default, 64 bytes.
pub const SIGNED_STREAM_KEY_LEN: usize = 64;

/// Turbo's signed stream names (Rails' `Turbo.signed_stream_verifier`): signs names for pages
/// and verifies the names pages subscribe with.
///
/// Build it once at startup and share it (it is the app state [`StreamsChannel`] reads).
/// Its `Debug` output never shows the key.
///
/// ```
/// use actioncable_rails::turbo::TurboStreams;
/// use actioncable_rails::KeyDigest;
///
/// let turbo = TurboStreams::from_secret_key_base("secret_key_base of the Rails app", KeyDigest::Sha256)?;
/// let signed = turbo.signed_stream_name("rooms:lobby");
/// assert_eq!(turbo.verified_stream_name(&signed)?, "rooms:lobby");
/// assert!(turbo.verified_stream_name(&signed.replace('a', "b")).is_err());
/// assert_eq!(format!("{turbo:?}"), "TurboStreams { key: \"[redacted]\" }");
/// # Ok::<(), actioncable_rails::RailsError>(())
/// ```
#[derive(Clone)]
pub struct TurboStreams {
    verifier: MessageVerifier,
}

impl std::fmt::Debug for TurboStreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurboStreams")
            .field("key", &"[redacted]")
            .finish()
    }
}

impl AsRef<TurboStreams> for TurboStreams {
    fn as_ref(&self) -> &TurboStreams {
        self
    }
}

impl TurboStreams {
    /// The verifier a Rails app with this `secret_key_base` uses when it does not set
    /// `config.turbo.signed_stream_verifier_key`. `digest` is the app's
    /// `key_generator_hash_digest_class`: SHA256 with Rails 7.0+ defaults, SHA1 before.
    ///
    /// Runs PBKDF2 (1,000 iterations): call it once, not per request.
    ///
    /// # Errors
    /// [`RailsError::InvalidKey`] for an empty secret.
    pub fn from_secret_key_base(
        secret_key_base: impl AsRef<[u8]>,
        digest: KeyDigest,
    ) -> Result<TurboStreams, RailsError> {
        let key = KeyGenerator::new(secret_key_base, digest)?
            .generate_key(SIGNED_STREAM_VERIFIER_SALT, SIGNED_STREAM_KEY_LEN);
        TurboStreams::from_key(key)
    }

    /// The verifier for an explicit key: `config.turbo.signed_stream_verifier_key` (used as the
    /// HMAC key as it is, as Turbo does; AnyCable's `--turbo_streams_secret` is this key).
    ///
    /// # Errors
    /// [`RailsError::InvalidKey`] for an empty key.
    pub fn from_key(key: impl AsRef<[u8]>) -> Result<TurboStreams, RailsError> {
        Ok(TurboStreams {
            verifier: MessageVerifier::new(key, HmacDigest::Sha256)?,
        })
    }

    /// Signs `name` for a page (Rails' `Turbo::StreamsChannel.signed_stream_name`). The result
    /// is byte for byte what Rails makes for the same key and name.
    pub fn signed_stream_name(&self, name: &str) -> String {
        let json = serde_json::to_vec(name)
            .unwrap_or_else(|_| unreachable!("a string always serializes to JSON"));
        self.verifier.sign_bytes(&json)
    }

    /// The stream name inside `signed`, if its signature holds and it carries a JSON string
    /// (Rails' `Turbo::StreamsChannel.verified_stream_name`).
    ///
    /// # Errors
    /// [`RailsError::Malformed`] when it is not `data--digest` with Base64 data,
    /// [`RailsError::InvalidSignature`] when tampered with or signed with another key,
    /// [`RailsError::Payload`] when the signed value is not a JSON string.
    pub fn verified_stream_name(&self, signed: &str) -> Result<String, RailsError> {
        self.verifier.verified::<String>(signed)
    }

    /// The element that subscribes a page to `stream` (Rails' `turbo_stream_from`):
    /// `<turbo-cable-stream-source channel="Turbo::StreamsChannel" signed-stream-name="…">`,
    /// byte for byte as Rails renders it.
    ///
    /// ```
    /// # use actioncable_rails::turbo::TurboStreams;
    /// let turbo = TurboStreams::from_key("a key")?;
    /// let html = turbo.turbo_stream_from("rooms:lobby");
    /// let signed = turbo.signed_stream_name("rooms:lobby");
    /// assert_eq!(
    ///     html.as_str(),
    ///     format!(r#"<turbo-cable-stream-source channel="Turbo::StreamsChannel" signed-stream-name="{signed}"></turbo-cable-stream-source>"#)
    /// );
    /// # Ok::<(), actioncable_rails::RailsError>(())
    /// ```
    pub fn turbo_stream_from(&self, stream: &str) -> Html {
        let mut html = Html::trusted(format!(
            r#"<turbo-cable-stream-source channel="{}" signed-stream-name=""#,
            STREAMS_CHANNEL
        ));
        html.push_text(&self.signed_stream_name(stream));
        html.push_trusted(r#""></turbo-cable-stream-source>"#);
        html
    }
}

/// Turbo's stream name for `parts` (Rails' `stream_name_from(streamables)`): each part's
/// [`ToStreamParam`] joined with `:`.
///
/// A record is named by its GlobalID param ([`GlobalId`](actioncable::GlobalId), Rails'
/// `to_gid_param`: URL-safe Base64 of `gid://<app>/<Model>/<id>` without padding), anything
/// else by its `to_param` (a string as it is, a number in decimal). The tests check both
/// against Ruby's GlobalID gem, ids that it escapes included.
///
/// ```
/// use actioncable::GlobalId;
/// use actioncable_rails::turbo::stream_name_from;
///
/// let account = GlobalId::new("bcx", "Account", 5);
/// assert_eq!(stream_name_from(&[&account, &"entries"]), "Z2lkOi8vYmN4L0FjY291bnQvNQ:entries");
/// assert_eq!(stream_name_from(&[&"rooms", &42]), "rooms:42");
/// ```
pub fn stream_name_from(parts: &[&dyn ToStreamParam]) -> String {
    let mut name = String::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            name.push(':');
        }
        name.push_str(&part.to_stream_param());
    }
    name
}

/// Turbo's channel class, as `<turbo-cable-stream-source>` names it.
const STREAMS_CHANNEL: &str = "Turbo::StreamsChannel";

/// `Turbo::StreamsChannel`: streams the name a page's `signed_stream_name` param carries,
/// once its signature holds; rejects the subscription otherwise.
///
/// Register it on a cable whose state gives the [`TurboStreams`] (`S: AsRef<TurboStreams>`; a
/// `TurboStreams` is one itself). Other params (the element's `data-*` attributes) are ignored,
/// as Rails ignores them. A missing, forged or tampered name is answered with
/// `reject_subscription` and logged at debug level with the reason, never with the name.
/// Broadcasts reach subscribers untouched: no filter, no work per subscriber.
///
/// The channel has no actions; a `perform` is logged as an error, as in Rails.
#[derive(Debug)]
pub struct StreamsChannel {
    stream: String,
}

impl StreamsChannel {
    /// The verified stream this subscription listens to.
    pub fn stream(&self) -> &str {
        &self.stream
    }
}

#[async_trait]
impl<S> Channel<S> for StreamsChannel
where
    S: AsRef<TurboStreams> + Send + Sync + 'static,
{
    const CLASS: &'static str = STREAMS_CHANNEL;
    type Params = Map<String, Value>;
    type Action = AnyAction;

    async fn subscribed(
        ctx: &mut ChannelContext<S>,
        params: Map<String, Value>,
    ) -> Result<Self, ChannelError> {
        let Some(Value::String(signed)) = params.get("signed_stream_name") else {
            tracing::debug!(
                channel = STREAMS_CHANNEL,
                "rejecting: no signed_stream_name string in the params"
            );
            return Err(ChannelError::reject());
        };
        let stream = match ctx.state().as_ref().verified_stream_name(signed) {
            Ok(stream) => stream,
            Err(error) => {
                tracing::debug!(channel = STREAMS_CHANNEL, %error, "rejecting: signed_stream_name not verified");
                return Err(ChannelError::reject());
            }
        };
        ctx.stream_from(stream.clone()).await?;
        Ok(StreamsChannel { stream })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sign_like_a_message_verifier_with_sha256_and_json() {
        let turbo = TurboStreams::from_key(b"k").unwrap();
        let direct = MessageVerifier::new(b"k", HmacDigest::Sha256).unwrap();
        let signed = turbo.signed_stream_name("rooms:lobby");
        assert_eq!(signed, direct.generate("rooms:lobby").unwrap());
        assert!(signed.starts_with("InJvb21zOmxvYmJ5Ig==--"), "{signed}");
    }

    #[test]
    fn only_a_json_string_is_a_stream_name() {
        let turbo = TurboStreams::from_key(b"k").unwrap();
        let direct = MessageVerifier::new(b"k", HmacDigest::Sha256).unwrap();
        for value in [serde_json::json!(5), serde_json::json!(["a"]), Value::Null] {
            let signed = direct.generate(&value).unwrap();
            assert!(
                matches!(
                    turbo.verified_stream_name(&signed),
                    Err(RailsError::Payload(_))
                ),
                "{value}"
            );
        }
    }

    #[test]
    fn empty_keys_and_secrets_are_refused() {
        assert!(TurboStreams::from_key(b"").is_err());
        assert!(TurboStreams::from_secret_key_base("", KeyDigest::Sha1).is_err());
    }

    #[test]
    fn the_derived_key_is_sixty_four_bytes_of_the_turbo_salt() {
        let keys = KeyGenerator::new("s", KeyDigest::Sha1).unwrap();
        let key = keys.generate_key(SIGNED_STREAM_VERIFIER_SALT, 64);
        let derived = TurboStreams::from_secret_key_base("s", KeyDigest::Sha1).unwrap();
        let explicit = TurboStreams::from_key(&key).unwrap();
        assert_eq!(
            derived.signed_stream_name("x"),
            explicit.signed_stream_name("x")
        );
        let short = TurboStreams::from_key(&key[..32]).unwrap();
        assert_ne!(
            derived.signed_stream_name("x"),
            short.signed_stream_name("x")
        );
    }

    #[test]
    fn names_join_with_colons() {
        assert_eq!(stream_name_from(&[]), "");
        assert_eq!(stream_name_from(&[&"a"]), "a");
        assert_eq!(stream_name_from(&[&"a", &"", &true]), "a::true");
    }
}
