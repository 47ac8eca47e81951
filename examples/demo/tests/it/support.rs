//! The demo's end-to-end fixtures: the demo app with a test configuration, served by its own
//! `serve` function (the one under test) on a loopback port, and the demo's ways in (login, a
//! cable connection with a token or the login cookie, joining a room). The client, the server
//! wrapper, timing bounds and raw HTTP come from `cable-test-support`, re-exported here.

pub(crate) use cable_test_support::*;

use example_demo::{Config, app, serve};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;

pub(crate) const LOBBY: &str = r#"{"channel":"ChatChannel","room":"lobby"}"#;
pub(crate) const STAFF: &str = r#"{"channel":"ChatChannel","room":"staff"}"#;
pub(crate) const NOTIFICATIONS: &str = r#"{"channel":"NotificationChannel"}"#;

/// The demo (in-memory database, private room `staff` for `admin`) served by
/// `example_demo::serve` until [`TestServer::shutdown`].
pub(crate) async fn start_demo() -> TestServer {
    start_demo_with(&[]).await
}

/// [`start_demo`] with more settings (`LOGIN_LIMIT_PER_MINUTE`, `CHAT_KEEP_PER_ROOM`, …).
pub(crate) async fn start_demo_with(settings: &[(&str, &str)]) -> TestServer {
    let mut vars: HashMap<&str, &str> = HashMap::from([
        ("DEMO_DATABASE", ":memory:"),
        (
            "SECRET_KEY_BASE",
            "integration-test secret, at least 32 bytes long",
        ),
        ("PRIVATE_ROOMS", "staff=admin"),
    ]);
    vars.extend(settings.iter().copied());
    let config = Config::from_lookup(|k| vars.get(k).map(|v| (*v).to_owned())).unwrap();
    let demo = app(&config).unwrap();
    TestServer::start((), |listener, stop| serve(listener, demo, stop)).await
}

/// Runs a test body with the [`WHOLE_TEST`] bound.
pub(crate) async fn bounded(body: impl Future<Output = ()>) {
    within_for(WHOLE_TEST, "the whole test", body).await;
}

/// `GET path` with `headers`.
pub(crate) async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> HttpReply {
    http_request(addr, "GET", path, headers, None).await
}

/// `POST path` with a JSON `body` (`Content-Type: application/json`).
pub(crate) async fn post(addr: SocketAddr, path: &str, body: Value) -> HttpReply {
    http_request(addr, "POST", path, &[], Some(&body.to_string())).await
}

/// `POST path` with a JSON `body` as the holder of `token` (`Authorization: Bearer`).
pub(crate) async fn post_as(addr: SocketAddr, token: &str, path: &str, body: Value) -> HttpReply {
    let bearer = format!("Bearer {token}");
    http_request(
        addr,
        "POST",
        path,
        &[("Authorization", &bearer)],
        Some(&body.to_string()),
    )
    .await
}

/// `POST path` with exactly these `headers` (no `Content-Type` unless among them) and `body`,
/// as an HTML form or a `no-cors` fetch on another site would send it.
pub(crate) async fn post_raw(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> HttpReply {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    http_raw(addr, &request, false).await
}

/// Logs in; returns the token and the `name=value` part of the cookie.
pub(crate) async fn login(addr: SocketAddr, name: &str) -> (String, String) {
    let r = post(addr, "/login", json!({ "name": name })).await;
    assert_eq!(r.status, 200, "{r:?}");
    let body = r.json();
    assert_eq!(body["user"], name);
    let token = body["token"].as_str().expect("token").to_owned();
    let cookie = r
        .header("set-cookie")
        .and_then(|c| c.split(';').next())
        .expect("Set-Cookie")
        .to_owned();
    (token, cookie)
}

/// A cable connection from the demo's own page (`query` after `/cable`, e.g. `?token=…`).
pub(crate) async fn connect(server: &TestServer, query: &str, cookie: Option<&str>) -> CableClient {
    connect_from(server, query, cookie, &server.origin()).await
}

/// A cable connection from a page of `origin`; the server must pick `actioncable-v1-json`.
pub(crate) async fn connect_from(
    server: &TestServer,
    query: &str,
    cookie: Option<&str>,
    origin: &str,
) -> CableClient {
    let mut opts = Connect::new()
        .path(&format!("/cable{query}"))
        .origin(origin);
    if let Some(cookie) = cookie {
        opts = opts.cookie(cookie);
    }
    let ws = CableClient::connect(server.addr, opts)
        .await
        .expect("connect failed");
    assert_eq!(ws.protocol.as_deref(), Some("actioncable-v1-json"));
    ws
}

/// A connection that was welcomed.
pub(crate) async fn welcome(server: &TestServer, query: &str, cookie: Option<&str>) -> CableClient {
    let mut ws = connect(server, query, cookie).await;
    ws.expect_welcome().await;
    ws
}

/// Subscribes to a chat room and returns once both the confirmation and the own `joined`
/// broadcast arrived (their order is not guaranteed).
pub(crate) async fn join(ws: &mut CableClient, identifier: &str, user: &str) {
    ws.send_subscribe(identifier).await;
    let mut confirmed = false;
    let mut joined = false;
    while !(confirmed && joined) {
        let frame = ws.recv_json().await;
        assert_eq!(frame["identifier"], identifier, "{frame}");
        if frame["type"] == "confirm_subscription" {
            confirmed = true;
        } else if frame["message"] == json!({"type":"joined","user":user}) {
            joined = true;
        } else {
            panic!("unexpected frame while joining: {frame}");
        }
    }
}

/// `disconnect` `unauthorized` without reconnect, then the socket closes.
pub(crate) async fn expect_unauthorized(mut ws: CableClient) {
    assert_eq!(
        ws.recv_json().await,
        json!({"type":"disconnect","reason":"unauthorized","reconnect":false})
    );
    assert_eq!(ws.next_json_or_end().await, None, "socket should close");
}

/// An RFC 3339 time in UTC with milliseconds, e.g. `2024-05-01T12:34:56.789Z`.
pub(crate) fn is_rfc3339_millis_utc(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 24
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'.'
        && b[23] == b'Z'
        && s.starts_with("20")
}
