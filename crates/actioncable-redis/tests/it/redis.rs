//! Redis-specific behaviour against real `redis-server` processes: several nodes, wire
//! compatibility with Rails (prefix, payload, client name, internal channel), Redis going
//! away and coming back, Sentinel, shutdown.

use crate::support::*;
use actioncable::{BroadcastError, PubSubError};
use actioncable_redis::{RedisConfig, RedisPubSub};
use serde_json::json;
use std::os::unix::ffi::OsStrExt as _;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

fn adapter(config: RedisConfig) -> RedisPubSub {
    RedisPubSub::new(config)
}

fn url_config(server: &RedisServer) -> RedisConfig {
    RedisConfig::from_url(&server.url()).expect("a valid URL")
}

async fn node(pubsub: &RedisPubSub) -> Node {
    stream_node(Arc::new(pubsub.clone())).await
}

fn default_name() -> String {
    format!("ActionCable-PID-{}", std::process::id())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_on_one_node_reaches_clients_of_another() {
    let redis = RedisServer::start();
    let a = node(&adapter(url_config(&redis))).await;
    let b = node(&adapter(url_config(&redis))).await;
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
    on_a.expect_silence(SILENCE).await;
    on_b.expect_silence(SILENCE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefixed_channels_and_raw_json_payloads_match_rails() {
    let redis = RedisServer::start();
    let pubsub = adapter(url_config(&redis).channel_prefix(Some("app".into())));
    let node = node(&pubsub).await;
    let mut client = node.client().await;
    client.subscribe_stream("chat:lobby").await;
    assert_eq!(numsub(redis.port, "app:chat:lobby"), 1);
    assert_eq!(numsub(redis.port, "chat:lobby"), 0);

    // What Rails (or anyone) publishes on the prefixed channel reaches us.
    let out = redis.cli(&["PUBLISH", "app:chat:lobby", r#"{"x":1}"#]);
    assert_eq!(out.trim(), "1", "one subscriber: {out}");
    assert_eq!(client.stream_message("chat:lobby").await, json!({ "x": 1 }));

    // Unprefixed or foreign channels do not.
    redis.cli(&["PUBLISH", "chat:lobby", r#"{"x":2}"#]);
    client.expect_silence(SILENCE).await;

    // What we broadcast is the JSON text itself on the prefixed channel.
    let mut watcher = CliSubscriber::start(redis.port, "app:chat:lobby");
    node.handle
        .broadcast_json("chat:lobby", r#"{"text":"hé","n":[1,2]}"#)
        .await
        .unwrap();
    assert_eq!(
        watcher.message(),
        (
            "app:chat:lobby".to_owned(),
            r#"{"text":"hé","n":[1,2]}"#.to_owned()
        )
    );
    assert_eq!(
        client.stream_message("chat:lobby").await,
        json!({ "text": "hé", "n": [1, 2] })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_prefix_the_channel_is_the_broadcasting_name() {
    let redis = RedisServer::start();
    let node = node(&adapter(url_config(&redis))).await;
    let mut client = node.client().await;
    client.subscribe_stream("chat:lobby").await;

    redis.cli(&["PUBLISH", "chat:lobby", r#"{"a":1}"#]);
    assert_eq!(client.stream_message("chat:lobby").await, json!({ "a": 1 }));

    let mut watcher = CliSubscriber::start(redis.port, "chat:lobby");
    node.handle
        .broadcast("chat:lobby", &json!([true]))
        .await
        .unwrap();
    assert_eq!(
        watcher.message(),
        ("chat:lobby".to_owned(), "[true]".to_owned())
    );
    assert_eq!(client.stream_message("chat:lobby").await, json!([true]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_that_are_not_json_or_not_utf8_are_dropped() {
    let redis = RedisServer::start();
    let node = node(&adapter(url_config(&redis))).await;
    let mut client = node.client().await;
    client.subscribe_stream("chat:lobby").await;

    redis.cli(&["PUBLISH", "chat:lobby", "not json"]);
    let status = std::process::Command::new("redis-cli")
        .args(["-p", &redis.port.to_string(), "PUBLISH", "chat:lobby"])
        .arg(std::ffi::OsStr::from_bytes(b"\"\xff\xfe\""))
        .stdout(std::process::Stdio::null())
        .status()
        .expect("redis-cli runs");
    assert!(status.success());
    client.expect_silence(SILENCE).await;

    // The connection is fine afterwards.
    redis.cli(&["PUBLISH", "chat:lobby", r#""ok""#]);
    assert_eq!(client.stream_message("chat:lobby").await, json!("ok"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_named_and_the_internal_channel_is_subscribed() {
    let redis = RedisServer::start();
    let _node = node(&adapter(url_config(&redis))).await;
    let name = default_name();
    eventually("both connections named in CLIENT LIST", || {
        clients(redis.port)
            .iter()
            .filter(|(n, _)| *n == name)
            .count()
            == 2
    })
    .await;
    eventually("_action_cable_internal in PUBSUB CHANNELS", || {
        redis
            .cli(&["PUBSUB", "CHANNELS"])
            .lines()
            .any(|c| c == "_action_cable_internal")
    })
    .await;
    // Exactly one of the two holds subscriptions: the subscriber connection (the internal
    // channel, the trace channel and the presence channel).
    let subs: Vec<usize> = clients(redis.port)
        .into_iter()
        .filter(|(n, _)| *n == name)
        .map(|(_, sub)| sub)
        .collect();
    assert!(subs.contains(&3) && subs.contains(&0), "{subs:?}");

    // A configured id replaces the default name; the internal channel is never prefixed.
    let other = RedisServer::start();
    let _named = node(&adapter(
        url_config(&other)
            .id("cable-test-7")
            .channel_prefix(Some("app".into())),
    ))
    .await;
    eventually("the configured name in CLIENT LIST", || {
        clients(other.port)
            .iter()
            .filter(|(n, _)| n == "cable-test-7")
            .count()
            == 2
    })
    .await;
    eventually("unprefixed _action_cable_internal", || {
        numsub(other.port, "_action_cable_internal") == 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_clients_stay_and_delivery_resumes() {
    let mut redis = RedisServer::start();
    let pubsub = adapter(url_config(&redis).subscribe_timeout(Duration::from_secs(1)));
    let node = node(&pubsub).await;
    let mut client = node.client().await;
    client.subscribe_stream("chat:lobby").await;
    client.subscribe_stream("chat:other").await;
    node.handle
        .broadcast("chat:lobby", &json!("before"))
        .await
        .unwrap();
    assert_eq!(client.stream_message("chat:lobby").await, json!("before"));
    assert!(
        node.handle.readiness().is_ready(),
        "ready while Redis answers"
    );

    redis.kill();

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
    // The node is not ready (a load balancer sends new clients elsewhere), but not dead.
    let readiness = node.handle.readiness();
    assert!(!readiness.is_ready() && !readiness.pubsub_connected && !readiness.shutting_down);

    // A new stream cannot go live: the subscription is rejected after the subscribe timeout.
    let mut newcomer = node.client().await;
    let started = Instant::now();
    assert_eq!(
        newcomer.take_subscribe(&identifier("chat:new")).await,
        SubscribeReply::Rejected,
        "a subscription needing a new stream during the outage is rejected"
    );
    assert!(started.elapsed() < Duration::from_secs(4));

    // The clients stay connected: nothing but pings, no disconnect, socket open.
    client.expect_silence(Duration::from_millis(500)).await;

    redis.restart();

    // No client action: delivery resumes on the same sockets, and the node is ready again.
    until_delivered(&node, &mut client, "chat:lobby").await;
    eventually("the node to be ready again", || {
        node.handle.readiness().is_ready()
    })
    .await;
    node.handle
        .broadcast("chat:lobby", &json!("after"))
        .await
        .unwrap();
    assert_eq!(client.stream_message("chat:lobby").await, json!("after"));
    node.handle
        .broadcast("chat:other", &json!("other"))
        .await
        .unwrap();
    assert_eq!(client.stream_message("chat:other").await, json!("other"));
    client.expect_silence(SILENCE).await;
    eventually("both connections up again", || pubsub.is_connected()).await;

    // The restarted server sees exactly the streams still needed (not the rejected one).
    let mut channels: Vec<String> = redis
        .cli(&["PUBSUB", "CHANNELS"])
        .lines()
        .map(str::to_owned)
        .collect();
    channels.sort();
    assert_eq!(
        channels,
        [
            "_action_cable_internal",
            "_action_cable_presence",
            "_action_cable_trace",
            "chat:lobby",
            "chat:other"
        ]
    );
    let name = default_name();
    assert_eq!(
        clients(redis.port)
            .iter()
            .filter(|(n, _)| *n == name)
            .count(),
        2
    );

    // And new streams work again, with the same client.
    newcomer.subscribe_stream("chat:new").await;
    node.handle
        .broadcast("chat:new", &json!("new"))
        .await
        .unwrap();
    assert_eq!(newcomer.stream_message("chat:new").await, json!("new"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_while_redis_is_down_and_connects_when_it_comes_up() {
    let mut redis = RedisServer::start();
    redis.kill();
    let pubsub = adapter(
        url_config(&redis).reconnect_backoff(Duration::from_millis(50), Duration::from_millis(500)),
    );
    let node = node(&pubsub).await;
    let started = Instant::now();
    assert!(node.handle.broadcast("s", &json!(1)).await.is_err());
    assert!(started.elapsed() < Duration::from_secs(2));

    redis.restart();
    let mut client = node.client().await;
    client.subscribe_stream("s").await;
    eventually("both connections up", || pubsub.is_connected()).await;
    node.handle.broadcast("s", &json!(2)).await.unwrap();
    assert_eq!(client.stream_message("s").await, json!(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_finds_the_master_and_follows_a_new_one() {
    let first = RedisServer::start();
    let sentinel = Sentinel::start(first.port);
    let config = RedisConfig::sentinel("mymaster", [sentinel.address()])
        .expect("valid")
        .health_check_interval(Duration::from_millis(100));
    let pubsub = adapter(config);
    let node = node(&pubsub).await;
    let mut client = node.client().await;
    client.subscribe_stream("chat:lobby").await;
    node.handle
        .broadcast("chat:lobby", &json!(1))
        .await
        .unwrap();
    assert_eq!(client.stream_message("chat:lobby").await, json!(1));
    let name = default_name();
    assert_eq!(
        clients(first.port)
            .iter()
            .filter(|(n, _)| *n == name)
            .count(),
        2,
        "both connections on the master the sentinel named"
    );
    // The health check (`ROLE` with sentinels) passes on a master: the connections stay.
    let ids = client_ids(first.port, &name);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(client_ids(first.port, &name), ids);

    // The sentinel now names another master, and the old one goes away.
    let second = RedisServer::start();
    sentinel.monitor(second.port);
    let mut first = first;
    first.kill();

    until_delivered(&node, &mut client, "chat:lobby").await;
    node.handle
        .broadcast("chat:lobby", &json!(2))
        .await
        .unwrap();
    assert_eq!(client.stream_message("chat:lobby").await, json!(2));
    assert_eq!(
        clients(second.port)
            .iter()
            .filter(|(n, _)| *n == name)
            .count(),
        2,
        "both connections moved to the new master"
    );
    assert_eq!(numsub(second.port, "chat:lobby"), 1);
}

#[cfg(feature = "tls")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_with_a_private_root_certificate() {
    let (redis, certificate) = RedisServer::start_tls();
    let tls_port = redis.tls_port.expect("a TLS port");
    let config = RedisConfig::from_url(&format!("rediss://127.0.0.1:{tls_port}"))
        .expect("valid")
        .tls_root_certificates(certificate);
    let pubsub = adapter(config);
    let trusted = node(&pubsub).await;
    let mut client = trusted.client().await;
    client.subscribe_stream("secure").await;
    trusted
        .handle
        .broadcast("secure", &json!("over TLS"))
        .await
        .unwrap();
    assert_eq!(client.stream_message("secure").await, json!("over TLS"));
    // Both connections came in over TLS (the plain port sees only redis-cli).
    let name = default_name();
    assert_eq!(
        clients(redis.port)
            .iter()
            .filter(|(n, _)| *n == name)
            .count(),
        2
    );

    // Without the certificate the server is not trusted: nothing connects.
    let untrusted = adapter(
        RedisConfig::from_url(&format!("rediss://127.0.0.1:{tls_port}"))
            .expect("valid")
            .connect_timeout(Duration::from_millis(500)),
    );
    let other = node(&untrusted).await;
    assert!(other.handle.broadcast("secure", &json!(1)).await.is_err());
    assert!(!untrusted.is_connected());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_replace_a_connection_that_stops_answering() {
    let redis = RedisServer::start();
    let pubsub = adapter(
        url_config(&redis)
            .health_check_interval(Duration::from_millis(100))
            .connect_timeout(Duration::from_millis(500))
            .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(200)),
    );
    let node = node(&pubsub).await;
    let mut client = node.client().await;
    client.subscribe_stream("chat:lobby").await;
    let name = default_name();
    eventually("both connections up", || pubsub.is_connected()).await;

    // Healthy connections answer PING (also in subscribed mode) and are kept.
    let ids = client_ids(redis.port, &name);
    assert_eq!(ids.len(), 2);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(client_ids(redis.port, &name), ids);

    // Redis stops answering without closing anything: the health check notices, and the
    // connections are replaced once it answers again.
    assert_eq!(redis.cli(&["CLIENT", "PAUSE", "2000", "ALL"]).trim(), "OK");
    eventually("both connections replaced", || {
        let now = client_ids(redis.port, &name);
        now.len() == 2 && now.iter().all(|id| !ids.contains(id))
    })
    .await;
    until_delivered(&node, &mut client, "chat:lobby").await;
    eventually("both connections up", || pubsub.is_connected()).await;
    node.handle
        .broadcast("chat:lobby", &json!("back"))
        .await
        .unwrap();
    assert_eq!(client.stream_message("chat:lobby").await, json!("back"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_redis_refuses_are_dropped_without_a_reconnect_loop() {
    let redis = RedisServer::start();
    let pubsub = adapter(url_config(&redis));
    let node = node(&pubsub).await;
    let mut client = node.client().await;
    client.subscribe_stream("ok:1").await;
    client.subscribe_stream("secret:1").await;
    let name = default_name();
    eventually("both connections up", || pubsub.is_connected()).await;
    let before = client_ids(redis.port, &name);

    // An ACL change forbids every channel but `ok:*`: Redis drops the subscriber connection
    // (it holds forbidden channels); the new one subscribes what it still may.
    let out = redis.cli(&["ACL", "SETUSER", "default", "resetchannels", "&ok:*"]);
    assert_eq!(out.trim(), "OK", "{out}");
    until_delivered(&node, &mut client, "ok:1").await;
    eventually("a new subscriber connection", || {
        client_ids(redis.port, &name)
            .iter()
            .any(|id| !before.contains(id))
    })
    .await;
    assert_eq!(numsub(redis.port, "ok:1"), 1);
    assert_eq!(numsub(redis.port, "secret:1"), 0);

    // Settled: no reconnect loop.
    let settled = client_ids(redis.port, &name);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(client_ids(redis.port, &name), settled);

    // A new forbidden stream is refused (the subscription is rejected), allowed ones work.
    assert_eq!(
        client.take_subscribe(&identifier("secret:2")).await,
        SubscribeReply::Rejected
    );
    client.subscribe_stream("ok:2").await;
    node.handle.broadcast("ok:2", &json!("fine")).await.unwrap();
    assert_eq!(client.stream_message("ok:2").await, json!("fine"));
    assert_eq!(client_ids(redis.port, &name), settled);
    let refused = node.handle.broadcast("secret:1", &json!("no")).await;
    assert!(
        matches!(
            refused,
            Err(BroadcastError::PubSub(PubSubError::Backend(_)))
        ),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_the_adapter_and_closes_its_connections() {
    let redis = RedisServer::start();
    let pubsub = adapter(url_config(&redis));
    let node = node(&pubsub).await;
    let name = default_name();
    eventually("connected", || pubsub.is_connected()).await;

    assert!(node.handle.shutdown(Duration::from_secs(2)).await);
    assert!(!pubsub.is_connected());
    eventually("no named connection left", || {
        !clients(redis.port).iter().any(|(n, _)| *n == name)
    })
    .await;
    let result = node.handle.broadcast("s", &json!(1)).await;
    assert!(
        matches!(result, Err(BroadcastError::PubSub(PubSubError::Closed))),
        "{result:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_except_its_sender_skips_only_the_sender_across_nodes() {
    let redis = RedisServer::start();
    let a = node(&adapter(url_config(&redis))).await;
    let b = node(&adapter(url_config(&redis))).await;
    let mut sender = a.client().await;
    let mut neighbour = a.client().await;
    let mut remote = b.client().await;
    for client in [&mut sender, &mut neighbour, &mut remote] {
        client.subscribe_stream("room").await;
    }
    until_delivered(&a, &mut remote, "room").await;
    // The sender is the connection on `a` that subscribed first.
    let mut on_a = a.handle.connections();
    on_a.sort_by_key(|c| c.id);
    let sender_id = on_a[0].id;
    let message = json!({ "text": "hello" });
    a.handle
        .broadcast_except("room", &message, sender_id)
        .await
        .unwrap();
    assert_eq!(remote.stream_message("room").await, message);
    // `neighbour` may also have late probes from `until_delivered`; skip those.
    loop {
        let m = neighbour.stream_message("room").await;
        if m["probe"].is_number() || m["marker"] == true {
            continue;
        }
        assert_eq!(m, message);
        break;
    }
    // The sender gets nothing but leftover probes; the same message broadcast normally then
    // reaches it: the exclusion was used once.
    a.handle.broadcast("room", &message).await.unwrap();
    loop {
        let m = sender.stream_message("room").await;
        if m["probe"].is_number() || m["marker"] == true {
            continue;
        }
        assert_eq!(m, message);
        break;
    }
    sender.expect_silence(SILENCE).await;
}

/// The adapter reports its trouble to the node's metrics: a lost connection counts in
/// `actioncable_adapter_errors_total`, getting it back in `actioncable_adapter_reconnects_total`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_counts_as_adapter_errors_and_a_reconnect_in_the_metrics() {
    let mut redis = RedisServer::start();
    let pubsub = adapter(
        url_config(&redis).reconnect_backoff(Duration::from_millis(50), Duration::from_millis(500)),
    );
    let node = spawn_cable(
        actioncable::Cable::builder()
            .channel::<StreamChannel>()
            .pubsub(pubsub.clone())
            .metrics(true)
            .allowed_origins(actioncable::AllowedOrigins::any()),
    )
    .await;
    eventually("the adapter to connect", || pubsub.is_connected()).await;
    let counter = |name: &str| -> u64 {
        let text = node.handle.metrics().expect("metrics are on");
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in\n{text}"))
    };
    let (errors, reconnects) = (
        counter("actioncable_adapter_errors_total"),
        counter("actioncable_adapter_reconnects_total"),
    );

    redis.kill();
    eventually("the outage to be counted", || {
        counter("actioncable_adapter_errors_total") > errors
    })
    .await;
    redis.restart();
    eventually("the reconnect to be counted", || {
        counter("actioncable_adapter_reconnects_total") > reconnects && pubsub.is_connected()
    })
    .await;
}

/// Broadcast-to-socket latency across nodes: a sampled broadcast's publish time travels with
/// it through Redis (a trace note just before the payload; for a message kept in the history,
/// before its position note), so the node that writes it to its subscriber times it; what the
/// subscriber receives is unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampled_broadcasts_are_timed_on_the_node_that_delivers_them() {
    for history in [false, true] {
        let redis = RedisServer::start();
        let start = |pubsub: RedisPubSub| {
            spawn_cable(
                actioncable::Cable::builder()
                    .channel::<StreamChannel>()
                    .pubsub(pubsub)
                    .history(history)
                    .metrics(true)
                    .metrics_sampling(1, 1)
                    .allowed_origins(actioncable::AllowedOrigins::any()),
            )
        };
        let a = start(adapter(url_config(&redis))).await;
        let b = start(adapter(url_config(&redis))).await;
        let mut client = b.client().await;
        client.subscribe_stream("chat:lobby").await;
        until_delivered(&b, &mut client, "chat:lobby").await;
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
