//! The axum side: check the request, authenticate, upgrade, hand the socket to a session.

use super::session::Opening;
use super::{Shared, resume, session};
use crate::connection::ConnectRequest;
use crate::protocol::{EXT_PROTOCOL, PAGE_NOT_FOUND, PROTOCOLS};
use crate::untrusted::untrusted;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;
use std::sync::Arc;

/// Rails' answer to anything that is not an acceptable WebSocket upgrade.
fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain")],
        PAGE_NOT_FOUND,
    )
        .into_response()
}

pub(crate) async fn cable<S: Send + Sync + 'static>(
    State(shared): State<Arc<Shared<S>>>,
    request: Request,
) -> Response {
    let started = std::time::Instant::now();
    let (mut parts, _body) = request.into_parts();
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(upgrade) => upgrade,
        Err(rejection) => {
            tracing::debug!(method = %parts.method, reason = %rejection, "not a WebSocket upgrade; 404");
            return not_found();
        }
    };
    let config = &shared.config;
    let registry = shared.handle.registry();
    let refused = |reason| {
        if let Some(metrics) = shared.handle.hub().metrics() {
            metrics.rejected(reason);
        }
    };
    if !config.origins.allows_request(&parts.headers) {
        refused("origin");
        match parts.headers.get(header::ORIGIN) {
            Some(origin) => {
                tracing::warn!(origin = %untrusted(String::from_utf8_lossy(origin.as_bytes())), "Request origin not allowed");
            }
            None => tracing::warn!(
                "Request without an Origin header not allowed (AllowedOrigins::require_origin); \
                 non-browser clients send none"
            ),
        }
        return not_found();
    }
    if registry.is_shutting_down() {
        refused("shutting_down");
        return (StatusCode::SERVICE_UNAVAILABLE, "Server is restarting").into_response();
    }
    let Some(admission) = registry.admit() else {
        refused("over_capacity");
        tracing::warn!(
            limit = registry.max_connections(),
            "refusing a connection: too many open"
        );
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            "Too many connections",
        )
            .into_response();
    };
    let remote = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    // A client of the extended protocol may come back for its parked session: then it is
    // not authenticated again (as in AnyCable: the sid stands for the identity it was given).
    let resumed = match requested_sid(&parts) {
        Some(sid) => {
            let resumed = shared.parked.claim(&sid).await;
            tracing::debug!(
                sid = %untrusted(resume::redact(&sid)),
                resumed = resumed.is_some(),
                "session resume asked"
            );
            resumed
        }
        None => None,
    };
    let opening = match resumed {
        Some(resumed) => Opening::Resume(resumed),
        None => {
            let request = ConnectRequest::new(parts, remote);
            let outcome = shared.connection.connect(&request).await;
            drop(request);
            Opening::Connect(outcome)
        }
    };

    let tracker = registry.tracker().clone();
    let shared = shared.clone();
    upgrade
        .protocols(PROTOCOLS)
        .read_buffer_size(config.read_buffer_size)
        .write_buffer_size(config.write_buffer_size)
        .max_message_size(config.max_message_size)
        .max_frame_size(config.max_message_size)
        .on_failed_upgrade(|e| tracing::warn!(error = %e, "WebSocket upgrade failed"))
        .on_upgrade(move |socket| {
            tracker.track_future(session::start(
                socket, shared, opening, remote, admission, started,
            ))
        })
}

/// The session id a reconnecting client of the extended protocol asks to resume: AnyCable's
/// `X-ANYCABLE-RESTORE-SID` header, else its `sid` query parameter (`cli/session_options.go`).
/// Only a client that offers the extended protocol can resume.
fn requested_sid(parts: &axum::http::request::Parts) -> Option<String> {
    let offers_ext = parts
        .headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == EXT_PROTOCOL);
    if !offers_ext {
        return None;
    }
    let from_header = parts
        .headers
        .get("x-anycable-restore-sid")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let sid = from_header.or_else(|| {
        form_urlencoded::parse(parts.uri.query()?.as_bytes())
            .find(|(k, _)| k == "sid")
            .map(|(_, v)| v.into_owned())
    })?;
    (!sid.is_empty()).then_some(sid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;

    fn parts(uri: &str, headers: &[(&str, &str)]) -> axum::http::request::Parts {
        let mut request = Request::builder().uri(uri);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        request.body(()).unwrap().into_parts().0
    }

    #[test]
    fn a_sid_comes_from_the_header_or_the_query_of_an_ext_client_only() {
        let ext = (
            "sec-websocket-protocol",
            "actioncable-v1-ext-json, actioncable-v1-json",
        );
        assert_eq!(
            requested_sid(&parts("/cable?sid=abc", &[ext])).as_deref(),
            Some("abc")
        );
        assert_eq!(
            requested_sid(&parts(
                "/cable?sid=abc",
                &[ext, ("X-AnyCable-Restore-Sid", "def")]
            ))
            .as_deref(),
            Some("def")
        );
        assert_eq!(requested_sid(&parts("/cable?sid=", &[ext])), None);
        assert_eq!(requested_sid(&parts("/cable", &[ext])), None);
        let plain = ("sec-websocket-protocol", "actioncable-v1-json");
        assert_eq!(requested_sid(&parts("/cable?sid=abc", &[plain])), None);
    }
}
