//! Turbo Streams against Rails' own Ruby code (`tests/ruby/turbo.rb`: Debian's Rails
//! libraries making the calls turbo-rails makes), and `Turbo::StreamsChannel` through a real
//! socket.

use actioncable::Cable;
use actioncable::GlobalId;
use actioncable::stream::ToStreamParam;
use actioncable_rails::turbo::{Html, StreamsChannel, TurboStream, TurboStreams, stream_name_from};
use actioncable_rails::{KeyDigest, RailsError};
use cable_test_support::{LogCapture, SILENCE, data_frame, run_json_script, spawn_cable};
use serde_json::{Value, json};

/// What `tests/ruby/turbo.rb` needs.
const RUBY_PACKAGES: &str = "ruby ruby-activesupport ruby-actionview ruby-globalid";

const SECRET_KEY_BASE: &str = "0d7e6f3f1c7b4e0f9d2a8b5c6e1f3a4b7c9d0e2f4a6b8c1d3e5f7a9b0c2d4e6f8a1b3c5d7e9f0a2b4c6d8e0f1a3b5c7d9e";
const EXPLICIT_KEY: &[u8] = b"config.turbo.signed_stream_verifier_key: 32+ bytes";

fn ruby(request: Value) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ruby/turbo.rb");
    run_json_script("ruby", script, &request, RUBY_PACKAGES)
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("expected an array, got {value}"))
        .iter()
        .map(|v| v.as_str().expect("a string").to_owned())
        .collect()
}

/// Names of every kind a page may carry: `:` parts, a GlobalID param, non-ASCII, JSON's
/// special characters, empty.
fn names() -> Vec<String> {
    vec![
        "rooms:lobby".to_owned(),
        stream_name_from(&[&GlobalId::new("bcx", "Account", 5), &"entries"]),
        "ünïcødé ☃ 𝄞 日本語".to_owned(),
        "quote\" back\\slash /slash <tag> & 'apos' \u{1} \u{7f} \u{2028}".to_owned(),
        String::new(),
        "a--b--c".to_owned(),
    ]
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Copies of `signed` with one change each: in the data, in the digest, the digest cut short.
fn tampered(signed: &str) -> Vec<String> {
    let (data, digest) = signed.rsplit_once("--").unwrap();
    let flip = |s: &str, i: usize| {
        let mut chars: Vec<char> = s.chars().collect();
        chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
        chars.into_iter().collect::<String>()
    };
    vec![
        format!("{}--{digest}", flip(data, 0)),
        format!("{data}--{}", flip(digest, digest.len() - 1)),
        format!("{data}--{}", &digest[..digest.len() - 2]),
        format!("{data}=--{digest}"),
        data.to_owned(),
    ]
}

#[test]
fn signed_names_are_the_bytes_rails_makes_for_both_key_digests_and_an_explicit_key() {
    let names = names();
    let rails = ruby(json!({
        "mode": "sign",
        "secret_key_base": SECRET_KEY_BASE,
        "key_hex": hex(EXPLICIT_KEY),
        "names": names,
    }));
    let verifiers = [
        (
            "sha1",
            TurboStreams::from_secret_key_base(SECRET_KEY_BASE, KeyDigest::Sha1).unwrap(),
        ),
        (
            "sha256",
            TurboStreams::from_secret_key_base(SECRET_KEY_BASE, KeyDigest::Sha256).unwrap(),
        ),
        ("explicit", TurboStreams::from_key(EXPLICIT_KEY).unwrap()),
    ];
    for (which, turbo) in &verifiers {
        let signed_by_rails = strings(&rails[which]);
        assert_eq!(signed_by_rails.len(), names.len());
        for (name, signed) in names.iter().zip(&signed_by_rails) {
            assert_eq!(&turbo.signed_stream_name(name), signed, "{which}: {name:?}");
            assert_eq!(
                turbo.verified_stream_name(signed).as_ref(),
                Ok(name),
                "{which}"
            );
            for forged in tampered(signed) {
                assert!(
                    turbo.verified_stream_name(&forged).is_err(),
                    "{which}: a tampered copy of {name:?} verified: {forged}"
                );
            }
        }
        // Names signed with another key (another digest, the other kind of key) are refused.
        for (other, _) in verifiers.iter().filter(|(w, _)| w != which) {
            for signed in strings(&rails[other]) {
                assert_eq!(
                    turbo.verified_stream_name(&signed),
                    Err(RailsError::InvalidSignature),
                    "{which} accepted a name signed for {other}"
                );
            }
        }
    }
}

#[test]
fn what_rust_signs_rails_verifies() {
    let turbo = TurboStreams::from_key(EXPLICIT_KEY).unwrap();
    let names = names();
    let mut messages: Vec<String> = names.iter().map(|n| turbo.signed_stream_name(n)).collect();
    let forged: Vec<String> = messages.iter().flat_map(|m| tampered(m)).collect();
    let other_key = TurboStreams::from_key(b"another key")
        .unwrap()
        .signed_stream_name("rooms:lobby");
    messages.extend(forged.iter().cloned());
    messages.push(other_key);
    let rails =
        ruby(json!({ "mode": "verify", "key_hex": hex(EXPLICIT_KEY), "messages": messages }));
    let verified = rails["verified"].as_array().unwrap();
    for (name, got) in names.iter().zip(verified) {
        assert_eq!(
            got,
            &json!(name),
            "Rails did not verify Rust's signed {name:?}"
        );
    }
    for (message, got) in messages[names.len()..].iter().zip(&verified[names.len()..]) {
        assert_eq!(got, &Value::Null, "Rails verified a forged name: {message}");
    }
}

#[test]
fn stream_names_and_global_id_params_are_rails() {
    let records: Vec<(&str, Value)> = vec![
        ("Person", json!(5)),
        ("Account", json!("3f2c9b1e-8d4a-4c6f-9e2b-7a1d5c3e8f90")),
        ("Admin::User", json!(1_234_567_890_123_i64)),
        ("Message", json!("slug_with.dots~and-dashes")),
        // GlobalID escapes ids with `CGI.escape`: a space, `@`, `/`, `*`, `+`, non-ASCII.
        ("Member", json!("ann lee@example.com")),
        ("Path", json!("a/b*c+d%e")),
        ("Tag", json!("ünï")),
    ];
    let streamables = vec![
        json!([{"record": ["Account", 5]}, {"symbol": "entries"}]),
        json!(["rooms", "lobby"]),
        json!([{"record": ["Room", "3f2c9b1e-8d4a-4c6f-9e2b-7a1d5c3e8f90"]}, 42, true, "ünï"]),
        json!([{"symbol": "board"}]),
    ];
    let rails = ruby(json!({
        "mode": "names",
        "app": "bcx",
        "records": records.iter().map(|(m, id)| json!([m, id])).collect::<Vec<_>>(),
        "streamables": streamables,
    }));
    let id = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let ours: Vec<String> = records
        .iter()
        .map(|(model, v)| {
            GlobalId::new("bcx", model, id(v))
                .to_stream_param()
                .into_owned()
        })
        .collect();
    assert_eq!(ours, strings(&rails["gid_params"]));

    let account = GlobalId::new("bcx", "Account", 5);
    let room = GlobalId::new("bcx", "Room", "3f2c9b1e-8d4a-4c6f-9e2b-7a1d5c3e8f90");
    let ours = vec![
        stream_name_from(&[&account, &"entries"]),
        stream_name_from(&[&"rooms", &"lobby"]),
        stream_name_from(&[&room, &42, &true, &"ünï"]),
        stream_name_from(&[&"board"]),
    ];
    assert_eq!(ours, strings(&rails["stream_names"]));
}

#[test]
fn turbo_stream_tags_are_the_bytes_rails_tag_builder_renders() {
    let hostile = r#"<script>alert('x')</script> & "quotes" ünï"#;
    let hostile_target = r#"messages" onmouseover="alert(1)"#;
    let trusted = r#"<div id="message_1" class='m'>Hello &amp; welcome</div>"#;
    // (case for Ruby, the same TurboStream in Rust)
    let cases: Vec<(Value, TurboStream)> = vec![
        (
            json!({"action": "append", "target": "messages", "html": trusted}),
            TurboStream::append("messages", Html::trusted(trusted)),
        ),
        (
            json!({"action": "append", "target": hostile_target, "text": hostile}),
            TurboStream::append(hostile_target, Html::text(hostile)),
        ),
        (
            json!({"action": "prepend", "targets": ".list > li[data-x=\"1\"]", "text": hostile}),
            TurboStream::prepend_all(".list > li[data-x=\"1\"]", Html::text(hostile)),
        ),
        (
            json!({"action": "replace", "target": "card", "html": trusted, "method": "morph"}),
            TurboStream::replace("card", Html::trusted(trusted)).morph(),
        ),
        (
            json!({"action": "update", "targets": ".c", "html": "", "method": "morph"}),
            TurboStream::update_all(".c", Html::new()).morph(),
        ),
        (
            json!({"action": "update", "target": "count", "text": "3 < 4"}),
            TurboStream::update("count", Html::text("3 < 4")),
        ),
        (
            json!({"action": "before", "target": "x", "html": trusted}),
            TurboStream::before("x", Html::trusted(trusted)),
        ),
        (
            json!({"action": "after", "targets": "#a, #b", "html": trusted}),
            TurboStream::after_all("#a, #b", Html::trusted(trusted)),
        ),
        (
            json!({"action": "remove", "target": "message_1"}),
            TurboStream::remove("message_1"),
        ),
        (
            json!({"action": "remove", "targets": ".stale'"}),
            TurboStream::remove_all(".stale'"),
        ),
        (json!({"action": "refresh"}), TurboStream::refresh()),
    ];
    let turbo = TurboStreams::from_key(EXPLICIT_KEY).unwrap();
    let sources: Vec<String> = names()
        .iter()
        .map(|n| turbo.signed_stream_name(n))
        .collect();
    let rails = ruby(json!({
        "mode": "html",
        "cases": cases.iter().map(|(c, _)| c.clone()).collect::<Vec<_>>(),
        "stream_from": sources,
    }));
    let ours: Vec<String> = cases.iter().map(|(_, s)| s.to_string()).collect();
    assert_eq!(ours, strings(&rails["tags"]));
    let ours: Vec<String> = names()
        .iter()
        .map(|n| turbo.turbo_stream_from(n).into_string())
        .collect();
    assert_eq!(ours, strings(&rails["stream_sources"]));
    let texts: Vec<String> = cases
        .iter()
        .filter_map(|(c, _)| c["text"].as_str())
        .map(|t| Html::text(t).into_string())
        .collect();
    assert_eq!(texts, strings(&rails["escaped"]));
    // The hostile text never survives as markup.
    assert!(!ours.concat().contains("<script>"));
}

/// The identifier `<turbo-cable-stream-source>` sends: channel, signed name, then the
/// element's `data-*` attributes snakeized.
fn identifier(signed: &Value) -> String {
    json!({
        "channel": "Turbo::StreamsChannel",
        "signed_stream_name": signed,
        "room_name": "lobby",
        "turbo_permanent": "",
    })
    .to_string()
}

#[tokio::test]
async fn a_page_subscribes_with_a_rails_signed_name_and_gets_the_html_rails_broadcasts() {
    let stream = stream_name_from(&[&GlobalId::new("bcx", "Room", 7), &"messages"]);
    let rails = ruby(json!({
        "mode": "sign", "secret_key_base": SECRET_KEY_BASE, "key_hex": hex(EXPLICIT_KEY), "names": [stream],
    }));
    let signed = rails["sha256"][0].clone();
    let turbo = TurboStreams::from_secret_key_base(SECRET_KEY_BASE, KeyDigest::Sha256).unwrap();
    let server = spawn_cable(Cable::builder_with_state(turbo).channel::<StreamsChannel>()).await;
    let id = identifier(&signed);
    let mut alice = server.client().await;
    let mut bob = server.client().await;
    alice.confirm(&id).await;
    bob.confirm(&id).await;

    let update = TurboStream::append("messages", Html::text("<b>hi</b> & bye"));
    server.handle.broadcast(&stream, &update).await.unwrap();
    // Rails' `broadcast_append_to` sends the HTML as one JSON string: the consumer hands the
    // element that string, and Turbo renders it.
    let message = Value::String(
        r#"<turbo-stream action="append" target="messages"><template>&lt;b&gt;hi&lt;/b&gt; &amp; bye</template></turbo-stream>"#.to_owned(),
    );
    alice.expect_frame(&data_frame(&id, &message)).await;
    bob.expect_frame(&data_frame(&id, &message)).await;
    alice.expect_silence(SILENCE).await;
    server.shutdown().await;
}

#[tokio::test]
async fn missing_forged_and_tampered_names_are_rejected_and_logged_without_the_name() {
    let capture = LogCapture::new("actioncable_rails=debug");
    let _log = capture.enter();
    let turbo = TurboStreams::from_secret_key_base(SECRET_KEY_BASE, KeyDigest::Sha256).unwrap();
    let good = turbo.signed_stream_name("rooms:lobby");
    let server =
        spawn_cable(Cable::builder_with_state(turbo.clone()).channel::<StreamsChannel>()).await;
    let mut client = server.client().await;

    let sha1 = TurboStreams::from_secret_key_base(SECRET_KEY_BASE, KeyDigest::Sha1).unwrap();
    let mut refused: Vec<Value> = tampered(&good).into_iter().map(Value::String).collect();
    refused.extend([
        Value::String(sha1.signed_stream_name("rooms:lobby")),
        Value::String(String::new()),
        Value::Null,
        json!(5),
        json!([good.clone()]),
    ]);
    for signed in &refused {
        let id = identifier(signed);
        client.send_subscribe(&id).await;
        client.expect_reject(&id).await;
    }
    let without = r#"{"channel":"Turbo::StreamsChannel"}"#;
    client.send_subscribe(without).await;
    client.expect_reject(without).await;

    // Nothing reaches the rejected subscriptions; the genuine name still works.
    server
        .handle
        .broadcast("rooms:lobby", &TurboStream::remove("m1"))
        .await
        .unwrap();
    client.expect_silence(SILENCE).await;
    client
        .confirm(&identifier(&Value::String(good.clone())))
        .await;

    let log = capture.text();
    assert!(log.contains("signed_stream_name not verified"), "{log}");
    assert!(log.contains("no signed_stream_name string"), "{log}");
    for signed in refused
        .iter()
        .filter_map(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        assert!(!log.contains(signed), "the log holds a refused name: {log}");
    }
    server.shutdown().await;
}
