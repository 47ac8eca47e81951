//! Rows that commit out of id order: an insert that took its id first but commits after a
//! later row was already delivered is still delivered (the gem's `id > last_id` would skip
//! it). PostgreSQL and MariaDB hand out ids before commit; SQLite writes one transaction at a
//! time, so its rows always commit in id order.

use crate::support::*;
use actioncable_solid_cable::SolidCablePubSub;
use mysql_async::prelude::Queryable as _;
use serde_json::json;

fn values(kind: Kind, stream: &str, payload: &str) -> String {
    format!(
        "({}, {}, '{}', {})",
        binary_literal(kind, stream.as_bytes()),
        python_channel_hash(stream),
        crate::exchange::rails_time(std::time::SystemTime::now()),
        binary_literal(kind, payload.as_bytes())
    )
}

const COLUMNS: &str = "(channel, channel_hash, created_at, payload)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_committed_late_is_still_delivered_postgres() {
    let db = TestDatabase::new(Kind::Postgres);
    let node = node(&SolidCablePubSub::new(db.config())).await;
    let mut client = node.client().await;
    client.subscribe_stream("s").await;

    // A session of its own holds its insert open: its id is taken, its row not yet visible.
    let (late, connection) = tokio_postgres::connect(&db.url(), tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    late.batch_execute(&format!(
        "BEGIN; INSERT INTO solid_cable_messages {COLUMNS} VALUES {}",
        values(Kind::Postgres, "s", r#"{"n":"late"}"#)
    ))
    .await
    .expect("insert in a transaction");
    // A later id commits at once and is delivered.
    db.sql(&format!(
        "INSERT INTO solid_cable_messages {COLUMNS} VALUES {}",
        values(Kind::Postgres, "s", r#"{"n":"after"}"#)
    ));
    assert_eq!(client.stream_message("s").await, json!({ "n": "after" }));
    // Several polls pass the later id; then the earlier one commits.
    tokio::time::sleep(INTERVAL * 4).await;
    late.batch_execute("COMMIT").await.expect("commit");
    assert_eq!(client.stream_message("s").await, json!({ "n": "late" }));
    let ids = db.sql("SELECT string_agg(id::text, ',' ORDER BY id) FROM solid_cable_messages");
    assert_eq!(ids, "1,2", "the late row has the smaller id");
    client.expect_silence(SILENCE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_committed_late_is_still_delivered_mysql() {
    let db = TestDatabase::new(Kind::Mysql);
    let node = node(&SolidCablePubSub::new(db.config())).await;
    let mut client = node.client().await;
    client.subscribe_stream("s").await;

    let mut late = mysql_async::Conn::from_url(db.url())
        .await
        .expect("connect");
    late.query_drop("START TRANSACTION").await.expect("begin");
    late.query_drop(format!(
        "INSERT INTO solid_cable_messages {COLUMNS} VALUES {}",
        values(Kind::Mysql, "s", r#"{"n":"late"}"#)
    ))
    .await
    .expect("insert in a transaction");
    db.sql(&format!(
        "INSERT INTO solid_cable_messages {COLUMNS} VALUES {}",
        values(Kind::Mysql, "s", r#"{"n":"after"}"#)
    ));
    assert_eq!(client.stream_message("s").await, json!({ "n": "after" }));
    tokio::time::sleep(INTERVAL * 4).await;
    late.query_drop("COMMIT").await.expect("commit");
    assert_eq!(client.stream_message("s").await, json!({ "n": "late" }));
    let ids = db.sql("SELECT GROUP_CONCAT(id ORDER BY id) FROM solid_cable_messages");
    assert_eq!(ids, "1,2", "the late row has the smaller id");
    client.expect_silence(SILENCE).await;
    late.disconnect().await.expect("disconnect");
}
