//! The operator's view of one node: [`NodeStats`] (what [`CableHandle::connections`] and the
//! fan-out already know, summed up) and a route that serves it as JSON behind a bearer key.
//!
//! Why a route of its own rather than more metrics: the questions an operator asks of one node
//! at 3 a.m. — *which stream has 40,000 subscribers, whose queue is backing up* — have answers
//! with names in them (streams, identities), which do not belong in metric labels (their number
//! is unbounded) and must not be public. So: off unless the app mounts it, and refused without
//! the key, compared in constant time.

use crate::handle::CableHandle;
use serde::Serialize;
use std::collections::BTreeMap;
use subtle::ConstantTimeEq as _;

/// A snapshot of one node, for operators ([`CableHandle::stats`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct NodeStats {
    /// Open connections.
    pub connections: usize,
    /// Confirmed subscriptions, over all connections.
    pub subscriptions: usize,
    /// Streams with local subscribers.
    pub streams: usize,
    /// Confirmed subscriptions per channel class.
    pub subscriptions_by_channel: BTreeMap<String, usize>,
    /// The streams with the most local subscriptions, most first.
    pub top_streams: Vec<StreamStats>,
    /// The connections with the most frames waiting to be written, most first (only those
    /// with any).
    pub slowest_outboxes: Vec<OutboxStats>,
    /// Whether the node is ready for new clients ([`CableHandle::readiness`]).
    pub ready: bool,
}

/// One stream's local subscriptions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct StreamStats {
    /// The stream (broadcasting) name.
    pub stream: String,
    /// Its subscriptions on this node.
    pub subscribers: usize,
}

/// One connection's queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct OutboxStats {
    /// The connection's id on this node.
    pub connection: u64,
    /// Who it belongs to (`name=value,…`, or `anonymous`).
    pub identity: String,
    /// Frames waiting to be written to it.
    pub queued_frames: usize,
}

impl CableHandle {
    /// A snapshot of this node for operators: counts, subscriptions per channel class, the `top`
    /// streams by local subscriptions and the `top` connections by queued frames. It walks
    /// every connection: for an admin page, not for a hot loop.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let cable = actioncable::Cable::builder().build().unwrap();
    /// let stats = cable.handle().stats(10);
    /// assert_eq!((stats.connections, stats.streams), (0, 0));
    /// # }
    /// ```
    pub fn stats(&self, top: usize) -> NodeStats {
        let connections = self.connections();
        let mut by_channel: BTreeMap<String, usize> = BTreeMap::new();
        for identifier in connections.iter().flat_map(|c| &c.subscriptions) {
            let class = serde_json::from_str::<serde_json::Value>(identifier)
                .ok()
                .and_then(|v| v.get("channel").and_then(|c| c.as_str()).map(str::to_owned))
                .unwrap_or_default();
            *by_channel.entry(class).or_default() += 1;
        }
        let mut slowest: Vec<OutboxStats> = connections
            .iter()
            .filter(|c| c.queued_frames > 0)
            .map(|c| OutboxStats {
                connection: c.id.0,
                identity: c.identity.to_string(),
                queued_frames: c.queued_frames,
            })
            .collect();
        slowest.sort_by_key(|o| std::cmp::Reverse(o.queued_frames));
        slowest.truncate(top);
        NodeStats {
            connections: connections.len(),
            subscriptions: by_channel.values().sum(),
            streams: self.stream_count(),
            subscriptions_by_channel: by_channel,
            top_streams: self
                .hub()
                .top_streams(top)
                .into_iter()
                .map(|(stream, subscribers)| StreamStats {
                    stream,
                    subscribers,
                })
                .collect(),
            slowest_outboxes: slowest,
            ready: self.readiness().is_ready(),
        }
    }

    /// A router answering `GET path` with [`stats(10)`](Self::stats) as JSON, only to requests
    /// carrying `Authorization: Bearer <key>`; `401` otherwise. Mount it only where operators
    /// reach it, with a long random key.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let cable = actioncable::Cable::builder().build().unwrap();
    /// let app: axum::Router = axum::Router::new()
    ///     .merge(cable.handle().stats_router("/admin/stats", "a-long-random-operator-key"))
    ///     .merge(cable.router("/cable"));
    /// # let _ = app;
    /// # }
    /// ```
    pub fn stats_router<S: Clone + Send + Sync + 'static>(
        &self,
        path: &str,
        key: &str,
    ) -> axum::Router<S> {
        let handle = self.clone();
        let expected = format!("Bearer {key}").into_bytes();
        axum::Router::new().route(
            path,
            axum::routing::get(move |headers: axum::http::HeaderMap| {
                let allowed = !key_is_empty(&expected)
                    && headers
                        .get(axum::http::header::AUTHORIZATION)
                        .is_some_and(|v| bool::from(v.as_bytes().ct_eq(&expected)));
                let reply = if allowed {
                    // Counts, names and numbers always serialize.
                    let body = serde_json::to_string(&handle.stats(10)).unwrap_or_default();
                    (axum::http::StatusCode::OK, body)
                } else {
                    tracing::info!("refused a stats request without the operator key");
                    let body = r#"{"error":"unauthorized"}"#.to_owned();
                    (axum::http::StatusCode::UNAUTHORIZED, body)
                };
                async move {
                    let json = [(axum::http::header::CONTENT_TYPE, "application/json")];
                    (reply.0, json, reply.1)
                }
            }),
        )
    }
}

/// `Bearer ` and nothing after it: an empty key opens nothing.
fn key_is_empty(expected: &[u8]) -> bool {
    expected.len() <= "Bearer ".len()
}
