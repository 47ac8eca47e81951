//! Rails' `ActiveSupport::KeyGenerator`: every key a Rails app uses is derived from its
//! `secret_key_base` with PBKDF2, a salt per use (`"authenticated encrypted cookie"`,
//! `"signed cookie"`, `"turbo/signed_stream_verifier_key"`, …) and 1,000 iterations.
//!
//! The HMAC digest of PBKDF2 is the one setting that differs between Rails versions: SHA1 up
//! to 6.1, SHA256 from 7.0's defaults (`config.active_support.key_generator_hash_digest_class`).
//! Derivation is deliberately slow, so callers derive each key once (when their cable is
//! built), never per request.

use pbkdf2::pbkdf2_hmac;

use crate::RailsError;

/// The PBKDF2 iterations of Rails' application key generator.
pub const RAILS_ITERATIONS: u32 = 1000;

/// The digest of PBKDF2's HMAC (`key_generator_hash_digest_class`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyDigest {
    /// SHA1: Rails 5.2 to 6.1, and apps on 7.x that kept the old default.
    Sha1,
    /// SHA256: Rails 7.0+ defaults.
    #[default]
    Sha256,
}

/// Derives keys from a Rails app's `secret_key_base`, as `Rails.application.key_generator`.
///
/// ```
/// use actioncable_rails::{KeyDigest, KeyGenerator};
///
/// let keys = KeyGenerator::new("the app's secret_key_base", KeyDigest::Sha256)?;
/// let cookie_key = keys.generate_key("authenticated encrypted cookie", 32);
/// assert_eq!(cookie_key.len(), 32);
/// # Ok::<(), actioncable_rails::RailsError>(())
/// ```
#[derive(Clone)]
pub struct KeyGenerator {
    secret: Vec<u8>,
    digest: KeyDigest,
    iterations: u32,
}

impl std::fmt::Debug for KeyGenerator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyGenerator")
            .field("secret", &"[redacted]")
            .field("digest", &self.digest)
            .field("iterations", &self.iterations)
            .finish()
    }
}

impl KeyGenerator {
    /// A key generator for `secret_key_base` with Rails' 1,000 iterations. An empty secret is
    /// refused.
    pub fn new(secret_key_base: impl AsRef<[u8]>, digest: KeyDigest) -> Result<Self, RailsError> {
        Self::with_iterations(secret_key_base, digest, RAILS_ITERATIONS)
    }

    /// A key generator with another iteration count (`ActiveSupport::KeyGenerator.new(secret,
    /// iterations: n)`).
    pub fn with_iterations(
        secret: impl AsRef<[u8]>,
        digest: KeyDigest,
        iterations: u32,
    ) -> Result<Self, RailsError> {
        let secret = secret.as_ref();
        if secret.is_empty() {
            return Err(RailsError::InvalidKey("secret_key_base is empty"));
        }
        if iterations == 0 {
            return Err(RailsError::InvalidKey(
                "PBKDF2 needs at least one iteration",
            ));
        }
        Ok(KeyGenerator {
            secret: secret.to_vec(),
            digest,
            iterations,
        })
    }

    /// The digest this generator derives with.
    pub fn digest(&self) -> KeyDigest {
        self.digest
    }

    /// Derives `len` bytes for `salt` (`generate_key(salt, len)`; Rails' default length is 64).
    pub fn generate_key(&self, salt: &str, len: usize) -> Vec<u8> {
        let mut key = vec![0u8; len];
        let salt = salt.as_bytes();
        match self.digest {
            KeyDigest::Sha1 => {
                pbkdf2_hmac::<sha1::Sha1>(&self.secret, salt, self.iterations, &mut key)
            }
            KeyDigest::Sha256 => {
                pbkdf2_hmac::<sha2::Sha256>(&self.secret, salt, self.iterations, &mut key)
            }
        }
        key
    }
}
