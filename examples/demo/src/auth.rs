//! Who is asking: login tokens (JWT), the signed `user` cookie, sessions, and the cable's
//! [`Connection`] (Rails' `ApplicationCable::Connection` with `identified_by :current_user`).
//!
//! Browsers cannot put headers on a WebSocket, so the cable takes `?token=<JWT>` or the signed
//! cookie that `POST /login` sets; the HTTP API takes `Authorization: Bearer <JWT>` or the
//! cookie (and `POST /notifications` takes only the bearer token, which no other site can make
//! a browser send). Tokens and cookie values are never logged.
//!
//! Both credentials expire (the token's `exp` claim; the cookie carries its expiry inside its
//! signed value, as Rails' cookie metadata does, and as `Max-Age`), and both carry the user's
//! session version from the database: `POST /logout` moves it on, which ends every token and
//! cookie issued before, on every node sharing the database. The cable checks it at connect;
//! logout also disconnects the user's open connections.

use crate::db::{Db, DbError};
use crate::validate::is_valid_name;
use actioncable::{ConnectRequest, Connection, Identity, Reject, async_trait};
use actioncable::{CookieKey, JwtVerifier};
use anyhow::Context as _;
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The identifier name channels read the user from (`identified_by :current_user`).
pub const CURRENT_USER: &str = "current_user";
/// The signed cookie `POST /login` sets.
pub const USER_COOKIE: &str = "user";
/// How long a login (token and cookie) is valid unless `SESSION_LIFETIME_SECS` says otherwise.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);

/// The latest expiry a credential can state (the year 10000), so that no claim overflows a
/// `SystemTime`.
const LATEST_EXP: u64 = 253_402_300_800;

/// The login token's claims.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    iat: u64,
    exp: u64,
    /// The user's session version when the token was issued.
    ver: i64,
}

/// The signed cookie's value: who, until when (seconds since the Unix epoch), and the session
/// version. The signature covers all three, so none can be changed.
#[derive(Debug, Serialize, Deserialize)]
struct CookieValue {
    user: String,
    exp: u64,
    ver: i64,
}

/// What a token or cookie says, before the session version is checked.
#[derive(Debug)]
struct Claimed {
    user: String,
    version: i64,
    /// Until when, in seconds since the Unix epoch.
    exp: u64,
}

/// Who a cable connection belongs to, and until when its credential is good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CableLogin {
    /// The user.
    pub user: String,
    /// When the token or cookie expires: the connection is closed with `token_expired` then.
    pub expiry: SystemTime,
}

/// What `POST /login` hands out.
#[derive(Debug)]
pub struct Login {
    /// The bearer token (for `?token=` and `Authorization: Bearer`).
    pub token: String,
    /// The `Set-Cookie` value of the signed cookie.
    pub set_cookie: String,
}

/// Whether the client reached us over HTTPS, as a TLS-terminating proxy says with
/// `X-Forwarded-Proto: https`. (The demo itself speaks plain HTTP.) Cookies set for such a
/// client get `Secure`.
pub fn is_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Issues and checks credentials. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Auth {
    jwt: JwtVerifier,
    cookie_key: CookieKey,
    db: Db,
    lifetime: Duration,
}

impl Auth {
    /// Keys derived from `SECRET_KEY_BASE`: tokens are HS256 with the secret itself, cookies
    /// are signed with the key `CookieKey` derives from it. Session versions live in `db`.
    /// Logins last [`SESSION_LIFETIME`] (see [`with_lifetime`](Self::with_lifetime)).
    ///
    /// # Errors
    /// A secret shorter than 32 bytes.
    pub fn new(secret_key_base: &str, db: Db) -> anyhow::Result<Auth> {
        let cookie_key = CookieKey::derive_from_secret(secret_key_base)
            .context("cannot derive the cookie key from SECRET_KEY_BASE")?;
        // No clock-skew allowance: the demo checks the tokens it issued itself.
        let jwt = JwtVerifier::hs256(secret_key_base.as_bytes())
            .context("cannot use SECRET_KEY_BASE as the token key")?
            .leeway(0);
        Ok(Auth {
            jwt,
            cookie_key,
            db,
            lifetime: SESSION_LIFETIME,
        })
    }

    /// Logins last `lifetime` (at least a second).
    #[must_use]
    pub fn with_lifetime(mut self, lifetime: Duration) -> Auth {
        self.lifetime = lifetime.max(Duration::from_secs(1));
        self
    }

    /// How long a login lasts.
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// Logs `user` in: a token and a cookie for their current session version. `secure`: the
    /// cookie gets `Secure` (see [`is_https`]).
    ///
    /// # Errors
    /// When the session version cannot be read, or signing fails.
    pub async fn login(&self, user: &str, secure: bool) -> anyhow::Result<Login> {
        let version = self
            .db
            .session_version(user)
            .await
            .context("cannot read the session version")?;
        Ok(Login {
            token: self.issue_token(user, version)?,
            set_cookie: self.login_cookie(user, version, secure),
        })
    }

    /// A fresh token for `user`, in the user's current session (the caller has checked that the
    /// presented credential belongs to it): the page trades its token for a new one before it
    /// expires, so its cable connection, closed with `token_expired` at the old token's
    /// expiry, reconnects with the new one.
    ///
    /// # Errors
    /// When the session version cannot be read, or signing fails.
    pub async fn refresh(&self, user: &str) -> anyhow::Result<String> {
        let version = self
            .db
            .session_version(user)
            .await
            .context("cannot read the session version")?;
        self.issue_token(user, version)
    }

    /// Ends every session of `user`: each token and cookie issued so far is refused from now on.
    ///
    /// # Errors
    /// When the database fails.
    pub async fn logout(&self, user: &str) -> Result<(), DbError> {
        self.db.end_sessions(user).await.map(drop)
    }

    /// A login token for `user` at session `version`, valid for the login lifetime.
    ///
    /// # Errors
    /// When signing fails (it does not for HS256).
    pub fn issue_token(&self, user: &str, version: i64) -> anyhow::Result<String> {
        let now = now_secs();
        let claims = Claims {
            sub: user.to_owned(),
            iat: now,
            exp: now + self.lifetime.as_secs(),
            ver: version,
        };
        self.jwt
            .sign(&claims)
            .context("cannot sign the login token")
    }

    /// The `Set-Cookie` value that logs `user` in at session `version`: the signed value
    /// carries its expiry, and `Max-Age` tells the browser the same; `Secure` when `secure`.
    pub fn login_cookie(&self, user: &str, version: i64, secure: bool) -> String {
        let value = CookieValue {
            user: user.to_owned(),
            exp: now_secs() + self.lifetime.as_secs(),
            ver: version,
        };
        // A struct of a string and two integers always serializes.
        let json = serde_json::to_string(&value).unwrap_or_default();
        let mut set_cookie = self.cookie_key.signed_set_cookie(USER_COOKIE, &json);
        set_cookie.push_str(&format!("; Max-Age={}", self.lifetime.as_secs()));
        if secure {
            set_cookie.push_str("; Secure");
        }
        set_cookie
    }

    /// The `Set-Cookie` value that logs out (expires the cookie); `Secure` when `secure`.
    pub fn logout_cookie(secure: bool) -> String {
        let mut set_cookie = CookieKey::removal_set_cookie(USER_COOKIE);
        if secure {
            set_cookie.push_str("; Secure");
        }
        set_cookie
    }

    /// What a token claims, if it verifies (signature, HS256, expiry) and names a valid user.
    fn token_claims(&self, token: &str) -> Option<Claimed> {
        let claims = self.jwt.verify::<Claims>(token).ok()?;
        is_valid_name(&claims.sub).then_some(Claimed {
            user: claims.sub,
            version: claims.ver,
            exp: claims.exp,
        })
    }

    /// What the signed cookie claims, if present, untampered, unexpired, naming a valid user.
    fn cookie_claims(&self, request: &ConnectRequest) -> Option<Claimed> {
        let raw = request.signed_cookie(USER_COOKIE, &self.cookie_key)?;
        let value: CookieValue = serde_json::from_str(&raw).ok()?;
        (value.exp > now_secs() && is_valid_name(&value.user)).then_some(Claimed {
            user: value.user,
            version: value.ver,
            exp: value.exp,
        })
    }

    /// The user, when the claimed session is still the user's current one.
    async fn current(&self, claimed: Option<Claimed>) -> Result<Option<String>, DbError> {
        Ok(self.current_claim(claimed).await?.map(|c| c.user))
    }

    /// The claim, when its session is still the user's current one.
    async fn current_claim(&self, claimed: Option<Claimed>) -> Result<Option<Claimed>, DbError> {
        let Some(claimed) = claimed else {
            return Ok(None);
        };
        let version = self.db.session_version(&claimed.user).await?;
        Ok((version == claimed.version).then_some(claimed))
    }

    /// The user of a token, if it verifies and its session is current.
    ///
    /// # Errors
    /// When the session version cannot be read.
    pub async fn user_from_token(&self, token: &str) -> Result<Option<String>, DbError> {
        self.current(self.token_claims(token)).await
    }

    /// The user of the signed cookie, if present, valid and its session current.
    ///
    /// # Errors
    /// When the session version cannot be read.
    pub async fn user_from_cookie(
        &self,
        request: &ConnectRequest,
    ) -> Result<Option<String>, DbError> {
        self.current(self.cookie_claims(request)).await
    }

    /// The cable's rule: `?token=` when present (and then it must be good), else the cookie.
    ///
    /// # Errors
    /// When the session version cannot be read.
    pub async fn cable_user(&self, request: &ConnectRequest) -> Result<Option<String>, DbError> {
        Ok(self.cable_login(request).await?.map(|login| login.user))
    }

    /// [`cable_user`](Self::cable_user), with the credential's expiry.
    ///
    /// # Errors
    /// When the session version cannot be read.
    pub async fn cable_login(
        &self,
        request: &ConnectRequest,
    ) -> Result<Option<CableLogin>, DbError> {
        let claimed = match request.query("token") {
            Some(token) => self.token_claims(&token),
            None => self.cookie_claims(request),
        };
        Ok(self
            .current_claim(claimed)
            .await?
            .map(|claimed| CableLogin {
                user: claimed.user,
                expiry: UNIX_EPOCH + Duration::from_secs(claimed.exp.min(LATEST_EXP)),
            }))
    }

    /// The HTTP API's rule: `Authorization: Bearer` when present (and then it must be good),
    /// else the cookie.
    ///
    /// # Errors
    /// When the session version cannot be read.
    pub async fn http_user(&self, request: &ConnectRequest) -> Result<Option<String>, DbError> {
        match request.header("authorization") {
            Some(value) => match bearer_token(value) {
                Some(token) => self.user_from_token(token).await,
                None => Ok(None),
            },
            None => self.user_from_cookie(request).await,
        }
    }

    /// `Authorization: Bearer` only, never the cookie: for requests that change something on
    /// someone else's behalf, which another site must not be able to make a browser send.
    ///
    /// # Errors
    /// When the session version cannot be read.
    pub async fn bearer_user(&self, request: &ConnectRequest) -> Result<Option<String>, DbError> {
        match request.header("authorization").and_then(bearer_token) {
            Some(token) => self.user_from_token(token).await,
            None => Ok(None),
        }
    }
}

/// The token of an `Authorization: Bearer <token>` value.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
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
        match self.auth.cable_login(request).await {
            Ok(Some(CableLogin { user, expiry })) => {
                tracing::debug!(%user, "cable connection authenticated");
                // The connection ends with `token_expired` when its credential does; the page
                // has a fresh token by then (`POST /token`).
                Ok(Identity::new(CURRENT_USER, user).with_expiry(expiry))
            }
            Ok(None) => {
                tracing::info!(remote = ?request.remote_addr(), "cable connection without valid credentials");
                Err(Reject::Unauthorized)
            }
            Err(error) => {
                tracing::error!(%error, "cannot check a cable connection's session; rejected");
                Err(Reject::Unauthorized)
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

    fn auth() -> Auth {
        Auth::new(SECRET, Db::open(":memory:").unwrap()).unwrap()
    }

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

    #[tokio::test]
    async fn tokens_round_trip_and_other_keys_fail() {
        let auth = auth();
        let token = auth.issue_token("alice", 0).unwrap();
        assert_eq!(
            auth.user_from_token(&token).await.unwrap().as_deref(),
            Some("alice")
        );
        let other = Auth::new(
            "another secret that is long enough for the key",
            Db::open(":memory:").unwrap(),
        )
        .unwrap();
        assert_eq!(other.user_from_token(&token).await.unwrap(), None);
        assert_eq!(auth.user_from_token("garbage").await.unwrap(), None);
    }

    #[tokio::test]
    async fn cable_takes_token_or_cookie() {
        let auth = auth();
        let token = auth.issue_token("alice", 0).unwrap();
        let r = request(&format!("/cable?token={token}"), &[]);
        assert_eq!(auth.cable_user(&r).await.unwrap().as_deref(), Some("alice"));

        let set = auth.login_cookie("bob", 0, false);
        let r = request("/cable", &[("cookie", cookie_pair(&set))]);
        assert_eq!(auth.cable_user(&r).await.unwrap().as_deref(), Some("bob"));

        // A bad token is not rescued by a good cookie.
        let r = request("/cable?token=nope", &[("cookie", cookie_pair(&set))]);
        assert_eq!(auth.cable_user(&r).await.unwrap(), None);
        // An unsigned cookie is refused.
        let r = request("/cable", &[("cookie", "user=bob")]);
        assert_eq!(auth.cable_user(&r).await.unwrap(), None);
        assert_eq!(
            auth.cable_user(&request("/cable", &[])).await.unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn http_takes_bearer_or_cookie_and_bearer_user_only_the_token() {
        let auth = auth();
        let token = auth.issue_token("carol", 0).unwrap();
        let bearer = format!("Bearer {token}");
        let r = request("/notifications", &[("authorization", &bearer)]);
        assert_eq!(auth.http_user(&r).await.unwrap().as_deref(), Some("carol"));
        assert_eq!(
            auth.bearer_user(&r).await.unwrap().as_deref(),
            Some("carol")
        );
        let r = request("/notifications", &[("authorization", "Basic abc")]);
        assert_eq!(auth.http_user(&r).await.unwrap(), None);
        // The cable's query token does not count for HTTP.
        let r = request(&format!("/notifications?token={token}"), &[]);
        assert_eq!(auth.http_user(&r).await.unwrap(), None);
        // The cookie counts for http_user, not for bearer_user.
        let set = auth.login_cookie("carol", 0, false);
        let r = request("/notifications", &[("cookie", cookie_pair(&set))]);
        assert_eq!(auth.http_user(&r).await.unwrap().as_deref(), Some("carol"));
        assert_eq!(auth.bearer_user(&r).await.unwrap(), None);
    }

    #[tokio::test]
    async fn logout_ends_every_token_and_cookie_issued_before() {
        let auth = auth();
        let before = auth.login("dave", false).await.unwrap();
        let other_user = auth.login("erin", false).await.unwrap();
        auth.logout("dave").await.unwrap();
        let by_token = request(&format!("/cable?token={}", before.token), &[]);
        let by_cookie = request("/cable", &[("cookie", cookie_pair(&before.set_cookie))]);
        assert_eq!(auth.cable_user(&by_token).await.unwrap(), None);
        assert_eq!(auth.cable_user(&by_cookie).await.unwrap(), None);
        // Nobody else is logged out.
        let erin = request(&format!("/cable?token={}", other_user.token), &[]);
        assert_eq!(
            auth.cable_user(&erin).await.unwrap().as_deref(),
            Some("erin")
        );
        // Logging in again gives credentials that work.
        let after = auth.login("dave", false).await.unwrap();
        let by_token = request(&format!("/cable?token={}", after.token), &[]);
        let by_cookie = request("/cable", &[("cookie", cookie_pair(&after.set_cookie))]);
        assert_eq!(
            auth.cable_user(&by_token).await.unwrap().as_deref(),
            Some("dave")
        );
        assert_eq!(
            auth.cable_user(&by_cookie).await.unwrap().as_deref(),
            Some("dave")
        );
    }

    #[tokio::test]
    async fn the_cookie_carries_its_expiry_inside_and_as_max_age() {
        let auth = auth().with_lifetime(Duration::from_secs(90));
        let set = auth.login_cookie("frank", 0, false);
        assert!(set.contains("; Max-Age=90"), "{set}");
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Lax"),
            "{set}"
        );
        assert!(!set.contains("Secure"), "{set}");
        assert!(auth.login_cookie("frank", 0, true).ends_with("; Secure"));

        // A value signed with the right key but expired (or without an expiry) is refused.
        let key = CookieKey::derive_from_secret(SECRET).unwrap();
        let signed = |value: &str| {
            let set = key.signed_set_cookie(USER_COOKIE, value);
            request("/cable", &[("cookie", cookie_pair(&set))])
        };
        let past = now_secs() - 1;
        let expired = signed(&format!(r#"{{"user":"frank","exp":{past},"ver":0}}"#));
        assert_eq!(auth.cable_user(&expired).await.unwrap(), None);
        let future = now_secs() + 60;
        let fresh = signed(&format!(r#"{{"user":"frank","exp":{future},"ver":0}}"#));
        assert_eq!(
            auth.cable_user(&fresh).await.unwrap().as_deref(),
            Some("frank")
        );
        for old_format in ["frank", r#"{"user":"frank","ver":0}"#] {
            assert_eq!(auth.cable_user(&signed(old_format)).await.unwrap(), None);
        }
    }

    #[test]
    fn https_is_told_by_the_proxy() {
        let headers = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert("x-forwarded-proto", v.parse().unwrap());
            h
        };
        assert!(is_https(&headers("https")));
        assert!(is_https(&headers("HTTPS, http")));
        assert!(!is_https(&headers("http")));
        assert!(!is_https(&HeaderMap::new()));
    }

    #[test]
    fn logout_cookie_expires() {
        let c = Auth::logout_cookie(false);
        assert!(c.starts_with("user=;"));
        assert!(c.contains("Max-Age=0"));
        assert!(Auth::logout_cookie(true).ends_with("; Secure"));
    }
}
