//! # actioncable-postgres
//!
//! The PostgreSQL [`PubSub`](actioncable::PubSub) adapter for [`actioncable`]: broadcasts
//! reach the subscribers of every server node that shares one PostgreSQL server, through
//! `LISTEN`/`NOTIFY`, in the format of Rails' ActionCable `postgresql` adapter, so Rust nodes
//! and Rails nodes can share it too. An app that already runs PostgreSQL needs no Redis.
//!
//! - [Example](#example)
//! - [Configuration](#configuration) (with the Rails `cable.yml` equivalents)
//! - [How it works](#how-it-works): channel identifiers, payload, connections, reconnecting
//! - [Large payloads](#large-payloads): what PostgreSQL's 8000-byte limit means here
//! - [Rails 6.1 and Rails main](#rails-61-and-rails-main): where they differ, and what we do
//! - [Requirements and limits](#requirements-and-limits)
//!
//! ## Example
//!
//! ```no_run
//! use actioncable::Cable;
//! use actioncable_postgres::PostgresPubSub;
//! use axum::Router;
//!
//! // Never called: it only has to compile without a PostgreSQL server around.
//! async fn doc_main() -> Result<(), Box<dyn std::error::Error>> {
//!     // DATABASE_URL, CABLE_CHANNEL_PREFIX.
//!     let postgres = PostgresPubSub::from_env()?;
//!     let cable = Cable::builder().pubsub(postgres).build()?;
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
//! (its background tasks stop and its connections close).
//!
//! ## Configuration
//!
//! [`PostgresConfig`] is built from a URL or from the environment:
//!
//! | setting | [`PostgresConfig`] | environment ([`PostgresConfig::from_env`]) | Rails | default |
//! |---|---|---|---|---|
//! | server, database, credentials | [`from_url`](PostgresConfig::from_url) | `DATABASE_URL` | none in `cable.yml`: Rails uses Active Record's connection (`config/database.yml`, `DATABASE_URL`) | `postgres://postgres@127.0.0.1:5432/postgres` |
//! | channel prefix | [`channel_prefix`](PostgresConfig::channel_prefix) | `CABLE_CHANNEL_PREFIX` | `channel_prefix: myapp_production` | none |
//! | connection name (`application_name`) | [`id`](PostgresConfig::id) | — | `id:` | `ActionCable-PID-<pid>` |
//! | publish timeout | [`publish_timeout`](PostgresConfig::publish_timeout) | — | — | 1 s |
//! | subscribe timeout | [`subscribe_timeout`](PostgresConfig::subscribe_timeout) | — | — | 5 s |
//! | connect timeout | [`connect_timeout`](PostgresConfig::connect_timeout) | — | `connect_timeout:` in `database.yml` | 2 s |
//! | reconnect backoff | [`reconnect_backoff`](PostgresConfig::reconnect_backoff) | — | — (Rails' listener thread dies with its connection) | 100 ms doubling to 5 s, with jitter |
//! | health check | [`health_check_interval`](PostgresConfig::health_check_interval) | — | — | every 10 s |
//! | large-payload table | [`large_payload_table`](PostgresConfig::large_payload_table) | — | — (Rails fails such broadcasts) | `action_cable_large_payloads` |
//! | large-payload retention | [`large_payload_retention`](PostgresConfig::large_payload_retention) | — | — | 60 s |
//! | largest inline payload | [`max_notify_payload`](PostgresConfig::max_notify_payload) | — | — | 7999 bytes |
//! | TLS | not supported: `sslmode=require` is a configuration error; `prefer` (the default) connects without | — | `sslmode:` in `database.yml` | off |
//!
//! The equivalent of this `cable.yml` (with `DATABASE_URL=postgres://app:secret@10.0.0.5/app_production`
//! for Active Record):
//!
//! ```yaml
//! production:
//!   adapter: postgresql
//!   channel_prefix: myapp_production
//! ```
//!
//! is
//!
//! ```
//! # use actioncable_postgres::PostgresConfig;
//! let config = PostgresConfig::from_url("postgres://app:secret@10.0.0.5/app_production")?
//!     .channel_prefix(Some("myapp_production".into()));
//! # Ok::<(), actioncable_postgres::PostgresConfigError>(())
//! ```
//!
//! or, from the environment, the same `DATABASE_URL` and `CABLE_CHANNEL_PREFIX=myapp_production`
//! with [`PostgresPubSub::from_env`]. `LISTEN`/`NOTIFY` are per database: every node, Rails
//! ones included, must connect to the same database (not only the same server).
//!
//! ## How it works
//!
//! **Channel identifiers.** A broadcast to the stream `chat:lobby` is sent with
//! `NOTIFY "chat:lobby"`, or `"<channel_prefix>:chat:lobby"` with a prefix, exactly as Rails'
//! `[channel_prefix, broadcasting].compact.join(":")`. PostgreSQL keeps identifiers of up to
//! 63 bytes and silently truncates longer ones, so a name longer than 63 **bytes** (prefix
//! included) is replaced by its SHA1 hex digest (40 characters), as Rails does. Identifiers
//! are always double-quoted (embedded `"` doubled), as libpq's `PQescapeIdentifier` that Rails
//! calls: case, spaces, quotes and any Unicode survive. A stream name with a NUL character
//! cannot be a channel; its subscription and broadcasts fail.
//!
//! **Payload.** The notification's payload is the broadcast's JSON text itself, with no
//! envelope, byte for byte what Rails sends for the same broadcast (Rails writes it into the
//! `NOTIFY` statement with `escape_string`; we pass it to `pg_notify($1, $2)` as a parameter,
//! which PostgreSQL delivers identically). `NOTIFY "chat:lobby", '{"a":1}'` in `psql`
//! reaches our `chat:lobby` subscribers. A payload that is not JSON is dropped by the server
//! with an error log, as in Rails.
//!
//! **Connections.** Each adapter (one per process, normally) holds two connections, both with
//! `application_name` `ActionCable-PID-<pid>` (or the configured [`id`](PostgresConfig::id)):
//!
//! - the *listening* connection, shared by every stream of the process. A stream is
//!   `LISTEN`ed when its first local subscriber appears and `UNLISTEN`ed when its last leaves
//!   (the server calls the adapter only then). `subscribe` returns once PostgreSQL has
//!   answered the `LISTEN`, and the server confirms the subscription to the client only after
//!   that, so a broadcast made after a client saw `confirm_subscription` always reaches it,
//!   whichever node makes it. Notifications are handed to the local fan-out in the order they
//!   arrive.
//! - the *publishing* connection, which sends `SELECT pg_notify($1, $2)` (a statement prepared
//!   once per connection) and stores large payloads.
//!
//! Rails takes its listening connection out of Active Record's pool and broadcasts through
//! the pool; we open our own two, when the cable starts.
//!
//! **Delivery latency.** With the cable's metrics on, a sampled broadcast (one in 100 by
//! default) is preceded by a notification on the unprefixed channel `_action_cable_trace`
//! holding its publish time and its channel
//! ([`TraceNote`](actioncable::pubsub::TraceNote)), sent by the same statement, so PostgreSQL
//! delivers the two back to back. Our listening connections `LISTEN` to it and time that
//! broadcast's deliveries (`actioncable_broadcast_latency_seconds`); the broadcast's own
//! notification is unchanged, and Rails nodes never hear the note.
//!
//! **Reconnecting.** The adapter keeps the set of channels that should be listened to. When a
//! connection is lost (closed, terminated by the server, or a health check unanswered), the
//! adapter reconnects at once and then with backoff (100 ms doubling to 5 s, randomised),
//! forever, and logs a warning at the start of the outage and an info line when it is over. A
//! new listening connection `LISTEN`s every channel of the set before it is used, so delivery
//! resumes by itself: WebSocket clients stay connected and need do nothing. Notifications sent
//! while the listening connection was down are lost (PostgreSQL queues them only for sessions
//! that are listening), as with Rails.
//!
//! **During an outage** nothing panics and nothing waits long:
//! - a broadcast fails with [`PubSubError::Unavailable`](actioncable::PubSubError::Unavailable)
//!   (so `CableHandle::broadcast` returns `Err` and the server logs it): right after the
//!   connection is lost it waits up to the publish timeout (1 s) for it to come back, later it
//!   fails at once. An `Err` always means nobody received the message.
//! - a new stream waits up to the subscribe timeout (5 s) for the connection, then fails,
//!   which rejects that subscription (the stock client retries it).
//! - leaving a stream does not wait for the connection: the channel is dropped from the set,
//!   so the next connection does not listen to it.
//!
//! ## Large payloads
//!
//! PostgreSQL refuses a `NOTIFY` payload of 8000 bytes or more ("payload string too long").
//! Rails' adapter passes that error to the caller: such a broadcast fails
//! ([rails/rails#49634](https://github.com/rails/rails/issues/49634)). This adapter sends
//! payloads of up to 7999 bytes as they are (so they stay identical to Rails') and stores
//! longer ones:
//!
//! 1. on the first large broadcast, the publishing connection creates the table if it is
//!    missing:
//!    ```sql
//!    CREATE TABLE IF NOT EXISTS action_cable_large_payloads (
//!      id bigserial PRIMARY KEY, channel text NOT NULL,
//!      payload text NOT NULL, created_at timestamptz NOT NULL DEFAULT now())
//!    ```
//!    (the name is [`large_payload_table`](PostgresConfig::large_payload_table); the
//!    database user needs the right to create it, or an administrator creates it once);
//! 2. one statement inserts the row and notifies the channel with the text
//!    `actioncable-postgres:large-payload:<id>`, so the row is committed before any node
//!    hears of it;
//! 3. a receiving node of ours reads `payload` of that row (and channel) through its listening
//!    connection and delivers it. Messages of all streams stay in order: later notifications
//!    wait for the read.
//! 4. rows older than the [retention](PostgresConfig::large_payload_retention) (60 s) are
//!    deleted by the node that stored them, before its next large broadcast and on its
//!    publishing connection's health checks.
//!
//! A 1 MiB broadcast costs one insert and one read per receiving node; the stored text is
//! limited only by PostgreSQL's 1 GB for a `text` value, and by the publish timeout.
//!
//! **What a Rails node sees** on the same channel: the notification
//! `actioncable-postgres:large-payload:<id>`, which it cannot resolve. It is not JSON, so Rails'
//! default stream handler fails to decode it: Rails logs
//! `There was an exception - JSON::ParserError(...)` and its clients receive nothing (they
//! never receive a wrong message). A Rails `stream_from` with its own block and no `coder:`
//! gets the raw reference text. Large broadcasts made by a Rails node fail in Rails, as
//! before.
//!
//! ## Rails 6.1 and Rails main
//!
//! Read from Rails 6.1 as Debian ships it
//! (`/usr/share/rubygems-integration/all/gems/actioncable-6.1.7.10/lib/action_cable/subscription_adapter/postgresql.rb`
//! and `channel_prefix.rb` beside it) and from Rails' main branch
//! (`actioncable/lib/action_cable/subscription_adapter/postgresql.rb`,
//! `channel_prefix.rb`). Both:
//!
//! - prefix the broadcasting with `"<channel_prefix>:"` when a prefix is configured;
//! - quote the identifier with `escape_identifier` and the payload with `escape_string` in
//!   `NOTIFY <identifier>, '<payload>'`, and `LISTEN`/`UNLISTEN` with `escape_identifier`;
//! - send the JSON text unchanged and hand the received payload unchanged to the subscribers;
//! - set `application_name` of the listening connection to the server's `id`
//!   (`ActionCable-PID-<pid>` by default).
//!
//! They differ in one rule that matters on the wire: **when a name is hashed.** Rails 6.1
//! hashes names longer than 63 *characters* (`channel.size > 63`, `Digest::SHA1`); Rails main
//! hashes names longer than 63 *bytes* (`channel.bytesize > 63`, `OpenSSL::Digest::SHA1`),
//! because PostgreSQL truncates identifiers at 63 bytes. We follow main (bytes). The two agree
//! for every name that is ASCII or longer than 63 bytes *and* 63 characters; they disagree on
//! names with multibyte characters of at most 63 characters but more than 63 bytes: there
//! Rails 6.1 `LISTEN`s on the truncated name and its own subscribers never match the
//! notification, so such streams do not work on 6.1 at all, with or without us. Other
//! differences do not show on the wire: main opens its listening connection with
//! `connection_pool.new_connection` (6.1 checks one out of the pool and removes it), and main's
//! `shutdown` does nothing when no listener was started.
//!
//! ## Requirements and limits
//!
//! - PostgreSQL 9.0 or newer (`pg_notify`; `make_interval` for the retention needs 9.4). Tokio.
//! - No TLS: connect over a private network or a Unix socket
//!   (`DATABASE_URL=postgres:///app?host=/run/postgresql`).
//! - Not through a transaction-pooling PgBouncer: `LISTEN` needs a session of its own.
//! - PostgreSQL's notification queue (8 GB by default) holds notifications until every
//!   listening session has read them; a stuck listener elsewhere eventually makes `NOTIFY`
//!   fail, which shows here as failed broadcasts.

mod adapter;
mod config;
mod link;
mod wire;

pub use adapter::PostgresPubSub;
pub use config::{DEFAULT_LARGE_PAYLOAD_TABLE, DEFAULT_URL, PostgresConfig, PostgresConfigError};
