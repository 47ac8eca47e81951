//! Stream history in JetStream: positions agree on every node, any node replays what a client
//! missed, the limit and the TTL answer as the memory store does (with offsets that are
//! JetStream sequences, so other streams' messages leave gaps), concurrent publishers on two
//! nodes keep one chain, and positions survive a restart of a server with file storage.

use crate::support::*;
use actioncable::pubsub::{History, HistorySettings, Kept, PubSub};
use actioncable::{AllowedOrigins, BroadcastError, Cable, PubSubError};
use actioncable_nats::{HistoryStorage, NatsConfig, NatsError, NatsPubSub};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// What `@anycable/core` offers.
const EXT_PROTOCOL: &str = "actioncable-v1-ext-json";

const STREAM: &str = "chat:lobby";

/// A node keeping history with `settings`, and its adapter.
async fn history_node(config: &NatsConfig, settings: HistorySettings) -> (Node, NatsPubSub) {
    let pubsub = NatsPubSub::new(config.clone());
    let node = spawn_cable(
        Cable::builder()
            .channel::<StreamChannel>()
            .pubsub(pubsub.clone())
            .history(true)
            .history_limit(settings.limit)
            .history_ttl(settings.ttl)
            .ping_interval(Duration::from_secs(1))
            .allowed_origins(AllowedOrigins::any()),
    )
    .await;
    connected(&pubsub).await;
    (node, pubsub)
}

/// The history the node's cable keeps (another handle on it).
fn history_of(pubsub: &NatsPubSub, settings: HistorySettings) -> Arc<dyn History> {
    pubsub.history(&settings).expect("the same settings")
}

/// An extended-protocol client subscribed to `stream`.
async fn ext_client(node: &Node, stream: &str) -> CableClient {
    let mut c = CableClient::welcomed(node.addr, Connect::new().protocols(EXT_PROTOCOL)).await;
    assert_eq!(c.protocol.as_deref(), Some(EXT_PROTOCOL));
    c.send_json(&json!({ "command": "subscribe", "identifier": identifier(stream) }))
        .await;
    c.expect_confirm(&identifier(stream)).await;
    c
}

/// The next message frame of `stream`: its message, epoch and offset (`None`: live only).
async fn next(c: &mut CableClient, stream: &str) -> (Value, Option<(String, u64)>) {
    let frame = c.recv_json().await;
    assert_eq!(frame["identifier"], identifier(stream), "{frame}");
    let position = frame["epoch"].as_str().map(|epoch| {
        (
            epoch.to_owned(),
            frame["offset"].as_u64().expect("an offset with the epoch"),
        )
    });
    (frame["message"].clone(), position)
}

fn offsets(kept: &[Kept]) -> Vec<u64> {
    kept.iter().map(|k| k.position.offset).collect()
}

async fn speak(node: &Node, stream: &str, n: u64) {
    node.handle
        .broadcast(stream, &json!({ "n": n }))
        .await
        .expect("a kept broadcast");
}

/// Resubscribes `stream` on `node` asking for what came after `epoch`/`offset`; returns the
/// client once the replay's messages (checked against `expected`, in order) and
/// `confirm_history` arrived.
async fn replay_from(
    node: &Node,
    epoch: &str,
    offset: u64,
    expected: &[(u64, u64)],
) -> CableClient {
    let mut back = CableClient::welcomed(node.addr, Connect::new().protocols(EXT_PROTOCOL)).await;
    back.send_json(&json!({
        "command": "subscribe",
        "identifier": identifier(STREAM),
        "history": { "streams": { STREAM: { "epoch": epoch, "offset": offset } } }
    }))
    .await;
    back.expect_confirm(&identifier(STREAM)).await;
    for (n, at) in expected {
        let (m, p) = next(&mut back, STREAM).await;
        assert_eq!(
            (m["n"].as_u64(), p),
            (Some(*n), Some((epoch.to_owned(), *at)))
        );
    }
    back.expect_frame(&format!(
        r#"{{"identifier":{},"type":"confirm_history"}}"#,
        serde_json::to_string(&identifier(STREAM)).unwrap()
    ))
    .await;
    back
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_agree_across_nodes_and_either_node_serves_the_history() {
    let config = shared_config();
    let _cleanup = DropStream {
        name: config.history_stream_name(),
    };
    let s = HistorySettings::default();
    let (a, _) = history_node(&config, s).await;
    let (b, _) = history_node(&config, s).await;
    let mut on_a = ext_client(&a, STREAM).await;
    let mut on_b = ext_client(&b, STREAM).await;
    for n in 1..=6 {
        speak(if n % 2 == 0 { &b } else { &a }, STREAM, n).await;
        // Another stream's kept message in between: the offsets of STREAM skip it.
        speak(&a, "elsewhere", n).await;
    }
    let mut seen = Vec::new();
    for n in 1..=6 {
        let (ma, pa) = next(&mut on_a, STREAM).await;
        let (mb, pb) = next(&mut on_b, STREAM).await;
        assert_eq!((ma["n"].as_u64(), mb["n"].as_u64()), (Some(n), Some(n)));
        assert_eq!(pa, pb, "both nodes deliver message {n} at one position");
        seen.push(pa.expect("a kept message has a position"));
    }
    let epoch = seen[0].0.clone();
    assert!(seen.iter().all(|(e, _)| *e == epoch), "one epoch: {seen:?}");
    let at: Vec<u64> = seen.iter().map(|(_, o)| *o).collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "rising offsets: {at:?}");
    assert!(
        at.windows(2).all(|w| w[1] == w[0] + 2),
        "JetStream sequences: {at:?}"
    );

    // A client that saw 1 and 2 on node A comes back on node B.
    let expected: Vec<(u64, u64)> = (3..=6).map(|n| (n, at[n as usize - 1])).collect();
    let mut back = replay_from(&b, &epoch, at[1], &expected).await;
    // Then live, from either node, once.
    speak(&a, STREAM, 7).await;
    let (m, p) = next(&mut back, STREAM).await;
    assert_eq!(m["n"].as_u64(), Some(7));
    let (e, o) = p.expect("a position");
    assert_eq!(e, epoch);
    assert!(o > at[5]);
    back.expect_silence(SILENCE).await;
    // Up to date: nothing to replay.
    replay_from(&a, &epoch, o, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limit_evicts_and_a_position_whose_successor_is_gone_is_refused() {
    let config = shared_config();
    let _cleanup = DropStream {
        name: config.history_stream_name(),
    };
    let s = HistorySettings::new(3, Duration::from_secs(300));
    let (_a, pa) = history_node(&config, s).await;
    let (_b, pb) = history_node(&config, s).await;
    let h = history_of(&pa, s);
    let mut positions = Vec::new();
    for n in 1..=5 {
        positions.push(h.publish(STREAM, &format!(r#"{{"n":{n}}}"#)).await.unwrap());
        h.publish("other", "{}").await.unwrap();
    }
    let epoch = positions[0].epoch.clone();
    assert!(positions.iter().all(|p| p.epoch == epoch));
    let at: Vec<u64> = positions.iter().map(|p| p.offset).collect();
    // The other node reads the same history: 3, 4 and 5 are kept.
    let hb = history_of(&pb, s);
    assert_eq!(
        offsets(&hb.since(STREAM, 0).await.unwrap()),
        at[2..].to_vec()
    );
    // A client at 2 misses only kept ones; one at 1 missed 2 for good.
    let after2 = hb.after(STREAM, &epoch, at[1]).await.unwrap().unwrap();
    assert_eq!(offsets(&after2), at[2..].to_vec());
    assert_eq!(
        &*after2[0].payload, r#"{"n":3}"#,
        "the payload as published"
    );
    assert!(hb.after(STREAM, &epoch, at[0]).await.unwrap().is_none());
    // A position between two of the stream's (another stream's sequence): nothing missed.
    assert_eq!(
        offsets(&hb.after(STREAM, &epoch, at[2] + 1).await.unwrap().unwrap()),
        at[3..].to_vec()
    );
    assert!(
        hb.after(STREAM, &epoch, at[4])
            .await
            .unwrap()
            .unwrap()
            .is_empty()
    );
    assert!(
        hb.after(STREAM, &epoch, at[4] + 100)
            .await
            .unwrap()
            .is_none(),
        "never given"
    );
    assert!(hb.after(STREAM, "other", at[3]).await.unwrap().is_none());
    assert!(hb.after("nope", &epoch, 0).await.unwrap().is_none());
    assert!(hb.since("nope", 0).await.unwrap().is_empty());
    assert!(
        hb.since(STREAM, u64::MAX / 2).await.unwrap().is_empty(),
        "nothing that recent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_expire_after_the_ttl_and_a_stream_kept_again_gets_a_new_epoch() {
    let config = shared_config();
    let _cleanup = DropStream {
        name: config.history_stream_name(),
    };
    let s = HistorySettings::new(100, Duration::from_millis(1200));
    let (_a, pa) = history_node(&config, s).await;
    let h = history_of(&pa, s);
    let first = h.publish(STREAM, r#"{"n":1}"#).await.unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let second = h.publish(STREAM, r#"{"n":2}"#).await.unwrap();
    assert_eq!(second.epoch, first.epoch);
    // 1 expires, 2 has not: a client at 0 missed 1 for good, one at 1 gets 2.
    eventually_async("the first message to expire", || async {
        h.since(STREAM, 0).await.map(|k| offsets(&k)).ok() == Some(vec![second.offset])
    })
    .await;
    assert!(h.after(STREAM, &first.epoch, 0).await.unwrap().is_none());
    let after1 = h
        .after(STREAM, &first.epoch, first.offset)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(offsets(&after1), vec![second.offset]);
    // Everything expires: positions are refused, and the stream starts a new epoch.
    eventually_async("the stream to expire", || async {
        h.since(STREAM, 0).await.is_ok_and(|k| k.is_empty())
    })
    .await;
    assert!(
        h.after(STREAM, &first.epoch, second.offset)
            .await
            .unwrap()
            .is_none()
    );
    let again = h.publish(STREAM, r#"{"n":3}"#).await.unwrap();
    assert_ne!(again.epoch, first.epoch);
    assert!(again.offset > second.offset);
    assert!(
        h.after(STREAM, &first.epoch, second.offset)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        offsets(&h.after(STREAM, &again.epoch, 0).await.unwrap().unwrap()),
        vec![again.offset]
    );
}

/// Polls an async condition every 50 ms, bounded by `WAIT`.
async fn eventually_async<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_kept_broadcasts_from_two_nodes_form_one_chain() {
    const EACH: u64 = 25;
    let config = shared_config();
    let _cleanup = DropStream {
        name: config.history_stream_name(),
    };
    let s = HistorySettings::new(1000, Duration::from_secs(300));
    let (a, pa) = history_node(&config, s).await;
    let (b, _) = history_node(&config, s).await;
    let mut on_a = ext_client(&a, STREAM).await;
    let mut on_b = ext_client(&b, STREAM).await;
    let from_a = async {
        for n in 0..EACH {
            speak(&a, STREAM, n).await;
        }
    };
    let from_b = async {
        for n in EACH..2 * EACH {
            speak(&b, STREAM, n).await;
        }
    };
    tokio::join!(from_a, from_b);
    let mut delivered = Vec::new();
    for _ in 0..2 * EACH {
        let (ma, pa) = next(&mut on_a, STREAM).await;
        let (mb, pb) = next(&mut on_b, STREAM).await;
        assert_eq!((&ma, &pa), (&mb, &pb), "both nodes deliver in one order");
        delivered.push((ma["n"].as_u64().unwrap(), pa.expect("a position")));
    }
    let epoch = delivered[0].1.0.clone();
    assert!(delivered.iter().all(|(_, (e, _))| *e == epoch));
    assert!(
        delivered.windows(2).all(|w| w[0].1.1 < w[1].1.1),
        "position order: {delivered:?}"
    );
    // Each node's own broadcasts in the order it made them.
    let mine = |range: std::ops::Range<u64>| -> Vec<u64> {
        delivered
            .iter()
            .map(|(n, _)| *n)
            .filter(|n| range.contains(n))
            .collect()
    };
    assert_eq!(mine(0..EACH), (0..EACH).collect::<Vec<_>>());
    assert_eq!(mine(EACH..2 * EACH), (EACH..2 * EACH).collect::<Vec<_>>());
    // The chain is whole: everything after the first is replayed, in order.
    let h = history_of(&pa, s);
    let replay = h
        .after(STREAM, &epoch, delivered[0].1.1)
        .await
        .unwrap()
        .expect("nothing evicted");
    assert_eq!(
        offsets(&replay),
        delivered[1..]
            .iter()
            .map(|(_, (_, o))| *o)
            .collect::<Vec<_>>()
    );
}

/// AnyCable's broadcasts are live only, as AnyCable's own NATS broadcaster delivers them: no
/// position, and the stream's chain does not move.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anycable_broadcasts_are_live_only_and_a_too_large_kept_broadcast_is_refused() {
    let config = shared_config();
    let _cleanup = DropStream {
        name: config.history_stream_name(),
    };
    let s = HistorySettings::default();
    let (a, _) = history_node(&config, s).await;
    let mut c = ext_client(&a, STREAM).await;
    speak(&a, STREAM, 1).await;
    let anycable = raw_client(SHARED_URL).await;
    anycable
        .publish(
            config.anycable_subject_name().unwrap().to_owned(),
            br#"{"stream":"chat:lobby","data":"{\"anycable\":true}"}"#
                .to_vec()
                .into(),
        )
        .await
        .unwrap();
    anycable.flush().await.unwrap();
    let (m1, p1) = next(&mut c, STREAM).await;
    assert_eq!(m1["n"], 1);
    let (live, none) = next(&mut c, STREAM).await;
    assert_eq!((live, none), (json!({ "anycable": true }), None));

    let over = format!("\"{}\"", "x".repeat(1024 * 1024));
    let err = a
        .handle
        .broadcast_json(STREAM, &over)
        .await
        .expect_err("too large to keep");
    let BroadcastError::PubSub(PubSubError::Backend(source)) = &err else {
        panic!("a backend error, not {err:?}");
    };
    assert!(
        matches!(
            source.downcast_ref::<NatsError>(),
            Some(NatsError::PayloadTooLarge { .. })
        ),
        "{source}"
    );
    speak(&a, STREAM, 2).await;
    let (m2, p2) = next(&mut c, STREAM).await;
    assert_eq!(m2["n"], 2);
    let ((e1, o1), (e2, o2)) = (p1.unwrap(), p2.unwrap());
    assert_eq!(e1, e2);
    assert!(o2 > o1);
    c.expect_silence(SILENCE).await;
}

/// With file storage, the history and its positions outlive a restart of the server: a client
/// that was away across the restart gets what it missed from either node, and the chain goes
/// on in the same epoch. During the outage kept broadcasts fail like plain ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn positions_survive_a_restart_of_a_server_with_file_storage() {
    let mut server = NatsServer::start_jetstream();
    let config = config_for(&server.url()).history_storage(HistoryStorage::File);
    let s = HistorySettings::default();
    let (a, pa) = history_node(&config, s).await;
    let (b, pb) = history_node(&config, s).await;
    let mut on_a = ext_client(&a, STREAM).await;
    let mut at = Vec::new();
    for n in 1..=3 {
        speak(&a, STREAM, n).await;
        let (m, p) = next(&mut on_a, STREAM).await;
        assert_eq!(m["n"].as_u64(), Some(n));
        at.push(p.expect("a position"));
    }
    let epoch = at[0].0.clone();

    server.kill();
    eventually("both adapters to notice the outage", || {
        !pa.is_connected() && !pb.is_connected()
    })
    .await;
    let result = b.handle.broadcast(STREAM, &json!({ "n": 0 })).await;
    assert!(
        matches!(
            result,
            Err(BroadcastError::PubSub(PubSubError::Unavailable(_)))
        ),
        "{result:?}"
    );
    server.restart();
    connected(&pa).await;
    connected(&pb).await;

    // The chain goes on in its epoch, from either node.
    speak(&b, STREAM, 4).await;
    let (m, p) = next(&mut on_a, STREAM).await;
    assert_eq!(m["n"].as_u64(), Some(4));
    let (e4, o4) = p.expect("a position");
    assert_eq!(e4, epoch, "the same epoch after the restart");
    assert!(o4 > at[2].1);
    // A client that saw only 1 comes back on node B and gets 2, 3 and 4.
    replay_from(&b, &epoch, at[0].1, &[(2, at[1].1), (3, at[2].1), (4, o4)]).await;
}

/// What keeping a broadcast costs through JetStream: a kept broadcast (a JetStream publish
/// with its acknowledgement) against a plain one (a transient broadcast on the same node: a
/// core `PUB` and a flush), one at a time and 64 in flight. A measurement, not a check:
/// `cargo test -p actioncable-nats --release --test it -- --ignored --nocapture
/// kept_broadcast_cost`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a measurement; run it on a quiet machine"]
async fn kept_broadcast_cost_against_a_plain_publish() {
    let config = shared_config();
    let _cleanup = DropStream {
        name: config.history_stream_name(),
    };
    let s = HistorySettings::default();
    let (a, _) = history_node(&config, s).await;
    let _listener = ext_client(&a, STREAM).await;
    kept_broadcast_cost(&a, STREAM, ("kept (JetStream)", "plain (core NATS)")).await;
}
