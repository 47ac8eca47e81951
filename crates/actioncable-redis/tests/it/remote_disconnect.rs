//! Remote disconnect across two nodes sharing a (private) Redis: `CableHandle::remote_disconnect`
//! on one node closes every connection of that identity on both, and a Rails-style message
//! published straight into Redis on the internal channel does the same. Other users stay.

use crate::support::*;
use actioncable::{
    AllowedOrigins, Cable, ConnectRequest, Connection, DisconnectReason, Identity, Reject,
    async_trait,
};
use actioncable_redis::{RedisConfig, RedisPubSub};
use serde_json::json;
use std::time::Duration;

/// Identity `current_user=<?user=>`.
#[derive(Debug)]
struct UserFromQuery;

#[async_trait]
impl Connection for UserFromQuery {
    async fn connect(&self, req: &ConnectRequest) -> Result<Identity, Reject> {
        let user = req.query("user").ok_or(Reject::Unauthorized)?;
        Ok(Identity::new("current_user", user))
    }
}

async fn start_node(redis: &RedisServer) -> CableServer {
    let pubsub = RedisPubSub::new(RedisConfig::from_url(&redis.url()).unwrap());
    spawn_cable(
        Cable::builder()
            .connection(UserFromQuery)
            .channel::<StreamChannel>()
            .pubsub(pubsub)
            .allowed_origins(AllowedOrigins::any()),
    )
    .await
}

/// A welcomed client of `user` (no `Origin`, as a non-browser client), subscribed to `stream`.
async fn user_client(node: &CableServer, user: &str, stream: &str) -> CableClient {
    let mut ws = CableClient::connect(
        node.addr,
        Connect::new()
            .path(&format!("/cable?user={user}"))
            .no_origin(),
    )
    .await
    .expect("the upgrade");
    assert_eq!(
        ws.next_json_or_end().await,
        Some(json!({ "type": "welcome" }))
    );
    let id = identifier(stream);
    ws.send_subscribe(&id).await;
    assert_eq!(
        ws.next_json_or_end().await,
        Some(json!({ "identifier": id, "type": "confirm_subscription" }))
    );
    ws
}

/// `disconnect` with reason `remote` and `reconnect`, then the socket ends.
async fn expect_remote_disconnect(ws: &mut CableClient, reconnect: bool) {
    assert_eq!(
        ws.next_json_or_end().await,
        Some(json!({ "type": "disconnect", "reason": "remote", "reconnect": reconnect }))
    );
    assert_eq!(
        ws.next_json_or_end().await,
        None,
        "the socket ends after the disconnect"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_disconnect_closes_an_identity_on_every_node_and_nobody_else() {
    let redis = RedisServer::start();
    let a = start_node(&redis).await;
    let b = start_node(&redis).await;

    let mut alice_a = user_client(&a, "alice", "room").await;
    let mut alice_b = user_client(&b, "alice", "room").await;
    let mut bob_b = user_client(&b, "bob", "room").await;
    // Both nodes listen on alice's internal channel (each adapter has its own connection).
    eventually("both nodes subscribed action_cable/alice", || {
        numsub(redis.port, "action_cable/alice") == 2
    })
    .await;
    eventually("node b subscribed action_cable/bob", || {
        numsub(redis.port, "action_cable/bob") == 1
    })
    .await;

    // From node a: alice is closed on a and on b.
    a.handle
        .remote_disconnect(&Identity::new("current_user", "alice"), false)
        .await
        .expect("published");
    expect_remote_disconnect(&mut alice_a, false).await;
    expect_remote_disconnect(&mut alice_b, false).await;
    eventually("alice's connections are gone on both nodes", || {
        a.handle.connection_count() == 0 && b.handle.connection_count() == 1
    })
    .await;
    eventually("nobody listens on alice's internal channel", || {
        numsub(redis.port, "action_cable/alice") == 0
    })
    .await;

    // bob was not touched: a broadcast from node a still reaches him on node b.
    a.handle
        .broadcast("room", &json!({ "still": "here" }))
        .await
        .unwrap();
    assert_eq!(
        bob_b.next_json_or_end().await,
        Some(json!({ "identifier": identifier("room"), "message": { "still": "here" } }))
    );

    // What a Rails process sharing the Redis publishes for
    // `remote_connections.where(current_user: bob).disconnect` (Rails 6.1: no `reconnect`).
    let receivers = redis.cli(&["PUBLISH", "action_cable/bob", r#"{"type":"disconnect"}"#]);
    assert_eq!(receivers.trim(), "1", "node b's adapter got it");
    expect_remote_disconnect(&mut bob_b, true).await;
    eventually("every connection and stream released on both nodes", || {
        a.handle.connection_count() == 0
            && b.handle.connection_count() == 0
            && a.handle.stream_count() == 0
            && b.handle.stream_count() == 0
    })
    .await;
    // Bounded wait for the adapters to drop their Redis subscriptions too.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while numsub(redis.port, "action_cable/bob") != 0 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Revoking an identity with a reason: every connection of it, on every node, is told that
/// reason (`unauthorized` for a banned user, `reconnect: false`), nobody else is touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_identity_is_told_why_on_every_node() {
    let redis = RedisServer::start();
    let a = start_node(&redis).await;
    let b = start_node(&redis).await;
    let mut mallory_a = user_client(&a, "mallory", "room").await;
    let mut mallory_b = user_client(&b, "mallory", "room").await;
    let mut bob_b = user_client(&b, "bob", "room").await;
    eventually("both nodes subscribed action_cable/mallory", || {
        numsub(redis.port, "action_cable/mallory") == 2
    })
    .await;

    b.handle
        .remote_disconnect_because(
            &Identity::new("current_user", "mallory"),
            DisconnectReason::Unauthorized,
            false,
        )
        .await
        .expect("published");
    for ws in [&mut mallory_a, &mut mallory_b] {
        assert_eq!(
            ws.next_json_or_end().await,
            Some(json!({ "type": "disconnect", "reason": "unauthorized", "reconnect": false }))
        );
        assert_eq!(ws.next_json_or_end().await, None, "the socket ends");
    }
    a.handle
        .broadcast("room", &json!({ "still": "here" }))
        .await
        .unwrap();
    assert_eq!(
        bob_b.next_json_or_end().await,
        Some(json!({ "identifier": identifier("room"), "message": { "still": "here" } }))
    );
    eventually("mallory's connections are gone on both nodes", || {
        a.handle.connection_count() == 0 && b.handle.connection_count() == 1
    })
    .await;
}
