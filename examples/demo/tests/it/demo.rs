//! End-to-end tests: the demo's real router on a loopback port, driven over HTTP/1.1 (raw
//! `TcpStream`) and a real WebSocket client speaking the ActionCable protocol.

use crate::support::*;
use example_demo::assets::{Assets, VENDOR_PACKAGES};
use example_demo::config::{Config, DEFAULT_ASSETS};
use serde_json::{Value, json};
use std::path::Path;

#[tokio::test]
async fn login_token_chat_round_trip() {
    bounded(async {
        let server = start_demo().await;
        let addr = server.addr;
        let (alice_token, _) = login(addr, "alice").await;
        let (bob_token, _) = login(addr, "bob").await;

        let mut alice = welcome(&server, &format!("?token={alice_token}"), None).await;
        join(&mut alice, LOBBY, "alice").await;
        let mut bob = welcome(&server, &format!("?token={bob_token}"), None).await;
        join(&mut bob, LOBBY, "bob").await;
        assert_eq!(
            alice.recv_message(LOBBY).await,
            json!({"type":"joined","user":"bob"})
        );

        // Speak: trimmed, stored, broadcast to everyone in the room.
        alice
            .send_data(LOBBY, &json!({"action":"speak","text":"  hello bob \n"}))
            .await;
        for ws in [&mut alice, &mut bob] {
            let m = ws.recv_message(LOBBY).await;
            assert_eq!(m["type"], "message");
            assert_eq!(m["user"], "alice");
            assert_eq!(m["text"], "hello bob");
            assert!(m["id"].is_i64(), "{m}");
            assert!(is_rfc3339_millis_utc(m["sent_at"].as_str().unwrap()), "{m}");
        }

        // Blank and oversized text: an error to the sender only. Bob's next frame is the
        // typing event that follows, so he received neither error.
        alice
            .send_data(LOBBY, &json!({"action":"speak","text":"   "}))
            .await;
        let e = alice.recv_message(LOBBY).await;
        assert_eq!(e["type"], "error");
        assert!(e["error"].is_string());
        alice
            .send_data(LOBBY, &json!({"action":"speak","text":"x".repeat(501)}))
            .await;
        assert_eq!(alice.recv_message(LOBBY).await["type"], "error");
        alice.send_data(LOBBY, &json!({"action":"typing"})).await;
        assert_eq!(
            bob.recv_message(LOBBY).await,
            json!({"type":"typing","user":"alice"})
        );
        assert_eq!(
            alice.recv_message(LOBBY).await,
            json!({"type":"typing","user":"alice"})
        );

        // History, to the sender only, oldest first.
        bob.send_data(LOBBY, &json!({"action":"speak","text":"hi alice"}))
            .await;
        alice.recv_message(LOBBY).await;
        bob.recv_message(LOBBY).await;
        bob.send_data(LOBBY, &json!({"action":"history","limit":10}))
            .await;
        let h = bob.recv_message(LOBBY).await;
        assert_eq!(h["type"], "history");
        let texts: Vec<&str> = h["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["text"].as_str().unwrap())
            .collect();
        assert_eq!(texts, ["hello bob", "hi alice"]);
        bob.send_data(LOBBY, &json!({"action":"history","limit":1}))
            .await;
        let h = bob.recv_message(LOBBY).await;
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
        bob.send_unsubscribe(LOBBY).await;
        assert_eq!(
            alice.recv_message(LOBBY).await,
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
        let server = start_demo().await;
        let (alice_token, _) = login(server.addr, "alice").await;
        let (admin_token, _) = login(server.addr, "admin").await;

        let mut alice = welcome(&server, &format!("?token={alice_token}"), None).await;
        alice.send_subscribe(STAFF).await;
        assert_eq!(
            alice.recv_json().await,
            json!({"identifier":STAFF,"type":"reject_subscription"})
        );
        // Invalid and missing rooms are rejected too.
        for identifier in [
            r#"{"channel":"ChatChannel","room":"Not A Slug"}"#,
            r#"{"channel":"ChatChannel"}"#,
            r#"{"channel":"ChatChannel","room":7}"#,
        ] {
            alice.send_subscribe(identifier).await;
            assert_eq!(
                alice.recv_json().await,
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
        let server = start_demo().await;
        let (_, cookie) = login(server.addr, "carol").await;
        assert!(cookie.starts_with("user="), "{cookie}");

        // The signed cookie authenticates the cable and the HTTP API.
        let mut ws = welcome(&server, "", Some(&cookie)).await;
        ws.send_subscribe(NOTIFICATIONS).await;
        assert_eq!(
            ws.recv_json().await,
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

        // Logout (a JSON request, like every POST) expires the cookie.
        let r = http_request(
            server.addr,
            "POST",
            "/logout",
            &[("Cookie", &cookie)],
            Some("{}"),
        )
        .await;
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
        let server = start_demo().await;
        let addr = server.addr;
        let (alice_token, _) = login(addr, "alice").await;
        let (bob_token, _) = login(addr, "bob").await;
        let mut alice = welcome(&server, &format!("?token={alice_token}"), None).await;
        let mut bob = welcome(&server, &format!("?token={bob_token}"), None).await;
        for ws in [&mut alice, &mut bob] {
            ws.send_subscribe(NOTIFICATIONS).await;
            assert_eq!(ws.recv_json().await["type"], "confirm_subscription");
        }

        // Any signed-in user may notify any user (alice notifies bob).
        let r = post_as(
            addr,
            &alice_token,
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
            bob.recv_message(NOTIFICATIONS).await,
            json!({"id":id,"message":"hi","kind":"info","link":"/x","created_at":created_at})
        );
        // Alice's next frame is her own notification: bob's never reached her.
        let r = post_as(addr, &bob_token, "/notifications", json!({"user":"alice","message":"yours"})).await;
        assert_eq!(r.status, 201, "{r:?}");
        let pushed = alice.recv_message(NOTIFICATIONS).await;
        assert_eq!(pushed["message"], "yours");
        assert_eq!(pushed["kind"], "info");
        assert_eq!(pushed["link"], Value::Null);

        // Alice cannot mark bob's notification read, nor learn that it exists.
        alice.send_data(NOTIFICATIONS, &json!({"action":"mark_read","id":id})).await;
        assert_eq!(
            alice.recv_message(NOTIFICATIONS).await,
            json!({"type":"error","error":"notification not found"})
        );
        bob.send_data(NOTIFICATIONS, &json!({"action":"mark_read","id":id + 1000})).await;
        assert_eq!(
            bob.recv_message(NOTIFICATIONS).await,
            json!({"type":"error","error":"notification not found"})
        );
        bob.send_data(NOTIFICATIONS, &json!({"action":"mark_read","id":id})).await;
        assert_eq!(
            bob.recv_message(NOTIFICATIONS).await,
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
            let r = post_as(addr, &alice_token, "/notifications", body.clone()).await;
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
        let server = start_demo().await;
        let addr = server.addr;
        let r = get(addr, "/cable", &[]).await;
        assert_eq!((r.status, r.body_text()), (404, "Page not found"));
        let r = get(addr, "/health", &[]).await;
        assert_eq!((r.status, r.body_text()), (200, "ok"));

        for name in [json!(""), json!("a b"), json!("x".repeat(33)), json!(5), Value::Null] {
            let r = post(addr, "/login", json!({ "name": name })).await;
            assert_eq!(r.status, 422, "{name}: {r:?}");
            assert!(r.json()["error"].is_string());
        }
        let r = http_request(addr, "POST", "/login", &[], Some("{not json")).await;
        assert_eq!(r.status, 400);
        assert!(r.json()["error"].is_string());

        // A foreign origin gets Rails' 404 before any upgrade.
        let (token, _) = login(addr, "dave").await;
        let err = CableClient::connect(
            addr,
            Connect::new()
                .path(&format!("/cable?token={token}"))
                .no_protocols()
                .origin("http://evil.example"),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&err, tokio_tungstenite::tungstenite::Error::Http(resp) if resp.status() == 404),
            "{err}"
        );
        // localhost on another port is allowed by default.
        let mut ws = connect_from(&server, &format!("?token={token}"), None, "http://localhost:5173").await;
        assert_eq!(ws.recv_json().await["type"], "welcome");
        drop(ws);
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn shutdown_tells_clients_to_reconnect() {
    bounded(async {
        let server = start_demo().await;
        let (token, _) = login(server.addr, "erin").await;
        let mut ws = welcome(&server, &format!("?token={token}"), None).await;
        join(&mut ws, LOBBY, "erin").await;
        let stopping = tokio::spawn(server.shutdown());
        assert_eq!(
            ws.recv_json().await,
            json!({"type":"disconnect","reason":"server_restart","reconnect":true})
        );
        assert_eq!(ws.next_json_or_end().await, None);
        within_for(SHUTDOWN_WAIT, "shutdown", stopping)
            .await
            .expect("shutdown panicked");
    })
    .await;
}

#[tokio::test]
async fn rooms_lists_recent_activity_the_caller_may_enter() {
    bounded(async {
        let server = start_demo().await;
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
        async fn speak_in(ws: &mut CableClient, room: &str, user: &str, texts: &[&str]) {
            join(ws, room, user).await;
            for text in texts {
                ws.send_data(room, &json!({"action":"speak","text":text}))
                    .await;
                assert_eq!(ws.recv_message(room).await["text"], *text);
            }
        }
        speak_in(&mut alice, LOBBY, "alice", &["one"]).await;
        speak_in(&mut admin, STAFF, "admin", &["staff only"]).await;
        speak_in(&mut alice, dev, "alice", &["two", "three"]).await;

        let rooms = |r: HttpReply| -> Vec<(String, u64)> {
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
        let server = start_demo().await;
        let addr = server.addr;
        let r = get(addr, "/", &[]).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert!(
            r.header("content-type")
                .unwrap_or("")
                .starts_with("text/html"),
            "{r:?}"
        );
        // The page's modules import the stock consumer by the URL the demo serves it at, and
        // @anycable/web by the name the page's import map gives it.
        let client = get(addr, "/client.mjs", &[]).await;
        for import in [
            r#"import("/vendor/actioncable.esm.js")"#,
            r#"import("@anycable/web")"#,
        ] {
            assert!(
                client.body_text().contains(import),
                "{import}: {}",
                client.body_text()
            );
        }
        for (path, kind) in [
            ("/main.mjs", "javascript"),
            ("/app.mjs", "javascript"),
            ("/client.mjs", "javascript"),
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
        assert_eq!(get(addr, "/health", &[]).await.body_text(), "ok");
        assert_eq!(get(addr, "/no-such-page", &[]).await.status, 404);

        let module = Assets::new(DEFAULT_ASSETS).consumer_module();
        let r = get(addr, "/vendor/actioncable.esm.js", &[]).await;
        if module.is_file() {
            assert_eq!(r.status, 200, "{r:?}");
            let content_type = r.header("content-type").unwrap_or("");
            assert!(content_type.contains("javascript"), "{content_type}");
            assert!(r.body_text().contains("export {") && r.body_text().contains("createConsumer"));
        } else {
            eprintln!(
                "SKIPPED the consumer module check: {} is missing (run `npm ci` in js-client)",
                module.display()
            );
            assert_eq!(r.status, 404);
        }
        // @anycable/web and what it imports, at the import map's URLs.
        for (url, dir) in VENDOR_PACKAGES {
            let r = get(addr, &format!("{url}/index.js"), &[]).await;
            if Path::new(DEFAULT_ASSETS).join(dir).is_dir() {
                assert_eq!(r.status, 200, "{url}: {r:?}");
                let content_type = r.header("content-type").unwrap_or("");
                assert!(content_type.contains("javascript"), "{url}: {content_type}");
            } else {
                assert_eq!(r.status, 404, "{url}");
            }
        }
        server.shutdown().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// The demo's defences (issue 13): cross-site requests, sessions, rate limits, retention,
// links, security headers.

/// The notifications `user` has, as `GET /notifications` lists them (newest first).
async fn notifications_of(addr: std::net::SocketAddr, token: &str) -> Vec<Value> {
    let bearer = format!("Bearer {token}");
    let r = get(addr, "/notifications", &[("Authorization", &bearer)]).await;
    assert_eq!(r.status, 200, "{r:?}");
    r.json().as_array().unwrap().clone()
}

#[tokio::test]
async fn notifications_need_a_bearer_token_and_a_json_body() {
    bounded(async {
        let server = start_demo().await;
        let addr = server.addr;
        let (alice_token, alice_cookie) = login(addr, "alice").await;
        let (bob_token, _) = login(addr, "bob").await;
        let body =
            json!({"user":"bob","message":"click me","link":"https://evil.example/"}).to_string();
        let bearer = format!("Bearer {alice_token}");

        // What any web page can make a browser send cross-site without a preflight: a form or
        // a no-cors fetch, text/plain or form-encoded, with the user's cookie at most.
        for (what, headers) in [
            (
                "no credentials, text/plain",
                vec![("Content-Type", "text/plain")],
            ),
            (
                "no credentials, JSON",
                vec![("Content-Type", "application/json")],
            ),
            (
                "the cookie, text/plain",
                vec![
                    ("Content-Type", "text/plain"),
                    ("Cookie", alice_cookie.as_str()),
                ],
            ),
            (
                "the cookie, JSON",
                vec![
                    ("Content-Type", "application/json"),
                    ("Cookie", alice_cookie.as_str()),
                ],
            ),
            (
                "a bad token, JSON",
                vec![
                    ("Content-Type", "application/json"),
                    ("Authorization", "Bearer nope"),
                ],
            ),
        ] {
            let r = post_raw(addr, "/notifications", &headers, &body).await;
            assert_eq!(r.status, 401, "{what}: {r:?}");
            assert!(
                r.json()["error"].as_str().unwrap().contains("Bearer"),
                "{what}: {r:?}"
            );
        }
        // A valid token, but a body not declared JSON: 415.
        for content_type in [
            Some("text/plain"),
            Some("text/plain;charset=UTF-8"),
            Some("application/x-www-form-urlencoded"),
            Some("multipart/form-data; boundary=x"),
            None,
        ] {
            let mut headers = vec![("Authorization", bearer.as_str())];
            if let Some(ct) = content_type {
                headers.push(("Content-Type", ct));
            }
            let r = post_raw(addr, "/notifications", &headers, &body).await;
            assert_eq!(r.status, 415, "{content_type:?}: {r:?}");
            assert!(r.json()["error"].is_string());
        }
        assert!(
            notifications_of(addr, &bob_token).await.is_empty(),
            "nothing was stored"
        );

        // The control: the same request with the token and JSON goes through.
        let r = post_raw(
            addr,
            "/notifications",
            &[
                ("Authorization", &bearer),
                ("Content-Type", "application/json; charset=utf-8"),
            ],
            &body,
        )
        .await;
        assert_eq!(r.status, 201, "{r:?}");
        assert_eq!(notifications_of(addr, &bob_token).await.len(), 1);
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn login_and_logout_refuse_bodies_that_are_not_json() {
    bounded(async {
        let server = start_demo().await;
        let addr = server.addr;
        // Login CSRF: a form on another site posting `{"name":"mallory"}` as text/plain.
        for content_type in ["text/plain", "application/x-www-form-urlencoded"] {
            let r = post_raw(
                addr,
                "/login",
                &[("Content-Type", content_type)],
                r#"{"name":"mallory"}"#,
            )
            .await;
            assert_eq!(r.status, 415, "{content_type}: {r:?}");
            assert_eq!(r.header("set-cookie"), None, "{content_type}: no cookie");
        }
        let r = post_raw(addr, "/login", &[], r#"{"name":"mallory"}"#).await;
        assert_eq!(r.status, 415, "{r:?}");

        // Logout CSRF would end someone's sessions: the same rule.
        let (token, cookie) = login(addr, "alice").await;
        let r = post_raw(
            addr,
            "/logout",
            &[("Cookie", &cookie), ("Content-Type", "text/plain")],
            "",
        )
        .await;
        assert_eq!(r.status, 415, "{r:?}");
        let r = post_raw(addr, "/logout", &[("Cookie", &cookie)], "").await;
        assert_eq!(r.status, 415, "{r:?}");
        // Nothing happened: both credentials still work.
        let mut ws = welcome(&server, &format!("?token={token}"), None).await;
        join(&mut ws, LOBBY, "alice").await;
        assert_eq!(
            get(addr, "/rooms", &[("Cookie", &cookie)]).await.status,
            200
        );
        drop(ws);
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn logout_ends_the_old_cookie_and_token_over_http_and_the_cable() {
    bounded(async {
        let server = start_demo().await;
        let addr = server.addr;
        let (token, cookie) = login(addr, "alice").await;
        let (other_tab_token, _) = login(addr, "alice").await;
        let (bob_token, _) = login(addr, "bob").await;
        let mut by_token = welcome(&server, &format!("?token={token}"), None).await;
        join(&mut by_token, LOBBY, "alice").await;
        let mut by_cookie = welcome(&server, "", Some(&cookie)).await;
        by_cookie.send_subscribe(NOTIFICATIONS).await;
        assert_eq!(by_cookie.recv_json().await["type"], "confirm_subscription");
        let mut bob = welcome(&server, &format!("?token={bob_token}"), None).await;
        join(&mut bob, LOBBY, "bob").await;

        let bearer = format!("Bearer {token}");
        let r = http_request(
            addr,
            "POST",
            "/logout",
            &[("Authorization", &bearer)],
            Some("{}"),
        )
        .await;
        assert_eq!(r.status, 204, "{r:?}");
        let set = r.header("set-cookie").unwrap_or_default();
        assert!(
            set.starts_with("user=;") && set.contains("Max-Age=0"),
            "{set}"
        );

        // Every open connection of alice's is told to go away for good, bob's is not.
        for ws in [&mut by_token, &mut by_cookie] {
            let frame = loop {
                let frame = ws.recv_json().await;
                if frame["type"] == "disconnect" {
                    break frame;
                }
            };
            assert_eq!(
                frame,
                json!({"type":"disconnect","reason":"remote","reconnect":false})
            );
            assert_eq!(ws.next_json_or_end().await, None, "socket should close");
        }
        assert_eq!(
            bob.recv_message(LOBBY).await,
            json!({"type":"left","user":"alice"})
        );

        // The old cookie and both old tokens (this tab's and another tab's) are refused.
        for (what, headers) in [
            ("cookie", vec![("Cookie", cookie.clone())]),
            ("token", vec![("Authorization", bearer.clone())]),
            (
                "other tab's token",
                vec![("Authorization", format!("Bearer {other_tab_token}"))],
            ),
        ] {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            assert_eq!(
                get(addr, "/notifications", &headers).await.status,
                401,
                "{what}"
            );
            assert_eq!(get(addr, "/rooms", &headers).await.status, 401, "{what}");
        }
        let r = post_as(
            addr,
            &token,
            "/notifications",
            json!({"user":"bob","message":"hi"}),
        )
        .await;
        assert_eq!(r.status, 401, "{r:?}");
        expect_unauthorized(connect(&server, &format!("?token={token}"), None).await).await;
        expect_unauthorized(connect(&server, &format!("?token={other_tab_token}"), None).await)
            .await;
        expect_unauthorized(connect(&server, "", Some(&cookie)).await).await;

        // Bob is still signed in; alice can sign in again.
        assert_eq!(
            notifications_of(addr, &bob_token).await,
            Vec::<Value>::new()
        );
        let (new_token, new_cookie) = login(addr, "alice").await;
        let mut again = welcome(&server, &format!("?token={new_token}"), None).await;
        join(&mut again, LOBBY, "alice").await;
        assert_eq!(
            get(addr, "/rooms", &[("Cookie", &new_cookie)]).await.status,
            200
        );

        // Logging out without valid credentials only clears the cookie.
        let r = http_request(addr, "POST", "/logout", &[("Cookie", &cookie)], Some("{}")).await;
        assert_eq!(r.status, 204);
        assert_eq!(
            get(addr, "/rooms", &[("Cookie", &new_cookie)]).await.status,
            200
        );
        drop((again, bob));
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn the_cookie_expires_and_is_secure_behind_https() {
    bounded(async {
        let server = start_demo_with(&[("SESSION_LIFETIME_SECS", "1")]).await;
        let addr = server.addr;
        let r = post(addr, "/login", json!({"name":"alice"})).await;
        let set = r.header("set-cookie").unwrap().to_owned();
        assert!(set.contains("Max-Age=1"), "{set}");
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Lax"),
            "{set}"
        );
        assert!(!set.contains("Secure"), "plain HTTP: {set}");
        let token = r.json()["token"].as_str().unwrap().to_owned();
        let cookie = set.split(';').next().unwrap().to_owned();
        assert_eq!(
            get(addr, "/rooms", &[("Cookie", &cookie)]).await.status,
            200
        );

        // Behind a TLS-terminating proxy the cookie is Secure (and so is its removal).
        let r = http_request(
            addr,
            "POST",
            "/login",
            &[("X-Forwarded-Proto", "https")],
            Some(r#"{"name":"bob"}"#),
        )
        .await;
        let set = r.header("set-cookie").unwrap();
        assert!(set.ends_with("; Secure"), "{set}");
        let r = http_request(
            addr,
            "POST",
            "/logout",
            &[("X-Forwarded-Proto", "https")],
            Some("{}"),
        )
        .await;
        assert!(r.header("set-cookie").unwrap().ends_with("; Secure"));

        // The expiry is inside the signed value too: a client that keeps the cookie past its
        // Max-Age gets nowhere, and neither does the token.
        tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
        assert_eq!(
            get(addr, "/rooms", &[("Cookie", &cookie)]).await.status,
            401
        );
        let bearer = format!("Bearer {token}");
        assert_eq!(
            get(addr, "/rooms", &[("Authorization", &bearer)])
                .await
                .status,
            401
        );
        expect_unauthorized(connect(&server, "", Some(&cookie)).await).await;
        expect_unauthorized(connect(&server, &format!("?token={token}"), None).await).await;
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn rate_limits_are_answered_with_429_and_retry_after() {
    bounded(async {
        let server = start_demo_with(&[
            ("LOGIN_LIMIT_PER_MINUTE", "3"),
            ("NOTIFY_LIMIT_PER_MINUTE", "2"),
            ("CHAT_LIMIT_PER_MINUTE", "2"),
        ])
        .await;
        let addr = server.addr;
        // Logins per client address: three, then one every 20 s.
        let (alice_token, _) = login(addr, "alice").await;
        let (bob_token, _) = login(addr, "bob").await;
        let (carol_token, _) = login(addr, "carol").await;
        let r = post(addr, "/login", json!({"name":"dave"})).await;
        assert_eq!(r.status, 429, "{r:?}");
        assert_eq!(r.header("retry-after"), Some("20"), "{r:?}");
        assert!(r.json()["error"].as_str().unwrap().contains("too many logins"), "{r:?}");
        assert_eq!(r.header("set-cookie"), None);

        // Notifications per sender: two, then one every 30 s; another sender is not affected.
        for i in 0..2 {
            let r = post_as(addr, &alice_token, "/notifications", json!({"user":"bob","message":format!("n{i}")})).await;
            assert_eq!(r.status, 201, "{r:?}");
        }
        let r = post_as(addr, &alice_token, "/notifications", json!({"user":"bob","message":"n2"})).await;
        assert_eq!(r.status, 429, "{r:?}");
        assert_eq!(r.header("retry-after"), Some("30"), "{r:?}");
        assert!(r.json()["error"].is_string());
        let r = post_as(addr, &carol_token, "/notifications", json!({"user":"bob","message":"from carol"})).await;
        assert_eq!(r.status, 201, "{r:?}");
        assert_eq!(notifications_of(addr, &bob_token).await.len(), 3);

        // Stored chat messages per user, over the cable: the demo's error reply.
        let mut alice = welcome(&server, &format!("?token={alice_token}"), None).await;
        join(&mut alice, LOBBY, "alice").await;
        for text in ["one", "two"] {
            alice.send_data(LOBBY, &json!({"action":"speak","text":text})).await;
            assert_eq!(alice.recv_message(LOBBY).await["text"], text);
        }
        alice.send_data(LOBBY, &json!({"action":"speak","text":"three"})).await;
        assert_eq!(
            alice.recv_message(LOBBY).await,
            json!({"type":"error","error":"you are sending messages too fast; wait a moment","retry_after":30})
        );
        let bearer = format!("Bearer {bob_token}");
        let stored = get(addr, "/rooms/lobby/messages", &[("Authorization", &bearer)]).await.json();
        let texts: Vec<&str> = stored.as_array().unwrap().iter().map(|m| m["text"].as_str().unwrap()).collect();
        assert_eq!(texts, ["one", "two"]);
        drop(alice);
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn retention_keeps_the_last_n_messages_per_room_and_notifications_per_user() {
    bounded(async {
        let server = start_demo_with(&[
            ("CHAT_KEEP_PER_ROOM", "3"),
            ("NOTIFICATIONS_KEEP_PER_USER", "2"),
        ])
        .await;
        let addr = server.addr;
        let (alice_token, _) = login(addr, "alice").await;
        let mut alice = welcome(&server, &format!("?token={alice_token}"), None).await;
        join(&mut alice, LOBBY, "alice").await;
        for i in 0..6 {
            let text = format!("m{i}");
            alice
                .send_data(LOBBY, &json!({"action":"speak","text":text}))
                .await;
            assert_eq!(alice.recv_message(LOBBY).await["text"], text);
        }
        alice
            .send_data(LOBBY, &json!({"action":"history","limit":200}))
            .await;
        let history = alice.recv_message(LOBBY).await;
        let texts: Vec<&str> = history["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["text"].as_str().unwrap())
            .collect();
        assert_eq!(texts, ["m3", "m4", "m5"]);
        let bearer = format!("Bearer {alice_token}");
        let rooms = get(addr, "/rooms", &[("Authorization", &bearer)])
            .await
            .json();
        assert_eq!(rooms[0]["messages"], 3, "{rooms}");

        for i in 0..5 {
            let r = post_as(
                addr,
                &alice_token,
                "/notifications",
                json!({"user":"alice","message":format!("n{i}")}),
            )
            .await;
            assert_eq!(r.status, 201, "{r:?}");
        }
        let kept: Vec<Value> = notifications_of(addr, &alice_token)
            .await
            .iter()
            .map(|n| n["message"].clone())
            .collect();
        assert_eq!(kept, [json!("n4"), json!("n3")]);
        drop(alice);
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn links_that_would_open_another_site_are_refused() {
    bounded(async {
        let server = start_demo().await;
        let addr = server.addr;
        let (token, _) = login(addr, "alice").await;
        for link in [
            "/\\evil.example/",
            "/\\/evil.example",
            "\\\\evil.example",
            "//evil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            "https:\\\\evil.example",
            "http:///evil.example",
            "javascript:alert(1)",
            "data:text/html,hi",
            "/\u{202e}evil",
        ] {
            let r = post_as(
                addr,
                &token,
                "/notifications",
                json!({"user":"alice","message":"x","link":link}),
            )
            .await;
            assert_eq!(r.status, 422, "{link:?}: {r:?}");
            assert!(
                r.json()["error"].as_str().unwrap().contains("link"),
                "{r:?}"
            );
        }
        assert!(notifications_of(addr, &token).await.is_empty());
        for link in ["/builds/42", "https://example.com/x"] {
            let r = post_as(
                addr,
                &token,
                "/notifications",
                json!({"user":"alice","message":"x","link":link}),
            )
            .await;
            assert_eq!(r.status, 201, "{link:?}: {r:?}");
        }
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn the_page_its_assets_and_the_api_carry_the_security_headers() {
    bounded(async {
        let server = start_demo().await;
        let addr = server.addr;
        let mut paths = vec![
            "/",
            "/index.html",
            "/main.mjs",
            "/app.mjs",
            "/app.css",
            "/health",
            "/notifications",
            "/no-such-page",
            "/cable",
        ];
        if Assets::new(DEFAULT_ASSETS).consumer_module().is_file() {
            paths.push("/vendor/actioncable.esm.js");
        }
        for path in paths {
            let r = get(addr, path, &[]).await;
            let csp = r
                .header("content-security-policy")
                .unwrap_or_else(|| panic!("{path}: no CSP: {r:?}"));
            for directive in [
                "default-src 'none'",
                "script-src 'self'",
                "style-src 'self'",
                "connect-src 'self'",
                "frame-ancestors 'none'",
                "base-uri 'none'",
            ] {
                assert!(csp.contains(directive), "{path}: {csp}");
            }
            assert!(!csp.contains("unsafe"), "{path}: {csp}");
            assert_eq!(r.header("x-frame-options"), Some("DENY"), "{path}");
            assert_eq!(
                r.header("x-content-type-options"),
                Some("nosniff"),
                "{path}"
            );
            assert_eq!(r.header("referrer-policy"), Some("same-origin"), "{path}");
        }
        // The page has no inline script (but the import map, admitted by its hash) or style
        // for the CSP to refuse.
        let page = get(addr, "/", &[]).await;
        let html = page.body_text();
        for tag in html.split("<script").skip(1) {
            let head = &tag[..tag.find('>').unwrap()];
            assert!(
                head.contains(" src=") || head == r#" type="importmap""#,
                "an inline script: <script{head}>"
            );
        }
        assert!(
            !html.contains("<style") && !html.contains(" style="),
            "inline style"
        );
        for handler in [
            " onclick=",
            " onload=",
            " onerror=",
            " onsubmit=",
            "javascript:",
        ] {
            assert!(!html.contains(handler), "an inline handler: {handler}");
        }
        // Over the cable too: the upgrade still works (the browser tests check `connect-src`).
        let (token, _) = login(addr, "alice").await;
        let mut ws = welcome(&server, &format!("?token={token}"), None).await;
        join(&mut ws, LOBBY, "alice").await;
        drop(ws);
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn metrics_are_served_at_slash_metrics_unless_turned_off() {
    bounded(async {
        let server = start_demo().await;
        let addr = server.addr;
        let (token, _) = login(addr, "alice").await;
        let mut alice = welcome(&server, &format!("?token={token}"), None).await;
        join(&mut alice, LOBBY, "alice").await;
        let reply = get(addr, "/metrics", &[]).await;
        assert_eq!(reply.status, 200);
        assert!(
            reply
                .header("content-type")
                .is_some_and(|t| t.starts_with("application/openmetrics-text")),
            "{:?}",
            reply.header("content-type")
        );
        let text = reply.body_text();
        for line in [
            "actioncable_connections_accepted_total 1\n",
            "actioncable_subscriptions{channel=\"ChatChannel\"} 1\n",
            "actioncable_commands_total{kind=\"subscribe\"} 1\n",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }

        let off = start_demo_with(&[("METRICS", "off")]).await;
        assert_eq!(get(off.addr, "/metrics", &[]).await.status, 404);
    })
    .await;
}

/// `ADMIN_KEY` turns on `GET /admin/stats` for operators (their key only); without it the route
/// does not exist and the path is the page's 404. A key shorter than 32 bytes is refused.
#[tokio::test]
async fn the_admin_stats_route_exists_only_with_admin_key_and_needs_it() {
    bounded(async {
        const KEY: &str = "0123456789abcdef0123456789abcdef-operator";
        let server = start_demo_with(&[("ADMIN_KEY", KEY)]).await;
        let bearer = format!("Bearer {KEY}");
        let r = get(server.addr, "/admin/stats", &[("Authorization", &bearer)]).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.json()["connections"], json!(0));
        let r = get(
            server.addr,
            "/admin/stats",
            &[("Authorization", "Bearer nope")],
        )
        .await;
        assert_eq!(r.status, 401);
        server.shutdown().await;

        let server = start_demo().await;
        let r = get(server.addr, "/admin/stats", &[("Authorization", &bearer)]).await;
        assert_eq!(r.status, 404);
        server.shutdown().await;

        let short = Config::from_lookup(|k| (k == "ADMIN_KEY").then(|| "short".to_owned()));
        assert!(format!("{:#}", short.unwrap_err()).contains("ADMIN_KEY is too short"));
    })
    .await;
}

/// `/events?identifier=<identifier>&<query>`.
fn events_path(identifier: &str, query: &str) -> String {
    let encoded: String = identifier
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    format!("/events?identifier={encoded}&{query}")
}

#[tokio::test]
async fn events_stream_a_room_with_the_cables_credentials_and_401_without() {
    bounded(async {
        let server = start_demo().await;
        let addr = server.addr;
        let (alice_token, alice_cookie) = login(addr, "alice").await;
        let (bob_token, _) = login(addr, "bob").await;

        // No credentials, a forged token: 401, as `/cable` refuses them.
        for query in ["", "token=not.a.token"] {
            let (status, _) = SseClient::open(addr, &events_path(LOBBY, query), &[])
                .await
                .refused();
            assert_eq!(status, 401, "{query:?}");
        }

        // The token, as the page puts it on `/cable`.
        let mut by_token = SseClient::open(
            addr,
            &events_path(LOBBY, &format!("token={alice_token}")),
            &[],
        )
        .await
        .stream();
        by_token.expect_confirmed().await;
        assert_eq!(
            by_token.next_message().await.json(),
            json!({"type":"joined","user":"alice"})
        );
        // The cookie, as a same-origin `EventSource` sends it.
        let mut by_cookie = SseClient::open(
            addr,
            &events_path(NOTIFICATIONS, ""),
            &[("Cookie", &alice_cookie)],
        )
        .await
        .stream();
        by_cookie.expect_confirmed().await;

        // bob speaks over the WebSocket; alice's stream gets the message alone.
        let mut bob = welcome(&server, &format!("?token={bob_token}"), None).await;
        join(&mut bob, LOBBY, "bob").await;
        assert_eq!(
            by_token.next_message().await.json(),
            json!({"type":"joined","user":"bob"})
        );
        bob.send_data(LOBBY, &json!({"action":"speak","text":"hello over SSE"}))
            .await;
        let said = by_token.next_message().await;
        assert_eq!(said.event, "", "a message event: {said:?}");
        let said = said.json();
        assert_eq!(
            (
                said["type"].as_str(),
                said["user"].as_str(),
                said["text"].as_str()
            ),
            (Some("message"), Some("bob"), Some("hello over SSE"))
        );
        // A notification posted over HTTP reaches the cookie's stream.
        let r = post_as(
            addr,
            &bob_token,
            "/notifications",
            json!({"user":"alice","message":"ping"}),
        )
        .await;
        assert_eq!(r.status, 201, "{r:?}");
        assert_eq!(by_cookie.next_message().await.json()["message"], "ping");

        // A private room turns a non-member's stream away: 400, as AnyCable answers a rejection.
        let (status, _) = SseClient::open(
            addr,
            &events_path(STAFF, &format!("token={alice_token}")),
            &[],
        )
        .await
        .refused();
        assert_eq!(status, 400);

        // Logging out ends alice's streams for good (`retry` of a year), not bob's socket.
        let bearer = format!("Bearer {alice_token}");
        let r = http_request(
            addr,
            "POST",
            "/logout",
            &[("Authorization", &bearer)],
            Some("{}"),
        )
        .await;
        assert_eq!(r.status, 204, "{r:?}");
        for sse in [&mut by_token, &mut by_cookie] {
            let last = sse.until_end(WAIT).await.pop().expect("a last event");
            assert_eq!(last.event, "disconnect");
            assert_eq!(
                last.json(),
                json!({"type":"disconnect","reason":"remote","reconnect":false})
            );
            assert_eq!(last.retry, Some(31_536_000_000));
        }
        // bob's own message first, then alice leaving the room.
        assert_eq!(bob.recv_message(LOBBY).await["type"], "message");
        assert_eq!(
            bob.recv_message(LOBBY).await,
            json!({"type":"left","user":"alice"})
        );
        drop(bob);
        server.shutdown().await;
    })
    .await;
}
