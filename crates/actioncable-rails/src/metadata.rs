//! Rails' metadata envelopes: a purpose and an expiry carried *inside* a signed or encrypted
//! message, so a value signed for one use (a cookie's name, a password reset) cannot be
//! replayed for another, nor after its time.
//!
//! Sources: `activesupport/lib/active_support/messages/metadata.rb` of Rails main (2a2db1e,
//! as in 7.1 to 8.1; "main" below) and of Debian's `activesupport-6.1.7.10` ("6.1" below).
//! Rails has written two envelopes, and both are in use today:
//!
//! - **Legacy** (Rails 5.2+): `{"_rails":{"message":"<strict Base64 of the serialized
//!   value>","exp":<ISO 8601 with ms, or null>,"pur":<purpose, or null>}}`, fields in that
//!   order, nulls written. 5.2 to 7.0 write it for every message with metadata (6.1 lines
//!   13-24, `#as_json` and `Metadata.wrap`; `exp` is `expires_at.utc.iso8601(3)`, lines
//!   32-37). Main still writes it whenever `use_message_serializer_for_metadata?` is false
//!   (lines 32-43 `serialize_with_metadata`, 73-78 `wrap_in_metadata_legacy_envelope`), that
//!   is when the setting is off or the serializer is not one of `envelope_serializers` (lines
//!   14-19, 62-64).
//! - **Cookies carry the legacy envelope in every version.** The cookie jar serializes the
//!   value itself and gives its encryptor and verifier `MessageEncryptor::NullSerializer`
//!   (`actionpack/lib/action_dispatch/middleware/cookies.rb`, main line 572, 6.1 line 574:
//!   `SERIALIZER = ActiveSupport::MessageEncryptor::NullSerializer`), which is not an
//!   envelope serializer; so `use_message_serializer_for_metadata?` is false for cookies even
//!   under 7.1+ defaults.
//! - **Data** (7.1+, `use_message_serializer_for_metadata`, on with `load_defaults 7.1`,
//!   `railties/lib/rails/application/configuration.rb`): `{"_rails":{"data":<the value
//!   itself>,"exp":…,"pur":…}}`, `exp` and `pur` left out when unset (main lines 66-71).
//!   `MessageVerifier`/`MessageEncryptor` with a real serializer (JSON) write it, e.g.
//!   `Rails.application.message_verifier(…)` under 7.1's defaults.
//!
//! A message without metadata has no envelope: the serialized value alone.
//!
//! Reading follows main's `deserialize_with_metadata` and `extract_from_metadata_envelope`
//! (lines 45-60 and 80-92), which read all three shapes (the legacy one is told apart by its
//! opening `{"_rails":{"message":`, lines 98-100): the expiry is checked first (expired when
//! `now >= exp`), then the purpose (`pur.to_s == purpose.to_s`, so no purpose only matches a
//! message made without one); a message without envelope only passes when no purpose is
//! expected ("missing metadata"). 6.1 (`Metadata.verify`, lines 26-28 and 58-69) accepts and
//! refuses the same legacy and bare messages; it cannot read the data envelope.
//!
//! [`Metadata`] writes the data envelope by default: every Rails from 7.1 reads it, whatever
//! its `use_message_serializer_for_metadata`, with any serializer that reads JSON (7.1+'s
//! `:json`, `:json_allow_marshal` and `:marshal` all do: `messages/serializer_with_fallback.rb`).
//! For Rails 7.0 and older, ask for [`legacy_envelope`](Metadata::legacy_envelope), which
//! every version reads.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;

use crate::RailsError;

/// What a message carries besides its value: a purpose, an expiry, and which envelope holds
/// them.
///
/// Rails writes two envelopes. The 7.1+ one, `{"_rails":{"data":<the value>,"exp":…,"pur":…}}`,
/// is what `MessageVerifier`/`MessageEncryptor` with a JSON serializer write under 7.1's
/// defaults, and every Rails from 7.1 reads it: it is the default here. The legacy one,
/// `{"_rails":{"message":"<Base64 of the JSON>","exp":…,"pur":…}}`, is what Rails 5.2 to 7.0
/// write, and what cookies carry in every version; every Rails reads it: ask for it with
/// [`legacy_envelope`](Metadata::legacy_envelope) when a Rails before 7.1 reads the message.
/// Without purpose or expiry there is no envelope. Reading accepts all three.
///
/// ```
/// use std::time::Duration;
/// use actioncable_rails::{HmacDigest, MessageVerifier, Metadata};
///
/// let verifier = MessageVerifier::new(b"a key", HmacDigest::Sha256)?;
/// let token = verifier.generate_with(&42, &Metadata::purpose("login").expires_in(Duration::from_secs(600)))?;
/// assert_eq!(verifier.verified_for::<u64>(&token, Some("login"))?, 42);
/// assert!(verifier.verified_for::<u64>(&token, Some("reset")).is_err());
/// # Ok::<(), actioncable_rails::RailsError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata {
    purpose: Option<String>,
    expiry: Option<Expiry>,
    legacy: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    At(OffsetDateTime),
    In(Duration),
}

impl Metadata {
    /// No purpose and no expiry: the message gets no envelope at all.
    pub fn new() -> Self {
        Metadata::default()
    }

    /// A message for `purpose` (Ruby's `purpose:`); reading it needs the same purpose.
    pub fn purpose(purpose: impl Into<String>) -> Self {
        Metadata {
            purpose: Some(purpose.into()),
            ..Metadata::default()
        }
    }

    /// Expires at `at` (Ruby's `expires_at:`); a `SystemTime` or a `time::OffsetDateTime`.
    /// Rails keeps milliseconds, so does the envelope.
    #[must_use]
    pub fn expires_at(mut self, at: impl Into<OffsetDateTime>) -> Self {
        self.expiry = Some(Expiry::At(at.into()));
        self
    }

    /// Expires `after` from the moment the message is made (Ruby's `expires_in:`).
    #[must_use]
    pub fn expires_in(mut self, after: Duration) -> Self {
        self.expiry = Some(Expiry::In(after));
        self
    }

    /// Writes the legacy envelope (`"message"`, Base64), which Rails 5.2 to 7.0 read too,
    /// instead of the 7.1+ `"data"` envelope.
    #[must_use]
    pub fn legacy_envelope(mut self) -> Self {
        self.legacy = true;
        self
    }

    fn is_empty(&self) -> bool {
        self.purpose.is_none() && self.expiry.is_none()
    }

    /// The expiry as Rails writes it: `expires_at.utc.iso8601(3)`.
    fn exp(&self, now: OffsetDateTime) -> Result<Option<String>, RailsError> {
        let at = match self.expiry {
            None => return Ok(None),
            Some(Expiry::At(at)) => at,
            Some(Expiry::In(after)) => time::Duration::try_from(after)
                .ok()
                .and_then(|after| now.checked_add(after))
                .ok_or(RailsError::Payload("the expiry is out of range".into()))?,
        };
        let iso = format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        );
        at.to_offset(time::UtcOffset::UTC)
            .format(&iso)
            .map(Some)
            .map_err(|_| RailsError::Payload("the expiry cannot be written in ISO 8601".into()))
    }
}

/// The legacy envelope, fields in Rails' order (`{"_rails":{"message":` opens it, which is
/// how 7.1+ tell it apart); `exp` and `pur` are written even when null.
#[derive(Serialize)]
struct LegacyEnvelope<'a> {
    #[serde(rename = "_rails")]
    rails: LegacyFields<'a>,
}

#[derive(Serialize)]
struct LegacyFields<'a> {
    message: String,
    exp: Option<String>,
    pur: Option<&'a str>,
}

/// The 7.1+ envelope: the value itself under `data`, `exp` and `pur` only when set.
#[derive(Serialize)]
struct DataEnvelope<'a, T: ?Sized> {
    #[serde(rename = "_rails")]
    rails: DataFields<'a, T>,
}

#[derive(Serialize)]
struct DataFields<'a, T: ?Sized> {
    data: &'a T,
    #[serde(skip_serializing_if = "Option::is_none")]
    exp: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pur: Option<&'a str>,
}

/// `value` as JSON, in the envelope `metadata` asks for: the bytes to sign or encrypt.
pub(crate) fn wrap<T: Serialize + ?Sized>(
    value: &T,
    metadata: &Metadata,
    now: OffsetDateTime,
) -> Result<Vec<u8>, RailsError> {
    if metadata.is_empty() {
        return to_json(value);
    }
    let exp = metadata.exp(now)?;
    let pur = metadata.purpose.as_deref();
    if metadata.legacy {
        let message = STANDARD.encode(to_json(value)?);
        to_json(&LegacyEnvelope {
            rails: LegacyFields { message, exp, pur },
        })
    } else {
        to_json(&DataEnvelope {
            rails: DataFields {
                data: value,
                exp,
                pur,
            },
        })
    }
}

/// Which purposes a reader accepts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Expected<'a> {
    purpose: Option<&'a str>,
    or_none: bool,
}

impl<'a> Expected<'a> {
    /// Exactly `purpose` (`verified(message, purpose:)`); `None` accepts only messages
    /// without one.
    pub(crate) fn purpose(purpose: Option<&'a str>) -> Self {
        Expected {
            purpose,
            or_none: false,
        }
    }

    /// The cookie jar's reading: `parse(name, data, purpose: "cookie.#{name}")`, and when
    /// that gives nil, `parse(name, data)` without purpose (`AbstractCookieJar#[]`). So a
    /// cookie named for this purpose, or for none (written with `use_cookies_with_metadata`
    /// off, or without envelope), is accepted.
    pub(crate) fn cookie(purpose: &'a str) -> Self {
        Expected {
            purpose: Some(purpose),
            or_none: true,
        }
    }

    fn accepts(&self, pur: &str) -> bool {
        pur == self.purpose.unwrap_or("") || (self.or_none && pur.is_empty())
    }
}

/// The value of a verified (or decrypted) payload, once its envelope's expiry and purpose hold.
pub(crate) fn unwrap<T: DeserializeOwned>(
    payload: &[u8],
    expected: Expected<'_>,
    now: OffsetDateTime,
) -> Result<T, RailsError> {
    let value: Value = crate::json::from_payload(payload)?;
    let mut envelope = match value {
        Value::Object(object) if object.contains_key("_rails") => object,
        value => {
            // No envelope: Rails 7.1+ throw "missing metadata" when a purpose is expected.
            if !expected.accepts("") {
                return Err(RailsError::WrongPurpose);
            }
            return from_value(value);
        }
    };
    let Some(Value::Object(mut fields)) = envelope.remove("_rails") else {
        return Err(RailsError::Malformed);
    };
    check_expiry(fields.get("exp"), now)?;
    let pur = match fields.get("pur") {
        None | Some(Value::Null) => "",
        Some(Value::String(pur)) => pur,
        Some(_) => return Err(RailsError::Malformed),
    };
    if !expected.accepts(pur) {
        return Err(RailsError::WrongPurpose);
    }
    legacy_or_data(&mut fields)
}

fn legacy_or_data<T: DeserializeOwned>(fields: &mut Map<String, Value>) -> Result<T, RailsError> {
    match fields.remove("message") {
        Some(Value::String(message)) => {
            let inner = STANDARD
                .decode(message)
                .map_err(|_| RailsError::Malformed)?;
            from_value(crate::json::from_payload::<Value>(&inner)?)
        }
        Some(_) => Err(RailsError::Malformed),
        None => fields
            .remove("data")
            .map_or(Err(RailsError::Malformed), from_value),
    }
}

fn check_expiry(exp: Option<&Value>, now: OffsetDateTime) -> Result<(), RailsError> {
    match exp {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(exp)) => {
            let exp = OffsetDateTime::parse(exp, &Rfc3339).map_err(|_| RailsError::Malformed)?;
            if now >= exp {
                Err(RailsError::Expired)
            } else {
                Ok(())
            }
        }
        Some(_) => Err(RailsError::Malformed),
    }
}

/// `T` from a JSON value. serde's message would quote the value ("invalid type: string
/// \"…\""), and a decrypted cookie is a credential: only what was expected is kept.
fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, RailsError> {
    serde_json::from_value(value).map_err(|e| {
        let message = e.to_string();
        let what = match message.rsplit_once(", expected ") {
            Some((_, expected)) => format!("expected {expected}"),
            None if message.starts_with("missing field") => message,
            None => "another shape".to_owned(),
        };
        RailsError::Payload(format!("the value is not of the type asked for ({what})"))
    })
}

fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, RailsError> {
    serde_json::to_vec(value).map_err(|e| RailsError::Payload(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2030-01-02 03:04:05.678_9 UTC);

    fn text(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn no_metadata_no_envelope() {
        assert_eq!(
            text(wrap(&json!({"a": 1}), &Metadata::new(), NOW).unwrap()),
            r#"{"a":1}"#
        );
        let legacy = Metadata::new().legacy_envelope();
        assert_eq!(text(wrap(&42, &legacy, NOW).unwrap()), "42");
    }

    #[test]
    fn data_envelope_leaves_unset_fields_out() {
        let m = Metadata::purpose("login");
        assert_eq!(
            text(wrap(&json!([1]), &m, NOW).unwrap()),
            r#"{"_rails":{"data":[1],"pur":"login"}}"#
        );
        let m = Metadata::new().expires_in(Duration::from_secs(60));
        assert_eq!(
            text(wrap(&"x", &m, NOW).unwrap()),
            r#"{"_rails":{"data":"x","exp":"2030-01-02T03:05:05.678Z"}}"#
        );
    }

    #[test]
    fn legacy_envelope_writes_nulls_in_rails_order() {
        let m = Metadata::purpose("cookie.user_id").legacy_envelope();
        assert_eq!(
            text(wrap(&42, &m, NOW).unwrap()),
            r#"{"_rails":{"message":"NDI=","exp":null,"pur":"cookie.user_id"}}"#
        );
        let offset = datetime!(2030-01-02 05:04:05.999_999 +02:00);
        let m = Metadata::new().expires_at(offset).legacy_envelope();
        assert_eq!(
            text(wrap(&42, &m, NOW).unwrap()),
            r#"{"_rails":{"message":"NDI=","exp":"2030-01-02T03:04:05.999Z","pur":null}}"#
        );
    }

    #[test]
    fn purpose_and_expiry_are_checked_expiry_first() {
        let exact = Expected::purpose(Some("a"));
        for legacy in [false, true] {
            let mut m = Metadata::purpose("a").expires_in(Duration::from_secs(1));
            if legacy {
                m = m.legacy_envelope();
            }
            let payload = wrap(&7, &m, NOW).unwrap();
            assert_eq!(unwrap::<u8>(&payload, exact, NOW), Ok(7));
            let later = NOW + time::Duration::seconds(1);
            assert_eq!(
                unwrap::<u8>(&payload, exact, later),
                Err(RailsError::Expired)
            );
            let other = Expected::purpose(Some("b"));
            assert_eq!(
                unwrap::<u8>(&payload, other, later),
                Err(RailsError::Expired)
            );
            assert_eq!(
                unwrap::<u8>(&payload, other, NOW),
                Err(RailsError::WrongPurpose)
            );
            let none = Expected::purpose(None);
            assert_eq!(
                unwrap::<u8>(&payload, none, NOW),
                Err(RailsError::WrongPurpose)
            );
            let cookie = Expected::cookie("b");
            assert_eq!(
                unwrap::<u8>(&payload, cookie, NOW),
                Err(RailsError::WrongPurpose)
            );
        }
    }

    #[test]
    fn a_message_without_envelope_needs_no_purpose() {
        assert_eq!(unwrap::<u8>(b"7", Expected::purpose(None), NOW), Ok(7));
        let exact = Expected::purpose(Some("a"));
        assert_eq!(
            unwrap::<u8>(b"7", exact, NOW),
            Err(RailsError::WrongPurpose)
        );
        assert_eq!(unwrap::<u8>(b"7", Expected::cookie("a"), NOW), Ok(7));
        // An envelope with a null purpose is read by the cookie jar's second try too.
        let m = Metadata::new()
            .expires_in(Duration::from_secs(5))
            .legacy_envelope();
        let payload = wrap(&7, &m, NOW).unwrap();
        assert_eq!(unwrap::<u8>(&payload, Expected::cookie("a"), NOW), Ok(7));
    }

    #[test]
    fn malformed_envelopes_and_marshal_are_refused() {
        let none = Expected::purpose(None);
        for bad in [
            r#"{"_rails":1}"#,
            r#"{"_rails":{}}"#,
            r#"{"_rails":{"message":"not base64!"}}"#,
            r#"{"_rails":{"message":1}}"#,
            r#"{"_rails":{"data":1,"exp":"yesterday"}}"#,
            r#"{"_rails":{"data":1,"pur":5}}"#,
        ] {
            assert_eq!(
                unwrap::<Value>(bad.as_bytes(), none, NOW),
                Err(RailsError::Malformed),
                "{bad}"
            );
        }
        // `"data": null` is a value, not a missing one.
        assert_eq!(
            unwrap::<Value>(br#"{"_rails":{"data":null}}"#, none, NOW),
            Ok(Value::Null)
        );
        assert_eq!(
            unwrap::<Value>(b"\x04\x08i\x06", none, NOW),
            Err(RailsError::MarshalPayload)
        );
        let marshal = format!(
            r#"{{"_rails":{{"message":"{}"}}}}"#,
            STANDARD.encode(b"\x04\x08i\x06")
        );
        assert_eq!(
            unwrap::<Value>(marshal.as_bytes(), none, NOW),
            Err(RailsError::MarshalPayload)
        );
    }

    #[test]
    fn type_errors_do_not_quote_the_value() {
        let err = unwrap::<u64>(br#""a secret""#, Expected::purpose(None), NOW).unwrap_err();
        let RailsError::Payload(message) = &err else {
            panic!("{err:?}")
        };
        assert!(!message.contains("secret"), "{message}");
        assert!(message.contains("u64"), "{message}");
    }
}
