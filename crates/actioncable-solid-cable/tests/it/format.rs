//! The table as the gem has it, read and written with each database's own client: the rows we
//! write have exactly the gem's columns, `channel_hash` equal to a value computed by another
//! tool (Python's `hashlib`) and pinned, created_at as Rails writes it; and rows inserted by
//! hand with the SQL Active Record generates for `SolidCable::Message.broadcast` reach our
//! subscribers, with the channel compared exactly.

use crate::exchange::rails_time;
use crate::support::*;
use actioncable_solid_cable::SolidCablePubSub;
use serde_json::json;
use std::time::SystemTime;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `channel_hash` values pinned once from `python3 -c 'import hashlib; …'` (and equal to Ruby's
/// `Digest::SHA256.digest(c).unpack1("q>")`), checked against Python again at test time.
const PINNED: [(&str, i64); 3] = [
    ("app:chat:lobby", -8_726_652_675_258_227_179),
    ("app:Größe 🚀", 3_735_592_781_412_859_742),
    ("chat:lobby", 2_001_220_323_953_712_540),
];

#[test]
fn channel_hashes_match_an_independent_computation() {
    for (channel, pinned) in PINNED {
        assert_eq!(python_channel_hash(channel), pinned, "{channel}");
        assert_eq!(
            actioncable_solid_cable::channel_hash(channel.as_bytes()),
            pinned,
            "{channel}"
        );
    }
}

fn columns_sql(kind: Kind) -> &'static str {
    match kind {
        Kind::Postgres => {
            "SELECT column_name, data_type, COALESCE(datetime_precision::text, ''), is_nullable \
             FROM information_schema.columns WHERE table_name = 'solid_cable_messages' \
             ORDER BY ordinal_position"
        }
        Kind::Mysql => {
            "SELECT column_name, column_type, is_nullable FROM information_schema.columns \
             WHERE table_schema = DATABASE() AND table_name = 'solid_cable_messages' \
             ORDER BY ordinal_position"
        }
        Kind::Sqlite => {
            "SELECT name, type, \"notnull\" FROM pragma_table_info('solid_cable_messages') ORDER BY cid"
        }
    }
}

fn expected_columns(kind: Kind) -> &'static str {
    match kind {
        Kind::Postgres => {
            "id|bigint||NO\nchannel|bytea||NO\npayload|bytea||NO\n\
             created_at|timestamp without time zone|6|NO\nchannel_hash|bigint||NO"
        }
        Kind::Mysql => {
            "id|bigint(20)|NO\nchannel|varbinary(1024)|NO\npayload|longblob|NO\n\
             created_at|datetime(6)|NO\nchannel_hash|bigint(20)|NO"
        }
        // SQLite reports the rowid alias `integer PRIMARY KEY` as INTEGER.
        Kind::Sqlite => {
            "id|INTEGER|1\nchannel|blob(1024)|1\npayload|blob(536870912)|1\n\
             created_at|datetime(6)|1\nchannel_hash|integer(8)|1"
        }
    }
}

fn indexes_sql(kind: Kind) -> &'static str {
    match kind {
        Kind::Postgres => {
            "SELECT indexname FROM pg_indexes WHERE tablename = 'solid_cable_messages' \
             AND indexname LIKE 'index_%' ORDER BY indexname"
        }
        Kind::Mysql => {
            "SELECT DISTINCT index_name FROM information_schema.statistics \
             WHERE table_schema = DATABASE() AND table_name = 'solid_cable_messages' \
             AND index_name LIKE 'index_%' ORDER BY index_name"
        }
        Kind::Sqlite => {
            "SELECT name FROM sqlite_master WHERE type = 'index' \
             AND tbl_name = 'solid_cable_messages' ORDER BY name"
        }
    }
}

/// The rows: hex channel, hex payload, channel_hash, created_at as text, and (SQLite) the
/// storage classes of channel and created_at.
fn rows_sql(kind: Kind) -> &'static str {
    match kind {
        Kind::Postgres => {
            "SELECT encode(channel, 'hex'), encode(payload, 'hex'), channel_hash, \
             to_char(created_at, 'YYYY-MM-DD HH24:MI:SS.US') FROM solid_cable_messages ORDER BY id"
        }
        Kind::Mysql => {
            "SELECT LOWER(HEX(channel)), LOWER(HEX(payload)), channel_hash, created_at \
             FROM solid_cable_messages ORDER BY id"
        }
        Kind::Sqlite => {
            "SELECT lower(hex(channel)), lower(hex(payload)), channel_hash, created_at, \
             typeof(channel) || ',' || typeof(payload) || ',' || typeof(created_at) \
             FROM solid_cable_messages ORDER BY id"
        }
    }
}

/// `YYYY-MM-DD HH:MM:SS` with an optional `.` and six digits: Rails' `quoted_date`.
fn is_rails_time(text: &str) -> bool {
    let (main, fraction) = match text.split_once('.') {
        Some((main, fraction)) => (main, Some(fraction)),
        None => (text, None),
    };
    let shape = main.len() == 19
        && main.char_indices().all(|(i, c)| match i {
            4 | 7 => c == '-',
            10 => c == ' ',
            13 | 16 => c == ':',
            _ => c.is_ascii_digit(),
        });
    shape && fraction.is_none_or(|f| f.len() == 6 && f.bytes().all(|b| b.is_ascii_digit()))
}

each_database!(rows_are_written_exactly_as_the_gem_writes_them);
async fn rows_are_written_exactly_as_the_gem_writes_them(kind: Kind) {
    let db = TestDatabase::new(kind);
    let node = node(&SolidCablePubSub::new(
        db.config().channel_prefix(Some("app".into())),
    ))
    .await;
    let before = rails_time(SystemTime::now() - std::time::Duration::from_secs(1));
    let messages = [
        ("chat:lobby", r#"{"a":1}"#),
        ("Größe 🚀", r#"{"t":"é\"🚀"}"#),
    ];
    for (stream, text) in messages {
        node.handle
            .broadcast_json(stream, text)
            .await
            .expect("a broadcast");
    }
    let after = rails_time(SystemTime::now() + std::time::Duration::from_secs(1));

    assert_eq!(db.sql(columns_sql(kind)), expected_columns(kind));
    assert_eq!(
        db.sql(indexes_sql(kind)),
        "index_solid_cable_messages_on_channel\n\
         index_solid_cable_messages_on_channel_hash\n\
         index_solid_cable_messages_on_created_at"
    );

    let rows = db.sql(rows_sql(kind));
    let rows: Vec<Vec<&str>> = rows.lines().map(|l| l.split('|').collect()).collect();
    assert_eq!(rows.len(), 2, "{rows:?}");
    for (row, (stream, text)) in rows.iter().zip(messages) {
        let channel = format!("app:{stream}");
        assert_eq!(
            row[0],
            hex(channel.as_bytes()),
            "channel: the prefixed name's bytes"
        );
        assert_eq!(
            row[1],
            hex(text.as_bytes()),
            "payload: the JSON text's bytes"
        );
        let pinned = PINNED
            .iter()
            .find(|(c, _)| *c == channel)
            .map(|(_, h)| *h)
            .expect("a pinned hash");
        assert_eq!(row[2], pinned.to_string(), "channel_hash of {channel}");
        assert_eq!(row[2], python_channel_hash(&channel).to_string());
        let created_at = row[3];
        assert!(
            before.as_str() <= created_at && created_at <= after.as_str(),
            "created_at {created_at} is UTC now ({before} .. {after})"
        );
        if kind == Kind::Sqlite {
            // Stored as Rails' text; channel and payload as blobs, as Rails binds binary.
            assert!(is_rails_time(created_at), "{created_at}");
            assert_eq!(row[4], "blob,blob,text");
        }
    }
}

each_database!(rows_inserted_by_hand_like_the_gem_reach_our_subscribers);
async fn rows_inserted_by_hand_like_the_gem_reach_our_subscribers(kind: Kind) {
    let db = TestDatabase::new(kind);
    let node = node(&SolidCablePubSub::new(
        db.config().channel_prefix(Some("app".into())),
    ))
    .await;
    let mut client = node.client().await;
    client.subscribe_stream("chat:lobby").await;
    client.subscribe_stream("Größe 🚀").await;

    // What Active Record runs for `SolidCable::Message.insert({created_at:, channel:, payload:,
    // channel_hash:})`: columns sorted, binary quoted as Rails quotes it, skip duplicates.
    let insert = |channel: &str, hash: i64, payload: &str| {
        let values = format!(
            "({}, {hash}, '{}', {})",
            db.binary(channel.as_bytes()),
            rails_time(SystemTime::now()),
            db.binary(payload.as_bytes())
        );
        let sql = match kind {
            Kind::Postgres | Kind::Sqlite => format!(
                "INSERT INTO \"solid_cable_messages\" (\"channel\",\"channel_hash\",\"created_at\",\"payload\") \
                 VALUES {values} ON CONFLICT  DO NOTHING RETURNING \"id\""
            ),
            Kind::Mysql => format!(
                "INSERT INTO `solid_cable_messages` (`channel`,`channel_hash`,`created_at`,`payload`) \
                 VALUES {values} ON DUPLICATE KEY UPDATE `channel`=`channel`"
            ),
        };
        db.sql(&sql);
    };
    let lobby_hash = python_channel_hash("app:chat:lobby");
    insert("app:chat:lobby", lobby_hash, r#"{"by":"hand","n":1}"#);
    insert(
        "app:Größe 🚀",
        python_channel_hash("app:Größe 🚀"),
        r#""ünïcödé""#,
    );
    // Same hash, another channel (a collision, as far as the index can tell): not ours.
    insert("app:chat:other", lobby_hash, r#"{"collision":true}"#);
    // The stream without our prefix is another app's.
    insert(
        "chat:lobby",
        python_channel_hash("chat:lobby"),
        r#"{"unprefixed":true}"#,
    );
    insert("app:chat:lobby", lobby_hash, r#"{"by":"hand","n":2}"#);

    assert_eq!(
        client.stream_message("chat:lobby").await,
        json!({ "by": "hand", "n": 1 })
    );
    assert_eq!(client.stream_message("Größe 🚀").await, json!("ünïcödé"));
    assert_eq!(
        client.stream_message("chat:lobby").await,
        json!({ "by": "hand", "n": 2 })
    );
    client.expect_silence(SILENCE).await;
}

/// The schema as Rails' schema loader creates it from `db/cable_schema.rb` on each database.
fn rails_schema(kind: Kind) -> &'static str {
    match kind {
        Kind::Postgres => {
            "CREATE TABLE \"solid_cable_messages\" (\"id\" bigserial primary key, \
             \"channel\" bytea NOT NULL, \"payload\" bytea NOT NULL, \
             \"created_at\" timestamp(6) NOT NULL, \"channel_hash\" bigint NOT NULL); \
             CREATE INDEX \"index_solid_cable_messages_on_channel\" ON \"solid_cable_messages\" (\"channel\"); \
             CREATE INDEX \"index_solid_cable_messages_on_channel_hash\" ON \"solid_cable_messages\" (\"channel_hash\"); \
             CREATE INDEX \"index_solid_cable_messages_on_created_at\" ON \"solid_cable_messages\" (\"created_at\")"
        }
        Kind::Mysql => {
            "CREATE TABLE `solid_cable_messages` (`id` bigint NOT NULL AUTO_INCREMENT PRIMARY KEY, \
             `channel` varbinary(1024) NOT NULL, `payload` longblob NOT NULL, \
             `created_at` datetime(6) NOT NULL, `channel_hash` bigint NOT NULL, \
             INDEX `index_solid_cable_messages_on_channel` (`channel`), \
             INDEX `index_solid_cable_messages_on_channel_hash` (`channel_hash`), \
             INDEX `index_solid_cable_messages_on_created_at` (`created_at`)) ENGINE=InnoDB"
        }
        Kind::Sqlite => {
            "CREATE TABLE \"solid_cable_messages\" (\"id\" integer PRIMARY KEY AUTOINCREMENT NOT NULL, \
             \"channel\" blob(1024) NOT NULL, \"payload\" blob(536870912) NOT NULL, \
             \"created_at\" datetime(6) NOT NULL, \"channel_hash\" integer(8) NOT NULL); \
             CREATE INDEX \"index_solid_cable_messages_on_channel\" ON \"solid_cable_messages\" (\"channel\"); \
             CREATE INDEX \"index_solid_cable_messages_on_channel_hash\" ON \"solid_cable_messages\" (\"channel_hash\"); \
             CREATE INDEX \"index_solid_cable_messages_on_created_at\" ON \"solid_cable_messages\" (\"created_at\")"
        }
    }
}

each_database!(without_create_table_the_migrated_table_is_used);
async fn without_create_table_the_migrated_table_is_used(kind: Kind) {
    let db = TestDatabase::new(kind);
    let pubsub = SolidCablePubSub::new(db.config().create_table(false));
    let node = node_now(&pubsub).await;
    // No table yet: a broadcast is refused, not lost silently.
    let result = node.handle.broadcast("s", &json!(0)).await;
    assert!(result.is_err(), "{result:?}");
    // The app's migration runs; the adapter uses its table from then on.
    db.sql(rails_schema(kind));
    let mut client = node.client().await;
    client.subscribe_stream("s").await;
    node.handle
        .broadcast("s", &json!(1))
        .await
        .expect("a broadcast");
    assert_eq!(client.stream_message("s").await, json!(1));
    eventually("the adapter connected", || pubsub.is_connected()).await;
}

#[test]
fn rails_times_are_recognised() {
    assert!(is_rails_time("2024-05-01 12:34:56"));
    assert!(is_rails_time("2024-05-01 12:34:56.000123"));
    assert!(!is_rails_time("2024-05-01T12:34:56"));
    assert!(!is_rails_time("2024-05-01 12:34:56.12"));
}
