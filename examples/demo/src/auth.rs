//! Who is asking: login tokens (JWT), the signed `user` cookie, and the cable's
//! [`Connection`] (Rails' `ApplicationCable::Connection` with `identified_by :current_user`).
//!
//! Browsers cannot put headers on a WebSocket, so the cable takes `?token=<JWT>` or the signed
//! cookie that `POST /login` sets; the HTTP API takes `Authorization: Bearer <JWT>` or the
//! cookie. Tokens and cookie values are never logged.

use crate::validate::is_valid_name;
use actioncable::{ConnectRequest, Connection, Identity, Reject, async_trait};
use actioncable::{CookieKey, JwtVerifier};
use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The identifier name channels read the user from (`identified_by :current_user`).
pub const CURRENT_USER: &str = "current_user";
/// The signed cookie `POST /login` sets.
pub const USER_COOKIE: &str = "user";
/// How long a login token is valid.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);

/// The login token's claims.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    iat: u64,
    exp: u64,
}

/// Issues and checks credentials. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Auth {
    jwt: JwtVerifier,
    cookie_key: CookieKey,
}

impl Auth {
    /// Keys derived from `SECRET_KEY_BASE`: tokens are HS256 with the secret itself, cookies
    /// are signed with the key `CookieKey` derives from it.
    ///
    /// # Errors
    /// A secret shorter than 32 bytes.
    pub fn new(secret_key_base: &str) -> anyhow::Result<Auth> {
        let cookie_key = CookieKey::derive_from_secret(secret_key_base)
            .context("cannot derive the cookie key from SECRET_KEY_BASE")?;
        let jwt = JwtVerifier::hs256(secret_key_base.as_bytes())
            .context("cannot use SECRET_KEY_BASE as the token key")?;
        Ok(Auth { jwt, cookie_key })
    }

    /// A login token for `user`, valid for [`TOKEN_LIFETIME`].
    ///
    /// # Errors
    /// When signing fails (it does not for HS256).
    pub fn issue_token(&self, user: &str) -> anyhow::Result<String> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let claims = Claims {
            sub: user.to_owned(),
            iat: now,
            exp: now + TOKEN_LIFETIME.as_secs(),
        };
        self.jwt
            .sign(&claims)
            .context("cannot sign the login token")
    }

    /// The user a token belongs to, if it verifies (signature, HS256, expiry) and names a
    /// valid user.
    pub fn user_from_token(&self, token: &str) -> Option<String> {
        let claims = self.jwt.verify::<Claims>(token).ok()?;
        is_valid_name(&claims.sub).then_some(claims.sub)
    }

    /// The `Set-Cookie` value that logs `user` in.
    pub fn login_cookie(&self, user: &str) -> String {
        self.cookie_key.signed_set_cookie(USER_COOKIE, user)
    }

    /// The `Set-Cookie` value that logs out (expires the cookie).
    pub fn logout_cookie() -> String {
        CookieKey::removal_set_cookie(USER_COOKIE)
    }

    /// The user of the signed cookie, if present, untampered and valid.
    pub fn user_from_cookie(&self, request: &ConnectRequest) -> Option<String> {
        let user = request.signed_cookie(USER_COOKIE, &self.cookie_key)?;
        is_valid_name(&user).then_some(user)
    }

    /// The cable's rule: `?token=` when present (and then it must be good), else the cookie.
    pub fn cable_user(&self, request: &ConnectRequest) -> Option<String> {
        match request.query("token") {
            Some(token) => self.user_from_token(&token),
            None => self.user_from_cookie(request),
        }
    }

    /// The HTTP API's rule: `Authorization: Bearer` when present (and then it must be good),
    /// else the cookie.
    pub fn http_user(&self, request: &ConnectRequest) -> Option<String> {
        match request.header("authorization") {
            Some(value) => {
                let (scheme, token) = value.trim().split_once(' ')?;
                if !scheme.eq_ignore_ascii_case("bearer") {
                    return None;
                }
                self.user_from_token(token.trim())
            }
            None => self.user_from_cookie(request),
        }
    }
}

/// The cable's connection: identifies the user by token or cookie, else rejects.
#[derive(Debug, Clone)]
pub struct DemoConnection {
    auth: Arc<Auth>,
}

impl DemoConnection {
    /// A connection authenticating with `auth`.
    pub fn new(auth: Arc<Auth>) -> DemoConnection {
        DemoConnection { auth }
    }
}

#[async_trait]
impl Connection for DemoConnection {
    async fn connect(&self, request: &ConnectRequest) -> Result<Identity, Reject> {
        match self.auth.cable_user(request) {
            Some(user) => {
                tracing::debug!(%user, "cable connection authenticated");
                Ok(Identity::new(CURRENT_USER, user))
            }
            None => {
                tracing::info!(remote = ?request.remote_addr(), "cable connection without valid credentials");
                Err(Reject)
            }
        }
    }

    async fn disconnect(&self, identity: &Identity) {
        tracing::debug!(%identity, "cable connection closed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef-demo-tests";

    fn request(uri: &str, headers: &[(&str, &str)]) -> ConnectRequest {
        let mut b = axum::http::Request::get(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let (parts, ()) = b.body(()).unwrap().into_parts();
        ConnectRequest::new(parts, None)
    }

    fn cookie_pair(set_cookie: &str) -> &str {
        set_cookie.split(';').next().unwrap()
    }

    #[test]
    fn tokens_round_trip_and_other_keys_fail() {
        let auth = Auth::new(SECRET).unwrap();
        let token = auth.issue_token("alice").unwrap();
        assert_eq!(auth.user_from_token(&token).as_deref(), Some("alice"));
        let other = Auth::new("another secret that is long enough for the key").unwrap();
        assert_eq!(other.user_from_token(&token), None);
        assert_eq!(auth.user_from_token("garbage"), None);
    }

    #[test]
    fn cable_takes_token_or_cookie() {
        let auth = Auth::new(SECRET).unwrap();
        let token = auth.issue_token("alice").unwrap();
        let r = request(&format!("/cable?token={token}"), &[]);
        assert_eq!(auth.cable_user(&r).as_deref(), Some("alice"));

        let set = auth.login_cookie("bob");
        let r = request("/cable", &[("cookie", cookie_pair(&set))]);
        assert_eq!(auth.cable_user(&r).as_deref(), Some("bob"));

        // A bad token is not rescued by a good cookie.
        let r = request("/cable?token=nope", &[("cookie", cookie_pair(&set))]);
        assert_eq!(auth.cable_user(&r), None);
        // An unsigned cookie is refused.
        let r = request("/cable", &[("cookie", "user=bob")]);
        assert_eq!(auth.cable_user(&r), None);
        assert_eq!(auth.cable_user(&request("/cable", &[])), None);
    }

    #[test]
    fn http_takes_bearer_or_cookie() {
        let auth = Auth::new(SECRET).unwrap();
        let token = auth.issue_token("carol").unwrap();
        let bearer = format!("Bearer {token}");
        let r = request("/notifications", &[("authorization", &bearer)]);
        assert_eq!(auth.http_user(&r).as_deref(), Some("carol"));
        let r = request("/notifications", &[("authorization", "Basic abc")]);
        assert_eq!(auth.http_user(&r), None);
        // The cable's query token does not count for HTTP.
        let r = request(&format!("/notifications?token={token}"), &[]);
        assert_eq!(auth.http_user(&r), None);
    }

    #[test]
    fn logout_cookie_expires() {
        let c = Auth::logout_cookie();
        assert!(c.starts_with("user=;"));
        assert!(c.contains("Max-Age=0"));
    }
}
