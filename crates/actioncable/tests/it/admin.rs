//! The operator's view of one node (`CableHandle::stats`, `stats_router`): what it counts, and
//! that it answers only with the operator key.

use crate::support::*;
use serde_json::json;

#[tokio::test]
async fn stats_count_connections_channels_and_streams_and_need_the_operator_key() {
    let (server, _) = spawn_default().await;
    let mut a = server.user("a").await;
    let mut b = server.user("b").await;
    let mut c = server.user("c").await;
    a.confirm(LOBBY).await;
    b.confirm(LOBBY).await;
    c.confirm(KITCHEN).await;
    c.confirm(ECHO).await;

    let stats = server.handle.stats(10);
    assert_eq!((stats.connections, stats.subscriptions), (3, 4));
    let by_channel: Vec<(&str, usize)> = stats
        .subscriptions_by_channel
        .iter()
        .map(|(k, v)| (k.as_str(), *v))
        .collect();
    assert_eq!(by_channel, [("ChatChannel", 3), ("EchoChannel", 1)]);
    let top: Vec<(&str, usize)> = stats
        .top_streams
        .iter()
        .map(|s| (s.stream.as_str(), s.subscribers))
        .collect();
    assert_eq!(top[..2], [("chat:lobby", 2), ("chat:kitchen", 1)]);
    assert!(stats.ready);
    // Only the top N, most first.
    assert_eq!(server.handle.stats(1).top_streams.len(), 1);

    let authorized = format!("Bearer {ADMIN_KEY}");
    let reply = http_request(
        server.addr,
        "GET",
        "/admin/stats",
        &[("Authorization", &authorized)],
        None,
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let body = reply.json();
    assert_eq!(body["connections"], json!(3));
    assert_eq!(
        body["subscriptions_by_channel"],
        json!({ "ChatChannel": 3, "EchoChannel": 1 })
    );
    assert_eq!(
        body["top_streams"][0],
        json!({ "stream": "chat:lobby", "subscribers": 2 })
    );

    for headers in [
        vec![],
        vec![("Authorization", "Bearer not-the-key")],
        vec![("Authorization", ADMIN_KEY)],
        vec![("Authorization", "Bearer ")],
    ] {
        let reply = http_request(server.addr, "GET", "/admin/stats", &headers, None).await;
        assert_eq!(reply.status, 401, "{headers:?}");
        assert_eq!(reply.json(), json!({ "error": "unauthorized" }));
    }
}
