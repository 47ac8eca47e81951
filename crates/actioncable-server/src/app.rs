//! The server put together from the settings: the adapter, the connection, the channels, the
//! routes (`CABLE_PATH`, `/health`, `/_broadcast`), and serving until SIGTERM.

use crate::broadcast::{self, Broadcaster};
use crate::identify::{Identify, Mode, SessionKey};
use crate::settings::{
    BROADCAST_PATH, HEALTH_PATH, Identification, METRICS_PATH, READY_PATH, STATS_PATH, Settings,
};
use actioncable::{Cable, CableBuilder, CableHandle, JwtVerifier, PubSub};
use actioncable_adapters::{Adapter, AdapterKind};
use actioncable_rails::{PubSubChannel, RailsCookies, SignedStreams, StreamsChannel, TurboStreams};
use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use std::sync::Arc;
use std::time::Duration;

/// How long a shutdown waits for clients to be told `server_restart` and close: below
/// `docker stop`'s 10 s, above the cable's 2 s close timeout.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(5);

/// What `/health` looks at.
struct Health {
    handle: CableHandle,
    adapter: Adapter,
}

/// Builds the app: the cable and every route.
///
/// # Errors
/// A key that cannot be made from the settings.
pub(crate) fn build(settings: &Settings) -> anyhow::Result<(Router, CableHandle)> {
    let mode = match &settings.identification {
        Identification::Public => Mode::Public,
        Identification::Jwt(secret) => Mode::Jwt(Box::new(
            JwtVerifier::hs256(secret.expose().as_bytes()).context("CABLE_JWT_SECRET")?,
        )),
        Identification::Cookie(name) => Mode::Cookie {
            cookies: Box::new(rails_cookies(settings)?),
            name: name.clone(),
        },
        Identification::Session { cookie, key } => Mode::Session {
            cookies: Box::new(rails_cookies(settings)?),
            cookie: cookie.clone(),
            key: SessionKey::new(key),
        },
    };
    let identify = Identify::new(
        mode,
        settings.identifier.clone(),
        settings.identifier_gid.clone(),
    );
    let (turbo, streams) = channel_keys(settings)?;
    let assemble = Assemble {
        identify,
        pubsub: settings.adapter.pubsub(),
        settings,
    };
    // The cable's state is the keys of the channels served; a channel is registered only when
    // its key is known.
    let (cable_router, handle) = match (turbo, streams) {
        (Some(turbo), Some(streams)) => assemble.build(
            Cable::builder_with_state(BothKeys { turbo, streams })
                .channel::<StreamsChannel>()
                .channel::<PubSubChannel>(),
        )?,
        (Some(turbo), None) => {
            assemble.build(Cable::builder_with_state(turbo).channel::<StreamsChannel>())?
        }
        (None, Some(streams)) => {
            assemble.build(Cable::builder_with_state(streams).channel::<PubSubChannel>())?
        }
        (None, None) => anyhow::bail!("no channel has a key (the settings check forbids this)"),
    };

    let health = Arc::new(Health {
        handle: handle.clone(),
        adapter: settings.adapter.clone(),
    });
    let mut app = Router::new()
        .route(HEALTH_PATH, get(health_check).with_state(health))
        // Not ready while shutting down or while Redis is down: docs/operations.md.
        .merge(handle.readiness_router(READY_PATH))
        .merge(cable_router);
    if let Some(key) = &settings.admin_key {
        app = app.merge(handle.stats_router(STATS_PATH, key.expose()));
    }
    if let Some(key) = &settings.broadcast_key {
        let broadcaster = Arc::new(Broadcaster::new(handle.clone(), key.expose()));
        app = app.route(
            BROADCAST_PATH,
            any(broadcast::handle).with_state(broadcaster),
        );
    }
    Ok((app, handle))
}

/// The state of a cable serving both channels.
struct BothKeys {
    turbo: TurboStreams,
    streams: SignedStreams,
}

impl AsRef<TurboStreams> for BothKeys {
    fn as_ref(&self) -> &TurboStreams {
        &self.turbo
    }
}

impl AsRef<SignedStreams> for BothKeys {
    fn as_ref(&self) -> &SignedStreams {
        &self.streams
    }
}

/// What every cable gets, whatever its channels.
struct Assemble<'a> {
    identify: Identify,
    pubsub: Arc<dyn PubSub>,
    settings: &'a Settings,
}

impl Assemble<'_> {
    fn build<S: Send + Sync + 'static>(
        self,
        builder: CableBuilder<S>,
    ) -> anyhow::Result<(Router, CableHandle)> {
        let cable = builder
            .connection(self.identify)
            .pubsub(self.pubsub)
            .allowed_origins(self.settings.allowed_origins.clone())
            .history(self.settings.history)
            .metrics(self.settings.metrics)
            .build()
            .context("the cable")?;
        let mut router = cable.router(&self.settings.cable_path);
        if let Some(path) = &self.settings.sse_path {
            router = router.merge(cable.sse_router(path));
        }
        if self.settings.metrics {
            router = router.merge(cable.metrics_router(METRICS_PATH));
        }
        Ok((router, cable.handle()))
    }
}

/// Turbo's verifier and the `$pubsub` one, each when its key is known: Turbo's from
/// `TURBO_STREAMS_SECRET` or derived from `SECRET_KEY_BASE` (PBKDF2, once), `$pubsub`'s from
/// `CABLE_STREAMS_SECRET` or `SECRET_KEY_BASE` itself.
fn channel_keys(
    settings: &Settings,
) -> anyhow::Result<(Option<TurboStreams>, Option<SignedStreams>)> {
    let turbo = match (&settings.turbo_streams_secret, &settings.secret_key_base) {
        (Some(key), _) => {
            Some(TurboStreams::from_key(key.expose()).context("TURBO_STREAMS_SECRET")?)
        }
        (None, Some(base)) => Some(
            TurboStreams::from_secret_key_base(base.expose(), settings.key_digest)
                .context("SECRET_KEY_BASE")?,
        ),
        (None, None) => None,
    };
    let streams = match settings
        .streams_secret
        .as_ref()
        .or(settings.secret_key_base.as_ref())
    {
        Some(secret) => Some(
            SignedStreams::new(secret.expose())
                .context("CABLE_STREAMS_SECRET")?
                .public_streams(settings.public_streams),
        ),
        None => None,
    };
    for (channel, served) in [
        ("Turbo::StreamsChannel", turbo.is_some()),
        ("$pubsub", streams.is_some()),
    ] {
        if served {
            tracing::info!(channel, "serving");
        } else {
            tracing::warn!(
                channel,
                "not served: no key (SECRET_KEY_BASE, or its own secret setting)"
            );
        }
    }
    Ok((turbo, streams))
}

/// The app's cookie keys (PBKDF2, once).
fn rails_cookies(settings: &Settings) -> anyhow::Result<RailsCookies> {
    let secret = settings
        .secret_key_base
        .as_ref()
        .context("SECRET_KEY_BASE is required to read the app's cookies")?;
    RailsCookies::new(secret.expose(), settings.key_digest).context("SECRET_KEY_BASE")
}

/// `GET /health`: 200 while the server serves, with the adapter's state in the body
/// (`{"status":"ok","adapter":"redis","redis":"connected","connections":3}`; the key naming the
/// backend's state is the adapter's name: `redis`, `postgres`). A backend outage answers 200
/// too (`"status":"degraded"`, `"redis":"disconnected"`): the adapter reconnects by itself and
/// the clients stay connected, so restarting the node (a failed liveness probe) or taking every
/// node out of a load balancer at once (a failed readiness probe, during an outage that hits
/// them all) would only make it worse.
async fn health_check(State(health): State<Arc<Health>>) -> Response {
    let connections = health.handle.connection_count();
    let kind = health.adapter.kind();
    let body = if kind == AdapterKind::Memory {
        serde_json::json!({
            "status": "ok",
            "adapter": kind.name(),
            "connections": connections,
        })
    } else {
        let up = health.adapter.pubsub().is_connected();
        let mut body = serde_json::Map::new();
        body.insert("status".into(), (if up { "ok" } else { "degraded" }).into());
        body.insert("adapter".into(), kind.name().into());
        body.insert(
            kind.name().into(),
            (if up { "connected" } else { "disconnected" }).into(),
        );
        body.insert("connections".into(), connections.into());
        body.into()
    };
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Listens, prints the ready line, and serves until SIGINT or SIGTERM; then every client is
/// told `server_restart` (the consumer reconnects, to another node behind a load balancer).
///
/// # Errors
/// The address cannot be bound, or serving fails.
pub(crate) async fn run(settings: Settings) -> anyhow::Result<()> {
    let (app, handle) = build(&settings)?;
    let listener = tokio::net::TcpListener::bind(settings.addr)
        .await
        .with_context(|| format!("cannot listen on {} (BIND, PORT)", settings.addr))?;
    let local = listener
        .local_addr()
        .context("cannot read the bound address")?;
    tracing::info!(
        identification = %settings.identification.describe(),
        adapter = %settings.adapter.kind(),
        broadcast_endpoint = settings.broadcast_key.is_some(),
        sse_path = settings.sse_path.as_deref().unwrap_or("off"),
        "actioncable-server ready"
    );
    println!(
        "actioncable-server listening on ws://{local}{}",
        settings.cable_path
    );
    actioncable::serve(listener, app)
        .with_graceful_shutdown(async move {
            actioncable::shutdown_signal().await;
            tracing::info!("shutting down: telling every client server_restart");
            if !handle.shutdown(SHUTDOWN_DEADLINE).await {
                tracing::warn!(
                    "connections still closing after {SHUTDOWN_DEADLINE:?}; exiting anyway"
                );
            }
        })
        .await
        .context("serving")?;
    Ok(())
}
