//! AnyCable's NATS broadcasts as a source: what the `anycable` gem's NATS adapter publishes on
//! `__anycable__` (its `nats_channel`) reaches our subscribers on every node, and its
//! `disconnect` command closes the identity's connections. The messages are the gem's format
//! written out by hand (`{stream:, data:, meta:}.compact.to_json`, a batch as a JSON array,
//! `{command:, payload:}.to_json`), pinned byte for byte against what Ruby's own JSON writes.

use crate::nodes::{user_client, user_node};
use crate::support::*;
use actioncable_nats::NatsPubSub;
use serde_json::json;

/// `AnyCable.broadcast("chat_1", {text: "hi"}.to_json)`.
const SINGLE: &str = r#"{"stream":"chat_1","data":"{\"text\":\"hi\"}"}"#;
/// Two broadcasts inside `AnyCable.broadcast_adapter.batching { … }`; the second one with
/// `exclude_socket` (Rails' `to_others`) and non-ASCII text, which Ruby writes unescaped.
const BATCH: &str = r#"[{"stream":"chat_1","data":"{\"n\":1}"},{"stream":"chat_1","data":"{\"n\":2,\"text\":\"héllo\"}","meta":{"exclude_socket":"a1b2"}}]"#;
/// `AnyCable.broadcast("chat_1", "hello!")`: data that is not JSON.
const NOT_JSON: &str = r#"{"stream":"chat_1","data":"hello!"}"#;
/// `ActionCable.server.remote_connections.where(current_user: "alice").disconnect` with
/// anycable-rails: the connection's identifiers as JSON, and `reconnect`.
const DISCONNECT: &str = r#"{"command":"disconnect","payload":{"identifier":"{\"current_user\":\"alice\"}","reconnect":true}}"#;
/// A command AnyCable does not know.
const OTHER_COMMAND: &str = r#"{"command":"reload","payload":{}}"#;

/// What Ruby's JSON writes for the documented hashes: the literals above are those bytes.
#[test]
fn the_literals_are_what_rubys_json_writes() {
    let script = std::env::temp_dir().join(format!("{}.rb", unique("anycable-format")));
    std::fs::write(
        &script,
        r#"
require "json"
JSON.parse($stdin.read)
message = ->(stream, data, meta = nil) { {stream: stream, data: data, meta: meta}.compact }
puts({
  single: message.("chat_1", {text: "hi"}.to_json).to_json,
  batch: [message.("chat_1", {n: 1}.to_json),
          message.("chat_1", {n: 2, text: "héllo"}.to_json, {exclude_socket: "a1b2"})].to_json,
  not_json: message.("chat_1", "hello!").to_json,
  disconnect: {command: "disconnect",
               payload: {identifier: {current_user: "alice"}.to_json, reconnect: true}}.to_json,
}.to_json)
"#,
    )
    .expect("write the script");
    let out = run_json_script(
        "ruby",
        script.to_str().expect("a UTF-8 path"),
        &json!({}),
        "ruby",
    );
    let _ = std::fs::remove_file(&script);
    assert_eq!(out["single"], SINGLE);
    assert_eq!(out["batch"], BATCH);
    assert_eq!(out["not_json"], NOT_JSON);
    assert_eq!(out["disconnect"], DISCONNECT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anycable_broadcasts_reach_our_subscribers_on_every_node() {
    // A private server: only here does anyone listen to the default `__anycable__`.
    let server = NatsServer::start();
    let config = config_for(&server.url()).anycable_subject(Some("__anycable__".into()));
    let a = node(&NatsPubSub::new(config.clone())).await;
    let b = node(&NatsPubSub::new(config)).await;
    let mut on_a = a.client().await;
    let mut on_b = b.client().await;
    on_a.subscribe_stream("chat_1").await;
    on_b.subscribe_stream("chat_1").await;

    // What the gem's NATS adapter does: `nats_conn.publish(channel, payload)`.
    let anycable = raw_client(&server.url()).await;
    for message in [SINGLE, BATCH, NOT_JSON, OTHER_COMMAND, "not json at all"] {
        anycable
            .publish("__anycable__", message.as_bytes().to_vec().into())
            .await
            .unwrap();
    }
    anycable.flush().await.unwrap();
    for client in [&mut on_a, &mut on_b] {
        assert_eq!(
            client.stream_message("chat_1").await,
            json!({ "text": "hi" })
        );
        // A batch arrives in its order; `exclude_socket` cannot be honoured (no AnyCable
        // sockets here), so it reaches everyone.
        assert_eq!(client.stream_message("chat_1").await, json!({ "n": 1 }));
        assert_eq!(
            client.stream_message("chat_1").await,
            json!({ "n": 2, "text": "héllo" })
        );
        // Data that is not JSON is sent as a JSON string, as AnyCable sends it.
        assert_eq!(client.stream_message("chat_1").await, json!("hello!"));
        // The unknown command and the garbage did nothing.
        client.expect_silence(SILENCE).await;
    }
    // And our own broadcasts still flow.
    b.handle.broadcast("chat_1", &json!("ours")).await.unwrap();
    assert_eq!(on_a.stream_message("chat_1").await, json!("ours"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anycables_disconnect_command_closes_the_identity_on_every_node() {
    let config = shared_config();
    let subject = config
        .anycable_subject_name()
        .expect("listening to AnyCable")
        .to_owned();
    let a = user_node(&NatsPubSub::new(config.clone())).await;
    let b = user_node(&NatsPubSub::new(config)).await;
    let mut alice_a = user_client(&a, "alice", "room").await;
    let mut alice_b = user_client(&b, "alice", "room").await;
    let mut bob = user_client(&b, "bob", "room").await;

    let anycable = raw_client(SHARED_URL).await;
    anycable
        .publish(subject, DISCONNECT.as_bytes().to_vec().into())
        .await
        .unwrap();
    anycable.flush().await.unwrap();
    for alice in [&mut alice_a, &mut alice_b] {
        alice.expect_disconnect("remote", true).await;
    }
    bob.expect_silence(SILENCE).await;
    a.handle
        .broadcast("room", &json!("bob stays"))
        .await
        .unwrap();
    assert_eq!(bob.stream_message("room").await, json!("bob stays"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_anycable_subject_is_configurable_and_can_be_turned_off() {
    let config = shared_config();
    let custom = format!("{}.custom", config.subject("x").replace('.', "_"));
    let listening = node(&NatsPubSub::new(
        config.clone().anycable_subject(Some(custom.clone())),
    ))
    .await;
    let deaf = node(&NatsPubSub::new(config.anycable_subject(None))).await;
    let mut on_listening = listening.client().await;
    let mut on_deaf = deaf.client().await;
    on_listening.subscribe_stream("chat_1").await;
    on_deaf.subscribe_stream("chat_1").await;
    let anycable = raw_client(SHARED_URL).await;
    anycable
        .publish(custom, SINGLE.as_bytes().to_vec().into())
        .await
        .unwrap();
    anycable.flush().await.unwrap();
    assert_eq!(
        on_listening.stream_message("chat_1").await,
        json!({ "text": "hi" })
    );
    on_deaf.expect_silence(SILENCE).await;
}
