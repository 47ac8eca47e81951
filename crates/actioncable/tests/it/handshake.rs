//! The HTTP side of a cable: upgrade, subprotocol, origin check, welcome, ping, refusals,
//! and connection-level authentication (`Connection::connect` / `disconnect`).

use crate::support::*;
use actioncable::AllowedOrigins;
use serde_json::json;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::{self, Message};

fn assert_page_not_found(reply: &HttpReply, head_request: bool) {
    assert_eq!(reply.status, 404, "{reply:?}");
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain"),
        "{reply:?}"
    );
    assert_eq!(reply.header("content-length"), Some("14"), "{reply:?}");
    assert_eq!(reply.header("upgrade"), None, "{reply:?}");
    assert_eq!(reply.header("sec-websocket-accept"), None, "{reply:?}");
    if !head_request {
        assert_eq!(reply.body_text(), "Page not found");
    }
}

fn assert_refused_with_404(result: Result<CableClient, tungstenite::Error>) {
    match result {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 404),
        Err(other) => panic!("expected an HTTP 404, got error {other}"),
        Ok(_) => panic!("expected an HTTP 404, got an upgraded socket"),
    }
}

#[tokio::test]
async fn selects_actioncable_v1_json_when_the_consumer_offers_both() {
    let (server, _) = spawn_default().await;
    let (reply, client) = raw_upgrade(
        server.addr,
        "/cable",
        &[
            ("Origin", &server.origin()),
            ("Sec-WebSocket-Protocol", CONSUMER_PROTOCOLS),
        ],
    )
    .await;
    assert_eq!(reply.status, 101);
    assert_eq!(
        reply.header("sec-websocket-protocol"),
        Some("actioncable-v1-json")
    );
    // RFC 6455 accept key for the sample nonce "dGhlIHNhbXBsZSBub25jZQ==".
    assert_eq!(
        reply.header("sec-websocket-accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
    // No permessage-deflate, like Rails.
    assert_eq!(reply.header("sec-websocket-extensions"), None);
    let mut client = client.unwrap();
    client.expect_welcome().await;

    // Through a regular client as well.
    let c = server.client().await;
    assert_eq!(c.protocol.as_deref(), Some("actioncable-v1-json"));
}

#[tokio::test]
async fn server_preference_wins_over_the_offer_order() {
    let (server, _) = spawn_default().await;
    let opts = Connect::new().protocols("actioncable-unsupported, actioncable-v1-json");
    let mut c = CableClient::connect(server.addr, opts).await.unwrap();
    assert_eq!(c.protocol.as_deref(), Some("actioncable-v1-json"));
    c.expect_welcome().await;
}

#[tokio::test]
async fn offering_only_the_unsupported_marker_selects_it() {
    let (server, _) = spawn_default().await;
    let opts = Connect::new().protocols("actioncable-unsupported");
    let mut c = CableClient::connect(server.addr, opts).await.unwrap();
    assert_eq!(c.protocol.as_deref(), Some("actioncable-unsupported"));
    // As in Rails, the welcome is still sent; the consumer closes on its side.
    c.expect_welcome().await;
}

#[tokio::test]
async fn no_or_unknown_protocol_offer_gets_no_protocol_header_but_a_welcome() {
    let (server, _) = spawn_default().await;
    let origin = server.origin();
    for extra in [
        vec![("Origin", origin.as_str())],
        vec![
            ("Origin", origin.as_str()),
            ("Sec-WebSocket-Protocol", "graphql-ws, mqtt"),
        ],
    ] {
        let (reply, client) = raw_upgrade(server.addr, "/cable", &extra).await;
        assert_eq!(reply.status, 101);
        assert_eq!(reply.header("sec-websocket-protocol"), None);
        client.unwrap().expect_welcome().await;
    }
}

#[tokio::test]
async fn welcome_is_the_first_frame_and_pings_carry_integer_unix_seconds() {
    let rec = Recorder::new();
    let server = spawn_cable(builder(&rec).ping_interval(Duration::from_millis(200))).await;
    let mut c = CableClient::connect(server.addr, Connect::new())
        .await
        .unwrap();
    assert_eq!(c.recv_text_with_pings().await, r#"{"type":"welcome"}"#);

    let mut last = 0;
    for _ in 0..2 {
        let before = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let frame = c.recv_text_with_pings().await;
        let after = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let value: serde_json::Value = serde_json::from_str(&frame).unwrap();
        let secs = value["message"]
            .as_u64()
            .unwrap_or_else(|| panic!("ping message is not an integer: {frame}"));
        assert_eq!(frame, format!(r#"{{"type":"ping","message":{secs}}}"#));
        // Seconds, not milliseconds; sent between our two clock reads (1 s of slack).
        assert!(
            before.saturating_sub(1) <= secs && secs <= after + 1,
            "{secs} not in [{before}, {after}]"
        );
        assert!(secs >= last);
        last = secs;
    }
}

#[tokio::test]
async fn plain_http_requests_get_page_not_found() {
    let (server, _) = spawn_default().await;
    let addr = server.addr;
    for (method, head) in [("GET", false), ("POST", false), ("HEAD", true)] {
        let body_headers = if method == "POST" {
            "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
        } else {
            "\r\n"
        };
        let req = format!("{method} /cable HTTP/1.1\r\nHost: {addr}\r\n{body_headers}");
        let reply = http_raw(addr, &req, head).await;
        assert_page_not_found(&reply, head);
    }
    // An upgrade request without Sec-WebSocket-Key is not an upgrade either.
    let req = format!(
        "GET /cable HTTP/1.1\r\nHost: {addr}\r\nOrigin: http://{addr}\r\nConnection: Upgrade\r\n\
         Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    assert_page_not_found(&http_raw(addr, &req, false).await, false);
}

#[tokio::test]
async fn a_refused_origin_gets_404_and_no_upgrade() {
    let (server, rec) = spawn_default().await;
    for origin in [
        "http://evil.example",
        "http://127.0.0.1",     // port differs from Host
        "https://evil.example", // scheme + other host
        "null",
    ] {
        let (reply, client) = raw_upgrade(
            server.addr,
            "/cable",
            &[
                ("Origin", origin),
                ("Sec-WebSocket-Protocol", CONSUMER_PROTOCOLS),
            ],
        )
        .await;
        assert!(client.is_none());
        assert_page_not_found(&reply, false);
        assert_eq!(reply.header("sec-websocket-protocol"), None);
    }
    assert_refused_with_404(
        CableClient::connect(server.addr, Connect::new().origin("http://evil.example")).await,
    );
    // Nothing was connected, so nothing was disconnected.
    assert_eq!(server.handle.connection_count(), 0);
    assert!(rec.events().is_empty(), "{:?}", rec.events());
}

/// Browsers always send `Origin` on a WebSocket upgrade, so a request without one is a
/// non-browser client (Node, Python, a mobile app): admitted by default, refused as Rails does
/// with `require_origin`.
#[tokio::test]
async fn a_request_without_origin_is_admitted_unless_origins_are_required() {
    let (server, _rec) = spawn_default().await;
    let mut c = CableClient::connect(server.addr, Connect::new().no_origin())
        .await
        .expect("a non-browser client connects under the default policy");
    assert_eq!(c.protocol.as_deref(), Some("actioncable-v1-json"));
    c.expect_welcome().await;
    c.confirm(ECHO).await;

    let rec = Recorder::new();
    let strict =
        spawn_cable(builder(&rec).allowed_origins(AllowedOrigins::same_origin().require_origin()))
            .await;
    let (reply, client) = raw_upgrade(
        strict.addr,
        "/cable",
        &[("Sec-WebSocket-Protocol", CONSUMER_PROTOCOLS)],
    )
    .await;
    assert!(client.is_none());
    assert_page_not_found(&reply, false);
    assert_refused_with_404(CableClient::connect(strict.addr, Connect::new().no_origin()).await);
    // A browser from the same origin still connects.
    let mut browser = CableClient::connect(strict.addr, Connect::new())
        .await
        .expect("same origin");
    browser.expect_welcome().await;
    assert!(rec.events().is_empty(), "{:?}", rec.events());
}

#[tokio::test]
async fn configured_origins_are_allowed() {
    let rec = Recorder::new();
    let server = spawn_cable(
        builder(&rec).allowed_origins(
            AllowedOrigins::same_origin()
                .allow("https://app.example.com")
                .allow_any_port("http://localhost"),
        ),
    )
    .await;
    let same = server.origin();
    for origin in [
        same.as_str(),
        "https://app.example.com",
        "http://localhost",
        "http://localhost:5173",
    ] {
        let mut c = CableClient::connect(server.addr, Connect::new().origin(origin))
            .await
            .unwrap_or_else(|e| panic!("{origin} refused: {e}"));
        c.expect_welcome().await;
    }
    for origin in [
        "http://localhost.evil.example",
        "http://localhost:",
        "https://localhost:5173",
        "https://app.example.com:8443",
        "http://app.example.com",
    ] {
        assert_refused_with_404(
            CableClient::connect(server.addr, Connect::new().origin(origin)).await,
        );
    }
}

#[tokio::test]
async fn any_origin_accepts_a_request_without_origin() {
    let rec = Recorder::new();
    let server = spawn_cable(builder(&rec).allowed_origins(AllowedOrigins::any())).await;
    for opts in [
        Connect::new().no_origin(),
        Connect::new().origin("http://evil.example"),
    ] {
        let mut c = CableClient::connect(server.addr, opts).await.unwrap();
        assert_eq!(c.protocol.as_deref(), Some("actioncable-v1-json"));
        c.expect_welcome().await;
    }
}

#[tokio::test]
async fn a_rejected_connection_gets_disconnect_unauthorized_then_close_1000() {
    let (server, rec) = spawn_default().await;
    let mut c = CableClient::connect(server.addr, Connect::new().path("/cable?user=banned"))
        .await
        .expect("a rejected connection is still upgraded, as in Rails");
    assert_eq!(c.protocol.as_deref(), Some("actioncable-v1-json"));
    // No welcome: the disconnect is the very first frame, then close 1000 with no reason.
    assert_eq!(
        c.recv_text_with_pings().await,
        r#"{"type":"disconnect","reason":"unauthorized","reconnect":false}"#
    );
    let close = c.expect_close().await.expect("a close frame with a code");
    assert_eq!(u16::from(close.code), 1000);
    assert_eq!(close.reason.as_str(), "");
    c.expect_end().await;
    // A rejected connection is never counted as open.
    assert_eq!(server.handle.connection_count(), 0);

    // A cookie works as well as the query string.
    let mut c = CableClient::connect(server.addr, Connect::new().cookie("user=banned"))
        .await
        .unwrap();
    c.expect_disconnect("unauthorized", false).await;

    // The server is fine afterwards.
    let mut ok = server.user("alice").await;
    ok.confirm(ECHO).await;
    ok.assert_echo(ECHO, json!("still up")).await;
    assert!(!rec.events().iter().any(|e| e.contains("banned")));
}

#[tokio::test]
async fn disconnect_callback_runs_after_unsubscribed_when_the_client_closes() {
    let (server, rec) = spawn_default().await;
    let mut c = server.user("alice").await;
    c.confirm(LOBBY).await;
    c.confirm(ECHO).await;
    assert_eq!(server.handle.connection_count(), 1);
    c.close().await;

    rec.wait_for("disconnect:current_user=alice").await;
    let events = rec.events();
    let pos = |e: &str| {
        events
            .iter()
            .position(|x| x == e)
            .unwrap_or_else(|| panic!("{e} missing from {events:?}"))
    };
    let disconnect = pos("disconnect:current_user=alice");
    assert!(pos(&format!("unsubscribed:{LOBBY}")) < disconnect);
    assert!(pos(&format!("unsubscribed:{ECHO}")) < disconnect);
    assert_eq!(rec.count("disconnect:current_user=alice"), 1);
    eventually("the connection is unregistered", || {
        server.handle.connection_count() == 0 && server.handle.stream_count() == 0
    })
    .await;
}

#[tokio::test]
async fn disconnect_callback_runs_when_the_tcp_connection_just_drops() {
    let (server, rec) = spawn_default().await;
    let mut c = server.client().await;
    c.confirm(LOBBY).await;
    drop(c); // no close frame
    rec.wait_for("disconnect:anonymous").await;
    rec.wait_for(&format!("unsubscribed:{LOBBY}")).await;
    eventually("the connection is unregistered", || {
        server.handle.connection_count() == 0 && server.handle.stream_count() == 0
    })
    .await;
}

#[tokio::test]
async fn identity_from_connect_is_visible_to_channels() {
    let (server, _) = spawn_default().await;
    let mut alice = server.user("alice").await;
    let mut anon = server.client().await;
    let mut by_cookie = CableClient::connect(server.addr, Connect::new().cookie("user=carol"))
        .await
        .unwrap();
    by_cookie.expect_welcome().await;
    for (c, user) in [
        (&mut alice, "alice"),
        (&mut anon, "anonymous"),
        (&mut by_cookie, "carol"),
    ] {
        c.confirm(LOBBY).await;
        c.perform(LOBBY, "whoami", json!({})).await;
        c.expect_data(LOBBY, &json!({ "user": user })).await;
    }
    assert_eq!(server.handle.connection_count(), 3);
}

#[tokio::test]
async fn the_client_close_is_answered() {
    let (server, _) = spawn_default().await;
    let c = server.client().await;
    // `close` fails the test unless the server replies to the close and ends the socket.
    c.close().await;
    eventually("the connection is unregistered", || {
        server.handle.connection_count() == 0
    })
    .await;
}

#[tokio::test]
async fn a_websocket_ping_is_answered_with_a_pong_and_nothing_else() {
    let (server, _) = spawn_default().await;
    let mut c = server.client().await;
    c.send(Message::Ping(b"are you there"[..].into())).await;
    loop {
        match c.next_frame(WAIT).await {
            Some(Message::Pong(payload)) => {
                assert_eq!(&payload[..], b"are you there");
                break;
            }
            Some(Message::Text(t)) if is_ping(&t) => {}
            other => panic!("expected a pong, got {other:?}"),
        }
    }
    // An unsolicited pong is ignored.
    c.send(Message::Pong(b"unsolicited"[..].into())).await;
    c.expect_silence(SILENCE).await;
    c.confirm(ECHO).await;
}

#[tokio::test]
async fn fragmented_commands_are_reassembled() {
    let (server, _) = spawn_default().await;
    let mut c = server.client().await;
    let command = json!({ "command": "subscribe", "identifier": ECHO }).to_string();
    let (a, rest) = command.split_at(5);
    let (b, d) = rest.split_at(rest.len() / 2);
    c.send(Message::Frame(Frame::message(
        a.to_owned(),
        OpCode::Data(Data::Text),
        false,
    )))
    .await;
    c.send(Message::Frame(Frame::message(
        b.to_owned(),
        OpCode::Data(Data::Continue),
        false,
    )))
    .await;
    // A control frame may come between fragments.
    c.send(Message::Ping(b"mid"[..].into())).await;
    c.send(Message::Frame(Frame::message(
        d.to_owned(),
        OpCode::Data(Data::Continue),
        true,
    )))
    .await;
    loop {
        match c.next_frame(WAIT).await {
            Some(Message::Pong(p)) => assert_eq!(&p[..], b"mid"),
            Some(Message::Text(t)) if is_ping(&t) => {}
            Some(Message::Text(t)) => {
                assert_eq!(t.as_str(), confirm_frame(ECHO));
                break;
            }
            other => panic!("expected the confirmation, got {other:?}"),
        }
    }
    c.assert_echo(ECHO, json!("reassembled")).await;
}

#[tokio::test]
async fn beyond_max_connections_upgrades_are_refused_with_503_before_the_handshake() {
    let rec = Recorder::new();
    let server = spawn_cable(builder(&rec).max_connections(2)).await;
    let mut first = server.user("a").await;
    let second = server.user("b").await;
    first.confirm(LOBBY).await;

    let (reply, client) = raw_upgrade(
        server.addr,
        "/cable",
        &[
            ("Origin", server.origin().as_str()),
            ("Sec-WebSocket-Protocol", CONSUMER_PROTOCOLS),
        ],
    )
    .await;
    assert!(client.is_none(), "no upgrade beyond the limit");
    assert_eq!(reply.status, 503, "{reply:?}");
    assert_eq!(reply.header("retry-after"), Some("1"), "{reply:?}");
    assert_eq!(reply.header("upgrade"), None, "{reply:?}");
    match CableClient::connect(server.addr, Connect::new()).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 503),
        Err(other) => panic!("expected an HTTP 503, got error {other}"),
        Ok(_) => panic!("expected an HTTP 503, got an upgraded socket"),
    }
    // The connections already open are untouched.
    first.perform(LOBBY, "whoami", json!({})).await;
    first.expect_data(LOBBY, &json!({ "user": "a" })).await;

    // A place frees up when a connection ends.
    second.close().await;
    rec.wait_for("disconnect:current_user=b").await;
    let mut third = within("a new connection is admitted", async {
        loop {
            if let Ok(c) =
                CableClient::connect(server.addr, Connect::new().path("/cable?user=c")).await
            {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    third.expect_welcome().await;
}

/// One logged-in account cannot hold a node's connections: beyond
/// `max_connections_per_identity` it is told `too_many_connections` without a welcome, while
/// other identities and anonymous clients are not counted against it; a closed connection frees
/// its place.
#[tokio::test]
async fn an_identity_beyond_its_connection_limit_is_turned_away() {
    let rec = Recorder::new();
    let server = spawn_cable(builder(&rec).max_connections_per_identity(2)).await;
    let mut first = server.user("alice").await;
    let mut second = server.user("alice").await;
    first.confirm(ECHO).await;
    second.confirm(ECHO).await;

    let mut third = CableClient::connect(server.addr, Connect::new().path("/cable?user=alice"))
        .await
        .expect("upgraded, then told why");
    assert_eq!(
        third.recv_text().await,
        disconnect_frame("too_many_connections", false),
        "no welcome first"
    );
    third.expect_close_code(1000).await;

    // Others are not affected: another user, and anonymous clients (not counted).
    let mut bob = server.user("bob").await;
    bob.confirm(ECHO).await;
    for _ in 0..3 {
        let mut anonymous = server.client().await;
        anonymous.confirm(ECHO).await;
    }
    assert_eq!(rec.count("disconnect:current_user=alice"), 0);

    // A closed connection frees its place.
    first.close().await;
    rec.wait_for("disconnect:current_user=alice").await;
    let mut again = server.user("alice").await;
    again.confirm(ECHO).await;
}
