//! The Rails reference app (`interop/rails`: `config.ru` and `app/channels.rb`) ported to
//! actioncable-rs, line for line where the framework allows. The js-client test
//! `side-by-side.test.mjs` runs the same scenarios against both and compares the frames; it also
//! reads as "what a Rails channel looks like in Rust".
//!
//! Run with: `cargo run -p example-rails-twin` (`PORT`, default 28081; binds 127.0.0.1;
//! `CABLE_DISABLE_FORGERY=1` accepts any or no `Origin`; `CABLE_ADAPTER=redis` with `REDIS_URL`
//! and `CABLE_CHANNEL_PREFIX` shares broadcasts with the Rails app run with the same settings;
//! logs on stderr, `RUST_LOG`).
//!
//! | Rails (`app/channels.rb`, `config.ru`) | here |
//! |---|---|
//! | `class Connection < ActionCable::Connection::Base` | `impl Connection for UserConnection` |
//! | `identified_by :current_user`; `self.current_user = user` | `Ok(Identity::new("current_user", user))` |
//! | `request.params[:user]`, `cookies[:user]`, `.presence` | `req.query("user")`, `req.cookie("user")`, `present` |
//! | `reject_unauthorized_connection` | `Err(Reject::Unauthorized)` |
//! | `current_user` in a channel | `ctx.identity().get("current_user")` (the `current_user` helper) |
//! | `class ChatChannel < ApplicationCable::Channel` | `struct ChatChannel` + `impl Channel`, `CLASS = "ChatChannel"` |
//! | `params[:room]` | `type Params = ChatParams` (serde; unknown keys ignored) |
//! | `def subscribed` / `def unsubscribed` | `async fn subscribed` (returns the channel) / `async fn unsubscribed` |
//! | `reject` | `Err(ChannelError::reject())` |
//! | `stream_from "chat:#{room}"` | `ctx.stream_from(format!("chat:{room}")).await?` |
//! | `stream_for current_user` | `ctx.stream_for(&user).await?` → `notification:alice` |
//! | `stream_for record` (`to_gid_param`) | `ctx.stream_for(&GlobalId::new("interop", "User", user))` |
//! | `ActionCable.server.broadcast(name, hash)` | `ctx.broadcast(name, &value).await?` or `CableHandle::broadcast` |
//! | `transmit(hash)` | `ctx.transmit(&value)?` |
//! | public methods `speak(data)`, `whoami` | variants of `type Action`, a serde enum tagged by `action` |
//! | `data["text"]` (any JSON, `nil` when missing) | `#[serde(default)] text: Value` |
//! | `raise` in an action | `Err(…)`: logged, the client gets nothing |
//! | a Ruby hash literal `{ type: "joined", user: }` | a `#[derive(Serialize)]` type (fields keep their order) |
//! | `NotificationChannel.broadcast_to(model, hash)` | `CableHandle::broadcast_to("NotificationChannel", &model, &value)` |
//! | `NotificationChannel.broadcasting_for(model)` | `actioncable::stream::stream_for("NotificationChannel", &model)` |
//! | `allowed_request_origins`, `allow_same_origin_as_host` (no `Origin`: refused) | `AllowedOrigins::same_origin().allow_any_port(…).require_origin()` |
//! | `disable_request_forgery_protection = true` | `AllowedOrigins::any()` |
//! | `map "/cable" do run ActionCable.server end` | `cable.router("/cable")` (and `/cable/*`, as Rack's `map` does) |
//! | `remote_connections.where(current_user: u).disconnect` | `CableHandle::remote_disconnect(&Identity::new("current_user", u), true)` |
//! | `open_connections_statistics` | `CableHandle::connection_count()` |
//!
//! Where the port is not exact:
//! - the framework's deliberate differences (`docs/protocol.md`): unknown channels and
//!   malformed identifiers are rejected, `joined` always reaches the joiner after its
//!   confirmation, messages are capped at 1 MiB, commands of a connection run in order;
//! - `room` must be a JSON string (Rails interpolates whatever it gets: `"chat:#{1}"`), and a
//!   rejected subscription never runs `unsubscribed` (Rails runs it, hence its `room.present?`);
//! - `POST /disconnect` sends `disconnect` with reason `remote` and `reconnect: true` before
//!   closing, as Rails 7.1+ does (Rails 6.1 closes without a frame);
//! - `GET /stats` answers `{"connections": <count>}`, not Rails' per-connection statistics;
//!   `POST /restart` is not ported; control answers are `json!` objects (keys sorted);
//! - `POST /broadcast` publishes the request body's JSON text as it is (Rails parses and
//!   re-encodes it): send compact JSON to get identical frames.

use actioncable::AnyAction;
use actioncable::stream::{GlobalId, stream_for};
use actioncable::{
    AllowedOrigins, Cable, CableHandle, Channel, ChannelContext, ChannelError, ConnectRequest,
    Connection, Identity, Reject, async_trait,
};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::io::IsTerminal as _;
use std::time::Duration;

/// Rails' `identified_by :current_user`.
const CURRENT_USER: &str = "current_user";

/// `ApplicationCable::Connection`: the user from `?user=` or the `user` cookie; none or
/// `banned` is rejected.
struct UserConnection;

#[async_trait]
impl Connection for UserConnection {
    async fn connect(&self, req: &ConnectRequest) -> Result<Identity, Reject> {
        let user = present(req.query("user"))
            .or_else(|| present(req.cookie("user").map(str::to_owned)))
            .ok_or(Reject::Unauthorized)?;
        if user == "banned" {
            return Err(Reject::Unauthorized);
        }
        Ok(Identity::new(CURRENT_USER, user))
    }

    async fn disconnect(&self, identity: &Identity) {
        tracing::info!(
            current_user = identity.get(CURRENT_USER),
            "Connection#disconnect"
        );
    }
}

/// ActiveSupport's `presence`: `None` for a blank (empty or whitespace-only) string.
fn present(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.trim().is_empty())
}

/// The channels' `current_user` (always set: `UserConnection` rejects anonymous clients).
fn current_user(ctx: &ChannelContext) -> String {
    ctx.identity()
        .get(CURRENT_USER)
        .unwrap_or_default()
        .to_owned()
}

/// The Rails app's `UserRecord`: a record whose `to_gid_param` names its stream.
fn user_record(name: &str) -> GlobalId {
    GlobalId::new("interop", "User", name)
}

/// Ruby truthiness: everything but `nil` and `false`.
fn truthy(value: &Value) -> bool {
    !matches!(value, Value::Null | Value::Bool(false))
}

// ---------------------------------------------------------------------------------------------
// ChatChannel
// ---------------------------------------------------------------------------------------------

/// `{"channel":"ChatChannel","room":"lobby"}`.
#[derive(Deserialize)]
struct ChatParams {
    #[serde(default)]
    room: String,
}

#[derive(Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
enum ChatAction {
    Speak {
        #[serde(default)]
        text: Value,
    },
    Whoami,
    Boom,
}

/// What `chat:<room>` carries.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ChatEvent<'a> {
    Joined { user: &'a str },
    Left { user: &'a str },
    Message { user: &'a str, text: &'a Value },
}

struct ChatChannel {
    stream: String,
}

#[async_trait]
impl Channel for ChatChannel {
    const CLASS: &'static str = "ChatChannel";
    type Params = ChatParams;
    type Action = ChatAction;

    async fn subscribed(
        ctx: &mut ChannelContext,
        params: ChatParams,
    ) -> Result<Self, ChannelError> {
        if params.room.trim().is_empty() {
            return Err(ChannelError::reject());
        }
        let stream = format!("chat:{}", params.room);
        ctx.stream_from(stream.clone()).await?;
        let user = current_user(ctx);
        ctx.broadcast(&stream, &ChatEvent::Joined { user: &user })
            .await?;
        Ok(ChatChannel { stream })
    }

    async fn perform(
        &mut self,
        ctx: &mut ChannelContext,
        action: ChatAction,
    ) -> Result<(), ChannelError> {
        let user = current_user(ctx);
        match action {
            ChatAction::Speak { text } => {
                let event = ChatEvent::Message {
                    user: &user,
                    text: &text,
                };
                ctx.broadcast(&self.stream, &event).await?;
            }
            ChatAction::Whoami => ctx.transmit(&json!({ "user": user }))?,
            ChatAction::Boom => return Err(ChannelError::msg("boom")),
        }
        Ok(())
    }

    async fn unsubscribed(&mut self, ctx: &mut ChannelContext) -> Result<(), ChannelError> {
        let user = current_user(ctx);
        ctx.broadcast(&self.stream, &ChatEvent::Left { user: &user })
            .await?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// NotificationChannel
// ---------------------------------------------------------------------------------------------

/// `{"channel":"NotificationChannel"}`, optionally with a truthy `gid`.
#[derive(Deserialize)]
struct NotificationParams {
    #[serde(default)]
    gid: Value,
}

#[derive(Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
enum NotificationAction {
    MarkRead {
        #[serde(default)]
        id: Value,
    },
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum NotificationReply<'a> {
    MarkedRead { id: &'a Value, user: &'a str },
}

struct NotificationChannel;

#[async_trait]
impl Channel for NotificationChannel {
    const CLASS: &'static str = "NotificationChannel";
    type Params = NotificationParams;
    type Action = NotificationAction;

    async fn subscribed(
        ctx: &mut ChannelContext,
        params: NotificationParams,
    ) -> Result<Self, ChannelError> {
        let user = current_user(ctx);
        if truthy(&params.gid) {
            ctx.stream_for(&user_record(&user)).await?;
        } else {
            ctx.stream_for(&user).await?;
        }
        Ok(NotificationChannel)
    }

    async fn perform(
        &mut self,
        ctx: &mut ChannelContext,
        action: NotificationAction,
    ) -> Result<(), ChannelError> {
        let NotificationAction::MarkRead { id } = action;
        let user = current_user(ctx);
        ctx.transmit(&NotificationReply::MarkedRead {
            id: &id,
            user: &user,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// BenchmarkChannel (hashrocket/websocket-shootout)
// ---------------------------------------------------------------------------------------------

struct BenchmarkChannel;

#[async_trait]
impl Channel for BenchmarkChannel {
    const CLASS: &'static str = "BenchmarkChannel";
    type Params = actioncable::NoParams;
    type Action = AnyAction;

    async fn subscribed(
        ctx: &mut ChannelContext,
        _: actioncable::NoParams,
    ) -> Result<Self, ChannelError> {
        ctx.stream_from("all").await?;
        Ok(BenchmarkChannel)
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

// ---------------------------------------------------------------------------------------------
// HTTP control routes (config.ru's `Control`; not part of ActionCable)
// ---------------------------------------------------------------------------------------------

type Reply = (StatusCode, Json<Value>);

#[derive(Deserialize)]
struct StreamQuery {
    #[serde(default)]
    stream: String,
}

#[derive(Deserialize)]
struct UserQuery {
    #[serde(default)]
    user: String,
    gid: Option<String>,
}

impl UserQuery {
    /// `NotificationChannel.broadcasting_for(gid == "1" ? UserRecord.new(user) : user)`.
    fn broadcasting(&self) -> String {
        if self.gid.as_deref() == Some("1") {
            stream_for(NotificationChannel::CLASS, &user_record(&self.user))
        } else {
            stream_for(NotificationChannel::CLASS, &self.user)
        }
    }
}

/// Publishes the body's JSON text (an empty body is `{}`) to `stream`.
async fn publish(handle: &CableHandle, stream: &str, body: &str) -> Result<(), Reply> {
    let json = if body.is_empty() { "{}" } else { body };
    handle.broadcast_json(stream, json).await.map_err(|e| {
        let error = json!({ "error": e.to_string() });
        (StatusCode::INTERNAL_SERVER_ERROR, Json(error))
    })
}

/// `POST /broadcast?stream=S` → `ActionCable.server.broadcast(S, body)`.
async fn broadcast(
    State(handle): State<CableHandle>,
    Query(q): Query<StreamQuery>,
    body: String,
) -> Result<Reply, Reply> {
    publish(&handle, &q.stream, &body).await?;
    Ok((
        StatusCode::OK,
        Json(json!({ "ok": true, "stream": q.stream })),
    ))
}

/// `POST /broadcast_to?user=U[&gid=1]` → `NotificationChannel.broadcast_to(model, body)`.
async fn broadcast_to(
    State(handle): State<CableHandle>,
    Query(q): Query<UserQuery>,
    body: String,
) -> Result<Reply, Reply> {
    let broadcasting = q.broadcasting();
    publish(&handle, &broadcasting, &body).await?;
    let reply = json!({ "ok": true, "broadcasting": broadcasting });
    Ok((StatusCode::OK, Json(reply)))
}

/// `GET /broadcasting_for?user=U[&gid=1]`.
async fn broadcasting_for(Query(q): Query<UserQuery>) -> Reply {
    (
        StatusCode::OK,
        Json(json!({ "broadcasting": q.broadcasting() })),
    )
}

/// `POST /disconnect?user=U`.
async fn disconnect(State(handle): State<CableHandle>, Query(q): Query<UserQuery>) -> Reply {
    // Through the pub/sub adapter: with Redis it reaches the user's connections on every node,
    // Rails' included.
    let identity = actioncable::Identity::new(CURRENT_USER, q.user.as_str());
    match handle.remote_disconnect(&identity, true).await {
        Ok(()) => (StatusCode::OK, Json(json!({ "ok": true }))),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "error": e.to_string() })),
        ),
    }
}

/// `GET /stats`.
async fn stats(State(handle): State<CableHandle>) -> Reply {
    let connections = handle.connection_count();
    (StatusCode::OK, Json(json!({ "connections": connections })))
}

async fn not_found() -> Reply {
    (StatusCode::NOT_FOUND, Json(json!({ "error": "not found" })))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    let origins = if std::env::var("CABLE_DISABLE_FORGERY").as_deref() == Ok("1") {
        AllowedOrigins::any()
    } else {
        // "http://localhost", /\Ahttp:\/\/(localhost|127\.0\.0\.1)(:\d+)?\z/, and the Host's origin.
        AllowedOrigins::same_origin()
            .allow_any_port("http://localhost")
            .allow_any_port("http://127.0.0.1")
            // Rails refuses a request without `Origin`; the twin does what Rails does.
            .require_origin()
    };
    let cable = Cable::builder()
        .connection(UserConnection)
        .channel::<ChatChannel>()
        .channel::<NotificationChannel>()
        .channel::<BenchmarkChannel>()
        .allowed_origins(origins)
        .pubsub(actioncable_adapters::Adapter::from_env()?.pubsub())
        .build()?;
    let handle = cable.handle();

    let control = Router::new()
        .route("/broadcast", post(broadcast))
        .route("/broadcast_to", post(broadcast_to))
        .route("/broadcasting_for", get(broadcasting_for))
        .route("/disconnect", post(disconnect))
        .route("/stats", get(stats))
        .fallback(not_found)
        .method_not_allowed_fallback(not_found)
        .with_state(handle.clone());
    let app = Router::new()
        .merge(cable.router("/cable"))
        .merge(cable.router("/cable/{*rest}"))
        // Liveness (the process answers) and readiness (not while shutting down or while the
        // pub/sub adapter is down): docs/operations.md.
        .route("/health", axum::routing::get(|| async { "ok" }))
        .merge(handle.readiness_router("/ready"))
        .merge(control);

    let port = std::env::var("PORT").unwrap_or_else(|_| "28081".into());
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    println!("rails-twin listening on http://{}", listener.local_addr()?);
    // Timeouts and a limit for connections that have not upgraded, TCP_NODELAY, connect info.
    actioncable::serve(listener, app)
        .with_graceful_shutdown(async move {
            actioncable::shutdown_signal().await;
            handle.shutdown(Duration::from_secs(5)).await;
        })
        .await?;
    Ok(())
}
