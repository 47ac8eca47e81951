//! Identification by an AnyCable JWT: `CABLE_JWT_SECRET`, the token in the `jid` query
//! parameter (or an `X-JID` header), the identifiers in its `ext` claim (a JSON-encoded object),
//! as AnyCable's `identity/jwt.go` reads it. Anything else is rejected as Rails'
//! `reject_unauthorized_connection` rejects: `disconnect` `unauthorized`, `reconnect: false`,
//! then a close.

use crate::support::start;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cable_test_support::{CableClient, Connect, disconnect_frame, mint_hs256, unix_now};
use serde_json::{Value, json};

const SECRET: &str = "the cable's JWT secret, thirty-two bytes at least";

fn token(claims: &Value) -> String {
    mint_hs256(SECRET.as_bytes(), claims)
}

fn valid_claims(ext: &Value) -> Value {
    json!({ "ext": ext.to_string(), "exp": unix_now() + 300 })
}

async fn assert_rejected(server: &cable_test_support::ServerProcess, opts: Connect, why: &str) {
    assert_refused(server, opts, why, "unauthorized").await;
}

/// Rejected with `reason`, `reconnect: false`, then closed.
async fn assert_refused(
    server: &cable_test_support::ServerProcess,
    opts: Connect,
    why: &str,
    reason: &str,
) {
    let mut client = CableClient::connect(server.addr(), opts)
        .await
        .unwrap_or_else(|e| panic!("{why}: a rejected connection is still upgraded: {e}"));
    assert_eq!(
        client.recv_text_with_pings().await,
        disconnect_frame(reason, false),
        "{why}"
    );
    client.expect_close_code(1000).await;
}

/// A token AnyCable would accept connects, by query parameter or header; missing, expired,
/// tampered, foreign and `ext`-less tokens are rejected.
#[tokio::test]
async fn a_valid_jid_connects_and_anything_else_is_rejected() {
    let server = start(&[("CABLE_JWT_SECRET", SECRET)]);
    let good = token(&valid_claims(
        &json!({ "current_user": "gid://myapp/User/42" }),
    ));
    server
        .client(Connect::new().path(&format!("/cable?jid={good}")))
        .await
        .close()
        .await;
    server
        .client(Connect::new().header("X-JID", &good))
        .await
        .close()
        .await;

    let expired = token(&json!({ "ext": r#"{"user_id":42}"#, "exp": unix_now() - 3600 }));
    let (head, rest) = good.rsplit_once('.').expect("a JWT");
    let tampered_signature = format!("{head}.{}", rest.chars().rev().collect::<String>());
    let mut parts = good.split('.');
    let (h, _payload, sig) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let forged_payload = token(&valid_claims(
        &json!({ "current_user": "gid://myapp/User/1" }),
    ));
    let forged_payload = forged_payload.split('.').nth(1).unwrap();
    let swapped_payload = format!("{h}.{forged_payload}.{sig}");
    let other_secret = mint_hs256(
        b"another secret, also thirty-two bytes long",
        &valid_claims(&json!({ "user_id": 42 })),
    );
    let no_ext = token(&json!({ "exp": unix_now() + 300, "sub": "42" }));
    let ext_not_an_object = token(&json!({ "ext": "42", "exp": unix_now() + 300 }));
    let no_exp = token(&json!({ "ext": r#"{"user_id":42}"# }));
    for (why, opts) in [
        ("no token", Connect::new()),
        ("an empty jid", Connect::new().path("/cable?jid=")),
        (
            "a changed signature",
            Connect::new().path(&format!("/cable?jid={tampered_signature}")),
        ),
        (
            "a changed payload",
            Connect::new().path(&format!("/cable?jid={swapped_payload}")),
        ),
        (
            "another secret",
            Connect::new().path(&format!("/cable?jid={other_secret}")),
        ),
        (
            "no ext claim",
            Connect::new().path(&format!("/cable?jid={no_ext}")),
        ),
        (
            "ext not an object",
            Connect::new().path(&format!("/cable?jid={ext_not_an_object}")),
        ),
        (
            "no exp claim",
            Connect::new().path(&format!("/cable?jid={no_exp}")),
        ),
        ("not a JWT", Connect::new().path("/cable?jid=not.a.token")),
        ("a bad X-JID", Connect::new().header("X-JID", "not.a.token")),
    ] {
        assert_rejected(&server, opts, why).await;
    }
    // An expired token is told so, as AnyCable does (its client refreshes the token).
    for (why, opts) in [
        (
            "expired",
            Connect::new().path(&format!("/cable?jid={expired}")),
        ),
        ("an expired X-JID", Connect::new().header("X-JID", &expired)),
    ] {
        assert_refused(&server, opts, why, "token_expired").await;
    }
    // The credentials never reach the log.
    let output = server.output();
    assert!(
        !output.contains(&good[20..60]),
        "a token was logged: {output}"
    );
}

/// A token that names `alg: none` carries no signature and is rejected, with or without the
/// empty signature part.
#[tokio::test]
async fn an_alg_none_token_is_rejected() {
    let server = start(&[("CABLE_JWT_SECRET", SECRET)]);
    let encode = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
    let header = encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = encode(
        valid_claims(&json!({ "user_id": 42 }))
            .to_string()
            .as_bytes(),
    );
    for token in [
        format!("{header}.{payload}."),
        format!("{header}.{payload}"),
    ] {
        assert_rejected(
            &server,
            Connect::new().path(&format!("/cable?jid={token}")),
            "alg none",
        )
        .await;
    }
}
