//! A server restart: the consumer is told `server_restart`, and comes back to the new server
//! on the same port on the stock consumer's schedule, resubscribed.

use crate::support::*;
use actioncable_client::{ConnectionState, Consumer, DisconnectReason, Event};
use serde_json::json;
use std::time::Duration;
use tokio::time::Instant;

/// The first reconnection comes 1×–3× the stale threshold (6–18 s) after the last message
/// (Rails 7.0's changelog; `connection_monitor.js`'s polls of 6–12 s, a reopen only once the
/// disconnect is 6 s old), then every subscription is confirmed again (`reconnected: true`)
/// and works on the new server.
#[tokio::test]
async fn reconnects_and_resubscribes_after_a_server_restart() {
    let server = spawn_cable(cable()).await;
    let addr = server.addr;
    let consumer = Consumer::connect(server.url("/cable?user=alice")).unwrap();
    let room = json!({ "channel": "ChatChannel", "room": "lobby" });
    let mut chat = consumer.subscribe::<Said>(&room).unwrap();
    let mut echo = consumer.subscribe::<Echoed>("EchoChannel").unwrap();
    assert!(!connected(&mut chat).await);
    assert!(!connected(&mut echo).await);

    server.shutdown().await;
    match next(&mut chat).await {
        Event::Disconnected {
            reason: DisconnectReason::Server(reason),
            reconnect: true,
        } => assert_eq!(reason, "server_restart"),
        other => panic!("expected Disconnected server_restart, got {other:?}"),
    }
    let disconnected = Instant::now();
    assert!(matches!(
        next(&mut echo).await,
        Event::Disconnected {
            reconnect: true,
            ..
        }
    ));
    assert!(matches!(
        consumer.state(),
        ConnectionState::Disconnected { .. }
    ));

    let again = spawn_cable_at(addr, cable()).await;
    reconnected(&mut chat).await;
    let after = disconnected.elapsed();
    assert!(
        after >= Duration::from_millis(5_900) && after <= Duration::from_millis(18_500),
        "reconnected {after:?} after the disconnect"
    );
    assert!(connected(&mut echo).await);

    chat.perform("speak", json!({ "text": "back" }))
        .await
        .unwrap();
    assert_eq!(
        received(&mut chat).await,
        Said {
            user: "alice".into(),
            text: "back".into()
        }
    );
    assert_eq!(again.handle.connection_count(), 1);
}
