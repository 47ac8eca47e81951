//! Stream history kept in Redis: positions agree on every node sharing the Redis, a client's
//! history request is served by any node, the limit and the TTL give what the memory store
//! gives, Rails' plain `PUBLISH`es stay live-only, and a position note is never paired with
//! another message's payload.

use crate::support::*;
/// What `@anycable/core` offers.
const EXT_PROTOCOL: &str = "actioncable-v1-ext-json";
use actioncable::pubsub::{History, HistorySettings, Kept, PubSub};
use actioncable::{AllowedOrigins, Cable};
use actioncable_redis::{RedisConfig, RedisPubSub};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

const STREAM: &str = "chat:lobby";

fn settings(limit: usize, ttl: Duration) -> HistorySettings {
    HistorySettings::new(limit, ttl)
}

/// A node keeping history in `redis` with `settings`, and its adapter.
async fn history_node(redis: &RedisServer, settings: HistorySettings) -> (Node, RedisPubSub) {
    let pubsub = RedisPubSub::new(
        RedisConfig::from_url(&redis.url())
            .expect("a valid URL")
            .channel_prefix(Some("app".into())),
    );
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
    (node, pubsub)
}

/// The history the node's cable keeps (another handle on it).
fn history_of(pubsub: &RedisPubSub, settings: HistorySettings) -> Arc<dyn History> {
    pubsub.history(&settings).expect("the same settings")
}

/// An extended-protocol client subscribed to [`STREAM`].
async fn ext_client(node: &Node) -> CableClient {
    let mut c = CableClient::welcomed(node.addr, Connect::new().protocols(EXT_PROTOCOL)).await;
    assert_eq!(c.protocol.as_deref(), Some(EXT_PROTOCOL));
    c.send_json(&json!({ "command": "subscribe", "identifier": identifier(STREAM) }))
        .await;
    c.expect_confirm(&identifier(STREAM)).await;
    c
}

/// The next message frame: its message, epoch and offset (`None` for a live-only one).
async fn next(c: &mut CableClient) -> (Value, Option<(String, u64)>) {
    let frame = c.recv_json().await;
    assert_eq!(frame["identifier"], identifier(STREAM), "{frame}");
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

async fn speak(node: &Node, n: u64) {
    node.handle
        .broadcast(STREAM, &json!({ "n": n }))
        .await
        .expect("a kept broadcast");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_agree_across_nodes_and_either_node_serves_the_history() {
    let redis = RedisServer::start();
    let s = HistorySettings::default();
    let (a, _) = history_node(&redis, s).await;
    let (b, _) = history_node(&redis, s).await;
    let mut on_a = ext_client(&a).await;
    let mut on_b = ext_client(&b).await;
    for n in 1..=6 {
        speak(if n % 2 == 0 { &b } else { &a }, n).await;
    }
    let mut epoch = None;
    for n in 1..=6 {
        let (ma, pa) = next(&mut on_a).await;
        let (mb, pb) = next(&mut on_b).await;
        assert_eq!((ma["n"].as_u64(), mb["n"].as_u64()), (Some(n), Some(n)));
        assert_eq!(pa, pb, "both nodes deliver message {n} at one position");
        let (e, offset) = pa.expect("a kept message has a position");
        assert_eq!(offset, n);
        assert_eq!(epoch.get_or_insert(e.clone()), &e);
    }
    let epoch = epoch.unwrap();
    // A client that saw 1 and 2 on node A comes back on node B.
    let mut back = CableClient::welcomed(b.addr, Connect::new().protocols(EXT_PROTOCOL)).await;
    back.send_json(
        &json!({ "command": "subscribe", "identifier": identifier(STREAM),
        "history": { "streams": { STREAM: { "epoch": epoch, "offset": 2 } } } }),
    )
    .await;
    back.expect_confirm(&identifier(STREAM)).await;
    for n in 3..=6 {
        let (m, p) = next(&mut back).await;
        assert_eq!((m["n"].as_u64(), p), (Some(n), Some((epoch.clone(), n))));
    }
    back.expect_frame(&format!(
        r#"{{"identifier":{},"type":"confirm_history"}}"#,
        serde_json::to_string(&identifier(STREAM)).unwrap()
    ))
    .await;
    // Then live, from either node, once.
    speak(&a, 7).await;
    let (m, p) = next(&mut back).await;
    assert_eq!((m["n"].as_u64(), p), (Some(7), Some((epoch, 7))));
    back.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limit_evicts_as_the_memory_store_does() {
    let redis = RedisServer::start();
    let s = settings(3, Duration::from_secs(300));
    let (a, pa) = history_node(&redis, s).await;
    let (_b, pb) = history_node(&redis, s).await;
    for n in 1..=5 {
        speak(&a, n).await;
    }
    let h = history_of(&pb, s);
    let epoch = h.since(STREAM, 0).await.unwrap()[0].position.epoch.clone();
    assert_eq!(offsets(&h.since(STREAM, 0).await.unwrap()), vec![3, 4, 5]);
    // 3, 4, 5 are kept: a client at 2 misses only kept ones; one at 1 missed 2 for good.
    let at2 = h.after(STREAM, &epoch, 2).await.unwrap().unwrap();
    assert_eq!(offsets(&at2), vec![3, 4, 5]);
    assert_eq!(&*at2[0].payload, r#"{"n":3}"#, "the payload as published");
    assert!(h.after(STREAM, &epoch, 1).await.unwrap().is_none());
    assert!(
        h.after(STREAM, &epoch, 5)
            .await
            .unwrap()
            .unwrap()
            .is_empty()
    );
    assert!(
        h.after(STREAM, &epoch, 6).await.unwrap().is_none(),
        "never given"
    );
    assert!(h.after(STREAM, "other", 4).await.unwrap().is_none());
    assert!(h.after("nope", &epoch, 0).await.unwrap().is_none());
    assert!(h.since("nope", 0).await.unwrap().is_empty());
    // Both nodes read the same log.
    let ha = history_of(&pa, s);
    assert_eq!(
        offsets(&ha.after(STREAM, &epoch, 3).await.unwrap().unwrap()),
        vec![4, 5]
    );
    let len = redis.cli(&["XLEN", "_action_cable_history:app:chat:lobby:log"]);
    assert_eq!(len.trim(), "3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_expire_after_the_ttl_and_an_expired_stream_gets_a_new_epoch() {
    let redis = RedisServer::start();
    let s = settings(100, Duration::from_millis(1500));
    let (a, pa) = history_node(&redis, s).await;
    let h = history_of(&pa, s);
    speak(&a, 1).await;
    let first = h.since(STREAM, 0).await.unwrap()[0].position.clone();
    tokio::time::sleep(Duration::from_millis(900)).await;
    speak(&a, 2).await;
    tokio::time::sleep(Duration::from_millis(900)).await;
    // 1 expired, 2 has not.
    assert!(h.after(STREAM, &first.epoch, 0).await.unwrap().is_none());
    let after1 = h.after(STREAM, &first.epoch, 1).await.unwrap().unwrap();
    assert_eq!(offsets(&after1), vec![2]);
    assert_eq!(offsets(&h.since(STREAM, 0).await.unwrap()), vec![2]);
    let ttl: i64 = redis
        .cli(&["PTTL", "_action_cable_history:app:chat:lobby:meta"])
        .trim()
        .parse()
        .unwrap();
    assert!(
        ttl > 0 && ttl <= 1500,
        "the TTL is refreshed on write: {ttl}"
    );
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(h.since(STREAM, 0).await.unwrap().is_empty());
    assert!(h.after(STREAM, &first.epoch, 2).await.unwrap().is_none());
    // The keys are gone with the last message; the stream starts a new epoch.
    assert_eq!(
        redis
            .cli(&["EXISTS", "_action_cable_history:app:chat:lobby:meta"])
            .trim(),
        "0"
    );
    let again = h.publish(STREAM, r#"{"n":3}"#).await.unwrap();
    assert_eq!(again.offset, 1);
    assert_ne!(again.epoch, first.epoch);
    assert!(h.after(STREAM, &first.epoch, 2).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rails_publish_is_live_only_and_does_not_move_offsets() {
    let redis = RedisServer::start();
    let s = HistorySettings::default();
    let (a, _) = history_node(&redis, s).await;
    let mut c = ext_client(&a).await;
    speak(&a, 1).await;
    // What Rails' Redis adapter does for `ActionCable.server.broadcast`.
    assert_eq!(
        redis
            .cli(&["PUBLISH", "app:chat:lobby", r#"{"rails":true}"#])
            .trim(),
        "1"
    );
    speak(&a, 2).await;
    let (m1, p1) = next(&mut c).await;
    let (rails, none) = next(&mut c).await;
    let (m2, p2) = next(&mut c).await;
    assert_eq!(m1["n"], 1);
    assert_eq!((rails, none), (json!({ "rails": true }), None));
    assert_eq!(m2["n"], 2);
    let (e1, o1) = p1.unwrap();
    assert_eq!(p2, Some((e1, o1 + 1)), "the Rails message took no offset");
    // What Rails nodes see on the stream's channel is the payload, unchanged.
    let mut rails_node = CliSubscriber::start(redis.port, "app:chat:lobby");
    speak(&a, 3).await;
    assert_eq!(
        rails_node.message(),
        ("app:chat:lobby".to_owned(), r#"{"n":3}"#.to_owned())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_publishers_on_two_nodes_never_mispair_notes_and_payloads() {
    let redis = RedisServer::start();
    let s = settings(1000, Duration::from_secs(300));
    let (a, pa) = history_node(&redis, s).await;
    let (b, _) = history_node(&redis, s).await;
    let mut on_a = ext_client(&a).await;
    let mut on_b = ext_client(&b).await;
    const EACH: u64 = 200;
    let rails_port = redis.port;
    let mut publishers = Vec::new();
    for (name, handle) in [("a", a.handle.clone()), ("b", b.handle.clone())] {
        publishers.push(tokio::spawn(async move {
            for n in 0..EACH {
                handle
                    .broadcast(STREAM, &json!({ "from": name, "n": n }))
                    .await
                    .unwrap();
            }
        }));
    }
    // A Rails publisher in between.
    let rails = tokio::task::spawn_blocking(move || {
        for n in 0..20 {
            cli(
                rails_port,
                &["PUBLISH", "app:chat:lobby", &format!(r#"{{"rails":{n}}}"#)],
            );
        }
    });
    for p in publishers {
        p.await.unwrap();
    }
    rails.await.unwrap();
    let h = history_of(&pa, s);
    let kept = h.since(STREAM, 0).await.unwrap();
    assert_eq!(kept.len() as u64, 2 * EACH);
    let by_offset: HashMap<u64, Value> = kept
        .iter()
        .map(|k| (k.position.offset, serde_json::from_str(&k.payload).unwrap()))
        .collect();
    let epoch = kept[0].position.epoch.to_string();
    for c in [&mut on_a, &mut on_b] {
        let (mut positioned, mut live, mut last) = (0, 0, 0);
        while positioned + live < 2 * EACH + 20 {
            let (m, p) = next(c).await;
            match p {
                Some((e, offset)) => {
                    assert_eq!(e, epoch);
                    assert_eq!(by_offset[&offset], m, "payload at offset {offset}");
                    assert!(offset > last, "in position order");
                    last = offset;
                    positioned += 1;
                }
                None => {
                    assert!(
                        m["rails"].is_number(),
                        "only Rails' messages are live-only: {m}"
                    );
                    live += 1;
                }
            }
        }
        assert_eq!((positioned, live), (2 * EACH, 20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_history_fails_instead_of_losing_messages() {
    let mut redis = RedisServer::start();
    let s = HistorySettings::default();
    let (a, pa) = history_node(&redis, s).await;
    let mut c = ext_client(&a).await;
    speak(&a, 1).await;
    let (_, position) = next(&mut c).await;
    let (epoch, _) = position.unwrap();
    let h = history_of(&pa, s);
    redis.kill();
    // The client asks for what followed 0: the history cannot be read, and it is told so.
    c.send_json(
        &json!({ "command": "history", "identifier": identifier(STREAM),
        "history": { "streams": { STREAM: { "epoch": epoch, "offset": 0 } } } }),
    )
    .await;
    c.expect_frame(&format!(
        r#"{{"identifier":{},"type":"reject_history"}}"#,
        serde_json::to_string(&identifier(STREAM)).unwrap()
    ))
    .await;
    assert!(h.publish(STREAM, "{}").await.is_err());
    assert!(h.after(STREAM, "e", 0).await.is_err());
    assert!(h.since(STREAM, 0).await.is_err());
    assert!(
        a.handle
            .broadcast(STREAM, &json!({ "n": 2 }))
            .await
            .is_err(),
        "a kept broadcast reports the failure"
    );
    // Other settings on a running adapter are refused.
    assert!(pa.history(&settings(1, Duration::from_secs(1))).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_redis_restart_the_resubscribed_streams_get_positions_in_a_new_epoch() {
    let mut redis = RedisServer::start();
    let s = HistorySettings::default();
    let (a, _) = history_node(&redis, s).await;
    let (b, _) = history_node(&redis, s).await;
    let mut on_a = ext_client(&a).await;
    speak(&b, 1).await;
    let (_, before) = next(&mut on_a).await;
    let (old_epoch, _) = before.unwrap();
    redis.kill();
    redis.restart();
    // Until both nodes are back, broadcasts fail or go unheard (Redis pub/sub keeps nothing).
    let deadline = tokio::time::Instant::now() + WAIT;
    let heard = |v: &Value| v["identifier"] == identifier(STREAM) && v.get("message").is_some();
    let first = loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no delivery after the restart"
        );
        if b.handle
            .broadcast(STREAM, &json!({ "n": 2 }))
            .await
            .is_err()
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        if let Some(frame) = on_a
            .take_json("probe", Duration::from_millis(300), heard)
            .await
        {
            break frame;
        }
    };
    let epoch = first["epoch"]
        .as_str()
        .expect("a position again")
        .to_owned();
    assert_ne!(epoch, old_epoch, "Redis lost the keys: a new epoch");
    let mut last = first["offset"].as_u64().unwrap();
    // Late probes, then 3: every one at the next offset of the new epoch.
    speak(&a, 3).await;
    loop {
        let (m, p) = next(&mut on_a).await;
        last += 1;
        assert_eq!(p, Some((epoch.clone(), last)), "{m}");
        if m["n"] == 3 {
            break;
        }
    }
}

/// What keeping a broadcast costs through Redis: the history script against a plain `PUBLISH`
/// (a transient broadcast on the same node), one at a time and 64 in flight. A measurement,
/// not a check: `cargo test -p actioncable-redis --release --test it -- --ignored --nocapture
/// kept_broadcast_cost`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a measurement; run it on a quiet machine"]
async fn kept_broadcast_cost_against_a_plain_publish() {
    let redis = RedisServer::start();
    let s = HistorySettings::default();
    let (a, _) = history_node(&redis, s).await;
    let _listener = ext_client(&a).await;
    kept_broadcast_cost(&a, STREAM, ("kept (script)", "plain PUBLISH")).await;
}
