//! The Server-Sent Events transport (`Cable::sse_router`) over real sockets, read as `curl -N`
//! reads it: the exact bytes of the stream, the answers before it (401, 400, 403, 405, 429,
//! 503), a rejected subscription, a slow reader dropped like a slow WebSocket, a resume with
//! `Last-Event-ID`, the limits, remote disconnect and shutdown.
//!
//! The events are AnyCable's (anycable-go `sse/encoder.go`, `sse/handler.go`,
//! `features/sse.testfile`); `docs/sse.md` lists them.

use crate::support::*;
use actioncable::{Identity, JwtVerifier};
use serde_json::json;
use std::time::Duration;
use tokio::io::AsyncReadExt as _;
use tokio::time::Instant;

/// `s` percent-encoded for a query string.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `/events?identifier=<identifier>` plus `extra` query parameters.
fn events(identifier: &str, extra: &str) -> String {
    let mut path = format!("/events?identifier={}", enc(identifier));
    if !extra.is_empty() {
        path.push('&');
        path.push_str(extra);
    }
    path
}

/// The `confirm_subscription` event of `identifier`, byte for byte.
fn confirm_event(identifier: &str) -> String {
    format!(
        "event: confirm_subscription\ndata: {}\n\n",
        confirm_frame(identifier)
    )
}

const WELCOME_EVENT: &str = "event: welcome\ndata: {\"type\":\"welcome\"}\n\n";

/// An hour: no heartbeat gets between the events a test compares byte for byte.
const NO_BEAT: Duration = Duration::from_secs(3600);

#[tokio::test]
async fn an_event_stream_reads_like_curl_byte_for_byte() {
    let rec = Recorder::new();
    let server = spawn_cable(builder(&rec).ping_interval(NO_BEAT)).await;
    let mut sse = SseClient::open(server.addr, &events(LOBBY, "user=alice"), &[])
        .await
        .stream();
    assert_eq!(sse.header("content-type"), Some("text/event-stream"));
    assert_eq!(
        sse.header("cache-control"),
        Some("private, no-cache, no-store, must-revalidate, max-age=0")
    );
    assert_eq!(sse.header("x-accel-buffering"), Some("no"));
    assert_eq!(sse.next_any().await.text, WELCOME_EVENT);
    assert_eq!(sse.next_any().await.text, confirm_event(LOBBY));
    rec.wait_for(&format!("subscribed:{LOBBY}")).await;

    // A WebSocket client speaks in the room: the event's data is the message alone.
    let mut bob = server.user("bob").await;
    bob.confirm(LOBBY).await;
    bob.perform(LOBBY, "speak", json!({ "text": "hi alice" }))
        .await;
    assert_eq!(
        sse.next_any().await.text,
        "data: {\"user\":\"bob\",\"text\":\"hi alice\"}\n\n"
    );
    // A string message is its text, one `data:` line per line.
    server
        .handle
        .broadcast("chat:lobby", &"line one\nline two")
        .await
        .unwrap();
    assert_eq!(
        sse.next_any().await.text,
        "data: line one\ndata: line two\n\n"
    );
    // Everything so far, exactly as a terminal shows it.
    assert_eq!(
        sse.text(),
        format!(
            "{WELCOME_EVENT}{}data: {{\"user\":\"bob\",\"text\":\"hi alice\"}}\n\n\
             data: line one\ndata: line two\n\n",
            confirm_event(LOBBY)
        )
    );
    // `channel` names a channel without params, as AnyCable's `?channel=`.
    let mut echo = SseClient::open(server.addr, "/events?channel=EchoChannel", &[])
        .await
        .stream();
    assert_eq!(echo.next_any().await.text, WELCOME_EVENT);
    assert_eq!(echo.next_any().await.text, confirm_event(ECHO));
    // raw=1: data only.
    let mut raw = SseClient::open(server.addr, &events(LOBBY, "user=carol&raw=1"), &[])
        .await
        .stream();
    eventually("the raw stream's subscription", || {
        rec.count(&format!("subscribed:{LOBBY}")) == 3
    })
    .await;
    server.handle.broadcast("chat:lobby", &1).await.unwrap();
    assert_eq!(raw.next_any().await.text, "data: 1\n\n");
    assert_eq!(sse.next_any().await.text, "data: 1\n\n");
    server.shutdown().await;
}

#[tokio::test]
async fn heartbeats_are_comments_at_the_ping_interval() {
    let rec = Recorder::new();
    let server = spawn_cable(builder(&rec).ping_interval(Duration::from_millis(200))).await;
    let mut sse = SseClient::open(server.addr, &events(LOBBY, ""), &[])
        .await
        .stream();
    sse.expect_confirmed().await;
    let started = Instant::now();
    let mut beats = 0;
    while beats < 3 {
        let event = sse.next_any().await;
        assert_eq!(event.text, ": ping\n\n", "only heartbeats: {event:?}");
        beats += 1;
    }
    // The beat never comes early (no upper bound: a loaded machine may be late).
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(350),
        "three heartbeats 200 ms apart took only {took:?}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn requests_without_credentials_get_401_and_nothing_is_left_behind() {
    let rec = Recorder::new();
    const SECRET: &[u8] = b"a-test-secret-of-at-least-32-bytes!!";
    let verifier = JwtVerifier::hs256(SECRET).unwrap();
    let server = spawn_cable(builder(&rec).connection(JwtConnection {
        verifier: verifier.clone(),
        rec: rec.clone(),
    }))
    .await;
    let addr = server.addr;
    let (status, body) = SseClient::open(addr, &events(LOBBY, ""), &[])
        .await
        .refused();
    assert_eq!((status, body.as_str()), (401, "unauthorized\n"));
    let forged = mint_hs256(
        b"another-secret-of-at-least-32-bytes!",
        &json!({ "sub": "alice", "exp": unix_now() + 60 }),
    );
    let (status, _) = SseClient::open(addr, &events(LOBBY, &format!("token={forged}")), &[])
        .await
        .refused();
    assert_eq!(status, 401);
    let expired = mint_hs256(SECRET, &json!({ "sub": "alice", "exp": unix_now() - 3600 }));
    let (status, _) = SseClient::open(addr, &events(LOBBY, &format!("token={expired}")), &[])
        .await
        .refused();
    assert_eq!(status, 401, "an expired token");
    assert_eq!(server.handle.connection_count(), 0);
    assert!(
        rec.events().is_empty(),
        "no callback ran: {:?}",
        rec.events()
    );

    // The same token as the WebSocket's opens the stream.
    let token = verifier
        .sign(&Claims {
            sub: "alice".into(),
            exp: unix_now() + 60,
        })
        .unwrap();
    let mut sse = SseClient::open(addr, &events(LOBBY, &format!("token={token}")), &[])
        .await
        .stream();
    sse.expect_event("welcome").await;
    assert_eq!(server.handle.connection_count(), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn bad_requests_get_400_405_and_403_before_authentication() {
    let rec = Recorder::new();
    let server = spawn_cable(builder(&rec)).await;
    let addr = server.addr;
    let (status, body) = SseClient::open(addr, "/events?user=alice", &[])
        .await
        .refused();
    assert_eq!(status, 400);
    assert!(body.starts_with("no channel given"), "{body}");
    let (status, body) = SseClient::open(
        addr,
        &events(LOBBY, ""),
        &[("Last-Event-ID", "nope/e/chat:lobby")],
    )
    .await
    .refused();
    assert_eq!(status, 400);
    assert!(body.contains("Last-Event-ID"), "{body}");
    let (status, _) = SseClient::open(addr, &events(LOBBY, "history_since=soon"), &[])
        .await
        .refused();
    assert_eq!(status, 400);

    let post = http_request(addr, "POST", &events(LOBBY, ""), &[], Some("{}")).await;
    assert_eq!((post.status, post.header("allow")), (405, Some("GET")));

    // Another site's page: refused; an allowed one gets the CORS headers to read the stream.
    let (status, _) = SseClient::open(
        addr,
        &events(LOBBY, ""),
        &[("Origin", "http://evil.example")],
    )
    .await
    .refused();
    assert_eq!(status, 403);
    let origin = server.origin();
    let sse = SseClient::open(addr, &events(LOBBY, ""), &[("Origin", origin.as_str())])
        .await
        .stream();
    assert_eq!(
        sse.header("access-control-allow-origin"),
        Some(origin.as_str())
    );
    assert_eq!(sse.header("access-control-allow-credentials"), Some("true"));
    drop(sse);
    assert!(
        !rec.events()
            .iter()
            .any(|e| e.starts_with("disconnect:current_user")),
        "no refused request was authenticated: {:?}",
        rec.events()
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_rejected_subscription_is_400_with_no_stream_as_anycable_answers() {
    let rec = Recorder::new();
    let server = spawn_cable(builder(&rec).metrics(true)).await;
    let addr = server.addr;
    // The channel rejects: `Connection::disconnect` runs, the streams it started are gone.
    let forbidden = r#"{"channel":"ChatChannel","room":"forbidden"}"#;
    let (status, body) = SseClient::open(addr, &events(forbidden, "user=alice"), &[])
        .await
        .refused();
    assert_eq!((status, body.as_str()), (400, "subscription rejected\n"));
    rec.wait_for("disconnect:current_user=alice").await;
    // Unknown channels and malformed identifiers, as a `subscribe` would be rejected.
    for identifier in [
        r#"{"channel":"NoSuchChannel"}"#,
        r#"{"room":"lobby"}"#,
        "not json",
        r#"{"channel":"ChatChannel"}"#,
    ] {
        let (status, _) = SseClient::open(addr, &events(identifier, "user=bob"), &[])
            .await
            .refused();
        assert_eq!(status, 400, "{identifier}");
    }
    eventually("every refused connection gone", || {
        server.handle.connection_count() == 0 && server.handle.stream_count() == 0
    })
    .await;
    let metrics = server.handle.metrics().unwrap();
    assert!(
        metrics.contains(
            "actioncable_connections_rejected_total{reason=\"subscription_rejected\"} 5\n"
        ),
        "{metrics}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn event_streams_are_counted_as_connections_of_protocol_sse() {
    let rec = Recorder::new();
    let server = spawn_cable(builder(&rec).metrics(true)).await;
    let mut sse = SseClient::open(server.addr, &events(LOBBY, "user=alice"), &[])
        .await
        .stream();
    sse.expect_confirmed().await;
    let _ws = server.user("bob").await;
    let text = server.handle.metrics().unwrap();
    assert!(
        text.contains("actioncable_connections{protocol=\"sse\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("actioncable_connections{protocol=\"plain\"} 1\n"),
        "{text}"
    );
    let stats = server.handle.stats(10);
    assert_eq!((stats.connections, stats.subscriptions), (2, 1));
    assert_eq!(stats.subscriptions_by_channel.get("ChatChannel"), Some(&1));

    // The client goes away: its subscription and connection are cleaned up, counted.
    drop(sse);
    rec.wait_for(&format!("unsubscribed:{LOBBY}")).await;
    rec.wait_for("disconnect:current_user=alice").await;
    eventually("the stream's connection gone", || {
        server.handle.connection_count() == 1
    })
    .await;
    let text = server.handle.metrics().unwrap();
    assert!(
        text.contains("actioncable_connections{protocol=\"sse\"} 0\n"),
        "{text}"
    );
    assert!(
        text.contains("actioncable_disconnects_total{reason=\"client_close\"} 1\n"),
        "{text}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn last_event_id_resumes_without_loss_when_history_is_on() {
    let rec = Recorder::new();
    let server = spawn_cable(builder(&rec).history(true).ping_interval(NO_BEAT)).await;
    let addr = server.addr;
    let say = |n: u64| {
        let handle = server.handle.clone();
        async move {
            handle
                .broadcast("chat:lobby", &json!({ "n": n }))
                .await
                .unwrap()
        }
    };
    let mut sse = SseClient::open(addr, &events(LOBBY, "user=alice"), &[])
        .await
        .stream();
    sse.expect_confirmed().await;
    say(1).await;
    say(2).await;
    let first = sse.next_event().await;
    let second = sse.next_event().await;
    assert_eq!(
        (first.json(), second.json()),
        (json!({"n":1}), json!({"n":2}))
    );
    // `<offset>/<epoch>/<stream>`, AnyCable's order.
    let id = second
        .id
        .clone()
        .expect("a kept message carries its position");
    let parts: Vec<&str> = id.splitn(3, '/').collect();
    assert_eq!((parts[0], parts[2]), ("2", "chat:lobby"), "{id}");
    assert_eq!(first.id, Some(format!("1/{}/chat:lobby", parts[1])));

    // The client is away while 3, 4 and 5 are said.
    drop(sse);
    rec.wait_for(&format!("unsubscribed:{LOBBY}")).await;
    for n in 3..=5 {
        say(n).await;
    }
    let mut back = SseClient::open(
        addr,
        &events(LOBBY, "user=alice"),
        &[("Last-Event-ID", id.as_str())],
    )
    .await
    .stream();
    back.expect_confirmed().await;
    let mut missed = Vec::new();
    for _ in 3..=5 {
        let event = back.next_event().await;
        assert_eq!(event.event, "", "{event:?}");
        missed.push((event.json()["n"].as_u64().unwrap(), event.id.unwrap()));
    }
    assert_eq!(
        missed.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        [3, 4, 5],
        "what was missed, once, in order"
    );
    assert_eq!(missed[2].1, format!("5/{}/chat:lobby", parts[1]));
    back.expect_event("confirm_history").await;
    say(6).await;
    let live = back.next_event().await;
    assert_eq!(live.json(), json!({ "n": 6 }));
    back.expect_silence(SILENCE).await;

    // A position of another epoch cannot be served: `reject_history`, then live messages.
    let mut stale = SseClient::open(
        addr,
        &events(LOBBY, "user=alice"),
        &[("Last-Event-ID", "2/oldepoch/chat:lobby")],
    )
    .await
    .stream();
    stale.expect_confirmed().await;
    stale.expect_event("reject_history").await;
    say(7).await;
    assert_eq!(stale.next_event().await.json(), json!({ "n": 7 }));

    // `history_since`: everything kept since then, then `confirm_history`.
    let since = unix_now() - 60;
    let mut all = SseClient::open(
        addr,
        &events(LOBBY, &format!("user=alice&history_since={since}")),
        &[],
    )
    .await
    .stream();
    all.expect_confirmed().await;
    let mut kept = Vec::new();
    loop {
        let event = all.next_event().await;
        if event.event == "confirm_history" {
            break;
        }
        kept.push(event.json()["n"].as_u64().unwrap());
    }
    assert_eq!(kept, [1, 2, 3, 4, 5, 6, 7]);
    server.shutdown().await;
}

#[tokio::test]
async fn limits_are_the_websockets() {
    let rec = Recorder::new();
    let server = spawn_cable(
        builder(&rec)
            .max_connections(3)
            .max_connections_per_identity(2)
            .max_identifier_size(128),
    )
    .await;
    let addr = server.addr;
    // Per identity: alice's third connection, stream or socket, is turned away.
    let mut a1 = SseClient::open(addr, &events(LOBBY, "user=alice"), &[])
        .await
        .stream();
    a1.expect_confirmed().await;
    let mut a2 = server.user("alice").await;
    let (status, body) = SseClient::open(addr, &events(LOBBY, "user=alice"), &[])
        .await
        .refused();
    assert_eq!(
        (status, body.as_str()),
        (429, "too many connections for this identity\n")
    );
    let mut a3 = CableClient::connect(server.addr, Connect::new().path("/cable?user=alice"))
        .await
        .expect("upgraded");
    a3.expect_disconnect("too_many_connections", false).await;
    // A place freed by a stream is taken again.
    drop(a1);
    rec.wait_for("disconnect:current_user=alice").await;
    let mut a4 = SseClient::open(addr, &events(LOBBY, "user=alice"), &[])
        .await
        .stream();
    a4.expect_confirmed().await;

    // Per node: streams and sockets share max_connections.
    let mut b1 = SseClient::open(addr, &events(LOBBY, "user=bob"), &[])
        .await
        .stream();
    b1.expect_confirmed().await;
    let full = SseClient::open(addr, &events(LOBBY, "user=carol"), &[]).await;
    let SseOpen::Refused {
        status, headers, ..
    } = full
    else {
        panic!("a fourth connection was admitted")
    };
    assert_eq!(status, 503);
    assert!(
        headers
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case("retry-after") && v == "1")
    );
    let (reply, _) = raw_upgrade(addr, "/cable?user=carol", &[]).await;
    assert_eq!(reply.status, 503);

    // Identifiers are bounded as a `subscribe`'s.
    drop(b1);
    rec.wait_for("disconnect:current_user=bob").await;
    let long = format!(
        r#"{{"channel":"ChatChannel","room":"{}"}}"#,
        "x".repeat(200)
    );
    let (status, _) = SseClient::open(addr, &events(&long, "user=dave"), &[])
        .await
        .refused();
    assert_eq!(status, 400);
    a2.assert_echo_after_welcome().await;
    server.shutdown().await;
}

/// The WebSocket client of the limits test still works.
trait StillThere {
    async fn assert_echo_after_welcome(&mut self);
}

impl StillThere for CableClient {
    async fn assert_echo_after_welcome(&mut self) {
        self.confirm(ECHO).await;
        self.assert_echo(ECHO, json!("still here")).await;
    }
}

#[tokio::test]
async fn remote_disconnect_ends_the_stream_and_forbids_a_reconnect() {
    let rec = Recorder::new();
    let server = spawn_cable(builder(&rec).ping_interval(NO_BEAT)).await;
    let mut sse = SseClient::open(server.addr, &events(LOBBY, "user=alice"), &[])
        .await
        .stream();
    sse.expect_confirmed().await;
    server
        .handle
        .remote_disconnect(&Identity::new("current_user", "alice"), false)
        .await
        .unwrap();
    let events = sse.until_end(WAIT).await;
    assert_eq!(
        events.iter().map(|e| e.text.as_str()).collect::<Vec<_>>(),
        [
            "event: disconnect\ndata: {\"type\":\"disconnect\",\"reason\":\"remote\",\"reconnect\":false}\nretry: 31536000000\n\n"
        ]
    );
    rec.wait_for(&format!("unsubscribed:{LOBBY}")).await;
    rec.wait_for("disconnect:current_user=alice").await;
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_ends_every_stream_with_server_restart() {
    let rec = Recorder::new();
    let server = spawn_cable(builder(&rec).ping_interval(NO_BEAT)).await;
    let mut streams = Vec::new();
    for user in ["alice", "bob"] {
        let mut sse = SseClient::open(server.addr, &events(LOBBY, &format!("user={user}")), &[])
            .await
            .stream();
        sse.expect_confirmed().await;
        streams.push(sse);
    }
    let mut ws = server.user("carol").await;
    ws.confirm(LOBBY).await;
    let stopping = tokio::spawn(server.shutdown());
    for sse in &mut streams {
        let events = sse.until_end(WAIT).await;
        assert_eq!(
            events.last().map(|e| e.text.as_str()),
            Some(
                "event: disconnect\ndata: {\"type\":\"disconnect\",\"reason\":\"server_restart\",\"reconnect\":true}\n\n"
            ),
            "{events:?}"
        );
        assert!(sse.ended());
    }
    ws.expect_disconnect("server_restart", true).await;
    within("the shutdown", stopping).await.unwrap();
    for user in ["alice", "bob"] {
        assert_eq!(rec.count(&format!("disconnect:current_user={user}")), 1);
    }
}

#[tokio::test]
async fn a_reader_that_stops_reading_is_closed_after_client_timeout() {
    let rec = Recorder::new();
    // A queue too large to overflow here: only the stall check can end this stream.
    let server = spawn_cable(
        builder(&rec)
            .metrics(true)
            .ping_interval(NO_BEAT)
            .client_timeout(Duration::from_millis(600))
            .outbound_capacity(100_000)
            .outbound_bytes(1 << 30)
            .close_timeout(Duration::from_millis(200)),
    )
    .await;
    let mut frozen = SseClient::open(
        server.addr,
        "/events?channel=NotificationChannel&user=frozen",
        &[],
    )
    .await
    .stream();
    frozen.expect_confirmed().await;
    let frozen = frozen.into_tcp();
    // Enough to fill the socket buffers on both sides; then frames wait in the queue.
    let blob = "y".repeat(64 * 1024);
    let started = Instant::now();
    for _ in 0..256 {
        server
            .handle
            .broadcast("notification:frozen", &json!({ "blob": blob }))
            .await
            .unwrap();
    }
    // Only the stall check can end it (the queue never overflows); `wait_for` bounds the wait.
    rec.wait_for("disconnect:current_user=frozen").await;
    eprintln!(
        "a reader that stopped reading was closed {:?} after the bulk began",
        started.elapsed()
    );
    let text = server.handle.metrics().unwrap();
    assert!(
        text.contains("actioncable_disconnects_total{reason=\"timeout\"} 1\n"),
        "{text}"
    );
    drop(frozen);
    server.shutdown().await;
}

/// How many 64 KiB messages are addressed to the slow reader: 24 MiB.
const BULK: usize = 384;
const BULK_SIZE: usize = 64 * 1024;
/// Allowed RSS growth while the bulk is addressed to the slow reader.
const RSS_BOUND_KIB: u64 = 16 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_event_stream_reader_is_dropped_like_a_slow_websocket() {
    if !own_process(
        module_path!(),
        "a_slow_event_stream_reader_is_dropped_like_a_slow_websocket",
        WAIT * 6,
    )
    .await
    {
        return;
    }
    let rec = Recorder::new();
    let server = spawn_cable(
        builder(&rec)
            .metrics(true)
            .ping_interval(NO_BEAT)
            .outbound_capacity(64)
            .outbound_bytes(1024 * 1024)
            .close_timeout(Duration::from_millis(300)),
    )
    .await;
    let addr = server.addr;
    // Fast readers of the lobby: two streams and two sockets.
    let mut fast_streams = Vec::new();
    for n in 0..2 {
        let mut sse = SseClient::open(addr, &events(LOBBY, &format!("user=fast{n}")), &[])
            .await
            .stream();
        sse.expect_confirmed().await;
        fast_streams.push(sse);
    }
    let mut fast_sockets = Vec::new();
    for n in 2..4 {
        let mut ws = server.user(&format!("fast{n}")).await;
        ws.confirm(LOBBY).await;
        fast_sockets.push(ws);
    }
    // The slow one follows its own notifications and never reads again.
    let mut slow = SseClient::open(addr, "/events?channel=NotificationChannel&user=slow", &[])
        .await
        .stream();
    slow.expect_confirmed().await;
    let slow = slow.into_tcp();

    let baseline = rss_kib();
    let mut peak = baseline;
    let blob = "x".repeat(BULK_SIZE);
    let started = Instant::now();
    let mut dropped_after = None;
    for i in 0..BULK {
        server
            .handle
            .broadcast("notification:slow", &json!({ "blob": blob }))
            .await
            .unwrap();
        server
            .handle
            .broadcast("chat:lobby", &json!({ "seq": i }))
            .await
            .unwrap();
        if i % 16 == 15 {
            tokio::task::yield_now().await;
            peak = peak.max(rss_kib());
        }
        if dropped_after.is_none() && rec.count("disconnect:current_user=slow") > 0 {
            dropped_after = Some(i);
        }
    }
    rec.wait_for("disconnect:current_user=slow").await;
    peak = peak.max(rss_kib());
    let growth = peak.saturating_sub(baseline);
    eprintln!(
        "slow event stream: {BULK} x 64 KiB addressed to it in {:?}, dropped after message \
         {dropped_after:?}; RSS baseline {baseline} KiB, peak {peak} KiB, growth {growth} KiB \
         (bound {RSS_BOUND_KIB} KiB)",
        started.elapsed()
    );
    assert!(
        growth < RSS_BOUND_KIB,
        "RSS grew by {growth} KiB (bound {RSS_BOUND_KIB} KiB)"
    );
    // Everyone else got every lobby message, in order.
    for sse in &mut fast_streams {
        for i in 0..BULK {
            assert_eq!(sse.next_event().await.json(), json!({ "seq": i }));
        }
    }
    for ws in &mut fast_sockets {
        for i in 0..BULK {
            assert_eq!(ws.recv_message(LOBBY).await, json!({ "seq": i }));
        }
    }
    // Counted as a slow WebSocket is.
    let text = server.handle.metrics().unwrap();
    assert!(
        text.contains("actioncable_disconnects_total{reason=\"too_slow\"} 1\n"),
        "{text}"
    );
    let dropped = text
        .lines()
        .find_map(|l| l.strip_prefix("actioncable_frames_dropped_total "))
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(dropped > 0, "{text}");
    eventually("only the fast readers remain", || {
        server.handle.connection_count() == 4
    })
    .await;
    // The slow client's connection was cut: after what the kernel buffered, it ends.
    let mut slow = slow;
    let mut buf = vec![0u8; 256 * 1024];
    let mut drained = 0usize;
    within("the slow connection's end", async {
        loop {
            match slow.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    })
    .await;
    assert!(
        drained < BULK * (BULK_SIZE + 64),
        "it was sent everything ({drained} bytes)"
    );
    server.shutdown().await;
}
