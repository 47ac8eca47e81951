//! Interop with Rails' own PostgreSQL adapter (`tests/ruby/postgresql_adapter.rb`, on Debian's
//! Rails 6.1) on the same database and channel prefix, in both directions.

use crate::pg::TestDb;
use crate::support::*;
use actioncable_postgres::{PostgresConfig, PostgresPubSub};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// What the script needs: Ruby, Rails' ActionCable and Active Record, and the pg gem.
const RUBY_PACKAGES: &str = "ruby ruby-actioncable ruby-activerecord ruby-pg";

fn script() -> String {
    format!(
        "{}/tests/ruby/postgresql_adapter.rb",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn rails(request: Value) -> Value {
    run_json_script("ruby", &script(), &request, RUBY_PACKAGES)
}

/// Streams whose identifiers exercise the prefix, the SHA1 rule for names over 63 bytes (ASCII
/// here: Rails 6.1 counts characters, main counts bytes, and they agree on ASCII), quotes
/// and Unicode.
fn streams() -> Vec<String> {
    vec![
        "chat:lobby".to_owned(),
        format!("chat:{}", "long".repeat(20)),
        r#"say "hi", it's me"#.to_owned(),
        "Größe 🚀".to_owned(),
    ]
}

async fn our_node(db: &TestDb, prefix: &str) -> Node {
    let pubsub = PostgresPubSub::new(
        PostgresConfig::from_url(&db.url())
            .expect("a valid URL")
            .channel_prefix(Some(prefix.into())),
    );
    stream_node(Arc::new(pubsub)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rails_broadcasts_reach_our_subscribers() {
    let db = TestDb::create();
    let prefix = "rails_app";
    let node = our_node(&db, prefix).await;
    let mut client = node.client().await;
    let streams = streams();
    for stream in &streams {
        client.subscribe_stream(stream).await;
    }
    let messages: Vec<Value> = streams
        .iter()
        .map(|s| {
            json!({
                "stream": s,
                "message": { "text": format!("it's \"{s}\" \\ ünïcödé 🚀"), "n": [1, 2.5, null] },
            })
        })
        .collect();
    let url = db.url();
    let answer = tokio::task::spawn_blocking(move || {
        rails(json!({
            "command": "broadcast",
            "url": url,
            "channel_prefix": prefix,
            "messages": messages,
        }))
    })
    .await
    .expect("the script ran");
    assert_eq!(answer["sent"].as_array().map(Vec::len), Some(streams.len()));
    for stream in &streams {
        let m = client.stream_message(stream).await;
        assert_eq!(m["text"], json!(format!("it's \"{stream}\" \\ ünïcödé 🚀")));
        assert_eq!(m["n"], json!([1, 2.5, null]));
    }
    client.expect_silence(SILENCE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_broadcasts_reach_rails_subscribers_and_large_ones_arrive_as_a_reference() {
    let db = TestDb::create();
    let prefix = "rails_app";
    let node = our_node(&db, prefix).await;
    let streams = streams();
    let ready = std::env::temp_dir().join(format!(
        "cable-test-{}-rails-ready-{}",
        std::process::id(),
        spare_port()
    ));
    let _ = std::fs::remove_file(&ready);
    let request = json!({
        "command": "subscribe",
        "url": db.url(),
        "channel_prefix": prefix,
        "streams": streams,
        "ready_file": ready.display().to_string(),
        "expect": streams.len() + 1,
    });
    let script = tokio::task::spawn_blocking(move || rails(request));
    eventually("Rails' adapter to LISTEN", || ready.exists()).await;
    let _ = std::fs::remove_file(&ready);

    let mut sent = Vec::new();
    for stream in &streams {
        let text = format!(
            r#"{{"text":"it's \"{}\" \\ ünïcödé 🚀"}}"#,
            stream.replace('"', "\\\"")
        );
        node.handle.broadcast_json(stream, &text).await.unwrap();
        sent.push(json!([stream, text]));
    }
    // Over NOTIFY's limit: stored, and Rails gets the reference it cannot resolve.
    let large = json!({ "body": "x".repeat(10_000) }).to_string();
    node.handle
        .broadcast_json(&streams[0], &large)
        .await
        .unwrap();

    let answer = tokio::time::timeout(Duration::from_secs(40), script)
        .await
        .expect("the script finishes")
        .expect("the script ran");
    let received = answer["received"].as_array().cloned().unwrap_or_default();
    assert_eq!(received.len(), streams.len() + 1, "{answer}");
    // Small payloads: byte for byte what we sent, on the stream Rails subscribed to.
    for expected in &sent {
        assert!(received.contains(expected), "{expected} not in {answer}");
    }
    let reference = received
        .iter()
        .find(|r| r[1].as_str().is_some_and(|p| !p.starts_with('{')))
        .unwrap_or_else(|| panic!("no reference in {answer}"));
    assert_eq!(reference[0], json!(streams[0]));
    let text = reference[1].as_str().unwrap();
    let id = text
        .strip_prefix("actioncable-postgres:large-payload:")
        .unwrap_or_else(|| panic!("not a reference: {text}"));
    assert!(id.parse::<i64>().is_ok(), "{text}");
    assert!(
        serde_json::from_str::<Value>(text).is_err(),
        "a reference must not be JSON, so Rails never passes it on as a message"
    );
}
