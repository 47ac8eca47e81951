//! Per-connection limits over real sockets: a frozen (half-open) peer is found by the client
//! timeout and cleaned up while a live idle client stays, and a flooding client is throttled
//! by `max_commands_per_second` without losing a command and without slowing anyone else.

use crate::support::*;
use serde_json::json;
use std::sync::OnceLock;
use std::time::Duration;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

/// The server's warnings, from every test in this module (each enters it before its server
/// starts).
fn warnings() -> &'static LogCapture {
    static LOGS: OnceLock<LogCapture> = OnceLock::new();
    LOGS.get_or_init(|| LogCapture::new("actioncable=warn"))
}

fn count_in_log(needle: &str) -> usize {
    warnings().count(needle)
}

/// Reads `client` for `period`, answering the server's WebSocket pings as any WebSocket library
/// does (tungstenite queues the pong when it reads a ping); returns how many pings came.
/// Anything but pings and the ActionCable ping is a failure.
async fn idle_but_alive(client: &mut CableClient, period: Duration) -> usize {
    let deadline = Instant::now() + period;
    let mut pings = 0;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return pings;
        }
        match client.next_frame(left).await {
            None => return pings,
            Some(Message::Ping(_)) => pings += 1,
            Some(Message::Text(t)) if is_ping(&t) => {}
            Some(other) => panic!("expected nothing but pings, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_frozen_peer_is_cleaned_up_within_client_timeout_and_a_live_idle_one_stays() {
    const TIMEOUT: Duration = Duration::from_secs(1);
    let _logs = warnings().enter();
    let rec = Recorder::new();
    let server = spawn_cable(builder(&rec).client_timeout(TIMEOUT)).await;
    let origin = server.origin();
    const FROZEN_ROOM: &str = r#"{"channel":"ChatChannel","room":"frozen"}"#;

    // The live client: subscribed, then silent except for answering pings.
    let mut alive = server.user("alive").await;
    alive.confirm(LOBBY).await;
    let baseline_streams = server.handle.stream_count();

    // The frozen client: completes the handshake by hand, subscribes, and from then on never
    // reads a byte (so never answers a ping) and never closes; its socket stays open.
    let (reply, frozen) = raw_upgrade(
        server.addr,
        "/cable?user=frozen",
        &[
            ("Origin", &origin),
            ("Sec-WebSocket-Protocol", CONSUMER_PROTOCOLS),
        ],
    )
    .await;
    assert_eq!(reply.status, 101);
    let mut frozen = frozen.unwrap();
    frozen.send_subscribe(FROZEN_ROOM).await;
    let frozen_at = Instant::now();
    rec.wait_for(&format!("subscribed:{FROZEN_ROOM}")).await;
    assert_eq!(server.handle.connection_count(), 2);
    // chat:frozen and the internal action_cable/frozen.
    assert_eq!(server.handle.stream_count(), baseline_streams + 2);
    // Deliveries keep being written to it meanwhile (they pile up in its socket buffers).
    for i in 0..20 {
        server
            .handle
            .broadcast("chat:frozen", &json!({ "i": i }))
            .await
            .unwrap();
    }

    // While the live client idles (and answers pings), the frozen one is dropped.
    let idle = tokio::spawn(async move {
        let pings = idle_but_alive(&mut alive, TIMEOUT * 3).await;
        (alive, pings)
    });
    let mut cleaned_after = None;
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if server.handle.connection_count() == 1 && rec.count("disconnect:current_user=frozen") == 1
        {
            cleaned_after = Some(frozen_at.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let cleaned_after = cleaned_after.expect("the frozen peer was never cleaned up");
    eprintln!(
        "frozen peer cleaned up {cleaned_after:?} after its last frame (client_timeout {TIMEOUT:?})"
    );
    // Not before the timeout (the server heard the subscribe after `frozen_at`), and within it
    // plus slack for a loaded machine.
    assert!(
        cleaned_after >= TIMEOUT,
        "dropped too early: {cleaned_after:?}"
    );
    assert!(cleaned_after < TIMEOUT + WAIT, "{cleaned_after:?}");
    rec.wait_for(&format!("unsubscribed:{FROZEN_ROOM}")).await;
    eventually("the frozen peer's streams are gone", || {
        server.handle.stream_count() == baseline_streams
    })
    .await;

    // The live client was pinged (by WebSocket ping, at half the timeout) and stayed.
    let (mut alive, pings) = within("the idle client", idle).await.unwrap();
    assert!(pings >= 1, "the idle client was never pinged");
    assert_eq!(server.handle.connection_count(), 1);
    assert_eq!(rec.count("disconnect:current_user=alive"), 0);
    alive.perform(LOBBY, "whoami", json!({})).await;
    alive.expect_data(LOBBY, &json!({ "user": "alive" })).await;

    // The frozen socket was really closed by the server: reading it now gives what was
    // buffered, then the end (bounded: 20 deliveries, a confirm, a welcome, a few pings).
    let mut frames = 0;
    while frozen.next_frame_or_end().await.is_some() {
        frames += 1;
        assert!(frames < 200, "the frozen socket never ended");
    }
}

#[tokio::test]
async fn a_live_client_that_only_answers_pings_is_never_dropped() {
    // Three timeouts long, with nothing but pongs from the client: still connected.
    const TIMEOUT: Duration = Duration::from_millis(600);
    let _logs = warnings().enter();
    let rec = Recorder::new();
    let server = spawn_cable(builder(&rec).client_timeout(TIMEOUT)).await;
    let mut c = server.user("quiet").await;
    c.confirm(ECHO).await;
    let pings = idle_but_alive(&mut c, TIMEOUT * 4).await;
    assert!(pings >= 2, "pinged {pings} times in four timeouts");
    c.assert_echo(ECHO, json!("still here")).await;
    assert_eq!(server.handle.connection_count(), 1);
    assert_eq!(rec.count("disconnect:current_user=quiet"), 0);
}

#[tokio::test]
async fn a_flood_of_commands_is_throttled_losslessly_and_others_are_unaffected() {
    const RATE: u32 = 100;
    const FLOOD: usize = 500;
    let _logs = warnings().enter();
    let rec = Recorder::new();
    let server = spawn_cable(builder(&rec).max_commands_per_second(RATE)).await;
    let mut flooder = server.user("flooder").await;
    let mut bystander = server.user("bystander").await;
    flooder.confirm(ECHO).await;
    bystander.confirm(ECHO).await;
    // Let both budgets refill after the subscribes (a full burst is 1 s of tokens).
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let started = Instant::now();
    for i in 0..FLOOD {
        flooder.perform(ECHO, "echo", json!({ "payload": i })).await;
    }
    // While the flooder's backlog drains at RATE per second, the bystander's own commands are
    // answered at once: all of them before the flooder's last echo.
    let bystander_task = tokio::spawn(async move {
        let t = Instant::now();
        for i in 0..50 {
            bystander.assert_echo(ECHO, json!({ "by": i })).await;
        }
        (bystander, t.elapsed())
    });

    for i in 0..FLOOD {
        flooder.expect_data(ECHO, &json!({ "echo": i })).await;
    }
    let took = started.elapsed();
    let (mut bystander, bystander_took) = within("bystander", bystander_task).await.unwrap();
    eprintln!(
        "{FLOOD} commands at max_commands_per_second({RATE}) took {took:?} \
         (ideal {:.1} s); the bystander's 50 round trips took {bystander_took:?}",
        (FLOOD as f64 - f64::from(RATE)) / f64::from(RATE)
    );
    // Lower bound only: everything beyond the burst waits for tokens. (Loose: 75 % of ideal.)
    let ideal = Duration::from_secs_f64((FLOOD as f64 - f64::from(RATE)) / f64::from(RATE));
    assert!(took >= ideal.mul_f64(0.75), "not throttled: {took:?}");
    // The bystander was not held up behind the flood.
    assert!(
        bystander_took < took,
        "bystander {bystander_took:?} vs flood {took:?}"
    );
    // Both still connected and working; nothing was dropped (every echo 0..FLOOD came, in
    // order, above).
    flooder.assert_echo(ECHO, json!("after")).await;
    bystander.assert_echo(ECHO, json!("after")).await;
    assert_eq!(server.handle.connection_count(), 2);
    assert_eq!(rec.count("disconnect:current_user=flooder"), 0);
    // Logged once for the episode, not once per delayed command (400 of them). Loose: a
    // machine stalled for a whole second mid-flood may start a second episode.
    let logged = count_in_log("throttling a connection");
    assert!(
        (1..=2).contains(&logged),
        "throttling logged {logged} times"
    );
}

#[tokio::test]
async fn the_client_timeout_ping_never_costs_a_delivery() {
    // A subscriber that only listens (sends no command) is pinged every half timeout. A large
    // backlog keeps its session busy writing, so every ping falls due mid-write; not one
    // delivery may be lost or reordered around it, and the client's pongs must still be read
    // while the session is busy (a "Connection reset" below means the server took this live
    // client for dead). The outbox is made large enough that the backlog is not "too slow".
    const TIMEOUT: Duration = Duration::from_millis(400);
    const N: u64 = 20_000;
    let _logs = warnings().enter();
    let rec = Recorder::new();
    let server = spawn_cable(
        builder(&rec)
            .client_timeout(TIMEOUT)
            .outbound_capacity(2 * N as usize),
    )
    .await;
    let mut listener = server.user("listener").await;
    listener.confirm(LOBBY).await;

    let handle = server.handle.clone();
    let broadcaster = tokio::spawn(async move {
        for seq in 0..N {
            handle
                .broadcast("chat:lobby", &json!({ "seq": seq }))
                .await
                .unwrap();
            if seq % 256 == 0 {
                tokio::task::yield_now().await;
            }
        }
    });
    let mut pings = 0;
    let mut next = 0u64;
    let deadline = Instant::now() + WAIT * 3;
    while next < N {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "deliveries stopped at {next}");
        match listener.next_frame(left).await {
            Some(Message::Ping(_)) => pings += 1,
            Some(Message::Text(t)) if is_ping(&t) => {}
            Some(Message::Text(t)) => {
                let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                assert_eq!(
                    v["message"]["seq"], next,
                    "a delivery was lost or reordered (after {pings} WebSocket pings)"
                );
                next += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    within("broadcaster", broadcaster).await.unwrap();
    assert!(
        pings >= 1,
        "no WebSocket ping came; the test proves nothing"
    );
    eprintln!("{N} deliveries in order across {pings} WebSocket pings");
}

/// Binary frames are not commands (Rails refuses them too), but they cost a command's budget:
/// a flood of them is read no faster than `max_commands_per_second`, logs one line, and the
/// connection's commands behind them still run.
#[tokio::test]
async fn a_flood_of_binary_frames_is_throttled_and_logged_once() {
    const RATE: u32 = 100;
    const FLOOD: usize = 400;
    let _logs = warnings().enter();
    let rec = Recorder::new();
    let server = spawn_cable(builder(&rec).max_commands_per_second(RATE)).await;
    let mut flooder = server.user("binary-flooder").await;
    let mut bystander = server.user("bystander").await;
    flooder.confirm(ECHO).await;
    bystander.confirm(ECHO).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let logged_before = count_in_log("ignoring a binary frame");

    let started = Instant::now();
    for _ in 0..FLOOD {
        flooder.send(Message::Binary(vec![0u8; 1024].into())).await;
    }
    // The echo queued behind the flood comes back only once the flood was read at RATE.
    flooder
        .perform(ECHO, "echo", json!({ "payload": "behind the flood" }))
        .await;
    let bystander_started = Instant::now();
    for i in 0..20 {
        bystander.assert_echo(ECHO, json!({ "by": i })).await;
    }
    let bystander_took = bystander_started.elapsed();
    flooder
        .expect_data(ECHO, &json!({ "echo": "behind the flood" }))
        .await;
    let took = started.elapsed();
    eprintln!(
        "{FLOOD} binary frames at max_commands_per_second({RATE}) took {took:?}; \
         the bystander's 20 round trips meanwhile {bystander_took:?}"
    );
    let ideal = Duration::from_secs_f64((FLOOD as f64 + 1.0 - f64::from(RATE)) / f64::from(RATE));
    assert!(
        took >= ideal.mul_f64(0.75),
        "binary frames not throttled: {took:?}"
    );
    assert!(
        bystander_took < took,
        "bystander {bystander_took:?} vs flood {took:?}"
    );
    // One warning for the whole flood (other tests of this module may log their own).
    assert_eq!(count_in_log("ignoring a binary frame") - logged_before, 1);
    assert_eq!(server.handle.connection_count(), 2);
}
