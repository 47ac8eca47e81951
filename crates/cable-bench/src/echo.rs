//! `echo` mode: C subscribed clients, each in a closed loop: perform `echo`, wait for the reply,
//! repeat, for D seconds.
//!
//! Each client is an `actioncable-client` consumer, as an application's Rust client would be:
//! the mode measures the server's round trips with a full client's costs (its connection task,
//! typed replies). Interleaved runs against the same server put its round trips per second
//! within 5 % of the raw WebSocket client it replaced (`docs/benchmarks.md`). The `broadcast`
//! and `connect` modes keep raw sockets: their hot path is thousands of deliveries parsed in
//! place per round, and idle connections that must not reconnect behind the run's back.

use crate::conn::{Payload, Ramp, Subscribed, Target};
use crate::procfs::CpuMeter;
use crate::{Clock, ConnectArgs, secs, stats};
use actioncable_client::{Event, Subscription};
use anyhow::bail;
use clap::Args;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{Instant, timeout_at};

/// Options of the `echo` mode.
#[derive(Debug, Clone, Args)]
pub(crate) struct EchoArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Clients, each with one round trip in flight.
    #[arg(long, default_value_t = 100)]
    clients: usize,
    /// How long the clients keep sending.
    #[arg(long, default_value_t = 10.0)]
    duration_secs: f64,
    /// A reply not back after this long counts as a timeout (the client goes on).
    #[arg(long, default_value_t = 5.0)]
    reply_timeout_secs: f64,
}

#[derive(Debug)]
struct Tally {
    latency: Mutex<Histogram<u64>>,
    timeouts: AtomicU64,
    /// Replies that came after their round trip timed out.
    late: AtomicU64,
    disconnected: AtomicU64,
    send_errors: AtomicU64,
}

impl Tally {
    fn latency(&self) -> MutexGuard<'_, Histogram<u64>> {
        self.latency.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What one client needs besides its connection.
#[derive(Debug, Clone)]
struct Loop {
    clock: Clock,
    tally: Arc<Tally>,
    /// `Some(end)` when the clients may start.
    start: watch::Receiver<Option<Instant>>,
    reply_timeout: Duration,
    deadline: Instant,
    pad: Arc<str>,
}

/// What each round trip performs: `{"action":"echo","payload":{sender,seq,sent_ns[,pad]}}`,
/// the bytes of `conn::perform("echo", conn::payload(…))`, built once (a `json!` value would be
/// built, then copied by `perform`).
#[derive(Serialize)]
struct EchoData<'a> {
    /// First, where the raw client put it (`perform` keeps an `action` in its place).
    action: &'static str,
    payload: Sent<'a>,
}

#[derive(Serialize)]
struct Sent<'a> {
    sender: u32,
    seq: u32,
    sent_ns: u64,
    #[serde(skip_serializing_if = "str::is_empty")]
    pad: &'a str,
}

/// The echo of `perform("echo", {payload})`: `{"action":"echo","payload":{…}}`.
#[derive(Debug, Deserialize)]
struct Echoed {
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    payload: Option<Payload>,
}

enum Reply {
    Back(u64),
    Closed,
}

/// Reads until the reply to round trip `seq` of client `me`; older replies count as late.
async fn reply(
    sub: &mut Subscription<Echoed>,
    me: u32,
    seq: u32,
    clock: &Clock,
    tally: &Tally,
) -> Reply {
    while let Some(event) = sub.recv().await {
        match event {
            Event::Received(Echoed {
                action: Some(action),
                payload: Some(payload),
            }) if action == "echo" && payload.sender == me => {
                if payload.seq == seq {
                    let received_ns = clock.now_ns();
                    return Reply::Back(received_ns.saturating_sub(payload.sent_ns));
                }
                tally.late.fetch_add(1, Ordering::Relaxed);
            }
            Event::Disconnected { .. } | Event::Rejected => return Reply::Closed,
            _ => {}
        }
    }
    Reply::Closed
}

async fn client(index: usize, client: Subscribed<Echoed>, cfg: Loop) {
    let Loop {
        clock,
        tally,
        mut start,
        reply_timeout,
        deadline,
        pad,
    } = cfg;
    let Subscribed {
        consumer,
        subscription: mut sub,
    } = client;
    let end = match start.wait_for(Option::is_some).await {
        Ok(end) => end.unwrap_or(deadline),
        Err(_) => return,
    };
    let me = index as u32;
    let mut seq = 0u32;
    let mut closed = false;
    while Instant::now() < end {
        seq = seq.wrapping_add(1);
        let sent_ns = clock.now_ns();
        let data = EchoData {
            action: "echo",
            payload: Sent {
                sender: me,
                seq,
                sent_ns,
                pad: &pad,
            },
        };
        let reply_deadline = (Instant::now() + reply_timeout).min(deadline);
        match timeout_at(reply_deadline, sub.perform("echo", data)).await {
            Ok(Ok(())) => {}
            _ => {
                tally.send_errors.fetch_add(1, Ordering::Relaxed);
                closed = true;
                break;
            }
        }
        match timeout_at(reply_deadline, reply(&mut sub, me, seq, &clock, &tally)).await {
            Ok(Reply::Back(ns)) => stats::record(&mut tally.latency(), ns),
            Ok(Reply::Closed) => {
                closed = true;
                break;
            }
            Err(_) => {
                tally.timeouts.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    if closed {
        tally.disconnected.fetch_add(1, Ordering::Relaxed);
    }
    // Stops the consumer from reconnecting, and closes the socket if it is open.
    let _ = tokio::time::timeout(Duration::from_secs(2), consumer.disconnect()).await;
}

/// Runs the mode; prints the report and returns the JSON summary line.
pub(crate) async fn run(args: EchoArgs) -> anyhow::Result<String> {
    if args.clients == 0 || u32::try_from(args.clients).is_err() {
        bail!("--clients must be between 1 and 2^32 - 1");
    }
    let clients = args.clients;
    let clock = Clock::start();
    let deadline = Instant::now() + secs(args.connect.timeout_secs, "--timeout-secs")?;
    let duration = secs(args.duration_secs, "--duration-secs")?;
    let target = Target::resolve(&args.connect).await?;
    let ramp = Ramp::new(target, &args.connect)?;
    eprintln!(
        "echo: {clients} clients for {:?} against {}",
        duration,
        ramp.target.url()
    );

    let tally = Arc::new(Tally {
        latency: Mutex::new(stats::histogram()),
        timeouts: AtomicU64::new(0),
        late: AtomicU64::new(0),
        disconnected: AtomicU64::new(0),
        send_errors: AtomicU64::new(0),
    });
    let (start_tx, start_rx) = watch::channel(None);
    let cfg = Loop {
        clock,
        tally: tally.clone(),
        start: start_rx,
        reply_timeout: secs(args.reply_timeout_secs, "--reply-timeout-secs")?,
        deadline,
        pad: "x".repeat(args.connect.payload_bytes).into(),
    };
    let mut tasks = JoinSet::new();
    let open = |target: Arc<Target>, index| async move { target.subscribe(index).await };
    let session = move |index: usize, sub: Subscribed<Echoed>| client(index, sub, cfg.clone());
    let connect_time = ramp
        .open_all_with(clients, deadline, &mut tasks, open, session)
        .await?;
    eprintln!(
        "  {clients} subscribed in {:.2} s",
        connect_time.as_secs_f64()
    );

    let started = Instant::now();
    let cpu = CpuMeter::start(args.connect.server_pid);
    let end = (started + duration).min(deadline);
    start_tx.send_replace(Some(end));
    let mut unfinished = 0;
    while let Some(joined) = match timeout_at(deadline, tasks.join_next()).await {
        Ok(joined) => joined,
        Err(_) => {
            unfinished = tasks.len();
            tasks.abort_all();
            None
        }
    } {
        let _ = joined;
    }
    let elapsed = started.elapsed();
    let server_cpu = cpu.elapsed();

    let latency = tally.latency().clone();
    let round_trips = latency.len();
    let per_sec = round_trips as f64 / elapsed.as_secs_f64().max(1e-9);
    let timeouts = tally.timeouts.load(Ordering::Relaxed);
    let late = tally.late.load(Ordering::Relaxed);
    let disconnected = tally.disconnected.load(Ordering::Relaxed);
    let send_errors = tally.send_errors.load(Ordering::Relaxed);
    println!(
        "echo: {clients} clients, {:.3} s, {}",
        elapsed.as_secs_f64(),
        ramp.target.url()
    );
    println!(
        "  connect {:.2} s; {round_trips} round trips = {per_sec:.0} round trips/s",
        connect_time.as_secs_f64()
    );
    println!(
        "  timeouts {timeouts}; late replies {late}; send errors {send_errors}; connections lost {disconnected}; clients cut off at the deadline {unfinished}"
    );
    if let Some(cpu) = server_cpu {
        println!(
            "  server CPU: {cpu:.2} s = {:.2} µs per round trip",
            1e6 * cpu / round_trips.max(1) as f64
        );
    }
    println!("{}", stats::table_header());
    println!("{}", stats::table_row("round trip", &latency));
    let mut summary = json!({
        "mode": "echo",
        "clients": clients,
        "duration_secs": stats::round(elapsed.as_secs_f64(), 3),
        "round_trips": round_trips,
        "round_trips_per_sec": stats::round(per_sec, 1),
        "timeouts": timeouts,
        "latency_ms": stats::percentiles_json(&latency),
        "late": late,
        "send_errors": send_errors,
        "connections_lost": disconnected,
        "cut_off": unfinished,
        "connect_secs": stats::round(connect_time.as_secs_f64(), 3),
        "payload_bytes": args.connect.payload_bytes,
        "url": ramp.target.url(),
    });
    if let Some(cpu) = server_cpu {
        summary["server_cpu_secs"] = stats::round(cpu, 2).into();
        summary["server_cpu_us_per_round_trip"] =
            stats::round(1e6 * cpu / round_trips.max(1) as f64, 3).into();
    }
    Ok(summary.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn;

    /// The consumer sends what the raw client sent: the same data, key for key.
    #[test]
    fn echo_data_is_the_raw_clients_data() {
        for pad in ["", "xx"] {
            let data = EchoData {
                action: "echo",
                payload: Sent {
                    sender: 3,
                    seq: 7,
                    sent_ns: 42,
                    pad,
                },
            };
            let raw = json!({ "action": "echo", "payload": conn::payload(3, 7, 42, pad) });
            assert_eq!(serde_json::to_string(&data).unwrap(), raw.to_string());
        }
    }
}
