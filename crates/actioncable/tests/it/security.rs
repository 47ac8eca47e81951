//! Security gaps not covered by `auth.rs` and `handshake.rs`: JWTs with the right key but the
//! wrong algorithm (HS384, HS512, an RS256 header over an HMAC signature, every spelling of
//! `none`), oversized and too many request headers, and secrets kept out of the logs at TRACE.
//!
//! Every test here logs into the same TRACE capture (`LogCapture`, entered first thing), so the
//! log test sees everything any test of this module logged.

use crate::support::*;
use actioncable::{CookieKey, JwtVerifier};
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const JWT_SECRET: &str = "security-test JWT secret: s3cr3t-jwt-0123456789abcdef";
const SECRET_KEY_BASE: &str = "security-test secret key base: s3cr3t-skb-fedcba9876543210";

// ---------------------------------------------------------------------------------------------
// Log capture
// ---------------------------------------------------------------------------------------------

/// Everything logged by any test of this module, at every level, from every target.
fn logs() -> &'static LogCapture {
    static LOGS: OnceLock<LogCapture> = OnceLock::new();
    // Everything at TRACE, except the *test's own* WebSocket client, which logs the request it
    // sends (token included) from the same process; it is not the server.
    LOGS.get_or_init(|| LogCapture::new("trace,tungstenite::handshake::client=off"))
}

fn captured() -> String {
    logs().text()
}

// ---------------------------------------------------------------------------------------------
// Servers
// ---------------------------------------------------------------------------------------------

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(sub: &str) -> Claims {
    Claims {
        sub: sub.into(),
        exp: now() + 3600,
    }
}

async fn jwt_server() -> (CableServer, Recorder, JwtVerifier) {
    let rec = Recorder::new();
    let verifier = JwtVerifier::hs256(JWT_SECRET.as_bytes()).unwrap();
    let server = spawn_cable(builder(&rec).connection(JwtConnection {
        verifier: verifier.clone(),
        rec: rec.clone(),
    }))
    .await;
    (server, rec, verifier)
}

async fn assert_unauthorized(server: &CableServer, token: &str, label: &str) {
    assert_refused(server, token, label, "unauthorized").await;
}

/// Rejected with `reason` (`reconnect: false`), then closed.
async fn assert_refused(server: &CableServer, token: &str, label: &str, reason: &str) {
    let mut c = CableClient::connect(
        server.addr,
        Connect::new().path(&format!("/cable?token={token}")),
    )
    .await
    .unwrap_or_else(|e| panic!("{label}: a rejected connection is still upgraded: {e}"));
    assert_eq!(
        c.recv_text_with_pings().await,
        disconnect_frame(reason, false),
        "{label}"
    );
    c.expect_close_code(1000).await;
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A token with exactly this header JSON, `claims`, and an HMAC-SHA256 signature made with
/// `key` (what an attacker who knows nothing would do is covered elsewhere; this is the
/// algorithm-confusion family, where the signature itself is right for *some* algorithm).
fn token_with_header(header: &str, claims: &Claims, key: &[u8]) -> String {
    let message = format!(
        "{}.{}",
        b64(header),
        b64(serde_json::to_vec(claims).unwrap())
    );
    let signature = jsonwebtoken::crypto::sign(
        message.as_bytes(),
        &EncodingKey::from_secret(key),
        Algorithm::HS256,
    )
    .unwrap();
    format!("{message}.{signature}")
}

// ---------------------------------------------------------------------------------------------
// JWT algorithms
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn jwts_with_the_right_key_but_another_algorithm_are_rejected() {
    let _logs = logs().enter();
    let (server, rec, jwt) = jwt_server().await;
    let key = JWT_SECRET.as_bytes();
    let alice = claims("alice");

    let mut tokens: Vec<(String, String)> = Vec::new();
    for alg in [Algorithm::HS384, Algorithm::HS512] {
        let t = jsonwebtoken::encode(&Header::new(alg), &alice, &EncodingKey::from_secret(key))
            .unwrap();
        tokens.push((format!("{alg:?} with the right key"), t));
    }
    // An RS256 header over an HMAC of the secret: the classic key-confusion attack.
    tokens.push((
        "RS256 header, HMAC signature with the secret".into(),
        token_with_header(r#"{"alg":"RS256","typ":"JWT"}"#, &alice, key),
    ));
    // `none` in its spellings, without a signature and with a valid HS256 signature attached.
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#);
        let unsigned = format!(
            "{}.{}.",
            b64(&header),
            b64(serde_json::to_vec(&alice).unwrap())
        );
        tokens.push((format!("alg {alg}, no signature"), unsigned.clone()));
        tokens.push((
            format!("alg {alg}, no signature and no trailing dot"),
            unsigned.trim_end_matches('.').to_owned(),
        ));
        tokens.push((
            format!("alg {alg}, valid HS256 signature"),
            token_with_header(&header, &alice, key),
        ));
    }
    // Headers that are not a plain HS256 header.
    for header in [
        r#"{"typ":"JWT"}"#,
        r#"{"alg":"","typ":"JWT"}"#,
        r#"{"alg":null}"#,
        r#"{"alg":["HS256"]}"#,
        r#"{"alg":"HS256 "}"#,
        r#"{"alg":"hs256"}"#,
    ] {
        tokens.push((
            format!("header {header}"),
            token_with_header(header, &alice, key),
        ));
    }

    for (label, token) in &tokens {
        assert_unauthorized(&server, token, label).await;
    }
    assert_eq!(server.handle.connection_count(), 0);
    assert!(
        !rec.events()
            .iter()
            .any(|e| e.starts_with("disconnect:current_user")),
        "an algorithm-confused token got an identity: {:?}",
        rec.events()
    );

    // Positive controls: the same claims, HS256 with the same key, through both ways of making
    // it (the verifier's own signer, and this test's header builder), connect as alice.
    let own = jwt.sign(&alice).unwrap();
    let built = token_with_header(r#"{"typ":"JWT","alg":"HS256"}"#, &alice, key);
    for token in [own, built] {
        let mut c = server.client_at(&format!("/cable?token={token}")).await;
        c.confirm(LOBBY).await;
        c.perform(LOBBY, "whoami", json!({})).await;
        c.expect_data(LOBBY, &json!({ "user": "alice" })).await;
        c.close().await;
    }
    rec.wait_for_n("disconnect:current_user=alice", 2).await;
}

// ---------------------------------------------------------------------------------------------
// Oversized request heads
// ---------------------------------------------------------------------------------------------

/// Sends `head` (which may be larger than the server accepts) and returns the status line's
/// code, or `None` when the server closed without a response. Never blocks on a server that
/// stopped reading: the write and the read are both bounded.
async fn send_head(addr: std::net::SocketAddr, head: &[u8]) -> Option<u16> {
    let mut tcp = within("connect", TcpStream::connect(addr)).await.unwrap();
    // The server may answer and close before it has read everything; a failed write is fine.
    let _ = tokio::time::timeout(WAIT, tcp.write_all(head)).await;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, tcp.read(&mut chunk)).await {
            Err(_) => panic!("the server neither answered nor closed"),
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
        }
    }
    let text = String::from_utf8_lossy(&buf);
    text.strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
}

#[tokio::test]
async fn oversized_or_too_many_request_headers_are_refused_and_the_server_keeps_serving() {
    let _logs = logs().enter();
    let (server, _rec) = spawn_default().await;
    let addr = server.addr;
    let origin = server.origin();

    // One huge cookie header (1 MiB) on an otherwise valid upgrade.
    let cookie = format!("user={}", "a".repeat(1024 * 1024));
    let huge = upgrade_request(addr, "/cable", &[("Origin", &origin), ("Cookie", &cookie)]);
    // Many small headers (hyper's default limit is 100).
    let many_owned: Vec<(String, String)> = (0..500)
        .map(|i| (format!("X-Filler-{i}"), "x".to_owned()))
        .collect();
    let mut many_refs: Vec<(&str, &str)> = vec![("Origin", &origin)];
    many_refs.extend(many_owned.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    let many = upgrade_request(addr, "/cable", &many_refs);
    // A single header line longer than the whole read buffer, without a line break.
    let endless = format!(
        "GET /cable HTTP/1.1\r\nHost: {addr}\r\nX-Long: {}",
        "b".repeat(600 * 1024)
    );

    for (label, head) in [
        ("a 1 MiB cookie", huge.into_bytes()),
        ("500 headers", many.into_bytes()),
        ("a 600 KiB header line without an end", endless.into_bytes()),
    ] {
        // hyper refuses a head over its read buffer (~400 KiB) or with more than 100 headers
        // with 431 Request Header Fields Too Large, before our handler runs: no upgrade.
        let status = send_head(addr, &head).await;
        assert_eq!(status, Some(431), "{label}");
        assert_eq!(server.handle.connection_count(), 0, "{label}");
    }

    // A large header that is still within the limit (8 KiB cookie) upgrades normally, and so
    // does a plain client: the server kept serving.
    let cookie_8k = format!("user={}", "c".repeat(8 * 1024));
    let mut ok = CableClient::connect(addr, Connect::new().cookie(&cookie_8k))
        .await
        .expect("an 8 KiB cookie is accepted");
    ok.expect_welcome().await;
    ok.confirm(ECHO).await;
    ok.assert_echo(ECHO, json!("after the big heads")).await;
    let mut plain = server.client().await;
    plain.confirm(ECHO).await;
    plain.assert_echo(ECHO, json!("still serving")).await;
}

// ---------------------------------------------------------------------------------------------
// Secrets in logs
// ---------------------------------------------------------------------------------------------

/// JWT in `?token=`, else the signed cookie `user`.
#[derive(Debug, Clone)]
struct JwtOrCookie {
    jwt: JwtVerifier,
    key: CookieKey,
    rec: Recorder,
}

#[actioncable::async_trait]
impl actioncable::Connection for JwtOrCookie {
    async fn connect(
        &self,
        req: &actioncable::ConnectRequest,
    ) -> Result<actioncable::Identity, actioncable::Reject> {
        if let Some(token) = req.query("token") {
            let claims: Claims = self.jwt.verify(&token)?;
            return Ok(actioncable::Identity::new("current_user", claims.sub));
        }
        let user = req
            .signed_cookie("user", &self.key)
            .ok_or(actioncable::Reject::Unauthorized)?;
        Ok(actioncable::Identity::new("current_user", user))
    }

    async fn disconnect(&self, identity: &actioncable::Identity) {
        self.rec.record(format!("disconnect:{identity}"));
    }
}

#[tokio::test]
async fn secrets_tokens_and_cookie_values_never_appear_in_trace_logs() {
    let _logs = logs().enter();
    let rec = Recorder::new();
    let jwt = JwtVerifier::hs256(JWT_SECRET.as_bytes()).unwrap();
    let key = CookieKey::derive_from_secret(SECRET_KEY_BASE).unwrap();
    let server = spawn_cable(builder(&rec).connection(JwtOrCookie {
        jwt: jwt.clone(),
        key: key.clone(),
        rec: rec.clone(),
    }))
    .await;

    let good_token = jwt.sign(&claims("alice")).unwrap();
    let forged_token = JwtVerifier::hs256(b"another secret that is long enough to sign with")
        .unwrap()
        .sign(&claims("mallory"))
        .unwrap();
    let expired_token = mint_hs256(
        JWT_SECRET.as_bytes(),
        &json!({ "sub": "eve", "exp": now() - 7200 }),
    );
    let set_cookie = key.signed_set_cookie("user", "bob");
    let good_cookie = set_cookie.split(';').next().unwrap().to_owned();
    let cookie_value = good_cookie.strip_prefix("user=").unwrap().to_owned();
    let tampered_cookie = format!("user={}mallory", &cookie_value[..cookie_value.len() - 3]);

    // Valid logins, both ways, each doing some work.
    let mut alice = server
        .client_at(&format!("/cable?token={good_token}"))
        .await;
    alice.confirm(LOBBY).await;
    alice
        .perform(LOBBY, "speak", json!({ "text": "hello" }))
        .await;
    alice.recv_json().await;
    let mut bob = CableClient::connect(
        server.addr,
        Connect::new().cookie(&format!("theme=x; {good_cookie}")),
    )
    .await
    .unwrap();
    bob.expect_welcome().await;
    bob.confirm(ECHO).await;
    bob.assert_echo(ECHO, json!("hi")).await;
    // Invalid logins: forged, expired, garbage token; tampered and unsigned cookie.
    for token in [forged_token.as_str(), "x.y.z"] {
        assert_unauthorized(&server, token, "bad token").await;
    }
    assert_refused(&server, &expired_token, "expired token", "token_expired").await;
    for cookie in [tampered_cookie.as_str(), "user=bob"] {
        let mut c = CableClient::connect(server.addr, Connect::new().cookie(cookie))
            .await
            .unwrap();
        assert_eq!(
            c.recv_text_with_pings().await,
            disconnect_frame("unauthorized", false)
        );
        c.expect_close_code(1000).await;
    }
    // A refused origin and a plain GET carrying the token, so the request paths that log the
    // request itself run too.
    let refused = CableClient::connect(
        server.addr,
        Connect::new()
            .path(&format!("/cable?token={good_token}"))
            .origin("http://evil.example"),
    )
    .await;
    assert!(refused.is_err());
    let plain = http_raw(
        server.addr,
        &format!(
            "GET /cable?token={good_token} HTTP/1.1\r\nHost: {}\r\nCookie: {good_cookie}\r\nConnection: close\r\n\r\n",
            server.addr
        ),
        false,
    )
    .await;
    assert_eq!(plain.status, 404);
    alice.close().await;
    bob.close().await;
    rec.wait_for("disconnect:current_user=alice").await;
    rec.wait_for("disconnect:current_user=bob").await;
    // Let the close paths finish logging.
    eventually("connections closed", || {
        server.handle.connection_count() == 0
    })
    .await;
    tokio::time::sleep(SILENCE).await;

    let log = captured();
    // The capture works and saw these very connections (a test that cannot fail is no test).
    assert!(
        log.to_lowercase().contains("unauthorized"),
        "the rejections were not logged; captured {} bytes",
        log.len()
    );
    for expected in [
        "current_user=alice",
        "current_user=bob",
        "http://evil.example",
    ] {
        assert!(
            log.contains(expected),
            "the log lacks {expected:?}; captured {} bytes",
            log.len()
        );
    }
    let signature = |t: &str| t.rsplit('.').next().unwrap().to_owned();
    let forbidden: Vec<(&str, String)> = vec![
        ("JWT secret", JWT_SECRET.to_owned()),
        ("secret key base", SECRET_KEY_BASE.to_owned()),
        ("valid token", good_token.clone()),
        ("valid token's signature", signature(&good_token)),
        ("forged token", forged_token.clone()),
        ("expired token", expired_token.clone()),
        ("signed cookie value", cookie_value.clone()),
        (
            "tampered cookie value",
            tampered_cookie["user=".len()..].to_owned(),
        ),
    ];
    for (what, secret) in &forbidden {
        assert!(secret.len() >= 16, "{what} is too short to search for");
        assert!(
            !log.contains(secret.as_str()),
            "the {what} appears in the logs:\n{}",
            log.lines()
                .filter(|l| l.contains(secret.as_str()))
                .take(5)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}
