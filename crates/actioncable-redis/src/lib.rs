//! # actioncable-redis
//!
//! The Redis [`PubSub`](actioncable::PubSub) adapter for [`actioncable`]: broadcasts
//! reach the subscribers of every server node that shares one Redis, and the format on Redis is
//! the one of Rails' ActionCable Redis adapter, so Rust nodes and Rails nodes can share it too.
//!
//! - [Example](#example)
//! - [Configuration](#configuration) (with the Rails `cable.yml` equivalents)
//! - [How it works](#how-it-works): channel names, payload, connections, reconnecting
//! - [Requirements and features](#requirements-and-features)
//!
//! ## Example
//!
//! ```no_run
//! use actioncable::Cable;
//! use actioncable_redis::RedisPubSub;
//! use axum::Router;
//!
//! // Never called: it only has to compile without a Redis server around.
//! async fn doc_main() -> Result<(), Box<dyn std::error::Error>> {
//!     // REDIS_URL, CABLE_CHANNEL_PREFIX, REDIS_SENTINELS, REDIS_SENTINEL_MASTER.
//!     let redis = RedisPubSub::from_env()?;
//!     let cable = Cable::builder().pubsub(redis).build()?;
//!     let handle = cable.handle();
//!     let app: Router = Router::new().merge(cable.router("/cable"));
//!     let listener = tokio::net::TcpListener::bind("0.0.0.0:3000").await?;
//!     // Reaches the subscribers of `chat:lobby` on every node (Rails ones included).
//!     handle.broadcast("chat:lobby", &serde_json::json!({ "text": "hi" })).await?;
//!     actioncable::serve(listener, app).await?;
//!     Ok(())
//! }
//! ```
//!
//! [`CableHandle::shutdown`](actioncable::CableHandle::shutdown) also shuts the adapter down
//! (its background task stops and its connections close).
//!
//! ## Configuration
//!
//! [`RedisConfig`] is built from a URL, from sentinels or from the environment:
//!
//! | setting | [`RedisConfig`] | environment ([`RedisConfig::from_env`]) | Rails `cable.yml` | default |
//! |---|---|---|---|---|
//! | server, database, credentials | [`from_url`](RedisConfig::from_url) | `REDIS_URL` | `url: redis://:password@host:6379/1` | `redis://127.0.0.1:6379` (db 0) |
//! | channel prefix | [`channel_prefix`](RedisConfig::channel_prefix) | `CABLE_CHANNEL_PREFIX` | `channel_prefix: myapp_production` | none |
//! | sentinels | [`sentinel`](RedisConfig::sentinel) | `REDIS_SENTINELS=10.0.0.1:26379,10.0.0.2:26379` | `sentinels: [{host: 10.0.0.1, port: 26379}, …]` | none |
//! | sentinel master name | first argument of [`sentinel`](RedisConfig::sentinel) | `REDIS_SENTINEL_MASTER=mymaster` | `name: mymaster` (or the URL's host: `url: redis://mymaster/1`) | none |
//! | sentinels' password | [`sentinel_password`](RedisConfig::sentinel_password) | — | `sentinel_password:` | none |
//! | database / username / password | [`db`](RedisConfig::db), [`username`](RedisConfig::username), [`password`](RedisConfig::password) | in `REDIS_URL` (also with sentinels) | in `url:` | from the URL |
//! | client name (`CLIENT SETNAME`) | [`id`](RedisConfig::id) | — | `id:` | `ActionCable-PID-<pid>` |
//! | TLS | `rediss://` URL | `REDIS_URL=rediss://…` | `url: rediss://…` | off |
//! | TLS root certificates | [`tls_root_certificates`](RedisConfig::tls_root_certificates) | — | `ssl_params: { ca_file: … }` | the system's |
//! | publish timeout | [`publish_timeout`](RedisConfig::publish_timeout) | — | — | 1 s |
//! | subscribe timeout | [`subscribe_timeout`](RedisConfig::subscribe_timeout) | — | — | 5 s |
//! | connect timeout | [`connect_timeout`](RedisConfig::connect_timeout) | — | `connect_timeout:` | 2 s |
//! | reconnect backoff | [`reconnect_backoff`](RedisConfig::reconnect_backoff) | — | `reconnect_attempts:` (Rails gives up; we never do) | 100 ms doubling to 5 s, with jitter |
//! | health check | [`health_check_interval`](RedisConfig::health_check_interval) | — | — | every 10 s |
//!
//! Our default URL has **database 0**, while the `cable.yml` that `rails new` writes uses
//! `redis://localhost:6379/1`. Redis pub/sub ignores the database number (a message
//! published while `SELECT`ed to db 1 reaches subscribers on every db), so nodes talk to each
//! other whatever db they name; set `REDIS_URL=redis://127.0.0.1:6379/1` only to match Rails'
//! connection settings exactly.
//!
//! The equivalent of this `cable.yml`:
//!
//! ```yaml
//! production:
//!   adapter: redis
//!   url: redis://:secret@10.0.0.5:6379/1
//!   channel_prefix: myapp_production
//! ```
//!
//! is
//!
//! ```
//! # use actioncable_redis::RedisConfig;
//! let config = RedisConfig::from_url("redis://:secret@10.0.0.5:6379/1")?
//!     .channel_prefix(Some("myapp_production".into()));
//! # Ok::<(), actioncable_redis::RedisConfigError>(())
//! ```
//!
//! or, from the environment, `REDIS_URL=redis://:secret@10.0.0.5:6379/1
//! CABLE_CHANNEL_PREFIX=myapp_production` with [`RedisPubSub::from_env`]. With Sentinel,
//! `url: redis://mymaster/1` (or `name: mymaster`, `db: 1`) plus `sentinels:` becomes
//! `RedisConfig::sentinel("mymaster", ["10.0.0.1:26379", "10.0.0.2:26379"])?.db(1)`, or
//! `REDIS_SENTINEL_MASTER=mymaster REDIS_SENTINELS=10.0.0.1:26379,10.0.0.2:26379
//! REDIS_URL=redis://ignored/1` (only the db and credentials of `REDIS_URL` are used then).
//!
//! ## How it works
//!
//! **Channel names.** A broadcast to the stream `chat:lobby` is published on the Redis
//! channel `chat:lobby`, or `<channel_prefix>:chat:lobby` with a prefix, exactly as Rails'
//! `[channel_prefix, broadcasting].compact.join(":")`. Received messages have the prefix
//! stripped again; messages on channels without it are ignored.
//!
//! **Payload.** The message is the broadcast's JSON text itself, with no envelope:
//! `redis-cli PUBLISH chat:lobby '{"a":1}'` reaches our `chat:lobby` subscribers, and our
//! broadcasts reach Rails' subscribers. A payload that is not JSON is dropped by the server
//! with an error log (as in Rails); one that is not UTF-8 is dropped here with an error log.
//!
//! **Connections.** Each adapter (one per process, normally) holds two connections, both
//! named with `CLIENT SETNAME ActionCable-PID-<pid>` (or the configured [`id`](RedisConfig::id)):
//!
//! - the *subscriber* connection, shared by every stream of the process. Like Rails'
//!   listener it first subscribes to `_action_cable_internal` (never prefixed). A stream is
//!   `SUBSCRIBE`d when its first local subscriber appears and `UNSUBSCRIBE`d when its last
//!   leaves (the server calls the adapter only then). `subscribe` returns once Redis has
//!   acknowledged the `SUBSCRIBE`, and the server confirms the subscription to the client only
//!   after that, so a broadcast made after a client saw `confirm_subscription` always reaches
//!   it, whichever node makes it. The connection speaks RESP3: messages arrive as push
//!   frames, which the connection's reader hands straight to the local fan-out.
//! - the *publisher* connection, which sends `PUBLISH`.
//!
//! Connections are opened when the cable starts (Rails opens them lazily, on the first
//! WebSocket).
//!
//! **Reconnecting.** The adapter keeps the set of Redis channels that should be subscribed.
//! When a connection is lost (closed, or a health check unanswered), the adapter reconnects
//! at once and then with backoff (100 ms doubling to 5 s, randomised), forever, and logs a
//! warning at the start of the outage and an info line when it is over. As soon as one of the
//! two connections gets through, the other retries at once too. An idle connection is checked
//! every 10 s, so one that died silently (no FIN, e.g. a network partition) is replaced too. A new subscriber
//! connection subscribes `_action_cable_internal` and every channel of the set before it is
//! used, so delivery resumes by itself: WebSocket clients stay connected and need do nothing.
//! Messages published while the subscriber connection was down are lost (Redis pub/sub keeps
//! nothing), as with Rails.
//!
//! **During an outage** nothing panics and nothing waits long:
//! - a broadcast fails with [`PubSubError::Unavailable`](actioncable::PubSubError::Unavailable)
//!   (so `CableHandle::broadcast` returns `Err` and the server logs it): right after the
//!   connection is lost it waits up to the publish timeout (1 s) for it to come back, later it
//!   fails at once. An `Err` always means nobody received the message.
//! - a new stream waits up to the subscribe timeout (5 s) for the connection, then fails,
//!   which rejects that subscription (the stock client retries it).
//! - leaving a stream does not wait for the connection: the channel is dropped from the set,
//!   so the next connection does not subscribe it.
//!
//! **Sentinel.** With [`RedisConfig::sentinel`] every connection attempt asks the sentinels
//! for the current master of the named service (and checks its `ROLE`), so after a failover
//! the adapter reconnects to the new master. The health check sends `ROLE` instead of `PING`
//! and leaves a server that is no longer the master.
//!
//! ## Stream history (reliable streams)
//!
//! With history on (`Cable::builder().history(true)`, for `@anycable/core` clients of the
//! extended protocol) the history lives in Redis, so every node sharing it gives a broadcast
//! the same position (`epoch`, `offset`) and any node can replay what a reconnecting client
//! missed, whichever node it was connected to before.
//!
//! - **Keys**, per stream, with the channel prefix in their names: `_action_cable_history:
//!   <channel>:meta` (a hash: the stream's `epoch` and last `offset`) and `_action_cable_history:
//!   <channel>:log` (a Redis Stream of the kept messages, trimmed to `history_limit`, entry IDs
//!   from Redis' clock, fields `offset` and `payload`). Both expire `history_ttl` after the
//!   stream's last kept broadcast; the next one then starts a new epoch, so an old position is
//!   refused (`reject_history`) rather than matched against a restarted count.
//! - **A kept broadcast** is one Lua script, atomic: count the offset, append to the log,
//!   refresh the TTLs, `PUBLISH` a small position note (`"<epoch> <offset>"`) on
//!   `_action_cable_position:<channel>`, then `PUBLISH` the payload on `<channel>` **unchanged**.
//!   The subscriber connection subscribes both channels of a stream in one `SUBSCRIBE`; Redis
//!   delivers the note right before its payload, and the two are paired.
//! - **Rails nodes** on the same Redis see nothing new: the same channels, the same payloads
//!   (the note channels and history keys are extra, and ignored by them). What a Rails node
//!   publishes (a plain `PUBLISH`) has no note: it is delivered live, without a position, at
//!   most once, and does not move the offsets. A Rails app that wants its broadcasts kept
//!   has a Rust node make them (`CableHandle::broadcast`), as AnyCable asks of its broadcasters.
//! - **Redis unavailable**: a kept broadcast fails like a plain one, and a history read fails,
//!   which the server answers with `reject_history`. Nothing is dropped silently.
//! - **Redis ACLs**: with history on, the user needs `EVAL` (with `HGET`, `HSET`, `HINCRBY`,
//!   `DEL`, `XADD`, `XRANGE`, `PEXPIRE`, `PUBLISH`, `TIME` inside it), the keys
//!   `_action_cable_history:*` and the channels `_action_cable_position:*` besides the streams'.
//!   A stream whose note channel is refused is refused as a whole (its subscription is
//!   rejected), never half subscribed.
//! - **Cost**: a kept broadcast is one script instead of one `PUBLISH`. Measured on a 2-core
//!   machine (Redis 7.0, 100-byte payload): one at a time through the adapter, 43 µs against
//!   38 µs; for Redis itself, about 110,000 scripts/s against 1.3 million `PUBLISH`es/s when
//!   pipelined (`redis-benchmark -P 16`), 70,000 against 157,000 unpipelined. History costs
//!   Redis CPU roughly ten times a plain broadcast's; streams published with
//!   `broadcast_transient` or subscribed with `StreamOptions::history(false)` cost nothing
//!   extra.
//!
//! ## Requirements and features
//!
//! - Redis 6 or newer (the connections use RESP3). Tokio.
//! - Feature `tls` (on by default): `rediss://` URLs, through rustls (ring) with the system's
//!   root certificates or [`tls_root_certificates`](RedisConfig::tls_root_certificates).
//!   Without it (`default-features = false`) a `rediss://` URL is a configuration error.
//!   Sentinels and the masters they name are reached over plain TCP.

mod adapter;
mod config;
mod history;
mod link;
mod presence;
mod wire;

pub use adapter::RedisPubSub;

pub use config::{DEFAULT_SENTINEL_PORT, DEFAULT_URL, RedisConfig, RedisConfigError};
