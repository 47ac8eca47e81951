//! `connect` mode: N idle subscribed connections; the server's resident memory (VmRSS of
//! `--server-pid`) before and after says what one idle connection costs it.

use crate::conn::{Ramp, Target, Ws};
use crate::procfs::{self, CpuMeter};
use crate::{ConnectArgs, secs, stats};
use anyhow::bail;
use clap::Args;
use futures_util::StreamExt as _;
use futures_util::stream::SplitSink;
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::task::JoinSet;
use tokio::time::{Instant, timeout_at};
use tokio_tungstenite::tungstenite::Message;

/// Options of the `connect` mode.
#[derive(Debug, Clone, Args)]
pub(crate) struct ConnectModeArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Idle subscribed connections to open and hold.
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// How long to hold every connection open before the second reading (longer than the
    /// 3 s ping interval, so every connection has received and written a ping).
    #[arg(long, default_value_t = 4.0)]
    hold_secs: f64,
}

type Sink = SplitSink<Ws, Message>;

/// Runs the mode; prints the report and returns the JSON summary line.
pub(crate) async fn run(args: ConnectModeArgs) -> anyhow::Result<String> {
    if args.clients == 0 {
        bail!("--clients must be positive");
    }
    let clients = args.clients;
    let deadline = Instant::now() + secs(args.connect.timeout_secs, "--timeout-secs")?;
    let hold = secs(args.hold_secs, "--hold-secs")?;
    let target = Target::resolve(&args.connect).await?;
    let ramp = Ramp::new(target, &args.connect)?;
    eprintln!(
        "connect: {clients} idle clients against {}",
        ramp.target.url()
    );
    let server_pid = args.connect.server_pid;
    let before = server_pid.map(procfs::rss).transpose()?;
    let cpu = CpuMeter::start(server_pid);

    // Every connection is read (pings are discarded) so nothing piles up in socket buffers.
    let frames = Arc::new(AtomicU64::new(0));
    let lost = Arc::new(AtomicU64::new(0));
    let sinks: Arc<Mutex<Vec<Sink>>> = Arc::default();
    let mut tasks = JoinSet::new();
    let session = {
        let (frames, lost, sinks) = (frames.clone(), lost.clone(), sinks.clone());
        move |_index: usize, ws: Ws| {
            let (sink, mut stream) = ws.split();
            sinks
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(sink);
            let (frames, lost) = (frames.clone(), lost.clone());
            async move {
                while let Some(frame) = stream.next().await {
                    match frame {
                        Ok(Message::Close(_)) | Err(_) => break,
                        Ok(_) => {
                            frames.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                lost.fetch_add(1, Ordering::Relaxed);
            }
        }
    };
    let connect_time = ramp
        .open_all(clients, deadline, &mut tasks, session)
        .await?;
    eprintln!(
        "  {clients} subscribed in {:.2} s; holding {:.1} s",
        connect_time.as_secs_f64(),
        hold.as_secs_f64()
    );
    let connect_cpu = cpu.elapsed();
    let held = timeout_at(deadline, tokio::time::sleep(hold)).await.is_ok();
    let after = server_pid.map(procfs::rss).transpose()?;
    let lost_while_held = lost.load(Ordering::Relaxed);
    let frames_while_held = frames.load(Ordering::Relaxed);

    let mut sinks = std::mem::take(&mut *sinks.lock().unwrap_or_else(PoisonError::into_inner));
    close_all(&mut sinks, &mut tasks).await;

    println!("connect: {clients} clients, {}", ramp.target.url());
    println!(
        "  connect {:.2} s ({:.0} connections/s); held {:.1} s{}; {frames_while_held} frames received while held (pings); connections lost {lost_while_held}",
        connect_time.as_secs_f64(),
        clients as f64 / connect_time.as_secs_f64().max(1e-9),
        hold.as_secs_f64(),
        if held {
            ""
        } else {
            " (cut short by the deadline)"
        },
    );
    let mut summary = json!({
        "mode": "connect",
        "clients": clients,
        "connect_secs": stats::round(connect_time.as_secs_f64(), 3),
        "hold_secs": stats::round(hold.as_secs_f64(), 3),
        "frames_while_held": frames_while_held,
        "connections_lost": lost_while_held,
        "url": ramp.target.url(),
    });
    if let (Some(pid), Some((rss_before, _)), Some((rss_after, hwm))) = (server_pid, before, after)
    {
        let per_conn = rss_after.saturating_sub(rss_before) as f64 / clients as f64;
        println!(
            "  server pid {pid}: RSS {:.1} MiB before, {:.1} MiB after (peak {:.1} MiB) = {per_conn:.0} bytes ({:.2} KiB) per connection",
            rss_before as f64 / 1048576.0,
            rss_after as f64 / 1048576.0,
            hwm as f64 / 1048576.0,
            per_conn / 1024.0,
        );
        summary["server_pid"] = pid.into();
        summary["rss_before_bytes"] = rss_before.into();
        summary["rss_after_bytes"] = rss_after.into();
        summary["rss_peak_bytes"] = hwm.into();
        summary["bytes_per_connection"] = stats::round(per_conn, 0).into();
    }
    if let Some(cpu) = connect_cpu {
        println!(
            "  server CPU while connecting: {cpu:.2} s = {:.0} µs per connection",
            1e6 * cpu / clients as f64
        );
        summary["server_connect_cpu_secs"] = stats::round(cpu, 2).into();
    }
    Ok(summary.to_string())
}

/// Closes every connection politely (close frame), briefly waits for the readers, then
/// abandons whatever is left.
async fn close_all(sinks: &mut [Sink], tasks: &mut JoinSet<()>) {
    use futures_util::SinkExt as _;
    let limit = Instant::now() + Duration::from_secs(5);
    let closes = futures_util::future::join_all(sinks.iter_mut().map(|sink| sink.close()));
    let _ = timeout_at(limit, closes).await;
    while let Ok(Some(_)) = timeout_at(limit, tasks.join_next()).await {}
    tasks.abort_all();
}
