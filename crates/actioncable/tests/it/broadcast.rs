//! Broadcasting: fan-out across connections and identifiers, `stream_for` naming, stopping
//! streams, `transmit`, bookkeeping, remote disconnect and shutdown.

use crate::support::*;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

#[tokio::test]
async fn a_broadcast_reaches_every_subscriber_under_its_own_identifier() {
    let (server, _) = spawn_default().await;
    let reordered = r#"{"room":"lobby","channel":"ChatChannel"}"#;
    let mut a = server.user("a").await;
    let mut b = server.user("b").await;
    let mut c = server.user("c").await;
    let mut outsider = server.user("d").await;
    a.confirm(LOBBY).await;
    b.confirm(LOBBY).await;
    c.confirm(reordered).await;
    c.confirm(LOBBY).await;
    outsider.confirm(KITCHEN).await;
    // lobby, kitchen, and the four users' internal `action_cable/<user>` streams.
    assert_eq!(server.handle.stream_count(), 6);

    let message = json!({ "text": "hello", "nested": { "list": [1, "two", null, 3.5] } });
    server
        .handle
        .broadcast("chat:lobby", &message)
        .await
        .unwrap();
    a.expect_frame(&data_frame(LOBBY, &message)).await;
    b.expect_frame(&data_frame(LOBBY, &message)).await;
    let mut got = vec![c.recv_text().await, c.recv_text().await];
    got.sort();
    let mut want = vec![data_frame(LOBBY, &message), data_frame(reordered, &message)];
    want.sort();
    assert_eq!(got, want);
    outsider.expect_silence(SILENCE).await;

    // The payload is passed through as the broadcaster encoded it.
    server
        .handle
        .broadcast_json("chat:lobby", r#"{"z":1,  "a":[true]}"#)
        .await
        .unwrap();
    a.expect_frame(&format!(
        r#"{{"identifier":{},"message":{{"z":1,  "a":[true]}}}}"#,
        serde_json::to_string(LOBBY).unwrap()
    ))
    .await;
    // Scalars are messages too.
    server
        .handle
        .broadcast("chat:lobby", "just a string")
        .await
        .unwrap();
    a.expect_data(LOBBY, &json!("just a string")).await;
    b.recv_text().await;
    b.expect_data(LOBBY, &json!("just a string")).await;

    // A broadcast from a channel action reaches the room, the speaker included.
    a.perform(LOBBY, "speak", json!({ "text": "from a" })).await;
    let said = json!({ "user": "a", "text": "from a" });
    a.expect_data(LOBBY, &said).await;
    b.expect_data(LOBBY, &said).await;
    outsider.expect_silence(SILENCE).await;
}

#[tokio::test]
async fn broadcasts_arrive_in_order() {
    let (server, _) = spawn_default().await;
    let mut a = server.client().await;
    let mut b = server.client().await;
    a.confirm(LOBBY).await;
    b.confirm(LOBBY).await;
    for i in 0..200 {
        server
            .handle
            .broadcast("chat:lobby", &json!({ "seq": i }))
            .await
            .unwrap();
    }
    for i in 0..200 {
        a.expect_data(LOBBY, &json!({ "seq": i })).await;
        b.expect_data(LOBBY, &json!({ "seq": i })).await;
    }
}

#[tokio::test]
async fn broadcast_to_and_stream_for_agree_on_the_stream_name() {
    let (server, _) = spawn_default().await;
    let mut alice = server.user("alice").await;
    let mut alice_phone = server.user("alice").await;
    let mut bob = server.user("bob").await;
    alice.confirm(NOTIFICATIONS).await;
    alice_phone.confirm(NOTIFICATIONS).await;
    bob.confirm(NOTIFICATIONS).await;
    // notification:alice, notification:bob, action_cable/alice, action_cable/bob.
    assert_eq!(server.handle.stream_count(), 4);

    // `broadcast_to(NotificationChannel, "alice")` is the stream `notification:alice`.
    server
        .handle
        .broadcast_to("NotificationChannel", "alice", &json!({ "n": 1 }))
        .await
        .unwrap();
    alice.expect_data(NOTIFICATIONS, &json!({ "n": 1 })).await;
    alice_phone
        .expect_data(NOTIFICATIONS, &json!({ "n": 1 }))
        .await;
    server
        .handle
        .broadcast("notification:alice", &json!({ "n": 2 }))
        .await
        .unwrap();
    alice.expect_data(NOTIFICATIONS, &json!({ "n": 2 })).await;
    alice_phone
        .expect_data(NOTIFICATIONS, &json!({ "n": 2 }))
        .await;
    bob.expect_silence(SILENCE).await;

    // The channel's own `broadcast_to` uses the same name.
    bob.perform(NOTIFICATIONS, "mark_read", json!({ "id": 7 }))
        .await;
    bob.expect_data(NOTIFICATIONS, &json!({ "read": 7 })).await;
    alice.expect_silence(SILENCE).await;

    // `stop_stream_for` stops it for that subscription only.
    alice.perform(NOTIFICATIONS, "mute", json!({})).await;
    alice
        .perform(NOTIFICATIONS, "mark_read", json!({ "id": 8 }))
        .await;
    alice_phone
        .expect_data(NOTIFICATIONS, &json!({ "read": 8 }))
        .await;
    alice.expect_silence(SILENCE).await;
}

#[tokio::test]
async fn stop_stream_from_and_stop_all_streams_stop_delivery() {
    let (server, _) = spawn_default().await;
    let mut c = server.client().await;
    let mut witness = server.client().await;
    c.confirm(LOBBY).await;
    witness.confirm(LOBBY).await;

    c.perform(LOBBY, "follow", json!({ "stream": "extra" }))
        .await;
    c.perform(LOBBY, "follow", json!({ "stream": "more" }))
        .await;
    // Following twice is harmless.
    c.perform(LOBBY, "follow", json!({ "stream": "more" }))
        .await;
    c.perform(LOBBY, "streams", json!({})).await;
    c.expect_data(
        LOBBY,
        &json!({ "streams": ["chat:lobby", "extra", "more"] }),
    )
    .await;
    assert_eq!(server.handle.stream_count(), 3);
    server
        .handle
        .broadcast("extra", &json!("e1"))
        .await
        .unwrap();
    c.expect_data(LOBBY, &json!("e1")).await;
    server.handle.broadcast("more", &json!("m1")).await.unwrap();
    c.expect_data(LOBBY, &json!("m1")).await;

    // stop_stream_from
    c.perform(LOBBY, "stop_stream", json!({ "stream": "extra" }))
        .await;
    c.perform(LOBBY, "streams", json!({})).await;
    c.expect_data(LOBBY, &json!({ "streams": ["chat:lobby", "more"] }))
        .await;
    assert_eq!(server.handle.stream_count(), 2);
    server
        .handle
        .broadcast("extra", &json!("e2"))
        .await
        .unwrap();
    c.expect_silence(SILENCE).await;
    server.handle.broadcast("more", &json!("m2")).await.unwrap();
    c.expect_data(LOBBY, &json!("m2")).await;
    // Stopping a stream that is not streamed is harmless.
    c.perform(LOBBY, "stop_stream", json!({ "stream": "never" }))
        .await;

    // stop_all_streams: nothing arrives any more, but the subscription lives on.
    c.perform(LOBBY, "stop_all", json!({})).await;
    c.perform(LOBBY, "streams", json!({})).await;
    c.expect_data(LOBBY, &json!({ "streams": [] })).await;
    // The witness still holds chat:lobby.
    assert_eq!(server.handle.stream_count(), 1);
    server
        .handle
        .broadcast("chat:lobby", &json!("l"))
        .await
        .unwrap();
    server.handle.broadcast("more", &json!("m3")).await.unwrap();
    witness.expect_data(LOBBY, &json!("l")).await;
    c.expect_silence(SILENCE).await;
    c.perform(LOBBY, "whoami", json!({})).await;
    c.expect_data(LOBBY, &json!({ "user": "anonymous" })).await;

    // Streams can start again.
    c.perform(LOBBY, "follow", json!({ "stream": "chat:lobby" }))
        .await;
    c.perform(LOBBY, "streams", json!({})).await;
    c.expect_data(LOBBY, &json!({ "streams": ["chat:lobby"] }))
        .await;
    server
        .handle
        .broadcast("chat:lobby", &json!("again"))
        .await
        .unwrap();
    c.expect_data(LOBBY, &json!("again")).await;
    witness.expect_data(LOBBY, &json!("again")).await;
}

#[tokio::test]
async fn transmit_reaches_only_the_sender() {
    let (server, _) = spawn_default().await;
    let mut a = server.user("a").await;
    let mut b = server.user("b").await;
    a.confirm(LOBBY).await;
    b.confirm(LOBBY).await;
    a.confirm(ECHO).await;
    b.confirm(ECHO).await;
    a.perform(LOBBY, "whoami", json!({})).await;
    a.expect_data(LOBBY, &json!({ "user": "a" })).await;
    a.assert_echo(ECHO, json!({ "only": "a" })).await;
    b.expect_silence(SILENCE).await;
}

#[tokio::test]
async fn broadcasting_to_a_stream_nobody_listens_to_is_fine() {
    let (server, _) = spawn_default().await;
    server
        .handle
        .broadcast("nobody:here", &json!({ "x": 1 }))
        .await
        .unwrap();
    assert_eq!(server.handle.stream_count(), 0);
    let mut c = server.client().await;
    c.confirm(ECHO).await;
    c.perform(
        ECHO,
        "broadcast",
        json!({ "stream": "nobody:here", "message": 1 }),
    )
    .await;
    c.assert_echo(ECHO, json!("ok")).await;
    assert_eq!(server.handle.stream_count(), 0);

    // A payload that is not JSON is refused before it reaches anyone.
    assert!(
        server
            .handle
            .broadcast_json("chat:lobby", "not json")
            .await
            .is_err()
    );
}

#[tokio::test]
async fn counts_return_to_zero_when_clients_leave() {
    let (server, rec) = spawn_default().await;
    let mut clients = Vec::new();
    for i in 0..6 {
        let mut c = server.user(&format!("u{i}")).await;
        c.confirm(LOBBY).await;
        c.confirm(KITCHEN).await;
        c.confirm(NOTIFICATIONS).await;
        c.confirm(&format!(r#"{{"channel":"ChatChannel","room":"own{i}"}}"#))
            .await;
        c.perform(
            LOBBY,
            "follow",
            json!({ "stream": format!("extra{}", i % 2) }),
        )
        .await;
        c.perform(LOBBY, "streams", json!({})).await;
        c.recv_text().await;
        clients.push(c);
    }
    assert_eq!(server.handle.connection_count(), 6);
    // lobby, kitchen, 6 notification, 6 own rooms, 2 extras, 6 internal `action_cable/u<i>`.
    assert_eq!(server.handle.stream_count(), 22);

    // Some close politely, some drop the TCP connection, some unsubscribe first.
    let mut it = clients.into_iter();
    let mut first = it.next().unwrap();
    first.send_unsubscribe(LOBBY).await;
    first.send_unsubscribe(KITCHEN).await;
    first.close().await;
    for (i, c) in it.enumerate() {
        if i % 2 == 0 {
            c.close().await;
        } else {
            drop(c);
        }
    }
    eventually("every connection and stream is released", || {
        server.handle.connection_count() == 0 && server.handle.stream_count() == 0
    })
    .await;
    for i in 0..6 {
        rec.wait_for(&format!("disconnect:current_user=u{i}")).await;
    }
    assert_eq!(rec.count(&format!("unsubscribed:{LOBBY}")), 6);
    assert_eq!(rec.count(&format!("unsubscribed:{KITCHEN}")), 6);
}

#[tokio::test]
async fn disconnect_local_sends_remote_and_closes() {
    let (server, rec) = spawn_default().await;
    let mut alice1 = server.user("alice").await;
    let mut alice2 = server.user("alice").await;
    let mut bob = server.user("bob").await;
    alice1.confirm(LOBBY).await;
    bob.confirm(LOBBY).await;

    assert_eq!(
        server
            .handle
            .disconnect_local("current_user", "alice", true),
        2
    );
    alice1.expect_disconnect("remote", true).await;
    alice2.expect_disconnect("remote", true).await;
    rec.wait_for_n("disconnect:current_user=alice", 2).await;
    rec.wait_for(&format!("unsubscribed:{LOBBY}")).await;
    eventually("alice's connections are gone", || {
        server.handle.connection_count() == 1
    })
    .await;

    // `reconnect: false` is passed through; unknown users match nothing.
    assert_eq!(
        server
            .handle
            .disconnect_local("current_user", "nobody", true),
        0
    );
    assert_eq!(server.handle.disconnect_local("other_key", "bob", true), 0);
    assert_eq!(
        server.handle.disconnect_local("current_user", "bob", false),
        1
    );
    bob.expect_disconnect("remote", false).await;
    eventually("bob is gone", || {
        server.handle.connection_count() == 0 && server.handle.stream_count() == 0
    })
    .await;
}

/// `/ready` (the readiness route) answers 200 while the node serves, and 503 from the first
/// moment of a shutdown, while the listener still answers: a load balancer stops sending new
/// clients before the node goes.
#[tokio::test]
async fn readiness_turns_503_when_shutdown_begins_while_the_listener_still_answers() {
    let (server, _) = spawn_default().await;
    let ready = http_request(server.addr, "GET", "/ready", &[], None).await;
    assert_eq!(ready.status, 200, "{ready:?}");
    assert_eq!(ready.header("content-type"), Some("application/json"));
    assert_eq!(
        ready.json(),
        json!({ "ready": true, "shutting_down": false, "pubsub_connected": true })
    );

    // A client that reads nothing keeps the shutdown going until the server stops waiting for
    // its close reply.
    let mut a = server.user("a").await;
    a.confirm(LOBBY).await;
    let handle = server.handle.clone();
    let shutdown = tokio::spawn(async move { handle.shutdown(WAIT).await });
    let mut not_ready = None;
    for _ in 0..100 {
        let reply = http_request(server.addr, "GET", "/ready", &[], None).await;
        if reply.status == 503 {
            not_ready = Some(reply);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let not_ready = not_ready.expect("/ready answered 503 during the shutdown");
    assert_eq!(
        not_ready.json(),
        json!({ "ready": false, "shutting_down": true, "pubsub_connected": true })
    );
    a.expect_disconnect("server_restart", true).await;
    assert!(within("shutdown", shutdown).await.unwrap());
}

#[tokio::test]
async fn shutdown_sends_server_restart_to_everyone_and_runs_callbacks() {
    let (server, rec) = spawn_default().await;
    let mut a = server.user("a").await;
    let mut b = server.user("b").await;
    let mut anon = server.client().await;
    a.confirm(LOBBY).await;
    a.confirm(ECHO).await;
    b.confirm(KITCHEN).await;

    let handle = server.handle.clone();
    let shutdown = tokio::spawn(async move { handle.shutdown(WAIT).await });
    for c in [&mut a, &mut b, &mut anon] {
        c.expect_disconnect("server_restart", true).await;
    }
    let finished = within("shutdown", shutdown).await.unwrap();
    assert!(finished, "shutdown did not finish within its deadline");

    // Every subscription ended and every connection's disconnect ran.
    for e in [
        format!("unsubscribed:{LOBBY}"),
        format!("unsubscribed:{ECHO}"),
        format!("unsubscribed:{KITCHEN}"),
        "disconnect:current_user=a".to_owned(),
        "disconnect:current_user=b".to_owned(),
        "disconnect:anonymous".to_owned(),
    ] {
        assert_eq!(rec.count(&e), 1, "{e}: {:?}", rec.events());
    }
    assert_eq!(server.handle.connection_count(), 0);
    assert_eq!(server.handle.stream_count(), 0);

    // New connections are refused after shutdown.
    let refused = CableClient::connect(server.addr, Connect::new()).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 503),
        Err(e) => panic!("expected HTTP 503, got {e}"),
        Ok(_) => panic!("a connection was accepted after shutdown"),
    }
}

/// For `?gate=1`, records `connecting` and holds `connect` until a permit is added; other
/// requests connect at once.
struct GatedConnection {
    rec: Recorder,
    gate: Arc<Semaphore>,
}

#[actioncable::async_trait]
impl actioncable::Connection for GatedConnection {
    async fn connect(
        &self,
        req: &actioncable::ConnectRequest,
    ) -> Result<actioncable::Identity, actioncable::Reject> {
        if req.query("gate").is_none() {
            return Ok(actioncable::Identity::anonymous());
        }
        self.rec.record("connecting");
        let _permit = self.gate.acquire().await;
        Ok(actioncable::Identity::new("current_user", "late"))
    }

    async fn disconnect(&self, identity: &actioncable::Identity) {
        self.rec.record(format!("disconnect:{identity}"));
    }
}

#[tokio::test]
async fn shutdown_also_reaches_a_connection_that_was_authenticating() {
    let rec = Recorder::new();
    let gate = Arc::new(Semaphore::new(0));
    let server = spawn_cable(builder(&rec).connection(GatedConnection {
        rec: rec.clone(),
        gate: gate.clone(),
    }))
    .await;
    let addr = server.addr;
    let connecting = tokio::spawn(async move {
        CableClient::connect(addr, Connect::new().path("/cable?gate=1")).await
    });
    rec.wait_for("connecting").await;

    let handle = server.handle.clone();
    let shutdown = tokio::spawn(async move { handle.shutdown(WAIT).await });
    // Once new upgrades get 503, the shutdown has begun. (A probe that still gets in is
    // dropped at once.)
    let origin = server.origin();
    loop {
        let (reply, _) = raw_upgrade(addr, "/cable", &[("Origin", &origin)]).await;
        if reply.status == 503 {
            break;
        }
        assert_eq!(reply.status, 101, "{reply:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // The connection finishes authenticating after the shutdown began: it must still be told.
    gate.add_permits(1);
    let mut c = within("the gated connect", connecting)
        .await
        .unwrap()
        .unwrap();
    c.expect_welcome().await;
    c.expect_disconnect("server_restart", true).await;
    assert!(within("shutdown", shutdown).await.unwrap());
    rec.wait_for("disconnect:current_user=late").await;
    assert_eq!(server.handle.connection_count(), 0);
}

#[tokio::test]
async fn an_action_that_awaits_between_transmits_never_overflows_the_outbox() {
    let rec = Recorder::new();
    let server = spawn_cable(builder(&rec).outbound_capacity(16)).await;
    let mut c = server.client().await;
    c.confirm(ECHO).await;
    // The client reads as fast as it can, so it is not too slow, however much one action
    // sends, as long as the action yields to the session now and then.
    c.perform(ECHO, "drip", json!({ "n": 500 })).await;
    for i in 0..500 {
        c.expect_data(ECHO, &json!({ "drip": i })).await;
    }
    c.assert_echo(ECHO, json!("still connected")).await;
    assert_eq!(server.handle.connection_count(), 1);
}

#[tokio::test]
async fn deliveries_keep_flowing_while_an_action_awaits() {
    let rec = Recorder::new();
    let server = spawn_cable(builder(&rec).outbound_capacity(8)).await;
    let mut c = server.client().await;
    c.confirm(ECHO).await;
    c.confirm(LOBBY).await;
    c.perform(ECHO, "hold", json!({})).await;
    rec.wait_for("holding").await;
    // While the action waits, five times the outbound capacity in broadcasts is delivered,
    // each read as soon as it comes.
    for i in 0..40 {
        server
            .handle
            .broadcast("chat:lobby", &json!({ "during": i }))
            .await
            .unwrap();
        c.expect_data(LOBBY, &json!({ "during": i })).await;
    }
    rec.release();
    c.expect_data(ECHO, &json!({ "released": true })).await;
    c.assert_echo(ECHO, json!("still connected")).await;
}

#[tokio::test]
async fn a_client_that_stops_reading_is_dropped_without_stalling_others() {
    let rec = Recorder::new();
    let server = spawn_cable(
        builder(&rec)
            .outbound_capacity(8)
            .close_timeout(Duration::from_millis(300)),
    )
    .await;
    let mut slow = server.user("slow").await;
    let mut fast = server.user("fast").await;
    slow.confirm(LOBBY).await;
    fast.confirm(LOBBY).await;

    // 64 KiB messages until the slow client's socket buffers and its outbox are full. The fast
    // client reads each one before the next is sent.
    let blob = "x".repeat(64 * 1024);
    let mut sent = 0;
    while rec.count("disconnect:current_user=slow") == 0 {
        assert!(sent < 2000, "the slow client was never dropped");
        let message = json!({ "seq": sent, "blob": blob });
        server
            .handle
            .broadcast("chat:lobby", &message)
            .await
            .unwrap();
        fast.expect_data(LOBBY, &message).await;
        sent += 1;
    }
    eventually("the slow client is unregistered", || {
        server.handle.connection_count() == 1
    })
    .await;
    fast.perform(LOBBY, "whoami", json!({})).await;
    fast.expect_data(LOBBY, &json!({ "user": "fast" })).await;

    // The slow client gets an in-order prefix of the broadcasts, then the connection ends
    // (with `too_slow` if the server managed to write it, else abruptly).
    let mut seq = 0;
    loop {
        match slow.next_frame_or_end().await {
            Some(text) if text == disconnect_frame("too_slow", true) => break,
            Some(text) => {
                let v: serde_json::Value = serde_json::from_str(&text).unwrap();
                if v["type"] == "ping" {
                    continue;
                }
                assert_eq!(v["message"]["seq"], seq, "frames out of order");
                seq += 1;
            }
            None => break,
        }
    }
    assert!(seq < sent);
}

#[tokio::test]
async fn remote_disconnect_reaches_every_connection_of_an_identity_through_pubsub() {
    let (server, rec) = spawn_default().await;
    let mut alice1 = server.user("alice").await;
    let mut alice2 = server.user("alice").await;
    let mut bob = server.user("bob").await;
    alice1.confirm(LOBBY).await;
    bob.confirm(LOBBY).await;

    // Goes through the pub/sub adapter on `action_cable/alice`, as Rails' remote connections do,
    // so with Redis it reaches alice on every node.
    let alice = actioncable::Identity::new("current_user", "alice");
    server
        .handle
        .remote_disconnect(&alice, false)
        .await
        .unwrap();
    alice1.expect_disconnect("remote", false).await;
    alice2.expect_disconnect("remote", false).await;
    rec.wait_for_n("disconnect:current_user=alice", 2).await;

    // Rails 6.1 publishes `{"type":"disconnect"}` without `reconnect`: reconnect by default.
    server
        .handle
        .broadcast_json("action_cable/bob", r#"{"type":"disconnect"}"#)
        .await
        .unwrap();
    bob.expect_disconnect("remote", true).await;
    eventually("everyone is gone and no stream is left", || {
        server.handle.connection_count() == 0 && server.handle.stream_count() == 0
    })
    .await;
}

#[tokio::test]
async fn an_internal_stream_carries_no_data_to_clients() {
    let (server, _) = spawn_default().await;
    let mut alice = server.user("alice").await;
    alice.confirm(LOBBY).await;
    server
        .handle
        .broadcast("action_cable/alice", &json!({ "type": "something else" }))
        .await
        .unwrap();
    alice.expect_silence(SILENCE).await;
    alice.perform(LOBBY, "whoami", json!({})).await;
    alice.expect_data(LOBBY, &json!({ "user": "alice" })).await;
}
