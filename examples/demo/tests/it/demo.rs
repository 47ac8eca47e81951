//! End-to-end tests: the demo's real router on a loopback port, driven over HTTP/1.1 (raw
//! `TcpStream`) and a real WebSocket client speaking the ActionCable protocol.

use crate::support::*;
use example_demo::assets::Assets;
use example_demo::config::DEFAULT_ASSETS;
use serde_json::{Value, json};

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

        // Logout expires the cookie.
        let r = http_request(server.addr, "POST", "/logout", &[("Cookie", &cookie)], None).await;
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
            bob.recv_message(NOTIFICATIONS).await,
            json!({"id":id,"message":"hi","kind":"info","link":"/x","created_at":created_at})
        );
        // Alice's next frame is her own notification: bob's never reached her.
        let r = post(addr, "/notifications", json!({"user":"alice","message":"yours"})).await;
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
        // The page's modules import the consumer by the URL the demo serves it at (no import
        // map: that would be an inline script, which the page's CSP refuses).
        let app = get(addr, "/app.mjs", &[]).await;
        assert!(
            app.body_text()
                .contains(r#"from "/vendor/actioncable.esm.js""#),
            "{}",
            app.body_text()
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
        server.shutdown().await;
    })
    .await;
}
