//! Rails' `ActiveSupport::MessageVerifier`: a message signed, not encrypted.
//!
//! The format is `base64(payload)--hex(HMAC(key, base64(payload)))`, with strict Base64 and a
//! lower-case hex digest. Turbo signs its stream names this way (SHA256, JSON payload), so does
//! AnyCable's `$pubsub` channel, and so do Rails' signed cookies (SHA1 unless the app sets
//! `signed_cookie_digest`). The digest is compared in constant time.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde::Serialize;
use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

use crate::RailsError;
use crate::metadata::{self, Expected, Metadata};

/// The HMAC digest a [`MessageVerifier`] signs with (`digest:` in Ruby).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HmacDigest {
    /// SHA1: `MessageVerifier`'s default, and signed cookies' unless `signed_cookie_digest` is set.
    Sha1,
    /// SHA256: Turbo's signed stream names, AnyCable's signed streams.
    Sha256,
}

/// Signs and verifies messages as `ActiveSupport::MessageVerifier` with a JSON serializer.
///
/// ```
/// use actioncable_rails::{HmacDigest, MessageVerifier};
///
/// let verifier = MessageVerifier::new(b"a key of any length", HmacDigest::Sha256)?;
/// let signed = verifier.generate("chat:lobby")?;
/// assert_eq!(verifier.verified::<String>(&signed)?, "chat:lobby");
/// assert!(verifier.verified::<String>(&signed.replace("--", "x--")).is_err());
/// # Ok::<(), actioncable_rails::RailsError>(())
/// ```
#[derive(Clone)]
pub struct MessageVerifier {
    key: Vec<u8>,
    digest: HmacDigest,
}

impl std::fmt::Debug for MessageVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageVerifier")
            .field("key", &"[redacted]")
            .field("digest", &self.digest)
            .finish()
    }
}

impl MessageVerifier {
    /// A verifier for `key` (used as the HMAC key as given; an empty key is refused).
    pub fn new(key: impl AsRef<[u8]>, digest: HmacDigest) -> Result<Self, RailsError> {
        let key = key.as_ref();
        if key.is_empty() {
            return Err(RailsError::InvalidKey(
                "a MessageVerifier key cannot be empty",
            ));
        }
        Ok(MessageVerifier {
            key: key.to_vec(),
            digest,
        })
    }

    /// The digest this verifier signs with.
    pub fn digest(&self) -> HmacDigest {
        self.digest
    }

    /// Signs `value`, serialized as JSON (`verifier.generate(value)`).
    pub fn generate<T: Serialize + ?Sized>(&self, value: &T) -> Result<String, RailsError> {
        let json = serde_json::to_vec(value).map_err(|e| RailsError::Payload(e.to_string()))?;
        Ok(self.sign_bytes(&json))
    }

    /// Checks the signature and returns the JSON value (`verifier.verified(message)`).
    pub fn verified<T: DeserializeOwned>(&self, message: &str) -> Result<T, RailsError> {
        let payload = self.verify_bytes(message)?;
        crate::json::from_payload(&payload)
    }

    /// Signs `value` with a purpose and an expiry (`verifier.generate(value, purpose:,
    /// expires_at:)`), in the envelope `metadata` asks for: Rails 7.1+'s `"data"` one by
    /// default, the legacy one with [`Metadata::legacy_envelope`] (see
    /// [`Metadata`] for which Rails reads which).
    pub fn generate_with<T: Serialize + ?Sized>(
        &self,
        value: &T,
        metadata: &Metadata,
    ) -> Result<String, RailsError> {
        let payload = metadata::wrap(value, metadata, OffsetDateTime::now_utc())?;
        Ok(self.sign_bytes(&payload))
    }

    /// Checks the signature, then the envelope's expiry and purpose, and returns the value
    /// (`verifier.verified(message, purpose:)`). Reads both envelopes and messages without
    /// one; `purpose: None` accepts only messages made without a purpose, as in Rails.
    pub fn verified_for<T: DeserializeOwned>(
        &self,
        message: &str,
        purpose: Option<&str>,
    ) -> Result<T, RailsError> {
        let payload = self.verify_bytes(message)?;
        metadata::unwrap(
            &payload,
            Expected::purpose(purpose),
            OffsetDateTime::now_utc(),
        )
    }

    /// `base64(payload)--digest` for raw payload bytes.
    pub(crate) fn sign_bytes(&self, payload: &[u8]) -> String {
        let data = STANDARD.encode(payload);
        let digest = self.hex_digest(data.as_bytes());
        format!("{data}--{digest}")
    }

    /// The payload bytes of a message whose signature holds.
    pub(crate) fn verify_bytes(&self, message: &str) -> Result<Vec<u8>, RailsError> {
        // The digest is hex, so the last `--` separates it, whatever the data's alphabet.
        let (data, digest) = message.rsplit_once("--").ok_or(RailsError::Malformed)?;
        if data.is_empty() || digest.is_empty() {
            return Err(RailsError::Malformed);
        }
        let expected = self.hex_digest(data.as_bytes());
        if !bool::from(expected.as_bytes().ct_eq(digest.as_bytes())) {
            return Err(RailsError::InvalidSignature);
        }
        STANDARD.decode(data).map_err(|_| RailsError::Malformed)
    }

    fn hex_digest(&self, data: &[u8]) -> String {
        match self.digest {
            HmacDigest::Sha1 => hex_hmac::<Hmac<sha1::Sha1>>(&self.key, data),
            HmacDigest::Sha256 => hex_hmac::<Hmac<sha2::Sha256>>(&self.key, data),
        }
    }
}

fn hex_hmac<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> String {
    let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(data);
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_tampering() {
        let v = MessageVerifier::new(b"k", HmacDigest::Sha1).unwrap();
        let signed = v.generate(&serde_json::json!({"a": 1})).unwrap();
        assert_eq!(
            v.verified::<serde_json::Value>(&signed).unwrap(),
            serde_json::json!({"a": 1})
        );
        let (data, digest) = signed.rsplit_once("--").unwrap();
        let upper = format!("{data}--{}", digest.to_uppercase());
        assert_eq!(
            v.verified::<serde_json::Value>(&upper),
            Err(RailsError::InvalidSignature)
        );
        assert_eq!(
            v.verified::<serde_json::Value>("nodigest"),
            Err(RailsError::Malformed)
        );
        let other = MessageVerifier::new(b"other", HmacDigest::Sha1).unwrap();
        assert_eq!(
            other.verified::<serde_json::Value>(&signed),
            Err(RailsError::InvalidSignature)
        );
    }
}
