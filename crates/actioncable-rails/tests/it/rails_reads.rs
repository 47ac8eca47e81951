//! Rails reading what is written here: cookies from `encrypt_cookie`/`sign_cookie`, a session,
//! and `MessageVerifier`/`MessageEncryptor` messages, all read back by Rails' own classes
//! (`cookies.rb`'s `read` mode).

use std::time::{Duration, SystemTime};

use actioncable_rails::{KeyDigest, KeyGenerator, MessageEncryptor, MessageVerifier, Metadata};
use serde_json::{Value, json};

use crate::ruby::{cookies_for, run};

const HOUR: Duration = Duration::from_secs(3600);

/// Runs every request through `cookies.rb read` and checks Rails read what `expected` says.
fn rails_reads(requests: Vec<(Value, Value)>) {
    let (requests, expected): (Vec<Value>, Vec<Value>) = requests.into_iter().unzip();
    let read = run("read", Value::Array(requests.clone()));
    let read = read.as_array().expect("a list");
    assert_eq!(read.len(), requests.len());
    for ((request, read), expected) in requests.iter().zip(read).zip(&expected) {
        assert_eq!(&read["value"], expected, "{}", request["id"]);
    }
}

fn app_config(key_digest: &str, signed_digest: &str) -> Value {
    json!({
        "secret": "the app's secret_key_base, as long as Rails makes them: 0123456789abcdef",
        "key_digest": key_digest,
        "signed_digest": signed_digest,
    })
}

#[test]
fn rails_reads_our_cookies_and_sessions() {
    let user = json!({ "name": "Zoë <ada> & \"co\"", "roles": ["admin"], "id": 42 });
    let session = json!({
        "session_id": "5f0c1b9e7a3d2c4b8e6f1a0d9c7b5e3a",
        "user_id": 42,
        "warden.user.user.key": [[42], "$2a$12$Kz3vQ9mT1xY7bN5cD8eF0u"],
    });
    let later = Some(SystemTime::now() + HOUR);
    let before = Some(SystemTime::now() - HOUR);
    let mut requests = Vec::new();
    for (key_digest, signed_digest) in [
        ("SHA1", "SHA1"),
        ("SHA1", "SHA256"),
        ("SHA256", "SHA1"),
        ("SHA256", "SHA256"),
    ] {
        let config = app_config(key_digest, signed_digest);
        let cookies = cookies_for(&config);
        let tag = format!("{key_digest}/{signed_digest}");
        for (name, value, expires, expected) in [
            ("user_id", json!(42), None, json!(42)),
            ("user", user.clone(), later, user.clone()),
            ("user_id", json!(7), before, Value::Null),
        ] {
            let encrypted = cookies
                .encrypt_cookie(name, &value, expires)
                .expect("a cookie");
            let signed = cookies
                .sign_cookie(name, &value, expires)
                .expect("a cookie");
            for (kind, cookie) in [("encrypted", encrypted), ("signed", signed)] {
                let id = format!("{kind} {tag} {name} {expires:?}");
                let request = json!({ "id": id, "kind": kind, "config": config, "name": name,
                    "cookie": format!("{name}={cookie}") });
                requests.push((request, expected.clone()));
            }
        }
        for (expires, expected) in [(None, session.clone()), (later, session.clone())] {
            let cookie = cookies
                .encrypt_cookie("_myapp_session", &session, expires)
                .expect("a cookie");
            let request = json!({ "id": format!("session {tag} {expires:?}"), "kind": "session",
                "config": config, "name": "_myapp_session",
                "cookie": format!("_myapp_session={cookie}") });
            requests.push((request, expected));
        }
    }
    assert_eq!(requests.len(), 32);
    rails_reads(requests);
}

#[test]
fn rails_reads_our_verifier_and_encryptor_messages_in_both_envelopes() {
    let keys = KeyGenerator::new("the app's secret_key_base", KeyDigest::Sha256).expect("keys");
    let verifier_key = keys.generate_key("messages", 64);
    let encryptor_key = keys.generate_key("messages", 32);
    let verifier = MessageVerifier::new(&verifier_key, actioncable_rails::HmacDigest::Sha256)
        .expect("a verifier");
    let encryptor = MessageEncryptor::new(&encryptor_key).expect("an encryptor");
    let value = json!({ "stream": "chat:lobby", "user": 42, "note": "<b>Zoë</b>" });

    let mut requests = Vec::new();
    let cases = [
        (
            "login",
            Metadata::purpose("login"),
            Some("login"),
            value.clone(),
        ),
        (
            "login, expires in an hour",
            Metadata::purpose("login").expires_in(HOUR),
            Some("login"),
            value.clone(),
        ),
        (
            "expired",
            Metadata::purpose("login").expires_at(SystemTime::now() - HOUR),
            Some("login"),
            Value::Null,
        ),
        (
            "read for another purpose",
            Metadata::purpose("login"),
            Some("reset"),
            Value::Null,
        ),
        ("no metadata", Metadata::new(), None, value.clone()),
    ];
    for (what, metadata, read_purpose, expected) in cases {
        for (envelope, metadata) in [
            ("data", metadata.clone()),
            ("legacy", metadata.clone().legacy_envelope()),
        ] {
            let signed = verifier.generate_with(&value, &metadata).expect("signed");
            let encrypted = encryptor
                .encrypt_and_sign(&value, &metadata)
                .expect("encrypted");
            for (kind, key, message) in [
                ("verifier", &verifier_key, signed),
                ("encryptor", &encryptor_key, encrypted),
            ] {
                let request = json!({ "id": format!("{kind} {envelope} {what}"), "kind": kind,
                    "key": hex::encode(key), "digest": "SHA256", "envelope": envelope,
                    "message": message, "purpose": read_purpose });
                requests.push((request, expected.clone()));
            }
        }
    }
    rails_reads(requests);
}
