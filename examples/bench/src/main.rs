//! The `BenchmarkChannel` of the public websocket-shootout benchmarks, so public load tools
//! (and this workspace's own `cable-bench`) can drive the framework.
//!
//! Run with: `cargo run --release -p example-bench`
//!
//! - Every client subscribes to `{"channel":"BenchmarkChannel"}`, which streams from `"all"`.
//! - action `echo`: transmits the data back to the sender.
//! - action `broadcast`: broadcasts the data to `"all"`, then transmits it back to the sender
//!   with `"action":"broadcastResult"`.
//!
//! The actions are typed, their `payload` kept as raw JSON; `ACTIONS=any` serves the same
//! channel with `AnyAction` instead (the data parsed into a map and serialized back), so that
//! `scripts/bench.sh` can state what the untyped way costs.
//!
//! The channel is also served over Server-Sent Events at `/events` (`?channel=BenchmarkChannel`,
//! listen-only), which `cable-bench broadcast --transport sse` measures against the WebSocket.
//!
//! Any connection is accepted, with or without an `Origin` header (load tools send none).
//! Settings: `PORT` (3000), `BIND` (127.0.0.1), `CABLE_ADAPTER` (`memory` or `redis`, with
//! `REDIS_URL`, `CABLE_CHANNEL_PREFIX`, `REDIS_SENTINELS`, `REDIS_SENTINEL_MASTER`),
//! `CABLE_HISTORY` (`off` or `on`: keep stream history, so that extended-protocol clients get
//! positions; default off), `METRICS` (`off` or `on`: count and serve Prometheus metrics at
//! `/metrics`; default off, so that the benchmark measures the bare server unless asked),
//! `PRESENCE` (`off` or `on`: the channel streams `"all"` with presence, so that
//! extended-protocol clients may join it and get presence events; default off).

use actioncable::AnyAction;
use actioncable::{
    AcceptAll, AllowedOrigins, Cable, Channel, ChannelContext, ChannelError, NoParams,
    StreamOptions, async_trait,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// `PRESENCE=on`: the channel's stream tracks presence.
static PRESENCE: AtomicBool = AtomicBool::new(false);

/// What the shootout's clients send: `{"action":…,"payload":…}`. The payload stays the raw
/// JSON it came as, echoed and broadcast byte for byte and never parsed, as a Rust app
/// relaying data it does not read would write it (`ACTIONS=any` measures the untyped way).
#[derive(Deserialize, Serialize)]
struct BenchAction {
    action: Kind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    payload: Option<Box<RawValue>>,
}

#[derive(Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
enum Kind {
    Echo,
    Broadcast,
    BroadcastResult,
}

/// The websocket-shootout channel, its actions typed.
struct BenchmarkChannel;

#[async_trait]
impl Channel for BenchmarkChannel {
    const CLASS: &'static str = "BenchmarkChannel";
    type Params = NoParams;
    type Action = BenchAction;

    async fn subscribed(ctx: &mut ChannelContext, _: NoParams) -> Result<Self, ChannelError> {
        stream_all(ctx).await?;
        Ok(BenchmarkChannel)
    }

    async fn perform(
        &mut self,
        ctx: &mut ChannelContext,
        mut action: BenchAction,
    ) -> Result<(), ChannelError> {
        match action.action {
            Kind::Echo => ctx.transmit(&action),
            Kind::Broadcast => {
                ctx.broadcast("all", &action).await?;
                action.action = Kind::BroadcastResult;
                ctx.transmit(&action)
            }
            Kind::BroadcastResult => Err(ChannelError::msg("broadcastResult is a reply")),
        }
    }
}

/// The same channel with [`AnyAction`] (`ACTIONS=any`): each message's data parsed into a map
/// and serialized back, whatever its keys.
struct AnyBenchmarkChannel;

#[async_trait]
impl Channel for AnyBenchmarkChannel {
    const CLASS: &'static str = "BenchmarkChannel";
    type Params = NoParams;
    type Action = AnyAction;

    async fn subscribed(ctx: &mut ChannelContext, _: NoParams) -> Result<Self, ChannelError> {
        stream_all(ctx).await?;
        Ok(AnyBenchmarkChannel)
    }

    async fn perform(
        &mut self,
        ctx: &mut ChannelContext,
        action: AnyAction,
    ) -> Result<(), ChannelError> {
        let mut data = action.data;
        match action.name.as_str() {
            "echo" => ctx.transmit(&data),
            "broadcast" => {
                ctx.broadcast("all", &data).await?;
                data.insert("action".into(), Value::from("broadcastResult"));
                ctx.transmit(&data)
            }
            other => Err(ChannelError::msg(format!("unknown action {other:?}"))),
        }
    }
}

/// Every subscriber streams `"all"` (with presence when `PRESENCE=on`).
async fn stream_all(ctx: &mut ChannelContext) -> Result<(), ChannelError> {
    if PRESENCE.load(Ordering::Relaxed) {
        ctx.stream_from_with_options("all", StreamOptions::new().presence(true))
            .await
    } else {
        ctx.stream_from("all").await
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    // `CABLE_ADAPTER=memory|redis|postgres` (+ `REDIS_URL`, `DATABASE_URL`,
    // `CABLE_CHANNEL_PREFIX`, …), like cable.yml.
    let pubsub = actioncable_adapters::Adapter::from_env()?.pubsub();
    let history = on_or_off("CABLE_HISTORY")?;
    let metrics = on_or_off("METRICS")?;
    PRESENCE.store(on_or_off("PRESENCE")?, Ordering::Relaxed);
    let builder = Cable::builder().connection(AcceptAll);
    let builder = match std::env::var("ACTIONS").as_deref() {
        Err(_) | Ok("" | "typed") => builder.channel::<BenchmarkChannel>(),
        Ok("any") => builder.channel::<AnyBenchmarkChannel>(),
        Ok(other) => return Err(format!("ACTIONS={other:?} is neither typed nor any").into()),
    };
    let cable = builder
        .allowed_origins(AllowedOrigins::any())
        .pubsub(pubsub)
        // A load generator's clients run closed loops of thousands of commands per second;
        // the per-connection rate limit (100/s by default) is for untrusted browsers.
        .max_commands_per_second(u32::MAX)
        .history(history)
        .metrics(metrics)
        .build()?;
    let handle = cable.handle();
    let app = axum::Router::new()
        .merge(cable.router("/cable"))
        // The same channel over Server-Sent Events (`/events?channel=BenchmarkChannel`), for
        // `cable-bench broadcast --transport sse` to compare the two transports on one server.
        .merge(cable.sse_router("/events"))
        .merge(cable.metrics_router("/metrics"))
        // Liveness (the process answers) and readiness (not while shutting down or while the
        // pub/sub adapter is down): docs/operations.md.
        .route("/health", axum::routing::get(|| async { "ok" }))
        .merge(handle.readiness_router("/ready"));

    let bind = std::env::var("BIND").unwrap_or_else(|_| "127.0.0.1".into());
    let port = std::env::var("PORT").unwrap_or_else(|_| "3000".into());
    let listener = tokio::net::TcpListener::bind(format!("{bind}:{port}")).await?;
    println!(
        "bench listening on ws://{}/cable (pid {})",
        listener.local_addr()?,
        std::process::id()
    );
    // Timeouts and a limit for connections that have not upgraded, TCP_NODELAY, connect info.
    // The pending limit (1,024) only delays a load generator's connection burst beyond it; it
    // never refuses a connection.
    actioncable::serve(listener, app)
        .with_graceful_shutdown(async move {
            actioncable::shutdown_signal().await;
            handle.shutdown(Duration::from_secs(5)).await;
        })
        .await?;
    Ok(())
}

/// A switch from the environment: unset, empty or `off`, or `on`.
fn on_or_off(name: &str) -> Result<bool, String> {
    match std::env::var(name).as_deref() {
        Err(_) | Ok("" | "off") => Ok(false),
        Ok("on") => Ok(true),
        Ok(other) => Err(format!("{name}={other:?} is neither on nor off")),
    }
}
