//! A Rails cookie-store session: the session hash the app keeps in one encrypted cookie.
//!
//! With `config.session_store :cookie_store, key: "_myapp_session"`,
//! `ActionDispatch::Session::CookieStore`
//! (`actionpack/lib/action_dispatch/middleware/session/cookie_store.rb`, lines 111-126 of Rails
//! main) writes the whole session through `cookie_jar.signed_or_encrypted[key]`, which is the
//! encrypted jar whenever the app has a `secret_key_base` (`cookies.rb`, lines 287-294): an
//! encrypted cookie named
//! `_myapp_session`, purpose `cookie._myapp_session`, whose JSON value is the session hash with
//! string keys. Rails puts `session_id` in it (`write_session`), `protect_from_forgery` adds
//! `_csrf_token`, and the app adds its own keys (`session[:user_id] = …`). `expire_after` is
//! the message's expiry, checked like any cookie's.
//!
//! Devise signs users in through Warden, which keeps each scope's user under
//! `warden.user.<scope>.key` (Warden's `lib/warden/session_serializer.rb`, `key_for`) as
//! Devise's `serialize_into_session` makes it (`lib/devise/models/authenticatable.rb`): `[record.to_key, record.authenticatable_salt]`, e.g.
//! `[[42], "$2a$12$Kz…"]` — the record's primary key(s) and the first 29 characters of its
//! bcrypt hash, or `null` for models without a password. Devise only accepts the session when
//! the salt still matches the record (`serialize_from_session`): compare it too, so a password
//! change signs the user out of the cable as well.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::RailsError;

/// The session hash of a Rails cookie-store session (`session` in a controller).
///
/// Its `Debug` shows the keys only: the values (the CSRF token, the session id) are
/// credentials.
///
/// ```
/// use actioncable_rails::{KeyDigest, RailsCookies};
/// use serde_json::json;
///
/// let cookies = RailsCookies::new("the secret_key_base", KeyDigest::Sha256)?;
/// let hash = json!({ "session_id": "f3c1", "user_id": 42, "warden.user.user.key": [[42], null] });
/// let value = cookies.encrypt_cookie("_myapp_session", &hash, None)?;
/// let mut headers = http::HeaderMap::new();
/// headers.insert("cookie", format!("_myapp_session={value}").parse().unwrap());
///
/// let session = cookies.jar(&headers).session("_myapp_session")?.expect("a session");
/// assert_eq!(session.id(), Some("f3c1"));
/// assert_eq!(session.get::<u64>("user_id")?, Some(42));
/// let user = session.warden_user_key("user").expect("signed in with Devise");
/// assert_eq!(user.id(), Some(&json!(42)));
/// assert_eq!(user.salt(), None);
/// # Ok::<(), actioncable_rails::RailsError>(())
/// ```
#[derive(Clone, PartialEq)]
pub struct RailsSession {
    hash: Map<String, Value>,
}

impl std::fmt::Debug for RailsSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RailsSession")
            .field("keys", &self.hash.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl RailsSession {
    pub(crate) fn from_map(hash: Map<String, Value>) -> Self {
        RailsSession { hash }
    }

    /// `session[key]` as `T`; `Ok(None)` when the key is absent or `null`.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, RailsError> {
        match self.hash.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => T::deserialize(value).map(Some).map_err(|_| {
                RailsError::Payload(format!(
                    "session[{key:?}] is not of the type asked for ({})",
                    json_type(value)
                ))
            }),
        }
    }

    /// The session id Rails keeps in the hash (`session_id`).
    pub fn id(&self) -> Option<&str> {
        self.hash.get("session_id").and_then(Value::as_str)
    }

    /// The CSRF token `protect_from_forgery` keeps in the session (`_csrf_token`).
    pub fn csrf_token(&self) -> Option<&str> {
        self.hash.get("_csrf_token").and_then(Value::as_str)
    }

    /// The whole hash.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.hash
    }

    /// The user Warden (Devise) keeps for `scope` (`"user"` for `devise_for :users`), from
    /// `warden.user.<scope>.key`; `None` when nobody is signed in for that scope or the value
    /// is not in Devise's `[[id…], salt]` shape.
    pub fn warden_user_key(&self, scope: &str) -> Option<WardenUser> {
        let Value::Array(entry) = self.hash.get(&format!("warden.user.{scope}.key"))? else {
            return None;
        };
        match entry.as_slice() {
            [Value::Array(key), Value::String(salt)] => Some(WardenUser {
                key: key.clone(),
                salt: Some(salt.clone()),
            }),
            [Value::Array(key), Value::Null] | [Value::Array(key)] => Some(WardenUser {
                key: key.clone(),
                salt: None,
            }),
            _ => None,
        }
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A Devise user in the session: the record's key (`to_key`) and its `authenticatable_salt`.
#[derive(Clone, PartialEq, Eq)]
pub struct WardenUser {
    key: Vec<Value>,
    salt: Option<String>,
}

impl std::fmt::Debug for WardenUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WardenUser")
            .field("key", &self.key)
            .field("salt", &self.salt.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

impl WardenUser {
    /// The record's id when its key is a single column (`to_key` is `[id]`), as JSON: a number,
    /// or a string for UUID keys.
    pub fn id(&self) -> Option<&Value> {
        match self.key.as_slice() {
            [id] => Some(id),
            _ => None,
        }
    }

    /// The record's whole key (`to_key`): several values for a composite primary key.
    pub fn key(&self) -> &[Value] {
        &self.key
    }

    /// `authenticatable_salt`: the first 29 characters of the bcrypt hash with
    /// `database_authenticatable`, `None` without it. Devise signs the user out when it no
    /// longer matches the record.
    pub fn salt(&self) -> Option<&str> {
        self.salt.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn session(value: Value) -> RailsSession {
        let Value::Object(hash) = value else { panic!() };
        RailsSession::from_map(hash)
    }

    #[test]
    fn reads_rails_and_devise_keys() {
        let s = session(json!({
            "session_id": "abc",
            "_csrf_token": "tok",
            "user_id": 7,
            "warden.user.user.key": [[7], "$2a$12$abcdefghijklmnopqrstuv"],
            "warden.user.admin.key": [["9b2e", 3], null],
            "warden.user.odd.key": "7",
            "gone": null,
        }));
        assert_eq!(s.id(), Some("abc"));
        assert_eq!(s.csrf_token(), Some("tok"));
        assert_eq!(s.get::<u32>("user_id"), Ok(Some(7)));
        assert_eq!(s.get::<u32>("gone"), Ok(None));
        assert_eq!(s.get::<u32>("missing"), Ok(None));
        let user = s.warden_user_key("user").unwrap();
        assert_eq!(user.id(), Some(&json!(7)));
        assert_eq!(user.salt(), Some("$2a$12$abcdefghijklmnopqrstuv"));
        let admin = s.warden_user_key("admin").unwrap();
        assert_eq!(
            (admin.id(), admin.key().len(), admin.salt()),
            (None, 2, None)
        );
        assert_eq!(s.warden_user_key("odd"), None);
        assert_eq!(s.warden_user_key("nobody"), None);
    }

    #[test]
    fn values_stay_out_of_debug_and_errors() {
        let s = session(
            json!({"_csrf_token": "tok-secret", "warden.user.user.key": [[1], "salt-secret"]}),
        );
        let debug = format!("{s:?} {:?}", s.warden_user_key("user").unwrap());
        assert!(!debug.contains("secret"), "{debug}");
        let err = s.get::<u64>("_csrf_token").unwrap_err().to_string();
        assert!(!err.contains("secret") && err.contains("a string"), "{err}");
    }
}
