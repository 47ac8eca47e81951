//! # actioncable-nats
//!
//! The NATS [`PubSub`](actioncable::PubSub) adapter for [`actioncable`]: broadcasts reach the
//! subscribers of every server node connected to one NATS (a server or a cluster), AnyCable's
//! NATS broadcasts are accepted as a source, and with history on, JetStream keeps each
//! stream's last messages so that any node replays what an `@anycable/core` client missed.
//!
//! - [Example](#example)
//! - [Configuration](#configuration) (with the AnyCable equivalents)
//! - [Subjects](#subjects): how stream names become NATS subjects
//! - [How it works](#how-it-works): connection, subscriptions, publishing, outages
//! - [AnyCable broadcasts](#anycable-broadcasts)
//! - [Stream history in JetStream](#stream-history-in-jetstream)
//! - [Guarantees and limits](#guarantees-and-limits)
//! - [Requirements](#requirements)
//!
//! ## Example
//!
//! ```no_run
//! use actioncable::Cable;
//! use actioncable_nats::NatsPubSub;
//! use axum::Router;
//!
//! // Never called: it only has to compile without a NATS server around.
//! async fn doc_main() -> Result<(), Box<dyn std::error::Error>> {
//!     // NATS_URL (or ANYCABLE_NATS_SERVERS), CABLE_CHANNEL_PREFIX, ANYCABLE_NATS_CHANNEL.
//!     let nats = NatsPubSub::from_env()?;
//!     let cable = Cable::builder().pubsub(nats).history(true).build()?;
//!     let handle = cable.handle();
//!     let app: Router = Router::new().merge(cable.router("/cable"));
//!     let listener = tokio::net::TcpListener::bind("0.0.0.0:3000").await?;
//!     // Reaches the subscribers of `chat:lobby` on every node, kept in JetStream.
//!     handle.broadcast("chat:lobby", &serde_json::json!({ "text": "hi" })).await?;
//!     actioncable::serve(listener, app).await?;
//!     Ok(())
//! }
//! ```
//!
//! [`CableHandle::shutdown`](actioncable::CableHandle::shutdown) also shuts the adapter down
//! (its connection is drained and closed).
//!
//! ## Configuration
//!
//! [`NatsConfig`] is built from server URLs or from the environment:
//!
//! | setting | [`NatsConfig`] | environment ([`NatsConfig::from_env`]) | AnyCable | default |
//! |---|---|---|---|---|
//! | servers, credentials | [`from_url`](NatsConfig::from_url) (comma-separated; `nats://user:pass@host`, `nats://token@host`, `tls://…`) | `NATS_URL`, else `ANYCABLE_NATS_SERVERS` | `nats_servers` / `--nats_servers` (`ANYCABLE_NATS_SERVERS`) | `nats://127.0.0.1:4222` |
//! | channel prefix | [`channel_prefix`](NatsConfig::channel_prefix) | `CABLE_CHANNEL_PREFIX` | — (Rails' `channel_prefix:` in `cable.yml`) | none |
//! | AnyCable's broadcast subject | [`anycable_subject`](NatsConfig::anycable_subject) (`None`: off) | `ANYCABLE_NATS_CHANNEL` | `nats_channel` / `--nats_channel` (`ANYCABLE_NATS_CHANNEL`) | `__anycable__` |
//! | subject prefix | [`subject_prefix`](NatsConfig::subject_prefix) | — | — | `action_cable` |
//! | connection name | [`name`](NatsConfig::name) | — | — | `ActionCable-PID-<pid>` |
//! | TLS root certificates | [`tls_root_certificates`](NatsConfig::tls_root_certificates) | — | — | the system's |
//! | publish timeout | [`publish_timeout`](NatsConfig::publish_timeout) | — | — | 1 s |
//! | subscribe timeout | [`subscribe_timeout`](NatsConfig::subscribe_timeout) | — | — | 5 s |
//! | connect timeout | [`connect_timeout`](NatsConfig::connect_timeout) | — | — | 2 s |
//! | reconnect backoff | [`reconnect_backoff`](NatsConfig::reconnect_backoff) | — | `nats_max_reconnect_attempts` (AnyCable gives up after 5; we never do) | 100 ms doubling to 5 s, with jitter |
//! | health check (ping) | [`health_check_interval`](NatsConfig::health_check_interval) | — | — | every 10 s |
//! | history stream | [`history_stream`](NatsConfig::history_stream) | — | (`--broker=nats` keeps `_ac_<stream>` streams) | `ACTION_CABLE_HISTORY` |
//! | history storage | [`history_storage`](NatsConfig::history_storage) | — | — | file |
//! | history replicas | [`history_replicas`](NatsConfig::history_replicas) | — | (1) | 1 |
//! | history limit and TTL | `CableBuilder::history_limit`, `history_ttl` | — | `--history_limit`, `--history_ttl` | 100 messages, 5 minutes |
//!
//! A Rails app that broadcasts through AnyCable over NATS has, in `config/anycable.yml`,
//!
//! ```yaml
//! production:
//!   broadcast_adapter: nats
//!   nats_servers: "nats://10.0.0.5:4222"
//!   nats_channel: "__anycable__"
//! ```
//!
//! and `adapter: any_cable` in `config/cable.yml`; point our nodes at the same servers
//! (`NATS_URL=nats://10.0.0.5:4222`, or the same `ANYCABLE_NATS_SERVERS`) and its
//! `ActionCable.server.broadcast` calls reach our clients.
//!
//! ## Subjects
//!
//! A stream's broadcasts travel on `<subject prefix>.<token>` (`action_cable.chat:lobby`),
//! where the token is the stream's name, with the channel prefix in front as Rails writes it
//! (`<channel_prefix>:<stream>`), made into one NATS subject token. Stream names may hold
//! anything; a subject token may not hold spaces, `.`, `*` or `>`, nor be empty. The mapping:
//!
//! - ASCII letters, digits and `- _ : / = @ + ,` stay as they are, so ordinary names read
//!   the same in `nats sub action_cable.>` (`chat:lobby`, Rails' `action_cable/<identifier>`);
//! - every other byte, `%` included, is written `%XX` (uppercase hex): `a room.1` →
//!   `a%20room%2E1`, `é` → `%C3%A9`; the empty name is a lone `%`;
//! - a name whose token would exceed 200 bytes becomes `#` and the hex SHA-256 of the name
//!   (65 bytes), which keeps subjects short (NATS caps a protocol line at 4 KiB).
//!
//! It is reversible except for hashed names: [`NatsConfig::subject`] maps a stream to its
//! subject, [`NatsConfig::stream_of`] back. Every node names a stream alike, so they only need
//! the same prefixes; no node ever has to decode a subject (a stream's messages arrive on the
//! subscription made for it).
//!
//! ## How it works
//!
//! **Connection.** One NATS connection per adapter, opened when the cable starts (the adapter
//! waits for it no longer than its timeouts). The client (`async-nats`, the NATS project's
//! own) reconnects by itself, forever, with our backoff (the first attempt at once, then
//! 100 ms doubling to 5 s with jitter), and resubscribes every subscription it holds. The
//! server's `PING`s and the client's every 10 s find a connection that died silently.
//!
//! **Subscriptions.** A stream is subscribed when its first local subscriber appears and
//! unsubscribed when its last leaves (the server calls the adapter only then): one NATS
//! subscription per local stream, read by a task of its own, which hands each message to
//! the local fan-out. `subscribe` returns once the **server** has the subscription: after the
//! `SUB`, the adapter sends a request nobody answers (`<subject prefix>._sync.<n>`), which the
//! server turns down only after processing everything sent before it. So a broadcast made
//! after a client saw `confirm_subscription` reaches it, whichever node makes it.
//!
//! **Payload.** The message is the broadcast's JSON text itself: `nats pub
//! action_cable.chat:lobby '{"a":1}'` reaches our `chat:lobby` subscribers. A sampled
//! broadcast (metrics) carries its publish time in a `Cable-Sent` header (nanoseconds since
//! the Unix epoch), so the node that delivers it times it; clients never see headers. Text
//! that is not JSON is dropped by the server with an error log (as Rails drops it).
//!
//! **Publishing.** A broadcast is a `PUB` followed by a flush of the client's buffer to the
//! socket, within the publish timeout. The adapter hands nothing to the client while the
//! connection is down (the client would queue it until the connection is back): right after
//! the connection is lost a broadcast waits up to the publish timeout (1 s) for it to return,
//! later it fails at once, with [`PubSubError::Unavailable`](actioncable::PubSubError::Unavailable).
//!
//! **During an outage** clients stay connected; broadcasts fail as above; a new stream waits
//! up to the subscribe timeout (5 s) and then fails, which rejects that subscription (the stock
//! consumer retries it); the node reports not ready ([`PubSub::is_connected`](actioncable::PubSub::is_connected) is
//! `false` until the connection is back *and* a round trip proved the resubscriptions are in
//! place); the cable counts the loss and the return (`AdapterEvent::Error`, `Reconnected`).
//! Messages published while a node is disconnected do not reach it: core NATS keeps nothing,
//! as Redis pub/sub.
//!
//! ## AnyCable broadcasts
//!
//! Every node also subscribes to AnyCable's broadcast subject (`__anycable__` unless
//! configured), where AnyCable's broadcasters publish: the `anycable` gem's NATS adapter
//! (`broadcast_adapter: nats`) for `ActionCable.server.broadcast` through anycable-rails, or
//! `nats pub __anycable__ …` by hand. The format is `anycable-go`'s
//! (`common.PubSubMessageFromJSON`):
//!
//! - a broadcast: `{"stream":"chat_1","data":"{\"text\":\"hi\"}"}`, where `data` is a
//!   *string* holding the JSON to send (AnyCable's broadcasters encode it); it is delivered to
//!   our subscribers of `stream`. `data` that is not JSON is sent as a JSON string, as AnyCable
//!   does; `data` that is not a string is taken as the JSON document itself (AnyCable would
//!   drop the message);
//! - a batch: a JSON array of broadcasts, delivered in its order;
//! - a remote command: `{"command":"disconnect","payload":{"identifier":…,"reconnect":…}}`,
//!   what anycable-rails publishes for `ActionCable.server.remote_connections.where(…)
//!   .disconnect`. `identifier` is the connection's identifiers as a JSON object
//!   (`{"current_user":"<GlobalID param>"}`); its values, sorted and joined with `:`, are Rails'
//!   connection identifier, so the command goes to the internal stream
//!   `action_cable/<values>` as `{"type":"disconnect","reconnect":…}`, exactly what
//!   [`CableHandle::remote_disconnect`](actioncable::CableHandle::remote_disconnect) sends:
//!   every connection whose [`Identity`](actioncable::Identity) has those values is closed
//!   with reason `remote` on every node. Other commands (AnyCable knows none) are logged once
//!   and ignored.
//!
//! What cannot be honoured: `meta.exclude_socket` (anycable-rails' `to_others`) names an
//! AnyCable socket id, which our connections do not have, so such a broadcast reaches every
//! subscriber (logged once). These broadcasts are live only, without a position, as AnyCable's
//! own NATS broadcaster delivers them (it does not go through its broker): with history on
//! they are not kept. Our nodes never publish on AnyCable's subject.
//!
//! ## Stream history in JetStream
//!
//! With history on (`Cable::builder().history(true)`, for `@anycable/core` clients of the
//! extended protocol) one JetStream stream keeps every stream's last messages, so all nodes
//! agree on positions and any node replays what a client missed.
//!
//! - **The JetStream stream** (default `ACTION_CABLE_HISTORY`, created or updated when first
//!   needed on each connection) captures `<subject prefix>.history.<token>`, one subject per
//!   broadcast stream, with `max_age` = the history TTL, `max_msgs_per_subject` = the history
//!   limit, old messages discarded, file storage unless configured, and `RePublish` to
//!   `<subject prefix>.<token>`.
//! - **A kept broadcast** is a JetStream publish to its stream's history subject, acknowledged
//!   by JetStream. Its **offset is its JetStream sequence** (as AnyCable's NATS broker,
//!   `broker/nats.go`); once stored, JetStream republishes it, in sequence order, to the
//!   stream's ordinary subject with a `Nats-Sequence` header, so every node receives it on the
//!   subscription it has anyway and delivers it with its position.
//! - **Offsets and epochs.** AnyCable keeps one JetStream stream per broadcast stream, so its
//!   sequences count each stream without gaps. Here one JetStream stream holds them all (stream
//!   names cannot hold every stream name, and per-stream JetStream streams are never
//!   deleted), so a stream's offsets rise but skip other streams' messages, which the extended
//!   protocol allows (clients only echo positions back). What is missing is told by two
//!   headers on each kept message: `Cable-Prev`, the sequence of the stream's previous kept
//!   message (published with `Nats-Expected-Last-Subject-Sequence` set to it, so JetStream
//!   refuses the publish if another node kept one meanwhile, and the adapter retries from the
//!   new last message: a stream's kept messages form one chain), and `Cable-Epoch`, the stream's
//!   epoch, carried along the chain and drawn afresh when a publish finds the stream holding
//!   nothing (never kept, all expired, or a JetStream stream made anew). A replay after a
//!   position is served when the epoch matches and the first kept message after it names a
//!   predecessor at or before it; otherwise a message in between was evicted or expired, and
//!   the client gets `reject_history`, as from the memory store.
//! - **Restarts.** With file storage the history and its positions survive a restart of NATS:
//!   the chain goes on in the same epoch. With memory storage (or a lost store) the stream
//!   starts anew and old positions are refused.
//! - **Reads** (`history` requests) go to the stream leader through the JetStream API
//!   (`STREAM.MSG.GET`): the stream's last message, then each message after the client's
//!   position, one request each (at most the history limit).
//! - **Failures**: without JetStream (a server started without `-js`) or while NATS is down, a
//!   kept broadcast fails like a plain one and a history read fails, which the server answers
//!   with `reject_history`. `broadcast_transient` and streams subscribed with
//!   `StreamOptions::history(false)` need no JetStream.
//! - **Cost**: a kept broadcast waits for JetStream's acknowledgement (a stored write), and
//!   another node's write to the same stream in between costs a read and a retry. Measured on
//!   a busy 2-core machine against nats-server 2.9.10 with memory storage (the ignored test
//!   `kept_broadcast_cost_against_a_plain_publish` in `tests/it/history.rs`), 100-byte
//!   payload: one at a time about 120–150 µs against 25–45 µs for a plain broadcast; with 64
//!   in flight the server sets the pace, about 8,000 kept broadcasts/s while streams fill up
//!   and 2,000–3,500/s once they are at the history limit (JetStream then evicts one message
//!   per write; a bare async-nats client measures the same), against 340,000 plain ones/s.
//!
//! ## Guarantees and limits
//!
//! - **At most once, in order per publisher.** Core NATS delivers a node's broadcasts to each
//!   subscribed node in the order they were published, once; nothing is kept for a node that
//!   is disconnected (kept broadcasts are in the history, for clients that ask).
//! - **`Err` means not sent**, with one edge: a broadcast handed to the client just as the
//!   connection broke, before the loss was noticed, fails on its flush timeout but may still
//!   go out once the connection is back. `Ok` means the message was written to the server's
//!   connection; a kept broadcast's `Ok` means JetStream stored it.
//! - **Size.** NATS refuses messages larger than its `max_payload` (1 MiB by default, headers
//!   included; the server's `max_payload` setting raises it, up to 64 MiB). A larger broadcast
//!   fails at once with [`NatsError::PayloadTooLarge`] (inside `PubSubError::Backend`) and
//!   nothing is sent; a 1 MiB broadcast with no headers fits exactly.
//! - **Permissions.** The NATS user needs to publish and subscribe `<subject prefix>.>`,
//!   subscribe `_INBOX.>` (replies) and AnyCable's subject, and with history the JetStream API
//!   (`$JS.API.>`) for the history stream.
//! - **Presence** is not kept by this adapter (`PubSub::presence` answers `Unsupported`).
//!
//! ## Requirements
//!
//! - NATS server 2.9 or newer (`RePublish`, `Nats-Expected-Last-Subject-Sequence`); JetStream
//!   enabled (`-js`) for history. Tokio.
//! - `async-nats` with only its `jetstream` and `ring` features; `tls://` servers use rustls
//!   with the system's roots (or [`NatsConfig::tls_root_certificates`]). WebSocket URLs and
//!   NKey/credentials-file authentication are not supported.

mod adapter;
mod config;
mod error;
mod history;
mod wire;

pub use adapter::NatsPubSub;
pub use config::{DEFAULT_URL, HistoryStorage, NatsConfig, NatsConfigError};
pub use error::NatsError;
