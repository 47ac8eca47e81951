//! [`Cable`], the built server: what every session of it shares ([`Shared`]), its axum
//! route, and the beat that pings every connection.

use super::builder::CableBuilder;
use super::config::Config;
use super::identifiers::Identifiers;
use super::resume::ParkedSessions;
use super::{handler, sse};
use crate::channel::Callbacks;
use crate::channel::erased::ErasedFactory;
use crate::connection::Connection;
use crate::handle::CableHandle;
use crate::metrics;
use crate::protocol::ServerMessage;
use crate::registry::Registry;
use axum::Router;
use axum::extract::ws::Utf8Bytes;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{any, get};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Weak};
use std::time::{SystemTime, UNIX_EPOCH};

/// Everything a session needs, whatever the app state type: the handle (fan-out and live
/// connections), the settings, and the app's typed parts.
pub(crate) struct Shared<S> {
    pub(crate) handle: CableHandle,
    pub(crate) config: Config,
    pub(crate) state: Arc<S>,
    pub(crate) connection: Arc<dyn Connection>,
    /// Registered channels by class.
    pub(crate) channels: HashMap<&'static str, Arc<dyn ErasedFactory<S>>>,
    pub(crate) callbacks: Vec<Arc<dyn Callbacks<S>>>,
    /// Extended-protocol sessions kept for a reconnect with their `sid` (`resume.rs`).
    pub(crate) parked: ParkedSessions<S>,
    /// One parse per identifier string in use.
    pub(crate) identifiers: Identifiers,
}

/// A configured ActionCable server. Mount it with [`router`](Cable::router); broadcast through
/// [`handle`](Cable::handle).
pub struct Cable<S = ()> {
    pub(crate) shared: Arc<Shared<S>>,
}

impl Cable<()> {
    /// A builder for a cable without app state.
    pub fn builder() -> CableBuilder<()> {
        CableBuilder::new(())
    }
}

impl<S: Send + Sync + 'static> Cable<S> {
    /// A builder for a cable whose channels reach `state` through `ChannelContext::state`
    /// (implement `Channel<S>` for them).
    pub fn builder_with_state(state: S) -> CableBuilder<S> {
        CableBuilder::new(state)
    }

    /// An axum router serving the cable at `path` (Rails mounts it at `/cable`). Merge it into
    /// the app's router; it works with any router state.
    pub fn router<RS: Clone + Send + Sync + 'static>(&self, path: &str) -> Router<RS> {
        Router::new().route(
            path,
            any(handler::cable::<S>).with_state(self.shared.clone()),
        )
    }

    /// An axum router serving the cable's Server-Sent Events transport at `path` (AnyCable's
    /// default is `/events`): for clients that only listen, a browser's `EventSource` or
    /// `curl -N`. Merge it next to [`router`](Self::router); it works with any router state.
    ///
    /// A `GET` request names one subscription in its query, as AnyCable's: `identifier` (the
    /// JSON of the channel's params, what the consumer would send), or `channel` (a channel
    /// without params), or `stream` / `signed_stream` (AnyCable's `$pubsub` channel, when the
    /// app registers one). It is authenticated by the cable's
    /// [`Connection`](crate::Connection) from the same request (cookies, headers, query
    /// parameters such as `token`), and counts as a connection for every limit and statistic.
    /// The response is `text/event-stream`: `welcome`, `confirm_subscription` and the other
    /// protocol frames as named events (`event: confirm_subscription`), every delivery as an
    /// unnamed event whose data is the message, heartbeats as comments every `ping_interval`.
    /// With [`CableBuilder::history`](crate::CableBuilder::history) each kept message's event
    /// carries its position as `id`, and a browser that reconnects with `Last-Event-ID` gets
    /// what it missed, once, in order. Without credentials the answer is `401`, for a rejected
    /// subscription `400`. `docs/sse.md` lists every event and answer.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use actioncable::Cable;
    /// let cable = Cable::builder().history(true).build().unwrap();
    /// let app: axum::Router = axum::Router::new()
    ///     .merge(cable.router("/cable"))
    ///     .merge(cable.sse_router("/events"));
    /// // In a browser:
    /// // new EventSource("/events?identifier=" + encodeURIComponent(JSON.stringify(
    /// //   {channel: "ChatChannel", room: "lobby"})))
    /// //   .onmessage = (e) => console.log(JSON.parse(e.data));
    /// # let _ = app;
    /// # }
    /// ```
    pub fn sse_router<RS: Clone + Send + Sync + 'static>(&self, path: &str) -> Router<RS> {
        Router::new().route(path, any(sse::events::<S>).with_state(self.shared.clone()))
    }

    /// An axum router serving this node's metrics at `path`, in the Prometheus text format
    /// (OpenMetrics 1.0), when the cable was built with
    /// [`CableBuilder::metrics`](crate::CableBuilder::metrics); without, the route answers
    /// 404. Every name starts with `actioncable_`; `docs/operations.md` lists them.
    ///
    /// The route has no authentication of its own: mount it on a listener only the scraper
    /// reaches, or behind the app's own middleware.
    pub fn metrics_router<RS: Clone + Send + Sync + 'static>(&self, path: &str) -> Router<RS> {
        let handle = self.handle();
        Router::new().route(
            path,
            get(move || {
                let text = handle.metrics();
                async move {
                    match text {
                        Some(text) => {
                            ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response()
                        }
                        None => StatusCode::NOT_FOUND.into_response(),
                    }
                }
            }),
        )
    }

    /// A cloneable handle to broadcast and to shut down.
    pub fn handle(&self) -> CableHandle {
        self.shared.handle.clone()
    }
}

impl<S> fmt::Debug for Cable<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut classes: Vec<_> = self.shared.channels.keys().collect();
        classes.sort();
        f.debug_struct("Cable")
            .field("channels", &classes)
            .finish_non_exhaustive()
    }
}

/// One timer pings every connection at the same moment, like Rails' beat, so an idle
/// connection costs no timer of its own. After the pings, the app's `Connection::beat` runs
/// for each connection, outside any lock (it may use a `CableHandle`).
pub(super) fn spawn_beat(shared: &Shared<impl Send + Sync + 'static>) {
    let registry: Weak<Registry> = Arc::downgrade(shared.handle.registry());
    let stop = shared.handle.registry().shutting_down();
    let hook = shared.connection.clone();
    let interval = shared.config.ping_interval;
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => return,
                _ = ticker.tick() => {}
            }
            let Some(registry) = registry.upgrade() else {
                return;
            };
            beat(&registry, hook.as_ref());
        }
    });
}

fn beat(registry: &Registry, hook: &dyn Connection) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let frame = Utf8Bytes::from(ServerMessage::ping(now).encode());
    let connections = registry.all();
    for connection in &connections {
        connection.outbox().push(frame.clone());
    }
    for connection in &connections {
        let run = std::panic::AssertUnwindSafe(|| hook.beat(connection));
        if std::panic::catch_unwind(run).is_err() {
            tracing::error!(conn = %connection.id(), "the connection's beat callback panicked");
        }
    }
}
