//! End-to-end tests: the demo's real router on 127.0.0.1:0, driven over HTTP/1.1 (raw
//! `TcpStream`) and a real WebSocket client speaking the ActionCable protocol.

use example_demo::assets::Assets;
use example_demo::config::DEFAULT_ASSETS;
use example_demo::{Config, app, serve};
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const STEP: Duration = Duration::from_secs(5);
const WHOLE_TEST: Duration = Duration::from_secs(30);
const LOBBY: &str = r#"{"channel":"ChatChannel","room":"lobby"}"#;
const STAFF: &str = r#"{"channel":"ChatChannel","room":"staff"}"#;
const NOTIFICATIONS: &str = r#"{"channel":"NotificationChannel"}"#;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A running demo server.
struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Server {
    async fn start() -> Server {
        let vars: HashMap<&str, &str> = HashMap::from([
            ("DEMO_DATABASE", ":memory:"),
            (
                "SECRET_KEY_BASE",
                "integration-test secret, at least 32 bytes long",
            ),
            ("PRIVATE_ROOMS", "staff=admin"),
        ]);
        let config = Config::from_lookup(|k| vars.get(k).map(|v| (*v).to_owned())).unwrap();
        let demo = app(&config).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, demo, async {
            let _ = stopped.await;
        }));
        Server {
            addr,
            stop: Some(stop),
            task,
        }
    }

    fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Triggers graceful shutdown and waits for the server to finish.
    async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let result = tokio::time::timeout(Duration::from_secs(15), &mut self.task)
            .await
            .expect("server did not stop in time")
            .expect("server task panicked");
        result.expect("server failed");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Runs a test body with an overall deadline.
async fn bounded(body: impl Future<Output = ()>) {
    tokio::time::timeout(WHOLE_TEST, body)
        .await
        .expect("test took too long");
}

// ---------------------------------------------------------------------------------------
// HTTP over a raw TcpStream

#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }
}

async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Response {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        if let Some(body) = body {
            head.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        head.push_str("\r\n");
        head.push_str(body.unwrap_or(""));
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        raw
    };
    let raw = tokio::time::timeout(STEP, exchange)
        .await
        .expect("HTTP request timed out");
    let text = String::from_utf8(raw).expect("response is not UTF-8");
    let (head, body) = text.split_once("\r\n\r\n").expect("no end of headers");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("no status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Response {
        status,
        headers,
        body,
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").expect("bad chunk");
        let size = usize::from_str_radix(size.trim(), 16).expect("bad chunk size");
        if size == 0 {
            return out;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
}

async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Response {
    request(addr, "GET", path, headers, None).await
}

async fn post(addr: SocketAddr, path: &str, body: Value) -> Response {
    request(addr, "POST", path, &[], Some(&body.to_string())).await
}

/// Logs in; returns the token and the `name=value` part of the cookie.
async fn login(addr: SocketAddr, name: &str) -> (String, String) {
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

// ---------------------------------------------------------------------------------------
// The cable

async fn connect(server: &Server, query: &str, cookie: Option<&str>) -> Ws {
    connect_from(server, query, cookie, &server.origin()).await
}

async fn connect_from(server: &Server, query: &str, cookie: Option<&str>, origin: &str) -> Ws {
    let url = format!("ws://{}/cable{query}", server.addr);
    let mut req = url.into_client_request().unwrap();
    let h = req.headers_mut();
    h.insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("actioncable-v1-json, actioncable-unsupported"),
    );
    h.insert("Origin", HeaderValue::from_str(origin).unwrap());
    if let Some(cookie) = cookie {
        h.insert("Cookie", HeaderValue::from_str(cookie).unwrap());
    }
    let (ws, resp) = tokio::time::timeout(STEP, tokio_tungstenite::connect_async(req))
        .await
        .expect("connect timed out")
        .expect("connect failed");
    assert_eq!(
        resp.headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok()),
        Some("actioncable-v1-json")
    );
    ws
}

/// The next protocol frame, skipping pings; `None` once the socket closed.
async fn next(ws: &mut Ws) -> Option<Value> {
    loop {
        let msg = tokio::time::timeout(STEP, ws.next())
            .await
            .expect("no frame in time");
        match msg {
            Some(Ok(WsMessage::Text(text))) => {
                let v: Value = serde_json::from_str(&text).expect("frame is not JSON");
                if v["type"] == "ping" {
                    continue;
                }
                return Some(v);
            }
            Some(Ok(WsMessage::Close(_))) => {
                // Send the queued close reply now, as a browser would, so the server does not
                // wait for it.
                let _ = tokio::time::timeout(STEP, ws.flush()).await;
                return None;
            }
            None | Some(Err(_)) => return None,
            Some(Ok(_)) => {}
        }
    }
}

async fn expect(ws: &mut Ws) -> Value {
    next(ws).await.expect("socket closed")
}

async fn welcome(server: &Server, query: &str, cookie: Option<&str>) -> Ws {
    let mut ws = connect(server, query, cookie).await;
    assert_eq!(expect(&mut ws).await, json!({"type":"welcome"}));
    ws
}

async fn send(ws: &mut Ws, frame: Value) {
    ws.send(WsMessage::text(frame.to_string())).await.unwrap();
}

async fn subscribe(ws: &mut Ws, identifier: &str) {
    send(ws, json!({"command":"subscribe","identifier":identifier})).await;
}

async fn perform(ws: &mut Ws, identifier: &str, data: Value) {
    send(
        ws,
        json!({"command":"message","identifier":identifier,"data":data.to_string()}),
    )
    .await;
}

/// The next `message` for `identifier` (other frames for it are a failure).
async fn message(ws: &mut Ws, identifier: &str) -> Value {
    let frame = expect(ws).await;
    assert_eq!(frame["identifier"], identifier, "{frame}");
    frame
        .get("message")
        .cloned()
        .unwrap_or_else(|| panic!("not a message: {frame}"))
}

/// Subscribes to a chat room and returns once both the confirmation and the own `joined`
/// broadcast arrived (their order is not guaranteed).
async fn join(ws: &mut Ws, identifier: &str, user: &str) {
    subscribe(ws, identifier).await;
    let mut confirmed = false;
    let mut joined = false;
    while !(confirmed && joined) {
        let frame = expect(ws).await;
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

async fn expect_unauthorized(mut ws: Ws) {
    assert_eq!(
        expect(&mut ws).await,
        json!({"type":"disconnect","reason":"unauthorized","reconnect":false})
    );
    assert_eq!(next(&mut ws).await, None, "socket should close");
}

fn is_rfc3339_millis_utc(s: &str) -> bool {
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

// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn login_token_chat_round_trip() {
    bounded(async {
        let server = Server::start().await;
        let addr = server.addr;
        let (alice_token, _) = login(addr, "alice").await;
        let (bob_token, _) = login(addr, "bob").await;

        let mut alice = welcome(&server, &format!("?token={alice_token}"), None).await;
        join(&mut alice, LOBBY, "alice").await;
        let mut bob = welcome(&server, &format!("?token={bob_token}"), None).await;
        join(&mut bob, LOBBY, "bob").await;
        assert_eq!(
            message(&mut alice, LOBBY).await,
            json!({"type":"joined","user":"bob"})
        );

        // Speak: trimmed, stored, broadcast to everyone in the room.
        perform(
            &mut alice,
            LOBBY,
            json!({"action":"speak","text":"  hello bob \n"}),
        )
        .await;
        for ws in [&mut alice, &mut bob] {
            let m = message(ws, LOBBY).await;
            assert_eq!(m["type"], "message");
            assert_eq!(m["user"], "alice");
            assert_eq!(m["text"], "hello bob");
            assert!(m["id"].is_i64(), "{m}");
            assert!(is_rfc3339_millis_utc(m["sent_at"].as_str().unwrap()), "{m}");
        }

        // Blank and oversized text: an error to the sender only. Bob's next frame is the
        // typing event that follows, so he received neither error.
        perform(&mut alice, LOBBY, json!({"action":"speak","text":"   "})).await;
        let e = message(&mut alice, LOBBY).await;
        assert_eq!(e["type"], "error");
        assert!(e["error"].is_string());
        perform(
            &mut alice,
            LOBBY,
            json!({"action":"speak","text":"x".repeat(501)}),
        )
        .await;
        assert_eq!(message(&mut alice, LOBBY).await["type"], "error");
        perform(&mut alice, LOBBY, json!({"action":"typing"})).await;
        assert_eq!(
            message(&mut bob, LOBBY).await,
            json!({"type":"typing","user":"alice"})
        );
        assert_eq!(
            message(&mut alice, LOBBY).await,
            json!({"type":"typing","user":"alice"})
        );

        // History, to the sender only, oldest first.
        perform(&mut bob, LOBBY, json!({"action":"speak","text":"hi alice"})).await;
        message(&mut alice, LOBBY).await;
        message(&mut bob, LOBBY).await;
        perform(&mut bob, LOBBY, json!({"action":"history","limit":10})).await;
        let h = message(&mut bob, LOBBY).await;
        assert_eq!(h["type"], "history");
        let texts: Vec<&str> = h["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["text"].as_str().unwrap())
            .collect();
        assert_eq!(texts, ["hello bob", "hi alice"]);
        perform(&mut bob, LOBBY, json!({"action":"history","limit":1})).await;
        let h = message(&mut bob, LOBBY).await;
        assert_eq!(h["messages"].as_array().unwrap().len(), 1);
        assert_eq!(h["messages"][0]["text"], "hi alice");

        // The same history over HTTP, with the bearer token.
        let bearer = format!("Bearer {alice_token}");
        let r = get(
            addr,
            "/rooms/lobby/messages?limit=50",
            &[("Authorization", &bearer)],
        )
        .await;
        assert_eq!(r.status, 200, "{r:?}");
        let list = r.json();
        assert_eq!(list.as_array().unwrap().len(), 2);
        assert_eq!(list[0]["user"], "alice");
        assert_eq!(list[1]["text"], "hi alice");
        let r = get(addr, "/rooms/lobby/messages", &[]).await;
        assert_eq!(r.status, 401);
        assert!(r.json()["error"].is_string());

        // Leaving tells the room.
        send(
            &mut bob,
            json!({"command":"unsubscribe","identifier":LOBBY}),
        )
        .await;
        assert_eq!(
            message(&mut alice, LOBBY).await,
            json!({"type":"left","user":"bob"})
        );
        drop((alice, bob));
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn private_rooms_admit_members_only() {
    bounded(async {
        let server = Server::start().await;
        let (alice_token, _) = login(server.addr, "alice").await;
        let (admin_token, _) = login(server.addr, "admin").await;

        let mut alice = welcome(&server, &format!("?token={alice_token}"), None).await;
        subscribe(&mut alice, STAFF).await;
        assert_eq!(
            expect(&mut alice).await,
            json!({"identifier":STAFF,"type":"reject_subscription"})
        );
        // Invalid and missing rooms are rejected too.
        for identifier in [
            r#"{"channel":"ChatChannel","room":"Not A Slug"}"#,
            r#"{"channel":"ChatChannel"}"#,
            r#"{"channel":"ChatChannel","room":7}"#,
        ] {
            subscribe(&mut alice, identifier).await;
            assert_eq!(
                expect(&mut alice).await,
                json!({"identifier":identifier,"type":"reject_subscription"})
            );
        }

        let mut admin = welcome(&server, &format!("?token={admin_token}"), None).await;
        join(&mut admin, STAFF, "admin").await;

        let alice_auth = format!("Bearer {alice_token}");
        let r = get(
            server.addr,
            "/rooms/staff/messages",
            &[("Authorization", &alice_auth)],
        )
        .await;
        assert_eq!(r.status, 403, "{r:?}");
        let admin_auth = format!("Bearer {admin_token}");
        let r = get(
            server.addr,
            "/rooms/staff/messages",
            &[("Authorization", &admin_auth)],
        )
        .await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.json(), json!([]));
        drop((alice, admin));
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn cookie_auth_and_rejections() {
    bounded(async {
        let server = Server::start().await;
        let (_, cookie) = login(server.addr, "carol").await;
        assert!(cookie.starts_with("user="), "{cookie}");

        // The signed cookie authenticates the cable and the HTTP API.
        let mut ws = welcome(&server, "", Some(&cookie)).await;
        subscribe(&mut ws, NOTIFICATIONS).await;
        assert_eq!(
            expect(&mut ws).await,
            json!({"identifier":NOTIFICATIONS,"type":"confirm_subscription"})
        );
        let r = get(server.addr, "/notifications", &[("Cookie", &cookie)]).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.json(), json!([]));

        // No credentials, a tampered cookie, an unsigned cookie, a bad token: unauthorized.
        expect_unauthorized(connect(&server, "", None).await).await;
        let tampered = cookie.replacen("carol", "admin", 1);
        assert_ne!(tampered, cookie);
        expect_unauthorized(connect(&server, "", Some(&tampered)).await).await;
        expect_unauthorized(connect(&server, "", Some("user=carol")).await).await;
        expect_unauthorized(connect(&server, "?token=not.a.jwt", None).await).await;
        let r = get(server.addr, "/notifications", &[("Cookie", &tampered)]).await;
        assert_eq!(r.status, 401);

        // Logout expires the cookie.
        let r = request(server.addr, "POST", "/logout", &[("Cookie", &cookie)], None).await;
        assert_eq!(r.status, 204);
        let set = r.header("set-cookie").unwrap_or_default();
        assert!(
            set.starts_with("user=;") && set.contains("Max-Age=0"),
            "{set}"
        );
        drop(ws);
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn notifications_reach_only_their_owner() {
    bounded(async {
        let server = Server::start().await;
        let addr = server.addr;
        let (alice_token, _) = login(addr, "alice").await;
        let (bob_token, _) = login(addr, "bob").await;
        let mut alice = welcome(&server, &format!("?token={alice_token}"), None).await;
        let mut bob = welcome(&server, &format!("?token={bob_token}"), None).await;
        for ws in [&mut alice, &mut bob] {
            subscribe(ws, NOTIFICATIONS).await;
            assert_eq!(expect(ws).await["type"], "confirm_subscription");
        }

        let r = post(
            addr,
            "/notifications",
            json!({"user":"bob","message":"hi","kind":"info","link":"/x"}),
        )
        .await;
        assert_eq!(r.status, 201, "{r:?}");
        let stored = r.json();
        let id = stored["id"].as_i64().expect("id");
        assert_eq!(stored["user"], "bob");
        assert_eq!(stored["message"], "hi");
        assert_eq!(stored["kind"], "info");
        assert_eq!(stored["link"], "/x");
        assert_eq!(stored["read"], false);
        let created_at = stored["created_at"].as_str().unwrap();
        assert!(is_rfc3339_millis_utc(created_at), "{created_at}");

        assert_eq!(
            message(&mut bob, NOTIFICATIONS).await,
            json!({"id":id,"message":"hi","kind":"info","link":"/x","created_at":created_at})
        );
        // Alice's next frame is her own notification: bob's never reached her.
        let r = post(addr, "/notifications", json!({"user":"alice","message":"yours"})).await;
        assert_eq!(r.status, 201, "{r:?}");
        let pushed = message(&mut alice, NOTIFICATIONS).await;
        assert_eq!(pushed["message"], "yours");
        assert_eq!(pushed["kind"], "info");
        assert_eq!(pushed["link"], Value::Null);

        // Alice cannot mark bob's notification read, nor learn that it exists.
        perform(&mut alice, NOTIFICATIONS, json!({"action":"mark_read","id":id})).await;
        assert_eq!(
            message(&mut alice, NOTIFICATIONS).await,
            json!({"type":"error","error":"notification not found"})
        );
        perform(&mut bob, NOTIFICATIONS, json!({"action":"mark_read","id":id + 1000})).await;
        assert_eq!(
            message(&mut bob, NOTIFICATIONS).await,
            json!({"type":"error","error":"notification not found"})
        );
        perform(&mut bob, NOTIFICATIONS, json!({"action":"mark_read","id":id})).await;
        assert_eq!(
            message(&mut bob, NOTIFICATIONS).await,
            json!({"type":"marked_read","id":id})
        );

        let bearer = format!("Bearer {bob_token}");
        let r = get(addr, "/notifications", &[("Authorization", &bearer)]).await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.json(),
            json!([{"id":id,"message":"hi","kind":"info","link":"/x","read":true,"created_at":created_at}])
        );
        assert_eq!(get(addr, "/notifications", &[]).await.status, 401);

        // Invalid posts.
        for body in [
            json!({"message":"hi"}),
            json!({"user":"","message":"hi"}),
            json!({"user":"bob","message":""}),
            json!({"user":"bob"}),
        ] {
            let r = post(addr, "/notifications", body.clone()).await;
            assert_eq!(r.status, 422, "{body}: {r:?}");
            assert!(r.json()["error"].is_string());
        }
        drop((alice, bob));
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn http_edges() {
    bounded(async {
        let server = Server::start().await;
        let addr = server.addr;
        let r = get(addr, "/cable", &[]).await;
        assert_eq!((r.status, r.body.as_str()), (404, "Page not found"));
        let r = get(addr, "/health", &[]).await;
        assert_eq!((r.status, r.body.as_str()), (200, "ok"));

        for name in [json!(""), json!("a b"), json!("x".repeat(33)), json!(5), Value::Null] {
            let r = post(addr, "/login", json!({ "name": name })).await;
            assert_eq!(r.status, 422, "{name}: {r:?}");
            assert!(r.json()["error"].is_string());
        }
        let r = request(addr, "POST", "/login", &[], Some("{not json")).await;
        assert_eq!(r.status, 400);
        assert!(r.json()["error"].is_string());

        // A foreign origin gets Rails' 404 before any upgrade.
        let (token, _) = login(addr, "dave").await;
        let url = format!("ws://{addr}/cable?token={token}");
        let mut req = url.into_client_request().unwrap();
        req.headers_mut()
            .insert("Origin", HeaderValue::from_static("http://evil.example"));
        let err = tokio_tungstenite::connect_async(req).await.unwrap_err();
        assert!(
            matches!(&err, tokio_tungstenite::tungstenite::Error::Http(resp) if resp.status() == 404),
            "{err}"
        );
        // localhost on another port is allowed by default.
        let mut ws = connect_from(&server, &format!("?token={token}"), None, "http://localhost:5173").await;
        assert_eq!(expect(&mut ws).await["type"], "welcome");
        drop(ws);
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn shutdown_tells_clients_to_reconnect() {
    bounded(async {
        let server = Server::start().await;
        let (token, _) = login(server.addr, "erin").await;
        let mut ws = welcome(&server, &format!("?token={token}"), None).await;
        join(&mut ws, LOBBY, "erin").await;
        let stopping = tokio::spawn(server.shutdown());
        assert_eq!(
            expect(&mut ws).await,
            json!({"type":"disconnect","reason":"server_restart","reconnect":true})
        );
        assert_eq!(next(&mut ws).await, None);
        tokio::time::timeout(Duration::from_secs(15), stopping)
            .await
            .expect("shutdown took too long")
            .expect("shutdown panicked");
    })
    .await;
}

#[tokio::test]
async fn rooms_lists_recent_activity_the_caller_may_enter() {
    bounded(async {
        let server = Server::start().await;
        let addr = server.addr;
        let r = get(addr, "/rooms", &[]).await;
        assert_eq!(r.status, 401, "{r:?}");
        let (alice_token, _) = login(addr, "alice").await;
        let (admin_token, _) = login(addr, "admin").await;
        let alice_auth = format!("Bearer {alice_token}");
        let admin_auth = format!("Bearer {admin_token}");
        let r = get(addr, "/rooms", &[("Authorization", &alice_auth)]).await;
        assert_eq!((r.status, r.json()), (200, json!([])));

        let mut alice = welcome(&server, &format!("?token={alice_token}"), None).await;
        let mut admin = welcome(&server, &format!("?token={admin_token}"), None).await;
        let dev = r#"{"channel":"ChatChannel","room":"dev"}"#;
        async fn speak_in(ws: &mut Ws, room: &str, user: &str, texts: &[&str]) {
            join(ws, room, user).await;
            for text in texts {
                perform(ws, room, json!({"action":"speak","text":text})).await;
                assert_eq!(message(ws, room).await["text"], *text);
            }
        }
        speak_in(&mut alice, LOBBY, "alice", &["one"]).await;
        speak_in(&mut admin, STAFF, "admin", &["staff only"]).await;
        speak_in(&mut alice, dev, "alice", &["two", "three"]).await;

        let rooms = |r: Response| -> Vec<(String, u64)> {
            assert_eq!(r.status, 200, "{r:?}");
            let list = r.json();
            list.as_array()
                .unwrap()
                .iter()
                .map(|room| {
                    let at = room["last_message_at"].as_str().unwrap();
                    assert!(is_rfc3339_millis_utc(at), "{room}");
                    (
                        room["room"].as_str().unwrap().to_owned(),
                        room["messages"].as_u64().unwrap(),
                    )
                })
                .collect()
        };
        // Most recent activity first; a private room only for its members.
        let for_alice = rooms(get(addr, "/rooms", &[("Authorization", &alice_auth)]).await);
        assert_eq!(for_alice, [("dev".into(), 2), ("lobby".into(), 1)]);
        let for_admin = rooms(get(addr, "/rooms", &[("Authorization", &admin_auth)]).await);
        assert_eq!(
            for_admin,
            [("dev".into(), 2), ("staff".into(), 1), ("lobby".into(), 1)]
        );
        drop((alice, admin));
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn serves_the_web_page_and_the_consumer_module() {
    bounded(async {
        let server = Server::start().await;
        let addr = server.addr;
        let r = get(addr, "/", &[]).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert!(
            r.header("content-type")
                .unwrap_or("")
                .starts_with("text/html"),
            "{r:?}"
        );
        // The import map sends the bare specifier to the module the demo serves.
        assert!(
            r.body
                .contains(r#""@rails/actioncable":"/vendor/actioncable.esm.js""#),
            "{}",
            r.body
        );
        for (path, kind) in [
            ("/main.mjs", "javascript"),
            ("/app.mjs", "javascript"),
            ("/app.css", "text/css"),
        ] {
            let r = get(addr, path, &[]).await;
            assert_eq!(r.status, 200, "{path}");
            assert!(
                r.header("content-type").unwrap_or("").contains(kind),
                "{path}: {r:?}"
            );
        }
        // The API keeps its routes; what neither the API nor the page has is a 404.
        assert_eq!(get(addr, "/health", &[]).await.body, "ok");
        assert_eq!(get(addr, "/no-such-page", &[]).await.status, 404);

        let module = Assets::new(DEFAULT_ASSETS).consumer_module();
        let r = get(addr, "/vendor/actioncable.esm.js", &[]).await;
        if module.is_file() {
            assert_eq!(r.status, 200, "{r:?}");
            let content_type = r.header("content-type").unwrap_or("");
            assert!(content_type.contains("javascript"), "{content_type}");
            assert!(r.body.contains("export {") && r.body.contains("createConsumer"));
        } else {
            eprintln!(
                "SKIPPED the consumer module check: {} is missing (run `npm ci` in js-client)",
                module.display()
            );
            assert_eq!(r.status, 404);
        }
        server.shutdown().await;
    })
    .await;
}
