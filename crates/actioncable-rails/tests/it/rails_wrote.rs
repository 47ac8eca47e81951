//! Reading what Rails wrote: every cookie, session and message from `cookies.rb fixtures` reads
//! here as Rails itself reads it, and every way of spoiling one is refused with its reason.

use actioncable_rails::{MessageEncryptor, MessageVerifier, RailsCookies, RailsError};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::ruby::{
    cookies_for, hmac_digest, key_digest, key_generator, request_with, select, str_of,
};

/// `cookies.encrypted[name]`, `cookies.signed[name]` or the session, as the fixture's kind
/// says, from a request carrying `cookie` (`name=value`).
fn read_as(
    cookies: &RailsCookies,
    fixture: &Value,
    cookie: &str,
    name: &str,
) -> Result<Option<Value>, RailsError> {
    let headers = request_with(cookie);
    let jar = cookies.jar(&headers);
    match str_of(fixture, "kind") {
        "encrypted" => jar.encrypted(name),
        "signed" => jar.signed(name),
        "session" => Ok(jar
            .session(name)?
            .map(|session| Value::Object(session.as_map().clone()))),
        other => panic!("kind {other}"),
    }
}

fn read(cookies: &RailsCookies, fixture: &Value) -> Result<Option<Value>, RailsError> {
    read_as(
        cookies,
        fixture,
        str_of(fixture, "cookie"),
        str_of(fixture, "name"),
    )
}

fn with_expect(expect: &'static str) -> impl Fn(&Value) -> bool {
    move |f| f["expect"] == expect
}

#[test]
fn every_cookie_and_session_rails_wrote_reads_as_rails_reads_it() {
    let fixtures = select("cookies", with_expect("ok"));
    // 4 digest pairs × 2 live encrypted, 2 signed, 2 sessions; a session without salt; 4
    // cookies without metadata.
    assert_eq!(fixtures.len(), 29);
    for fixture in fixtures {
        let expected = &fixture["rails_reads"];
        assert!(!expected.is_null(), "Rails reads {}", fixture["id"]);
        let ours = read(&cookies_for(&fixture["config"]), fixture);
        assert_eq!(
            ours.as_ref(),
            Ok(&Some(expected.clone())),
            "{}",
            fixture["id"]
        );
    }
}

#[test]
fn sessions_give_their_id_and_devise_user() {
    for fixture in select("cookies", |f| f["kind"] == "session" && f["expect"] == "ok") {
        let headers = request_with(str_of(fixture, "cookie"));
        let cookies = cookies_for(&fixture["config"]);
        let session = cookies
            .jar(&headers)
            .session("_myapp_session")
            .expect("a session")
            .expect("present");
        assert_eq!(
            session.id(),
            fixture["rails_reads"]["session_id"].as_str(),
            "{}",
            fixture["id"]
        );
        assert_eq!(session.id().map(str::len), Some(32));
        if let Some(user) = session.warden_user_key("user") {
            assert_eq!(session.get::<u64>("user_id"), Ok(Some(42)));
            assert_eq!(user.id(), Some(&json!(42)));
            assert_eq!(user.salt(), Some("$2a$12$Kz3vQ9mT1xY7bN5cD8eF0u"));
            assert_eq!(
                session.csrf_token(),
                fixture["value"]["_csrf_token"].as_str()
            );
        } else {
            let admin = session.warden_user_key("admin").expect("an admin");
            assert_eq!(
                admin.id(),
                Some(&json!("9b2e61c0-3d5f-4a7e-8c1b-0f6d2e4a8b3c"))
            );
            assert_eq!(admin.salt(), None);
        }
    }
}

#[test]
fn expired_cookies_and_sessions_are_refused() {
    let fixtures = select("cookies", with_expect("expired"));
    assert_eq!(fixtures.len(), 12);
    for fixture in fixtures {
        assert!(
            fixture["rails_reads"].is_null(),
            "Rails reads {}",
            fixture["id"]
        );
        let ours = read(&cookies_for(&fixture["config"]), fixture);
        assert_eq!(ours, Err(RailsError::Expired), "{}", fixture["id"]);
    }
}

fn unescape(value: &str) -> String {
    value
        .replace("%2B", "+")
        .replace("%2F", "/")
        .replace("%3D", "=")
}

fn escape(value: &str) -> String {
    value
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D")
}

/// The cookie with one bit changed in its `index`th `--` part (decoded from Base64, or a hex
/// digit of a signed cookie's digest).
fn flip(cookie: &str, index: usize) -> String {
    let (name, value) = cookie.split_once('=').expect("name=value");
    let value = unescape(value);
    let mut parts: Vec<String> = value.split("--").map(str::to_owned).collect();
    let part = &mut parts[index];
    match STANDARD.decode(part.as_str()) {
        Ok(mut bytes) if !bytes.is_empty() => {
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0x01;
            *part = STANDARD.encode(bytes);
        }
        _ => {
            // A hex digest: another first digit.
            let first = if part.starts_with('0') { "1" } else { "0" };
            part.replace_range(..1, first);
        }
    }
    format!("{name}={}", escape(&parts.join("--")))
}

#[test]
fn tampering_with_any_part_is_detected() {
    let mut checked = 0;
    for fixture in select("cookies", with_expect("ok")) {
        let cookies = cookies_for(&fixture["config"]);
        let cookie = str_of(fixture, "cookie");
        let parts = unescape(cookie).split("--").count();
        assert_eq!(
            parts,
            if fixture["kind"] == "signed" { 2 } else { 3 },
            "{}",
            fixture["id"]
        );
        // Ciphertext, IV, tag; or data and digest.
        for index in 0..parts {
            let tampered = flip(cookie, index);
            assert_ne!(tampered, cookie);
            let ours = read_as(&cookies, fixture, &tampered, str_of(fixture, "name"));
            assert_eq!(
                ours,
                Err(RailsError::InvalidSignature),
                "{} part {index}",
                fixture["id"]
            );
            checked += 1;
        }
    }
    assert!(checked >= 70, "{checked}");
}

#[test]
fn a_cookie_presented_under_another_name_is_refused() {
    for fixture in select("cookies", |f| {
        f["expect"] == "ok" && f["config"]["metadata"] != false
    }) {
        let cookies = cookies_for(&fixture["config"]);
        let (_, value) = str_of(fixture, "cookie")
            .split_once('=')
            .expect("name=value");
        let ours = read_as(&cookies, fixture, &format!("admin_id={value}"), "admin_id");
        assert_eq!(ours, Err(RailsError::WrongPurpose), "{}", fixture["id"]);
    }
}

#[test]
fn another_secret_key_digest_or_signed_digest_is_refused() {
    for fixture in select("cookies", |f| {
        f["expect"] == "ok" && f["config"]["metadata"] != false
    }) {
        let config = &fixture["config"];
        let id = &fixture["id"];
        let mut other_secret = config.clone();
        other_secret["secret"] = json!("another app's secret_key_base");
        let ours = read(&cookies_for(&other_secret), fixture);
        assert_eq!(ours, Err(RailsError::InvalidSignature), "{id} secret");

        let mut other_digest = config.clone();
        other_digest["key_digest"] = json!(match str_of(config, "key_digest") {
            "SHA1" => "SHA256",
            _ => "SHA1",
        });
        let ours = read(&cookies_for(&other_digest), fixture);
        assert_eq!(ours, Err(RailsError::InvalidSignature), "{id} key digest");

        if fixture["kind"] == "signed" {
            let mut other_signed = config.clone();
            other_signed["signed_digest"] = json!(match str_of(config, "signed_digest") {
                "SHA1" => "SHA256",
                _ => "SHA1",
            });
            let ours = read(&cookies_for(&other_signed), fixture);
            assert_eq!(
                ours,
                Err(RailsError::InvalidSignature),
                "{id} signed digest"
            );
        }
    }
}

#[test]
fn marshal_cookies_are_refused_with_their_own_error() {
    let fixtures = select("cookies", with_expect("marshal"));
    assert_eq!(fixtures.len(), 2);
    for fixture in fixtures {
        // Rails (on :marshal) reads them; we do not.
        assert_eq!(fixture["rails_reads"], json!(42));
        let ours = read(&cookies_for(&fixture["config"]), fixture);
        assert_eq!(ours, Err(RailsError::MarshalPayload), "{}", fixture["id"]);
    }
}

#[test]
fn aes_cbc_cookies_are_refused_with_their_own_error() {
    for fixture in select("cookies", with_expect("legacy_cipher")) {
        assert_eq!(fixture["rails_reads"], json!(42));
        let ours = read(&cookies_for(&fixture["config"]), fixture);
        assert_eq!(ours, Err(RailsError::LegacyCipher), "{}", fixture["id"]);
    }
}

#[test]
fn rotated_secrets_and_digests_are_read_after_rotate() {
    let fixtures = select("cookies", with_expect("rotated"));
    assert_eq!(fixtures.len(), 3);
    for fixture in fixtures {
        let id = &fixture["id"];
        // Rails reads it under the new configuration, through cookies_rotations.
        assert_eq!(fixture["rails_reads"], json!(42), "{id}");
        let new = cookies_for(&fixture["read_config"]);
        assert_eq!(
            read(&new, fixture),
            Err(RailsError::InvalidSignature),
            "{id}"
        );
        let rotated = if let Some(old) = fixture.get("rotate") {
            new.rotate(&key_generator(old))
        } else {
            new.rotate_signed_digest(hmac_digest(str_of(fixture, "rotate_signed_digest")))
        };
        assert_eq!(read(&rotated, fixture), Ok(Some(json!(42))), "{id}");
    }
}

#[test]
fn verifier_and_encryptor_messages_in_each_envelope() {
    let fixtures = select("messages", |_| true);
    assert_eq!(fixtures.len(), 12);
    for fixture in fixtures {
        let id = &fixture["id"];
        let key = hex::decode(str_of(fixture, "key")).expect("a hex key");
        let message = str_of(fixture, "message");
        let purpose = fixture["purpose"].as_str();
        let read = |purpose: Option<&str>| -> Result<Value, RailsError> {
            if fixture["kind"] == "verifier" {
                let digest = hmac_digest(str_of(fixture, "digest"));
                MessageVerifier::new(&key, digest)?.verified_for(message, purpose)
            } else {
                MessageEncryptor::new(&key)?.decrypt_and_verify(message, purpose)
            }
        };
        match str_of(fixture, "expect") {
            "ok" => assert_eq!(read(purpose), Ok(fixture["value"].clone()), "{id}"),
            "expired" => assert_eq!(read(purpose), Err(RailsError::Expired), "{id}"),
            other => panic!("{other}"),
        }
        if fixture["expect"] == "ok" {
            let other = if purpose.is_some() {
                None
            } else {
                Some("login")
            };
            assert_eq!(read(other), Err(RailsError::WrongPurpose), "{id}");
        }
    }
}

#[test]
fn key_digests_are_those_rails_derives_with() {
    // The same app under both digests derives different keys: each fixture reads under its own.
    for fixture in select("cookies", |f| {
        f["kind"] == "encrypted" && f["expect"] == "ok"
    }) {
        let digest = key_digest(str_of(&fixture["config"], "key_digest"));
        let keys = key_generator(&fixture["config"]);
        assert_eq!(keys.digest(), digest);
        let cookies = RailsCookies::from_key_generator(&keys);
        assert!(read(&cookies, fixture).is_ok(), "{}", fixture["id"]);
    }
}
