//! `POST /_broadcast`: broadcasting from a backend that has no Redis, in AnyCable's HTTP
//! broadcaster's format, so AnyCable's SDKs (`broadcast_adapter: http`) and anything that can
//! send an HTTP request publish here.
//!
//! ```text
//! POST /_broadcast
//! Authorization: Bearer <CABLE_BROADCAST_KEY>
//!
//! {"stream":"chat:lobby","data":"{\"text\":\"hi\"}"}      or an array of such objects
//! ```
//!
//! `data` is a string: normally JSON-encoded (what `ActionCable.server.broadcast` would send),
//! which subscribers receive as that JSON, byte for byte; a string that is not JSON is
//! delivered as a JSON string, as AnyCable does. `meta` is accepted and ignored.
//!
//! | answer | when |
//! |---|---|
//! | `201 Created` | every publication was handed to the adapter |
//! | `401 Unauthorized` | no `Authorization: Bearer <key>`, or another key |
//! | `413 Payload Too Large` | a body over [`MAX_BODY_BYTES`] |
//! | `422 Unprocessable Entity` | not `POST` (AnyCable's answer), or a body that is not a publication or an array of them |
//! | `503 Service Unavailable` | the adapter refused a publication (Redis down): it, and those after it, reached nobody |
//!
//! The endpoint exists only when `CABLE_BROADCAST_KEY` is set: without a key it would let
//! anyone who reaches the port write to every stream, so it answers 404 like any unknown path.
//! Neither the key nor the payload is ever logged.

use actioncable::CableHandle;
use axum::body::{Body, to_bytes};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::net::SocketAddr;
use std::sync::Arc;
use subtle::ConstantTimeEq as _;

/// The largest body accepted: 1 MiB, the cable's own largest message.
pub(crate) const MAX_BODY_BYTES: usize = 1024 * 1024;

/// What the handler needs: the cable and the expected `Authorization` value.
pub(crate) struct Broadcaster {
    handle: CableHandle,
    authorization: Vec<u8>,
}

impl Broadcaster {
    pub(crate) fn new(handle: CableHandle, key: &str) -> Broadcaster {
        Broadcaster {
            handle,
            authorization: format!("Bearer {key}").into_bytes(),
        }
    }

    /// Whether `headers` carry the key; compared in constant time.
    fn authorized(&self, headers: &HeaderMap) -> bool {
        headers
            .get(header::AUTHORIZATION)
            .is_some_and(|v| bool::from(v.as_bytes().ct_eq(&self.authorization)))
    }
}

/// One publication.
#[derive(Deserialize)]
struct Publication {
    stream: String,
    data: String,
    /// AnyCable's delivery options (`exclude_socket`, …): accepted, not used.
    #[serde(default, rename = "meta")]
    _meta: Option<serde::de::IgnoredAny>,
}

/// A publication or a batch of them.
#[derive(Deserialize)]
#[serde(untagged)]
enum Publications {
    One(Publication),
    Many(Vec<Publication>),
}

/// The handler, for every method (AnyCable answers other methods 422, not 405).
pub(crate) async fn handle(
    State(broadcaster): State<Arc<Broadcaster>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if method != Method::POST {
        tracing::debug!(%peer, %method, "broadcast request with the wrong method");
        return unprocessable("POST a publication");
    }
    if !broadcaster.authorized(&headers) {
        tracing::warn!(%peer, "broadcast request without the right key refused");
        return StatusCode::UNAUTHORIZED.into_response();
    }
    // Only an authorized caller gets its body read.
    let bytes = match to_bytes(body, MAX_BODY_BYTES).await {
        Ok(bytes) => bytes,
        Err(error) => {
            tracing::warn!(%peer, %error, limit = MAX_BODY_BYTES, "broadcast body refused");
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is over {MAX_BODY_BYTES} bytes, or could not be read\n"),
            )
                .into_response();
        }
    };
    let publications = match serde_json::from_slice::<Publications>(&bytes) {
        Ok(Publications::One(p)) => vec![p],
        Ok(Publications::Many(list)) => list,
        Err(_) => {
            tracing::warn!(%peer, bytes = bytes.len(), "broadcast body is not a publication");
            return unprocessable(
                r#"expected {"stream":"<name>","data":"<JSON-encoded message>"} or an array of them"#,
            );
        }
    };
    if let Some(i) = publications.iter().position(|p| p.stream.is_empty()) {
        tracing::warn!(%peer, index = i, "broadcast with an empty stream name");
        return unprocessable("a publication has an empty stream name");
    }
    let total = publications.len();
    for (i, publication) in publications.into_iter().enumerate() {
        if let Err(error) = publish(&broadcaster.handle, &publication).await {
            // The handle logged the adapter's error with the stream already.
            tracing::error!(%peer, %error, published = i, total, "broadcast request failed");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the adapter refused publication {i} (of {total}); it and those after it \
                     reached nobody\n"
                ),
            )
                .into_response();
        }
    }
    tracing::debug!(%peer, total, "broadcast request published");
    StatusCode::CREATED.into_response()
}

/// Publishes `data` as it is when it is JSON, else as a JSON string.
async fn publish(
    handle: &CableHandle,
    publication: &Publication,
) -> Result<(), actioncable::BroadcastError> {
    let is_json = serde_json::from_str::<&RawValue>(&publication.data).is_ok();
    if is_json {
        handle
            .broadcast_json(&publication.stream, &publication.data)
            .await
    } else {
        handle
            .broadcast(&publication.stream, &publication.data)
            .await
    }
}

fn unprocessable(why: &str) -> Response {
    (StatusCode::UNPROCESSABLE_ENTITY, format!("{why}\n")).into_response()
}
