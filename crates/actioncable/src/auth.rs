//! Helpers for the two common ways a [`Connection`](crate::Connection) authenticates: a signed
//! or private cookie, and a JWT.
//!
//! Browsers cannot set headers on a WebSocket, so the usual carriers are a cookie set by the
//! app's login (same site) or a token in the query string (`/cable?token=…`). Both helpers sit
//! on well-kept crates (`cookie`'s signed and private jars, `jsonwebtoken`) and never
//! hand-roll cryptography. The JWT verifier pins its algorithms, so `alg: none` and
//! algorithm-confusion tokens are refused.
//!
//! ```
//! use actioncable::{CookieKey, JwtVerifier};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Claims { sub: String, exp: u64 }
//!
//! let secret = "a development secret that is at least 32 bytes long";
//! let jwt = JwtVerifier::hs256(secret.as_bytes());
//! let token = jwt.sign(&Claims { sub: "alice".into(), exp: 4_000_000_000 }).unwrap();
//! assert_eq!(jwt.verify::<Claims>(&token).unwrap().sub, "alice");
//! assert!(jwt.verify::<Claims>("not.a.token").is_err());
//!
//! let key = CookieKey::derive_from_secret(secret).unwrap();
//! let header = key.signed_set_cookie("user", "alice");
//! assert!(header.starts_with("user="));
//!
//! // An HTTP handler reads it back from the request's `Cookie` header:
//! let cookie = header.split(';').next().unwrap();
//! let mut headers = http::HeaderMap::new();
//! headers.insert(http::header::COOKIE, cookie.parse().unwrap());
//! assert_eq!(key.signed_cookie(&headers, "user").as_deref(), Some("alice"));
//! assert!(CookieKey::removal_set_cookie("user").contains("Max-Age=0"));
//! ```

use crate::error::AuthError;
use cookie::{Cookie, CookieJar, Key, SameSite};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt;

/// A key for signed and private cookies, derived from the app's secret.
#[derive(Clone)]
pub struct CookieKey(Key);

impl CookieKey {
    /// Derives the signing and encryption keys from a secret of at least 32 bytes (like Rails'
    /// `secret_key_base`).
    ///
    /// # Errors
    /// Fails when the secret is shorter than 32 bytes.
    pub fn derive_from_secret(secret: &str) -> Result<CookieKey, AuthError> {
        if secret.len() < 32 {
            return Err(AuthError::InvalidKey(
                "the secret must be at least 32 bytes".into(),
            ));
        }
        Ok(CookieKey(Key::derive_from(secret.as_bytes())))
    }

    pub(crate) fn inner(&self) -> &Key {
        &self.0
    }

    /// The value of signed cookie `name` in a request's headers, if its signature verifies.
    /// For plain HTTP handlers; in `Connection::connect` use `ConnectRequest::signed_cookie`.
    pub fn signed_cookie(&self, headers: &http::HeaderMap, name: &str) -> Option<String> {
        let jar = cookie_jar(headers);
        jar.signed(&self.0).get(name).map(|c| c.value().to_owned())
    }

    /// The value of private cookie `name` in a request's headers, if it decrypts.
    pub fn private_cookie(&self, headers: &http::HeaderMap, name: &str) -> Option<String> {
        let jar = cookie_jar(headers);
        jar.private(&self.0).get(name).map(|c| c.value().to_owned())
    }

    /// A `Set-Cookie` header value that deletes cookie `name` (for logout).
    pub fn removal_set_cookie(name: &str) -> String {
        let mut cookie = base_cookie(name, "");
        cookie.make_removal();
        cookie.encoded().to_string()
    }

    /// A `Set-Cookie` header value for a signed cookie (`Path=/; HttpOnly; SameSite=Lax`).
    pub fn signed_set_cookie(&self, name: &str, value: &str) -> String {
        let mut jar = CookieJar::new();
        jar.signed_mut(&self.0).add(base_cookie(name, value));
        jar.delta()
            .next()
            .map(|c| c.encoded().to_string())
            .unwrap_or_default()
    }

    /// A `Set-Cookie` header value for a private (encrypted) cookie (`Path=/; HttpOnly; SameSite=Lax`).
    pub fn private_set_cookie(&self, name: &str, value: &str) -> String {
        let mut jar = CookieJar::new();
        jar.private_mut(&self.0).add(base_cookie(name, value));
        jar.delta()
            .next()
            .map(|c| c.encoded().to_string())
            .unwrap_or_default()
    }
}

/// The cookies of a request's `Cookie` headers (unparsable ones are skipped). Both
/// [`CookieKey`]'s readers and [`ConnectRequest`](crate::ConnectRequest) parse cookies with it.
pub(crate) fn cookie_jar(headers: &http::HeaderMap) -> CookieJar {
    let mut jar = CookieJar::new();
    for value in headers.get_all(http::header::COOKIE) {
        let Ok(value) = value.to_str() else { continue };
        for cookie in cookie::Cookie::split_parse_encoded(value.to_owned()).flatten() {
            jar.add_original(cookie);
        }
    }
    jar
}

fn base_cookie(name: &str, value: &str) -> Cookie<'static> {
    Cookie::build((name.to_owned(), value.to_owned()))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .build()
}

impl fmt::Debug for CookieKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CookieKey(..)")
    }
}

/// Verifies (and, for the app's own login, signs) JWTs with pinned algorithms.
///
/// Expiry (`exp`) is required and checked; `nbf` is checked when present.
#[derive(Clone)]
pub struct JwtVerifier {
    decoding: DecodingKey,
    encoding: Option<EncodingKey>,
    validation: Validation,
    algorithm: Algorithm,
}

impl JwtVerifier {
    /// HMAC-SHA256 with a shared secret: the common choice when the same app issues the token.
    pub fn hs256(secret: &[u8]) -> JwtVerifier {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_nbf = true;
        JwtVerifier {
            decoding: DecodingKey::from_secret(secret),
            encoding: Some(EncodingKey::from_secret(secret)),
            validation,
            algorithm: Algorithm::HS256,
        }
    }

    /// Any key and algorithm `jsonwebtoken` supports (RS256 with a public key, say). Only
    /// `algorithm` is accepted.
    pub fn new(key: DecodingKey, algorithm: Algorithm) -> JwtVerifier {
        let mut validation = Validation::new(algorithm);
        validation.validate_nbf = true;
        JwtVerifier {
            decoding: key,
            encoding: None,
            validation,
            algorithm,
        }
    }

    /// Also requires the `aud` claim to be one of `audiences`.
    #[must_use]
    pub fn audience(mut self, audiences: &[&str]) -> JwtVerifier {
        self.validation.set_audience(audiences);
        self
    }

    /// Allowed clock skew for `exp` and `nbf`, in seconds (default 60).
    #[must_use]
    pub fn leeway(mut self, seconds: u64) -> JwtVerifier {
        self.validation.leeway = seconds;
        self
    }

    /// Verifies the signature, the algorithm and the expiry, and returns the claims.
    ///
    /// # Errors
    /// [`AuthError::InvalidToken`] for any bad token.
    pub fn verify<C: DeserializeOwned>(&self, token: &str) -> Result<C, AuthError> {
        Ok(jsonwebtoken::decode::<C>(token, &self.decoding, &self.validation)?.claims)
    }

    /// Signs claims with this verifier's algorithm (HMAC verifiers only).
    ///
    /// # Errors
    /// Fails for verifiers built from a public key, or when the claims do not serialize.
    pub fn sign<C: Serialize>(&self, claims: &C) -> Result<String, AuthError> {
        let key = self
            .encoding
            .as_ref()
            .ok_or_else(|| AuthError::InvalidKey("this verifier holds no signing key".into()))?;
        Ok(jsonwebtoken::encode(
            &Header::new(self.algorithm),
            claims,
            key,
        )?)
    }
}

impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use serde::Deserialize;

    const SECRET: &str = "0123456789abcdef0123456789abcdef-test";

    #[derive(Serialize, Deserialize, Debug)]
    struct Claims {
        sub: String,
        exp: u64,
    }

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    #[test]
    fn rejects_expired_wrong_key_and_none_tokens() {
        let jwt = JwtVerifier::hs256(SECRET.as_bytes());
        let expired = jwt
            .sign(&Claims {
                sub: "a".into(),
                exp: now() - 3600,
            })
            .unwrap();
        assert!(jwt.verify::<Claims>(&expired).is_err());

        let other = JwtVerifier::hs256(b"another secret of sufficient length!!");
        let forged = other
            .sign(&Claims {
                sub: "a".into(),
                exp: now() + 3600,
            })
            .unwrap();
        assert!(jwt.verify::<Claims>(&forged).is_err());

        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let none = format!(
            "{}.{}.",
            b64.encode(r#"{"alg":"none","typ":"JWT"}"#),
            b64.encode(format!(r#"{{"sub":"a","exp":{}}}"#, now() + 3600))
        );
        assert!(jwt.verify::<Claims>(&none).is_err());

        let good = jwt
            .sign(&Claims {
                sub: "a".into(),
                exp: now() + 3600,
            })
            .unwrap();
        assert_eq!(jwt.verify::<Claims>(&good).unwrap().sub, "a");
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(CookieKey::derive_from_secret("short").is_err());
    }
}
