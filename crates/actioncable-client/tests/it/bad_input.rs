//! What a server may send that no good server does: frames of any shape, over a real socket.
//! The consumer must neither panic nor lose its connection; it drops what it cannot read and
//! hands its subscriptions whatever names them.

use crate::raw::{RawCable, data, typed};
use crate::support::*;
use actioncable_client::{ConnectionState, Consumer, Event};
use proptest::prelude::*;
use proptest::strategy::ValueTree as _;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const ECHO: &str = r#"{"channel":"EchoChannel"}"#;

/// Frames of every shape but the two that legitimately end things (a `disconnect`, and a
/// rejection of the test's subscription): text that is not JSON, JSON that is not an object,
/// objects with the keys the consumer reads holding values of every type, deep nesting.
fn frames() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,16}".prop_map(Value::from),
        prop::sample::select(vec![
            "welcome",
            "ping",
            "confirm_subscription",
            "confirm_history",
            "reject_history",
            "made_up",
            ECHO,
            r#"{"channel":"Other"}"#,
        ])
        .prop_map(Value::from),
    ];
    let value = leaf.prop_recursive(3, 32, 6, |inner| {
        let key = prop::sample::select(vec![
            "type",
            "identifier",
            "message",
            "reason",
            "reconnect",
            "sid",
            "restored",
            "restored_ids",
            "stream_id",
            "epoch",
            "offset",
            "x",
        ]);
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(key.prop_map(str::to_owned), inner, 0..7)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    let json = value
        .prop_filter("not an ending", |v| {
            let kind = v.get("type").and_then(Value::as_str);
            kind != Some("disconnect") && kind != Some("reject_subscription")
        })
        .prop_map(|v| v.to_string());
    prop_oneof![
        4 => json,
        1 => ".{0,64}",
        1 => (1usize..300).prop_map(|depth| "[".repeat(depth) + &"]".repeat(depth)),
        1 => Just(r#"{"type":"ping","message":1e400}"#.to_owned()),
        1 => Just(r#"{"identifier":"{\"channel\":\"EchoChannel\"}","message":{"a":"\ud800"}}"#.to_owned()),
    ]
}

/// 400 generated frames, plus binary frames and WebSocket pings, between a confirmation and a
/// last good message: the consumer stays connected and the good message arrives; every event
/// before it is one the frames asked for.
#[tokio::test]
async fn no_frame_a_server_sends_stops_the_consumer() {
    let mut raw = RawCable::start("actioncable-v1-json").await;
    let consumer = Consumer::connect(raw.url()).unwrap();
    let mut echo = consumer.subscribe::<Value>("EchoChannel").unwrap();
    let mut peer = raw.accept().await;
    peer.send(r#"{"type":"welcome"}"#).await;
    let (subscribe, _) = peer.recv_command().await;
    assert_eq!(subscribe["command"], "subscribe");
    peer.send(typed(ECHO, "confirm_subscription")).await;
    assert!(!connected(&mut echo).await);

    let mut runner = TestRunner::new(Config::default());
    let strategy = frames();
    for n in 0..400 {
        let frame = strategy
            .new_tree(&mut runner)
            .expect("a generated frame")
            .current();
        peer.send(frame).await;
        if n % 50 == 0 {
            peer.send_message(Message::binary(vec![0xff, 0x00, 0x7b]))
                .await;
            peer.send_message(Message::Ping(vec![1, 2, 3].into())).await;
        }
    }
    let last = json!({ "last": true });
    peer.send(data(ECHO, &last)).await;

    let mut events = 0;
    loop {
        match next(&mut echo).await {
            Event::Received(message) if message == last => break,
            Event::Received(_) | Event::Connected { .. } | Event::Undecodable(_) => events += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(matches!(consumer.state(), ConnectionState::Connected));
    // Welcome frames among the generated ones made it subscribe again, as it should.
    tracing::info!(events, "events from generated frames");
    echo.perform("still", ()).await.unwrap();
}
