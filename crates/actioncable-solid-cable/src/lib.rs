//! # actioncable-solid-cable
//!
//! The Solid Cable [`PubSub`](actioncable::PubSub) adapter for [`actioncable`]: broadcasts are
//! rows of Rails 8's `solid_cable_messages` table, written and polled as the `solid_cable` gem
//! writes and polls them, on PostgreSQL, MySQL/MariaDB or SQLite. An app that has a database
//! needs no Redis, and Rust nodes and Rails nodes can share one table: a Rails
//! `ActionCable.server.broadcast` reaches our subscribers and ours reach Rails'.
//!
//! - [Example](#example)
//! - [Configuration](#configuration) (with the `cable.yml` equivalents)
//! - [How it works](#how-it-works): the row, the poller, subscribing, publishing, trimming
//! - [Rows that commit out of order](#rows-that-commit-out-of-order): what the gem does, what
//!   we do
//! - [Guarantees and limits](#guarantees-and-limits)
//! - [Cost](#cost): queries per node, and what the MySQL driver adds to a build
//! - [What this is built on](#what-this-is-built-on): the gem's and Rails' source, file by file
//!
//! ## Example
//!
//! ```no_run
//! use actioncable::Cable;
//! use actioncable_solid_cable::SolidCablePubSub;
//! use axum::Router;
//!
//! // Never called: it only has to compile without a database around.
//! async fn doc_main() -> Result<(), Box<dyn std::error::Error>> {
//!     // CABLE_DATABASE_URL (or DATABASE_URL), CABLE_CHANNEL_PREFIX, SOLID_CABLE_*.
//!     let solid = SolidCablePubSub::from_env()?;
//!     let cable = Cable::builder().pubsub(solid).build()?;
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
//! (its poller stops and its connections close).
//!
//! ## Configuration
//!
//! [`SolidCableConfig`] is built from a URL or from the environment:
//!
//! | setting | [`SolidCableConfig`] | environment ([`SolidCableConfig::from_env`]) | Rails | default |
//! |---|---|---|---|---|
//! | database | [`from_url`](SolidCableConfig::from_url): `postgres://…`, `mysql://…` (`mariadb://`, `trilogy://`, `mysql2://`), `sqlite://path` | `CABLE_DATABASE_URL`, else `DATABASE_URL` | `connects_to: { database: { writing: cable } }` in `cable.yml`, and the `cable` entry of `database.yml` (`CABLE_DATABASE_URL`) | none |
//! | channel prefix | [`channel_prefix`](SolidCableConfig::channel_prefix) | `CABLE_CHANNEL_PREFIX` | `channel_prefix:` | none |
//! | polling interval | [`polling_interval`](SolidCableConfig::polling_interval) | `SOLID_CABLE_POLLING_INTERVAL` (`0.1.seconds` or `0.1`) | `polling_interval: 0.1.seconds` | 0.1 s |
//! | retention | [`message_retention`](SolidCableConfig::message_retention) | `SOLID_CABLE_MESSAGE_RETENTION` (`1.day` or seconds) | `message_retention: 1.day` | 1 day |
//! | trim on publish | [`autotrim`](SolidCableConfig::autotrim) | `SOLID_CABLE_AUTOTRIM` | `autotrim:` | `true` |
//! | rows per trim | [`trim_batch_size`](SolidCableConfig::trim_batch_size) | — | `trim_batch_size:` | 100 |
//! | trim chance | [`trim_chance`](SolidCableConfig::trim_chance) | — | — (the gem's constant `SolidCable.trim_chance`) | 2 (one publish in 50) |
//! | trim lock | [`use_skip_locked`](SolidCableConfig::use_skip_locked) | — | `use_skip_locked:` | `true` |
//! | quiet polls | [`silence_polling`](SolidCableConfig::silence_polling) | — | `silence_polling:` | `true` |
//! | create the table | [`create_table`](SolidCableConfig::create_table) | — | — (Rails: `db/cable_schema.rb`, `bin/rails db:prepare`) | `true` |
//! | commit window | [`commit_window`](SolidCableConfig::commit_window) | — | — (see [below](#rows-that-commit-out-of-order)) | 2 s |
//! | rows per poll | [`poll_batch_size`](SolidCableConfig::poll_batch_size) | — | — (the gem reads every new row at once) | 100 |
//! | publish timeout | [`publish_timeout`](SolidCableConfig::publish_timeout) | — | — | 2 s |
//! | subscribe timeout | [`subscribe_timeout`](SolidCableConfig::subscribe_timeout) | — | — | 5 s |
//! | connect timeout | [`connect_timeout`](SolidCableConfig::connect_timeout) | — | `connect_timeout:` in `database.yml` | 2 s |
//! | reconnecting | [`reconnect_backoff`](SolidCableConfig::reconnect_backoff) | — | `reconnect_attempts:` (a count or a list of delays; then the gem's listener thread gives up) | 100 ms doubling to 5 s, with jitter, forever |
//!
//! The equivalent of the `cable.yml` that `bin/rails solid_cable:install` writes:
//!
//! ```yaml
//! production:
//!   adapter: solid_cable
//!   connects_to:
//!     database:
//!       writing: cable
//!   polling_interval: 0.1.seconds
//!   message_retention: 1.day
//! ```
//!
//! with `CABLE_DATABASE_URL=postgres://app:secret@10.0.0.5/app_production_cable` is
//!
//! ```
//! # use actioncable_solid_cable::SolidCableConfig;
//! use std::time::Duration;
//! let config = SolidCableConfig::from_url("postgres://app:secret@10.0.0.5/app_production_cable")?
//!     .polling_interval(Duration::from_millis(100))
//!     .message_retention(Duration::from_secs(24 * 3600));
//! # Ok::<(), actioncable_solid_cable::SolidCableConfigError>(())
//! ```
//!
//! or [`SolidCablePubSub::from_env`] with that variable. Every node, Rails ones included, must
//! use the same database (the same table) and the same channel prefix.
//!
//! ## How it works
//!
//! **The row.** A broadcast of `payload` to the stream `chat:lobby` is one row:
//!
//! | column | value |
//! |---|---|
//! | `id` | the database's (`bigserial`, `auto_increment`, SQLite's `AUTOINCREMENT`) |
//! | `channel` | `chat:lobby`, or `<prefix>:chat:lobby`, as bytes (a binary column) |
//! | `payload` | the broadcast's JSON text, as bytes, unchanged |
//! | `created_at` | now, in UTC, to the microsecond (cut, not rounded), by this process's clock |
//! | `channel_hash` | [`channel_hash`]: the first 8 bytes of the SHA-256 digest of `channel`, as a signed big-endian 64-bit integer |
//!
//! On SQLite, `channel` and `payload` are blobs and `created_at` is Rails' text,
//! `YYYY-MM-DD HH:MM:SS` followed by `.` and six digits unless the microseconds are 0. On
//! PostgreSQL `created_at` is a `timestamp(6)`, on MySQL a `datetime(6)`. When the table is
//! missing the adapter creates it with the gem's schema as Rails types it for each database
//! (the same columns, types and three index names; `CREATE TABLE IF NOT EXISTS`, so a table
//! made by Rails' migration is left as it is).
//!
//! **The poller.** Each adapter (one per process) runs one poller task. Every polling
//! interval it sends **one** query for all the streams this node has subscribers for:
//!
//! ```sql
//! SELECT id, channel, payload FROM solid_cable_messages
//! WHERE id > $low AND channel_hash IN (…hashes of the node's streams…)
//!   AND id NOT IN (…ids already handled above $low…)
//! ORDER BY id LIMIT 100
//! ```
//!
//! (on PostgreSQL the lists are array parameters of one prepared statement; MySQL and SQLite
//! take no arrays, so the numbers are written into the statement). Then it compares each row's
//! `channel` with the subscribed streams exactly — a hash is an index, not an identity — and
//! hands the payload to the local subscribers of the matching stream, in id order. A full
//! batch is followed by the next query at once; otherwise the poller sleeps for the polling
//! interval, as the gem's listener does.
//!
//! **Subscribing.** When a stream gets its first local subscriber, the adapter reads the
//! largest id (`SELECT MAX(id)`), as the gem's `add_channel` does, and returns: rows above that
//! id are the stream's messages from then on, so a broadcast made after the subscription was
//! confirmed (whose insert takes a larger id) is always delivered, by whichever node made it.
//! Rows of the stream up to that id are never delivered to it. Unsubscribing only forgets the
//! stream.
//!
//! **Publishing.** A broadcast is one `INSERT` of the row above, on the adapter's publishing
//! connection; `publish` returns `Ok` once the database has committed it, and `Err` otherwise
//! (see [Guarantees](#guarantees-and-limits)). Like the gem, a publish then trims with the
//! trim chance.
//!
//! **Trimming.** With `autotrim`, a publish trims with the probability
//! `trim_chance / trim_batch_size` (taken as the gem takes it, its fractional part: 2 / 100 by
//! default, one publish in fifty): it selects the ids of up to `trim_batch_size` rows whose
//! `created_at` is older than `message_retention`, locked `FOR UPDATE SKIP LOCKED` (so two
//! nodes trimming at once take different rows; `FOR UPDATE` without `use_skip_locked`; no lock
//! on SQLite, which writes one transaction at a time), and deletes them. The trim runs in the
//! background after the insert, so the broadcast does not wait for it, and a failed trim is
//! logged, not returned. Without `autotrim` nothing deletes rows: run the gem's
//! `SolidCable::TrimJob`, or a `DELETE` of your own. Where the ratio is a whole number (a batch
//! of 2 with the chance 2), the gem's fractional part is 0 and it never trims; we trim on every
//! publish.
//!
//! **Connections.** Two per adapter, opened when the cable starts: the *poller's* (polls, and
//! `MAX(id)` for new streams) and the *publisher's* (inserts and trims). On SQLite they are
//! two `rusqlite` connections to the file, used on Tokio's blocking threads, in WAL mode with
//! `synchronous = NORMAL` (as Rails opens SQLite) and a busy timeout of the publish timeout, so
//! that several processes can share the file. On PostgreSQL both sessions set the time zone to
//! UTC, as Rails does.
//!
//! **Reconnecting.** A connection that fails is dropped and opened again at once, then with
//! backoff (100 ms doubling to 5 s, randomised), forever; a warning is logged when a connection
//! is lost and an info line when it is back. The poller keeps its place (the last ids it
//! handled) across reconnections, so it resumes where it stopped: rows committed while it was
//! away are delivered when it is back, none is skipped. A connection idle for 10 s, or one
//! whose sibling just failed, is pinged before it is used. [`SolidCablePubSub::is_connected`]
//! (and so the cable's readiness) is `false` while either connection is down.
//!
//! **During an outage** nothing panics and WebSocket clients stay connected:
//! - a broadcast fails with [`PubSubError::Unavailable`](actioncable::PubSubError::Unavailable)
//!   (so `CableHandle::broadcast` returns `Err`): right after the connection is lost it tries
//!   to reconnect within the publish timeout; while a reconnection is being waited out it fails
//!   at once;
//! - a new stream waits up to the subscribe timeout for the database, then fails, which rejects
//!   that subscription (the stock client retries it);
//! - leaving a stream needs no database.
//!
//! ## Rows that commit out of order
//!
//! Ids are handed out when inserts *start*, but rows become visible when their transactions
//! *commit*. Two publishers inserting at once can commit out of id order: id 11 may be visible
//! before id 10. The gem polls `id > last id seen` (`Message.broadcastable(channels,
//! last_id)`) and moves `last_id` to the largest id it read, so a row like 10, committed after
//! 11 was read, is never delivered by it (on PostgreSQL and MySQL/MariaDB; SQLite writes one
//! transaction at a time, so its rows commit in id order).
//!
//! This adapter does not move its cursor past such a row. It polls `id > low` and leaves out
//! the ids it has already handled above `low`; `low` only moves up to an id it has known for
//! at least the **commit window** (default 2 s): by then every insert that took a smaller id
//! has committed or never will, and a poll made after that moment has returned it. So a row
//! that commits up to 2 s after a later row was seen is still delivered (later than its
//! neighbours: ordering by id holds for rows that commit in order); one that commits later than
//! that (a broadcast made inside a long database transaction) may be missed, as with the gem.
//! The ids left out are at most 4096 (the oldest are
//! given up early past that) and are also the only growth of the query. Tested by
//! `order::a_row_committed_late_is_still_delivered_*` with a transaction held open in another
//! session.
//!
//! ## Guarantees and limits
//!
//! - **Latency** is bounded by the polling interval plus one query: with 0.1 s, a broadcast
//!   reaches another node's clients after 50 ms on average and about 100 ms at worst on an idle
//!   database (measured cross-node: 60–110 ms; `exchange::a_broadcast_reaches_the_other_node_within_the_polling_interval`).
//!   The publishing node's own clients wait for its poller too (the row is the only path).
//! - **Ordering**: rows are delivered in id order, which is the order their inserts started;
//!   per publishing node that is the broadcast order. A row committing late is delivered late
//!   (above), not dropped.
//! - **No loss, no duplicates**: a broadcast that returned `Ok` is committed and reaches every
//!   node subscribed to its stream at the time, once, even across a short outage of the
//!   database or of a node's connection. `Err` means the row was not stored — except after a
//!   publish timeout, where the insert's outcome is unknown and it may still be delivered.
//! - **Retention**: rows live at least `message_retention` (1 day); a node disconnected from
//!   the database for longer than that may miss rows trimmed meanwhile.
//! - **Size**: a payload is limited by the column (512 MiB in the schema; PostgreSQL's 1 GB for
//!   `bytea`) and, on MySQL/MariaDB, by the server's `max_allowed_packet` (16 MiB by default
//!   on MariaDB, 64 MiB on MySQL 8). 1 MiB is tested on all three.
//! - **Databases**: PostgreSQL 9.5 or newer; MySQL 8.0 or MariaDB 10.6 or newer for
//!   `SKIP LOCKED` (older ones with `use_skip_locked(false)`); SQLite through the workspace's
//!   bundled library. No TLS: `sslmode=require` is refused, and MySQL's `require_ssl` fails to
//!   connect; use a private network or a Unix socket.
//! - **Ids start over** (the table recreated, a database restored) only after every node
//!   restarts: like the gem's listener, the poller never moves back.
//! - **Stream history and presence** are not kept by this adapter (no
//!   [`History`](actioncable::pubsub::History)); the trace of sampled broadcasts is not carried
//!   (the row has no room for it), so cross-node delivery latency is not measured.
//!
//! ## Cost
//!
//! **Queries.** Per node: one poll per polling interval (10 per second by default), whatever
//! the number of streams and subscribers — the gem's listener makes the same one query. Plus
//! one `SELECT MAX(id)` when a stream gets its first local subscriber, one `INSERT` per
//! broadcast, and a trim on one broadcast in fifty. An idle node still polls (cheap: an index
//! lookup that finds nothing). The poll's work in the database is an index lookup on
//! `channel_hash` (or a range of `id`) for the rows it returns; on MySQL and SQLite its text
//! grows by about 20 bytes per stream of the node. PostgreSQL's is one prepared statement: a poll
//! for 1000 streams that finds nothing new in a 100 000-row table runs in under 0.1 ms
//! (PostgreSQL 15, `EXPLAIN ANALYZE`, a range scan of the primary key).
//!
//! **Build.** The MySQL driver, `mysql_async` with its `minimal-rust` features (no TLS, no
//! derive macros, compression on `miniz_oxide`), adds 17 crates that nothing else in the
//! workspace built. Measured with `cargo --timings` on the 2-core CI machine, they take about
//! 19 s of compile time (summed over units) in a debug build (`mysql_async` 5.2 s,
//! `mysql_common` 4 s, `num-bigint` 3 s, `miniz_oxide` 1.5 s, the rest under 1 s each) and
//! 11 s in a check build (what clippy and rustdoc need), about 10 s of wall-clock time each on
//! two cores: some 20 s on a clean run of `scripts/test.sh`, whose test run of this crate adds
//! about 30 s more. PostgreSQL and SQLite use the workspace's `tokio-postgres` and `rusqlite`.
//!
//! ## What this is built on
//!
//! Read from `rails/solid_cable` (version 4.0.0, the gem Rails 8 installs):
//!
//! - `lib/generators/solid_cable/install/templates/db/cable_schema.rb`: the table
//!   `solid_cable_messages` with `channel` (binary, limit 1024), `payload` (binary, limit
//!   536870912), `created_at` (datetime), `channel_hash` (integer, limit 8), all `NOT NULL`,
//!   and the indexes `index_solid_cable_messages_on_channel`, `…_on_channel_hash`,
//!   `…_on_created_at`;
//! - `app/models/solid_cable/message.rb`: `channel_hash_for` is
//!   `Digest::SHA256.digest(channel.to_s).unpack1("q>")` (signed, because PostgreSQL and SQLite
//!   have no unsigned integers); `broadcast` inserts `created_at: Time.current`, `channel`,
//!   `payload`, `channel_hash`; `broadcastable` is `channel_hash IN (…) AND id >= last_id + 1
//!   ORDER BY id`; `trimmable` is `created_at < message_retention.ago`;
//! - `lib/action_cable/subscription_adapter/solid_cable.rb`: `ChannelPrefix` is prepended
//!   (so the stored channel carries the prefix); `broadcast` inserts, then runs `TrimJob`
//!   at once when `autotrim`; the listener thread starts from `Message.maximum(:id) || 0`,
//!   `add_channel` records the largest id for the new channel and confirms at once, each poll
//!   delivers a row only to its exact channel and only above that channel's last id, then sleeps
//!   `polling_interval`; connection errors are retried `reconnect_attempts` times;
//! - `app/jobs/solid_cable/trim_job.rb` and `app/models/solid_cable/record.rb`: `trim?` is
//!   `!autotrim? || rand < (x - x.floor)` with `x = trim_chance / trim_batch_size`; the trim
//!   plucks up to `trim_batch_size` trimmable ids with `FOR UPDATE SKIP LOCKED` (or `FOR
//!   UPDATE`) in a transaction and deletes them;
//! - `lib/solid_cable.rb`: the defaults (`polling_interval` 0.1 s, `message_retention` 1 day,
//!   `autotrim`, `use_skip_locked` and `silence_polling` true unless `false`,
//!   `trim_batch_size` 100 when below 2, `trim_chance` 2, `reconnect_attempts` 1) and
//!   `parse_duration` (`"0.1.seconds"`: the last part is the unit).
//!
//! And from Rails (`rails/rails`, main):
//!
//! - `actioncable/lib/action_cable/subscription_adapter/channel_prefix.rb`: the channel is
//!   `[channel_prefix, broadcasting].compact.join(":")`;
//! - `activerecord/lib/active_record/connection_adapters/abstract/quoting.rb` (`quoted_date`)
//!   and `activemodel/lib/active_model/type/helpers/time_value.rb` (`apply_seconds_precision`):
//!   created_at in UTC, cut to microseconds, `.%06d` only when they are not 0;
//!   `sqlite3/quoting.rb` and `mysql/quoting.rb` quote binary as `x'…'` (a blob in SQLite),
//!   `postgresql/quoting.rb` with `escape_bytea`;
//! - the column types: `abstract/schema_statements.rb`, `mysql/schema_statements.rb` and
//!   `postgresql/schema_statements.rb` (`type_to_sql`) with each adapter's
//!   `NATIVE_DATABASE_TYPES`; `sqlite3_adapter.rb`'s `DEFAULT_PRAGMAS` (WAL,
//!   `synchronous = NORMAL`); `postgresql_adapter.rb` sets the session time zone to UTC;
//! - `activerecord/lib/active_record/insert_all.rb` and each adapter's `build_insert_sql`: the
//!   statement `Message.insert` runs (columns sorted, `ON CONFLICT DO NOTHING` /
//!   `ON DUPLICATE KEY UPDATE`), which the tests use to insert rows by hand.

mod adapter;
mod config;
mod db;
mod link;
mod sql;
mod window;
mod wire;

pub use adapter::SolidCablePubSub;
pub use config::{Database, SolidCableConfig, SolidCableConfigError};
pub use wire::{channel_hash, parse_rails_duration};
