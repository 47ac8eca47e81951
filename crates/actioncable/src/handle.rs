//! [`CableHandle`]: the cable as the rest of the app reaches it. Broadcast from an HTTP
//! handler or a background task, look at and disconnect connections, shut down.
//!
//! It sits below [`channel`](crate::channel) because channel code holds one too
//! ([`ChannelContext::handle`](crate::ChannelContext::handle)), and it is nothing more than
//! the node's fan-out ([`hub`](crate::hub)) plus its live connections
//! ([`registry`](crate::registry)): cloning it is cheap, and it works the same from anywhere.
//!
//! A broadcast is serialized once and handed to the pub/sub adapter, which brings it back to
//! every node's fan-out (this one included); nothing here waits on a socket. When the cable
//! keeps history, the adapter's [`History`](crate::pubsub::History) stores it first and gives
//! it its position; a transient broadcast skips that.

use crate::connection::{ConnectionId, ConnectionInfo, ConnectionRef, Identity};
use crate::error::{BroadcastError, PubSubError};
use crate::hub::Hub;
use crate::protocol::{self, DisconnectReason};
use crate::pubsub::PresenceMember;
use crate::registry::Registry;
use crate::stream::{self, ToStreamParam};
use crate::untrusted::untrusted;
use serde::Serialize;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// A cloneable handle to the server: broadcast from an axum handler or a background task
/// (Rails' `ActionCable.server.broadcast`), count connections, shut down.
#[derive(Clone)]
pub struct CableHandle {
    hub: Arc<Hub>,
    registry: Arc<Registry>,
}

impl CableHandle {
    pub(crate) fn new(hub: Arc<Hub>, registry: Arc<Registry>) -> CableHandle {
        CableHandle { hub, registry }
    }

    pub(crate) fn hub(&self) -> &Hub {
        &self.hub
    }

    pub(crate) fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Broadcasts `message`, serialized to JSON, to every subscriber of `stream` on every node.
    ///
    /// # Errors
    /// When the message does not serialize or the pub/sub adapter does not accept it; then
    /// nobody received it.
    pub async fn broadcast<T: Serialize + ?Sized>(
        &self,
        stream: &str,
        message: &T,
    ) -> Result<(), BroadcastError> {
        let json = serde_json::to_string(message)?;
        self.publish(stream, &json, None).await
    }

    /// Broadcasts an already-encoded JSON document.
    ///
    /// # Errors
    /// When `json` is not JSON or the adapter does not accept it.
    pub async fn broadcast_json(&self, stream: &str, json: &str) -> Result<(), BroadcastError> {
        protocol::raw_json(json)?;
        self.publish(stream, json, None).await
    }

    /// Broadcasts `message` like [`broadcast`](Self::broadcast), but never keeps it in the
    /// stream's history: it reaches the subscribers connected now and is not replayed to
    /// anyone who reconnects (typing indicators, cursors, presence pings). Without history on
    /// the cable, it is an ordinary broadcast.
    ///
    /// ```
    /// # async fn demo(handle: actioncable::CableHandle) -> Result<(), actioncable::BroadcastError> {
    /// handle.broadcast_transient("chat:lobby", &serde_json::json!({ "typing": "alice" })).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`broadcast`](Self::broadcast).
    pub async fn broadcast_transient<T: Serialize + ?Sized>(
        &self,
        stream: &str,
        message: &T,
    ) -> Result<(), BroadcastError> {
        let json = serde_json::to_string(message)?;
        self.send(stream, &json, None, false).await
    }

    /// Hands `json` (valid JSON: serde_json's output, or checked) to the adapter, kept in the
    /// stream's history when the cable keeps one, marking it to skip connection `except` here
    /// when it comes back; logs a failure.
    pub(crate) async fn publish(
        &self,
        stream: &str,
        json: &str,
        except: Option<ConnectionId>,
    ) -> Result<(), BroadcastError> {
        self.send(stream, json, except, true).await
    }

    async fn send(
        &self,
        stream: &str,
        json: &str,
        except: Option<ConnectionId>,
        keep: bool,
    ) -> Result<(), BroadcastError> {
        let excluded = except.filter(|&id| self.hub.exclude(stream, json, id));
        let metrics = self.hub.metrics();
        // A sampled broadcast carries its publish time, kept in the history or not.
        let trace = metrics.and_then(|m| m.sample_broadcast());
        let sent = match (self.hub.history().filter(|_| keep), trace) {
            (Some(history), Some(trace)) => history
                .publish_traced(stream, json, trace.time())
                .await
                .map(|_| ()),
            (Some(history), None) => history.publish(stream, json).await.map(|_| ()),
            (None, Some(trace)) => {
                let pubsub = self.hub.pubsub();
                pubsub.publish_traced(stream, json, trace.time()).await
            }
            (None, None) => self.hub.pubsub().publish(stream, json).await,
        };
        match sent {
            Ok(()) => {
                if let Some(metrics) = metrics {
                    metrics.published.inc();
                }
                Ok(())
            }
            Err(e) => {
                if let Some(id) = excluded {
                    self.hub.cancel_exclusion(stream, json, id);
                }
                tracing::error!(stream = %untrusted(stream), error = %e, "broadcast failed");
                Err(e.into())
            }
        }
    }

    /// A client's whisper: `json` to `stream`'s subscribers on every node but connection
    /// `sender`, never kept in the history.
    pub(crate) async fn whisper(
        &self,
        stream: &str,
        json: &str,
        sender: ConnectionId,
    ) -> Result<(), BroadcastError> {
        self.send(stream, json, Some(sender), false).await
    }

    /// Who is in `stream`'s presence, on every node (for a stream a channel opened with
    /// [`StreamOptions::presence`](crate::StreamOptions::presence)): each member once, with the
    /// info it joined with (JSON text), ordered by id with the in-memory adapter.
    ///
    /// ```
    /// # async fn demo(handle: actioncable::CableHandle) -> Result<(), actioncable::PubSubError> {
    /// for member in handle.presence("chat:lobby").await? {
    ///     println!("{} is here: {}", member.id, member.info.as_deref().unwrap_or("{}"));
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`PubSubError::Unsupported`] when the adapter keeps no presence; the adapter's error
    /// when it cannot be read.
    pub async fn presence(&self, stream: &str) -> Result<Vec<PresenceMember>, PubSubError> {
        match self.hub.presence() {
            Some(presence) => presence.members(stream).await,
            None => Err(PubSubError::Unsupported(
                "this cable's pub/sub adapter keeps no presence".into(),
            )),
        }
    }

    /// Whether this cable's adapter keeps presence, so channels may open streams with
    /// [`StreamOptions::presence`](crate::StreamOptions::presence) (the memory and Redis
    /// adapters do). A channel meant to run on any adapter asks before it joins:
    ///
    /// ```
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let cable = actioncable::Cable::builder().build()?; // the in-memory adapter keeps it
    /// assert!(cable.handle().keeps_presence());
    /// # Ok(()) }
    /// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
    /// ```
    pub fn keeps_presence(&self) -> bool {
        self.hub.presence().is_some()
    }

    /// Broadcasts to the stream `stream_for(model)` gives in channel class `channel_class`
    /// (Rails' `NotificationChannel.broadcast_to(user, message)`).
    ///
    /// # Errors
    /// As [`broadcast`](Self::broadcast).
    pub async fn broadcast_to<M: ToStreamParam + ?Sized, T: Serialize + ?Sized>(
        &self,
        channel_class: &str,
        model: &M,
        message: &T,
    ) -> Result<(), BroadcastError> {
        self.broadcast(&stream::stream_for(channel_class, model), message)
            .await
    }

    /// This node's metrics in the Prometheus text format, or `None` when the cable was built
    /// without [`CableBuilder::metrics`](crate::CableBuilder::metrics). What
    /// [`Cable::metrics_router`](crate::Cable::metrics_router) serves; for an app that serves
    /// them its own way (another listener, behind its own authentication).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let cable = actioncable::Cable::builder().metrics(true).build().unwrap();
    /// let text = cable.handle().metrics().unwrap();
    /// assert!(text.contains("actioncable_connections{protocol=\"plain\"} 0"));
    /// # }
    /// ```
    pub fn metrics(&self) -> Option<String> {
        let metrics = self.hub.metrics()?;
        let queued = self
            .registry
            .all()
            .iter()
            .map(|c| c.outbox().queued())
            .sum();
        Some(metrics.render(self.hub.stream_count(), queued))
    }

    /// Number of open connections on this node.
    pub fn connection_count(&self) -> usize {
        self.registry.count()
    }

    /// A snapshot of every open connection on this node: id, identity, start time,
    /// subscriptions, queued frames.
    pub fn connections(&self) -> Vec<ConnectionInfo> {
        let mut all: Vec<ConnectionInfo> = self
            .registry
            .all()
            .iter()
            .map(ConnectionRef::info)
            .collect();
        all.sort_by_key(|c| c.id);
        all
    }

    /// One open connection on this node, to transmit to it, end one of its subscriptions or
    /// disconnect it.
    pub fn connection(&self, id: ConnectionId) -> Option<ConnectionRef> {
        self.registry.get(id)
    }

    /// Broadcasts to every subscriber of `stream` except connection `except` (usually the
    /// sender, so it does not get its own message back). The message on the pub/sub adapter
    /// is the same as for [`broadcast`](Self::broadcast) — Rails nodes sharing the Redis see
    /// an ordinary broadcast — and the node holding `except` skips it when it comes back.
    ///
    /// # Errors
    /// As [`broadcast`](Self::broadcast).
    pub async fn broadcast_except<T: Serialize + ?Sized>(
        &self,
        stream: &str,
        message: &T,
        except: ConnectionId,
    ) -> Result<(), BroadcastError> {
        let json = serde_json::to_string(message)?;
        self.publish(stream, &json, Some(except)).await
    }

    /// Number of streams with subscribers on this node, each identified connection's internal
    /// `action_cable/<identifier>` stream included.
    pub fn stream_count(&self) -> usize {
        self.hub.stream_count()
    }

    /// Closes every connection of `identity` on every node, like Rails'
    /// `ActionCable.server.remote_connections.where(current_user: user).disconnect(reconnect:)`:
    /// publishes `{"type":"disconnect","reconnect":…}` on the identity's internal stream
    /// `action_cable/<connection identifier>` (identifier values sorted, joined with `:`). Each
    /// such connection is sent `disconnect` with reason `remote` and closed. A Rails process on
    /// the same Redis can disconnect our clients the same way, and we its.
    ///
    /// # Errors
    /// When the pub/sub adapter does not take the message.
    pub async fn remote_disconnect(
        &self,
        identity: &Identity,
        reconnect: bool,
    ) -> Result<(), BroadcastError> {
        self.remote_disconnect_because(identity, DisconnectReason::Remote, reconnect)
            .await
    }

    /// [`remote_disconnect`](Self::remote_disconnect), telling the clients `reason` instead of
    /// `remote`: revoking an identity says why, e.g. `unauthorized` for a banned user (the
    /// stock consumer and `@anycable/core` stop with `reconnect: false`), `token_expired` to
    /// make `@anycable/core` refresh its token. Our nodes honour the reason; a Rails node
    /// sharing the adapter closes its connections of that identity with `remote`.
    ///
    /// # Errors
    /// As [`broadcast`](Self::broadcast).
    pub async fn remote_disconnect_because(
        &self,
        identity: &Identity,
        reason: DisconnectReason,
        reconnect: bool,
    ) -> Result<(), BroadcastError> {
        let stream = protocol::internal_stream(&identity.connection_identifier());
        let message = protocol::remote_disconnect_message(reason, reconnect);
        // A command for live connections: never kept for a replay.
        self.send(&stream, &message, None, false).await
    }

    /// Closes every connection on this node whose identity has identifier `name` equal to
    /// `value`, sending `disconnect` with reason `remote`. Returns how many were closed.
    pub fn disconnect_local(&self, name: &str, value: &str, reconnect: bool) -> usize {
        let mut n = 0;
        for connection in self.registry.all() {
            if connection.identity().get(name) == Some(value) {
                connection.disconnect(reconnect);
                n += 1;
            }
        }
        n
    }

    /// Whether this node should get new clients, and why not: a load balancer's readiness
    /// probe. Not ready while it shuts down (from the first moment of
    /// [`shutdown`](Self::shutdown), while the listener still answers), nor while its pub/sub
    /// adapter is disconnected ([`PubSub::is_connected`](crate::PubSub::is_connected)):
    /// broadcasts would not reach it or leave it. Liveness is another matter: a node whose
    /// Redis is down keeps its clients and reconnects by itself; do not restart it.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let cable = actioncable::Cable::builder().build().unwrap();
    /// let readiness = cable.handle().readiness();
    /// assert!(readiness.is_ready());
    /// assert_eq!(
    ///     serde_json::to_string(&readiness).unwrap(),
    ///     r#"{"ready":true,"shutting_down":false,"pubsub_connected":true}"#
    /// );
    /// # }
    /// ```
    pub fn readiness(&self) -> Readiness {
        let shutting_down = self.registry.is_shutting_down();
        let pubsub_connected = self.hub.pubsub().is_connected();
        Readiness {
            ready: !shutting_down && pubsub_connected,
            shutting_down,
            pubsub_connected,
        }
    }

    /// A router answering `GET path` with the [`readiness`](Self::readiness) as JSON: `200`
    /// when ready, `503` when not (`{"ready":false,"shutting_down":true,…}`). Merge it into the
    /// app's router next to the cable:
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let cable = actioncable::Cable::builder().build().unwrap();
    /// let app: axum::Router = axum::Router::new()
    ///     .merge(cable.handle().readiness_router("/ready"))
    ///     .merge(cable.router("/cable"));
    /// # let _ = app;
    /// # }
    /// ```
    pub fn readiness_router<S: Clone + Send + Sync + 'static>(
        &self,
        path: &str,
    ) -> axum::Router<S> {
        let handle = self.clone();
        axum::Router::new().route(
            path,
            axum::routing::get(move || {
                let readiness = handle.readiness();
                async move {
                    let status = if readiness.is_ready() {
                        axum::http::StatusCode::OK
                    } else {
                        axum::http::StatusCode::SERVICE_UNAVAILABLE
                    };
                    // Three booleans always serialize.
                    let body = serde_json::to_string(&readiness).unwrap_or_default();
                    let json = [(axum::http::header::CONTENT_TYPE, "application/json")];
                    (status, json, body)
                }
            }),
        )
    }

    /// Stops accepting connections, sends every client `disconnect` with reason
    /// `server_restart` and `reconnect: true`, runs the `unsubscribed` and `disconnect`
    /// callbacks, and waits up to `deadline` for all of it. Returns whether everything
    /// finished in time.
    pub async fn shutdown(&self, deadline: Duration) -> bool {
        self.registry.begin_shutdown();
        let done = tokio::time::timeout(deadline, self.registry.tracker().wait())
            .await
            .is_ok();
        if let Err(e) = self.hub.pubsub().shutdown().await {
            tracing::warn!(error = %e, "pub/sub shutdown failed");
        }
        done
    }
}

/// A node's readiness ([`CableHandle::readiness`]), serialized as the readiness route's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Readiness {
    /// Ready for new clients: not shutting down, and the adapter connected.
    pub ready: bool,
    /// [`CableHandle::shutdown`] has begun.
    pub shutting_down: bool,
    /// The pub/sub adapter can publish and receive.
    pub pubsub_connected: bool,
}

impl Readiness {
    /// Whether the node should get new clients.
    pub fn is_ready(&self) -> bool {
        self.ready
    }
}

impl fmt::Debug for CableHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CableHandle")
            .field("connections", &self.connection_count())
            .finish()
    }
}
