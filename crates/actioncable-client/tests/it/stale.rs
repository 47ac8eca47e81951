//! A server that stops talking without closing anything (frozen, or a network that drops
//! packets): the consumer finds the connection stale from the missing pings and opens another.

use crate::support::*;
use actioncable_client::{Consumer, DisconnectReason, Event};
use std::time::Duration;
use tokio::time::Instant;

/// With the stock consumer's thresholds: stale once nothing arrived for 6 s (two of the
/// server's 3 s pings), noticed at the monitor's next poll (every 6–12 s), so 3–18 s after
/// the freeze; the socket is dropped and another opened 500 ms later, which gets through once
/// the network does, and resubscribes.
#[tokio::test]
async fn a_server_that_stops_pinging_is_found_stale_and_reconnected() {
    let server = spawn_cable(cable()).await;
    let proxy = TcpProxy::start(server.addr).await;
    let consumer = Consumer::connect(proxy.url("/cable")).unwrap();
    let mut echo = consumer.subscribe::<Echoed>("EchoChannel").unwrap();
    assert!(!connected(&mut echo).await);

    proxy.pause();
    let frozen = Instant::now();
    let event = next_within(WHOLE_TEST, &mut echo).await;
    let after = frozen.elapsed();
    assert!(
        matches!(
            event,
            Event::Disconnected {
                reason: DisconnectReason::Stale,
                reconnect: true
            }
        ),
        "{event:?}"
    );
    assert!(
        after >= Duration::from_millis(2_900) && after <= Duration::from_millis(18_500),
        "found stale {after:?} after the freeze"
    );
    // The next attempt waits behind the frozen network.
    eventually("a second connection through the proxy", || {
        proxy.accepted() >= 2
    })
    .await;
    proxy.resume();
    reconnected(&mut echo).await;
    echo.perform("echo", serde_json::json!({ "text": "alive" }))
        .await
        .unwrap();
    assert_eq!(received(&mut echo).await.text, "alive");
    eventually("the stale socket to be gone", || {
        server.handle.connection_count() == 1
    })
    .await;
}
