//! Bad input: every malformed or failing command is ignored without a reply (as in Rails),
//! and neither the connection, its other subscriptions nor other connections suffer.
//! Oversized frames close the socket with 1009.

use crate::support::*;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// A server, a victim connection subscribed to Echo + Lobby, and a bystander in the lobby.
struct Scene {
    server: CableServer,
    rec: Recorder,
    victim: CableClient,
    bystander: CableClient,
}

async fn scene() -> Scene {
    let (server, rec) = spawn_default().await;
    let mut victim = server.user("victim").await;
    victim.confirm(ECHO).await;
    victim.confirm(LOBBY).await;
    victim.confirm(RECEIVER).await;
    let mut bystander = server.user("bystander").await;
    bystander.confirm(ECHO).await;
    bystander.confirm(LOBBY).await;
    Scene {
        server,
        rec,
        victim,
        bystander,
    }
}

impl Scene {
    /// Sends `bad` frames from the victim, asserts silence, then that everything still works.
    async fn survives(&mut self, label: &str, bad: Vec<Message>) {
        for frame in bad {
            self.victim.send(frame).await;
        }
        self.victim.expect_silence(SILENCE).await;
        self.all_still_work(label).await;
    }

    async fn all_still_work(&mut self, label: &str) {
        self.victim.assert_echo(ECHO, json!(label)).await;
        self.victim.perform(LOBBY, "whoami", json!({})).await;
        self.victim
            .expect_data(LOBBY, &json!({ "user": "victim" }))
            .await;
        self.bystander.assert_echo(ECHO, json!(label)).await;
        // Streams of both connections are intact.
        self.server
            .handle
            .broadcast("chat:lobby", &json!({ "after": label }))
            .await
            .unwrap();
        self.victim
            .expect_data(LOBBY, &json!({ "after": label }))
            .await;
        self.bystander
            .expect_data(LOBBY, &json!({ "after": label }))
            .await;
        assert_eq!(self.server.handle.connection_count(), 2, "{label}");
        // chat:lobby plus each identified connection's `action_cable/<user>`.
        assert_eq!(self.server.handle.stream_count(), 3, "{label}");
        assert!(
            !self
                .rec
                .events()
                .iter()
                .any(|e| e.starts_with("disconnect:")),
            "{label}: {:?}",
            self.rec.events()
        );
    }
}

fn text(s: impl Into<String>) -> Message {
    Message::text(s.into())
}

fn command(v: Value) -> Message {
    text(v.to_string())
}

#[tokio::test]
async fn frames_that_are_not_json_objects_are_ignored() {
    let mut s = scene().await;
    s.survives(
        "not json",
        vec![
            text("hello"),
            text(""),
            text("{"),
            text(r#"{"command":"subscribe","identifier":"#),
            text("\u{feff}{}"),
        ],
    )
    .await;
    s.survives(
        "json but not an object",
        vec![
            text("[]"),
            text(r#"[{"command":"subscribe","identifier":"{\"channel\":\"EchoChannel\"}"}]"#),
            text("42"),
            text("null"),
            text("true"),
            text(r#""subscribe""#),
        ],
    )
    .await;
}

#[tokio::test]
async fn binary_frames_are_ignored() {
    let mut s = scene().await;
    let subscribe = json!({ "command": "subscribe", "identifier": KITCHEN }).to_string();
    s.survives(
        "binary",
        vec![
            Message::binary(subscribe.into_bytes()),
            Message::binary(vec![0u8, 159, 146, 150]),
            Message::binary(Vec::new()),
        ],
    )
    .await;
    // The binary subscribe did not subscribe anything.
    s.server
        .handle
        .broadcast("chat:kitchen", &json!("k"))
        .await
        .unwrap();
    s.victim.expect_silence(SILENCE).await;
}

#[tokio::test]
async fn unknown_commands_and_missing_fields_are_ignored() {
    let mut s = scene().await;
    s.survives(
        "unknown command",
        vec![
            command(json!({ "command": "dance", "identifier": ECHO })),
            command(json!({ "command": "SUBSCRIBE", "identifier": KITCHEN })),
            command(json!({ "command": 1, "identifier": ECHO })),
            command(json!({ "command": null, "identifier": ECHO })),
            command(json!({ "identifier": ECHO, "data": "{\"action\":\"echo\"}" })),
            command(json!({})),
            // AnyCable extensions are not spoken on this protocol.
            command(json!({ "command": "pong" })),
            command(json!({ "command": "history", "identifier": LOBBY })),
            command(json!({ "command": "whisper", "identifier": LOBBY, "data": {"a": 1} })),
        ],
    )
    .await;
    s.survives(
        "missing identifier",
        vec![
            command(json!({ "command": "subscribe" })),
            command(json!({ "command": "unsubscribe" })),
            command(json!({ "command": "message", "data": "{\"action\":\"echo\",\"payload\":1}" })),
            // The identifier must be a string, not the params object.
            command(json!({ "command": "subscribe", "identifier": { "channel": "ChatChannel", "room": "kitchen" } })),
            command(json!({ "command": "unsubscribe", "identifier": { "channel": "EchoChannel" } })),
            command(json!({ "command": "subscribe", "identifier": null })),
        ],
    )
    .await;
    // The object-identifier unsubscribe did not remove the echo subscription (checked by
    // `survives`), and nothing subscribed to the kitchen.
    s.server
        .handle
        .broadcast("chat:kitchen", &json!("k"))
        .await
        .unwrap();
    s.victim.expect_silence(SILENCE).await;
}

#[tokio::test]
async fn messages_to_unknown_identifiers_are_ignored() {
    let mut s = scene().await;
    let data = perform_data("echo", json!({ "payload": "x" }));
    s.survives(
        "unknown identifier",
        vec![
            command(json!({ "command": "message", "identifier": KITCHEN, "data": data })),
            // Same params as ECHO, different bytes: a different (unknown) subscription.
            command(json!({ "command": "message", "identifier": r#"{ "channel":"EchoChannel"}"#, "data": data })),
            command(json!({ "command": "message", "identifier": "nope", "data": data })),
            command(json!({ "command": "message", "identifier": "", "data": data })),
        ],
    )
    .await;
}

#[tokio::test]
async fn message_data_must_be_a_json_string_of_an_object() {
    let mut s = scene().await;
    s.survives(
        "data not a string",
        vec![
            // The object itself instead of its JSON text.
            command(json!({ "command": "message", "identifier": ECHO, "data": { "action": "echo", "payload": 1 } })),
            command(json!({ "command": "message", "identifier": ECHO, "data": 7 })),
            command(json!({ "command": "message", "identifier": ECHO, "data": null })),
            command(json!({ "command": "message", "identifier": ECHO })),
        ],
    )
    .await;
    s.survives(
        "data not an object",
        vec![
            command(json!({ "command": "message", "identifier": ECHO, "data": "not json" })),
            command(json!({ "command": "message", "identifier": ECHO, "data": "" })),
            command(json!({ "command": "message", "identifier": ECHO, "data": "[\"echo\"]" })),
            command(json!({ "command": "message", "identifier": ECHO, "data": "\"echo\"" })),
            command(json!({ "command": "message", "identifier": ECHO, "data": "null" })),
            command(json!({ "command": "message", "identifier": RECEIVER, "data": "[1,2]" })),
            command(json!({ "command": "message", "identifier": RECEIVER, "data": "3" })),
        ],
    )
    .await;
}

#[tokio::test]
async fn unknown_or_malformed_actions_are_ignored() {
    let mut s = scene().await;
    s.survives(
        "unknown action",
        vec![
            // Not a variant of the typed action enum.
            text(perform_command(ECHO, "nope", json!({}))),
            text(perform_command(ECHO, "Echo", json!({ "payload": 1 }))),
            // A known action with missing or mistyped fields.
            text(perform_command(ECHO, "echo", json!({}))),
            text(perform_command(ECHO, "add", json!({ "a": "one", "b": 2 }))),
            // `action` that is not a string.
            command(json!({ "command": "message", "identifier": ECHO, "data": "{\"action\":5}" })),
            command(json!({ "command": "message", "identifier": ECHO, "data": "{\"action\":[\"echo\"]}" })),
            // A Rust-side callback name is not an action.
            text(perform_command(LOBBY, "subscribed", json!({}))),
            text(perform_command(LOBBY, "unsubscribed", json!({}))),
            // A channel with only `receive` has no actions.
            text(perform_command(RECEIVER, "anything", json!({}))),
        ],
    )
    .await;
    // `perform("subscribed")` did not re-run `subscribed` (Rails leaks a stream there), and
    // `perform("unsubscribed")` did not end the subscription.
    // (One `subscribed` each for the victim and the bystander.)
    assert_eq!(s.rec.count(&format!("subscribed:{LOBBY}")), 2);
    assert_eq!(s.rec.count(&format!("unsubscribed:{LOBBY}")), 0);
}

#[tokio::test]
async fn a_failing_or_panicking_action_changes_nothing_for_anyone() {
    let mut s = scene().await;
    s.survives(
        "error",
        vec![
            text(perform_command(ECHO, "fail", json!({}))),
            text(perform_command(ECHO, "fail", json!({ "extra": true }))),
        ],
    )
    .await;
    s.survives(
        "panic",
        vec![
            text(perform_command(ECHO, "panic", json!({}))),
            text(perform_command(ECHO, "panic", json!({}))),
        ],
    )
    .await;
    // The panicking subscription itself keeps working (checked by `survives` via ECHO) and
    // still ends normally.
    s.victim.send_unsubscribe(ECHO).await;
    s.victim.perform(LOBBY, "whoami", json!({})).await;
    s.victim
        .expect_data(LOBBY, &json!({ "user": "victim" }))
        .await;
    assert_eq!(s.rec.count(&format!("unsubscribed:{ECHO}")), 1);
}

#[tokio::test]
async fn data_without_an_action_goes_to_receive_or_is_ignored() {
    let mut s = scene().await;
    // A channel without `receive`: ignored.
    s.survives(
        "receive fallback",
        vec![
            command(json!({ "command": "message", "identifier": ECHO, "data": "{\"payload\":1}" })),
            command(json!({ "command": "message", "identifier": ECHO, "data": "{}" })),
            command(
                json!({ "command": "message", "identifier": ECHO, "data": "{\"action\":null}" }),
            ),
            command(
                json!({ "command": "message", "identifier": ECHO, "data": "{\"action\":\"\"}" }),
            ),
        ],
    )
    .await;
    // A channel with `receive` gets the whole data object.
    s.victim
        .send_message(RECEIVER, r#"{"text":"hi","n":[1,2]}"#)
        .await;
    s.victim
        .expect_data(
            RECEIVER,
            &json!({ "received": { "text": "hi", "n": [1, 2] } }),
        )
        .await;
    s.victim.send_message(RECEIVER, "{}").await;
    s.victim
        .expect_data(RECEIVER, &json!({ "received": {} }))
        .await;
    s.victim.expect_silence(SILENCE).await;
}

fn perform_command(identifier: &str, action: &str, data: Value) -> String {
    json!({
        "command": "message",
        "identifier": identifier,
        "data": perform_data(action, data),
    })
    .to_string()
}

/// A `message` command for `identifier` whose whole frame is exactly `size` bytes; the echo
/// payload is a run of ASCII letters, so no escaping changes the size.
fn echo_frame_of_size(identifier: &str, size: usize) -> (String, String) {
    let frame_for =
        |payload: &str| perform_command(identifier, "echo", json!({ "payload": payload }));
    let overhead = frame_for("").len();
    assert!(size > overhead);
    let payload: String = (0..size - overhead)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let frame = frame_for(&payload);
    assert_eq!(frame.len(), size);
    (frame, payload)
}

#[tokio::test]
async fn a_one_mebibyte_message_is_accepted_and_echoed_intact() {
    let mut s = scene().await;
    let (frame, payload) = echo_frame_of_size(ECHO, 1024 * 1024);
    s.victim.send_text(frame).await;
    s.victim
        .expect_data(ECHO, &json!({ "echo": payload }))
        .await;
    s.all_still_work("after 1 MiB").await;
}

#[tokio::test]
async fn a_frame_over_max_message_size_closes_with_1009() {
    let rec = Recorder::new();
    let limit = 4096;
    let server = spawn_cable(builder(&rec).max_message_size(limit)).await;
    let mut bystander = server.client().await;
    bystander.confirm(ECHO).await;

    // Exactly the limit is fine.
    let mut c = server.user("big").await;
    c.confirm(ECHO).await;
    c.confirm(LOBBY).await;
    let (frame, payload) = echo_frame_of_size(ECHO, limit);
    c.send_text(frame).await;
    c.expect_data(ECHO, &json!({ "echo": payload })).await;

    // One byte more closes the socket with 1009 (message too big).
    let (frame, _) = echo_frame_of_size(ECHO, limit + 1);
    c.send_text(frame).await;
    assert_eq!(c.expect_violation_close().await, 1009);

    // The connection's cleanup ran; the other connection is unaffected.
    rec.wait_for("disconnect:current_user=big").await;
    rec.wait_for(&format!("unsubscribed:{LOBBY}")).await;
    eventually("the big client is gone", || {
        server.handle.connection_count() == 1 && server.handle.stream_count() == 0
    })
    .await;
    bystander.assert_echo(ECHO, json!("unaffected")).await;
}

#[tokio::test]
async fn a_binary_frame_over_max_message_size_closes_with_1009_too() {
    let rec = Recorder::new();
    let server = spawn_cable(builder(&rec).max_message_size(2048)).await;
    let mut c = server.client().await;
    c.send(Message::binary(vec![b'x'; 2049])).await;
    assert_eq!(c.expect_violation_close().await, 1009);
    rec.wait_for("disconnect:anonymous").await;
}

#[tokio::test]
async fn websocket_protocol_violations_close_with_their_code() {
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

    let (server, rec) = spawn_default().await;
    let mut bystander = server.client().await;
    bystander.confirm(ECHO).await;

    // A text frame that is not UTF-8: 1007.
    let mut c = server.user("utf8").await;
    c.send(Message::Frame(Frame::message(
        vec![b'{', 0xff, 0xfe, b'}'],
        OpCode::Data(Data::Text),
        true,
    )))
    .await;
    assert_eq!(c.expect_violation_close().await, 1007);
    rec.wait_for("disconnect:current_user=utf8").await;

    // A reserved bit without a negotiated extension: 1002.
    let mut c = server.user("rsv").await;
    let mut frame = Frame::message(b"{}".to_vec(), OpCode::Data(Data::Text), true);
    frame.header_mut().rsv1 = true;
    c.send(Message::Frame(frame)).await;
    assert_eq!(c.expect_violation_close().await, 1002);
    rec.wait_for("disconnect:current_user=rsv").await;

    // A continuation frame with nothing to continue: 1002.
    let mut c = server.user("cont").await;
    c.send(Message::Frame(Frame::message(
        b"{}".to_vec(),
        OpCode::Data(Data::Continue),
        true,
    )))
    .await;
    assert_eq!(c.expect_violation_close().await, 1002);
    rec.wait_for("disconnect:current_user=cont").await;

    bystander.assert_echo(ECHO, json!("unaffected")).await;
    eventually("only the bystander is left", || {
        server.handle.connection_count() == 1
    })
    .await;
}

/// Every place a client's text reaches the log — the user it identifies as, the Origin header, a
/// frame that does not parse, a command name, an identifier, a channel class, params, an
/// action name, action data — with a newline that would start a forged log line, a terminal
/// escape and a right-to-left override. The log must show them escaped, never raw.
#[tokio::test]
async fn client_text_never_forges_a_log_line() {
    const FORGED: &str = "FORGED-ADMIN";
    let logs = LogCapture::new("actioncable=trace");
    let _entered = logs.enter();
    let rec = Recorder::new();
    let server = spawn_cable(builder(&rec)).await;
    let evil = format!("x\n2026-12-06T00:00:00Z  INFO {FORGED}: logged in\u{1b}[2J\u{202e}");
    let query: String = form_urlencoded::byte_serialize(evil.as_bytes()).collect();

    // A foreign Origin: refused, and logged. HTTP forbids control characters in a header, but
    // not a right-to-left override.
    let origin = format!("http://a\u{202e}{FORGED}");
    let (reply, upgraded) =
        raw_upgrade(server.addr, "/cable", &[("Origin", origin.as_str())]).await;
    assert!(upgraded.is_none() && reply.status == 404, "{reply:?}");

    let mut c = server.client_at(&format!("/cable?user={query}")).await;
    c.send_text(evil.clone()).await; // not JSON
    c.send_json(&json!({ "command": evil, "identifier": "{}" }))
        .await; // unknown command
    c.send_subscribe(&evil).await; // an identifier that is not JSON
    c.expect_reject(&evil).await;
    let unknown = json!({ "channel": evil }).to_string();
    c.send_subscribe(&unknown).await; // an unknown channel class
    c.expect_reject(&unknown).await;
    let bad_params = json!({ "channel": "ChatChannel", "room": { evil.as_str(): 1 } }).to_string();
    c.send_subscribe(&bad_params).await; // params that do not deserialize
    c.expect_reject(&bad_params).await;
    c.confirm(LOBBY).await;
    c.send_message(&json!({ "channel": "Nope", "x": evil }).to_string(), "{}")
        .await; // a message for no subscription
    c.perform(LOBBY, &evil, json!({ "text": evil })).await; // an unknown action
    c.send_message(LOBBY, &evil).await; // data that is not JSON
    c.send_message(
        LOBBY,
        &json!({ "action": "speak", "text": 5, evil.as_str(): evil }).to_string(),
    )
    .await; // an action whose data does not fit
    // A round trip after all that: everything before it has been handled and logged.
    c.perform(LOBBY, "speak", json!({ "text": "done" })).await;
    let _ = c.recv_message(LOBBY).await;

    let text = logs.text();
    assert!(
        text.contains(r"x\n2026-12-06T00:00:00Z"),
        "the payload was logged, escaped:\n{text}"
    );
    for line in text.lines() {
        // The payload may appear, but only inside a real line, its newline escaped.
        assert!(
            !line.starts_with("2026-12-06T00:00:00Z"),
            "a forged line: {line}"
        );
        if line.contains(&format!("INFO {FORGED}")) {
            let escaped = format!(r"\n2026-12-06T00:00:00Z  INFO {FORGED}");
            assert!(line.contains(&escaped), "a forged line: {line}");
        }
    }
    assert!(
        !text.contains('\u{1b}'),
        "a raw escape sequence reached the log"
    );
    assert!(
        !text.contains('\u{202e}'),
        "a raw right-to-left override reached the log"
    );
}
