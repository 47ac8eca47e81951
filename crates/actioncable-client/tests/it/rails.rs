//! Against Rails' own ActionCable server: the Rails reference app (`interop/rails`, Debian's
//! ruby-actioncable 6.1 under puma).

use crate::support::*;
use actioncable_client::{ConnectionState, Consumer, DisconnectReason, Event, Subscription};
use serde::Deserialize;
use serde_json::json;

/// What the app's `ChatChannel` broadcasts: `joined`, `message`, `left`.
#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Chat {
    Joined { user: String },
    Message { user: String, text: String },
    Left { user: String },
}

/// The next `message`, skipping `joined` and `left` (Rails delivers a `joined` broadcast made
/// in `subscribed` to the new subscriber only sometimes: docs/protocol.md).
async fn next_message(sub: &mut Subscription<Chat>) -> Chat {
    loop {
        match next(sub).await {
            Event::Received(message @ Chat::Message { .. }) => return message,
            Event::Received(Chat::Joined { .. } | Chat::Left { .. }) => {}
            other => panic!("expected a chat message, got {other:?}"),
        }
    }
}

/// Connect (with the `Origin` Rails requires), subscribe to `ChatChannel`, perform `speak`,
/// receive Rails' broadcast, typed; a second consumer that offers the extended protocol gets
/// the plain one from Rails and works the same. A subscription Rails rejects is told so, and
/// a connection Rails rejects stops.
#[tokio::test]
async fn connects_subscribes_performs_and_receives_on_rails() {
    let rails = RailsApp::start();
    let alice = Consumer::builder(rails.cable_url())
        .query("user", "alice")
        .origin(RAILS_ORIGIN)
        .connect()
        .unwrap();
    let bob = Consumer::builder(rails.cable_url())
        .query("user", "bob")
        .origin(RAILS_ORIGIN)
        .extended_protocol(true)
        .connect()
        .unwrap();
    let room = json!({ "channel": "ChatChannel", "room": "rust" });
    let mut alice_chat = alice.subscribe::<Chat>(&room).unwrap();
    let mut bob_chat = bob.subscribe::<Chat>(&room).unwrap();
    within("alice's welcome", alice.connected()).await.unwrap();
    loop {
        match next(&mut alice_chat).await {
            Event::Connected { reconnected } => break assert!(!reconnected),
            Event::Received(Chat::Joined { .. }) => {}
            other => panic!("expected Connected, got {other:?}"),
        }
    }
    loop {
        match next(&mut bob_chat).await {
            Event::Connected { .. } => break,
            Event::Received(Chat::Joined { .. }) => {}
            other => panic!("expected Connected, got {other:?}"),
        }
    }

    alice_chat
        .perform("speak", json!({ "text": "hello from Rust" }))
        .await
        .unwrap();
    let message = Chat::Message {
        user: "alice".into(),
        text: "hello from Rust".into(),
    };
    assert_eq!(next_message(&mut alice_chat).await, message);
    assert_eq!(next_message(&mut bob_chat).await, message);

    // `reject` in `subscribed` (no room).
    let mut nowhere = alice.subscribe::<Chat>("ChatChannel").unwrap();
    match next(&mut nowhere).await {
        Event::Rejected => {}
        other => panic!("expected Rejected, got {other:?}"),
    }

    // `reject_unauthorized_connection`.
    let banned = Consumer::builder(rails.cable_url())
        .query("user", "banned")
        .origin(RAILS_ORIGIN)
        .connect()
        .unwrap();
    assert!(within("the rejection", banned.connected()).await.is_err());
    match banned.state() {
        ConnectionState::Closed {
            reason: DisconnectReason::Server(reason),
        } => assert_eq!(reason, "unauthorized"),
        other => panic!("expected Closed unauthorized, got {other:?}"),
    }
}
