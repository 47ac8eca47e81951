//! `subscribe` / `unsubscribe`: confirmation bytes, identifiers, multiplexing, rejection,
//! limits, and per-connection ordering.

use crate::support::*;
use serde_json::json;

#[tokio::test]
async fn confirm_echoes_the_identifier_verbatim() {
    let (server, _) = spawn_default().await;
    let mut c = server.client().await;

    c.send_subscribe(LOBBY).await;
    c.expect_frame(r#"{"identifier":"{\"channel\":\"ChatChannel\",\"room\":\"lobby\"}","type":"confirm_subscription"}"#)
        .await;

    // Unusual key order, whitespace and non-ASCII text survive byte for byte.
    let odd = "{ \"room\" : \"caf\u{e9} \u{2615}\",\n\t\"channel\":\"ChatChannel\" , \"x\":[1, {\"y\":null}] }";
    c.send_subscribe(odd).await;
    c.expect_frame(
        "{\"identifier\":\"{ \\\"room\\\" : \\\"caf\u{e9} \u{2615}\\\",\\n\\t\\\"channel\\\":\\\"ChatChannel\\\" , \\\"x\\\":[1, {\\\"y\\\":null}] }\",\"type\":\"confirm_subscription\"}",
    )
    .await;

    // Data frames carry the same verbatim identifier.
    server
        .handle
        .broadcast("chat:caf\u{e9} \u{2615}", &json!({ "n": 1 }))
        .await
        .unwrap();
    c.expect_data(odd, &json!({ "n": 1 })).await;
    c.perform(odd, "whoami", json!({})).await;
    c.expect_data(odd, &json!({ "user": "anonymous" })).await;
}

#[tokio::test]
async fn the_same_params_in_another_key_order_are_a_second_subscription() {
    let (server, rec) = spawn_default().await;
    let mut c = server.client().await;
    let reordered = r#"{"room":"lobby","channel":"ChatChannel"}"#;
    c.confirm(LOBBY).await;
    c.confirm(reordered).await;
    assert_eq!(server.handle.stream_count(), 1);

    server
        .handle
        .broadcast("chat:lobby", &json!({ "hi": true }))
        .await
        .unwrap();
    let mut got = vec![c.recv_text().await, c.recv_text().await];
    got.sort();
    let mut want = vec![
        data_frame(LOBBY, &json!({ "hi": true })),
        data_frame(reordered, &json!({ "hi": true })),
    ];
    want.sort();
    assert_eq!(got, want);

    // Unsubscribing one leaves the other.
    c.send_unsubscribe(LOBBY).await;
    c.perform(reordered, "whoami", json!({})).await;
    c.expect_data(reordered, &json!({ "user": "anonymous" }))
        .await;
    assert_eq!(rec.count(&format!("unsubscribed:{LOBBY}")), 1);
    server
        .handle
        .broadcast("chat:lobby", &json!({ "again": 1 }))
        .await
        .unwrap();
    c.expect_data(reordered, &json!({ "again": 1 })).await;
    c.expect_silence(SILENCE).await;
}

#[tokio::test]
async fn one_socket_multiplexes_channels_and_params() {
    let (server, _) = spawn_default().await;
    let mut c = server.user("alice").await;
    c.confirm(ECHO).await;
    c.confirm(LOBBY).await;
    c.confirm(KITCHEN).await;
    c.confirm(NOTIFICATIONS).await;
    c.confirm(RECEIVER).await;
    // lobby, kitchen, notification:alice, and alice's internal `action_cable/alice`.
    assert_eq!(server.handle.stream_count(), 4);

    server
        .handle
        .broadcast("chat:kitchen", &json!({ "to": "kitchen" }))
        .await
        .unwrap();
    c.expect_data(KITCHEN, &json!({ "to": "kitchen" })).await;
    server
        .handle
        .broadcast("chat:lobby", &json!({ "to": "lobby" }))
        .await
        .unwrap();
    c.expect_data(LOBBY, &json!({ "to": "lobby" })).await;
    server
        .handle
        .broadcast_to("NotificationChannel", "alice", &json!({ "to": "alice" }))
        .await
        .unwrap();
    c.expect_data(NOTIFICATIONS, &json!({ "to": "alice" }))
        .await;
    c.assert_echo(ECHO, json!([1, 2, 3])).await;
    c.send_message(RECEIVER, r#"{"free":"form"}"#).await;
    c.expect_data(RECEIVER, &json!({ "received": { "free": "form" } }))
        .await;
    c.perform(KITCHEN, "speak", json!({ "text": "hot" })).await;
    c.expect_data(KITCHEN, &json!({ "user": "alice", "text": "hot" }))
        .await;
    c.expect_silence(SILENCE).await;
}

#[tokio::test]
async fn a_duplicate_subscribe_is_ignored() {
    let (server, rec) = spawn_default().await;
    let mut c = server.client().await;
    c.confirm(LOBBY).await;
    c.send_subscribe(LOBBY).await;
    c.expect_silence(SILENCE).await;
    assert_eq!(rec.count(&format!("subscribed:{LOBBY}")), 1);

    // Still exactly one subscription: one delivery per broadcast.
    server
        .handle
        .broadcast("chat:lobby", &json!(1))
        .await
        .unwrap();
    c.expect_data(LOBBY, &json!(1)).await;
    c.expect_silence(SILENCE).await;
}

#[tokio::test]
async fn unsubscribe_sends_nothing_stops_deliveries_and_runs_unsubscribed() {
    let (server, rec) = spawn_default().await;
    let mut c = server.client().await;
    c.confirm(ECHO).await;
    c.confirm(LOBBY).await;
    assert_eq!(server.handle.stream_count(), 1);

    c.send_unsubscribe(LOBBY).await;
    // The echo reply proves the unsubscribe (sent before it) has been handled.
    c.assert_echo(ECHO, json!("after unsubscribe")).await;
    assert_eq!(rec.count(&format!("unsubscribed:{LOBBY}")), 1);
    assert_eq!(server.handle.stream_count(), 0);

    server
        .handle
        .broadcast("chat:lobby", &json!({ "late": true }))
        .await
        .unwrap();
    c.perform(LOBBY, "whoami", json!({})).await;
    c.expect_silence(SILENCE).await;

    // Unsubscribing again, or something never subscribed, is silent too.
    c.send_unsubscribe(LOBBY).await;
    c.send_unsubscribe(r#"{"channel":"Nope"}"#).await;
    c.expect_silence(SILENCE).await;
    assert_eq!(rec.count(&format!("unsubscribed:{LOBBY}")), 1);

    // And the identifier can be subscribed again.
    c.confirm(LOBBY).await;
    server
        .handle
        .broadcast("chat:lobby", &json!({ "back": true }))
        .await
        .unwrap();
    c.expect_data(LOBBY, &json!({ "back": true })).await;
}

#[tokio::test]
async fn a_channel_can_reject_and_its_streams_are_stopped() {
    let (server, rec) = spawn_default().await;
    let mut c = server.client().await;
    for identifier in [
        r#"{"channel":"ChatChannel"}"#,
        r#"{"channel":"ChatChannel","room":""}"#,
        r#"{"channel":"ChatChannel","room":null}"#,
        // Params that do not deserialize reject as well.
        r#"{"channel":"ChatChannel","room":5}"#,
        // Starts streaming `chat:forbidden`, then rejects.
        r#"{"channel":"ChatChannel","room":"forbidden"}"#,
        // Anonymous connections cannot have notifications.
        NOTIFICATIONS,
    ] {
        c.send_subscribe(identifier).await;
        c.expect_reject(identifier).await;
    }
    assert_eq!(server.handle.stream_count(), 0);
    server
        .handle
        .broadcast("chat:forbidden", &json!("x"))
        .await
        .unwrap();
    c.expect_silence(SILENCE).await;
    assert!(
        !rec.events().iter().any(|e| e.starts_with("unsubscribed:")),
        "unsubscribed must not run for a rejected subscription: {:?}",
        rec.events()
    );

    // A rejected identifier is not a subscription: messages to it are ignored, and a later
    // subscribe is handled afresh.
    let forbidden = r#"{"channel":"ChatChannel","room":"forbidden"}"#;
    c.perform(forbidden, "whoami", json!({})).await;
    c.expect_silence(SILENCE).await;
    c.confirm(LOBBY).await;
}

#[tokio::test]
async fn a_panic_in_subscribed_rejects_and_cleans_up() {
    let (server, _) = spawn_default().await;
    let mut c = server.client().await;
    let panicky = r#"{"channel":"PanickyChannel"}"#;
    c.send_subscribe(panicky).await;
    c.expect_reject(panicky).await;
    assert_eq!(server.handle.stream_count(), 0);
    c.confirm(ECHO).await;
    c.assert_echo(ECHO, json!("alive")).await;
}

#[tokio::test]
async fn unknown_channels_and_malformed_identifiers_are_rejected() {
    let (server, _) = spawn_default().await;
    let mut c = server.client().await;
    for identifier in [
        // Unknown channel: Rails stays silent; we reject so the consumer stops retrying.
        r#"{"channel":"NopeChannel"}"#,
        r#"{"channel":"echochannel"}"#,
        // Not JSON.
        "nope",
        "",
        r#"{"channel":"EchoChannel""#,
        // JSON but not an object.
        "[1]",
        "null",
        "42",
        r#""EchoChannel""#,
        // No string channel.
        "{}",
        r#"{"room":"lobby"}"#,
        r#"{"channel":1}"#,
        r#"{"channel":null}"#,
        r#"{"channel":["EchoChannel"]}"#,
    ] {
        assert_eq!(
            c.subscribe(identifier).await,
            SubscribeReply::Rejected,
            "{identifier:?}"
        );
    }
    c.confirm(ECHO).await;
    c.assert_echo(ECHO, json!("fine")).await;
}

#[tokio::test]
async fn max_subscriptions_rejects_the_one_too_many() {
    let rec = Recorder::new();
    let server = spawn_cable(builder(&rec).max_subscriptions(2)).await;
    let mut c = server.client().await;
    c.confirm(ECHO).await;
    c.confirm(LOBBY).await;
    assert_eq!(c.subscribe(KITCHEN).await, SubscribeReply::Rejected);
    // A duplicate of an existing subscription is still just ignored.
    c.send_subscribe(LOBBY).await;
    c.expect_silence(SILENCE).await;
    assert_eq!(server.handle.stream_count(), 1);

    // Freeing a slot makes room.
    c.send_unsubscribe(LOBBY).await;
    c.confirm(KITCHEN).await;
    assert_eq!(c.subscribe(LOBBY).await, SubscribeReply::Rejected);

    // The limit is per connection.
    let mut other = server.client().await;
    other.confirm(ECHO).await;
    other.confirm(LOBBY).await;
}

#[tokio::test]
async fn a_broadcast_right_after_confirm_is_never_missed() {
    let (server, _) = spawn_default().await;
    let mut c = server.client().await;
    for i in 0..40 {
        let room = format!("race{i}");
        let identifier = format!(r#"{{"channel":"ChatChannel","room":"{room}"}}"#);
        c.confirm(&identifier).await;
        server
            .handle
            .broadcast(&format!("chat:{room}"), &json!({ "i": i }))
            .await
            .unwrap();
        c.expect_data(&identifier, &json!({ "i": i })).await;
        c.send_unsubscribe(&identifier).await;
    }
    // The same with one stream that another connection keeps alive, and a fresh socket each
    // time (the stream already exists in the hub when the subscriber arrives).
    let mut keeper = server.client().await;
    keeper.confirm(LOBBY).await;
    for i in 0..20 {
        let mut c = server.client().await;
        c.confirm(LOBBY).await;
        server
            .handle
            .broadcast("chat:lobby", &json!({ "j": i }))
            .await
            .unwrap();
        c.expect_data(LOBBY, &json!({ "j": i })).await;
        keeper.expect_data(LOBBY, &json!({ "j": i })).await;
    }
}

#[tokio::test]
async fn subscribe_unsubscribe_subscribe_back_to_back_ends_subscribed() {
    let (server, rec) = spawn_default().await;
    let mut c = server.client().await;
    for _ in 0..10 {
        c.send_subscribe(LOBBY).await;
        c.send_unsubscribe(LOBBY).await;
        c.send_subscribe(LOBBY).await;
        c.expect_confirm(LOBBY).await;
        c.expect_confirm(LOBBY).await;
        server
            .handle
            .broadcast("chat:lobby", &json!("on"))
            .await
            .unwrap();
        c.expect_data(LOBBY, &json!("on")).await;
        c.send_unsubscribe(LOBBY).await;
    }
    c.confirm(ECHO).await;
    c.assert_echo(ECHO, json!("sync")).await;
    assert_eq!(rec.count(&format!("subscribed:{LOBBY}")), 20);
    assert_eq!(rec.count(&format!("unsubscribed:{LOBBY}")), 20);
    assert_eq!(server.handle.stream_count(), 0);
}

#[tokio::test]
async fn a_perform_sent_before_the_confirm_arrives_is_handled() {
    let (server, _) = spawn_default().await;
    let mut c = server.client().await;
    c.send_subscribe(ECHO).await;
    c.perform(ECHO, "add", json!({ "a": 2, "b": 40 })).await;
    c.perform(ECHO, "echo", json!({ "payload": "second" }))
        .await;
    c.expect_confirm(ECHO).await;
    c.expect_data(ECHO, &json!({ "sum": 42 })).await;
    c.expect_data(ECHO, &json!({ "echo": "second" })).await;

    // Many commands in one burst are answered in order.
    c.send_subscribe(LOBBY).await;
    for i in 0..50 {
        c.perform(ECHO, "add", json!({ "a": i, "b": 0 })).await;
    }
    c.perform(LOBBY, "whoami", json!({})).await;
    c.expect_confirm(LOBBY).await;
    for i in 0..50 {
        c.expect_data(ECHO, &json!({ "sum": i })).await;
    }
    c.expect_data(LOBBY, &json!({ "user": "anonymous" })).await;
}

#[tokio::test]
async fn a_broadcast_made_in_subscribed_arrives_after_the_confirmation() {
    let (server, _) = spawn_default().await;
    let id = r#"{"channel":"ChatChannel","room":"announce"}"#;
    let mut first = server.client().await;
    first.confirm(id).await;
    first.expect_data(id, &json!({ "type": "joined" })).await;

    // Rails sends the confirmation first (or loses the broadcast); we always send both, in
    // that order, so the stock consumer calls `connected()` before `received()`.
    for _ in 0..20 {
        let mut c = server.client().await;
        c.send_subscribe(id).await;
        c.expect_confirm(id).await;
        c.expect_data(id, &json!({ "type": "joined" })).await;
        first.expect_data(id, &json!({ "type": "joined" })).await;
        c.close().await;
    }
}

/// `subscribed` takes a while (a slow pub/sub adapter, say), then confirms or rejects by room.
struct SlowChannel;

#[derive(serde::Deserialize)]
struct SlowParams {
    outcome: String,
}

#[actioncable::async_trait]
impl actioncable::Channel<TestState> for SlowChannel {
    const CLASS: &'static str = "SlowChannel";
    type Params = SlowParams;
    type Action = actioncable::AnyAction;

    async fn subscribed(
        _: &mut actioncable::ChannelContext<TestState>,
        params: SlowParams,
    ) -> Result<Self, actioncable::ChannelError> {
        tokio::time::sleep(std::time::Duration::from_millis(700)).await;
        match params.outcome.as_str() {
            "confirm" => Ok(SlowChannel),
            _ => Err(actioncable::ChannelError::reject()),
        }
    }
}

#[tokio::test]
async fn a_subscribe_repeated_while_pending_is_answered_once() {
    let rec = Recorder::new();
    let server = spawn_cable(builder(&rec).channel::<SlowChannel>()).await;
    let mut c = server.client().await;
    // The stock consumer resends `subscribe` every 500 ms until it hears back.
    for (id, answer) in [
        (
            r#"{"channel":"SlowChannel","outcome":"reject"}"#,
            reject_frame as fn(&str) -> String,
        ),
        (
            r#"{"channel":"SlowChannel","outcome":"confirm"}"#,
            confirm_frame,
        ),
    ] {
        c.send_subscribe(id).await;
        for _ in 0..3 {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            c.send_subscribe(id).await;
        }
        c.expect_frame(&answer(id)).await;
        // Run after the rejection, a copy would subscribe the client to something it has
        // forgotten (and every later subscribe would then be ignored as a duplicate).
        c.expect_silence(std::time::Duration::from_millis(1200))
            .await;
    }
    // A new subscribe after the rejection is a new attempt, answered again.
    let rejected = r#"{"channel":"SlowChannel","outcome":"reject"}"#;
    c.send_subscribe(rejected).await;
    c.expect_reject(rejected).await;
}
