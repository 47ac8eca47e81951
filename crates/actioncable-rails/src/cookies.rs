//! Rails' `cookies.encrypted[...]` and `cookies.signed[...]`, read from (and written for) the
//! request's `Cookie` headers with the app's `secret_key_base`.
//!
//! What Rails does, from `actionpack/lib/action_dispatch/middleware/cookies.rb` (line numbers
//! of Rails main 2a2db1e, then of Debian's `actionpack-6.1.7.10`, which agree on all of it):
//!
//! - **Encrypted** (`EncryptedKeyRotatingCookieJar`, lines 662-665 / 659-662, with
//!   `use_authenticated_cookie_encryption`, on from `load_defaults 5.2`): `MessageEncryptor`
//!   with AES-256-GCM (`encrypted_cookie_cipher`'s default) and the key
//!   `key_generator.generate_key("authenticated encrypted cookie", 32)`.
//! - **Signed** (`SignedKeyRotatingCookieJar`, lines 633-634 / 630-631): `MessageVerifier`
//!   with the key `generate_key("signed cookie")` (64 bytes) and `signed_cookie_digest`, SHA1
//!   unless the app sets it (lines 314-316 / 279-281).
//! - The salts are `config.action_dispatch.*_cookie_salt`'s defaults
//!   (`actionpack/lib/action_dispatch/railtie.rb`, lines 27-30); the key generator is
//!   `Rails.application.key_generator` (`railties/lib/rails/application.rb`, line 176), PBKDF2
//!   with 1,000 iterations and `key_generator_hash_digest_class` ([`KeyDigest`]).
//! - The jar serializes the value itself (`cookies_serializer`: JSON here) and hands the
//!   string to an encryptor/verifier built with `NullSerializer` (line 572 / 574), so the
//!   metadata is always in the legacy envelope: `{"_rails":{"message":"<Base64 of the
//!   JSON>","exp":…,"pur":"cookie.<name>"}}` (see [`Metadata`](crate::Metadata)); the
//!   purpose is there when `use_cookies_with_metadata` (6.0's defaults) is on (lines 554-558 /
//!   533-537).
//! - Reading (`AbstractCookieJar#[]`, lines 519-529 / 494-503) tries the purpose
//!   `cookie.<name>` first, then none: cookies written without metadata (Rails 5.2) are read
//!   too; a cookie presented under another name is not.
//! - Rotations (`cookies_rotations`): the current key first, then each rotation in order. A
//!   rotation inherits the current options, the signed digest among them, unless given its own
//!   (`activesupport/lib/active_support/messages/rotator.rb`, `build_rotation`, lines 55-57 /
//!   6.1's 41-43).
//! - Values are escaped with `Rack::Utils.escape` when set (line 450-451, `+` `/` `=` become
//!   `%2B` `%2F` `%3D`) and unescaped by `Rack::Utils.parse_cookies_header` when read
//!   (`rack-2.2.22/lib/rack/utils.rb`, lines 255-266: `%XX`, and `+` as a space; a value with a
//!   stray `%` is kept as is; the first cookie of a name wins). Rails refuses to set a cookie
//!   whose name and value pass 4096 bytes (`check_for_overflow!`, lines 618-624).
//!
//! Keys are derived once, when [`RailsCookies`] is built: PBKDF2 is slow on purpose.

use std::borrow::Cow;
use std::time::SystemTime;

use http::HeaderMap;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::encryptor::{MessageEncryptor, Parts};
use crate::metadata::{self, Expected, Metadata};
use crate::{HmacDigest, KeyDigest, KeyGenerator, MessageVerifier, RailsError, RailsSession};

/// `config.action_dispatch.authenticated_encrypted_cookie_salt`'s default.
const ENCRYPTED_SALT: &str = "authenticated encrypted cookie";
/// `config.action_dispatch.signed_cookie_salt`'s default.
const SIGNED_SALT: &str = "signed cookie";
/// `ActionDispatch::Cookies::MAX_COOKIE_SIZE`.
const MAX_COOKIE_SIZE: usize = 4096;

/// A Rails app's cookie keys, derived once from its `secret_key_base`, for reading its
/// encrypted and signed cookies and its cookie-store session.
///
/// ```
/// use actioncable_rails::{HmacDigest, KeyDigest, KeyGenerator, RailsCookies};
///
/// // An app on Rails 7+ defaults, moved to a new secret; cookies made before still read.
/// let old = KeyGenerator::new("the old secret_key_base", KeyDigest::Sha1)?;
/// let cookies = RailsCookies::new("the secret_key_base", KeyDigest::Sha256)?
///     .signed_cookie_digest(HmacDigest::Sha256)
///     .rotate(&old);
///
/// let value = cookies.encrypt_cookie("user_id", &42, None)?;
/// let mut headers = http::HeaderMap::new();
/// headers.insert("cookie", format!("user_id={value}").parse().unwrap());
/// assert_eq!(cookies.jar(&headers).encrypted::<u64>("user_id")?, Some(42));
/// assert_eq!(cookies.jar(&headers).encrypted::<u64>("other")?, None);
/// # Ok::<(), actioncable_rails::RailsError>(())
/// ```
#[derive(Clone)]
pub struct RailsCookies {
    /// The current key first, then the rotations in order.
    encryptors: Vec<MessageEncryptor>,
    /// The signed-cookie keys, current first; `None` digest: `signed_digest`.
    signed_keys: Vec<(Vec<u8>, Option<HmacDigest>)>,
    signed_digest: HmacDigest,
    /// `signed_keys` as verifiers, rebuilt when the digest changes.
    verifiers: Vec<MessageVerifier>,
}

impl std::fmt::Debug for RailsCookies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RailsCookies")
            .field("keys", &"[redacted]")
            .field("signed_cookie_digest", &self.signed_digest)
            .field("rotations", &(self.encryptors.len() - 1))
            .finish()
    }
}

impl RailsCookies {
    /// Keys for `secret_key_base`, derived with `digest` ([`KeyDigest::Sha256`] from Rails
    /// 7.0's defaults, [`KeyDigest::Sha1`] before). Signed cookies use SHA1 until
    /// [`signed_cookie_digest`](Self::signed_cookie_digest) says otherwise.
    pub fn new(secret_key_base: impl AsRef<[u8]>, digest: KeyDigest) -> Result<Self, RailsError> {
        Ok(Self::from_key_generator(&KeyGenerator::new(
            secret_key_base,
            digest,
        )?))
    }

    /// Keys from an existing key generator.
    pub fn from_key_generator(keys: &KeyGenerator) -> Self {
        let (encryptor, signed_key) = derive(keys);
        let mut cookies = RailsCookies {
            encryptors: vec![encryptor],
            signed_keys: vec![(signed_key, None)],
            signed_digest: HmacDigest::Sha1,
            verifiers: Vec::new(),
        };
        cookies.build_verifiers();
        cookies
    }

    /// The app's `config.action_dispatch.signed_cookie_digest` (SHA1 when unset, as in Rails).
    /// Rotations added with [`rotate`](Self::rotate) sign with it too, as Rails' do unless
    /// given their own `digest:`.
    #[must_use]
    pub fn signed_cookie_digest(mut self, digest: HmacDigest) -> Self {
        self.signed_digest = digest;
        self.build_verifiers();
        self
    }

    /// Also accepts cookies made with another key generator: an old `secret_key_base`, or
    /// the old key digest after moving to SHA256 (`cookies_rotations.rotate :encrypted,
    /// old_key` and `rotate :signed, old_key`, as the Rails 7.0 upgrade guide does it).
    /// Tried after the current keys, in the order added. Writing always uses the current keys.
    #[must_use]
    pub fn rotate(mut self, old: &KeyGenerator) -> Self {
        let (encryptor, signed_key) = derive(old);
        self.encryptors.push(encryptor);
        self.signed_keys.push((signed_key, None));
        self.build_verifiers();
        self
    }

    /// Also accepts signed cookies made with the current key and an old signed-cookie digest
    /// (`cookies_rotations.rotate :signed, digest: "SHA1"` after changing
    /// `signed_cookie_digest`).
    #[must_use]
    pub fn rotate_signed_digest(mut self, old: HmacDigest) -> Self {
        let current = self.signed_keys[0].0.clone();
        self.signed_keys.push((current, Some(old)));
        self.build_verifiers();
        self
    }

    /// The cookies of a request, as Rails' `cookies` sees them.
    pub fn jar<'a>(&'a self, headers: &'a HeaderMap) -> RailsCookieJar<'a> {
        RailsCookieJar {
            cookies: self,
            headers,
        }
    }

    /// `cookies.encrypted[name] = { value:, expires: }`: the value to set, already escaped as
    /// Rack escapes it (`Set-Cookie: <name>=<this>`). `expires_at` goes in the message, where
    /// Rails checks it; give the `Set-Cookie` the same `Expires`, and its `Path=/`, `HttpOnly`
    /// and `SameSite` as the app would.
    pub fn encrypt_cookie<T: Serialize + ?Sized>(
        &self,
        name: &str,
        value: &T,
        expires_at: Option<SystemTime>,
    ) -> Result<String, RailsError> {
        let payload = cookie_payload(name, value, expires_at)?;
        let message = self.encryptors[0].encrypt_bytes(payload)?;
        checked_cookie(name, &message)
    }

    /// `cookies.signed[name] = { value:, expires: }`: as
    /// [`encrypt_cookie`](Self::encrypt_cookie), signed with `signed_cookie_digest`.
    pub fn sign_cookie<T: Serialize + ?Sized>(
        &self,
        name: &str,
        value: &T,
        expires_at: Option<SystemTime>,
    ) -> Result<String, RailsError> {
        let payload = cookie_payload(name, value, expires_at)?;
        let message = self.verifiers[0].sign_bytes(&payload);
        checked_cookie(name, &message)
    }

    fn build_verifiers(&mut self) {
        self.verifiers = self
            .signed_keys
            .iter()
            .map(|(key, digest)| {
                MessageVerifier::new(key, digest.unwrap_or(self.signed_digest))
                    .unwrap_or_else(|_| unreachable!("signed-cookie keys are 64 bytes"))
            })
            .collect();
    }

    fn decrypt(&self, message: &str) -> Result<Vec<u8>, RailsError> {
        let parts = Parts::parse(message)?;
        let mut last = RailsError::InvalidSignature;
        for encryptor in &self.encryptors {
            match encryptor.decrypt_parts(&parts) {
                Ok(payload) => return Ok(payload),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn verify(&self, message: &str) -> Result<Vec<u8>, RailsError> {
        let mut last = RailsError::InvalidSignature;
        for verifier in &self.verifiers {
            match verifier.verify_bytes(message) {
                Ok(payload) => return Ok(payload),
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}

/// The encryptor and the signed-cookie key of one key generator.
fn derive(keys: &KeyGenerator) -> (MessageEncryptor, Vec<u8>) {
    let encryptor = MessageEncryptor::new(keys.generate_key(ENCRYPTED_SALT, 32))
        .unwrap_or_else(|_| unreachable!("generate_key(_, 32) makes a 32-byte key"));
    (encryptor, keys.generate_key(SIGNED_SALT, 64))
}

/// The cookie jar's plaintext: the JSON value in the legacy envelope, purpose `cookie.<name>`.
fn cookie_payload<T: Serialize + ?Sized>(
    name: &str,
    value: &T,
    expires_at: Option<SystemTime>,
) -> Result<Vec<u8>, RailsError> {
    let mut meta = Metadata::purpose(format!("cookie.{name}")).legacy_envelope();
    if let Some(at) = expires_at {
        meta = meta.expires_at(at);
    }
    metadata::wrap(value, &meta, OffsetDateTime::now_utc())
}

/// Rails' `check_for_overflow!` (name and value over 4096 bytes), then Rack's escaping.
fn checked_cookie(name: &str, message: &str) -> Result<String, RailsError> {
    let size = name.len() + message.len();
    if size > MAX_COOKIE_SIZE {
        return Err(RailsError::CookieOverflow(size));
    }
    Ok(rack_escape(message))
}

/// A request's cookies, read with a [`RailsCookies`]' keys. `Ok(None)`: no such cookie.
#[derive(Clone, Copy)]
pub struct RailsCookieJar<'a> {
    cookies: &'a RailsCookies,
    headers: &'a HeaderMap,
}

impl std::fmt::Debug for RailsCookieJar<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Cookie values are credentials: none are shown.
        f.debug_struct("RailsCookieJar").finish_non_exhaustive()
    }
}

impl RailsCookieJar<'_> {
    /// `cookies.encrypted[name]`: decrypted, authenticated, its purpose and expiry checked,
    /// its JSON value as `T`.
    pub fn encrypted<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, RailsError> {
        let Some(message) = self.raw(name)? else {
            return Ok(None);
        };
        let payload = self.cookies.decrypt(&message)?;
        unwrap_cookie(name, &payload).map(Some)
    }

    /// `cookies.signed[name]`: its signature, purpose and expiry checked, its JSON value as `T`.
    pub fn signed<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, RailsError> {
        let Some(message) = self.raw(name)? else {
            return Ok(None);
        };
        let payload = self.cookies.verify(&message)?;
        unwrap_cookie(name, &payload).map(Some)
    }

    /// The cookie-store session (`config.session_store :cookie_store, key: cookie_name`): an
    /// encrypted cookie holding the session hash.
    pub fn session(&self, cookie_name: &str) -> Result<Option<RailsSession>, RailsError> {
        Ok(self
            .encrypted::<Map<String, Value>>(cookie_name)?
            .map(RailsSession::from_map))
    }

    /// The unescaped value of the first cookie named `name`.
    fn raw(&self, name: &str) -> Result<Option<String>, RailsError> {
        let Some(value) = find_cookie(self.headers, name) else {
            return Ok(None);
        };
        match rack_unescape(value) {
            Cow::Borrowed(bytes) => std::str::from_utf8(bytes).map(|s| Some(s.to_owned())),
            Cow::Owned(bytes) => String::from_utf8(bytes)
                .map(Some)
                .map_err(|e| e.utf8_error()),
        }
        .map_err(|_| RailsError::Malformed)
    }
}

fn unwrap_cookie<T: DeserializeOwned>(name: &str, payload: &[u8]) -> Result<T, RailsError> {
    let purpose = format!("cookie.{name}");
    metadata::unwrap(
        payload,
        Expected::cookie(&purpose),
        OffsetDateTime::now_utc(),
    )
}

/// `Rack::Utils.parse_cookies_header`: pairs split on `;` and the spaces after it, the name
/// taken as is, the first of a name wins. A pair without `=` has no value (`None`), as in Rack.
fn find_cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h [u8]> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .flat_map(|header| header.as_bytes().split(|&b| b == b';'))
        .map(|pair| {
            let start = pair.iter().position(|&b| b != b' ').unwrap_or(pair.len());
            let pair = &pair[start..];
            match pair.iter().position(|&b| b == b'=') {
                Some(eq) => (&pair[..eq], Some(&pair[eq + 1..])),
                None => (pair, None),
            }
        })
        .find(|(key, _)| !key.is_empty() && *key == name.as_bytes())
        .and_then(|(_, value)| value)
}

/// `Rack::Utils.escape` (`URI.encode_www_form_component`): all but `*-._` and
/// alphanumerics as `%XX`, a space as `+`.
pub(crate) fn rack_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    for &b in value.as_bytes() {
        match b {
            b'*' | b'-' | b'.' | b'_' | b'0'..=b'9' | b'A'..=b'Z' | b'a'..=b'z' => {
                out.push(char::from(b))
            }
            b' ' => out.push('+'),
            _ => {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                out.push('%');
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 15)]));
            }
        }
    }
    out
}

/// `Rack::Utils.unescape` (`URI.decode_www_form_component`): `%XX` as the byte, `+` as a
/// space; a `%` without two hex digits makes Rack keep the value as it came.
fn rack_unescape(value: &[u8]) -> Cow<'_, [u8]> {
    let hex = |b: u8| char::from(b).to_digit(16);
    let well_formed = value.iter().enumerate().all(|(i, &b)| {
        b != b'%'
            || (value.get(i + 1).copied().and_then(hex).is_some()
                && value.get(i + 2).copied().and_then(hex).is_some())
    });
    if !well_formed || !value.iter().any(|&b| b == b'%' || b == b'+') {
        return Cow::Borrowed(value);
    }
    let mut out = Vec::with_capacity(value.len());
    let mut i = 0;
    while i < value.len() {
        match value[i] {
            b'%' => {
                let digit = |j: usize| hex(value[j]).unwrap_or(0) as u8;
                out.push(digit(i + 1) << 4 | digit(i + 2));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(cookies: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for c in cookies {
            h.append(http::header::COOKIE, c.parse().unwrap());
        }
        h
    }

    #[test]
    fn escapes_like_rack() {
        assert_eq!(rack_escape("aZ09*-._ +/=~é"), "aZ09*-._+%2B%2F%3D%7E%C3%A9");
        assert_eq!(&*rack_unescape(b"a%2Bb%2fc+d"), b"a+b/c d");
        assert_eq!(&*rack_unescape(b"plain"), b"plain");
        // A stray `%`: Rack's unescape raises and parse_cookies_header keeps the raw value.
        assert_eq!(&*rack_unescape(b"a%2B%zz+"), b"a%2B%zz+");
        assert_eq!(&*rack_unescape(b"a%2"), b"a%2");
    }

    #[test]
    fn finds_cookies_like_rack() {
        let h = headers(&["a=1;  b=x=y;c", "a=2; d=4"]);
        assert_eq!(find_cookie(&h, "a"), Some(&b"1"[..]));
        assert_eq!(find_cookie(&h, "b"), Some(&b"x=y"[..]));
        assert_eq!(find_cookie(&h, "c"), None);
        assert_eq!(find_cookie(&h, "d"), Some(&b"4"[..]));
        assert_eq!(find_cookie(&h, "e"), None);
        assert_eq!(find_cookie(&h, ""), None);
    }

    #[test]
    fn keys_are_redacted_and_derived_once() {
        let cookies = RailsCookies::new("s3cr3t", KeyDigest::Sha1).unwrap();
        let debug = format!("{cookies:?}");
        assert!(
            debug.contains("redacted") && !debug.contains("s3cr3t"),
            "{debug}"
        );
        let jar_debug = format!("{:?}", cookies.jar(&headers(&["a=hidden"])));
        assert!(!jar_debug.contains("hidden"), "{jar_debug}");
    }

    #[test]
    fn round_trips_with_rotations_and_digests() {
        let old = KeyGenerator::new("old", KeyDigest::Sha1).unwrap();
        let before = RailsCookies::from_key_generator(&old);
        let after = RailsCookies::new("new", KeyDigest::Sha256)
            .unwrap()
            .signed_cookie_digest(HmacDigest::Sha256);
        let enc = before.encrypt_cookie("u", &1, None).unwrap();
        let sig = before.sign_cookie("u", &1, None).unwrap();
        let h = headers(&[&format!("e={enc}; s={sig}")]);
        // Read under another name: the purpose differs.
        assert_eq!(
            before.jar(&h).encrypted::<u8>("e"),
            Err(RailsError::WrongPurpose)
        );
        let h = headers(&[&format!("u={enc}")]);
        assert_eq!(
            after.jar(&h).encrypted::<u8>("u"),
            Err(RailsError::InvalidSignature)
        );
        let rotated = after.clone().rotate(&old);
        assert_eq!(rotated.jar(&h).encrypted::<u8>("u"), Ok(Some(1)));
        let h = headers(&[&format!("u={sig}")]);
        assert_eq!(
            after.jar(&h).signed::<u8>("u"),
            Err(RailsError::InvalidSignature)
        );
        // The rotation inherits the current signed digest, so SHA1 must be rotated in too.
        assert_eq!(
            after.clone().rotate(&old).jar(&h).signed::<u8>("u"),
            Err(RailsError::InvalidSignature)
        );
        let both = after.rotate(&old).signed_cookie_digest(HmacDigest::Sha1);
        assert_eq!(both.jar(&h).signed::<u8>("u"), Ok(Some(1)));
    }

    #[test]
    fn signed_digest_rotation_keeps_the_key() {
        let sha1 = RailsCookies::new("k", KeyDigest::Sha256).unwrap();
        let sha256 = sha1.clone().signed_cookie_digest(HmacDigest::Sha256);
        let h = headers(&[&format!("u={}", sha1.sign_cookie("u", "v", None).unwrap())]);
        assert!(sha256.jar(&h).signed::<String>("u").is_err());
        let rotated = sha256.rotate_signed_digest(HmacDigest::Sha1);
        assert_eq!(
            rotated.jar(&h).signed::<String>("u"),
            Ok(Some("v".to_owned()))
        );
    }

    #[test]
    fn oversized_cookies_are_refused() {
        let cookies = RailsCookies::new("k", KeyDigest::Sha256).unwrap();
        let big = "x".repeat(3000);
        assert!(matches!(
            cookies.encrypt_cookie("big", &big, None),
            Err(RailsError::CookieOverflow(_))
        ));
    }

    #[test]
    fn empty_and_undecodable_values_are_errors_not_absent() {
        let cookies = RailsCookies::new("k", KeyDigest::Sha256).unwrap();
        let h = headers(&["u=; v=%FF%FE"]);
        assert_eq!(
            cookies.jar(&h).encrypted::<u8>("u"),
            Err(RailsError::Malformed)
        );
        assert_eq!(
            cookies.jar(&h).signed::<u8>("v"),
            Err(RailsError::Malformed)
        );
    }
}
