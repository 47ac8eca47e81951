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
//! let jwt = JwtVerifier::hs256(secret.as_bytes()).unwrap();
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
use serde_json::Value;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
/// Verification checks the signature and the algorithm (so `alg: none` and
/// algorithm-confusion tokens are refused), requires `exp` (seconds since the Unix epoch) and
/// checks it, checks `nbf` when present, and `aud` when [`audience`](Self::audience) is set.
/// Expiry and not-before allow a clock skew of 60 s by default (`jsonwebtoken`'s default;
/// [`leeway`](Self::leeway) changes it).
///
/// [`sign`](Self::sign) refuses claims this verifier would refuse (no `exp`, an `exp` already
/// past, a missing audience), so a login cannot hand out a token that every connection then
/// rejects.
///
/// ```
/// use actioncable::JwtVerifier;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Claims { sub: String, exp: u64 }
///
/// let jwt = JwtVerifier::hs256(b"a secret of at least thirty-two bytes!!").unwrap();
/// let exp = 4_000_000_000; // seconds since the Unix epoch: now + the token's lifetime
/// let token = jwt.sign(&Claims { sub: "alice".into(), exp }).unwrap();
/// assert_eq!(jwt.verify::<Claims>(&token).unwrap().sub, "alice");
///
/// // Claims without `exp` would never verify, so they are not signed either.
/// #[derive(Serialize)]
/// struct NoExpiry { sub: String }
/// assert!(jwt.sign(&NoExpiry { sub: "alice".into() }).is_err());
/// // Neither is a secret too short to be safe.
/// assert!(JwtVerifier::hs256(b"short").is_err());
/// ```
#[derive(Clone)]
pub struct JwtVerifier {
    decoding: DecodingKey,
    encoding: Option<EncodingKey>,
    validation: Validation,
    algorithm: Algorithm,
    audiences: Vec<String>,
}

/// The shortest HMAC secret accepted, as for [`CookieKey`]: 32 bytes (256 bits, HS256's
/// output size).
const MIN_SECRET_BYTES: usize = 32;

/// An `exp` beyond this (year 10000) is not in seconds: milliseconds, most likely.
const LATEST_EXP: u64 = 253_402_300_800;

impl JwtVerifier {
    /// HMAC-SHA256 with a shared secret: the common choice when the same app issues the token.
    ///
    /// # Errors
    /// [`AuthError::InvalidKey`] when the secret is shorter than 32 bytes.
    pub fn hs256(secret: &[u8]) -> Result<JwtVerifier, AuthError> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(AuthError::InvalidKey(format!(
                "an HMAC secret must be at least {MIN_SECRET_BYTES} bytes (this one has {})",
                secret.len()
            )));
        }
        let mut verifier = JwtVerifier::new(DecodingKey::from_secret(secret), Algorithm::HS256);
        verifier.encoding = Some(EncodingKey::from_secret(secret));
        Ok(verifier)
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
            audiences: Vec::new(),
        }
    }

    /// Also requires the `aud` claim to be one of `audiences`.
    #[must_use]
    pub fn audience(mut self, audiences: &[&str]) -> JwtVerifier {
        self.validation.set_audience(audiences);
        self.audiences = audiences.iter().map(|a| (*a).to_owned()).collect();
        self
    }

    /// Allowed clock skew for `exp` and `nbf`, in seconds (default 60, `jsonwebtoken`'s).
    #[must_use]
    pub fn leeway(mut self, seconds: u64) -> JwtVerifier {
        self.validation.leeway = seconds;
        self
    }

    /// Verifies the signature, the algorithm and the expiry, and returns the claims.
    ///
    /// # Errors
    /// [`AuthError::InvalidToken`] for any bad token; its message names what was wrong
    /// (`ExpiredSignature`, `InvalidSignature`, `MissingRequiredClaim("exp")`, …), never the
    /// token.
    pub fn verify<C: DeserializeOwned>(&self, token: &str) -> Result<C, AuthError> {
        Ok(jsonwebtoken::decode::<C>(token, &self.decoding, &self.validation)?.claims)
    }

    /// [`verify`](Self::verify), plus the moment the token stops verifying (`exp` plus the
    /// [`leeway`](Self::leeway)): give it to [`Identity::with_expiry`](crate::Identity::with_expiry)
    /// and the connection is closed with `token_expired` then, rather than outliving its token.
    ///
    /// ```
    /// use actioncable::{Identity, JwtVerifier};
    /// use serde::{Deserialize, Serialize};
    /// #[derive(Serialize, Deserialize)]
    /// struct Claims { sub: String, exp: u64 }
    /// let jwt = JwtVerifier::hs256(b"a-secret-of-at-least-32-bytes-long!!").unwrap().leeway(0);
    /// let token = jwt.sign(&Claims { sub: "alice".into(), exp: 4_000_000_000 }).unwrap();
    /// let (claims, expiry) = jwt.verify_expiring::<Claims>(&token).unwrap();
    /// let identity = Identity::new("current_user", claims.sub).with_expiry(expiry);
    /// assert_eq!(expiry, std::time::UNIX_EPOCH + std::time::Duration::from_secs(4_000_000_000));
    /// ```
    ///
    /// # Errors
    /// As [`verify`](Self::verify).
    pub fn verify_expiring<C: DeserializeOwned>(
        &self,
        token: &str,
    ) -> Result<(C, SystemTime), AuthError> {
        let claims = self.verify::<serde_json::Map<String, Value>>(token)?;
        // Validation requires a numeric `exp`: whole seconds (a fraction is cut), held to the
        // year 10000 so that the sum below cannot overflow whatever a token says.
        let exp = claims.get("exp").and_then(Value::as_f64).unwrap_or(0.0);
        let seconds =
            (exp.max(0.0) as u64).min(LATEST_EXP) + self.validation.leeway.min(LATEST_EXP);
        let expiry = UNIX_EPOCH + Duration::from_secs(seconds);
        let claims = serde_json::from_value(Value::Object(claims))
            .map_err(|e| AuthError::InvalidToken(e.into()))?;
        Ok((claims, expiry))
    }

    /// Signs claims with this verifier's algorithm (HMAC verifiers only), after checking that
    /// [`verify`](Self::verify) would accept them: they must be a JSON object with a numeric
    /// `exp` in seconds since the Unix epoch, not already past, a numeric `nbf` if any, and an
    /// `aud` among the configured audiences if there are any.
    ///
    /// # Errors
    /// [`AuthError::InvalidClaims`] for claims that would never verify, [`AuthError::InvalidKey`]
    /// for verifiers built from a public key, [`AuthError::InvalidToken`] when the claims do not
    /// serialize.
    pub fn sign<C: Serialize>(&self, claims: &C) -> Result<String, AuthError> {
        let key = self
            .encoding
            .as_ref()
            .ok_or_else(|| AuthError::InvalidKey("this verifier holds no signing key".into()))?;
        let value = serde_json::to_value(claims)
            .map_err(|e| AuthError::InvalidClaims(format!("they do not serialize: {e}")))?;
        self.check_claims(&value)?;
        Ok(jsonwebtoken::encode(
            &Header::new(self.algorithm),
            &value,
            key,
        )?)
    }

    /// Why `verify` would refuse these claims whatever the signature, if it would.
    fn check_claims(&self, claims: &serde_json::Value) -> Result<(), AuthError> {
        let invalid = |why: String| Err(AuthError::InvalidClaims(why));
        let Some(map) = claims.as_object() else {
            return invalid("they must serialize to a JSON object".into());
        };
        let Some(exp) = map.get("exp") else {
            return invalid(
                "`exp` is missing: verification requires it (seconds since the Unix epoch)".into(),
            );
        };
        let Some(exp) = exp.as_u64() else {
            return invalid(format!(
                "`exp` must be a whole number of seconds since the Unix epoch, not {exp}"
            ));
        };
        if exp > LATEST_EXP {
            return invalid(format!(
                "`exp` {exp} is after the year 10000: seconds since the Unix epoch are expected, not milliseconds"
            ));
        }
        let now = jsonwebtoken::get_current_timestamp();
        if exp.saturating_add(self.validation.leeway) < now {
            return invalid(format!(
                "`exp` {exp} is already past (now is {now}): set it to now + the token's lifetime"
            ));
        }
        if map.get("nbf").is_some_and(|nbf| !nbf.is_u64()) {
            return invalid("`nbf` must be a whole number of seconds since the Unix epoch".into());
        }
        if !self.audiences.is_empty() {
            let matches = |v: &serde_json::Value| {
                v.as_str()
                    .is_some_and(|a| self.audiences.iter().any(|x| x == a))
            };
            let ok = match map.get("aud") {
                Some(serde_json::Value::Array(list)) => list.iter().any(matches),
                Some(one) => matches(one),
                None => false,
            };
            if !ok {
                return invalid(format!(
                    "`aud` must name one of the verifier's audiences {:?}",
                    self.audiences
                ));
            }
        }
        Ok(())
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
        let jwt = JwtVerifier::hs256(SECRET.as_bytes()).unwrap();
        let expired = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &Claims {
                sub: "a".into(),
                exp: now() - 3600,
            },
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap();
        assert!(jwt.verify::<Claims>(&expired).is_err());

        let other = JwtVerifier::hs256(b"another secret of sufficient length!!").unwrap();
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
        assert!(matches!(
            JwtVerifier::hs256(&[7; 31]),
            Err(AuthError::InvalidKey(_))
        ));
        assert!(JwtVerifier::hs256(&[7; 32]).is_ok());
    }

    #[test]
    fn sign_refuses_claims_that_verify_would_refuse() {
        use serde_json::json;
        let jwt = JwtVerifier::hs256(SECRET.as_bytes()).unwrap();
        let refused = |jwt: &JwtVerifier, claims: serde_json::Value| match jwt.sign(&claims) {
            Err(AuthError::InvalidClaims(why)) => why,
            other => panic!("{claims} was not refused: {other:?}"),
        };
        let exp = now() + 3600;
        assert!(refused(&jwt, json!({ "sub": "a" })).contains("`exp` is missing"));
        assert!(refused(&jwt, json!({ "sub": "a", "exp": "tomorrow" })).contains("whole number"));
        assert!(refused(&jwt, json!({ "sub": "a", "exp": 3600 })).contains("already past"));
        assert!(refused(&jwt, json!({ "sub": "a", "exp": exp * 1000 })).contains("milliseconds"));
        assert!(refused(&jwt, json!(["a"])).contains("JSON object"));
        assert!(refused(&jwt, json!({ "exp": exp, "nbf": "now" })).contains("`nbf`"));

        // Within the leeway an `exp` just past still verifies, so it is still signed.
        let token = jwt.sign(&json!({ "sub": "a", "exp": now() - 10 })).unwrap();
        assert_eq!(jwt.verify::<Claims>(&token).unwrap().sub, "a");

        // With audiences, `aud` must name one of them.
        let jwt = jwt.audience(&["cable"]);
        assert!(refused(&jwt, json!({ "exp": exp })).contains("`aud`"));
        assert!(refused(&jwt, json!({ "exp": exp, "aud": "other" })).contains("`aud`"));
        let token = jwt
            .sign(&json!({ "sub": "a", "exp": exp, "aud": ["x", "cable"] }))
            .unwrap();
        assert_eq!(jwt.verify::<Claims>(&token).unwrap().sub, "a");
    }
}
