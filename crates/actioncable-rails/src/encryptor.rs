//! Rails' `ActiveSupport::MessageEncryptor` with AES-256-GCM: what encrypted cookies and the
//! cookie-store session are made with since Rails 5.2 (`use_authenticated_cookie_encryption`).
//!
//! The format (`activesupport/lib/active_support/message_encryptor.rb` of Rails main: lines
//! 312-328 `encrypt`, 330-357 `decrypt`, 371-373 `join_parts`, 385-397 `extract_parts`;
//! `activesupport-6.1.7.10`: lines 163-204 `_encrypt`/`_decrypt`) is
//! `base64(ciphertext)--base64(iv)--base64(auth tag)`, strict Base64, a random 12-byte IV
//! (OpenSSL's `random_iv` for `aes-256-gcm`), a 16-byte tag (`AUTH_TAG_LENGTH`, line 141;
//! shorter tags are refused, as Rails refuses them) and empty authenticated data
//! (`auth_data = ""`, lines 319 and 346). The key is used as given and must be 32 bytes
//! (`MessageEncryptor.key_len("aes-256-gcm")`).
//!
//! AES-256-CBC messages (`base64(ciphertext--iv)--hmac`, Rails before 5.2 and apps that
//! never turned on authenticated encryption) are not read: they are recognised and refused
//! with [`RailsError::LegacyCipher`], so the cause is plain.

use aes_gcm::aead::{AeadCore, AeadInPlace, OsRng};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce, Tag};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;

use crate::RailsError;
use crate::metadata::{self, Expected, Metadata};

const IV_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// Encrypts and decrypts messages as `ActiveSupport::MessageEncryptor.new(key, cipher:
/// "aes-256-gcm", serializer: JSON)`.
///
/// ```
/// use actioncable_rails::{KeyDigest, KeyGenerator, MessageEncryptor, Metadata};
///
/// let keys = KeyGenerator::new("the app's secret_key_base", KeyDigest::Sha256)?;
/// let encryptor = MessageEncryptor::new(keys.generate_key("my salt", 32))?;
/// let secret = encryptor.encrypt_and_sign(&[1, 2, 3], &Metadata::purpose("export"))?;
/// assert_eq!(encryptor.decrypt_and_verify::<Vec<u8>>(&secret, Some("export"))?, [1, 2, 3]);
/// # Ok::<(), actioncable_rails::RailsError>(())
/// ```
#[derive(Clone)]
pub struct MessageEncryptor {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for MessageEncryptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageEncryptor")
            .field("key", &"[redacted]")
            .field("cipher", &"aes-256-gcm")
            .finish()
    }
}

impl MessageEncryptor {
    /// An encryptor for a 32-byte key (as `KeyGenerator::generate_key(salt, 32)` makes).
    pub fn new(key: impl AsRef<[u8]>) -> Result<Self, RailsError> {
        let cipher = Aes256Gcm::new_from_slice(key.as_ref())
            .map_err(|_| RailsError::InvalidKey("an AES-256-GCM key is 32 bytes"))?;
        Ok(MessageEncryptor { cipher })
    }

    /// Encrypts `value` as JSON with a purpose and an expiry (`encrypt_and_sign(value,
    /// purpose:, expires_at:)`), in the envelope `metadata` asks for (see [`Metadata`]).
    pub fn encrypt_and_sign<T: Serialize + ?Sized>(
        &self,
        value: &T,
        metadata: &Metadata,
    ) -> Result<String, RailsError> {
        let payload = metadata::wrap(value, metadata, OffsetDateTime::now_utc())?;
        self.encrypt_bytes(payload)
    }

    /// Decrypts and authenticates, then checks the envelope's expiry and purpose
    /// (`decrypt_and_verify(message, purpose:)`); `purpose: None` accepts only messages
    /// made without a purpose, as in Rails.
    pub fn decrypt_and_verify<T: DeserializeOwned>(
        &self,
        message: &str,
        purpose: Option<&str>,
    ) -> Result<T, RailsError> {
        let parts = Parts::parse(message)?;
        let payload = self.decrypt_parts(&parts)?;
        metadata::unwrap(
            &payload,
            Expected::purpose(purpose),
            OffsetDateTime::now_utc(),
        )
    }

    /// `ciphertext--iv--tag` for raw payload bytes.
    pub(crate) fn encrypt_bytes(&self, mut payload: Vec<u8>) -> Result<String, RailsError> {
        let iv = Aes256Gcm::generate_nonce(&mut OsRng);
        let tag = self
            .cipher
            .encrypt_in_place_detached(&iv, b"", &mut payload)
            .map_err(|_| RailsError::Payload("the message is too long for AES-GCM".into()))?;
        Ok(format!(
            "{}--{}--{}",
            STANDARD.encode(&payload),
            STANDARD.encode(iv),
            STANDARD.encode(tag)
        ))
    }

    /// The payload of parts that authenticate under this key.
    pub(crate) fn decrypt_parts(&self, parts: &Parts) -> Result<Vec<u8>, RailsError> {
        let mut payload = parts.ciphertext.clone();
        self.cipher
            .decrypt_in_place_detached(
                &Nonce::from(parts.iv),
                b"",
                &mut payload,
                &Tag::from(parts.tag),
            )
            .map_err(|_| RailsError::InvalidSignature)?;
        Ok(payload)
    }
}

/// An encrypted message's three parts, decoded once, whichever keys are then tried.
pub(crate) struct Parts {
    ciphertext: Vec<u8>,
    iv: [u8; IV_LEN],
    tag: [u8; TAG_LEN],
}

impl Parts {
    pub(crate) fn parse(message: &str) -> Result<Parts, RailsError> {
        let mut split = message.split("--");
        let (Some(data), Some(iv), tag, None) =
            (split.next(), split.next(), split.next(), split.next())
        else {
            return Err(RailsError::Malformed);
        };
        let Some(tag) = tag else {
            return Err(if is_aes_cbc(data, iv) {
                RailsError::LegacyCipher
            } else {
                RailsError::Malformed
            });
        };
        let decode = |part: &str| STANDARD.decode(part).map_err(|_| RailsError::Malformed);
        Ok(Parts {
            ciphertext: decode(data)?,
            iv: decode(iv)?.try_into().map_err(|_| RailsError::Malformed)?,
            tag: decode(tag)?.try_into().map_err(|_| RailsError::Malformed)?,
        })
    }
}

/// AES-256-CBC's `base64("base64(ciphertext)--base64(16-byte iv)")--hex digest`: a signed
/// message whose data is two Base64 parts, the second a CBC IV.
fn is_aes_cbc(data: &str, digest: &str) -> bool {
    let hex_digest =
        matches!(digest.len(), 40 | 64 | 128) && digest.bytes().all(|b| b.is_ascii_hexdigit());
    let Ok(inner) = STANDARD.decode(data) else {
        return false;
    };
    let Some((ciphertext, iv)) = std::str::from_utf8(&inner)
        .ok()
        .and_then(|inner| inner.split_once("--"))
    else {
        return false;
    };
    hex_digest
        && STANDARD.decode(ciphertext).is_ok()
        && STANDARD.decode(iv).is_ok_and(|iv| iv.len() == 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encryptor(byte: u8) -> MessageEncryptor {
        MessageEncryptor::new([byte; 32]).unwrap()
    }

    #[test]
    fn keys_must_be_32_bytes() {
        assert!(MessageEncryptor::new([0; 31]).is_err());
        assert!(MessageEncryptor::new([0; 64]).is_err());
        assert!(format!("{:?}", encryptor(7)).contains("redacted"));
    }

    #[test]
    fn round_trip_in_rails_shape() {
        let e = encryptor(1);
        let message = e.encrypt_and_sign("hello", &Metadata::new()).unwrap();
        let parts: Vec<_> = message.split("--").collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(STANDARD.decode(parts[1]).unwrap().len(), IV_LEN);
        assert_eq!(STANDARD.decode(parts[2]).unwrap().len(), TAG_LEN);
        assert_eq!(
            e.decrypt_and_verify::<String>(&message, None).unwrap(),
            "hello"
        );
        assert_eq!(
            encryptor(2).decrypt_and_verify::<String>(&message, None),
            Err(RailsError::InvalidSignature)
        );
        // Every message gets its own IV.
        assert_ne!(
            message,
            e.encrypt_and_sign("hello", &Metadata::new()).unwrap()
        );
    }

    #[test]
    fn truncated_or_missing_parts_are_malformed() {
        let e = encryptor(1);
        let message = e.encrypt_and_sign(&1, &Metadata::new()).unwrap();
        let (head, tag) = message.rsplit_once("--").unwrap();
        let short_tag = STANDARD.encode(&STANDARD.decode(tag).unwrap()[..12]);
        for bad in [
            format!("{head}--{short_tag}"),
            format!("{message}--AAAA"),
            "nothing".to_owned(),
            format!("{head}--not base64"),
        ] {
            assert_eq!(
                e.decrypt_and_verify::<u8>(&bad, None),
                Err(RailsError::Malformed),
                "{bad}"
            );
        }
    }

    #[test]
    fn aes_cbc_messages_are_named() {
        let inner = format!("{}--{}", STANDARD.encode([9; 32]), STANDARD.encode([3; 16]));
        let cbc = format!("{}--{}", STANDARD.encode(inner), "ab".repeat(20));
        assert_eq!(
            encryptor(1).decrypt_and_verify::<u8>(&cbc, None),
            Err(RailsError::LegacyCipher)
        );
        // A signed (not encrypted) message is just not in the format.
        let signed = format!("{}--{}", STANDARD.encode("42"), "ab".repeat(20));
        assert_eq!(
            encryptor(1).decrypt_and_verify::<u8>(&signed, None),
            Err(RailsError::Malformed)
        );
    }
}
