//! Against this project's server: subscribe, perform, receive; rejections; typed messages;
//! a server that says not to reconnect. And against a scripted server: the guarantor's
//! retries, the request a consumer sends, an unsupported protocol.

use crate::raw::{RawCable, typed};
use crate::support::*;
use actioncable::Identity;
use actioncable_client::{ConnectionState, Consumer, DisconnectReason, Error, Event};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::time::Instant;

/// Two users in one room: each one's `speak` reaches both, typed; a channel named by a string
/// and a `perform` without data work too; `unsubscribe` leaves the server without the
/// subscription.
#[tokio::test]
async fn subscribes_performs_and_receives_typed_messages() {
    let server = spawn_cable(cable()).await;
    let alice = Consumer::connect(server.url("/cable?user=alice")).unwrap();
    let bob = Consumer::builder(server.url("/cable"))
        .query("user", "bob")
        .connect()
        .unwrap();
    let room = json!({ "channel": "ChatChannel", "room": "lobby" });
    let mut alice_chat = alice.subscribe::<Said>(&room).unwrap();
    let mut bob_chat = bob.subscribe::<Said>(&room).unwrap();
    assert_eq!(
        alice_chat.identifier(),
        r#"{"channel":"ChatChannel","room":"lobby"}"#
    );
    assert!(!connected(&mut alice_chat).await, "first confirmation");
    assert!(!connected(&mut bob_chat).await);
    assert!(matches!(alice.state(), ConnectionState::Connected));

    alice_chat
        .perform("speak", json!({ "text": "hi" }))
        .await
        .unwrap();
    let said = Said {
        user: "alice".into(),
        text: "hi".into(),
    };
    assert_eq!(received(&mut alice_chat).await, said);
    assert_eq!(received(&mut bob_chat).await, said);

    // From another task, through a handle.
    let handle = bob_chat.handle();
    tokio::spawn(async move { handle.perform("speak", json!({ "text": "yo" })).await })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(received(&mut alice_chat).await.text, "yo");

    let mut echo = alice.subscribe::<Value>("EchoChannel").unwrap();
    assert!(!connected(&mut echo).await);
    echo.perform("ping", ()).await.unwrap();
    assert_eq!(received(&mut echo).await, json!({ "action": "ping" }));

    alice_chat.unsubscribe().await;
    eventually("alice's chat subscription to end on the server", || {
        let conns = server.handle.connections();
        let subs: Vec<_> = conns
            .iter()
            .filter(|c| c.identity.get("current_user") == Some("alice"))
            .flat_map(|c| c.subscriptions.clone())
            .collect();
        subs == [r#"{"channel":"EchoChannel"}"#]
    })
    .await;
}

/// A subscription the channel rejects, or to a channel the server does not have, is told
/// `Rejected` and forgotten: its events end.
#[tokio::test]
async fn a_rejected_subscription_is_told_and_forgotten() {
    let server = spawn_cable(cable()).await;
    let consumer = Consumer::connect(server.url("/cable")).unwrap();
    let mut empty_room = consumer
        .subscribe::<Value>(json!({ "channel": "ChatChannel", "room": "" }))
        .unwrap();
    assert!(matches!(next(&mut empty_room).await, Event::Rejected));
    assert!(within("the end", empty_room.recv()).await.is_none());
    let mut unknown = consumer.subscribe::<Value>("NoSuchChannel").unwrap();
    assert!(matches!(next(&mut unknown).await, Event::Rejected));
    assert!(within("the end", unknown.recv()).await.is_none());
    // The connection is unaffected.
    let mut echo = consumer.subscribe::<Echoed>("EchoChannel").unwrap();
    assert!(!connected(&mut echo).await);
}

/// A message that does not fit the subscription's type is an `Undecodable` event carrying the
/// message and serde's explanation; the next message that fits is received as usual.
#[tokio::test]
async fn a_message_of_the_wrong_shape_is_an_event_not_a_failure() {
    let server = spawn_cable(cable()).await;
    let consumer = Consumer::connect(server.url("/cable")).unwrap();
    let mut echo = consumer.subscribe::<Echoed>("EchoChannel").unwrap();
    assert!(!connected(&mut echo).await);
    echo.perform("echo", json!({ "text": 5 })).await.unwrap();
    match next(&mut echo).await {
        Event::Undecodable(Error::Decode { message, source }) => {
            assert_eq!(message, r#"{"text":5,"action":"echo"}"#);
            assert!(source.to_string().contains("invalid type"), "{source}");
        }
        other => panic!("expected Undecodable, got {other:?}"),
    }
    echo.perform("echo", json!({ "text": "fits" }))
        .await
        .unwrap();
    assert_eq!(received(&mut echo).await.text, "fits");
    // Data that is not an object is refused before it is sent.
    assert!(matches!(
        echo.perform("echo", json!([1])).await,
        Err(Error::NotAnObject { what: "data", .. })
    ));
}

/// The server's `disconnect` with `reconnect: false` (a revoked user) stops the consumer for
/// good, as the stock consumer's monitor stops: no reconnection even with timings that would
/// reconnect within a second (which the same disconnect with `reconnect: true` shows).
#[tokio::test]
async fn a_disconnect_without_reconnect_stops_the_consumer() {
    let server = spawn_cable(cable().ping_interval(Duration::from_millis(100))).await;
    let fast = |user: &str| {
        Consumer::builder(server.url(&format!("/cable?user={user}")))
            .stale_threshold(Duration::from_millis(300))
            .connect()
            .unwrap()
    };
    let (carol, dave) = (fast("carol"), fast("dave"));
    let mut carol_echo = carol.subscribe::<Value>("EchoChannel").unwrap();
    let mut dave_echo = dave.subscribe::<Value>("EchoChannel").unwrap();
    assert!(!connected(&mut carol_echo).await);
    assert!(!connected(&mut dave_echo).await);

    // Dave is told to come back: he does, quickly.
    server
        .handle
        .remote_disconnect(&Identity::new("current_user", "dave"), true)
        .await
        .unwrap();
    match next(&mut dave_echo).await {
        Event::Disconnected {
            reason: DisconnectReason::Server(reason),
            reconnect: true,
        } => assert_eq!(reason, "remote"),
        other => panic!("expected Disconnected remote, got {other:?}"),
    }
    assert!(connected(&mut dave_echo).await, "back, resubscribed");

    // Carol is told not to.
    server
        .handle
        .remote_disconnect(&Identity::new("current_user", "carol"), false)
        .await
        .unwrap();
    match next(&mut carol_echo).await {
        Event::Disconnected {
            reason: DisconnectReason::Server(reason),
            reconnect: false,
        } => assert_eq!(reason, "remote"),
        other => panic!("expected Disconnected remote, got {other:?}"),
    }
    assert!(
        within("the end", carol_echo.recv()).await.is_none(),
        "events end"
    );
    assert!(matches!(carol.state(), ConnectionState::Closed { .. }));
    assert!(matches!(carol.connected().await, Err(Error::Closed)));
    assert!(matches!(
        carol.subscribe::<Value>("EchoChannel"),
        Err(Error::Closed)
    ));
    assert!(matches!(
        carol_echo.perform("echo", ()).await,
        Err(Error::Closed)
    ));
    // Ten stale thresholds later, still no connection of Carol's.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let carols = server
        .handle
        .connections()
        .iter()
        .filter(|c| c.identity.get("current_user") == Some("carol"))
        .count();
    assert_eq!(carols, 0, "carol reconnected");
}

/// A connection the server rejects (`disconnect` `unauthorized`, `reconnect: false`, before any
/// welcome) is not tried again, and says why.
#[tokio::test]
async fn a_rejected_connection_is_not_tried_again() {
    let server = spawn_cable(cable()).await;
    let consumer = Consumer::connect(server.url("/cable?user=banned")).unwrap();
    let mut echo = consumer.subscribe::<Value>("EchoChannel").unwrap();
    assert!(matches!(
        within("the rejection", consumer.connected()).await,
        Err(Error::Closed)
    ));
    match consumer.state() {
        ConnectionState::Closed {
            reason: DisconnectReason::Server(reason),
        } => assert_eq!(reason, "unauthorized"),
        other => panic!("expected Closed unauthorized, got {other:?}"),
    }
    assert!(matches!(
        next(&mut echo).await,
        Event::Disconnected {
            reconnect: false,
            ..
        }
    ));
    assert!(within("the end", echo.recv()).await.is_none());
}

/// `SubscriptionGuarantor`: a `subscribe` the server does not answer is sent again every
/// 500 ms until it is confirmed; then no more.
#[tokio::test]
async fn an_unanswered_subscribe_is_sent_again_every_500_ms_until_confirmed() {
    let mut raw = RawCable::start("actioncable-v1-json").await;
    let consumer = Consumer::connect(raw.url()).unwrap();
    let mut echo = consumer.subscribe::<Value>("EchoChannel").unwrap();
    let mut peer = raw.accept().await;
    peer.send(r#"{"type":"welcome"}"#).await;
    let subscribe = json!({ "command": "subscribe", "identifier": r#"{"channel":"EchoChannel"}"# });
    let mut times = Vec::new();
    for _ in 0..3 {
        let (command, at) = peer.recv_command().await;
        assert_eq!(command, subscribe);
        times.push(at);
    }
    for pair in times.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_millis(450) && gap < Duration::from_millis(1500),
            "resent after {gap:?}"
        );
    }
    peer.send(typed(
        r#"{"channel":"EchoChannel"}"#,
        "confirm_subscription",
    ))
    .await;
    assert!(!connected(&mut echo).await);
    // Confirmed: the next frame is the perform, not another subscribe.
    let started = Instant::now();
    tokio::time::sleep(Duration::from_millis(700)).await;
    echo.perform("echo", ()).await.unwrap();
    let (command, at) = peer.recv_command().await;
    assert_eq!(command["command"], "message", "{command}");
    assert!(at - started >= Duration::from_millis(700));
}

/// What the builder sets reaches the server: the offered subprotocols (the stock consumer's
/// two, plus one added), `Origin`, cookies, headers and the query; `perform` sends the stock
/// consumer's frame.
#[tokio::test]
async fn the_upgrade_request_carries_the_builders_settings() {
    let mut raw = RawCable::start("actioncable-v1-json").await;
    let consumer = Consumer::builder(raw.url())
        .origin("http://localhost:3000")
        .cookie("user", "alice")
        .cookie("theme", "dark")
        .header("Authorization", "Bearer t0ken")
        .query("token", "a b&c")
        .subprotocol("token.abc")
        .connect()
        .unwrap();
    let mut peer = raw.accept().await;
    assert_eq!(peer.uri, "/cable?token=a+b%26c");
    assert_eq!(
        peer.header("sec-websocket-protocol"),
        Some("actioncable-v1-json, token.abc, actioncable-unsupported")
    );
    assert_eq!(peer.header("origin"), Some("http://localhost:3000"));
    assert_eq!(peer.header("cookie"), Some("user=alice; theme=dark"));
    assert_eq!(peer.header("authorization"), Some("Bearer t0ken"));
    peer.send(r#"{"type":"welcome"}"#).await;
    within("welcome", consumer.connected()).await.unwrap();
    let chat = consumer
        .subscribe::<Value>(json!({ "channel": "ChatChannel", "room": "lobby" }))
        .unwrap();
    let (subscribe, _) = peer.recv_command().await;
    assert_eq!(subscribe["command"], "subscribe");
    chat.perform("speak", json!({ "text": "hi" }))
        .await
        .unwrap();
    let (message, _) = peer.recv_command().await;
    assert_eq!(
        message,
        json!({
            "command": "message",
            "identifier": r#"{"channel":"ChatChannel","room":"lobby"}"#,
            "data": r#"{"text":"hi","action":"speak"}"#,
        })
    );
}

/// A server that selects `actioncable-unsupported` (it speaks none of the consumer's
/// protocols) stops the consumer, as the stock consumer stops: "Protocol is unsupported".
#[tokio::test]
async fn a_server_that_speaks_no_consumer_protocol_stops_it() {
    let mut raw = RawCable::start("actioncable-unsupported").await;
    let consumer = Consumer::builder(raw.url())
        .stale_threshold(Duration::from_millis(200))
        .connect()
        .unwrap();
    let mut echo = consumer.subscribe::<Value>("EchoChannel").unwrap();
    let mut peer = raw.accept().await;
    assert!(peer.ends().await, "the consumer closes the socket");
    match next(&mut echo).await {
        Event::Disconnected {
            reason: DisconnectReason::UnsupportedProtocol(Some(selected)),
            reconnect: false,
        } => assert_eq!(selected, "actioncable-unsupported"),
        other => panic!("expected Disconnected UnsupportedProtocol, got {other:?}"),
    }
    assert!(matches!(consumer.state(), ConnectionState::Closed { .. }));
    assert!(
        !raw.accepts_within(Duration::from_secs(1)).await,
        "tried again"
    );
}
