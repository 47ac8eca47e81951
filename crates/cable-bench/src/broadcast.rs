//! `broadcast` mode: N subscribed clients; S of them perform `broadcast`, one message each per
//! round; a round ends when every client got every message of it, or at the round timeout,
//! when whatever is missing is counted lost.
//!
//! With `--transport sse` the N subscribers are event streams (`--events-path`), which only
//! listen; the S senders are then S more WebSocket clients, whose own copies of the messages
//! are read and not counted (S × S frames a round, against N × S counted deliveries).

use crate::conn::{self, BenchData, Incoming, Ramp, Target, Ws};
use crate::procfs::CpuMeter;
use crate::sse::EventStream;
use crate::{Clock, ConnectArgs, secs, stats};
use anyhow::bail;
use clap::Args;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt as _, StreamExt as _};
use hdrhistogram::Histogram;
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::{Instant, timeout_at};
use tokio_tungstenite::tungstenite::Message;

/// Options of the `broadcast` mode.
#[derive(Debug, Clone, Args)]
pub(crate) struct BroadcastArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Subscribed clients (every one receives every message).
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// Clients that also send, one message each per round (the first S clients).
    #[arg(long, default_value_t = 4)]
    senders: usize,
    /// Rounds.
    #[arg(long, default_value_t = 100)]
    rounds: u32,
    /// A round that has not reached every client after this long is closed; its missing
    /// deliveries count as lost.
    #[arg(long, default_value_t = 5.0)]
    round_timeout_secs: f64,
    /// How the N subscribers are connected: `websocket` (`--url`), or `sse`, event streams
    /// (`--events-path`), with S more WebSocket clients as the senders.
    #[arg(long, value_enum, default_value = "websocket")]
    transport: Transport,
}

/// The subscribers' transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Transport {
    /// WebSocket clients, the senders among them.
    Websocket,
    /// Server-Sent Events streams; the senders are WebSocket clients besides.
    Sse,
}

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Transport::Websocket => "websocket",
            Transport::Sse => "sse",
        }
    }
}

type Sink = SplitSink<Ws, Message>;

/// One message of the current round: deliveries still expected, and the last one's time.
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    remaining: u32,
    last_ns: u64,
}

#[derive(Debug)]
struct State {
    /// The round being measured; `None` between rounds.
    round: Option<u32>,
    slots: Vec<Slot>,
    /// Deliveries still expected in this round.
    outstanding: u64,
    latency: Histogram<u64>,
    deliveries: u64,
    /// Deliveries of a round already closed (counted lost there).
    late: u64,
    /// Duplicates, or messages that belong to no round sent.
    unexpected: u64,
}

/// What the readers report to, shared by every connection task.
#[derive(Debug)]
struct Tracker {
    clients: u32,
    state: Mutex<State>,
    /// Signalled when the round's last expected delivery arrives.
    complete: Notify,
    /// Readers whose connection ended (error, close, `disconnect`).
    disconnected: AtomicU64,
    /// `broadcastResult` transmissions to senders (not deliveries).
    results: AtomicU64,
    /// Frames of no known shape.
    other: AtomicU64,
    /// Deliveries whose frame carried a stream position.
    positioned: AtomicU64,
}

impl Tracker {
    fn new(clients: u32, senders: usize) -> Tracker {
        Tracker {
            clients,
            state: Mutex::new(State {
                round: None,
                slots: vec![Slot::default(); senders],
                outstanding: 0,
                latency: stats::histogram(),
                deliveries: 0,
                late: 0,
                unexpected: 0,
            }),
            complete: Notify::new(),
            disconnected: AtomicU64::new(0),
            results: AtomicU64::new(0),
            other: AtomicU64::new(0),
            positioned: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Opens round `seq`: every client is expected to get every sender's message.
    fn begin(&self, seq: u32) {
        let mut st = self.lock();
        st.round = Some(seq);
        let clients = self.clients;
        st.slots.fill(Slot {
            remaining: clients,
            last_ns: 0,
        });
        st.outstanding = u64::from(clients) * st.slots.len() as u64;
    }

    fn outstanding(&self) -> u64 {
        self.lock().outstanding
    }

    /// Closes the round and returns its slots.
    fn finish(&self) -> Vec<Slot> {
        let mut st = self.lock();
        st.round = None;
        st.slots.clone()
    }

    fn deliver(&self, payload: &conn::Payload, received_ns: u64) {
        let mut st = self.lock();
        let current = st.round;
        let sender = payload.sender as usize;
        match current {
            Some(round) if round == payload.seq && sender < st.slots.len() => {
                let slot = &mut st.slots[sender];
                if slot.remaining == 0 {
                    st.unexpected += 1;
                    return;
                }
                slot.remaining -= 1;
                slot.last_ns = slot.last_ns.max(received_ns);
                st.deliveries += 1;
                stats::record(&mut st.latency, received_ns.saturating_sub(payload.sent_ns));
                st.outstanding -= 1;
                if st.outstanding == 0 {
                    self.complete.notify_one();
                }
            }
            _ if current.is_none_or(|round| payload.seq < round) && sender < st.slots.len() => {
                st.late += 1;
            }
            _ => st.unexpected += 1,
        }
    }
}

/// One client's reading half: records every broadcast delivery (none when `counted` is
/// false: an SSE run's senders); answers nothing.
async fn read_loop(
    mut stream: SplitStream<Ws>,
    tracker: Arc<Tracker>,
    clock: Clock,
    counted: bool,
) {
    while let Some(frame) = stream.next().await {
        let text = match frame {
            Ok(Message::Text(text)) => text,
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => continue,
        };
        let received_ns = clock.now_ns();
        match Incoming::parse(&text) {
            Some(Incoming::Data(BenchData {
                action: Some(action),
                ..
            })) if action == "broadcast" && !counted => {}
            Some(Incoming::Data(BenchData {
                action: Some(action),
                payload: Some(payload),
                positioned,
            })) if action == "broadcast" => {
                if positioned {
                    tracker.positioned.fetch_add(1, Ordering::Relaxed);
                }
                tracker.deliver(&payload, received_ns)
            }
            Some(Incoming::Data(BenchData {
                action: Some(action),
                ..
            })) if action == "broadcastResult" => {
                tracker.results.fetch_add(1, Ordering::Relaxed);
            }
            Some(Incoming::Control(kind)) if kind == "ping" => {}
            Some(Incoming::Control(kind)) if kind == "disconnect" => {
                eprintln!("  server sent {text}");
            }
            _ => {
                tracker.other.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    tracker.disconnected.fetch_add(1, Ordering::Relaxed);
}

/// One event stream: records every broadcast delivery (an unnamed event whose data is the
/// message); `id` says it carried a stream position.
async fn sse_read_loop(mut stream: EventStream, tracker: Arc<Tracker>, clock: Clock) {
    loop {
        let event = match stream.next_event().await {
            Ok(Some(event)) => event,
            Ok(None) => break,
            Err(e) => {
                eprintln!("  an event stream failed: {e:#}");
                break;
            }
        };
        let received_ns = clock.now_ns();
        if !event.name.is_empty() {
            if event.name == "disconnect" {
                eprintln!("  server sent {}", event.data);
            } else {
                tracker.other.fetch_add(1, Ordering::Relaxed);
            }
            continue;
        }
        match serde_json::from_str::<BenchData<'_>>(&event.data) {
            Ok(BenchData {
                action: Some(action),
                payload: Some(payload),
                ..
            }) if action == "broadcast" => {
                if event.has_id {
                    tracker.positioned.fetch_add(1, Ordering::Relaxed);
                }
                tracker.deliver(&payload, received_ns);
            }
            _ => {
                tracker.other.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    tracker.disconnected.fetch_add(1, Ordering::Relaxed);
}

/// Runs the mode; prints the report and returns the JSON summary line.
pub(crate) async fn run(args: BroadcastArgs) -> anyhow::Result<String> {
    let transport = args.transport;
    if args.clients == 0
        || args.senders == 0
        || (transport == Transport::Websocket && args.senders > args.clients)
    {
        bail!("need 1 <= --senders <= --clients");
    }
    let Ok(clients) = u32::try_from(args.clients) else {
        bail!("--clients is too large");
    };
    let senders = args.senders;
    let clock = Clock::start();
    let deadline = Instant::now() + secs(args.connect.timeout_secs, "--timeout-secs")?;
    let round_timeout = secs(args.round_timeout_secs, "--round-timeout-secs")?;
    let pad = "x".repeat(args.connect.payload_bytes);
    let target = Target::resolve(&args.connect).await?;
    let ramp = Ramp::new(target, &args.connect)?;
    eprintln!(
        "broadcast: {clients} {} clients, {senders} senders, {} rounds against {}",
        transport.name(),
        args.rounds,
        ramp.target.url()
    );

    let tracker = Arc::new(Tracker::new(clients, senders));
    let sinks: Arc<Mutex<Vec<(usize, Sink)>>> = Arc::default();
    let mut tasks = JoinSet::new();
    // An SSE run's senders are WebSocket clients besides the subscribers: their copies are
    // not counted.
    let counted = transport == Transport::Websocket;
    let session = {
        let (tracker, sinks) = (tracker.clone(), sinks.clone());
        move |index: usize, ws: Ws| {
            let (sink, stream) = ws.split();
            sinks
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((index, sink));
            read_loop(stream, tracker.clone(), clock, counted)
        }
    };
    let connect_time = match transport {
        Transport::Websocket => {
            ramp.open_all(args.clients, deadline, &mut tasks, session)
                .await?
        }
        Transport::Sse => {
            let listener = {
                let tracker = tracker.clone();
                move |_index: usize, stream: EventStream| {
                    sse_read_loop(stream, tracker.clone(), clock)
                }
            };
            let open =
                |target: Arc<Target>, index| async move { EventStream::open(&target, index).await };
            let streams = ramp
                .open_all_with(args.clients, deadline, &mut tasks, open, listener)
                .await?;
            streams
                + ramp
                    .open_all(senders, deadline, &mut tasks, session)
                    .await?
        }
    };
    eprintln!(
        "  {clients} subscribed in {:.2} s",
        connect_time.as_secs_f64()
    );
    let mut sinks = std::mem::take(&mut *sinks.lock().unwrap_or_else(PoisonError::into_inner));
    sinks.sort_by_key(|(index, _)| *index);

    let mut time_to_all = stats::histogram();
    let (mut rounds_run, mut lost, mut incomplete, mut send_errors) = (0u32, 0u64, 0u64, 0u64);
    let phase = Instant::now();
    let cpu = CpuMeter::start(args.connect.server_pid);
    for seq in 0..args.rounds {
        if Instant::now() >= deadline {
            break;
        }
        rounds_run += 1;
        let round_deadline = (Instant::now() + round_timeout).min(deadline);
        tracker.begin(seq);
        let mut sent_ns = vec![None; senders];
        for (sender, (_, sink)) in sinks.iter_mut().take(senders).enumerate() {
            let now = clock.now_ns();
            let text = conn::perform("broadcast", conn::payload(sender as u32, seq, now, &pad));
            match timeout_at(round_deadline, sink.send(Message::Text(text))).await {
                Ok(Ok(())) => sent_ns[sender] = Some(now),
                _ => send_errors += 1,
            }
        }
        while tracker.outstanding() > 0 {
            if timeout_at(round_deadline, tracker.complete.notified())
                .await
                .is_err()
            {
                break;
            }
        }
        for (slot, sent) in tracker.finish().into_iter().zip(sent_ns) {
            match sent {
                Some(sent) if slot.remaining == 0 => {
                    stats::record(&mut time_to_all, slot.last_ns.saturating_sub(sent));
                }
                _ => {
                    incomplete += 1;
                    lost += u64::from(slot.remaining);
                }
            }
        }
        if (seq + 1) % 50 == 0 {
            eprintln!("  round {}/{}", seq + 1, args.rounds);
        }
    }
    let phase_time = phase.elapsed();
    let server_cpu = cpu.elapsed();
    // Snapshot before closing, so that only connections lost during the run count.
    let disconnected = tracker.disconnected.load(Ordering::Relaxed);
    let positioned = tracker.positioned.load(Ordering::Relaxed);
    let (latency, deliveries, unexpected) = {
        let st = tracker.lock();
        (st.latency.clone(), st.deliveries, st.unexpected)
    };
    close_all(&mut sinks, &mut tasks).await;
    // A delivery counts as lost at its round's end even if it arrives later (while closing,
    // say): `late` says how many did.
    let late = tracker.lock().late;

    let messages = u64::from(rounds_run) * senders as u64;
    let deliveries_per_sec = deliveries as f64 / phase_time.as_secs_f64().max(1e-9);
    println!(
        "broadcast: {clients} {} clients, {senders} senders, {rounds_run}/{} rounds, {messages} messages, {}",
        transport.name(),
        args.rounds,
        ramp.target.url()
    );
    println!(
        "  connect {:.2} s; broadcast phase {:.3} s; {deliveries} deliveries = {:.0} deliveries/s",
        connect_time.as_secs_f64(),
        phase_time.as_secs_f64(),
        deliveries_per_sec
    );
    println!(
        "  lost {lost} deliveries ({incomplete} of {messages} messages incomplete); late {late}; unexpected {unexpected}; send errors {send_errors}; connections lost {disconnected}"
    );
    if ramp.target.protocol() == conn::Protocol::Ext || transport == Transport::Sse {
        println!("  {positioned} of the deliveries carried a stream position");
    }
    if rounds_run < args.rounds {
        println!(
            "  ABORTED: the run's deadline came after {rounds_run} of {} rounds",
            args.rounds
        );
    }
    if let Some(cpu) = server_cpu {
        println!(
            "  server CPU during the broadcast phase: {cpu:.2} s = {:.2} µs per delivery",
            1e6 * cpu / deliveries.max(1) as f64
        );
    }
    println!("{}", stats::table_header());
    println!("{}", stats::table_row("time-to-all", &time_to_all));
    println!("{}", stats::table_row("per-delivery", &latency));
    let mut summary = json!({
        "mode": "broadcast",
        "clients": clients,
        "senders": senders,
        "rounds": rounds_run,
        "messages": messages,
        "deliveries": deliveries,
        "lost": lost,
        "deliveries_per_sec": stats::round(deliveries_per_sec, 1),
        "time_to_all_ms": stats::percentiles_json(&time_to_all),
        "latency_ms": stats::percentiles_json(&latency),
        "incomplete_messages": incomplete,
        "late": late,
        "unexpected": unexpected,
        "send_errors": send_errors,
        "connections_lost": disconnected,
        "rounds_requested": args.rounds,
        "connect_secs": stats::round(connect_time.as_secs_f64(), 3),
        "broadcast_secs": stats::round(phase_time.as_secs_f64(), 3),
        "payload_bytes": args.connect.payload_bytes,
        "url": ramp.target.url(),
        "protocol": ramp.target.protocol().name(),
        "transport": transport.name(),
        "positioned": positioned,
    });
    if let Some(cpu) = server_cpu {
        summary["server_cpu_secs"] = stats::round(cpu, 2).into();
        summary["server_cpu_us_per_delivery"] =
            stats::round(1e6 * cpu / deliveries.max(1) as f64, 3).into();
    }
    Ok(summary.to_string())
}

/// Closes every connection politely (close frame), briefly waits for the readers, then
/// abandons whatever is left.
async fn close_all(sinks: &mut [(usize, Sink)], tasks: &mut JoinSet<()>) {
    let limit = Instant::now() + Duration::from_secs(3);
    let closes = futures_util::future::join_all(sinks.iter_mut().map(|(_, sink)| sink.close()));
    let _ = timeout_at(limit, closes).await;
    while let Ok(Some(_)) = timeout_at(limit, tasks.join_next()).await {}
    tasks.abort_all();
}
