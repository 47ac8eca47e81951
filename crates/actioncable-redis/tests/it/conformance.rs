//! The `PubSub` contract, checked through the public API only: a real `Cable` on the adapter
//! and real WebSocket clients. The same suite runs against `MemoryPubSub` (the reference) and
//! `RedisPubSub` on its own `redis-server`; the Redis run adds checks on Redis' own view
//! (`PUBSUB NUMSUB`, `CLIENT LIST`) where the memory adapter has nothing to show.

use crate::support::*;
use actioncable::{MemoryPubSub, PubSub};
use actioncable_redis::{RedisConfig, RedisPubSub};
use serde_json::json;
use std::sync::Arc;

/// What the suite runs against.
enum Backend {
    Memory,
    Redis(RedisServer),
}

impl Backend {
    fn memory() -> Backend {
        Backend::Memory
    }

    fn redis() -> Backend {
        Backend::Redis(RedisServer::start())
    }

    /// A fresh adapter (one per node).
    fn adapter(&self) -> Arc<dyn PubSub> {
        match self {
            Backend::Memory => Arc::new(MemoryPubSub::new()),
            Backend::Redis(server) => Arc::new(RedisPubSub::new(
                RedisConfig::from_url(&server.url()).expect("a valid URL"),
            )),
        }
    }

    async fn node(&self) -> Node {
        stream_node(self.adapter()).await
    }

    /// Redis' count of subscribers of `channel`, or `None` without Redis.
    fn numsub(&self, channel: &str) -> Option<usize> {
        match self {
            Backend::Memory => None,
            Backend::Redis(server) => Some(numsub(server.port, channel)),
        }
    }

    /// Waits until Redis counts `n` subscribers of `channel` (no-op without Redis).
    async fn expect_numsub(&self, channel: &str, n: usize) {
        if let Backend::Redis(server) = self {
            let port = server.port;
            eventually(&format!("PUBSUB NUMSUB {channel} = {n}"), || {
                numsub(port, channel) == n
            })
            .await;
        }
    }
}

async fn subscribe_then_publish_is_delivered(backend: Backend) {
    let node = backend.node().await;
    let mut client = node.client().await;
    client.subscribe_stream("chat:lobby").await;
    assert_eq!(backend.numsub("chat:lobby").unwrap_or(1), 1);
    node.handle
        .broadcast("chat:lobby", &json!({ "text": "hi" }))
        .await
        .expect("broadcast accepted");
    assert_eq!(
        client.stream_message("chat:lobby").await,
        json!({ "text": "hi" })
    );
    // Exactly once.
    client.expect_silence(SILENCE).await;
}

async fn unsubscribe_stops_delivery(backend: Backend) {
    let node = backend.node().await;
    let mut leaver = node.client().await;
    let mut stayer = node.client().await;
    leaver.subscribe_stream("room:a").await;
    leaver.subscribe_stream("room:b").await;
    stayer.subscribe_stream("room:b").await;

    leaver.unsubscribe_stream("room:a").await;
    leaver.sync().await;
    // The stream's last local subscriber left: the adapter unsubscribed it.
    backend.expect_numsub("room:a", 0).await;
    node.handle.broadcast("room:a", &json!(1)).await.unwrap();
    node.handle.broadcast("room:b", &json!(2)).await.unwrap();
    assert_eq!(leaver.stream_message("room:b").await, json!(2));
    assert_eq!(stayer.stream_message("room:b").await, json!(2));
    leaver.expect_silence(SILENCE).await;

    // Still one local subscriber of room:b after the leaver goes: it stays subscribed.
    leaver.unsubscribe_stream("room:b").await;
    leaver.sync().await;
    node.handle.broadcast("room:b", &json!(3)).await.unwrap();
    assert_eq!(stayer.stream_message("room:b").await, json!(3));
    leaver.expect_silence(SILENCE).await;
    assert_eq!(backend.numsub("room:b").unwrap_or(1), 1);

    // Subscribing again after unsubscribing works.
    leaver.subscribe_stream("room:a").await;
    node.handle.broadcast("room:a", &json!(4)).await.unwrap();
    assert_eq!(leaver.stream_message("room:a").await, json!(4));
}

async fn publish_without_subscribers_is_ok(backend: Backend) {
    let node = backend.node().await;
    node.handle
        .broadcast("nobody:listens", &json!({ "x": 1 }))
        .await
        .expect("a broadcast nobody listens to is accepted");
    node.handle
        .broadcast_json("nobody:listens", "[1,2,3]")
        .await
        .expect("any JSON document is accepted");
}

async fn many_streams_share_one_connection(backend: Backend) {
    const STREAMS: usize = 60;
    let node = backend.node().await;
    let mut a = node.client().await;
    let mut b = node.client().await;
    for i in 0..STREAMS {
        let stream = format!("multi:{i}");
        if i % 2 == 0 {
            a.subscribe_stream(&stream).await;
        } else {
            b.subscribe_stream(&stream).await;
        }
    }
    for i in 0..STREAMS {
        node.handle
            .broadcast(&format!("multi:{i}"), &json!({ "n": i }))
            .await
            .unwrap();
    }
    for i in 0..STREAMS {
        let stream = format!("multi:{i}");
        let client = if i % 2 == 0 { &mut a } else { &mut b };
        assert_eq!(client.stream_message(&stream).await, json!({ "n": i }));
    }
    a.expect_silence(SILENCE).await;
    b.expect_silence(SILENCE).await;
    if let Backend::Redis(server) = &backend {
        // One subscriber connection holds every stream plus `_action_cable_internal`,
        // `_action_cable_trace` (sampled publish times) and `_action_cable_presence` (presence
        // events of every stream).
        let subscribed: Vec<usize> = clients(server.port)
            .into_iter()
            .map(|(_, sub)| sub)
            .filter(|sub| *sub > 0)
            .collect();
        assert_eq!(subscribed, vec![STREAMS + 3]);
    }
}

async fn publish_right_after_subscribe_returns_is_delivered(backend: Backend) {
    let node = backend.node().await;
    let mut client = node.client().await;
    for i in 0..100 {
        let stream = format!("live:{i}");
        // The channel broadcasts as soon as `stream_from` (the adapter's `subscribe`)
        // returned; the message must arrive.
        client.subscribe_hello(&stream).await;
        assert_eq!(
            client.stream_message(&stream).await,
            json!({ "hello": stream }),
            "iteration {i}"
        );
        // And a broadcast right after the client saw the confirmation.
        node.handle.broadcast(&stream, &json!(i)).await.unwrap();
        assert_eq!(
            client.stream_message(&stream).await,
            json!(i),
            "iteration {i}"
        );
        client.unsubscribe_hello(&stream).await;
    }
    client.expect_silence(SILENCE).await;
}

async fn every_node_receives_and_each_subscriber_once(backend: Backend) {
    // With the memory adapter "nodes" are separate processes' worth of state, so only the
    // local node is checked; Redis connects them.
    let a = backend.node().await;
    let mut on_a = a.client().await;
    let mut on_a2 = a.client().await;
    on_a.subscribe_stream("fan:out").await;
    on_a2.subscribe_stream("fan:out").await;
    a.handle.broadcast("fan:out", &json!("x")).await.unwrap();
    assert_eq!(on_a.stream_message("fan:out").await, json!("x"));
    assert_eq!(on_a2.stream_message("fan:out").await, json!("x"));
    on_a.expect_silence(SILENCE).await;
    on_a2.expect_silence(SILENCE).await;
    if matches!(backend, Backend::Redis(_)) {
        let b = backend.node().await;
        let mut on_b = b.client().await;
        on_b.subscribe_stream("fan:out").await;
        a.handle.broadcast("fan:out", &json!("y")).await.unwrap();
        assert_eq!(on_b.stream_message("fan:out").await, json!("y"));
        assert_eq!(on_a.stream_message("fan:out").await, json!("y"));
        assert_eq!(on_a2.stream_message("fan:out").await, json!("y"));
        on_b.expect_silence(SILENCE).await;
    }
}

macro_rules! conformance {
    ($backend:ident) => {
        mod $backend {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn subscribe_then_publish_is_delivered() {
                super::subscribe_then_publish_is_delivered(Backend::$backend()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn unsubscribe_stops_delivery() {
                super::unsubscribe_stops_delivery(Backend::$backend()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn publish_without_subscribers_is_ok() {
                super::publish_without_subscribers_is_ok(Backend::$backend()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn many_streams_share_one_connection() {
                super::many_streams_share_one_connection(Backend::$backend()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn publish_right_after_subscribe_returns_is_delivered() {
                super::publish_right_after_subscribe_returns_is_delivered(Backend::$backend())
                    .await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn every_node_receives_and_each_subscriber_once() {
                super::every_node_receives_and_each_subscriber_once(Backend::$backend()).await;
            }
        }
    };
}

conformance!(memory);
conformance!(redis);
