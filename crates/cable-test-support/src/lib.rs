//! What the workspace's integration tests share, in one place.
//!
//! The core crate, the Redis adapter and the demo all test a real server over real sockets.
//! Each used to carry its own WebSocket client, its own timing constants, its own `eventually`
//! and its own way of serving a router on a free port; the copies drifted apart (one client kept
//! out-of-order frames for later, one compared exact bytes, one answered close frames), and a fix
//! in one never reached the others. This crate holds the one copy of each:
//!
//! - [`CableClient`]: a WebSocket client that speaks the ActionCable JSON protocol the way the
//!   stock `@rails/actioncable` consumer does, opened with [`Connect`] options (path and query,
//!   origin or none, offered subprotocols, cookies, extra headers), with send, subscribe,
//!   perform and expect helpers, and the exact frames the server must send ([`confirm_frame`],
//!   [`reject_frame`], [`data_frame`], [`disconnect_frame`], [`WELCOME`]).
//! - [`TestServer`] / [`CableServer`]: a cable ([`spawn_cable`]), any axum router
//!   ([`TestServer::serve`]) or an app's own serve function ([`TestServer::start`]) on a free
//!   loopback port, with graceful shutdown.
//! - The timing bounds ([`WAIT`], [`SILENCE`], [`WHOLE_TEST`], [`SHUTDOWN_WAIT`]) and the
//!   bounded waits built on them ([`eventually`], [`within`]). Every wait in the tests is
//!   bounded; a test that hangs is a failure, never a stuck CI job.
//! - Raw HTTP/1.1 over a `TcpStream` ([`http_raw`], [`http_request`], [`raw_upgrade`]) for what
//!   a WebSocket library will not send, and an event-stream reader ([`SseClient`]) that reads a
//!   Server-Sent Events response as `curl -N` does, exact bytes and parsed events.
//! - Floods of connections that never send a whole request ([`HeldConnections`],
//!   [`half_sent_upgrade`]) and a probe that checks a server answers meanwhile ([`HttpProbe`]).
//! - JWTs from another issuer ([`mint_hs256`]), expired or malformed ones included.
//! - Logging: [`init_tracing`] and [`LogCapture`] (a test's own log, for assertions on it).
//! - Processes: [`spare_port`], [`rss_kib`], [`own_process`] (a test that measures the process
//!   runs in a process of its own), a server binary as a child process ([`ServerProcess`]:
//!   how it stops on SIGTERM, how it sheds idle connections; or a test serving in a child at a
//!   low descriptor limit, [`ServerProcess::this_test`]), and real `redis-server`, Sentinel and `redis-cli` processes in
//!   [`redis`]; real PostgreSQL ([`postgres`]: a database of its own on the shared server, or a
//!   server of its own) and MariaDB ([`mysql`], likewise).
//! - A network between client and server that can freeze or drop every connection
//!   ([`TcpProxy`]), a cable started again on the port of one that stopped
//!   ([`spawn_cable_at`]), and the Rails reference app (`interop/rails`, [`RailsApp`]).
//! - Oracles in other languages: a Ruby or Node script fed JSON that answers in JSON
//!   ([`run_json_script`]), for values made by Rails' own code.
//!
//! Nothing here is a mock: servers listen on real sockets, Redis is the real `redis-server`,
//! and a missing program fails the test with an install hint instead of skipping it.
//!
//! Fixture channels and connections stay with the tests of the crate that uses them; only what
//! more than one crate's tests need lives here.

pub mod adapter;
mod binary;
mod client;
mod flood;
mod frames;
mod http;
mod jwt;
mod logs;
pub mod mysql;
pub mod postgres;
pub mod presence;
mod process;
mod proxy;
mod rails;
pub mod redis;
mod script;
mod server;
mod sse;
mod timing;

pub use binary::ServerProcess;
pub use client::{CableClient, Connect, OriginHeader, SubscribeReply};
pub use flood::{
    HeldConnections, HttpProbe, ProbeReport, half_sent_upgrade, raise_open_files_limit,
};
pub use frames::{
    CONSUMER_PROTOCOLS, WELCOME, confirm_frame, data_frame, disconnect_frame, is_ping,
    perform_data, reject_frame,
};
pub use http::{HttpReply, http_raw, http_request, raw_upgrade, upgrade_request};
pub use jwt::{mint_hs256, unix_now};
pub use logs::{LogCapture, init_tracing};
pub use process::{own_process, rss_kib, spare_port};
pub use proxy::TcpProxy;
pub use rails::{RAILS_ORIGIN, RailsApp};
pub use script::run_json_script;
pub use server::{ADMIN_KEY, CableServer, ShutdownSignal, TestServer, spawn_cable, spawn_cable_at};
pub use sse::{SseClient, SseEvent, SseOpen};
pub use timing::{POLL, SHUTDOWN_WAIT, SILENCE, WAIT, WHOLE_TEST, eventually, within, within_for};
