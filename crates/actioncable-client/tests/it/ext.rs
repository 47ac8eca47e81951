//! AnyCable's extended protocol (feature `ext`) against this project's server with history
//! on: a consumer whose connection drops gets its session back and what it missed, once, in
//! order; one on the plain protocol misses it.

use crate::support::*;
use actioncable_client::{Consumer, DisconnectReason, Event};
use serde_json::json;

/// Alice offers the extended protocol, Bob does not; both are cut off by the network while
/// five messages are said in their room. When they come back (on the stock consumer's
/// schedule), Alice's session resumes (her subscription is not made again) and the five come
/// after her confirmation; Bob resubscribes and gets only what is said afterwards.
#[tokio::test]
async fn a_dropped_connection_resumes_and_gets_what_it_missed() {
    let server = spawn_cable(cable().history(true)).await;
    let proxy = TcpProxy::start(server.addr).await;
    let room = json!({ "channel": "ChatChannel", "room": "resume" });
    let alice = Consumer::builder(proxy.url("/cable?user=alice"))
        .extended_protocol(true)
        .connect()
        .unwrap();
    let bob = Consumer::connect(proxy.url("/cable?user=bob")).unwrap();
    let mut alice_chat = alice.subscribe::<Said>(&room).unwrap();
    let mut bob_chat = bob.subscribe::<Said>(&room).unwrap();
    assert!(!connected(&mut alice_chat).await);
    // The first subscribe asks for what was kept since the consumer started: nothing.
    assert!(matches!(
        next(&mut alice_chat).await,
        Event::HistoryConfirmed
    ));
    assert!(!connected(&mut bob_chat).await);

    let say = |text: String| {
        let handle = server.handle.clone();
        async move {
            handle
                .broadcast("chat:resume", &json!({ "user": "carol", "text": text }))
                .await
                .unwrap();
        }
    };
    let said = |text: &str| Said {
        user: "carol".into(),
        text: text.into(),
    };
    say("before".into()).await;
    assert_eq!(received(&mut alice_chat).await, said("before"));
    assert_eq!(received(&mut bob_chat).await, said("before"));

    proxy.cut();
    for sub in [&mut alice_chat, &mut bob_chat] {
        assert!(matches!(
            next(sub).await,
            Event::Disconnected {
                reason: DisconnectReason::ConnectionLost,
                reconnect: true
            }
        ));
    }
    for n in 1..=5 {
        say(format!("missed {n}")).await;
    }

    reconnected(&mut alice_chat).await;
    for n in 1..=5 {
        assert_eq!(
            received(&mut alice_chat).await,
            said(&format!("missed {n}"))
        );
    }
    assert!(matches!(
        next(&mut alice_chat).await,
        Event::HistoryConfirmed
    ));
    reconnected(&mut bob_chat).await;
    // Alice's session was resumed: `subscribed` ran for her once; Bob's twice.
    assert_eq!(subscribed_count("resume"), 3);

    say("after".into()).await;
    assert_eq!(received(&mut alice_chat).await, said("after"));
    assert_eq!(
        received(&mut bob_chat).await,
        said("after"),
        "bob missed the five"
    );
}
