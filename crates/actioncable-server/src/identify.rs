//! Who a connection is: the server's [`Connection`], in the one way the settings chose.
//!
//! Whatever the way, a connection that does not prove who it is gets what Rails'
//! `reject_unauthorized_connection` gives: `{"type":"disconnect","reason":"unauthorized",
//! "reconnect":false}` and a close, so the stock consumer stops retrying. Why it was refused
//! (no token, an expired one, a forged cookie) is logged at debug level, never the credential.
//!
//! The identity's values are what Rails' `connection_identifier` is made of, so
//! `ActionCable.server.remote_connections.where(current_user: user).disconnect` in the Rails
//! app (on the same Redis) closes the user's connections here too: a record's identifier is its
//! GlobalID param (`to_gid_param`), anything else its string.

use crate::settings::GidModel;
use actioncable::stream::ToStreamParam as _;
use actioncable::{
    ConnectRequest, Connection, GlobalId, Identity, JwtVerifier, Reject, async_trait,
};
use actioncable_rails::RailsCookies;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::{Map, Value};

/// AnyCable's query parameter for the token, and its header (`X-` + the parameter).
pub(crate) const JWT_PARAM: &str = "jid";
const JWT_HEADER: &str = "x-jid";

/// How connections prove who they are.
pub(crate) enum Mode {
    /// Nobody is asked: every connection is anonymous.
    Public,
    /// An AnyCable JWT.
    Jwt(Box<JwtVerifier>),
    /// The app's encrypted cookie `name`.
    Cookie {
        cookies: Box<RailsCookies>,
        name: String,
    },
    /// A key of the app's cookie-store session in cookie `cookie`.
    Session {
        cookies: Box<RailsCookies>,
        cookie: String,
        key: SessionKey,
    },
}

/// Which value of the session is the user's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SessionKey {
    /// `session[key]`.
    Plain(String),
    /// Devise's `warden.user.<scope>.key`, `[[id], salt]`: the id.
    Warden(String),
}

impl SessionKey {
    /// `warden.user.<scope>.key` is Devise's; any other key is read as it is.
    pub(crate) fn new(key: &str) -> SessionKey {
        match key
            .strip_prefix("warden.user.")
            .and_then(|rest| rest.strip_suffix(".key"))
            .filter(|scope| !scope.is_empty() && !scope.contains('.'))
        {
            Some(scope) => SessionKey::Warden(scope.to_owned()),
            None => SessionKey::Plain(key.to_owned()),
        }
    }
}

/// The server's [`Connection`].
pub(crate) struct Identify {
    mode: Mode,
    /// `identified_by`'s name for cookie and session identities.
    identifier: String,
    /// Makes cookie and session ids GlobalIDs of this model.
    gid: Option<GidModel>,
}

impl Identify {
    pub(crate) fn new(mode: Mode, identifier: String, gid: Option<GidModel>) -> Identify {
        Identify {
            mode,
            identifier,
            gid,
        }
    }
}

#[async_trait]
impl Connection for Identify {
    async fn connect(&self, request: &ConnectRequest) -> Result<Identity, Reject> {
        match &self.mode {
            Mode::Public => Ok(Identity::anonymous()),
            Mode::Jwt(verifier) => jwt_identity(verifier, request),
            Mode::Cookie { cookies, name } => {
                // `?`: a cookie that does not decrypt or verify rejects, its kind logged.
                let Some(id) = cookies.jar(request.headers()).encrypted::<Value>(name)? else {
                    tracing::debug!(cookie = %name, "rejecting a connection without the cookie");
                    return Err(Reject::Unauthorized);
                };
                self.identity(&id)
            }
            Mode::Session {
                cookies,
                cookie,
                key,
            } => {
                let Some(session) = cookies.jar(request.headers()).session(cookie)? else {
                    tracing::debug!(%cookie, "rejecting a connection without the session cookie");
                    return Err(Reject::Unauthorized);
                };
                let id = match key {
                    SessionKey::Plain(key) => session.get::<Value>(key)?,
                    SessionKey::Warden(scope) => session
                        .warden_user_key(scope)
                        .and_then(|user| user.id().cloned()),
                };
                let Some(id) = id else {
                    tracing::debug!(
                        %cookie,
                        "rejecting a connection whose session holds no user (signed out)"
                    );
                    return Err(Reject::Unauthorized);
                };
                self.identity(&id)
            }
        }
    }
}

impl Identify {
    /// The identity of an id read from a cookie or the session.
    fn identity(&self, id: &Value) -> Result<Identity, Reject> {
        identity_from_id(&self.identifier, self.gid.as_ref(), id).ok_or_else(|| {
            tracing::debug!(
                "rejecting a connection whose id is neither a string nor a whole number"
            );
            Reject::Unauthorized
        })
    }
}

/// The claims of an AnyCable token that matter here; `exp` is checked by the verifier.
#[derive(Deserialize)]
struct AnyCableClaims {
    /// The identifiers, JSON-encoded: `{"current_user":"gid://app/User/1"}`.
    ext: Option<String>,
}

/// The identity an AnyCable JWT carries: its token from the `X-JID` header or the `jid` query
/// parameter (the header first, as AnyCable looks), verified, and the identifiers of its `ext`
/// claim.
fn jwt_identity(verifier: &JwtVerifier, request: &ConnectRequest) -> Result<Identity, Reject> {
    let token = request
        .header(JWT_HEADER)
        .map(str::to_owned)
        .or_else(|| request.query(JWT_PARAM))
        .filter(|t| !t.is_empty());
    let Some(token) = token else {
        tracing::debug!("rejecting a connection without a token (`jid`)");
        return Err(Reject::Unauthorized);
    };
    // A failure logs its kind (ExpiredSignature, InvalidSignature, …) at debug level.
    // The connection ends with `token_expired` at the token's `exp` (plus the leeway).
    let (claims, expiry) = verifier.verify_expiring::<AnyCableClaims>(&token)?;
    let Some(ext) = claims.ext else {
        tracing::debug!("rejecting a token without the `ext` claim (its identifiers)");
        return Err(Reject::Unauthorized);
    };
    let identifiers: Map<String, Value> = match serde_json::from_str(&ext) {
        Ok(map) => map,
        Err(error) => {
            tracing::debug!(%error, "rejecting a token whose `ext` is not a JSON object");
            return Err(Reject::Unauthorized);
        }
    };
    Ok(identity_from_ext(identifiers).with_expiry(expiry))
}

/// Identifiers as AnyCable's Rails SDK serializes them (`AnyCable::Rails.serialize`: a record
/// as its GlobalID URI, anything else as itself), turned into what Rails'
/// `connection_identifier` uses: a GlobalID's param, a string as is, a number or a boolean as
/// its text. `null` identifiers are left out, as Rails leaves out `nil` ones.
pub(crate) fn identity_from_ext(identifiers: Map<String, Value>) -> Identity {
    let mut identity = Identity::anonymous();
    for (name, value) in identifiers {
        let value = match value {
            Value::Null => continue,
            Value::String(s) => gid_param(&s).unwrap_or(s),
            other => other.to_string(),
        };
        identity = identity.and(name, value);
    }
    identity
}

/// `to_gid_param` of a GlobalID URI (`gid://app/Model/id`, its id already escaped by the gem):
/// the URI's URL-safe Base64 without padding, as `GlobalID#to_param` makes it.
fn gid_param(uri: &str) -> Option<String> {
    let rest = uri.strip_prefix("gid://")?;
    let mut parts = rest.splitn(3, '/');
    let (app, model, id) = (parts.next()?, parts.next()?, parts.next()?);
    if app.is_empty() || model.is_empty() || id.is_empty() {
        return None;
    }
    Some(URL_SAFE_NO_PAD.encode(uri))
}

/// The identity of a cookie or session value: `identified_by`'s name, and the id as a string
/// or, with `CABLE_IDENTIFIER_GID`, as the record's GlobalID param. Only strings and whole
/// numbers are ids.
pub(crate) fn identity_from_id(name: &str, gid: Option<&GidModel>, id: &Value) -> Option<Identity> {
    let id = match id {
        Value::String(s) if !s.is_empty() => s.clone(),
        Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
        _ => return None,
    };
    let value = match gid {
        Some(m) => GlobalId::new(&m.app, &m.model, &id)
            .to_stream_param()
            .into_owned(),
        None => id,
    };
    Some(Identity::new(name, value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ext(value: Value) -> Identity {
        let Value::Object(map) = value else { panic!() };
        identity_from_ext(map)
    }

    #[test]
    fn ext_identifiers_become_rails_connection_identifiers() {
        let id = ext(json!({"user_id": 42}));
        assert_eq!(id.get("user_id"), Some("42"));
        assert_eq!(id.connection_identifier(), "42");
        // A record: Rails' connection_identifier is its to_gid_param.
        let id =
            ext(json!({"current_user": "gid://interop/User/bob", "tenant": "acme", "none": null}));
        assert_eq!(
            id.get("current_user"),
            Some("Z2lkOi8vaW50ZXJvcC9Vc2VyL2JvYg")
        );
        assert_eq!(id.get("none"), None);
        assert_eq!(
            id.connection_identifier(),
            "Z2lkOi8vaW50ZXJvcC9Vc2VyL2JvYg:acme"
        );
        assert!(ext(json!({})).is_anonymous());
        // Not a GlobalID: kept as it is.
        assert_eq!(ext(json!({"u": "gid://x"})).get("u"), Some("gid://x"));
        // The URI's id is already escaped by the gem (`a b@c` is `a+b%40c`): encoded as it is,
        // the same param as GlobalId::new("app", "User", "a b@c") gives.
        let escaped = ext(json!({"current_user": "gid://app/User/a+b%40c"}));
        assert_eq!(
            escaped.get("current_user"),
            Some(
                GlobalId::new("app", "User", "a b@c")
                    .to_stream_param()
                    .as_ref()
            )
        );
    }

    #[test]
    fn devise_keys_are_recognised() {
        assert_eq!(
            SessionKey::new("warden.user.user.key"),
            SessionKey::Warden("user".into())
        );
        assert_eq!(
            SessionKey::new("warden.user.admin.key"),
            SessionKey::Warden("admin".into())
        );
        for plain in [
            "user_id",
            "warden.user..key",
            "warden.user.a.b.key",
            "warden.user.user",
        ] {
            assert_eq!(SessionKey::new(plain), SessionKey::Plain(plain.into()));
        }
    }

    #[test]
    fn cookie_ids_are_strings_numbers_or_global_ids() {
        let gid = GidModel {
            app: "interop".into(),
            model: "User".into(),
        };
        let id = identity_from_id("current_user", None, &json!(42)).unwrap();
        assert_eq!(id.get("current_user"), Some("42"));
        let id = identity_from_id("current_user", Some(&gid), &json!("bob")).unwrap();
        assert_eq!(
            id.get("current_user"),
            Some("Z2lkOi8vaW50ZXJvcC9Vc2VyL2JvYg")
        );
        for bad in [
            json!(null),
            json!(""),
            json!(1.5),
            json!([1]),
            json!({"id": 1}),
            json!(true),
        ] {
            assert!(
                identity_from_id("current_user", None, &bad).is_none(),
                "{bad}"
            );
        }
    }
}
