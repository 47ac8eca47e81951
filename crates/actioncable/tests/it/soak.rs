//! A bounded soak: for `SOAK_SECS` seconds (default 15), clients churn — connect, subscribe,
//! unsubscribe, resubscribe, leave politely or by dropping the TCP connection — while a
//! broadcaster sends sequence-numbered messages to their stream. Every subscription must see
//! every sequence number broadcast while it was confirmed, in order, with no gap; when everyone
//! has left, no connection or stream entry is left behind and the process's RSS is back near its
//! baseline.
//!
//! Longer runs: `SOAK_SECS=600 cargo test -p actioncable --test it soak -- --nocapture`.
//! It runs in a process of its own (`own_process`), so the RSS it reads is its own.

use crate::support::*;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

const SOAK: &str = r#"{"channel":"ChatChannel","room":"soak"}"#;
const CHURNERS: usize = 12;
const STAYERS: usize = 4;
/// Pause between broadcasts (about 400 a second on an idle machine).
const BROADCAST_EVERY: Duration = Duration::from_micros(2500);
/// RSS at the end may exceed the baseline by this much (allocator caches, the runtime's grown
/// buffers); a leak of the churned subscriptions' state would be far above it.
const RSS_TOLERANCE_KIB: u64 = 16 * 1024;

/// xorshift64*: reproducible choices without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Shared between the broadcaster and the clients.
#[derive(Default)]
struct Seq {
    /// Broadcasts completed: every seq below this has been handed to the adapter.
    sent: AtomicU64,
    stop: AtomicBool,
}

#[derive(Default, Debug)]
struct Tally {
    connections: u64,
    subscriptions: u64,
    deliveries: u64,
}

/// One subscription's view of the sequence: what it must see and what it saw.
struct Watch {
    /// Broadcasts completed when the confirmation arrived. Broadcast `from` may have been in
    /// flight then; every one after it started after the client saw the confirmation, so from
    /// `from + 1` on nothing may be missed.
    from: u64,
    next: Option<u64>,
    deliveries: u64,
}

impl Watch {
    fn new(seq: &Seq) -> Watch {
        Watch {
            from: seq.sent.load(Ordering::Acquire),
            next: None,
            deliveries: 0,
        }
    }

    fn saw(&mut self, who: &str, got: u64) {
        match self.next {
            None => assert!(
                got <= self.from + 1,
                "{who}: first delivery {got}, but {} was broadcast after the confirmation",
                self.from + 1
            ),
            Some(next) => assert_eq!(got, next, "{who}: gap or reorder"),
        }
        self.next = Some(got + 1);
        self.deliveries += 1;
    }

    /// Whether everything broadcast before `upto` has been seen.
    fn covers(&self, upto: u64) -> bool {
        self.next.map_or(upto <= self.from + 1, |n| n >= upto)
    }
}

/// Reads one frame for the soak subscription: `Some(seq)` for a delivery, `None` for a ping or
/// when `wait` passes.
async fn read_seq(c: &mut CableClient, wait: Duration) -> Option<u64> {
    match c.next_frame(wait).await? {
        Message::Text(t) => {
            let v: serde_json::Value = serde_json::from_str(&t).unwrap();
            if v["type"] == "ping" {
                return None;
            }
            assert_eq!(v["identifier"], SOAK, "unexpected frame {t}");
            Some(v["message"]["seq"].as_u64().expect("a seq"))
        }
        Message::Ping(_) | Message::Pong(_) => None,
        other => panic!("unexpected frame {other:?}"),
    }
}

/// Subscribes (skipping deliveries still in flight for an earlier subscription on the same
/// connection) and returns the watch starting at the confirmation.
async fn subscribe(c: &mut CableClient, seq: &Seq) -> Watch {
    c.send_subscribe(SOAK).await;
    let deadline = Instant::now() + WAIT;
    loop {
        let text = c.recv_text().await;
        if text == confirm_frame(SOAK) {
            return Watch::new(seq);
        }
        assert!(
            text.starts_with(r#"{"identifier":"#) && text.contains(r#""message":{"seq":"#),
            "waiting for the confirmation, got {text}"
        );
        assert!(Instant::now() < deadline, "no confirmation");
    }
}

/// Reads for `period`, then until everything broadcast before the end of it has arrived.
async fn follow(c: &mut CableClient, w: &mut Watch, who: &str, seq: &Seq, period: Duration) {
    let until = Instant::now() + period;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        if let Some(s) = read_seq(c, left).await {
            w.saw(who, s);
        }
    }
    let upto = seq.sent.load(Ordering::Acquire);
    let deadline = Instant::now() + WAIT;
    while !w.covers(upto) {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "{who}: broadcasts up to {upto} did not all arrive (next {:?})",
            w.next
        );
        if let Some(s) = read_seq(c, left).await {
            w.saw(who, s);
        }
    }
}

async fn churner(server: Arc<CableServer>, seq: Arc<Seq>, id: usize, end: Instant) -> Tally {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (id as u64 + 1));
    let mut tally = Tally::default();
    let mut round = 0u64;
    while Instant::now() < end {
        round += 1;
        assert!(round < 100_000);
        let who = format!("c{id}r{round}");
        let mut c = server.user(&who).await;
        tally.connections += 1;
        // One to three subscriptions on this connection, one after the other.
        for _ in 0..=rng.below(3) {
            let mut w = subscribe(&mut c, &seq).await;
            tally.subscriptions += 1;
            let period = Duration::from_millis(20 + rng.below(300));
            follow(&mut c, &mut w, &who, &seq, period).await;
            tally.deliveries += w.deliveries;
            c.send_unsubscribe(SOAK).await;
        }
        match rng.below(3) {
            0 => c.close().await,
            1 => drop(c), // the TCP connection just drops
            _ => {
                // Still subscribed when it leaves.
                let mut w = subscribe(&mut c, &seq).await;
                tally.subscriptions += 1;
                follow(&mut c, &mut w, &who, &seq, Duration::from_millis(20)).await;
                tally.deliveries += w.deliveries;
                drop(c);
            }
        }
    }
    tally
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churning_clients_miss_nothing_and_leave_nothing_behind() {
    let secs: u64 = std::env::var("SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    // The churn, then warm-up, drain and the final checks, each bounded by `WAIT`.
    let limit = Duration::from_secs(secs) + WAIT * 12;
    if !own_process(
        module_path!(),
        "churning_clients_miss_nothing_and_leave_nothing_behind",
        limit,
    )
    .await
    {
        return;
    }
    let rec = Recorder::new();
    let server = Arc::new(spawn_cable(builder(&rec)).await);
    assert_eq!(server.handle.connection_count(), 0);
    assert_eq!(server.handle.stream_count(), 0);

    // Warm-up: the same kind of traffic once, so the baseline includes the runtime's and the
    // allocator's steady state, not first-use growth.
    let seq = Arc::new(Seq::default());
    {
        let mut warm = Vec::new();
        for i in 0..CHURNERS + STAYERS {
            let mut c = server.user(&format!("warm{i}")).await;
            subscribe(&mut c, &seq).await;
            warm.push(c);
        }
        for c in warm {
            c.close().await;
        }
        eventually("warm-up clients gone", || {
            server.handle.connection_count() == 0 && server.handle.stream_count() == 0
        })
        .await;
    }
    let baseline = rss_kib();

    let broadcaster = {
        let server = server.clone();
        let seq = seq.clone();
        tokio::spawn(async move {
            let mut n = seq.sent.load(Ordering::Acquire);
            while !seq.stop.load(Ordering::Acquire) {
                server
                    .handle
                    .broadcast("chat:soak", &json!({ "seq": n }))
                    .await
                    .unwrap();
                n += 1;
                seq.sent.store(n, Ordering::Release);
                tokio::time::sleep(BROADCAST_EVERY).await;
            }
            n
        })
    };

    let started = Instant::now();
    let end = started + Duration::from_secs(secs);
    let mut stayers = Vec::new();
    for i in 0..STAYERS {
        let mut c = server.user(&format!("stayer{i}")).await;
        let w = subscribe(&mut c, &seq).await;
        stayers.push((c, w));
    }
    let churners: Vec<_> = (0..CHURNERS)
        .map(|id| tokio::spawn(churner(server.clone(), seq.clone(), id, end)))
        .collect();
    let stayer_tasks: Vec<_> = stayers
        .into_iter()
        .enumerate()
        .map(|(i, (mut c, mut w))| {
            let seq = seq.clone();
            tokio::spawn(async move {
                let who = format!("stayer{i}");
                follow(
                    &mut c,
                    &mut w,
                    &who,
                    &seq,
                    end.saturating_duration_since(Instant::now()),
                )
                .await;
                (c, w)
            })
        })
        .collect();

    let mut total = Tally::default();
    let mut peak = baseline;
    for t in churners {
        let tally = tokio::time::timeout(Duration::from_secs(secs) + WAIT, t)
            .await
            .expect("a churner overran")
            .unwrap();
        total.connections += tally.connections;
        total.subscriptions += tally.subscriptions;
        total.deliveries += tally.deliveries;
        peak = peak.max(rss_kib());
    }
    seq.stop.store(true, Ordering::Release);
    let broadcasts = within("the broadcaster stops", broadcaster).await.unwrap();
    let mut stayer_deliveries = Vec::new();
    for t in stayer_tasks {
        let (mut c, mut w) = within("a stayer", t).await.unwrap();
        // Every broadcast made while it was subscribed, through the very last one.
        follow(&mut c, &mut w, "stayer", &seq, Duration::ZERO).await;
        assert!(w.covers(broadcasts));
        stayer_deliveries.push(w.deliveries);
        c.close().await;
    }
    peak = peak.max(rss_kib());

    eventually("every connection and stream entry is released", || {
        server.handle.connection_count() == 0 && server.handle.stream_count() == 0
    })
    .await;
    // Give freed memory a moment to settle (the runtime's queues drain).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = rss_kib();
    let took = started.elapsed();
    eprintln!(
        "soak {took:?}: {broadcasts} broadcasts; {} connections, {} subscriptions churned, \
         {} deliveries checked by churners; stayers got {stayer_deliveries:?}; \
         RSS baseline {baseline} KiB, peak {peak} KiB, after {after} KiB \
         (tolerance {RSS_TOLERANCE_KIB} KiB)",
        total.connections, total.subscriptions, total.deliveries
    );
    assert!(total.connections >= CHURNERS as u64, "{total:?}");
    assert!(broadcasts > 0);
    // Every callback ran: as many `unsubscribed` as subscriptions (churned, warm-up, stayers).
    let subs = total.subscriptions + (CHURNERS + STAYERS + STAYERS) as u64;
    eventually("every unsubscribed callback ran", || {
        rec.count(&format!("unsubscribed:{SOAK}")) as u64 == subs
    })
    .await;
    assert!(
        after <= baseline + RSS_TOLERANCE_KIB,
        "RSS after the soak {after} KiB vs baseline {baseline} KiB"
    );
}
