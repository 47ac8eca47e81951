//! The database going away and coming back, on a private server (PostgreSQL with
//! `initdb`/`pg_ctl`, MariaDB with `mariadb-install-db`/`mariadbd`; never the shared ones):
//! broadcasts fail instead of vanishing, no client is disconnected, and after the restart
//! delivery resumes without losing a row committed meanwhile.

use crate::exchange::rails_time;
use crate::support::*;
use actioncable::{BroadcastError, PubSubError};
use actioncable_solid_cable::SolidCablePubSub;
use cable_test_support::mysql::MariaDbServer;
use cable_test_support::postgres::PgServer;
use serde_json::json;
use std::time::Duration;
use tokio::time::Instant;

enum Server {
    Postgres(PgServer),
    Mariadb(MariaDbServer),
}

impl Server {
    fn kind(&self) -> Kind {
        match self {
            Server::Postgres(_) => Kind::Postgres,
            Server::Mariadb(_) => Kind::Mysql,
        }
    }

    fn url(&self) -> String {
        match self {
            Server::Postgres(s) => s.url(),
            Server::Mariadb(s) => s.url(),
        }
    }

    fn stop(&mut self) {
        match self {
            Server::Postgres(s) => s.stop(),
            Server::Mariadb(s) => s.stop(),
        }
    }

    fn restart(&mut self) {
        match self {
            Server::Postgres(s) => s.restart(),
            Server::Mariadb(s) => s.restart(),
        }
    }

    fn sql(&self, sql: &str) -> String {
        match self {
            Server::Postgres(s) => s.psql(sql),
            Server::Mariadb(s) => s.sql(sql),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_and_restarted_loses_nothing_committed() {
    database_stopped_and_restarted(Server::Postgres(PgServer::start())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_stopped_and_restarted_loses_nothing_committed() {
    database_stopped_and_restarted(Server::Mariadb(MariaDbServer::start())).await;
}

async fn database_stopped_and_restarted(mut server: Server) {
    let kind = server.kind();
    let quick = config(&server.url()).subscribe_timeout(Duration::from_secs(1));
    let publisher = SolidCablePubSub::new(quick.clone());
    let a = node(&publisher).await;
    // The receiving node retries slowly, so that rows land while it is still away.
    let receiver = SolidCablePubSub::new(
        quick.reconnect_backoff(Duration::from_millis(2500), Duration::from_millis(2500)),
    );
    let b = node(&receiver).await;
    let mut client = b.client().await;
    client.subscribe_stream("chat").await;
    a.handle
        .broadcast("chat", &json!("before"))
        .await
        .expect("a broadcast");
    assert_eq!(client.stream_message("chat").await, json!("before"));
    eventually("both adapters connected", || {
        publisher.is_connected() && receiver.is_connected()
    })
    .await;

    server.stop();

    // Broadcasts fail, quickly, instead of vanishing.
    for i in 0..3 {
        let started = Instant::now();
        let result = a.handle.broadcast("chat", &json!({ "lost": i })).await;
        assert!(
            matches!(
                result,
                Err(BroadcastError::PubSub(PubSubError::Unavailable(_)))
            ),
            "{kind:?}: broadcast {i} during the outage: {result:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "broadcast {i} took {:?}",
            started.elapsed()
        );
    }
    eventually("the adapters to notice the outage", || {
        !publisher.is_connected() && !receiver.is_connected()
    })
    .await;
    // A new stream cannot go live: the subscription is rejected after the subscribe timeout.
    let mut newcomer = b.client().await;
    assert_eq!(
        newcomer.take_subscribe(&identifier("chat:new")).await,
        SubscribeReply::Rejected
    );
    // The clients stay connected: nothing but pings, no disconnect.
    client.expect_silence(Duration::from_millis(500)).await;

    server.restart();

    // A row committed right after the restart, by hand, as Rails would write it.
    server.sql(&format!(
        "INSERT INTO solid_cable_messages (channel, channel_hash, created_at, payload) \
         VALUES ({}, {}, '{}', {})",
        binary_literal(kind, b"chat"),
        python_channel_hash("chat"),
        rails_time(std::time::SystemTime::now()),
        binary_literal(kind, br#"{"by":"hand"}"#)
    ));
    let receiver_was_away = !receiver.is_connected();
    // Our broadcasts work again once the publisher reconnects; each Ok is a stored row.
    let deadline = Instant::now() + WAIT;
    let mut stored = Vec::new();
    let mut n = 0;
    while stored.len() < 3 {
        assert!(Instant::now() < deadline, "broadcasts did not resume");
        n += 1;
        match a.handle.broadcast("chat", &json!({ "after": n })).await {
            Ok(()) => stored.push(n),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    println!("{kind:?}: receiver still away when the row was inserted: {receiver_was_away}");
    // Everything committed arrives, once, in id order; nothing that failed does.
    assert_eq!(client.stream_message("chat").await, json!({ "by": "hand" }));
    for n in stored {
        assert_eq!(client.stream_message("chat").await, json!({ "after": n }));
    }
    client.expect_silence(SILENCE).await;
    eventually("both adapters connected again", || {
        publisher.is_connected() && receiver.is_connected()
    })
    .await;
    // New streams work again, on the same connection.
    newcomer.subscribe_stream("chat:new").await;
    a.handle
        .broadcast("chat:new", &json!("new"))
        .await
        .expect("a broadcast");
    assert_eq!(newcomer.stream_message("chat:new").await, json!("new"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_while_the_database_is_down_and_connects_when_it_comes_up() {
    let mut server = MariaDbServer::start();
    server.stop();
    let pubsub = SolidCablePubSub::new(config(&server.url()));
    let node = node_now(&pubsub).await;
    let started = Instant::now();
    assert!(node.handle.broadcast("s", &json!(1)).await.is_err());
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(!pubsub.is_connected());

    server.restart();
    let mut client = node.client().await;
    client.subscribe_stream("s").await;
    eventually("both connections up", || pubsub.is_connected()).await;
    node.handle
        .broadcast("s", &json!(2))
        .await
        .expect("a broadcast");
    assert_eq!(client.stream_message("s").await, json!(2));

    // Shutting down stops the adapter: broadcasts fail as closed.
    client.close().await;
    assert!(node.handle.shutdown(Duration::from_secs(2)).await);
    assert!(!pubsub.is_connected());
    let result = node.handle.broadcast("s", &json!(3)).await;
    assert!(
        matches!(result, Err(BroadcastError::PubSub(PubSubError::Closed))),
        "{result:?}"
    );
}
