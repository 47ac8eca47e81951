//! `echo` mode: C subscribed clients, each in a closed loop: perform `echo`, wait for the reply,
//! repeat, for D seconds.

use crate::conn::{self, BenchData, Incoming, Ramp, Target, Ws};
use crate::procfs::CpuMeter;
use crate::{Clock, ConnectArgs, secs, stats};
use anyhow::bail;
use clap::Args;
use futures_util::{SinkExt as _, StreamExt as _};
use hdrhistogram::Histogram;
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{Instant, timeout_at};
use tokio_tungstenite::tungstenite::Message;

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

enum Reply {
    Back(u64),
    Closed,
}

/// Reads until the reply to round trip `seq` of client `me`; older replies count as late.
async fn reply(ws: &mut Ws, me: u32, seq: u32, clock: &Clock, tally: &Tally) -> Reply {
    while let Some(frame) = ws.next().await {
        let text = match frame {
            Ok(Message::Text(text)) => text,
            Ok(Message::Close(_)) | Err(_) => return Reply::Closed,
            Ok(_) => continue,
        };
        let received_ns = clock.now_ns();
        if let Some(Incoming::Data(BenchData {
            action: Some(action),
            payload: Some(payload),
            ..
        })) = Incoming::parse(&text)
            && action == "echo"
            && payload.sender == me
        {
            if payload.seq == seq {
                return Reply::Back(received_ns.saturating_sub(payload.sent_ns));
            }
            tally.late.fetch_add(1, Ordering::Relaxed);
        }
    }
    Reply::Closed
}

async fn client(index: usize, mut ws: Ws, cfg: Loop) {
    let Loop {
        clock,
        tally,
        mut start,
        reply_timeout,
        deadline,
        pad,
    } = cfg;
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
        let text = conn::perform("echo", conn::payload(me, seq, sent_ns, &pad));
        let reply_deadline = (Instant::now() + reply_timeout).min(deadline);
        match timeout_at(reply_deadline, ws.send(Message::Text(text))).await {
            Ok(Ok(())) => {}
            _ => {
                tally.send_errors.fetch_add(1, Ordering::Relaxed);
                closed = true;
                break;
            }
        }
        match timeout_at(reply_deadline, reply(&mut ws, me, seq, &clock, &tally)).await {
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
    } else {
        let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
    }
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
    let session = move |index: usize, ws: Ws| client(index, ws, cfg.clone());
    let connect_time = ramp
        .open_all(clients, deadline, &mut tasks, session)
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
