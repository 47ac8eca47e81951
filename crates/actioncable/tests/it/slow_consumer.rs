//! A slow consumer with bounded memory. One client stops reading while thousands of broadcasts
//! go to many subscribers: it is disconnected (its outbox is bounded), the process's memory
//! stays bounded although far more than the bound is addressed to it, and every other
//! subscriber gets every message, in order, one batch behind at most.
//!
//! It runs in a process of its own (`own_process`), so no other test's allocations move the RSS
//! it measures. The clients run in the same process as the server; their memory is part of the
//! figure (a loose bound).

use crate::support::*;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

const FAST: usize = 30;
const BATCHES: u64 = 100;
const PER_BATCH: u64 = 30; // lobby messages per batch: 3,000 in all
const BULK_PER_BATCH: usize = 10; // 64 KiB messages per batch to the slow client only: 62.5 MiB
const BULK_SIZE: usize = 64 * 1024;
const CAPACITY: usize = 128;
/// Allowed RSS growth over the baseline, while ~62.5 MiB is addressed to the slow client.
const RSS_BOUND_KIB: u64 = 24 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_dropped_memory_stays_bounded_and_everyone_else_gets_everything() {
    if !own_process(
        module_path!(),
        "a_slow_consumer_is_dropped_memory_stays_bounded_and_everyone_else_gets_everything",
        WAIT * 30,
    )
    .await
    {
        return;
    }
    let rec = Recorder::new();
    let server = spawn_cable(
        builder(&rec)
            .outbound_capacity(CAPACITY)
            .close_timeout(Duration::from_millis(300)),
    )
    .await;

    // The fast subscribers: each reads in its own task, checks the sequence, publishes progress.
    let progress: Arc<Vec<AtomicU64>> = Arc::new((0..FAST).map(|_| AtomicU64::new(0)).collect());
    let mut readers = Vec::new();
    for n in 0..FAST {
        let mut c = server.user(&format!("fast{n}")).await;
        c.confirm(LOBBY).await;
        let progress = progress.clone();
        readers.push(tokio::spawn(async move {
            // Lobby deliveries are `{"identifier":…,"message":{"seq":N}}`; pings are skipped.
            let total = BATCHES * PER_BATCH + PER_BATCH; // + the warm-up batch
            let mut next = 0u64;
            while next < total {
                let text = c.recv_text().await;
                let v: serde_json::Value = serde_json::from_str(&text).unwrap();
                assert_eq!(v["identifier"], LOBBY, "{text}");
                assert_eq!(
                    v["message"]["seq"], next,
                    "fast{n}: out of order or missing"
                );
                next += 1;
                progress[n].store(next, Ordering::Release);
            }
            c
        }));
    }
    let wait_all = |upto: u64| {
        let progress = progress.clone();
        async move {
            let deadline = Instant::now() + WAIT;
            while progress.iter().any(|p| p.load(Ordering::Acquire) < upto) {
                assert!(
                    Instant::now() < deadline,
                    "fast subscribers fell behind: {:?}",
                    progress
                        .iter()
                        .map(|p| p.load(Ordering::Relaxed))
                        .collect::<Vec<_>>()
                );
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    };

    // The slow one: on the lobby and on a bulk stream nobody else has; it never reads.
    let mut slow = server.user("slow").await;
    slow.confirm(LOBBY).await;
    let bulk_id = r#"{"channel":"ChatChannel","room":"bulk"}"#;
    slow.confirm(bulk_id).await;

    let blob = "x".repeat(BULK_SIZE);
    let mut seq = 0u64;
    // Warm-up batch (allocator, buffers), then the baseline.
    for _ in 0..PER_BATCH {
        server
            .handle
            .broadcast("chat:lobby", &json!({ "seq": seq }))
            .await
            .unwrap();
        seq += 1;
    }
    wait_all(seq).await;
    let baseline = rss_kib();

    let mut peak = baseline;
    let mut worst_batch = Duration::ZERO;
    let mut dropped_at_batch = None;
    let started = Instant::now();
    for batch in 0..BATCHES {
        let t = Instant::now();
        for i in 0..PER_BATCH {
            server
                .handle
                .broadcast("chat:lobby", &json!({ "seq": seq }))
                .await
                .unwrap();
            seq += 1;
            if (i as usize) < BULK_PER_BATCH {
                server
                    .handle
                    .broadcast("chat:bulk", &json!({ "blob": blob }))
                    .await
                    .unwrap();
            }
        }
        wait_all(seq).await;
        worst_batch = worst_batch.max(t.elapsed());
        peak = peak.max(rss_kib());
        if dropped_at_batch.is_none() && rec.count("disconnect:current_user=slow") > 0 {
            dropped_at_batch = Some(batch);
        }
    }
    let took = started.elapsed();
    let growth = peak.saturating_sub(baseline);
    let addressed_mib = (BATCHES as usize * BULK_PER_BATCH * BULK_SIZE) as f64 / 1048576.0;
    eprintln!(
        "slow consumer: {} lobby broadcasts to {} subscribers + {addressed_mib:.1} MiB addressed \
         to the slow one in {took:?}; slow one dropped after batch {dropped_at_batch:?}; \
         RSS baseline {baseline} KiB, peak {peak} KiB, growth {growth} KiB (bound {RSS_BOUND_KIB} KiB); \
         slowest batch of {PER_BATCH} delivered to everyone in {worst_batch:?}",
        BATCHES * PER_BATCH,
        FAST + 1,
    );

    rec.wait_for("disconnect:current_user=slow").await;
    assert!(
        dropped_at_batch.is_some(),
        "the slow client outlived the broadcasts"
    );
    assert!(
        growth < RSS_BOUND_KIB,
        "RSS grew by {growth} KiB (bound {RSS_BOUND_KIB} KiB)"
    );
    eventually("only the fast subscribers remain", || {
        server.handle.connection_count() == FAST
    })
    .await;
    for r in readers {
        let mut c = within("a reader", r).await.unwrap();
        c.perform(LOBBY, "whoami", json!({})).await;
        let v = c.recv_json().await;
        assert!(v["message"]["user"].as_str().unwrap().starts_with("fast"));
    }
    // The slow client's socket ends (after whatever the kernel had buffered for it); it is
    // drained without parsing, bounded by the number of frames that can have been sent.
    let mut drained = 0u64;
    while slow.next_frame_or_end().await.is_some() {
        drained += 1;
        assert!(drained < 100_000, "the slow socket never ended");
    }
    assert!(drained < seq + BATCHES * BULK_PER_BATCH as u64 + 100);
}
