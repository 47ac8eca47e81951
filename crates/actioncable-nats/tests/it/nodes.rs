//! Core NATS between our nodes, on the shared server: broadcasts both ways between two nodes,
//! stream names NATS subjects cannot hold, the 1 MiB limit, the subscribe contract, what
//! other programs see and send on a stream's subject, traced broadcasts, remote disconnects.

use crate::support::*;
use actioncable::{
    AllowedOrigins, BroadcastError, Cable, ConnectRequest, Connection, Identity, PubSubError,
    Reject, async_trait,
};
use actioncable_nats::{NatsError, NatsPubSub};
use futures_util::StreamExt as _;
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_exchange_broadcasts_on_streams_of_any_name() {
    let config = shared_config();
    let a = node(&NatsPubSub::new(config.clone())).await;
    let b = node(&NatsPubSub::new(config)).await;
    let mut on_a = a.client().await;
    let mut on_b = b.client().await;
    let long = format!("{}:end", "ü".repeat(148));
    assert_eq!(long.len(), 300);
    let names = [
        "chat:lobby",
        "a room with spaces",
        "dots.in.the.name",
        "stars * and > arrows",
        "*",
        ">",
        "",
        "日本語のチャット 🎉",
        "tab\there",
        "100%",
        long.as_str(),
    ];
    for name in names {
        on_a.subscribe_stream(name).await;
        on_b.subscribe_stream(name).await;
    }
    for (i, name) in names.iter().enumerate() {
        a.handle
            .broadcast(name, &json!({ "from": "a", "i": i }))
            .await
            .expect("accepted");
        b.handle
            .broadcast(name, &json!({ "from": "b", "i": i }))
            .await
            .expect("accepted");
    }
    for (i, name) in names.iter().enumerate() {
        for client in [&mut on_a, &mut on_b] {
            // Each node's own broadcast and the other's, each once: which first is a race.
            let mut got = [
                client.stream_message(name).await,
                client.stream_message(name).await,
            ];
            got.sort_by_key(|m| m["from"].as_str().map(str::to_owned));
            assert_eq!(
                got,
                [
                    json!({ "from": "a", "i": i }),
                    json!({ "from": "b", "i": i })
                ],
                "stream {name:?}"
            );
        }
    }
    on_a.expect_silence(SILENCE).await;
    on_b.expect_silence(SILENCE).await;
}

/// NATS' default `max_payload` is 1 MiB, headers included: a broadcast that fits goes through
/// to the other node, one byte more is refused with a clear error before anything is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_up_to_max_payload_arrives_and_a_larger_one_is_refused() {
    let config = shared_config();
    let a = node(&NatsPubSub::new(config.clone())).await;
    let b = node(&NatsPubSub::new(config)).await;
    let mut on_b = b.client().await;
    on_b.subscribe_stream("big").await;
    const MIB: usize = 1024 * 1024;
    // A JSON string of exactly 1 MiB: quotes and 1 MiB - 2 letters.
    let exact = format!("\"{}\"", "x".repeat(MIB - 2));
    a.handle
        .broadcast_json("big", &exact)
        .await
        .expect("1 MiB fits");
    let got = on_b.stream_message("big").await;
    assert_eq!(got.as_str().map(str::len), Some(MIB - 2));

    let over = format!("\"{}\"", "x".repeat(MIB - 1));
    let err = a
        .handle
        .broadcast_json("big", &over)
        .await
        .expect_err("1 MiB + 1 does not fit");
    let BroadcastError::PubSub(PubSubError::Backend(source)) = &err else {
        panic!("a backend error, not {err:?}");
    };
    assert!(
        matches!(
            source.downcast_ref::<NatsError>(),
            Some(NatsError::PayloadTooLarge {
                size,
                max: MIB
            }) if *size == MIB + 1
        ),
        "{source}"
    );
    assert!(err.to_string().contains("max_payload"), "{err}");
    on_b.expect_silence(SILENCE).await;
    // The connection is fine afterwards.
    a.handle.broadcast("big", &json!("small")).await.unwrap();
    assert_eq!(on_b.stream_message("big").await, json!("small"));
}

/// The adapter contract: a broadcast made as soon as `subscribe` returned reaches the new
/// subscriber, on the node that subscribed and from the other one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_right_after_subscribe_returns_is_delivered() {
    let config = shared_config();
    let a = node(&NatsPubSub::new(config.clone())).await;
    let b = node(&NatsPubSub::new(config)).await;
    let mut client = a.client().await;
    for i in 0..40 {
        let stream = format!("live:{i}");
        // The channel broadcasts once `stream_from` (the adapter's `subscribe`) returned.
        client.subscribe_hello(&stream).await;
        assert_eq!(
            client.stream_message(&stream).await,
            json!({ "hello": stream })
        );
        // And another node broadcasts right after the client saw the confirmation.
        b.handle.broadcast(&stream, &json!(i)).await.unwrap();
        assert_eq!(client.stream_message(&stream).await, json!(i));
        client.unsubscribe_hello(&stream).await;
    }
    client.expect_silence(SILENCE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribing_the_last_subscriber_stops_delivery() {
    let config = shared_config();
    let pubsub = NatsPubSub::new(config.clone());
    let a = node(&pubsub).await;
    let b = node(&NatsPubSub::new(config.clone())).await;
    let mut leaver = a.client().await;
    let mut stayer = a.client().await;
    leaver.subscribe_stream("room:a").await;
    leaver.subscribe_stream("room:b").await;
    stayer.subscribe_stream("room:b").await;
    leaver.unsubscribe_stream("room:a").await;
    leaver.sync().await;
    // Nothing of room:a reaches node a any more: a raw subscriber on the subject gets the
    // broadcast, the node's clients nothing.
    let raw = raw_client(SHARED_URL).await;
    let mut watcher = raw_subscribe(&raw, config.subject("room:a")).await;
    b.handle.broadcast("room:a", &json!(1)).await.unwrap();
    b.handle.broadcast("room:b", &json!(2)).await.unwrap();
    let seen = within("the raw subscriber's message", watcher.next())
        .await
        .expect("a message");
    assert_eq!(&seen.payload[..], b"1");
    assert_eq!(leaver.stream_message("room:b").await, json!(2));
    assert_eq!(stayer.stream_message("room:b").await, json!(2));
    leaver.expect_silence(SILENCE).await;
    // Subscribing again works.
    leaver.subscribe_stream("room:a").await;
    b.handle.broadcast("room:a", &json!(3)).await.unwrap();
    assert_eq!(leaver.stream_message("room:a").await, json!(3));
}

/// On a stream's subject the message is the broadcast's JSON text itself: another program
/// publishing JSON there reaches every node's subscribers, and a raw subscriber sees exactly
/// what we broadcast. Text that is not JSON is dropped, as Rails drops it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_subject_a_broadcast_is_its_json_text() {
    let config = shared_config().channel_prefix(Some("app".into()));
    let a = node(&NatsPubSub::new(config.clone())).await;
    let mut client = a.client().await;
    client.subscribe_stream("chat lobby").await;
    let subject = config.subject("chat lobby");
    assert!(subject.ends_with(".app:chat%20lobby"), "{subject}");
    assert_eq!(config.stream_of(&subject).as_deref(), Some("chat lobby"));

    let raw = raw_client(SHARED_URL).await;
    let mut watcher = raw_subscribe(&raw, subject.clone()).await;
    a.handle
        .broadcast_json("chat lobby", r#"{"text":"hé","n":[1,2]}"#)
        .await
        .unwrap();
    let seen = within("the raw subscriber's message", watcher.next())
        .await
        .unwrap();
    assert_eq!(&seen.payload[..], r#"{"text":"hé","n":[1,2]}"#.as_bytes());
    assert!(
        seen.headers.is_none(),
        "an unsampled broadcast has no headers"
    );
    assert_eq!(
        client.stream_message("chat lobby").await,
        json!({ "text": "hé", "n": [1, 2] })
    );

    raw.publish(subject.clone(), "not json".into())
        .await
        .unwrap();
    raw.publish(subject.clone(), br#"{"from":"outside"}"#.as_slice().into())
        .await
        .unwrap();
    raw.flush().await.unwrap();
    assert_eq!(
        client.stream_message("chat lobby").await,
        json!({ "from": "outside" })
    );
    client.expect_silence(SILENCE).await;
}

/// Broadcast-to-socket latency across nodes: a sampled broadcast's publish time travels in a
/// header, so the node that writes it to its subscriber times it; the client's frame is
/// unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampled_broadcasts_are_timed_on_the_node_that_delivers_them() {
    let config = shared_config();
    let _cleanup = DropStream {
        name: config.history_stream_name(),
    };
    for history in [false, true] {
        let start = |pubsub: NatsPubSub| {
            spawn_cable(
                Cable::builder()
                    .channel::<StreamChannel>()
                    .pubsub(pubsub)
                    .history(history)
                    .metrics(true)
                    .metrics_sampling(1, 1)
                    .allowed_origins(AllowedOrigins::any()),
            )
        };
        let (pa, pb) = (
            NatsPubSub::new(config.clone()),
            NatsPubSub::new(config.clone()),
        );
        let a = start(pa.clone()).await;
        let b = start(pb.clone()).await;
        connected(&pa).await;
        connected(&pb).await;
        let mut client = b.client().await;
        client.subscribe_stream("chat:lobby").await;
        let count = |node: &CableServer| -> u64 {
            let text = node.handle.metrics().expect("metrics are on");
            text.lines()
                .find_map(|l| l.strip_prefix("actioncable_broadcast_latency_seconds_count "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or_else(|| panic!("no latency count in\n{text}"))
        };
        let before = count(&b);
        for i in 0..5 {
            a.handle
                .broadcast("chat:lobby", &json!({ "n": i }))
                .await
                .unwrap();
            assert_eq!(client.stream_message("chat:lobby").await, json!({ "n": i }));
        }
        eventually(
            &format!("node b to time the five deliveries (history {history})"),
            || count(&b) == before + 5,
        )
        .await;
        assert_eq!(count(&a), 0, "node a wrote nothing");
    }
}

/// Identity `current_user=<?user=>`.
#[derive(Debug)]
struct UserFromQuery;

#[async_trait]
impl Connection for UserFromQuery {
    async fn connect(&self, req: &ConnectRequest) -> Result<Identity, Reject> {
        let user = req.query("user").ok_or(Reject::Unauthorized)?;
        Ok(Identity::new("current_user", user))
    }
}

pub(crate) async fn user_node(pubsub: &NatsPubSub) -> CableServer {
    let node = spawn_cable(
        Cable::builder()
            .connection(UserFromQuery)
            .channel::<StreamChannel>()
            .pubsub(pubsub.clone())
            .allowed_origins(AllowedOrigins::any()),
    )
    .await;
    connected(pubsub).await;
    node
}

/// A welcomed client of `user`, subscribed to `stream`.
pub(crate) async fn user_client(node: &CableServer, user: &str, stream: &str) -> CableClient {
    let mut ws = CableClient::welcomed(
        node.addr,
        Connect::new().path(&format!("/cable?user={user}")),
    )
    .await;
    ws.subscribe_stream(stream).await;
    ws
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_disconnect_closes_an_identity_on_every_node() {
    let config = shared_config();
    let a = user_node(&NatsPubSub::new(config.clone())).await;
    let b = user_node(&NatsPubSub::new(config)).await;
    let mut alice_a = user_client(&a, "alice", "room").await;
    let mut alice_b = user_client(&b, "alice", "room").await;
    let mut bob_b = user_client(&b, "bob", "room").await;
    a.handle
        .remote_disconnect(&Identity::new("current_user", "alice"), false)
        .await
        .unwrap();
    for alice in [&mut alice_a, &mut alice_b] {
        alice.expect_disconnect("remote", false).await;
    }
    bob_b.expect_silence(SILENCE).await;
    a.handle
        .broadcast("room", &json!("still here"))
        .await
        .unwrap();
    assert_eq!(bob_b.stream_message("room").await, json!("still here"));
}

/// The cable's shutdown shuts the adapter down: its connection is drained and closed, and a
/// later broadcast fails with `Closed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_the_connection_and_later_broadcasts_fail() {
    let pubsub = NatsPubSub::new(shared_config());
    let node = node(&pubsub).await;
    assert!(node.handle.shutdown(Duration::from_secs(2)).await);
    assert!(!pubsub.is_connected());
    let result = node.handle.broadcast("s", &json!(1)).await;
    assert!(
        matches!(result, Err(BroadcastError::PubSub(PubSubError::Closed))),
        "{result:?}"
    );
}
