//! NATS going away and coming back, on private `nats-server` processes (the shared one is never
//! stopped): broadcasts fail quickly instead of vanishing, clients stay connected, readiness
//! and the adapter metrics follow the connection, and delivery resumes on every node.

use crate::support::*;
use actioncable::{AllowedOrigins, BroadcastError, Cable, PubSubError};
use actioncable_nats::NatsPubSub;
use serde_json::json;
use std::time::Duration;
use tokio::time::Instant;

fn counter(node: &CableServer, name: &str) -> u64 {
    let text = node.handle.metrics().expect("metrics are on");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} in\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_killed_and_restarted_clients_stay_and_delivery_resumes_on_both_nodes() {
    let mut server = NatsServer::start();
    let config = config_for(&server.url()).subscribe_timeout(Duration::from_secs(1));
    let (pa, pb) = (
        NatsPubSub::new(config.clone()),
        NatsPubSub::new(config.clone()),
    );
    let start = |pubsub: NatsPubSub| {
        spawn_cable(
            Cable::builder()
                .channel::<StreamChannel>()
                .pubsub(pubsub)
                .metrics(true)
                .ping_interval(Duration::from_secs(1))
                .allowed_origins(AllowedOrigins::any()),
        )
    };
    let a = start(pa.clone()).await;
    let b = start(pb.clone()).await;
    connected(&pa).await;
    connected(&pb).await;
    let mut on_a = a.client().await;
    let mut on_b = b.client().await;
    for client in [&mut on_a, &mut on_b] {
        client.subscribe_stream("chat:lobby").await;
        client.subscribe_stream("chat:other").await;
    }
    a.handle
        .broadcast("chat:lobby", &json!("before"))
        .await
        .unwrap();
    assert_eq!(on_b.stream_message("chat:lobby").await, json!("before"));
    assert_eq!(on_a.stream_message("chat:lobby").await, json!("before"));
    assert!(a.handle.readiness().is_ready() && b.handle.readiness().is_ready());
    let errors = counter(&a, "actioncable_adapter_errors_total");
    let reconnects = counter(&a, "actioncable_adapter_reconnects_total");

    server.kill();
    eventually("both adapters to notice the outage", || {
        !pa.is_connected() && !pb.is_connected()
    })
    .await;

    // Broadcasts fail within the publish timeout (1 s) instead of vanishing.
    for i in 0..3 {
        let started = Instant::now();
        let result = a
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
            started.elapsed() < Duration::from_millis(1500),
            "broadcast {i} took {:?}",
            started.elapsed()
        );
    }
    // The nodes are not ready (a load balancer sends new clients elsewhere), but not dead,
    // and the outage is counted.
    let readiness = a.handle.readiness();
    assert!(!readiness.is_ready() && !readiness.pubsub_connected && !readiness.shutting_down);
    assert!(!b.handle.readiness().is_ready());
    assert!(counter(&a, "actioncable_adapter_errors_total") > errors);

    // A new stream cannot go live: that subscription is rejected after the subscribe timeout.
    let mut newcomer = a.client().await;
    let started = Instant::now();
    assert_eq!(
        newcomer.take_subscribe(&identifier("chat:new")).await,
        SubscribeReply::Rejected
    );
    assert!(started.elapsed() < Duration::from_secs(3));

    // No client is disconnected: nothing but pings (the cable pings every second).
    on_a.expect_silence(Duration::from_millis(1500)).await;
    on_b.expect_silence(SILENCE).await;

    server.restart();

    // No client action: the adapters reconnect and resubscribe, delivery resumes both ways.
    until_delivered(&a, &mut on_b, "chat:lobby").await;
    until_delivered(&b, &mut on_a, "chat:other").await;
    eventually("both nodes ready again", || {
        a.handle.readiness().is_ready() && b.handle.readiness().is_ready()
    })
    .await;
    assert!(counter(&a, "actioncable_adapter_reconnects_total") > reconnects);
    // What the probes left on the other clients' subscriptions.
    for client in [&mut on_a, &mut on_b] {
        for stream in ["chat:lobby", "chat:other"] {
            while client
                .try_stream_message(stream, Duration::from_millis(200))
                .await
                .is_some()
            {}
        }
    }
    a.handle
        .broadcast("chat:lobby", &json!("after"))
        .await
        .unwrap();
    b.handle
        .broadcast("chat:other", &json!("other"))
        .await
        .unwrap();
    for client in [&mut on_a, &mut on_b] {
        assert_eq!(client.stream_message("chat:lobby").await, json!("after"));
        assert_eq!(client.stream_message("chat:other").await, json!("other"));
        client.expect_silence(SILENCE).await;
    }

    // New streams work again, with the same client.
    newcomer.subscribe_stream("chat:new").await;
    b.handle.broadcast("chat:new", &json!("new")).await.unwrap();
    assert_eq!(newcomer.stream_message("chat:new").await, json!("new"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_while_nats_is_down_and_connects_when_it_comes_up() {
    let mut server = NatsServer::start();
    server.kill();
    let pubsub = NatsPubSub::new(config_for(&server.url()));
    let node = stream_node(std::sync::Arc::new(pubsub.clone())).await;
    let started = Instant::now();
    assert!(node.handle.broadcast("s", &json!(1)).await.is_err());
    assert!(started.elapsed() < Duration::from_millis(1500));
    assert!(!node.handle.readiness().is_ready());

    server.restart();
    connected(&pubsub).await;
    let mut client = node.client().await;
    client.subscribe_stream("s").await;
    node.handle.broadcast("s", &json!(2)).await.unwrap();
    assert_eq!(client.stream_message("s").await, json!(2));
}
