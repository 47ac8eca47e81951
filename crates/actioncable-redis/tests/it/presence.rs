//! Presence kept in Redis: two nodes see one set of members, events reach every node, a member
//! with a connection on each node is counted once, a node that stops refreshing (as a killed
//! one does) loses its members within the TTL, and a Redis that lost its data gets the live
//! nodes' members back.

use crate::support::*;
use actioncable::{AllowedOrigins, Cable, PubSub};
use actioncable_redis::{RedisConfig, RedisPubSub};
use cable_test_support::presence::*;
use serde_json::json;
use std::time::{Duration, Instant};

const ROOM: &str = "room:lobby";

/// A node with [`PresenceChannel`] keeping presence in `redis` with `ttl`, and its adapter.
async fn presence_node(redis: &RedisServer, ttl: Duration) -> (Node, RedisPubSub) {
    let pubsub = RedisPubSub::new(
        RedisConfig::from_url(&redis.url())
            .expect("a valid URL")
            .channel_prefix(Some("app".into())),
    );
    let node = spawn_cable(
        Cable::builder()
            .channel::<PresenceChannel>()
            .pubsub(pubsub.clone())
            .presence_ttl(ttl)
            .presence_grace(Duration::from_millis(300))
            .allowed_origins(AllowedOrigins::any()),
    )
    .await;
    (node, pubsub)
}

async fn ext_client(node: &Node) -> CableClient {
    let mut c = CableClient::welcomed(node.addr, Connect::new().protocols(EXT_PROTOCOL)).await;
    c.confirm(&presence_identifier(ROOM)).await;
    c
}

#[tokio::test]
async fn two_nodes_share_members_and_events_and_count_a_member_once() {
    let redis = RedisServer::start();
    let (one, _) = presence_node(&redis, Duration::from_secs(15)).await;
    let (two, _) = presence_node(&redis, Duration::from_secs(15)).await;
    let id = presence_identifier(ROOM);
    let mut watcher = ext_client(&two).await;
    let mut ann_one = ext_client(&one).await;
    let mut ann_two = ext_client(&two).await;
    ann_one
        .send_json(&join_command(&id, "ann", &json!({ "name": "Ann" })))
        .await;
    let join = presence_frame(&id, &join_event("ann", r#"{"name":"Ann"}"#));
    watcher.expect_frame(&join).await;
    ann_one.expect_frame(&join).await;
    // Her second connection, on the other node: no news.
    ann_two
        .send_json(&join_command(&id, "ann", &json!({ "name": "Ann" })))
        .await;
    ann_two.expect_frame(&join).await;
    watcher.expect_silence(SILENCE).await;
    for node in [&one, &two] {
        let members = node.handle.presence(ROOM).await.unwrap();
        assert_eq!(members.len(), 1, "{members:?}");
        assert_eq!(members[0].info.as_deref(), Some(r#"{"name":"Ann"}"#));
    }
    watcher
        .send_json(&json!({ "command": "presence", "identifier": id, "data": {} }))
        .await;
    watcher
        .expect_frame(&presence_frame(
            &id,
            r#"{"type":"info","total":1,"records":[{"info":{"name":"Ann"},"id":"ann"}]}"#,
        ))
        .await;
    // Leaving on one node: she is still on the other.
    ann_one
        .send_json(&json!({ "command": "leave", "identifier": id }))
        .await;
    watcher.expect_silence(SILENCE).await;
    ann_two
        .send_json(&json!({ "command": "leave", "identifier": id }))
        .await;
    watcher
        .expect_frame(&presence_frame(&id, &leave_event("ann")))
        .await;
    assert!(one.handle.presence(ROOM).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_node_that_stops_refreshing_loses_its_members_within_the_ttl() {
    let redis = RedisServer::start();
    let ttl = Duration::from_millis(1500);
    let (one, one_pubsub) = presence_node(&redis, ttl).await;
    let (two, _) = presence_node(&redis, ttl).await;
    let id = presence_identifier(ROOM);
    let mut watcher = ext_client(&two).await;
    let mut ann = ext_client(&one).await;
    ann.send_json(&join_command(&id, "ann", &json!(null))).await;
    let join = presence_frame(&id, r#"{"type":"join","id":"ann"}"#);
    watcher.expect_frame(&join).await;
    // Alive, it keeps her well past the TTL.
    watcher.expect_silence(ttl * 2).await;
    // Node one goes silent as a killed node does: no leave, no more refreshes.
    one_pubsub.shutdown().await.unwrap();
    let dead = Instant::now();
    watcher
        .expect_frame(&presence_frame(&id, &leave_event("ann")))
        .await;
    let took = dead.elapsed();
    assert!(
        took <= ttl + Duration::from_millis(500),
        "left {took:?} after her node went silent (TTL {ttl:?})"
    );
    assert!(two.handle.presence(ROOM).await.unwrap().is_empty());
    drop(ann);
}

#[tokio::test]
async fn a_redis_that_lost_its_data_gets_the_live_members_back() {
    let redis = RedisServer::start();
    let ttl = Duration::from_millis(900);
    let (one, _) = presence_node(&redis, ttl).await;
    let id = presence_identifier(ROOM);
    let mut ann = ext_client(&one).await;
    ann.send_json(&join_command(&id, "ann", &json!(1))).await;
    ann.expect_frame(&presence_frame(&id, &join_event("ann", "1")))
        .await;
    redis.cli(&["FLUSHALL"]);
    assert!(one.handle.presence(ROOM).await.unwrap().is_empty());
    // The next refresh finds her record gone and joins her again.
    ann.expect_frame(&presence_frame(&id, &join_event("ann", "1")))
        .await;
    assert_eq!(one.handle.presence(ROOM).await.unwrap().len(), 1);
}
