//! The HTTP API: login/logout, rooms and their history, notifications, health.
//!
//! Every error answer is JSON `{"error":"…"}` (401 without credentials, 403 for a private room,
//! 415 for a state-changing request whose body is not declared JSON, 422 for invalid input, 400
//! for a body that is not JSON, 429 with `Retry-After` over a rate limit, 500 for a storage
//! failure).
//!
//! Against cross-site requests: every `POST` must say `Content-Type: application/json`, which
//! a page of another origin cannot send without a CORS preflight (that the demo never grants),
//! so no HTML form or `no-cors` fetch elsewhere can log someone in, out, or send anything; and
//! `POST /notifications` takes only `Authorization: Bearer`, never the cookie.

use crate::auth::{Auth, CURRENT_USER, is_https};
use crate::config::{PrivateRooms, may_enter};
use crate::db::{Db, NewNotification, Notification};
use crate::limits::{RateLimiter, RetryAfter, client_key};
use crate::validate::{history_limit, is_valid_kind, is_valid_link, is_valid_name, is_valid_room};
use actioncable::{CableHandle, ConnectRequest, Identity};
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

/// Most notifications `GET /notifications` returns.
const MAX_NOTIFICATIONS: u32 = 200;
/// Most rooms `GET /rooms` returns.
const MAX_ROOMS: u32 = 50;
/// Longest notification message, in characters.
const MAX_NOTIFICATION_CHARS: usize = 1000;

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Storage.
    pub db: Db,
    /// Credentials.
    pub auth: Arc<Auth>,
    /// Broadcasts to cable subscribers.
    pub handle: CableHandle,
    /// Private rooms and their members.
    pub private_rooms: Arc<PrivateRooms>,
    /// `POST /login` per client address.
    pub login_limit: Arc<RateLimiter<IpAddr>>,
    /// `POST /notifications` per sender.
    pub notify_limit: Arc<RateLimiter<String>>,
}

/// The HTTP routes (the cable is merged in by [`crate::app`]).
pub fn routes(state: AppState) -> Router {
    Router::new()
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/token", post(refresh_token))
        .route("/rooms", get(rooms))
        .route("/rooms/{room}/messages", get(room_messages))
        .route(
            "/notifications",
            post(create_notification).get(list_notifications),
        )
        .route("/health", get(health))
        .with_state(state)
}

/// An error answer: a status and `{"error": message}` (and `Retry-After` for a 429).
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    retry_after: Option<RetryAfter>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    fn unauthorized() -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "authentication required")
    }

    fn too_many(what: &str, wait: RetryAfter) -> ApiError {
        ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: format!("{what}; try again in {} s", wait.secs()),
            retry_after: Some(wait),
        }
    }

    fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }

    fn internal(what: &str, error: &dyn std::fmt::Display) -> ApiError {
        tracing::error!(%error, "{what}");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(json!({ "error": self.message }))).into_response();
        if let Some(wait) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(wait.secs()));
        }
        response
    }
}

/// The authenticated user: `Authorization: Bearer <JWT>` or the signed `user` cookie, of a
/// session that is still current.
#[derive(Debug)]
pub struct CurrentUser(pub String);

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        // Reuse the cable's request view so both sides read credentials the same way.
        let request = ConnectRequest::new(parts.clone(), None);
        state
            .auth
            .http_user(&request)
            .await
            .map_err(|e| ApiError::internal("cannot check a session", &e))?
            .map(CurrentUser)
            .ok_or_else(ApiError::unauthorized)
    }
}

/// The authenticated user by `Authorization: Bearer <JWT>` only (never the cookie, which a
/// browser would attach to another site's request too).
#[derive(Debug)]
pub struct BearerUser(pub String);

impl FromRequestParts<AppState> for BearerUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let request = ConnectRequest::new(parts.clone(), None);
        state
            .auth
            .bearer_user(&request)
            .await
            .map_err(|e| ApiError::internal("cannot check a session", &e))?
            .map(BearerUser)
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "authentication required: send Authorization: Bearer <the token from POST /login>",
                )
            })
    }
}

/// The client's address, as the rate limit on logins counts it (IPv6 by /64). Without connect
/// info (a router driven in-process) every client counts as one.
#[derive(Debug)]
pub struct ClientAddr(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
        Ok(ClientAddr(client_key(ip)))
    }
}

/// Refuses (415) a state-changing request that does not declare a JSON body: an HTML form or
/// a `no-cors` fetch on another site can send `text/plain` or a form encoding cross-site
/// without a preflight, never `application/json`.
fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
    if json {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send a JSON body with Content-Type: application/json",
        ))
    }
}

/// Parses a JSON body (its `Content-Type` was checked by [`require_json`]).
fn json_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        let status = if e.is_data() {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::BAD_REQUEST
        };
        ApiError::new(status, format!("invalid JSON body: {e}"))
    })
}

#[derive(Debug, Deserialize)]
struct LoginBody {
    #[serde(default)]
    name: Option<serde_json::Value>,
}

#[derive(Debug, Serialize)]
struct LoginReply {
    token: String,
    user: String,
    /// Seconds until the token expires (`SESSION_LIFETIME_SECS`).
    expires_in: u64,
}

/// `POST /login {"name":"alice"}` → a token and the signed cookie (rate-limited per client
/// address).
async fn login(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    state.login_limit.check(&client).map_err(|wait| {
        tracing::debug!(%client, "login refused: over the rate limit");
        ApiError::too_many("too many logins from your address", wait)
    })?;
    require_json(&headers)?;
    let body: LoginBody = json_body(&body)?;
    let name = match body.name {
        Some(serde_json::Value::String(name)) if is_valid_name(&name) => name,
        _ => {
            return Err(ApiError::invalid(
                "name must be 1 to 32 characters of letters, digits, '_', '.' or '-'",
            ));
        }
    };
    let login = state
        .auth
        .login(&name, is_https(&headers))
        .await
        .map_err(|e| ApiError::internal("cannot log in", &e))?;
    tracing::info!(user = %name, "logged in");
    Ok((
        [(header::SET_COOKIE, login.set_cookie)],
        Json(LoginReply {
            token: login.token,
            user: name,
            expires_in: state.auth.lifetime().as_secs(),
        }),
    )
        .into_response())
}

/// `POST /token` (Bearer token only) → `{"token","user","expires_in"}`: a fresh token in the
/// same session, for a page whose token will soon expire (its cable connection is closed with
/// `token_expired` at the old token's `exp`, and reconnects with the new one). A token of an
/// ended session (logout) gets 401, as everywhere.
async fn refresh_token(
    State(state): State<AppState>,
    BearerUser(user): BearerUser,
) -> Result<Json<LoginReply>, ApiError> {
    let token = state
        .auth
        .refresh(&user)
        .await
        .map_err(|e| ApiError::internal("cannot refresh a token", &e))?;
    tracing::debug!(%user, "token refreshed");
    Ok(Json(LoginReply {
        token,
        user,
        expires_in: state.auth.lifetime().as_secs(),
    }))
}

/// `POST /logout` (Bearer token or cookie, JSON content type) → 204 and an expired cookie.
/// Every token and cookie of the user issued so far stops working, and their open cable
/// connections are closed (without reconnecting). Without valid credentials it only clears the
/// cookie.
async fn logout(
    State(state): State<AppState>,
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    let (parts, _body) = request.into_parts();
    require_json(&parts.headers)?;
    let request = ConnectRequest::new(parts, None);
    let user = state
        .auth
        .http_user(&request)
        .await
        .map_err(|e| ApiError::internal("cannot check a session", &e))?;
    if let Some(user) = user {
        state
            .auth
            .logout(&user)
            .await
            .map_err(|e| ApiError::internal("cannot end the sessions", &e))?;
        tracing::info!(%user, "logged out");
        // On every node: the sessions are over, so are the connections they opened.
        if let Err(error) = state
            .handle
            .remote_disconnect(&Identity::new(CURRENT_USER, user.as_str()), false)
            .await
        {
            tracing::warn!(%error, %user, "logged out, but open connections could not be closed");
        }
    }
    Ok((
        StatusCode::NO_CONTENT,
        [(
            header::SET_COOKIE,
            Auth::logout_cookie(is_https(request.headers())),
        )],
    )
        .into_response())
}

/// `GET /rooms` → the rooms with messages that the caller may enter, most recent activity
/// first: `[{"room","messages","last_message_at"}]` (for the page's room picker).
async fn rooms(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> Result<Response, ApiError> {
    // Fetch a few more than shown, so private rooms the caller may not see leave no gap.
    let extra = u32::try_from(state.private_rooms.len()).unwrap_or(u32::MAX);
    let mut rooms = state
        .db
        .active_rooms(MAX_ROOMS.saturating_add(extra))
        .await
        .map_err(|e| ApiError::internal("cannot list rooms", &e))?;
    rooms.retain(|r| may_enter(&state.private_rooms, &r.room, &user));
    rooms.truncate(MAX_ROOMS as usize);
    Ok(Json(rooms).into_response())
}

/// `GET /rooms/{room}/messages?limit=50` → the last messages, oldest first.
async fn room_messages(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(room): Path<String>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, ApiError> {
    if !is_valid_room(&room) {
        return Err(ApiError::invalid("invalid room name"));
    }
    if !may_enter(&state.private_rooms, &room, &user) {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "this room is private"));
    }
    let Ok(Query(query)) = query else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed query string",
        ));
    };
    let limit = match query.get("limit") {
        None => history_limit(None),
        Some(v) => match v.trim().parse::<i64>() {
            Ok(n) => history_limit(Some(n)),
            Err(_) => return Err(ApiError::invalid("limit must be an integer")),
        },
    };
    let messages = state
        .db
        .recent_messages(&room, limit)
        .await
        .map_err(|e| ApiError::internal("cannot load messages", &e))?;
    Ok(Json(messages).into_response())
}

#[derive(Debug, Deserialize)]
struct NotificationBody {
    #[serde(default)]
    user: Option<serde_json::Value>,
    #[serde(default)]
    message: Option<serde_json::Value>,
    #[serde(default)]
    kind: Option<serde_json::Value>,
    #[serde(default)]
    link: Option<serde_json::Value>,
}

/// What a user's notification stream carries.
#[derive(Debug, Serialize)]
struct NotificationPush<'a> {
    id: i64,
    message: &'a str,
    kind: &'a str,
    link: Option<&'a str>,
    created_at: &'a str,
}

/// A notification as its owner lists it.
#[derive(Debug, Serialize)]
struct NotificationView<'a> {
    id: i64,
    message: &'a str,
    kind: &'a str,
    link: Option<&'a str>,
    read: bool,
    created_at: &'a str,
}

impl<'a> From<&'a Notification> for NotificationView<'a> {
    fn from(n: &'a Notification) -> Self {
        NotificationView {
            id: n.id,
            message: &n.message,
            kind: &n.kind,
            link: n.link.as_deref(),
            read: n.read,
            created_at: &n.created_at,
        }
    }
}

/// Checks a `POST /notifications` body.
fn new_notification(body: NotificationBody) -> Result<NewNotification, ApiError> {
    use serde_json::Value;
    let user = match body.user {
        Some(Value::String(u)) if !u.trim().is_empty() => u,
        _ => return Err(ApiError::invalid("user is required")),
    };
    if !is_valid_name(&user) {
        return Err(ApiError::invalid("user is not a valid user name"));
    }
    let message = match body.message {
        Some(Value::String(m)) if !m.trim().is_empty() => m.trim().to_owned(),
        _ => return Err(ApiError::invalid("message is required")),
    };
    if message.chars().count() > MAX_NOTIFICATION_CHARS {
        return Err(ApiError::invalid(
            "message is too long (at most 1000 characters)",
        ));
    }
    let kind = match body.kind {
        None | Some(Value::Null) => "info".to_owned(),
        Some(Value::String(k)) if is_valid_kind(&k) => k,
        Some(_) => {
            return Err(ApiError::invalid(
                "kind must be 1 to 32 characters of a-z, 0-9, '_' or '-'",
            ));
        }
    };
    let link = match body.link {
        None | Some(Value::Null) => None,
        Some(Value::String(l)) if is_valid_link(&l) => Some(l),
        Some(_) => {
            return Err(ApiError::invalid(
                "link must be a path on this site (one '/', no backslash) or an http(s) URL, in printable ASCII",
            ));
        }
    };
    Ok(NewNotification {
        user,
        message,
        kind,
        link,
    })
}

/// `POST /notifications` (Bearer token, JSON, rate-limited per sender; any signed-in user may
/// notify any user) → stores it, pushes it to its owner's stream: 201, or 503 (with the stored
/// notification) when the push could not be made.
async fn create_notification(
    State(state): State<AppState>,
    BearerUser(sender): BearerUser,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    require_json(&headers)?;
    state.notify_limit.check(&sender).map_err(|wait| {
        tracing::debug!(%sender, "notification refused: over the rate limit");
        ApiError::too_many("you are sending notifications too fast", wait)
    })?;
    let new = new_notification(json_body(&body)?)?;
    let stored = state
        .db
        .add_notification(new)
        .await
        .map_err(|e| ApiError::internal("cannot store a notification", &e))?;
    let push = NotificationPush {
        id: stored.id,
        message: &stored.message,
        kind: &stored.kind,
        link: stored.link.as_deref(),
        created_at: &stored.created_at,
    };
    // The notification is stored either way (the owner sees it in GET /notifications); a
    // failed push is reported to the caller rather than swallowed.
    if let Err(e) = state
        .handle
        .broadcast_to("NotificationChannel", &stored.user, &push)
        .await
    {
        tracing::warn!(error = %e, id = stored.id, "notification stored but not pushed");
        let body = json!({
            "error": "stored, but the live push failed; the user will see it on their next visit",
            "notification": &stored,
        });
        return Ok((StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response());
    }
    Ok((StatusCode::CREATED, Json(&stored)).into_response())
}

/// `GET /notifications` → the caller's notifications, newest first.
async fn list_notifications(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> Result<Response, ApiError> {
    let list = state
        .db
        .notifications_for(&user, MAX_NOTIFICATIONS)
        .await
        .map_err(|e| ApiError::internal("cannot load notifications", &e))?;
    let view: Vec<NotificationView<'_>> = list.iter().map(NotificationView::from).collect();
    Ok(Json(view).into_response())
}

/// `GET /health` → `ok`.
async fn health() -> &'static str {
    "ok"
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(v: serde_json::Value) -> NotificationBody {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn state_changing_requests_must_declare_json() {
        let with = |ct: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, ct.parse().unwrap());
            h
        };
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
        ] {
            assert!(require_json(&with(ok)).is_ok(), "{ok}");
        }
        for refused in [
            "text/plain",
            "text/plain; charset=utf-8",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/jsonx",
            "text/json",
        ] {
            let err = require_json(&with(refused)).unwrap_err();
            assert_eq!(err.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{refused}");
        }
        assert_eq!(
            require_json(&HeaderMap::new()).unwrap_err().status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
    }

    #[test]
    fn notification_bodies() {
        let n = new_notification(body(json!({"user":"bob","message":" hi "}))).unwrap();
        assert_eq!(
            (n.user.as_str(), n.message.as_str(), n.kind.as_str()),
            ("bob", "hi", "info")
        );
        assert_eq!(n.link, None);
        let n = new_notification(body(
            json!({"user":"bob","message":"hi","kind":"alert","link":"/x"}),
        ))
        .unwrap();
        assert_eq!((n.kind.as_str(), n.link.as_deref()), ("alert", Some("/x")));
        for bad in [
            json!({}),
            json!({"user":"","message":"hi"}),
            json!({"user":"bob"}),
            json!({"user":"bob","message":"  "}),
            json!({"user":5,"message":"hi"}),
            json!({"user":"b o b","message":"hi"}),
            json!({"user":"bob","message":"hi","link":"javascript:x"}),
            json!({"user":"bob","message":"hi","link":"/\\evil.example/"}),
            json!({"user":"bob","message":"hi","kind":""}),
        ] {
            let err = new_notification(body(bad.clone())).unwrap_err();
            assert_eq!(err.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        }
    }
}
