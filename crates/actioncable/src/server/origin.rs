//! [`AllowedOrigins`]: which pages may open a cable.

use http::HeaderMap;
use http::header::{HOST, ORIGIN};

use crate::error::ConfigError;

/// Which `Origin` headers may open a cable (Rails' `allowed_request_origins` and
/// `allow_same_origin_as_host`). A refused origin gets Rails' `404 Page not found` before any
/// upgrade.
///
/// The check stops cross-site WebSocket hijacking: a page on another site opening a cable with
/// the user's cookies. Only browsers carry a user's cookies to pages of other sites, and
/// browsers always send `Origin` on a WebSocket upgrade; a client that sends none (Node, Python,
/// Rust, a mobile app) is not a browser, and could send any `Origin` it liked anyway. So a
/// request **without** `Origin` is admitted by default, as AnyCable does; Rails refuses it, and
/// [`require_origin`](Self::require_origin) does too.
///
/// ```
/// use actioncable::AllowedOrigins;
/// let origins = AllowedOrigins::same_origin()
///     .allow("https://app.example.com")
///     .allow_any_port("http://localhost");
/// assert!(origins.allows(Some("http://localhost:5173"), Some("127.0.0.1:3000")));
/// assert!(origins.allows(Some("http://127.0.0.1:3000"), Some("127.0.0.1:3000")));
/// assert!(!origins.allows(Some("http://evil.example"), Some("127.0.0.1:3000")));
/// // A non-browser client: no `Origin` at all.
/// assert!(origins.allows(None, Some("127.0.0.1:3000")));
/// assert!(!origins.require_origin().allows(None, Some("127.0.0.1:3000")));
/// assert!(AllowedOrigins::any().allows(None, None));
/// ```
#[derive(Debug, Clone)]
pub struct AllowedOrigins {
    any: bool,
    same_origin: bool,
    exact: Vec<String>,
    any_port: Vec<String>,
    /// Whether a request without `Origin` (a non-browser client) is admitted.
    missing: bool,
}

impl AllowedOrigins {
    /// The same origin as the request, `<scheme>://<Host header>` (Rails' default with
    /// `allow_same_origin_as_host`), and requests without `Origin` (non-browser clients; see
    /// above). The scheme is `https` when a TLS-terminating proxy says so with
    /// `X-Forwarded-Proto: https` (Rails' `request.ssl?`), else `http`.
    pub fn same_origin() -> AllowedOrigins {
        AllowedOrigins {
            same_origin: true,
            missing: true,
            ..AllowedOrigins::none()
        }
    }

    /// No origin check at all (Rails' `disable_request_forgery_protection`): for load tools,
    /// or a cable that only non-browser clients use.
    pub fn any() -> AllowedOrigins {
        AllowedOrigins {
            any: true,
            ..AllowedOrigins::none()
        }
    }

    /// Nothing allowed until added, not even requests without `Origin`.
    pub fn none() -> AllowedOrigins {
        AllowedOrigins {
            any: false,
            same_origin: false,
            exact: Vec::new(),
            any_port: Vec::new(),
            missing: false,
        }
    }

    /// Refuses requests without an `Origin` header, as Rails does: only browsers from allowed
    /// origins may connect.
    #[must_use]
    pub fn require_origin(mut self) -> AllowedOrigins {
        self.missing = false;
        self
    }

    /// Admits requests without an `Origin` header (non-browser clients), the default of
    /// [`same_origin`](Self::same_origin).
    #[must_use]
    pub fn allow_missing_origin(mut self) -> AllowedOrigins {
        self.missing = true;
        self
    }

    /// Also allows exactly `origin`, e.g. `https://app.example.com`.
    #[must_use]
    pub fn allow(mut self, origin: impl Into<String>) -> AllowedOrigins {
        self.exact
            .push(origin.into().trim_end_matches('/').to_owned());
        self
    }

    /// Also allows `origin` on any port (or none), e.g. `http://localhost` allows
    /// `http://localhost:5173`, like Rails' development default regexp.
    #[must_use]
    pub fn allow_any_port(mut self, origin: impl Into<String>) -> AllowedOrigins {
        self.any_port
            .push(origin.into().trim_end_matches('/').to_owned());
        self
    }

    /// Parses an origin list as a setting gives it (the examples' and `actioncable-server`'s
    /// `ALLOWED_ORIGINS`): `*` alone allows any origin ([`any`](Self::any)); otherwise
    /// comma-separated exact origins (`https://app.example.com,http://localhost:3000`) are
    /// allowed besides the [same origin](Self::same_origin). Blank entries are skipped and a
    /// trailing `/` is dropped; anything that is not `http(s)://host[:port]` is an error, so a
    /// typo cannot silently turn the check off or lock every page out.
    ///
    /// ```
    /// use actioncable::AllowedOrigins;
    /// let origins = AllowedOrigins::from_list("https://app.example.com/, http://localhost:3000")?;
    /// assert!(origins.allows(Some("http://localhost:3000"), Some("cable.example.com")));
    /// assert!(origins.allows(Some("http://cable.example.com"), Some("cable.example.com")));
    /// assert!(!origins.allows(Some("http://localhost:3001"), Some("cable.example.com")));
    /// assert!(AllowedOrigins::from_list("*")?.allows(Some("http://any.test"), None));
    /// assert!(AllowedOrigins::from_list("app.example.com").is_err());
    /// # Ok::<(), actioncable::ConfigError>(())
    /// ```
    pub fn from_list(list: &str) -> Result<AllowedOrigins, ConfigError> {
        let entries: Vec<&str> = list
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .collect();
        if entries == ["*"] {
            return Ok(AllowedOrigins::any());
        }
        let mut origins = AllowedOrigins::same_origin();
        for entry in entries {
            let origin = entry.trim_end_matches('/');
            let host = origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"));
            let valid = host.is_some_and(|host| {
                !host.is_empty()
                    && !host.contains(['/', '?', '#', '@', ' ', '*'])
                    && !host.starts_with(':')
                    && !host.ends_with(':')
            });
            if !valid {
                return Err(ConfigError::Invalid {
                    name: "allowed origins",
                    reason: format!(
                        "{entry:?} is not an origin like https://app.example.com or \
                         http://localhost:3000 (`*` alone allows any)"
                    ),
                });
            }
            if !origins.exact.iter().any(|o| o == origin) {
                origins = origins.allow(origin);
            }
        }
        Ok(origins)
    }

    /// Whether a plain-HTTP request with this `Origin` and `Host` may connect.
    pub fn allows(&self, origin: Option<&str>, host: Option<&str>) -> bool {
        self.check(origin, host, "http")
    }

    fn check(&self, origin: Option<&str>, host: Option<&str>, scheme: &str) -> bool {
        if self.any {
            return true;
        }
        let Some(origin) = origin else {
            return self.missing;
        };
        if let (true, Some(host)) = (self.same_origin, host) {
            let same = origin
                .strip_prefix(scheme)
                .and_then(|r| r.strip_prefix("://"))
                .is_some_and(|r| r.eq_ignore_ascii_case(host));
            if same {
                return true;
            }
        }
        if self.exact.iter().any(|o| o == origin) {
            return true;
        }
        self.any_port
            .iter()
            .any(|base| match origin.strip_prefix(base.as_str()) {
                Some("") => true,
                Some(rest) => rest
                    .strip_prefix(':')
                    .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())),
                None => false,
            })
    }

    pub(crate) fn allows_request(&self, headers: &HeaderMap) -> bool {
        // An `Origin` that is present but not text is a foreign origin, never a missing one.
        let origin = match headers.get(ORIGIN).map(|v| v.to_str()) {
            None => None,
            Some(Ok(origin)) => Some(origin),
            Some(Err(_)) => return self.any,
        };
        let host = headers.get(HOST).and_then(|v| v.to_str().ok());
        let https = headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"));
        self.check(origin, host, if https { "https" } else { "http" })
    }
}

impl Default for AllowedOrigins {
    fn default() -> Self {
        AllowedOrigins::same_origin()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_lists_refuse_what_is_not_an_origin() {
        let o = AllowedOrigins::from_list("https://a.test/, http://localhost:5173,,http://a.test")
            .unwrap();
        assert_eq!(
            o.exact,
            ["https://a.test", "http://localhost:5173", "http://a.test"]
        );
        assert!(!o.any && o.same_origin && o.missing);
        let blank = AllowedOrigins::from_list(" , ").unwrap();
        assert!(blank.exact.is_empty() && blank.same_origin && !blank.any);
        assert!(AllowedOrigins::from_list("*").unwrap().any);
        for bad in [
            "chat.example.com",
            "ftp://x.test",
            "https://",
            "https://x.test/path",
            "http://*.test",
            "http://x.test:",
            "http://:80",
            "http://user@x.test",
            "*,https://a.test",
        ] {
            assert!(AllowedOrigins::from_list(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn port_patterns_do_not_match_other_hosts() {
        let o = AllowedOrigins::none().allow_any_port("http://localhost");
        assert!(o.allows(Some("http://localhost"), None));
        assert!(o.allows(Some("http://localhost:1"), None));
        assert!(!o.allows(Some("http://localhost.evil.example"), None));
        assert!(!o.allows(Some("http://localhost:"), None));
        assert!(!o.allows(Some("http://localhost:80x"), None));
        assert!(!o.allows(Some("https://localhost"), None));
    }

    #[test]
    fn same_origin_needs_a_host() {
        let o = AllowedOrigins::same_origin();
        assert!(o.allows(Some("http://a.example"), Some("a.example")));
        assert!(!o.allows(Some("http://a.example"), None));
        assert!(!o.allows(Some("http://a.example.evil"), Some("a.example")));
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn an_origin_that_is_not_text_is_not_a_missing_one() {
        let mut h = HeaderMap::new();
        h.insert(
            ORIGIN,
            http::HeaderValue::from_bytes(b"http://a\xe2\x80\xae").unwrap(),
        );
        assert!(!AllowedOrigins::same_origin().allows_request(&h));
        assert!(AllowedOrigins::same_origin().allows_request(&HeaderMap::new()));
        assert!(AllowedOrigins::any().allows_request(&h));
    }

    #[test]
    fn same_origin_compares_the_scheme_like_rails() {
        let o = AllowedOrigins::same_origin();
        let plain = |origin| headers(&[("origin", origin), ("host", "a.example")]);
        assert!(o.allows_request(&plain("http://a.example")));
        assert!(!o.allows_request(&plain("https://a.example")));
        let proxied = |origin| {
            headers(&[
                ("origin", origin),
                ("host", "a.example"),
                ("x-forwarded-proto", "https"),
            ])
        };
        assert!(o.allows_request(&proxied("https://a.example")));
        assert!(!o.allows_request(&proxied("http://a.example")));
    }
}
