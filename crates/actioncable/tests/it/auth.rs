//! The auth helpers end to end: a `Connection` built on `JwtVerifier` (token in `?token=`)
//! and one built on signed cookies (`CookieKey`).

use crate::support::*;
use actioncable::{CookieKey, JwtVerifier};
use base64::Engine as _;
use serde_json::json;
use std::time::{SystemTime, UNIX_EPOCH};

const SECRET: &str = "an integration-test secret that is long enough";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

async fn jwt_server() -> (CableServer, Recorder, JwtVerifier) {
    jwt_server_with(JwtVerifier::hs256(SECRET.as_bytes()).unwrap()).await
}

async fn jwt_server_with(verifier: JwtVerifier) -> (CableServer, Recorder, JwtVerifier) {
    let rec = Recorder::new();
    let server = spawn_cable(builder(&rec).connection(JwtConnection {
        verifier: verifier.clone(),
        rec: rec.clone(),
    }))
    .await;
    (server, rec, verifier)
}

async fn assert_unauthorized(server: &CableServer, opts: Connect) {
    let mut c = CableClient::connect(server.addr, opts)
        .await
        .expect("a rejected connection is still upgraded");
    assert_eq!(
        c.recv_text_with_pings().await,
        disconnect_frame("unauthorized", false)
    );
    c.expect_close_code(1000).await;
}

fn token_path(token: &str) -> String {
    // Tokens are URL-safe base64 plus dots; no escaping needed.
    format!("/cable?token={token}")
}

#[tokio::test]
async fn a_valid_jwt_connects_with_its_subject_as_identity() {
    let (server, rec, jwt) = jwt_server().await;
    let token = jwt
        .sign(&Claims {
            sub: "alice".into(),
            exp: now() + 3600,
        })
        .unwrap();
    let mut c = server.client_at(&token_path(&token)).await;
    c.confirm(LOBBY).await;
    c.perform(LOBBY, "whoami", json!({})).await;
    c.expect_data(LOBBY, &json!({ "user": "alice" })).await;
    c.confirm(NOTIFICATIONS).await;
    server
        .handle
        .broadcast_to("NotificationChannel", "alice", &json!({ "hi": "alice" }))
        .await
        .unwrap();
    c.expect_data(NOTIFICATIONS, &json!({ "hi": "alice" }))
        .await;
    c.close().await;
    rec.wait_for("disconnect:current_user=alice").await;
}

#[tokio::test]
async fn expired_forged_none_and_malformed_jwts_are_rejected() {
    let (server, rec, jwt) = jwt_server().await;

    // Expired an hour ago (beyond the default 60 s leeway): `sign` refuses to make it, so it
    // comes from another issuer with the same secret.
    let expired = mint_hs256(
        SECRET.as_bytes(),
        &json!({ "sub": "alice", "exp": now() - 3600 }),
    );
    // Signed with another key.
    let forged = JwtVerifier::hs256(b"some other secret that is long enough too")
        .unwrap()
        .sign(&Claims {
            sub: "alice".into(),
            exp: now() + 3600,
        })
        .unwrap();
    // `alg: none`, no signature.
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let none = format!(
        "{}.{}.",
        b64.encode(r#"{"alg":"none","typ":"JWT"}"#),
        b64.encode(format!(r#"{{"sub":"alice","exp":{}}}"#, now() + 3600))
    );
    // A valid token with its payload swapped for another user's.
    let good = jwt
        .sign(&Claims {
            sub: "alice".into(),
            exp: now() + 3600,
        })
        .unwrap();
    let parts: Vec<&str> = good.split('.').collect();
    let swapped = format!(
        "{}.{}.{}",
        parts[0],
        b64.encode(format!(r#"{{"sub":"mallory","exp":{}}}"#, now() + 3600)),
        parts[2]
    );

    // An expired token is told so (AnyCable's reason), so that a client can refresh it; it
    // does not reconnect with the same token.
    let mut c = CableClient::connect(server.addr, Connect::new().path(&token_path(&expired)))
        .await
        .expect("a rejected connection is still upgraded");
    assert_eq!(
        c.recv_text_with_pings().await,
        disconnect_frame("token_expired", false)
    );
    c.expect_close_code(1000).await;
    for token in [
        forged.as_str(),
        none.as_str(),
        swapped.as_str(),
        "not-a-token",
        "",
    ] {
        assert_unauthorized(&server, Connect::new().path(&token_path(token))).await;
    }
    // No token at all.
    assert_unauthorized(&server, Connect::new()).await;
    assert_eq!(server.handle.connection_count(), 0);

    // The same server still accepts the good token.
    let mut c = server.client_at(&token_path(&good)).await;
    c.confirm(LOBBY).await;
    c.perform(LOBBY, "whoami", json!({})).await;
    c.expect_data(LOBBY, &json!({ "user": "alice" })).await;
    assert!(
        !rec.events().iter().any(|e| e.contains("mallory")),
        "{:?}",
        rec.events()
    );
}

#[tokio::test]
async fn a_signed_cookie_authenticates_and_a_tampered_one_does_not() {
    let rec = Recorder::new();
    let key = CookieKey::derive_from_secret(SECRET).unwrap();
    let server = spawn_cable(builder(&rec).connection(CookieConnection {
        key: key.clone(),
        rec: rec.clone(),
    }))
    .await;

    // What the app's login put in `Set-Cookie`; the browser sends back `name=value`.
    let set_cookie = key.signed_set_cookie("user", "alice");
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
    let cookie = set_cookie.split(';').next().unwrap().trim().to_owned();
    assert!(cookie.starts_with("user="), "{cookie}");

    let mut c = CableClient::connect(
        server.addr,
        Connect::new().cookie(&format!("theme=dark; {cookie}; other=1")),
    )
    .await
    .unwrap();
    c.expect_welcome().await;
    c.confirm(LOBBY).await;
    c.perform(LOBBY, "whoami", json!({})).await;
    c.expect_data(LOBBY, &json!({ "user": "alice" })).await;

    // Tampering: the value changed under the same signature, a flipped signature character,
    // an unsigned value, a cookie signed with another key, and no cookie at all.
    let value = cookie.strip_prefix("user=").unwrap();
    assert!(value.ends_with("alice"), "{value}");
    let swapped_value = format!("user={}mallory", &value[..value.len() - "alice".len()]);
    let mut flipped = value.to_owned().into_bytes();
    flipped[0] = if flipped[0] == b'A' { b'B' } else { b'A' };
    let flipped = format!("user={}", String::from_utf8(flipped).unwrap());
    let other_key = CookieKey::derive_from_secret("a completely different secret, long enough")
        .unwrap()
        .signed_set_cookie("user", "alice");
    let other_key = other_key.split(';').next().unwrap().to_owned();
    for bad in [
        swapped_value.as_str(),
        flipped.as_str(),
        "user=alice",
        other_key.as_str(),
    ] {
        assert_unauthorized(&server, Connect::new().cookie(bad)).await;
    }
    assert_unauthorized(&server, Connect::new()).await;

    c.close().await;
    rec.wait_for("disconnect:current_user=alice").await;
    // Only alice ever connected.
    let disconnects: Vec<String> = rec
        .events()
        .into_iter()
        .filter(|e| e.starts_with("disconnect:"))
        .collect();
    assert_eq!(
        disconnects,
        vec!["disconnect:current_user=alice".to_owned()]
    );
}

#[tokio::test]
async fn a_connection_is_closed_with_token_expired_when_its_token_expires() {
    // No leeway: the connection ends at the token's `exp`.
    let (server, rec, _) =
        jwt_server_with(JwtVerifier::hs256(SECRET.as_bytes()).unwrap().leeway(0)).await;
    let exp = now() + 2;
    let short = mint_hs256(SECRET.as_bytes(), &json!({ "sub": "alice", "exp": exp }));
    let long = mint_hs256(
        SECRET.as_bytes(),
        &json!({ "sub": "bob", "exp": now() + 3600 }),
    );
    let mut alice = server.client_at(&token_path(&short)).await;
    alice.confirm(LOBBY).await;
    let mut bob = server.client_at(&token_path(&long)).await;
    bob.confirm(LOBBY).await;

    assert_eq!(
        alice.recv_text_with_pings().await,
        disconnect_frame("token_expired", true)
    );
    let at = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    assert!(
        at.as_secs_f64() >= exp as f64,
        "not before the expiry: {at:?} < {exp} s"
    );
    assert!(
        at.as_secs_f64() < exp as f64 + 1.0,
        "at the expiry, not a beat later: {at:?} vs {exp} s"
    );
    alice.expect_close_code(1000).await;
    rec.wait_for("disconnect:current_user=alice").await;

    // Only that connection: bob's token lasts, and he still hears the room.
    server
        .handle
        .broadcast("chat:lobby", &json!({ "after": "alice" }))
        .await
        .unwrap();
    bob.expect_data(LOBBY, &json!({ "after": "alice" })).await;
    assert_eq!(server.handle.connection_count(), 1);
}
