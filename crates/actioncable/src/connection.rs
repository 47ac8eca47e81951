//! Authenticating the WebSocket request: the [`Connection`] trait (Rails'
//! `ApplicationCable::Connection`).
//!
//! `connect` runs once per WebSocket upgrade, sees the request ([`ConnectRequest`]: headers,
//! cookies, query params, remote address) and answers with the connection's [`Identity`] (Rails'
//! `identified_by`) or [`Reject`]. A rejected client still gets its WebSocket, then
//! `{"type":"disconnect","reason":"unauthorized","reconnect":false}` and a close with code 1000,
//! exactly as Rails does it, so the stock consumer stops retrying.
//!
//! ```
//! use actioncable::{async_trait, ConnectRequest, Connection, Identity, Reject};
//!
//! struct UserFromQuery;
//!
//! #[async_trait]
//! impl Connection for UserFromQuery {
//!     async fn connect(&self, req: &ConnectRequest) -> Result<Identity, Reject> {
//!         let user = req.query("user").ok_or(Reject)?;
//!         Ok(Identity::new("current_user", user))
//!     }
//! }
//! ```

use crate::auth::CookieKey;
use crate::error::ChannelError;
use crate::hub::Outbox;
use crate::protocol::DisconnectReason;
use crate::server::Control;
use async_trait::async_trait;
use cookie::CookieJar;
use http::HeaderMap;
use http::request::Parts;
use serde::Serialize;
use std::any::Any;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

/// Authenticates WebSocket requests. One value serves every connection.
#[async_trait]
pub trait Connection: Send + Sync + 'static {
    /// Decides who is connecting, or rejects the connection.
    async fn connect(&self, request: &ConnectRequest) -> Result<Identity, Reject>;

    /// Runs once the connection has closed, after every subscription's `unsubscribed`.
    async fn disconnect(&self, identity: &Identity) {
        let _ = identity;
    }

    /// Runs for every open connection at every beat, right after its `ping` is queued (Rails'
    /// `Connection#beat`). Keep it quick — it runs for every connection in turn; spawn a task
    /// for anything that waits. Use it to refresh presence, say, or to
    /// [`transmit`](ConnectionRef::transmit) connection-level frames.
    fn beat(&self, connection: &ConnectionRef) {
        let _ = connection;
    }
}

/// Identifies one connection on this node, for as long as the process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(pub(crate) u64);

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What the server keeps about one open connection.
pub(crate) struct SessionInfo {
    pub(crate) id: ConnectionId,
    pub(crate) identity: Arc<Identity>,
    pub(crate) started_at: SystemTime,
    pub(crate) subscriptions: Mutex<Vec<Arc<str>>>,
}

/// A live connection: its id and identity, its subscriptions, and a way to send it frames.
/// Cheap to clone; sending to a connection that has closed does nothing.
#[derive(Clone)]
pub struct ConnectionRef {
    pub(crate) info: Arc<SessionInfo>,
    pub(crate) outbox: Outbox,
}

impl ConnectionRef {
    /// The connection's id on this node.
    pub fn id(&self) -> ConnectionId {
        self.info.id
    }

    /// Who the connection belongs to.
    pub fn identity(&self) -> &Identity {
        &self.info.identity
    }

    /// When the connection was accepted.
    pub fn started_at(&self) -> SystemTime {
        self.info.started_at
    }

    /// The identifiers of its confirmed subscriptions, oldest first.
    pub fn subscriptions(&self) -> Vec<String> {
        lock(&self.info.subscriptions)
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    /// Sends `message` as a frame of its own, outside any subscription (Rails'
    /// `connection.transmit`): the stock consumer ignores frames it has no use for; custom
    /// clients can read them.
    ///
    /// # Errors
    /// When `message` does not serialize to JSON.
    pub fn transmit<T: Serialize + ?Sized>(&self, message: &T) -> Result<(), ChannelError> {
        let json = serde_json::to_string(message)?;
        self.outbox.push(json.into());
        Ok(())
    }

    /// Asks the connection to close after sending `disconnect` with reason `remote`.
    pub fn disconnect(&self, reconnect: bool) {
        self.outbox.close(DisconnectReason::Remote, reconnect);
    }

    /// Ends one subscription from the server side: its `unsubscribed` callbacks run and the
    /// client is sent `reject_subscription` for it (the stock consumer forgets it and calls
    /// its `rejected()`). Returns whether the connection was still open to be asked.
    pub fn unsubscribe(&self, identifier: &str) -> bool {
        self.outbox.push_control(Control::Unsubscribe {
            identifier: Arc::from(identifier),
            subscription: None,
        })
    }

    /// A snapshot for statistics.
    pub fn info(&self) -> ConnectionInfo {
        ConnectionInfo {
            id: self.id(),
            identity: self.identity().clone(),
            started_at: self.started_at(),
            subscriptions: self.subscriptions(),
            queued_frames: self.outbox.queued(),
        }
    }
}

impl fmt::Debug for ConnectionRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionRef")
            .field("id", &self.info.id)
            .field("identity", &self.info.identity)
            .finish_non_exhaustive()
    }
}

/// A snapshot of one open connection, from [`CableHandle::connections`](crate::CableHandle::connections).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConnectionInfo {
    /// The connection's id on this node.
    pub id: ConnectionId,
    /// Who it belongs to.
    pub identity: Identity,
    /// When it was accepted.
    pub started_at: SystemTime,
    /// Identifiers of its confirmed subscriptions.
    pub subscriptions: Vec<String>,
    /// Frames waiting to be written to it.
    pub queued_frames: usize,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SessionInfo {
    pub(crate) fn add_subscription(&self, identifier: &Arc<str>) {
        lock(&self.subscriptions).push(identifier.clone());
    }

    pub(crate) fn remove_subscription(&self, identifier: &str) {
        lock(&self.subscriptions).retain(|s| &**s != identifier);
    }
}

/// Rejects the connection as unauthorized (Rails' `reject_unauthorized_connection`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Reject;

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("connection rejected as unauthorized")
    }
}

impl std::error::Error for Reject {}

impl From<crate::error::AuthError> for Reject {
    fn from(_: crate::error::AuthError) -> Self {
        Reject
    }
}

/// Accepts every connection with an anonymous identity (what the benchmark server uses).
#[derive(Debug, Clone, Copy, Default)]
pub struct AcceptAll;

#[async_trait]
impl Connection for AcceptAll {
    async fn connect(&self, _: &ConnectRequest) -> Result<Identity, Reject> {
        Ok(Identity::anonymous())
    }
}

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

    /// The peer's address, when the server was started with connect info
    /// (`into_make_service_with_connect_info::<SocketAddr>()`).
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

/// The cookies of a request's `Cookie` headers (unparsable ones are skipped).
pub(crate) fn cookie_jar(headers: &HeaderMap) -> CookieJar {
    let mut jar = CookieJar::new();
    for value in headers.get_all(http::header::COOKIE) {
        let Ok(value) = value.to_str() else { continue };
        for cookie in cookie::Cookie::split_parse_encoded(value.to_owned()).flatten() {
            jar.add_original(cookie);
        }
    }
    jar
}

/// Who a connection belongs to: Rails' `identified_by` values, plus optional typed data.
///
/// The *connection identifier* (used for remote disconnects, `action_cable/<identifier>`) is the
/// values sorted and joined with `:`, as Rails computes it.
///
/// ```
/// use actioncable::Identity;
/// #[derive(Debug)]
/// struct User { id: u64 }
/// let id = Identity::new("current_user", "alice").and("tenant", "acme").with_data(User { id: 7 });
/// assert_eq!(id.get("current_user"), Some("alice"));
/// assert_eq!(id.connection_identifier(), "acme:alice");
/// assert_eq!(id.data::<User>().map(|u| u.id), Some(7));
/// ```
#[derive(Clone, Default)]
pub struct Identity {
    ids: Vec<(String, String)>,
    data: Option<Arc<dyn Any + Send + Sync>>,
}

impl Identity {
    /// An identity with one identifier, e.g. `("current_user", "alice")`.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Identity {
        Identity::anonymous().and(name, value)
    }

    /// An identity with no identifiers.
    pub fn anonymous() -> Identity {
        Identity::default()
    }

    /// Adds another identifier.
    #[must_use]
    pub fn and(mut self, name: impl Into<String>, value: impl Into<String>) -> Identity {
        let name = name.into();
        self.ids.retain(|(n, _)| *n != name);
        self.ids.push((name, value.into()));
        self
    }

    /// Attaches typed data (a user record, say) that channels can read back with [`data`](Self::data).
    #[must_use]
    pub fn with_data<T: Any + Send + Sync>(mut self, data: T) -> Identity {
        self.data = Some(Arc::new(data));
        self
    }

    /// The value of identifier `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.ids
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The identifiers in the order they were added.
    pub fn identifiers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.ids.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// The attached data, if it is a `T`.
    pub fn data<T: Any>(&self) -> Option<&T> {
        self.data
            .as_deref()
            .and_then(|d| (d as &dyn Any).downcast_ref())
    }

    /// Whether the identity has no identifiers.
    pub fn is_anonymous(&self) -> bool {
        self.ids.is_empty()
    }

    /// Rails' `connection_identifier`: the identifier values, sorted, joined with `:`.
    pub fn connection_identifier(&self) -> String {
        let mut values: Vec<&str> = self.ids.iter().map(|(_, v)| v.as_str()).collect();
        values.sort_unstable();
        values.join(":")
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.ids.iter().map(|(k, v)| (k, v)))
            .finish()
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.ids.is_empty() {
            return f.write_str("anonymous");
        }
        for (i, (k, v)) in self.ids.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{k}={v}")?;
        }
        Ok(())
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
