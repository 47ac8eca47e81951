//! Reliable streams over real sockets: the extended protocol (`actioncable-v1-ext-json`) is
//! negotiated only when offered, plain clients keep their exact bytes, ext clients get stream
//! positions, and a `history` request (inside `subscribe` or alone) replays what was missed,
//! in order and once, or says `reject_history`.

use crate::support::*;
use actioncable::protocol::EXT_PROTOCOL;
use serde_json::{Value, json};
use std::time::Duration;

fn history_builder(rec: &Recorder) -> actioncable::CableBuilder<TestState> {
    builder(rec).history(true)
}

/// A welcomed client of `user` offering only the extended protocol, as `@anycable/core` does.
async fn ext_user(server: &CableServer, user: &str) -> CableClient {
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

async fn speak(server: &CableServer, n: u64) {
    server
        .handle
        .broadcast("chat:lobby", &json!({ "n": n }))
        .await
        .unwrap();
}

/// The next data frame: its message's `n`, its epoch and offset.
async fn next_position(c: &mut CableClient) -> (u64, String, u64) {
    let frame = c.recv_json().await;
    assert_eq!(frame["identifier"], LOBBY, "{frame}");
    assert_eq!(frame["stream_id"], "chat:lobby", "{frame}");
    (
        frame["message"]["n"].as_u64().expect("n"),
        frame["epoch"].as_str().expect("epoch").to_owned(),
        frame["offset"].as_u64().expect("offset"),
    )
}

fn subscribe_with_history(identifier: &str, history: Value) -> Value {
    json!({ "command": "subscribe", "identifier": identifier, "history": history })
}

fn history_frame(identifier: &str, kind: &str) -> String {
    format!(
        r#"{{"identifier":{},"type":"{kind}"}}"#,
        serde_json::to_string(identifier).unwrap()
    )
}

#[tokio::test]
async fn plain_clients_keep_their_bytes_and_ext_clients_get_positions() {
    let rec = Recorder::new();
    let server = spawn_cable(history_builder(&rec)).await;
    let mut plain = server.user("plain").await;
    assert_eq!(plain.protocol.as_deref(), Some("actioncable-v1-json"));
    let mut ext = ext_user(&server, "ext").await;
    // A client offering both gets the extended one.
    let both = CableClient::welcomed(
        server.addr,
        Connect::new().protocols("actioncable-v1-json, actioncable-v1-ext-json"),
    )
    .await;
    assert_eq!(both.protocol.as_deref(), Some(EXT_PROTOCOL));
    plain.confirm(LOBBY).await;
    ext.confirm(LOBBY).await;
    for n in 1..=3 {
        speak(&server, n).await;
    }
    let mut epoch = None;
    for n in 1..=3 {
        plain
            .expect_frame(&data_frame(LOBBY, &json!({ "n": n })))
            .await;
        let (got, e, offset) = next_position(&mut ext).await;
        assert_eq!((got, offset), (n, n));
        assert_eq!(*epoch.get_or_insert(e.clone()), e, "one epoch");
    }
    // The frame's shape, byte for byte (AnyCable's `Reply` order).
    speak(&server, 4).await;
    let epoch = epoch.unwrap();
    ext.expect_frame(&format!(
        r#"{{"identifier":{},"message":{{"n":4}},"stream_id":"chat:lobby","epoch":"{epoch}","offset":4}}"#,
        serde_json::to_string(LOBBY).unwrap()
    ))
    .await;
    plain
        .expect_frame(&data_frame(LOBBY, &json!({ "n": 4 })))
        .await;
    // A transient broadcast is live only: no position, never replayed.
    server
        .handle
        .broadcast_transient("chat:lobby", &json!({ "typing": true }))
        .await
        .unwrap();
    ext.expect_frame(&data_frame(LOBBY, &json!({ "typing": true })))
        .await;
    plain
        .expect_frame(&data_frame(LOBBY, &json!({ "typing": true })))
        .await;
    // `pong` is a command of the extended protocol, and nothing to answer.
    ext.send_json(&json!({ "command": "pong" })).await;
    ext.confirm(ECHO).await;
    ext.assert_echo(ECHO, json!("still here")).await;
    // The plain protocol does not know `history`: logged and ignored, as any unknown command.
    plain
        .send_json(&json!({ "command": "history", "identifier": LOBBY, "history": { "since": 0 } }))
        .await;
    plain.expect_silence(SILENCE).await;
}

#[tokio::test]
async fn a_reconnecting_client_gets_what_it_missed_once_in_order_then_live() {
    let rec = Recorder::new();
    let server = spawn_cable(history_builder(&rec)).await;
    let mut first = ext_user(&server, "alice").await;
    first.confirm(LOBBY).await;
    speak(&server, 1).await;
    let (_, epoch, offset) = next_position(&mut first).await;
    assert_eq!(offset, 1);
    first.close().await;
    for n in 2..=6 {
        speak(&server, n).await;
    }
    let mut again = ext_user(&server, "alice").await;
    again
        .send_json(&subscribe_with_history(
            LOBBY,
            json!({ "since": 1, "streams": { "chat:lobby": { "epoch": epoch, "offset": 1 } } }),
        ))
        .await;
    // Confirmation first, then the missed messages, then `confirm_history`.
    again.expect_confirm(LOBBY).await;
    for n in 2..=6 {
        let (got, e, offset) = next_position(&mut again).await;
        assert_eq!((got, offset), (n, n));
        assert_eq!(e, epoch);
    }
    again
        .expect_frame(&history_frame(LOBBY, "confirm_history"))
        .await;
    speak(&server, 7).await;
    assert_eq!(next_position(&mut again).await.0, 7);
    again.expect_silence(SILENCE).await;

    // `since` serves a stream the client has no position for (here: everything kept).
    let mut fresh = ext_user(&server, "bob").await;
    fresh
        .send_json(&subscribe_with_history(LOBBY, json!({ "since": 0 })))
        .await;
    fresh.expect_confirm(LOBBY).await;
    for n in 1..=7 {
        assert_eq!(next_position(&mut fresh).await.0, n);
    }
    fresh
        .expect_frame(&history_frame(LOBBY, "confirm_history"))
        .await;
    fresh.expect_silence(SILENCE).await;
}

#[tokio::test]
async fn live_messages_during_a_replay_are_neither_lost_nor_repeated() {
    let rec = Recorder::new();
    let server = spawn_cable(history_builder(&rec)).await;
    let mut seen = ext_user(&server, "alice").await;
    seen.confirm(LOBBY).await;
    speak(&server, 1).await;
    let (_, epoch, _) = next_position(&mut seen).await;
    // A broadcaster keeps speaking while the client comes back with `history`.
    let broadcaster = server.handle.clone();
    let speaking = tokio::spawn(async move {
        for n in 2..=400u64 {
            broadcaster
                .broadcast("chat:lobby", &json!({ "n": n }))
                .await
                .unwrap();
            if n % 50 == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    });
    let mut again = ext_user(&server, "alice").await;
    again
        .send_json(&subscribe_with_history(
            LOBBY,
            json!({ "streams": { "chat:lobby": { "epoch": epoch, "offset": 1 } } }),
        ))
        .await;
    again.expect_confirm(LOBBY).await;
    speaking.await.unwrap();
    let mut next = 2;
    let mut confirmed = false;
    while next <= 400 {
        let frame = again.recv_json().await;
        if frame["type"] == "confirm_history" {
            confirmed = true;
            continue;
        }
        assert_eq!(frame["message"]["n"], next, "in order, once: {frame}");
        assert_eq!(frame["offset"], next);
        next += 1;
    }
    if !confirmed {
        again
            .expect_frame(&history_frame(LOBBY, "confirm_history"))
            .await;
    }
    again.expect_silence(SILENCE).await;
}

#[tokio::test]
async fn positions_that_cannot_be_served_get_reject_history() {
    let rec = Recorder::new();
    let server = spawn_cable(history_builder(&rec).history_limit(3)).await;
    let mut c = ext_user(&server, "alice").await;
    c.confirm(LOBBY).await;
    let mut epoch = String::new();
    for n in 1..=6 {
        speak(&server, n).await;
        epoch = next_position(&mut c).await.1;
    }
    c.close().await;

    // Another epoch (a restarted server's, say).
    let mut unknown = ext_user(&server, "alice").await;
    unknown
        .send_json(&subscribe_with_history(
            LOBBY,
            json!({ "streams": { "chat:lobby": { "epoch": "not-ours", "offset": 5 } } }),
        ))
        .await;
    unknown.expect_confirm(LOBBY).await;
    unknown
        .expect_frame(&history_frame(LOBBY, "reject_history"))
        .await;
    // The subscription itself works: live messages keep coming.
    speak(&server, 7).await;
    assert_eq!(next_position(&mut unknown).await.0, 7);

    // Only 5, 6, 7 are kept: a client at 1 missed 2..4 for good; one at 4 misses nothing lost.
    unknown
        .send_json(&json!({ "command": "history", "identifier": LOBBY,
            "history": { "streams": { "chat:lobby": { "epoch": epoch, "offset": 1 } } } }))
        .await;
    unknown
        .expect_frame(&history_frame(LOBBY, "reject_history"))
        .await;
    let mut late = ext_user(&server, "bob").await;
    late.send_json(&subscribe_with_history(
        LOBBY,
        json!({ "streams": { "chat:lobby": { "epoch": epoch, "offset": 4 } } }),
    ))
    .await;
    late.expect_confirm(LOBBY).await;
    for n in 5..=7 {
        assert_eq!(next_position(&mut late).await.0, n);
    }
    late.expect_frame(&history_frame(LOBBY, "confirm_history"))
        .await;
    // `history` alone, on a subscription that is streaming and up to date: nothing to replay.
    late.send_json(&json!({ "command": "history", "identifier": LOBBY,
        "history": { "streams": { "chat:lobby": { "epoch": epoch, "offset": 7 } } } }))
        .await;
    late.expect_frame(&history_frame(LOBBY, "confirm_history"))
        .await;
    late.expect_silence(SILENCE).await;
}

#[tokio::test]
async fn without_history_ext_clients_get_plain_frames_and_reject_history() {
    let (server, _) = spawn_default().await;
    let mut c = ext_user(&server, "alice").await;
    c.send_json(&subscribe_with_history(LOBBY, json!({ "since": 0 })))
        .await;
    c.expect_confirm(LOBBY).await;
    c.expect_frame(&history_frame(LOBBY, "reject_history"))
        .await;
    speak(&server, 1).await;
    c.expect_frame(&data_frame(LOBBY, &json!({ "n": 1 }))).await;
}
