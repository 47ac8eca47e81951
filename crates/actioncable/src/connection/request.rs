//! The upgrade request as [`Connection::connect`](super::Connection::connect) sees it: headers,
//! cookies, query parameters and the peer's address.
//!
//! It wraps `http`'s request parts rather than an axum type, so it is the same in the
//! `testing` harness and under any future transport. Cookies are parsed once, on first use.

use crate::auth::{CookieKey, cookie_jar};
use cookie::CookieJar;
use http::HeaderMap;
use http::request::Parts;
use std::fmt;
use std::net::SocketAddr;
use std::sync::OnceLock;

/// What `connect` may look at: the upgrade request's parts and the peer's address.
pub struct ConnectRequest {
    parts: Parts,
    remote_addr: Option<SocketAddr>,
    jar: OnceLock<CookieJar>,
}

impl ConnectRequest {
    /// Wraps an upgrade request's head.
    pub fn new(parts: Parts, remote_addr: Option<SocketAddr>) -> ConnectRequest {
        ConnectRequest {
            parts,
            remote_addr,
            jar: OnceLock::new(),
        }
    }

    /// The request head (method, URI, headers, extensions).
    pub fn parts(&self) -> &Parts {
        &self.parts
    }

    /// The headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.parts.headers
    }

    /// One header as text, if present and valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.parts.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The peer's address, when the server provides connect info: [`serve`](crate::serve())
    /// always does; `axum::serve` does when given
    /// `router.into_make_service_with_connect_info::<SocketAddr>()`. Behind a proxy this is
    /// the proxy's address.
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.remote_addr
    }

    /// The first value of query parameter `name`, percent-decoded.
    ///
    /// ```
    /// use actioncable::ConnectRequest;
    /// let (parts, ()) = http::Request::get("/cable?token=a%2Eb&x=1").body(()).unwrap().into_parts();
    /// let req = ConnectRequest::new(parts, None);
    /// assert_eq!(req.query("token").as_deref(), Some("a.b"));
    /// assert_eq!(req.query("missing"), None);
    /// ```
    pub fn query(&self, name: &str) -> Option<String> {
        let query = self.parts.uri.query()?;
        form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    /// The cookies sent with the request.
    pub fn cookies(&self) -> &CookieJar {
        self.jar.get_or_init(|| cookie_jar(&self.parts.headers))
    }

    /// A plain cookie's value.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies().get(name).map(|c| c.value())
    }

    /// A signed cookie's value, if its signature verifies under `key`.
    pub fn signed_cookie(&self, name: &str, key: &CookieKey) -> Option<String> {
        self.cookies()
            .signed(key.inner())
            .get(name)
            .map(|c| c.value().to_owned())
    }

    /// A private (encrypted and authenticated) cookie's value, if it decrypts under `key`.
    pub fn private_cookie(&self, name: &str, key: &CookieKey) -> Option<String> {
        self.cookies()
            .private(key.inner())
            .get(name)
            .map(|c| c.value().to_owned())
    }
}

impl fmt::Debug for ConnectRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Headers are left out on purpose: they carry cookies and tokens.
        f.debug_struct("ConnectRequest")
            .field("uri", &self.parts.uri.path())
            .field("remote_addr", &self.remote_addr)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(uri: &str, cookie: Option<&str>) -> ConnectRequest {
        let mut b = http::Request::get(uri);
        if let Some(c) = cookie {
            b = b.header("cookie", c);
        }
        let (parts, ()) = b.body(()).unwrap().into_parts();
        ConnectRequest::new(parts, None)
    }

    #[test]
    fn query_params_are_decoded() {
        let r = req("/cable?a=1&b=x+y%21&flag&a=2", None);
        assert_eq!(r.query("a").as_deref(), Some("1"));
        assert_eq!(r.query("b").as_deref(), Some("x y!"));
        assert_eq!(r.query("flag").as_deref(), Some(""));
    }

    #[test]
    fn cookies_are_parsed() {
        let r = req("/cable", Some("a=1; user=alice%20b"));
        assert_eq!(r.cookie("a"), Some("1"));
        assert_eq!(r.cookie("user"), Some("alice b"));
        assert_eq!(r.cookie("none"), None);
    }
}
