//! Two of our nodes on one database, for each of PostgreSQL, MariaDB and SQLite: broadcasts
//! both ways (with a channel prefix), within the polling interval, the contract's "published
//! after `subscribe` returned is delivered", a 1 MiB payload, and trimming.

use crate::support::*;
use actioncable_solid_cable::SolidCablePubSub;
use serde_json::{Value, json};
use std::time::Duration;
use tokio::time::Instant;

each_database!(two_nodes_exchange_broadcasts_both_ways);
async fn two_nodes_exchange_broadcasts_both_ways(kind: Kind) {
    let db = TestDatabase::new(kind);
    let prefixed = || db.config().channel_prefix(Some("app".into()));
    let a = node(&SolidCablePubSub::new(prefixed())).await;
    let b = node(&SolidCablePubSub::new(prefixed())).await;
    let other_app = node(&SolidCablePubSub::new(
        db.config().channel_prefix(Some("other".into())),
    ))
    .await;
    let mut on_a = a.client().await;
    let mut on_b = b.client().await;
    let mut on_other = other_app.client().await;
    on_b.subscribe_stream("chat:lobby").await;
    on_other.subscribe_stream("chat:lobby").await;

    a.handle
        .broadcast("chat:lobby", &json!({ "from": "a" }))
        .await
        .expect("a broadcast from a");
    assert_eq!(
        on_b.stream_message("chat:lobby").await,
        json!({ "from": "a" })
    );

    on_a.subscribe_stream("chat:lobby").await;
    for i in 0..3 {
        b.handle
            .broadcast("chat:lobby", &json!({ "from": "b", "i": i }))
            .await
            .expect("a broadcast from b");
    }
    for client in [&mut on_a, &mut on_b] {
        for i in 0..3 {
            assert_eq!(
                client.stream_message("chat:lobby").await,
                json!({ "from": "b", "i": i }),
                "in order"
            );
        }
    }
    // Another prefix is another app: nothing crosses.
    on_other.expect_silence(SILENCE).await;

    // The contract: the channel broadcasts as soon as `subscribe` returned, from the same node,
    // and the other node's subscriber of the same stream gets it too.
    for i in 0..5 {
        let stream = format!("live:{i}");
        on_b.subscribe_stream(&stream).await;
        on_a.subscribe_hello(&stream).await;
        for client in [&mut on_a, &mut on_b] {
            assert_eq!(
                client.stream_message(&stream).await,
                json!({ "hello": stream })
            );
        }
        a.handle
            .broadcast(&stream, &json!(i))
            .await
            .expect("a broadcast");
        assert_eq!(on_b.stream_message(&stream).await, json!(i));
        assert_eq!(on_a.stream_message(&stream).await, json!(i));
        on_a.unsubscribe_hello(&stream).await;
        on_b.unsubscribe_stream(&stream).await;
    }
    // Unsubscribed streams get nothing.
    on_a.sync().await;
    on_b.sync().await;
    a.handle
        .broadcast("live:1", &json!("late"))
        .await
        .expect("a broadcast");
    a.handle
        .broadcast("chat:lobby", &json!("sync"))
        .await
        .expect("a broadcast");
    assert_eq!(on_a.stream_message("chat:lobby").await, json!("sync"));
    assert_eq!(on_b.stream_message("chat:lobby").await, json!("sync"));
    on_a.expect_silence(SILENCE).await;
    on_b.expect_silence(SILENCE).await;
    on_other.expect_silence(Duration::ZERO).await;
}

each_database!(a_broadcast_reaches_the_other_node_within_the_polling_interval);
async fn a_broadcast_reaches_the_other_node_within_the_polling_interval(kind: Kind) {
    let db = TestDatabase::new(kind);
    // The gem's default interval.
    let interval = Duration::from_millis(100);
    let a = node(&SolidCablePubSub::new(
        db.config().polling_interval(interval),
    ))
    .await;
    let b = node(&SolidCablePubSub::new(
        db.config().polling_interval(interval),
    ))
    .await;
    let mut on_b = b.client().await;
    on_b.subscribe_stream("timed").await;
    let mut latencies = Vec::new();
    for i in 0..7 {
        let sent = Instant::now();
        a.handle
            .broadcast("timed", &json!(i))
            .await
            .expect("a broadcast");
        assert_eq!(on_b.stream_message("timed").await, json!(i));
        latencies.push(sent.elapsed());
        // Land the next one elsewhere in the poller's cycle.
        tokio::time::sleep(Duration::from_millis(37)).await;
    }
    latencies.sort();
    let median = latencies[latencies.len() / 2];
    println!("{kind:?}: cross-node latencies with a {interval:?} interval: {latencies:?}");
    // A poll every interval, then one query and the fan-out: the typical broadcast arrives in
    // about half an interval. The bounds leave room for a loaded machine.
    assert!(
        median <= interval + Duration::from_millis(100),
        "median {median:?}"
    );
    assert!(
        latencies.iter().all(|l| *l <= interval * 10),
        "{latencies:?}"
    );
}

each_database!(a_1_mib_payload_arrives_intact);
async fn a_1_mib_payload_arrives_intact(kind: Kind) {
    let db = TestDatabase::new(kind);
    let a = node(&SolidCablePubSub::new(db.config())).await;
    let b = node(&SolidCablePubSub::new(db.config())).await;
    let mut remote = b.client().await;
    let mut local = a.client().await;
    remote.subscribe_stream("big").await;
    local.subscribe_stream("big").await;

    let body: String = "0123456789abcdef\"é🚀\\"
        .chars()
        .cycle()
        .take(1 << 20)
        .collect();
    let message = json!({ "body": body, "n": 1 });
    let text = message.to_string();
    assert!(text.len() > 1 << 20);
    a.handle
        .broadcast_json("big", &text)
        .await
        .expect("a 1 MiB broadcast");
    a.handle
        .broadcast("big", &json!("after"))
        .await
        .expect("a broadcast");
    for client in [&mut remote, &mut local] {
        let got: Value = client.stream_message("big").await;
        assert!(got == message, "the 1 MiB message changed on the way");
        assert_eq!(client.stream_message("big").await, json!("after"));
    }
    // Stored byte for byte.
    let length = match kind {
        Kind::Postgres => "octet_length(payload)",
        Kind::Mysql => "LENGTH(payload)",
        Kind::Sqlite => "length(CAST(payload AS BLOB))",
    };
    let stored = db.sql(&format!(
        "SELECT {length} FROM solid_cable_messages ORDER BY id LIMIT 1"
    ));
    assert_eq!(stored, text.len().to_string());
}

each_database!(trimming_deletes_old_rows_in_batches_and_keeps_new_ones);
async fn trimming_deletes_old_rows_in_batches_and_keeps_new_ones(kind: Kind) {
    let db = TestDatabase::new(kind);
    // A chance equal to the batch size: every publish trims.
    let pubsub = SolidCablePubSub::new(
        db.config()
            .message_retention(Duration::from_secs(3600))
            .trim_batch_size(100)
            .trim_chance(100.0)
            .expect("a valid chance"),
    );
    let node = node(&pubsub).await;
    let mut client = node.client().await;
    // The client's subscription makes sure the table exists before rows go in by hand.
    client.subscribe_stream("kept").await;
    // 150 rows from two hours ago and 3 from a minute ago, as Rails would have written them.
    let hash = python_channel_hash("old");
    let insert = |rows: usize, created_at: &str| {
        let row = format!(
            "('{created_at}', {}, {}, {hash})",
            db.binary(b"old"),
            db.binary(b"{}")
        );
        db.sql(&format!(
            "INSERT INTO solid_cable_messages (created_at, channel, payload, channel_hash) VALUES {}",
            vec![row; rows].join(", ")
        ));
    };
    let now = std::time::SystemTime::now();
    let at = |ago: u64| rails_time(now - Duration::from_secs(ago));
    let old = at(7200);
    insert(150, &old);
    insert(3, &at(60));
    let count_before = |cutoff: &str| {
        db.sql(&format!(
            "SELECT COUNT(*) FROM solid_cable_messages WHERE created_at < '{cutoff}'"
        ))
    };
    let hour_ago = at(3600);
    assert_eq!(count_before(&hour_ago), "150");

    // Each publish trims one batch of 100.
    node.handle
        .broadcast("kept", &json!(1))
        .await
        .expect("a broadcast");
    eventually("the first batch trimmed", || {
        count_before(&hour_ago) == "50"
    })
    .await;
    node.handle
        .broadcast("kept", &json!(2))
        .await
        .expect("a broadcast");
    eventually("the second batch trimmed", || {
        count_before(&hour_ago) == "0"
    })
    .await;
    assert_eq!(
        db.sql("SELECT COUNT(*) FROM solid_cable_messages"),
        "5",
        "the three recent rows and the two broadcasts are kept"
    );
    assert_eq!(client.stream_message("kept").await, json!(1));
    assert_eq!(client.stream_message("kept").await, json!(2));

    // Without autotrim nothing is deleted.
    insert(1, &old);
    let untrimmed = node_without_autotrim(&db).await;
    for i in 0..5 {
        untrimmed
            .handle
            .broadcast("kept", &json!(i))
            .await
            .expect("a broadcast");
    }
    tokio::time::sleep(SILENCE).await;
    assert_eq!(count_before(&hour_ago), "1");
}

async fn node_without_autotrim(db: &TestDatabase) -> Node {
    node(&SolidCablePubSub::new(
        db.config()
            .message_retention(Duration::from_secs(3600))
            .trim_chance(100.0)
            .expect("a valid chance")
            .autotrim(false),
    ))
    .await
}

/// `at` as Rails writes created_at: UTC, `YYYY-MM-DD HH:MM:SS.ffffff` (computed here with
/// Python, independently of the crate).
pub(crate) fn rails_time(at: std::time::SystemTime) -> String {
    let seconds = at
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64();
    let output = std::process::Command::new("python3")
        .args([
            "-c",
            "import datetime, sys; \
             t = datetime.datetime.fromtimestamp(float(sys.argv[1]), datetime.timezone.utc); \
             print(t.strftime('%Y-%m-%d %H:%M:%S.%f'))",
            &seconds.to_string(),
        ])
        .output()
        .expect("python3");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}
