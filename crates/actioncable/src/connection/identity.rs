//! Who a connection belongs to: Rails' `identified_by`, plus typed data for channel code.

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

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
    expiry: Option<SystemTime>,
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

    /// The moment the credential behind this identity expires (a JWT's `exp`, a cookie's
    /// expiry). The connection is then sent `disconnect` with reason `token_expired` and
    /// `reconnect: true`, and closed; the client connects again with a fresh credential. A
    /// moment already past closes the connection right after its `welcome`.
    ///
    /// ```
    /// use actioncable::Identity;
    /// use std::time::{Duration, SystemTime};
    /// let until = SystemTime::now() + Duration::from_secs(3600);
    /// let id = Identity::new("current_user", "alice").with_expiry(until);
    /// assert_eq!(id.expiry(), Some(until));
    /// ```
    #[must_use]
    pub fn with_expiry(mut self, at: SystemTime) -> Identity {
        self.expiry = Some(at);
        self
    }

    /// When the credential expires, if it does ([`with_expiry`](Self::with_expiry)).
    pub fn expiry(&self) -> Option<SystemTime> {
        self.expiry
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
