//! Presence and whisper over real sockets (AnyCable's extended protocol): join and leave events
//! byte for byte to extended-protocol subscribers only, a member counted once across its
//! connections and kept for the grace period, whispers to everyone but the sender without
//! channel code, and every refusal (no such stream, too large, malformed) ignored, logged and
//! harmless to the connection and to the others.

use crate::support::*;
use cable_test_support::presence::*;
use serde_json::json;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const ROOM: &str = "room:lobby";

/// Everything this module's servers log (one capture for the module, entered by each test).
fn logs() -> &'static LogCapture {
    static LOGS: OnceLock<LogCapture> = OnceLock::new();
    LOGS.get_or_init(|| LogCapture::new("actioncable=debug"))
}

fn presence_builder(rec: &Recorder, grace: Duration) -> actioncable::CableBuilder<TestState> {
    builder(rec)
        .channel::<PresenceChannel>()
        .presence_grace(grace)
}

/// A welcomed extended-protocol client of `user`.
async fn ext(server: &CableServer, user: &str) -> CableClient {
    let c = CableClient::welcomed(
        server.addr,
        Connect::new()
            .path(&format!("/cable?user={user}"))
            .protocols(EXT_PROTOCOL),
    )
    .await;
    assert_eq!(c.protocol.as_deref(), Some(EXT_PROTOCOL));
    c
}

async fn joined(c: &mut CableClient, identifier: &str, id: &str, info: &str) {
    c.expect_frame(&presence_frame(identifier, &join_event(id, info)))
        .await;
}

async fn left(c: &mut CableClient, identifier: &str, id: &str) {
    c.expect_frame(&presence_frame(identifier, &leave_event(id)))
        .await;
}

#[tokio::test]
async fn ext_subscribers_see_joins_leaves_and_info_and_plain_ones_see_nothing_new() {
    let _log = logs().enter();
    let rec = Recorder::new();
    let server = spawn_cable(presence_builder(&rec, Duration::from_secs(15))).await;
    let id = presence_identifier(ROOM);
    let mut plain = server.user("pat").await;
    let mut ann = ext(&server, "ann").await;
    let mut bob = ext(&server, "bob").await;
    for c in [&mut plain, &mut ann, &mut bob] {
        c.confirm(&id).await;
    }
    // An empty room: AnyCable leaves `records` out.
    bob.send_json(&json!({ "command": "presence", "identifier": id, "data": {} }))
        .await;
    bob.expect_frame(&presence_frame(&id, r#"{"type":"info","total":0}"#))
        .await;

    ann.send_json(&join_command(&id, "ann", &json!({ "name": "Ann" })))
        .await;
    // Everyone with presence, the joiner included, as AnyCable does.
    joined(&mut ann, &id, "ann", r#"{"name":"Ann"}"#).await;
    joined(&mut bob, &id, "ann", r#"{"name":"Ann"}"#).await;
    bob.send_json(&json!({ "command": "presence", "identifier": id, "data": {} }))
        .await;
    bob.expect_frame(&presence_frame(
        &id,
        r#"{"type":"info","total":1,"records":[{"info":{"name":"Ann"},"id":"ann"}]}"#,
    ))
    .await;
    let members = server.handle.presence(ROOM).await.unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(
        (members[0].id.as_str(), members[0].info.as_deref()),
        ("ann", Some(r#"{"name":"Ann"}"#))
    );

    // The client's `leave` has no payload; it is immediate.
    ann.send_json(&json!({ "command": "leave", "identifier": id }))
        .await;
    left(&mut ann, &id, "ann").await;
    left(&mut bob, &id, "ann").await;
    assert!(server.handle.presence(ROOM).await.unwrap().is_empty());
    // The stock consumer's protocol knows none of it: not one frame.
    plain.expect_silence(SILENCE).await;
    // And a plain client's `join` is an unknown command, as before.
    plain.send_json(&join_command(&id, "pat", &json!({}))).await;
    plain.expect_silence(SILENCE).await;
    bob.expect_silence(SILENCE).await;
}

#[tokio::test]
async fn a_member_with_two_connections_leaves_only_after_its_last_plus_the_grace() {
    let _log = logs().enter();
    let rec = Recorder::new();
    let grace = Duration::from_millis(600);
    let server = spawn_cable(presence_builder(&rec, grace)).await;
    let id = presence_identifier(ROOM);
    let mut watcher = ext(&server, "bob").await;
    watcher.confirm(&id).await;
    let mut tab1 = ext(&server, "ann").await;
    let mut tab2 = ext(&server, "ann").await;
    tab1.confirm(&id).await;
    tab2.confirm(&id).await;
    tab1.send_json(&join_command(&id, "ann", &json!("A"))).await;
    joined(&mut watcher, &id, "ann", r#""A""#).await;
    tab2.send_json(&join_command(&id, "ann", &json!("A"))).await;
    // The second tab's join is no news: tab 1 got its own join only, nobody gets another.
    joined(&mut tab1, &id, "ann", r#""A""#).await;
    joined(&mut tab2, &id, "ann", r#""A""#).await;
    watcher.expect_silence(SILENCE).await;

    tab1.close().await;
    // One tab left: no leave, even well after the grace.
    watcher.expect_silence(grace * 2).await;
    assert_eq!(server.handle.presence(ROOM).await.unwrap().len(), 1);

    let closed = Instant::now();
    tab2.close().await;
    left(&mut watcher, &id, "ann").await;
    let after = closed.elapsed();
    assert!(
        after >= grace - Duration::from_millis(50),
        "left after {after:?}, before the grace of {grace:?}"
    );
}

#[tokio::test]
async fn a_reconnect_within_the_grace_does_not_flap() {
    let _log = logs().enter();
    let rec = Recorder::new();
    let grace = Duration::from_millis(800);
    let server = spawn_cable(presence_builder(&rec, grace)).await;
    let id = presence_identifier(ROOM);
    let mut watcher = ext(&server, "bob").await;
    watcher.confirm(&id).await;
    let mut ann = ext(&server, "ann").await;
    // `@anycable/core` resubscribes with its presence in the `subscribe`.
    ann.send_json(&json!({ "command": "subscribe", "identifier": id, "presence": { "id": "ann", "info": 1 } }))
        .await;
    ann.expect_confirm(&id).await;
    joined(&mut ann, &id, "ann", "1").await;
    joined(&mut watcher, &id, "ann", "1").await;
    ann.close().await;
    let mut again = ext(&server, "ann").await;
    again
        .send_json(&json!({ "command": "subscribe", "identifier": id, "presence": { "id": "ann", "info": 1 } }))
        .await;
    again.expect_confirm(&id).await;
    // Neither a leave nor a second join, through and past the old connection's grace.
    watcher.expect_silence(grace * 2).await;
    again.expect_silence(SILENCE).await;
    // An unsubscribe is no disconnect: the leave is immediate.
    let asked = Instant::now();
    again.send_unsubscribe(&id).await;
    left(&mut watcher, &id, "ann").await;
    assert!(
        asked.elapsed() < grace,
        "an unsubscribe waited for the grace"
    );
}

#[tokio::test]
async fn channel_code_joins_for_its_user_and_one_subscription_is_one_member() {
    let _log = logs().enter();
    let rec = Recorder::new();
    let server = spawn_cable(presence_builder(&rec, Duration::from_secs(15))).await;
    let id = presence_identifier(ROOM);
    let mut watcher = ext(&server, "bob").await;
    watcher.confirm(&id).await;
    let mut ann = server.user("ann").await;
    ann.confirm(&id).await;
    // A stock consumer is made present by its channel; it sees nothing of it.
    ann.perform(
        &id,
        "join_as",
        json!({ "id": "ann", "info": { "name": "Ann" } }),
    )
    .await;
    ann.expect_data(&id, &json!({ "joined": null })).await;
    joined(&mut watcher, &id, "ann", r#"{"name":"Ann"}"#).await;
    // Another id on the same subscription is refused; the same one is a no-op.
    ann.perform(&id, "join_as", json!({ "id": "eve" })).await;
    let refused = ann.recv_json().await;
    assert!(
        refused["message"]["joined"]
            .as_str()
            .is_some_and(|e| e.contains("already present")),
        "{refused}"
    );
    ann.perform(&id, "join_as", json!({ "id": "ann" })).await;
    ann.expect_data(&id, &json!({ "joined": null })).await;
    watcher.expect_silence(SILENCE).await;
    ann.perform(&id, "leave_now", json!({})).await;
    left(&mut watcher, &id, "ann").await;
}

#[tokio::test]
async fn a_whisper_reaches_the_others_never_the_sender_and_runs_no_channel_code() {
    let _log = logs().enter();
    let rec = Recorder::new();
    let server = spawn_cable(presence_builder(&rec, Duration::from_secs(15)).history(true)).await;
    let id = presence_identifier(ROOM);
    let mut ann = ext(&server, "ann").await;
    let mut bob = ext(&server, "bob").await;
    let mut plain = server.user("pat").await;
    for c in [&mut ann, &mut bob, &mut plain] {
        c.confirm(&id).await;
    }
    let typing = json!({ "event": "typing", "user": "ann" });
    let before = logs().count("Unable to process");
    ann.send_json(&whisper_command(&id, &typing)).await;
    // A plain data frame, never kept in the history (no position even with history on).
    bob.expect_data(&id, &typing).await;
    plain.expect_data(&id, &typing).await;
    ann.expect_silence(SILENCE).await;
    assert_eq!(
        logs().count("Unable to process"),
        before,
        "a whisper reached channel code"
    );
    // Still a working subscription for the sender.
    ann.perform(&id, "ping", json!({})).await;
    ann.expect_data(&id, &json!({ "performed": true })).await;
}

#[tokio::test]
async fn refused_whispers_are_dropped_and_logged_once_per_subscription() {
    let _log = logs().enter();
    let rec = Recorder::new();
    let server =
        spawn_cable(presence_builder(&rec, Duration::from_secs(15)).max_whisper_size(64)).await;
    let quiet = quiet_identifier("room:quiet");
    let mut ann = ext(&server, "ann").await;
    let mut bob = ext(&server, "bob").await;
    ann.confirm(&quiet).await;
    bob.confirm(&quiet).await;
    let before = logs().count("whisper stream not found");
    for n in 0..5 {
        ann.send_json(&whisper_command(&quiet, &json!({ "n": n })))
            .await;
    }
    ann.perform(&quiet, "ping", json!({})).await;
    ann.expect_data(&quiet, &json!({ "performed": true })).await;
    bob.expect_silence(SILENCE).await;
    assert_eq!(logs().count("whisper stream not found") - before, 1);

    // Oversized on a whispering stream: dropped, logged once; a small one still goes.
    let room = presence_identifier("room:big");
    ann.confirm(&room).await;
    bob.confirm(&room).await;
    let before = logs().count("over max_whisper_size");
    let big = json!({ "text": "x".repeat(100) });
    for _ in 0..3 {
        ann.send_json(&whisper_command(&room, &big)).await;
    }
    ann.send_json(&whisper_command(&room, &json!({ "ok": 1 })))
        .await;
    bob.expect_data(&room, &json!({ "ok": 1 })).await;
    assert_eq!(logs().count("over max_whisper_size") - before, 1);
}

#[tokio::test]
async fn whispers_spend_the_command_budget() {
    let _log = logs().enter();
    let rec = Recorder::new();
    let server =
        spawn_cable(presence_builder(&rec, Duration::from_secs(15)).max_commands_per_second(10))
            .await;
    let id = presence_identifier(ROOM);
    let mut ann = ext(&server, "ann").await;
    let mut bob = ext(&server, "bob").await;
    ann.confirm(&id).await;
    bob.confirm(&id).await;
    // The budget refills; let the subscribe's token come back before measuring.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let start = Instant::now();
    for n in 0..25 {
        ann.send_json(&whisper_command(&id, &json!({ "n": n })))
            .await;
    }
    for n in 0..25 {
        bob.expect_data(&id, &json!({ "n": n })).await;
    }
    // 10 at once, then 10 a second: the last 15 take about 1.5 s.
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(1200),
        "25 whispers within {took:?}: not budgeted"
    );
}

#[tokio::test]
async fn bad_presence_input_gets_anycables_answer_and_disturbs_no_one() {
    let _log = logs().enter();
    let rec = Recorder::new();
    let server =
        spawn_cable(presence_builder(&rec, Duration::from_secs(15)).max_presence_size(64)).await;
    let id = presence_identifier(ROOM);
    let quiet = quiet_identifier("room:quiet");
    let mut eve = ext(&server, "eve").await;
    let mut bob = ext(&server, "bob").await;
    eve.confirm(&id).await;
    eve.confirm(&quiet).await;
    bob.confirm(&id).await;
    for frame in [
        json!({ "command": "join", "identifier": id }),
        json!({ "command": "join", "identifier": id, "presence": { "id": 42 } }),
        json!({ "command": "join", "identifier": id, "presence": [1] }),
        json!({ "command": "join", "identifier": id, "presence": { "id": "eve", "info": "x".repeat(100) } }),
        json!({ "command": "join", "identifier": quiet, "presence": { "id": "eve" } }),
        json!({ "command": "join", "identifier": "nope", "presence": { "id": "eve" } }),
        json!({ "command": "leave", "identifier": quiet }),
        json!({ "command": "leave" }),
        json!({ "command": "presence", "identifier": "nope" }),
        json!({ "command": "whisper", "identifier": id }),
        json!({ "command": "whisper", "identifier": 7, "data": {} }),
    ] {
        eve.send_json(&frame).await;
    }
    // A presence question on a stream without presence: AnyCable's error frame, so the
    // client's promise is rejected rather than left hanging.
    eve.send_json(&json!({ "command": "presence", "identifier": quiet, "data": {} }))
        .await;
    eve.expect_frame(&presence_frame(&quiet, r#"{"type":"error","total":0}"#))
        .await;
    // Nothing joined, nobody told, everything still works.
    bob.expect_silence(SILENCE).await;
    assert!(server.handle.presence(ROOM).await.unwrap().is_empty());
    eve.perform(&id, "ping", json!({})).await;
    eve.expect_data(&id, &json!({ "performed": true })).await;
    eve.send_json(&join_command(&id, "eve", &json!(null))).await;
    eve.expect_frame(&presence_frame(&id, r#"{"type":"join","id":"eve"}"#))
        .await;
    bob.expect_frame(&presence_frame(&id, r#"{"type":"join","id":"eve"}"#))
        .await;
}

#[tokio::test]
async fn a_cable_whose_adapter_keeps_no_presence_rejects_presence_streams() {
    #[derive(Debug)]
    struct NoPresence(actioncable::MemoryPubSub);
    #[actioncable::async_trait]
    impl actioncable::PubSub for NoPresence {
        fn start(
            &self,
            inbound: actioncable::pubsub::Inbound,
        ) -> Result<(), actioncable::PubSubError> {
            self.0.start(inbound)
        }
        async fn subscribe(&self, s: &str) -> Result<(), actioncable::PubSubError> {
            self.0.subscribe(s).await
        }
        async fn unsubscribe(&self, s: &str) -> Result<(), actioncable::PubSubError> {
            self.0.unsubscribe(s).await
        }
        async fn publish(&self, s: &str, p: &str) -> Result<(), actioncable::PubSubError> {
            self.0.publish(s, p).await
        }
    }
    let _log = logs().enter();
    let rec = Recorder::new();
    let server = spawn_cable(
        presence_builder(&rec, Duration::from_secs(1))
            .pubsub(NoPresence(actioncable::MemoryPubSub::new())),
    )
    .await;
    let mut ann = ext(&server, "ann").await;
    assert_eq!(
        ann.subscribe(&presence_identifier(ROOM)).await,
        SubscribeReply::Rejected
    );
    ann.confirm(&quiet_identifier(ROOM)).await;
    assert!(matches!(
        server.handle.presence(ROOM).await,
        Err(actioncable::PubSubError::Unsupported(_))
    ));
}
