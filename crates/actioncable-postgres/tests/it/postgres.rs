//! The adapter against real PostgreSQL: two nodes exchanging broadcasts, Rails' channel
//! identifiers and payloads on the wire, large payloads, the server going away and coming
//! back, the contract's ordering guarantee, shutdown.

use crate::pg::{PgServer, RawListener, TestDb};
use crate::support::*;
use actioncable::{BroadcastError, PubSubError};
use actioncable_postgres::{PostgresConfig, PostgresPubSub};
use serde_json::{Value, json};
use sha1::{Digest as _, Sha1};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

fn config(url: &str) -> PostgresConfig {
    PostgresConfig::from_url(url).expect("a valid URL")
}

async fn node(pubsub: &PostgresPubSub) -> Node {
    stream_node(Arc::new(pubsub.clone())).await
}

fn sha1_hex(text: &str) -> String {
    Sha1::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_exchange_broadcasts_on_prefixed_channels() {
    let db = TestDb::create();
    let a = node(&PostgresPubSub::new(
        config(&db.url()).channel_prefix(Some("app".into())),
    ))
    .await;
    let b = node(&PostgresPubSub::new(
        config(&db.url()).channel_prefix(Some("app".into())),
    ))
    .await;
    let mut on_a = a.client().await;
    let mut on_b = b.client().await;
    on_b.subscribe_stream("chat:lobby").await;

    a.handle
        .broadcast("chat:lobby", &json!({ "from": "a" }))
        .await
        .unwrap();
    assert_eq!(
        on_b.stream_message("chat:lobby").await,
        json!({ "from": "a" })
    );

    on_a.subscribe_stream("chat:lobby").await;
    b.handle
        .broadcast("chat:lobby", &json!({ "from": "b" }))
        .await
        .unwrap();
    assert_eq!(
        on_a.stream_message("chat:lobby").await,
        json!({ "from": "b" })
    );
    assert_eq!(
        on_b.stream_message("chat:lobby").await,
        json!({ "from": "b" })
    );

    // What anyone NOTIFYs on the prefixed channel reaches us; other channels do not.
    db.psql(r#"NOTIFY "app:chat:lobby", '{"x":1}'"#);
    assert_eq!(on_a.stream_message("chat:lobby").await, json!({ "x": 1 }));
    assert_eq!(on_b.stream_message("chat:lobby").await, json!({ "x": 1 }));
    db.psql(r#"NOTIFY "chat:lobby", '{"x":2}'"#);
    db.psql(r#"NOTIFY "other:chat:lobby", '{"x":3}'"#);
    on_a.expect_silence(SILENCE).await;
    on_b.expect_silence(SILENCE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_names_quotes_and_unicode_use_rails_identifiers_and_exact_payloads() {
    let db = TestDb::create();
    let prefix = "app";
    let a = node(&PostgresPubSub::new(
        config(&db.url()).channel_prefix(Some(prefix.into())),
    ))
    .await;
    let b = node(&PostgresPubSub::new(
        config(&db.url()).channel_prefix(Some(prefix.into())),
    ))
    .await;
    let long = format!("chat:{}", "x".repeat(70));
    let multibyte = "é".repeat(30); // 34 characters with the prefix, 64 bytes
    let quoted = r#"say "hi", it's \ me"#.to_owned();
    let unicode = "Größe 🚀 日本".to_owned();
    let streams = [
        long.clone(),
        multibyte.clone(),
        quoted.clone(),
        unicode.clone(),
    ];
    let identifiers: Vec<String> = streams
        .iter()
        .map(|s| {
            let full = format!("{prefix}:{s}");
            if full.len() > 63 {
                sha1_hex(&full)
            } else {
                full
            }
        })
        .collect();
    assert_eq!(identifiers[0].len(), 40);
    assert_eq!(identifiers[1].len(), 40, "hashed by bytes, not characters");
    assert_eq!(identifiers[2], format!("{prefix}:{quoted}"));

    let mut client = b.client().await;
    for stream in &streams {
        client.subscribe_stream(stream).await;
    }
    let ids: Vec<&str> = identifiers.iter().map(String::as_str).collect();
    let mut raw = RawListener::start(&db.url(), &ids).await;

    for (stream, identifier) in streams.iter().zip(&identifiers) {
        let text = json!({
            "text": format!("it's \"quoted\" \\ {stream}"),
            "emoji": "🚀",
            "nested": { "a": [1, 2.5, null] },
        })
        .to_string();
        a.handle.broadcast_json(stream, &text).await.unwrap();
        // On the wire: the identifier Rails would use, and the JSON text byte for byte.
        assert_eq!(raw.next().await, (identifier.clone(), text.clone()));
        let expected: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(client.stream_message(stream).await, expected);
    }

    // A NOTIFY from anyone on the hashed identifier reaches the stream too.
    db.psql(&format!(r#"NOTIFY "{}", '"via psql"'"#, identifiers[0]));
    assert_eq!(client.stream_message(&long).await, json!("via psql"));
    client.expect_silence(SILENCE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1_mib_payload_arrives_intact_on_the_other_node() {
    let db = TestDb::create();
    let a = node(&PostgresPubSub::new(config(&db.url()))).await;
    let b = node(&PostgresPubSub::new(config(&db.url()))).await;
    let mut client = b.client().await;
    let mut local = a.client().await;
    client.subscribe_stream("big").await;
    local.subscribe_stream("big").await;
    let mut raw = RawListener::start(&db.url(), &["big"]).await;

    let body: String = "0123456789abcdef\"é🚀\\"
        .chars()
        .cycle()
        .take(1 << 20)
        .collect();
    let message = json!({ "body": body, "n": 1 });
    let text = message.to_string();
    assert!(text.len() > 1 << 20);
    a.handle.broadcast_json("big", &text).await.unwrap();
    assert_eq!(client.stream_message("big").await, message);
    assert_eq!(local.stream_message("big").await, message);

    // Others on the channel see only the reference; the row holds the payload.
    let (channel, reference) = raw.next().await;
    assert_eq!(channel, "big");
    let id = reference
        .strip_prefix("actioncable-postgres:large-payload:")
        .unwrap_or_else(|| panic!("not a reference: {reference:.100}"));
    let stored = db.psql(&format!(
        "SELECT channel, length(payload), octet_length(payload) FROM action_cable_large_payloads WHERE id = {id}"
    ));
    assert_eq!(
        stored,
        format!("big|{}|{}", text.chars().count(), text.len())
    );

    // Right at the limit a payload still goes inline; one byte more is stored.
    let inline = format!("\"{}\"", "x".repeat(7997));
    assert_eq!(inline.len(), 7999);
    a.handle.broadcast_json("big", &inline).await.unwrap();
    assert_eq!(raw.next().await.1, inline);
    let stored = format!("\"{}\"", "x".repeat(7998));
    a.handle.broadcast_json("big", &stored).await.unwrap();
    assert!(
        raw.next()
            .await
            .1
            .starts_with("actioncable-postgres:large-payload:")
    );
    // In order, on both nodes.
    for c in [&mut client, &mut local] {
        assert_eq!(c.stream_message("big").await, json!("x".repeat(7997)));
        assert_eq!(c.stream_message("big").await, json!("x".repeat(7998)));
        c.expect_silence(SILENCE).await;
    }
    drop(raw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_payloads_are_deleted_after_the_retention_and_order_is_kept() {
    let db = TestDb::create();
    let pubsub = PostgresPubSub::new(
        config(&db.url())
            .max_notify_payload(16)
            .unwrap()
            .large_payload_table("cable \"big\" rows")
            .unwrap()
            .large_payload_retention(Duration::from_secs(1)),
    );
    let node = node(&pubsub).await;
    let mut client = node.client().await;
    client.subscribe_stream("s").await;
    // Small and large messages alternate; the large ones take a read, and nothing overtakes.
    for i in 0..20 {
        let message = if i % 2 == 0 {
            json!(i)
        } else {
            json!({ "large": "y".repeat(40), "i": i })
        };
        node.handle.broadcast("s", &message).await.unwrap();
    }
    for i in 0..20 {
        let m = client.stream_message("s").await;
        if i % 2 == 0 {
            assert_eq!(m, json!(i));
        } else {
            assert_eq!(m["i"], json!(i), "{m}");
        }
    }
    let count = || db.psql(r#"SELECT count(*) FROM "cable ""big"" rows""#);
    assert_eq!(count(), "10");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    node.handle
        .broadcast("s", &json!({ "large": "z".repeat(40) }))
        .await
        .unwrap();
    assert_eq!(
        client.stream_message("s").await["large"],
        json!("z".repeat(40))
    );
    assert_eq!(count(), "1", "rows older than the retention are deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_and_restarted_clients_stay_and_delivery_resumes() {
    let mut server = PgServer::start();
    let pubsub = PostgresPubSub::new(
        config(&server.url())
            .subscribe_timeout(Duration::from_secs(1))
            .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(500)),
    );
    let node = node(&pubsub).await;
    let other = node_on(&server).await;
    let mut client = node.client().await;
    client.subscribe_stream("chat:lobby").await;
    client.subscribe_stream("chat:other").await;
    other
        .handle
        .broadcast("chat:lobby", &json!("before"))
        .await
        .unwrap();
    assert_eq!(client.stream_message("chat:lobby").await, json!("before"));
    eventually("both connections up", || pubsub.is_connected()).await;

    server.stop();

    // Broadcasts fail, quickly, instead of vanishing.
    for i in 0..3 {
        let started = Instant::now();
        let result = node
            .handle
            .broadcast("chat:lobby", &json!({ "lost": i }))
            .await;
        assert!(
            matches!(
                result,
                Err(BroadcastError::PubSub(PubSubError::Unavailable(_)))
            ),
            "broadcast {i} during the outage: {result:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "broadcast {i} took {:?}",
            started.elapsed()
        );
    }
    eventually("the adapter to notice the outage", || {
        !pubsub.is_connected()
    })
    .await;

    // A new stream cannot go live: the subscription is rejected after the subscribe timeout.
    let mut newcomer = node.client().await;
    assert_eq!(
        newcomer.take_subscribe(&identifier("chat:new")).await,
        SubscribeReply::Rejected
    );
    // The clients stay connected: nothing but pings, no disconnect.
    client.expect_silence(Duration::from_millis(500)).await;

    server.restart();

    // No client action: delivery resumes on the same sockets, also from the other node.
    until_delivered(&node, &mut client, "chat:lobby").await;
    eventually("both connections up again", || pubsub.is_connected()).await;
    for (stream, text) in [("chat:lobby", "after"), ("chat:other", "other")] {
        let deadline = Instant::now() + WAIT;
        while other.handle.broadcast(stream, &json!(text)).await.is_err() {
            assert!(
                Instant::now() < deadline,
                "the other node did not reconnect"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(client.stream_message(stream).await, json!(text));
    }
    client.expect_silence(SILENCE).await;
    // Both connections are back under the Rails name.
    let name = format!("ActionCable-PID-{}", std::process::id());
    let named = server.psql(&format!(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = '{name}'"
    ));
    assert_eq!(named, "4", "two connections for each of the two nodes");

    // And new streams work again, with the same client.
    newcomer.subscribe_stream("chat:new").await;
    node.handle
        .broadcast("chat:new", &json!("new"))
        .await
        .unwrap();
    assert_eq!(newcomer.stream_message("chat:new").await, json!("new"));
}

async fn node_on(server: &PgServer) -> Node {
    node(&PostgresPubSub::new(
        config(&server.url())
            .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(500)),
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_while_postgres_is_down_and_connects_when_it_comes_up() {
    let mut server = PgServer::start();
    server.stop();
    let pubsub = PostgresPubSub::new(
        config(&server.url())
            .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(500)),
    );
    let node = node(&pubsub).await;
    let started = Instant::now();
    assert!(node.handle.broadcast("s", &json!(1)).await.is_err());
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(!pubsub.is_connected());

    server.restart();
    let mut client = node.client().await;
    client.subscribe_stream("s").await;
    eventually("both connections up", || pubsub.is_connected()).await;
    node.handle.broadcast("s", &json!(2)).await.unwrap();
    assert_eq!(client.stream_message("s").await, json!(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_unsubscribe_and_publish_right_after_subscribe() {
    let db = TestDb::create();
    let node = node(&PostgresPubSub::new(config(&db.url()))).await;
    let mut client = node.client().await;
    for i in 0..50 {
        let stream = format!("live:{i}");
        // The channel broadcasts as soon as the adapter's `subscribe` returned.
        client.subscribe_hello(&stream).await;
        assert_eq!(
            client.stream_message(&stream).await,
            json!({ "hello": stream }),
            "iteration {i}"
        );
        node.handle.broadcast(&stream, &json!(i)).await.unwrap();
        assert_eq!(client.stream_message(&stream).await, json!(i));
        client.unsubscribe_hello(&stream).await;
    }
    // Unsubscribed streams get nothing (their UNLISTEN went out in order before this one).
    client.subscribe_stream("sync").await;
    node.handle
        .broadcast("live:3", &json!("late"))
        .await
        .unwrap();
    node.handle.broadcast("sync", &json!("ok")).await.unwrap();
    assert_eq!(client.stream_message("sync").await, json!("ok"));
    client.expect_silence(SILENCE).await;
    // A broadcast nobody listens to is accepted.
    node.handle.broadcast("nobody", &json!(1)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_named_and_shutdown_closes_them() {
    let db = TestDb::create();
    let pubsub = PostgresPubSub::new(config(&db.url()).id("cable-test-7"));
    let node = node(&pubsub).await;
    let named =
        || db.psql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'cable-test-7'");
    eventually("connected", || pubsub.is_connected()).await;
    assert_eq!(named(), "2");

    assert!(node.handle.shutdown(Duration::from_secs(2)).await);
    assert!(!pubsub.is_connected());
    eventually("no named connection left", || named() == "0").await;
    let result = node.handle.broadcast("s", &json!(1)).await;
    assert!(
        matches!(result, Err(BroadcastError::PubSub(PubSubError::Closed))),
        "{result:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_name_with_nul_is_refused_not_fatal() {
    let db = TestDb::create();
    let node = node(&PostgresPubSub::new(config(&db.url()))).await;
    let result = node.handle.broadcast("bad\0name", &json!(1)).await;
    assert!(
        matches!(result, Err(BroadcastError::PubSub(PubSubError::Backend(_)))),
        "{result:?}"
    );
    let mut client = node.client().await;
    assert_eq!(
        client.take_subscribe(&identifier("bad\0name")).await,
        SubscribeReply::Rejected
    );
    client.subscribe_stream("fine").await;
    node.handle.broadcast("fine", &json!(1)).await.unwrap();
    assert_eq!(client.stream_message("fine").await, json!(1));
}

/// Broadcast-to-socket latency across nodes: a sampled broadcast's publish time travels with
/// it through PostgreSQL (a notification on `_action_cable_trace` right before the payload's,
/// in one statement, for inline and stored payloads alike), so the node that writes it to its
/// subscriber times it. What everyone else on the channel sees is unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampled_broadcasts_are_timed_on_the_node_that_delivers_them() {
    let db = TestDb::create();
    let start = || {
        spawn_cable(
            actioncable::Cable::builder()
                .channel::<StreamChannel>()
                .pubsub(PostgresPubSub::new(
                    config(&db.url()).channel_prefix(Some("app".into())),
                ))
                .metrics(true)
                .metrics_sampling(1, 1)
                .allowed_origins(actioncable::AllowedOrigins::any()),
        )
    };
    let a = start().await;
    let b = start().await;
    let mut client = b.client().await;
    client.subscribe_stream("chat:lobby").await;
    until_delivered(&b, &mut client, "chat:lobby").await;
    let mut raw = RawListener::start(&db.url(), &["app:chat:lobby", "_action_cable_trace"]).await;
    let count = |node: &CableServer| -> u64 {
        let text = node.handle.metrics().expect("metrics are on");
        text.lines()
            .find_map(|l| l.strip_prefix("actioncable_broadcast_latency_seconds_count "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no latency count in\n{text}"))
    };
    let before = count(&b);
    let big = "x".repeat(10_000);
    let messages = [
        json!({ "n": 0 }),
        json!({ "n": 1, "big": big }),
        json!({ "n": 2 }),
    ];
    for message in &messages {
        a.handle.broadcast("chat:lobby", message).await.unwrap();
        assert_eq!(&client.stream_message("chat:lobby").await, message);
        // On the wire: the note names the prefixed channel, then comes the payload untouched.
        let (channel, note) = raw.next().await;
        assert_eq!(channel, "_action_cable_trace");
        let (nanos, noted) = note.split_once(' ').expect("a trace note");
        assert!(nanos.parse::<u64>().is_ok(), "{note}");
        assert_eq!(noted, "app:chat:lobby");
        let (channel, payload) = raw.next().await;
        assert_eq!(channel, "app:chat:lobby");
        if message.get("big").is_some() {
            assert!(payload.starts_with("actioncable-postgres:large-payload:"));
        } else {
            assert_eq!(serde_json::from_str::<Value>(&payload).unwrap(), *message);
        }
    }
    eventually("node b to time the three deliveries", || {
        count(&b) == before + 3
    })
    .await;
    assert_eq!(count(&a), 0, "node a wrote nothing");
    // A broadcast from outside (a Rails node) has no note: delivered, not timed.
    db.psql(r#"NOTIFY "app:chat:lobby", '{"rails":true}'"#);
    assert_eq!(
        client.stream_message("chat:lobby").await,
        json!({ "rails": true })
    );
    client.expect_silence(SILENCE).await;
    assert_eq!(count(&b), before + 3);
}
