//! Metrics, scraped from `/metrics` over HTTP after a scripted scenario on real sockets: a
//! rejected connection and a refused origin, plain and extended-protocol clients subscribing,
//! a slow client dropped as `too_slow`, broadcasts, a client closing. Every counter and gauge
//! the scenario decides has exactly the expected value, and with sampling at 1/1 the latency
//! histogram has one observation per written delivery, in plausible buckets.

use crate::support::*;
use actioncable::{Cable, CableBuilder};
use serde_json::json;
use std::future::IntoFuture as _;
use std::time::Duration;

const LOBBY_STREAM: &str = "chat:lobby";
const BULK: &str = r#"{"channel":"ChatChannel","room":"bulk"}"#;

/// The cable at `/cable` and its metrics at `/metrics`, on a loopback port.
async fn spawn_with_metrics(builder: CableBuilder<TestState>) -> CableServer {
    let cable: Cable<TestState> = builder.build().expect("the test cable builds");
    let handle = cable.handle();
    let router: axum::Router = cable
        .router("/cable")
        .merge(cable.metrics_router("/metrics"));
    let stopping = handle.clone();
    TestServer::start(handle, |listener, stop| {
        actioncable::serve(listener, router)
            .with_graceful_shutdown(async move {
                stop.await;
                stopping.shutdown(WAIT).await;
            })
            .into_future()
    })
    .await
}

async fn scrape(server: &CableServer) -> String {
    let reply = http_request(server.addr, "GET", "/metrics", &[], None).await;
    assert_eq!(reply.status, 200, "{}", reply.body_text());
    assert_eq!(
        reply.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    reply.body_text().to_owned()
}

/// The value of the sample `series` (name and labels exactly as exposed), 0 when absent.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.trim().parse().unwrap_or_else(|_| panic!("{series}: {v}")))
        .unwrap_or(0.0)
}

async fn wait_value(server: &CableServer, series: &str, expected: f64) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let text = scrape(server).await;
        if value(&text, series) == expected {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{series} is {} (expected {expected}):\n{text}",
            value(&text, series)
        );
        tokio::time::sleep(POLL).await;
    }
}

fn plain(user: &str) -> Connect {
    Connect::new()
        .path(&format!("/cable?user={user}"))
        .protocols("actioncable-v1-json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scripted_scenario_scrapes_to_exactly_the_expected_counts() {
    let rec = Recorder::new();
    let server = spawn_with_metrics(
        builder(&rec)
            .metrics(true)
            .metrics_sampling(1, 1)
            .outbound_capacity(8)
            .outbound_bytes(64 * 1024)
            // No pings during the test: every frame queued is one the scenario sent.
            .ping_interval(Duration::from_secs(600))
            .close_timeout(Duration::from_millis(200)),
    )
    .await;

    // Refused: a banned user (unauthorized, after the upgrade) and a foreign origin (404).
    let mut banned = CableClient::connect(server.addr, plain("banned"))
        .await
        .unwrap();
    banned.expect_disconnect("unauthorized", false).await;
    let foreign = Connect::new()
        .path("/cable?user=eve")
        .origin("http://evil.example");
    assert!(CableClient::connect(server.addr, foreign).await.is_err());

    // Two plain clients and one of the extended protocol on the lobby.
    let mut alice = CableClient::welcomed(server.addr, plain("alice")).await;
    alice.confirm(LOBBY).await;
    let mut bob = CableClient::welcomed(server.addr, plain("bob")).await;
    bob.confirm(LOBBY).await;
    let ext = Connect::new()
        .path("/cable?user=carol")
        .protocols("actioncable-v1-ext-json");
    let mut carol = CableClient::welcomed(server.addr, ext).await;
    carol.confirm(LOBBY).await;

    // The slow client: alone on the bulk stream, never reading. Broadcast 32 KiB messages
    // until it is dropped as too slow.
    let mut slow = CableClient::welcomed(server.addr, plain("slow")).await;
    slow.confirm(BULK).await;
    let blob = "x".repeat(32 * 1024);
    let mut published = 0u64;
    loop {
        server
            .handle
            .broadcast("chat:bulk", &json!({ "blob": blob }))
            .await
            .unwrap();
        published += 1;
        let text = wait_value(
            &server,
            "actioncable_broadcasts_received_total",
            published as f64,
        )
        .await;
        if value(&text, "actioncable_disconnects_total{reason=\"too_slow\"}") == 1.0 {
            break;
        }
        assert!(published < 2000, "the slow client was never dropped");
    }
    eventually("the slow client's connection ends", || {
        server.handle.connection_count() == 3
    })
    .await;
    let before = wait_value(&server, "actioncable_streams", 4.0).await; // lobby + 3 internal
    let dropped = value(&before, "actioncable_frames_dropped_total");
    assert!(dropped >= 1.0, "{before}");
    let deliveries_before = value(&before, "actioncable_deliveries_total");
    let written_before = value(&before, "actioncable_broadcast_latency_seconds_count");

    // Five lobby broadcasts, every subscriber reads all of them.
    const LOBBY_BROADCASTS: u64 = 5;
    for n in 0..LOBBY_BROADCASTS {
        server
            .handle
            .broadcast(LOBBY_STREAM, &json!({ "n": n }))
            .await
            .unwrap();
    }
    for client in [&mut alice, &mut bob, &mut carol] {
        for _ in 0..LOBBY_BROADCASTS {
            client.recv_message(LOBBY).await;
        }
    }
    published += LOBBY_BROADCASTS;
    // One perform: a message command, which broadcasts once more.
    alice
        .perform(LOBBY, "speak", json!({ "text": "hello" }))
        .await;
    for client in [&mut alice, &mut bob, &mut carol] {
        assert_eq!(client.recv_message(LOBBY).await["text"], "hello");
    }
    published += 1;
    // Bob leaves: a client close.
    bob.close().await;
    eventually("bob's connection ends", || {
        server.handle.connection_count() == 2
    })
    .await;

    let lobby_deliveries = 3.0 * (LOBBY_BROADCASTS + 1) as f64;
    let text = wait_value(
        &server,
        "actioncable_broadcast_latency_seconds_count",
        written_before + lobby_deliveries,
    )
    .await;
    let expect = [
        ("actioncable_connections{protocol=\"plain\"}", 1.0),
        ("actioncable_connections{protocol=\"ext\"}", 1.0),
        ("actioncable_subscriptions{channel=\"ChatChannel\"}", 2.0),
        ("actioncable_streams", 3.0),
        ("actioncable_outbound_frames", 0.0),
        ("actioncable_connections_accepted_total", 4.0),
        (
            "actioncable_connections_rejected_total{reason=\"unauthorized\"}",
            1.0,
        ),
        (
            "actioncable_connections_rejected_total{reason=\"origin\"}",
            1.0,
        ),
        ("actioncable_commands_total{kind=\"subscribe\"}", 4.0),
        ("actioncable_commands_total{kind=\"message\"}", 1.0),
        ("actioncable_commands_total{kind=\"unsubscribe\"}", 0.0),
        ("actioncable_broadcasts_published_total", published as f64),
        ("actioncable_broadcasts_received_total", published as f64),
        (
            "actioncable_deliveries_total",
            deliveries_before + lobby_deliveries,
        ),
        ("actioncable_frames_dropped_total", dropped),
        ("actioncable_disconnects_total{reason=\"too_slow\"}", 1.0),
        (
            "actioncable_disconnects_total{reason=\"client_close\"}",
            1.0,
        ),
        ("actioncable_adapter_errors_total", 0.0),
        ("actioncable_commands_throttled_total", 0.0),
        ("actioncable_welcome_duration_seconds_count", 4.0),
        (
            "actioncable_command_duration_seconds_count{channel=\"ChatChannel\"}",
            5.0,
        ),
    ];
    let wrong: Vec<String> = expect
        .iter()
        .filter(|(series, v)| value(&text, series) != *v)
        .map(|(series, v)| format!("{series}: {} (expected {v})", value(&text, series)))
        .collect();
    assert!(wrong.is_empty(), "{wrong:#?}\n{text}");

    // Every written delivery of the lobby took well under a second on an idle loopback.
    let count = value(&text, "actioncable_broadcast_latency_seconds_count");
    let under_a_second = value(
        &text,
        "actioncable_broadcast_latency_seconds_bucket{le=\"0.8192\"}",
    );
    assert_eq!(under_a_second, count, "{text}");
    let sum = value(&text, "actioncable_broadcast_latency_seconds_sum");
    assert!(sum > 0.0 && sum / count < 0.5, "{text}");
    assert!(
        value(&text, "actioncable_fanout_duration_seconds_count") == published as f64,
        "{text}"
    );

    drop(slow);
    server.shutdown().await;
}

#[tokio::test]
async fn sampling_follows_one_broadcast_in_n_and_one_delivery_in_m() {
    let rec = Recorder::new();
    let server = spawn_with_metrics(builder(&rec).metrics(true).metrics_sampling(2, 3)).await;
    let mut clients = Vec::new();
    for n in 0..4 {
        let mut c = server.user(&format!("u{n}")).await;
        c.confirm(LOBBY).await;
        clients.push(c);
    }
    for n in 0..4 {
        server
            .handle
            .broadcast(LOBBY_STREAM, &json!({ "n": n }))
            .await
            .unwrap();
    }
    for c in &mut clients {
        for _ in 0..4 {
            c.recv_message(LOBBY).await;
        }
    }
    // Broadcasts 1 and 3 sampled; of each, subscribers 1 and 4 of the 4 followed.
    wait_value(&server, "actioncable_broadcast_latency_seconds_count", 4.0).await;
    server.shutdown().await;
}

#[tokio::test]
async fn without_metrics_the_route_answers_404_and_the_handle_none() {
    let rec = Recorder::new();
    let server = spawn_with_metrics(builder(&rec)).await;
    let reply = http_request(server.addr, "GET", "/metrics", &[], None).await;
    assert_eq!(reply.status, 404);
    assert!(server.handle.metrics().is_none());
    server.shutdown().await;
}
