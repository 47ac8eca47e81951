//! The axum side: check the request, authenticate, upgrade, hand the socket to a session.

use super::{Shared, session};
use crate::connection::ConnectRequest;
use crate::protocol::{PAGE_NOT_FOUND, PROTOCOLS};
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
    if !config.origins.allows_request(&parts.headers) {
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
        return (StatusCode::SERVICE_UNAVAILABLE, "Server is restarting").into_response();
    }
    let Some(admission) = registry.admit() else {
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
    let request = ConnectRequest::new(parts, remote);
    let outcome = shared.connection.connect(&request).await;
    drop(request);

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
            tracker.track_future(session::run(socket, shared, outcome, remote, admission))
        })
}
