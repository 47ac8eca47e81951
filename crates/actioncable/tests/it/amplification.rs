//! Amplification through identifiers: one client subscribes as often as it may, with
//! identifiers as large as it may, to a stream someone broadcasts large messages to, and stops
//! reading. Every frame repeats its identifier, so without bounds one 40-byte HTTP request
//! turned into hundreds of MiB of frames. Identifiers over `max_identifier_size` are refused;
//! at the limit, the outbox's byte budget drops the client as too slow after a few MiB, the
//! publisher's call returns at once (the in-memory adapter fans out on a task of its own), and
//! another client's round trips stay fast.
//!
//! It runs in a process of its own (`own_process`), so no other test's allocations move the
//! RSS it measures; the clients share the process with the server (a loose bound).

use crate::support::*;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

const SUBSCRIPTIONS: usize = 256;
const IDENTIFIER_LIMIT: usize = 4096;
const BROADCASTS: usize = 16;
const BLOB: usize = 64 * 1024;
/// Allowed RSS growth while 16 × 256 × 68 KiB (272 MiB) is addressed to the attacker. Without
/// the byte budget its 1,024-frame outbox alone would hold 68 MiB.
const RSS_BOUND_KIB: u64 = 32 * 1024;

/// A NotificationChannel identifier (`{"channel":"NotificationChannel","pad":"…","n":N}`) of
/// exactly `size` bytes; extra params are allowed and kept, as in Rails.
fn identifier(n: usize, size: usize) -> String {
    let bare = json!({ "channel": "NotificationChannel", "pad": "", "n": n }).to_string();
    let pad = "x".repeat(size - bare.len());
    let id = json!({ "channel": "NotificationChannel", "pad": pad, "n": n }).to_string();
    assert_eq!(id.len(), size);
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_identifiers_are_refused_and_large_ones_cannot_amplify_a_broadcast() {
    if !own_process(
        module_path!(),
        "oversized_identifiers_are_refused_and_large_ones_cannot_amplify_a_broadcast",
        WAIT * 6,
    )
    .await
    {
        return;
    }
    let rec = Recorder::new();
    let server = spawn_cable(
        builder(&rec)
            .max_commands_per_second(10_000)
            .close_timeout(Duration::from_millis(300)),
    )
    .await;
    let mut attacker = server.user("attacker").await;

    // Over the limit: every one refused, nothing kept.
    for n in 0..SUBSCRIPTIONS {
        let id = identifier(n, IDENTIFIER_LIMIT + 1);
        attacker.send_subscribe(&id).await;
        attacker.expect_reject(&id).await;
    }
    let streams = server.handle.stream_count();
    assert_eq!(streams, 1, "only the attacker's internal stream");

    // At the limit: accepted, all on the attacker's notification stream.
    for n in 0..SUBSCRIPTIONS {
        attacker.confirm(&identifier(n, IDENTIFIER_LIMIT)).await;
    }
    let mut bystander = server.user("bystander").await;
    bystander.confirm(ECHO).await;
    bystander.assert_echo(ECHO, json!("warm-up")).await;

    // The attacker stops reading. A publisher (an HTTP handler, say) sends it large messages.
    let baseline = rss_kib();
    let done = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(baseline));
    let sampler = {
        let (done, peak) = (done.clone(), peak.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::Acquire) {
                peak.fetch_max(rss_kib(), Ordering::AcqRel);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let handle = server.handle.clone();
    let publisher = tokio::spawn(async move {
        let blob = "b".repeat(BLOB);
        let mut slowest = Duration::ZERO;
        for seq in 0..BROADCASTS {
            let started = Instant::now();
            handle
                .broadcast_to(
                    "NotificationChannel",
                    "attacker",
                    &json!({ "seq": seq, "blob": blob }),
                )
                .await
                .expect("the broadcast is accepted");
            slowest = slowest.max(started.elapsed());
        }
        slowest
    });
    let mut slowest_echo = Duration::ZERO;
    for i in 0..50 {
        let started = Instant::now();
        bystander.assert_echo(ECHO, json!({ "i": i })).await;
        slowest_echo = slowest_echo.max(started.elapsed());
    }
    let slowest_broadcast = within("the publisher", publisher).await.unwrap();
    // The attacker is dropped as too slow once its queue holds more than its byte budget.
    eventually("the attacker dropped", || {
        rec.count("disconnect:current_user=attacker") == 1
    })
    .await;
    done.store(true, Ordering::Release);
    sampler.await.unwrap();
    let growth = peak.load(Ordering::Acquire).saturating_sub(baseline);
    eprintln!(
        "{SUBSCRIPTIONS} subscriptions with {IDENTIFIER_LIMIT}-byte identifiers, {BROADCASTS} broadcasts of {} KiB: \
         {} MiB addressed to the attacker; RSS growth {growth} KiB (bound {RSS_BOUND_KIB} KiB); \
         slowest broadcast call {slowest_broadcast:?}; the bystander's slowest round trip {slowest_echo:?}",
        BLOB / 1024,
        (SUBSCRIPTIONS * BROADCASTS * (BLOB + IDENTIFIER_LIMIT)) >> 20,
    );
    assert!(
        growth < RSS_BOUND_KIB,
        "RSS grew by {growth} KiB (bound {RSS_BOUND_KIB} KiB)"
    );
    // Generous bounds (a loaded 2-core machine): the publisher never runs the fan-out, and
    // the bystander is not held up behind it.
    assert!(
        slowest_broadcast < Duration::from_millis(250),
        "a broadcast call took {slowest_broadcast:?}"
    );
    assert!(
        slowest_echo < Duration::from_secs(1),
        "a bystander's round trip took {slowest_echo:?}"
    );
    bystander.assert_echo(ECHO, json!("after")).await;
}
