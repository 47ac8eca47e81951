//! AnyCable's signed streams against AnyCable's documented algorithm in Ruby and in Node
//! (`tests/ruby/signed_streams.rb`, `tests/node/signed_streams.mjs`) and Rails'
//! `MessageVerifier`, and the `$pubsub` channel through a real socket.

use actioncable::Cable;
use actioncable_rails::signed_streams::{PubSubChannel, SignedStreams};
use cable_test_support::{SILENCE, data_frame, run_json_script, spawn_cable};
use serde_json::{Value, json};

const SECRET: &str = "the streams secret (AnyCable's --streams_secret)";

fn ruby(request: Value) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ruby/signed_streams.rb");
    run_json_script("ruby", script, &request, "ruby ruby-activesupport")
}

fn node(request: Value) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/node/signed_streams.mjs");
    run_json_script("node", script, &request, "nodejs")
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("expected an array, got {value}"))
        .iter()
        .map(|v| v.as_str().expect("a string").to_owned())
        .collect()
}

fn names() -> Vec<&'static str> {
    vec![
        "notifications/17",
        "chat/2024",
        "ünïcødé ☃ 𝄞",
        "quote\" back\\slash <tag> & 'apos' \u{2028}",
        "",
    ]
}

#[test]
fn signed_names_are_the_bytes_ruby_node_and_rails_make() {
    let streams = SignedStreams::new(SECRET).unwrap();
    let request = json!({ "mode": "sign", "secret": SECRET, "names": names() });
    let rails = ruby(request.clone());
    let js = node(request);
    let ours: Vec<String> = names()
        .iter()
        .map(|n| streams.signed_stream_name(n))
        .collect();
    assert_eq!(
        ours,
        strings(&rails["documented"]),
        "AnyCable's Ruby version"
    );
    assert_eq!(
        ours,
        strings(&rails["message_verifier"]),
        "Rails' MessageVerifier"
    );
    assert_eq!(ours, strings(&js["signed"]), "AnyCable's Node.js version");
    for (name, signed) in names().iter().zip(strings(&js["signed"])) {
        assert_eq!(streams.verified_stream_name(&signed).as_deref(), Ok(*name));
    }
}

#[test]
fn what_rust_signs_ruby_and_node_verify_and_forgeries_fail_everywhere() {
    let streams = SignedStreams::new(SECRET).unwrap();
    let other = SignedStreams::new("another secret").unwrap();
    let mut messages: Vec<String> = names()
        .iter()
        .map(|n| streams.signed_stream_name(n))
        .collect();
    let good = messages.len();
    let lobby = streams.signed_stream_name("chat/lobby");
    let (data, digest) = lobby.rsplit_once("--").unwrap();
    let forged = vec![
        other.signed_stream_name("chat/lobby"),
        format!("{}--{digest}", data.replacen('I', "J", 1)),
        format!(
            "{data}--{}",
            digest.replacen(&digest[..1], if &digest[..1] == "0" { "1" } else { "0" }, 1)
        ),
    ];
    for f in &forged {
        assert!(streams.verified_stream_name(f).is_err(), "{f}");
    }
    messages.extend(forged);
    let request = json!({ "mode": "verify", "secret": SECRET, "messages": messages });
    for (who, answer) in [("Ruby", ruby(request.clone())), ("Node", node(request))] {
        let verified = answer["verified"].as_array().unwrap();
        for (name, got) in names().iter().zip(verified) {
            assert_eq!(
                got,
                &json!(name),
                "{who} did not verify Rust's signed {name:?}"
            );
        }
        assert!(
            verified[good..].iter().all(Value::is_null),
            "{who} verified a forgery: {verified:?}"
        );
    }
}

fn pubsub(key: &str, value: &str) -> String {
    json!({ "channel": "$pubsub", key: value }).to_string()
}

#[tokio::test]
async fn a_ruby_signed_name_subscribes_and_receives_broadcasts() {
    let rails = ruby(json!({ "mode": "sign", "secret": SECRET, "names": ["notifications/17"] }));
    let signed = strings(&rails["documented"]).remove(0);
    let server = spawn_cable(
        Cable::builder_with_state(SignedStreams::new(SECRET).unwrap()).channel::<PubSubChannel>(),
    )
    .await;
    let mut client = server.client().await;
    let id = pubsub("signed_stream_name", &signed);
    client.confirm(&id).await;
    let payload = json!({ "title": "You have mail", "count": 3 });
    server
        .handle
        .broadcast("notifications/17", &payload)
        .await
        .unwrap();
    client.expect_frame(&data_frame(&id, &payload)).await;
    client.expect_silence(SILENCE).await;
    server.shutdown().await;
}

#[tokio::test]
async fn forged_names_are_rejected_and_public_names_only_when_enabled() {
    let streams = SignedStreams::new(SECRET).unwrap();
    let forged = SignedStreams::new("another secret")
        .unwrap()
        .signed_stream_name("notifications/17");
    let closed =
        spawn_cable(Cable::builder_with_state(streams.clone()).channel::<PubSubChannel>()).await;
    let mut client = closed.client().await;
    for id in [
        pubsub("signed_stream_name", &forged),
        pubsub("stream_name", "notifications/17"),
        json!({ "channel": "$pubsub" }).to_string(),
        json!({ "channel": "$pubsub", "stream_name": 17 }).to_string(),
    ] {
        client.send_subscribe(&id).await;
        client.expect_reject(&id).await;
    }
    closed
        .handle
        .broadcast("notifications/17", &json!("x"))
        .await
        .unwrap();
    client.expect_silence(SILENCE).await;
    closed.shutdown().await;

    let open = spawn_cable(
        Cable::builder_with_state(streams.public_streams(true)).channel::<PubSubChannel>(),
    )
    .await;
    let mut client = open.client().await;
    let public = pubsub("stream_name", "notifications/17");
    client.confirm(&public).await;
    let refused = pubsub("signed_stream_name", &forged);
    client.send_subscribe(&refused).await;
    client.expect_reject(&refused).await;
    open.handle
        .broadcast("notifications/17", &json!("hello"))
        .await
        .unwrap();
    client
        .expect_frame(&data_frame(&public, &json!("hello")))
        .await;
    open.shutdown().await;
}
