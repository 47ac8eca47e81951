//! `cable-bench`: a load generator for any server speaking the ActionCable protocol
//! (`actioncable-v1-json`): this workspace's servers, a raw reference server, or Rails.
//!
//! It drives the websocket-shootout `BenchmarkChannel` (subscribe `{"channel":"BenchmarkChannel"}`,
//! which streams from `all`; actions `echo` and `broadcast`):
//!
//! - `cable-bench broadcast`: N subscribed clients, S of them senders, R rounds; measures the
//!   time from a send to the last client receiving it (time-to-all), every delivery's latency,
//!   lost messages and deliveries per second; with `--transport sse` the subscribers are
//!   Server-Sent Events streams (`--events-path`) and the senders WebSocket clients besides;
//! - `cable-bench echo`: C clients in a closed loop of `echo` round trips for D seconds;
//! - `cable-bench connect`: N idle subscribed clients; the server's resident memory per
//!   connection, read from `/proc/<pid>/status`.
//!
//! The package's other binary, `cable-ref`, is the raw reference server these figures are
//! compared with.
//!
//! Every run prints a human-readable report and, as its last line, one JSON summary.
//! This is a tool, not a test: nothing runs it from the test command.

mod broadcast;
mod conn;
mod connect;
mod echo;
mod procfs;
mod sse;
mod stats;

use clap::{Args, Parser, Subcommand};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Load generator for ActionCable servers (websocket-shootout `BenchmarkChannel`).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Tokio worker threads (default: one per core).
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Broadcast fan-out: N subscribers, S senders, R rounds; time-to-all, latency, loss.
    Broadcast(broadcast::BroadcastArgs),
    /// Closed-loop echo: C clients each send `echo` and wait for the reply, for D seconds.
    Echo(echo::EchoArgs),
    /// Idle connections: open N subscribed clients, hold them, report the server's RSS per
    /// connection (`--server-pid`).
    Connect(connect::ConnectModeArgs),
}

/// How to reach the server and open connections; shared by every mode.
#[derive(Debug, Clone, Args)]
struct ConnectArgs {
    /// The cable endpoint (ws:// only).
    #[arg(long, default_value = "ws://127.0.0.1:3000/cable")]
    url: String,
    /// `Origin` header to send (none by default, like load tools).
    #[arg(long)]
    origin: Option<String>,
    /// Local source addresses to spread connections over, round-robin (e.g.
    /// `127.0.0.2,127.0.0.3`), each good for about 28,000 connections to one server port.
    #[arg(long, value_delimiter = ',')]
    bind_ips: Vec<IpAddr>,
    /// New connections started per second while ramping up.
    #[arg(long, default_value_t = 2000.0)]
    ramp_per_sec: f64,
    /// At most this many handshakes (TCP + WebSocket + welcome + subscription) in flight.
    #[arg(long, default_value_t = 64)]
    max_handshakes: usize,
    /// Time allowed for one connection to be subscribed.
    #[arg(long, default_value_t = 10.0)]
    connect_timeout_secs: f64,
    /// Hard bound on the whole run (connecting included); what remains is skipped and
    /// reported.
    #[arg(long, default_value_t = 60.0)]
    timeout_secs: f64,
    /// The server's process id (when it runs on this machine): `broadcast` and `echo` then
    /// report the CPU time it used during the measured phase, `connect` its resident memory
    /// per connection, both read from `/proc`.
    #[arg(long)]
    server_pid: Option<u32>,
    /// The subprotocol to offer: `plain` (Rails') or `ext` (AnyCable's extended protocol, whose
    /// broadcast frames carry stream positions when the server keeps history). The run fails
    /// if the server selects another.
    #[arg(long, value_enum, default_value = "plain")]
    protocol: conn::Protocol,
    /// The path and query of the server's event streams, on `--url`'s host and port, for the
    /// clients of `broadcast --transport sse` (the `BenchmarkChannel` subscription in
    /// AnyCable's `?channel=` form).
    #[arg(long, default_value = "/events?channel=BenchmarkChannel")]
    events_path: String,
    /// Extra bytes of padding in every payload.
    #[arg(long, default_value_t = 0)]
    payload_bytes: usize,
}

/// The run's one monotonic clock, shared by every task, so that a send time written by one
/// task and a receive time read by another are comparable.
#[derive(Debug, Clone, Copy)]
struct Clock {
    start: Instant,
}

impl Clock {
    fn start() -> Clock {
        Clock {
            start: Instant::now(),
        }
    }

    /// Nanoseconds since the run started.
    fn now_ns(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

fn secs(value: f64, what: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value).map_err(|_| anyhow::anyhow!("invalid {what}: {value}"))
}

fn raise_nofile_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => eprintln!("open-files limit: {limit}"),
        Err(e) => eprintln!("warning: cannot raise the open-files limit: {e}"),
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    raise_nofile_limit();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Some(threads) = cli.threads {
        runtime.worker_threads(threads.max(1));
    }
    let runtime = runtime.build()?;
    let summary = runtime.block_on(async move {
        match cli.mode {
            Mode::Broadcast(args) => broadcast::run(args).await,
            Mode::Echo(args) => echo::run(args).await,
            Mode::Connect(args) => connect::run(args).await,
        }
    });
    // Do not wait for tasks still blocked on a socket.
    runtime.shutdown_timeout(Duration::from_secs(1));
    println!("{}", summary?);
    Ok(())
}
