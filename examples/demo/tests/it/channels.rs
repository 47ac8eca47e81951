//! Channel and connection tests for the demo, in the manner of Rails'
//! `ActionCable::Channel::TestCase` and `ActionCable::Connection::TestCase`: no sockets, the
//! demo's real cable (`example_demo::cable_builder`) over a fresh in-memory SQLite database,
//! and the harness of `actioncable::testing` (see docs/testing.md).

use actioncable::CookieKey;
use actioncable::testing::{TestCable, TestConnection, TestRequest, TestSubscription};
use actioncable::{ChannelError, Identity};
use cable_test_support::{mint_hs256, unix_now};
use example_demo::auth::{Auth, CURRENT_USER, USER_COOKIE};
use example_demo::channels::{ChatChannel, DemoState, NotificationChannel};
use example_demo::config::parse_private_rooms;
use example_demo::db::{Db, NewNotification};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

const SECRET: &str = "channel-test secret, at least 32 bytes long";

/// The demo's cable with its real state: SQLite, the private room `staff` (for `admin`), auth.
struct Demo {
    cable: TestCable<DemoState>,
    db: Db,
    auth: Arc<Auth>,
}

impl Demo {
    fn new() -> Demo {
        Demo::with_database(":memory:")
    }

    fn with_database(path: &str) -> Demo {
        Demo::with(path, 0)
    }

    /// The demo over the database at `path`, storing at most `chat_per_minute` messages per
    /// user (0: no limit).
    fn with(path: &str, chat_per_minute: u32) -> Demo {
        let db = Db::open(path).unwrap();
        let auth = Arc::new(Auth::new(SECRET, db.clone()).unwrap());
        let state = DemoState::new(
            db.clone(),
            Arc::new(parse_private_rooms("staff=admin").unwrap()),
            chat_per_minute,
        );
        let cable = TestCable::new(example_demo::cable_builder(state, auth.clone())).unwrap();
        Demo { cable, db, auth }
    }

    /// Rails' `stub_connection current_user: user`.
    async fn stub_connection(&self, user: &str) -> TestConnection<DemoState> {
        self.cable
            .connect_as(Identity::new(CURRENT_USER, user))
            .await
    }

    /// `user`, connected and subscribed to `room` (confirmed).
    async fn in_room(
        &self,
        user: &str,
        room: &str,
    ) -> (TestConnection<DemoState>, TestSubscription<DemoState>) {
        let conn = self.stub_connection(user).await;
        let sub = conn.subscribe::<ChatChannel>(json!({ "room": room })).await;
        assert!(sub.is_confirmed(), "{user} could not enter {room}");
        (conn, sub)
    }
}

/// The messages of type `kind` among `messages`.
fn of_type(messages: &[Value], kind: &str) -> Vec<Value> {
    messages
        .iter()
        .filter(|m| m["type"] == kind)
        .cloned()
        .collect()
}

// ---------------------------------------------------------------------------------------
// Connection (Rails' ApplicationCable::ConnectionTest)

#[tokio::test]
async fn connects_with_a_login_token() {
    let demo = Demo::new();
    let token = demo.auth.login("alice", false).await.unwrap().token;
    let conn = demo
        .cable
        .connect(TestRequest::new().query("token", token))
        .await
        .expect("a valid token connects");
    assert_eq!(conn.identity().get(CURRENT_USER), Some("alice"));
}

#[tokio::test]
async fn connects_with_the_signed_login_cookie() {
    let demo = Demo::new();
    // Rails' `cookies.signed[:user] = {user:, exp:, ver:}`: the key is derived from the secret
    // as the demo's is; the value carries its expiry and the session version (0 until the
    // user's first logout).
    let key = CookieKey::derive_from_secret(SECRET).unwrap();
    let value = json!({ "user": "bob", "exp": unix_now() + 60, "ver": 0 }).to_string();
    let conn = demo
        .cable
        .connect(TestRequest::new().signed_cookie(&key, USER_COOKIE, &value))
        .await
        .expect("the signed cookie connects");
    assert_eq!(conn.identity().get(CURRENT_USER), Some("bob"));

    // The cookie exactly as `POST /login` sets it, sent back the way a browser does.
    let set_cookie = demo.auth.login("carol", false).await.unwrap().set_cookie;
    let pair = set_cookie.split(';').next().unwrap();
    let conn = demo
        .cable
        .connect(TestRequest::new().header("cookie", pair))
        .await
        .unwrap();
    assert_eq!(conn.identity().get(CURRENT_USER), Some("carol"));
}

#[tokio::test]
async fn rejects_connections_without_valid_credentials() {
    let demo = Demo::new();
    let key = CookieKey::derive_from_secret(SECRET).unwrap();
    let other_key =
        CookieKey::derive_from_secret("another secret, also at least 32 bytes").unwrap();
    let cookie_value = |user: &str, exp: u64, ver: i64| {
        json!({ "user": user, "exp": exp, "ver": ver }).to_string()
    };
    let good_cookie = TestRequest::new().signed_cookie(
        &key,
        USER_COOKIE,
        &cookie_value("bob", unix_now() + 60, 0),
    );
    // A logout ends every credential issued before it.
    let old_token = demo.auth.login("gone", false).await.unwrap().token;
    let old_cookie = demo.auth.login("gone", false).await.unwrap().set_cookie;
    demo.auth.logout("gone").await.unwrap();

    let rejected = [
        ("no credentials", TestRequest::new()),
        (
            "an unsigned cookie",
            TestRequest::new().cookie(USER_COOKIE, "bob"),
        ),
        (
            "a cookie signed with another key",
            TestRequest::new().signed_cookie(
                &other_key,
                USER_COOKIE,
                &cookie_value("bob", unix_now() + 60, 0),
            ),
        ),
        (
            "a signed cookie with an invalid user name",
            TestRequest::new().signed_cookie(
                &key,
                USER_COOKIE,
                &cookie_value("not a name!", unix_now() + 60, 0),
            ),
        ),
        (
            "a signed cookie that has expired",
            TestRequest::new().signed_cookie(
                &key,
                USER_COOKIE,
                &cookie_value("bob", unix_now() - 1, 0),
            ),
        ),
        (
            "a signed cookie of the old format (a bare name: no expiry, no session)",
            TestRequest::new().signed_cookie(&key, USER_COOKIE, "bob"),
        ),
        (
            "a signed cookie of a session that was logged out",
            TestRequest::new().header("cookie", old_cookie.split(';').next().unwrap()),
        ),
        (
            "a token of a session that was logged out",
            TestRequest::new().query("token", old_token),
        ),
        (
            "a token without a session version",
            TestRequest::new().query(
                "token",
                mint_hs256(
                    SECRET.as_bytes(),
                    &json!({ "sub": "alice", "iat": unix_now(), "exp": unix_now() + 3600 }),
                ),
            ),
        ),
        (
            "a token of a session version that was never issued",
            TestRequest::new().query(
                "token",
                mint_hs256(
                    SECRET.as_bytes(),
                    &json!({ "sub": "alice", "iat": unix_now(), "exp": unix_now() + 3600, "ver": 5 }),
                ),
            ),
        ),
        ("a garbage token", TestRequest::new().query("token", "nope")),
        (
            "a bad token next to a good cookie",
            good_cookie.query("token", "nope"),
        ),
        (
            "a token signed with another secret",
            TestRequest::new().query(
                "token",
                Auth::new(
                    "another secret, also at least 32 bytes",
                    Db::open(":memory:").unwrap(),
                )
                .unwrap()
                .issue_token("alice", 0)
                .unwrap(),
            ),
        ),
        (
            "an expired token",
            TestRequest::new().query("token", token_for("alice", -3600)),
        ),
        (
            "a token for an invalid user name",
            TestRequest::new().query("token", token_for("../admin", 3600)),
        ),
    ];
    for (what, request) in rejected {
        // Rails' `assert_reject_connection { connect cookies: … }`.
        assert!(
            demo.cable.connect(request).await.is_err(),
            "{what} must be rejected"
        );
    }
    // The control: a token made the same way but valid connects.
    let ok = demo
        .cable
        .connect(TestRequest::new().query("token", token_for("alice", 3600)))
        .await;
    assert_eq!(ok.unwrap().identity().get(CURRENT_USER), Some("alice"));
    // And so does a fresh login of the user who logged out.
    let again = demo.auth.login("gone", false).await.unwrap().token;
    let ok = demo
        .cable
        .connect(TestRequest::new().query("token", again))
        .await;
    assert_eq!(ok.unwrap().identity().get(CURRENT_USER), Some("gone"));
}

/// A login token for `sub` at session version 0 that expires `expires_in` seconds from now
/// (negative: expired, which `JwtVerifier::sign` refuses to make, so it is minted as another
/// issuer would).
fn token_for(sub: &str, expires_in: i64) -> String {
    let now = unix_now() as i64;
    mint_hs256(
        SECRET.as_bytes(),
        &json!({ "sub": sub, "iat": now, "exp": now + expires_in, "ver": 0 }),
    )
}

// ---------------------------------------------------------------------------------------
// ChatChannel (Rails' ChatChannelTest)

#[tokio::test]
async fn subscribes_to_a_room_and_announces_the_joiner() {
    let demo = Demo::new();
    let conn = demo.stub_connection("alice").await;
    let sub = conn
        .subscribe::<ChatChannel>(json!({ "room": "lobby" }))
        .await;

    assert!(sub.is_confirmed());
    assert!(sub.has_stream("chat:lobby"));
    assert_eq!(sub.streams(), ["chat:lobby"]);
    let joined = json!({ "type": "joined", "user": "alice" });
    assert_eq!(demo.cable.broadcasts("chat:lobby"), vec![joined.clone()]);
    // Published after the confirmation, so the joiner hears its own announcement.
    assert_eq!(sub.transmissions(), [joined]);
    assert_eq!(
        conn.connection().subscriptions(),
        [sub.identifier().to_owned()]
    );
}

#[tokio::test]
async fn rejects_missing_and_invalid_rooms() {
    let demo = Demo::new();
    let conn = demo.stub_connection("alice").await;
    for params in [
        json!({}),
        json!({ "room": 5 }),
        json!({ "room": ["lobby"] }),
        json!({ "room": "" }),
        json!({ "room": "Lobby" }),
        json!({ "room": "-lobby" }),
        json!({ "room": "a".repeat(41) }),
        json!({ "room": "lobby/../staff" }),
    ] {
        let sub = conn.subscribe::<ChatChannel>(params.clone()).await;
        assert!(sub.is_rejected(), "{params} must be rejected");
        assert!(sub.streams().is_empty(), "{params}: no streams");
    }
    assert!(conn.connection().subscriptions().is_empty());
    assert_eq!(
        demo.cable.handle().stream_count(),
        1,
        "only alice's internal stream"
    );
}

#[tokio::test]
async fn private_rooms_admit_members_only() {
    let demo = Demo::new();
    let alice = demo.stub_connection("alice").await;
    let sub = alice
        .subscribe::<ChatChannel>(json!({ "room": "staff" }))
        .await;
    assert!(sub.is_rejected());
    assert!(demo.cable.broadcasts("chat:staff").is_empty(), "no joined");

    let (_admin, staff) = demo.in_room("admin", "staff").await;
    assert!(staff.has_stream("chat:staff"));
    assert_eq!(
        demo.cable.broadcasts("chat:staff"),
        [json!({ "type": "joined", "user": "admin" })]
    );
}

#[tokio::test]
async fn speak_stores_the_message_and_broadcasts_it_to_the_room() {
    let demo = Demo::new();
    let (_alice, alice_lobby) = demo.in_room("alice", "lobby").await;
    let (_bob, bob_lobby) = demo.in_room("bob", "lobby").await;
    let (_carol, carol_elsewhere) = demo.in_room("carol", "elsewhere").await;
    demo.cable.clear_broadcasts();

    alice_lobby
        .perform("speak", json!({ "text": "  hi bob 👋 \n" }))
        .await
        .unwrap();

    let broadcasts = demo.cable.broadcasts("chat:lobby");
    assert_eq!(broadcasts.len(), 1);
    let message = &broadcasts[0];
    assert_eq!(message["type"], "message");
    assert_eq!(message["user"], "alice");
    assert_eq!(message["text"], "hi bob 👋", "trimmed");
    assert!(message["id"].is_i64());
    assert!(message["sent_at"].is_string());

    // Both members of the room get it; the other room does not.
    assert_eq!(
        of_type(&bob_lobby.transmissions(), "message"),
        vec![message.clone()]
    );
    assert_eq!(
        of_type(&alice_lobby.transmissions(), "message"),
        vec![message.clone()]
    );
    assert!(of_type(&carol_elsewhere.transmissions(), "message").is_empty());

    let stored = demo.db.recent_messages("lobby", 10).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].text, "hi bob 👋");
    assert_eq!(json!(stored[0].id), message["id"]);
}

#[tokio::test]
async fn speaking_over_the_rate_limit_is_refused_and_not_stored() {
    let demo = Demo::with(":memory:", 3);
    let (_alice, alice_lobby) = demo.in_room("alice", "lobby").await;
    // The same user in another room and on another connection shares the budget.
    let (_alice2, alice_dev) = demo.in_room("alice", "dev").await;
    let (_bob, bob_lobby) = demo.in_room("bob", "lobby").await;
    for text in ["one", "two"] {
        alice_lobby
            .perform("speak", json!({ "text": text }))
            .await
            .unwrap();
    }
    alice_dev
        .perform("speak", json!({ "text": "three" }))
        .await
        .unwrap();
    // Refused, but handled: the subscription carries on, and only the speaker is told.
    alice_lobby
        .perform("speak", json!({ "text": "four" }))
        .await
        .unwrap();
    let errors = of_type(&alice_lobby.transmissions(), "error");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(
        errors[0]["error"],
        "you are sending messages too fast; wait a moment"
    );
    // A burst of 3 a minute: the next one in 20 s.
    assert_eq!(errors[0]["retry_after"], 20);
    assert!(of_type(&bob_lobby.transmissions(), "error").is_empty());
    let texts =
        |m: Vec<example_demo::db::Message>| m.into_iter().map(|m| m.text).collect::<Vec<_>>();
    assert_eq!(
        texts(demo.db.recent_messages("lobby", 10).await.unwrap()),
        ["one", "two"]
    );
    // Others are not limited by alice's messages, and typing is not storage.
    bob_lobby
        .perform("speak", json!({ "text": "bob here" }))
        .await
        .unwrap();
    alice_lobby.perform("typing", json!({})).await.unwrap();
    assert_eq!(
        texts(demo.db.recent_messages("lobby", 10).await.unwrap()),
        ["one", "two", "bob here"]
    );
    // An invalid message is refused for what it is, without spending the budget of others.
    alice_lobby
        .perform("speak", json!({ "text": " " }))
        .await
        .unwrap();
    assert_eq!(
        of_type(&alice_lobby.transmissions(), "error")[1]["error"],
        "text must not be empty"
    );
}

#[tokio::test]
async fn invalid_speak_is_an_error_for_the_speaker_only() {
    let demo = Demo::new();
    let (_alice, alice_lobby) = demo.in_room("alice", "lobby").await;
    let (_bob, bob_lobby) = demo.in_room("bob", "lobby").await;
    demo.cable.clear_broadcasts();

    let cases = [
        (json!({ "text": "" }), "text must not be empty"),
        (json!({ "text": "   \n\t" }), "text must not be empty"),
        (json!({}), "text must not be empty"),
        (json!({ "text": 42 }), "text must be a string"),
        (
            json!({ "text": "x".repeat(501) }),
            "text is too long (at most 500 characters)",
        ),
    ];
    for (data, _) in &cases {
        // Handled by the channel's `rescue`: not an error of the action.
        alice_lobby.perform("speak", data.clone()).await.unwrap();
    }

    let errors: Vec<Value> = cases
        .iter()
        .map(|(_, error)| json!({ "type": "error", "error": error }))
        .collect();
    assert_eq!(of_type(&alice_lobby.transmissions(), "error"), errors);
    assert!(
        demo.cable.broadcasts("chat:lobby").is_empty(),
        "nothing broadcast"
    );
    assert!(of_type(&bob_lobby.transmissions(), "error").is_empty());
    assert!(
        demo.db
            .recent_messages("lobby", 10)
            .await
            .unwrap()
            .is_empty()
    );

    // 500 characters after trimming is fine.
    let longest = "é".repeat(500);
    alice_lobby
        .perform("speak", json!({ "text": format!("  {longest}  ") }))
        .await
        .unwrap();
    assert_eq!(demo.cable.broadcasts("chat:lobby")[0]["text"], longest);
}

#[tokio::test]
async fn a_storage_failure_is_told_to_the_speaker_and_left_as_an_error() {
    let path = temp_database();
    let demo = Demo::with_database(&path);
    let (_alice, alice_lobby) = demo.in_room("alice", "lobby").await;
    demo.cable.clear_broadcasts();
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("DROP TABLE messages")
        .unwrap();

    // `rescue` tells the client, and passes the error on to be logged.
    let result = alice_lobby.perform("speak", json!({ "text": "hi" })).await;
    let error = result.expect_err("a failure on our side stays an error");
    assert!(error.to_string().contains("could not be stored"), "{error}");
    assert_eq!(
        of_type(&alice_lobby.transmissions(), "error"),
        [json!({ "type": "error", "error": "the message could not be stored" })]
    );
    assert!(demo.cable.broadcasts("chat:lobby").is_empty());

    // The subscription carries on.
    alice_lobby.perform("typing", json!({})).await.unwrap();
    assert_eq!(demo.cable.broadcasts("chat:lobby").len(), 1);
    drop(demo);
    remove_database(&path);
}

#[tokio::test]
async fn typing_is_broadcast_to_the_room() {
    let demo = Demo::new();
    let (_alice, alice_lobby) = demo.in_room("alice", "lobby").await;
    let (_bob, bob_lobby) = demo.in_room("bob", "lobby").await;
    demo.cable.clear_broadcasts();

    alice_lobby.perform("typing", json!({})).await.unwrap();

    let typing = json!({ "type": "typing", "user": "alice" });
    assert_eq!(demo.cable.broadcasts("chat:lobby"), vec![typing.clone()]);
    assert_eq!(
        of_type(&bob_lobby.transmissions(), "typing"),
        vec![typing.clone()]
    );
    // The typist hears it too; the page and the terminal client skip their own user.
    assert_eq!(of_type(&alice_lobby.transmissions(), "typing"), [typing]);
}

#[tokio::test]
async fn history_is_transmitted_to_the_sender_only() {
    let demo = Demo::new();
    let (_alice, alice_lobby) = demo.in_room("alice", "lobby").await;
    let (_bob, bob_lobby) = demo.in_room("bob", "lobby").await;
    for text in ["one", "two", "three"] {
        alice_lobby
            .perform("speak", json!({ "text": text }))
            .await
            .unwrap();
    }
    demo.cable.clear_broadcasts();

    bob_lobby.perform("history", json!({})).await.unwrap();
    bob_lobby
        .perform("history", json!({ "limit": 2 }))
        .await
        .unwrap();
    bob_lobby
        .perform("history", json!({ "limit": "2" }))
        .await
        .unwrap();

    let texts = |h: &Value| -> Vec<String> {
        h["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["text"].as_str().unwrap().to_owned())
            .collect()
    };
    let histories = of_type(&bob_lobby.transmissions(), "history");
    assert_eq!(histories.len(), 2);
    assert_eq!(
        texts(&histories[0]),
        ["one", "two", "three"],
        "oldest first"
    );
    assert_eq!(texts(&histories[1]), ["two", "three"], "the last `limit`");
    assert_eq!(
        of_type(&bob_lobby.transmissions(), "error"),
        [json!({ "type": "error", "error": "limit must be an integer" })]
    );
    assert!(of_type(&alice_lobby.transmissions(), "history").is_empty());
    assert!(demo.cable.broadcasts("chat:lobby").is_empty());
}

#[tokio::test]
async fn unknown_actions_are_answered_without_harming_the_subscription() {
    let demo = Demo::new();
    let (_alice, alice_lobby) = demo.in_room("alice", "lobby").await;
    let before = alice_lobby.transmissions().len();

    // Rails logs it and tells the client nothing; the demo's `rescue` tells the sender why.
    let result: Result<(), ChannelError> = alice_lobby.perform("shout", json!({})).await;
    assert!(
        result.is_ok(),
        "handled by the channel's rescue: {result:?}"
    );
    let transmissions = alice_lobby.transmissions();
    assert_eq!(transmissions.len(), before + 1);
    assert_eq!(
        transmissions[before],
        json!({ "type": "error", "error": "unknown variant `shout`, expected one of `speak`, `typing`, `history`" })
    );

    alice_lobby
        .perform("speak", json!({ "text": "still here" }))
        .await
        .unwrap();
    assert_eq!(
        demo.cable.broadcasts("chat:lobby").last().unwrap()["text"],
        "still here"
    );
}

#[tokio::test]
async fn unsubscribing_announces_the_leaver_and_stops_the_stream() {
    let demo = Demo::new();
    let (alice, alice_lobby) = demo.in_room("alice", "lobby").await;
    let (_bob, bob_lobby) = demo.in_room("bob", "lobby").await;
    demo.cable.clear_broadcasts();

    alice_lobby.unsubscribe().await;

    let left = json!({ "type": "left", "user": "alice" });
    assert_eq!(demo.cable.broadcasts("chat:lobby"), vec![left.clone()]);
    assert_eq!(of_type(&bob_lobby.transmissions(), "left"), [left]);
    assert!(!alice_lobby.has_stream("chat:lobby"));
    assert!(alice.connection().subscriptions().is_empty());

    // No longer in the room: bob's messages do not reach alice.
    let seen = alice_lobby.transmissions().len();
    bob_lobby
        .perform("speak", json!({ "text": "bye alice" }))
        .await
        .unwrap();
    assert_eq!(alice_lobby.transmissions().len(), seen);
}

#[tokio::test]
async fn disconnecting_leaves_every_room() {
    let demo = Demo::new();
    let alice = demo.stub_connection("alice").await;
    for room in ["lobby", "random"] {
        assert!(
            alice
                .subscribe::<ChatChannel>(json!({ "room": room }))
                .await
                .is_confirmed()
        );
    }
    assert_eq!(demo.cable.handle().connection_count(), 1);
    demo.cable.clear_broadcasts();

    alice.disconnect().await;

    for room in ["lobby", "random"] {
        assert_eq!(
            demo.cable.broadcasts(&format!("chat:{room}")),
            [json!({ "type": "left", "user": "alice" })]
        );
    }
    assert_eq!(demo.cable.handle().connection_count(), 0);
    assert_eq!(demo.cable.handle().stream_count(), 0);
}

// ---------------------------------------------------------------------------------------
// NotificationChannel (Rails' NotificationChannelTest)

#[tokio::test]
async fn notifications_stream_for_the_current_user() {
    let demo = Demo::new();
    let alice = demo.stub_connection("alice").await;
    let bob = demo.stub_connection("bob").await;
    let alice_n = alice.subscribe::<NotificationChannel>(json!({})).await;
    let bob_n = bob.subscribe::<NotificationChannel>(json!({})).await;

    assert!(alice_n.is_confirmed());
    // Rails' `assert_has_stream_for current_user`: stream_for names it `notification:alice`.
    assert_eq!(alice_n.streams(), ["notification:alice"]);
    assert!(bob_n.has_stream("notification:bob"));

    // As `POST /notifications` does: `NotificationChannel.broadcast_to(user, …)`.
    let note = json!({ "id": 1, "message": "hello alice", "kind": "info" });
    demo.cable
        .handle()
        .broadcast_to("NotificationChannel", "alice", &note)
        .await
        .unwrap();
    assert_eq!(
        demo.cable.broadcasts("notification:alice"),
        vec![note.clone()]
    );
    assert_eq!(alice_n.transmissions(), [note]);
    assert!(bob_n.transmissions().is_empty());
}

#[tokio::test]
async fn mark_read_marks_your_own_notification() {
    let demo = Demo::new();
    let mine = notify(&demo.db, "alice", "yours").await;
    let alice = demo.stub_connection("alice").await;
    let alice_n = alice.subscribe::<NotificationChannel>(json!({})).await;

    alice_n
        .perform("mark_read", json!({ "id": mine }))
        .await
        .unwrap();

    assert_eq!(
        alice_n.transmissions(),
        [json!({ "type": "marked_read", "id": mine })]
    );
    let stored = demo.db.notifications_for("alice", 10).await.unwrap();
    assert!(stored[0].read);
    assert!(demo.cable.broadcasts("notification:alice").is_empty());
}

#[tokio::test]
async fn mark_read_of_anything_else_is_not_found() {
    let demo = Demo::new();
    let bobs = notify(&demo.db, "bob", "not yours").await;
    let alice = demo.stub_connection("alice").await;
    let alice_n = alice.subscribe::<NotificationChannel>(json!({})).await;

    for data in [
        json!({ "id": bobs }),
        json!({ "id": 999_999 }),
        json!({ "id": bobs.to_string() }),
        json!({}),
    ] {
        alice_n.perform("mark_read", data).await.unwrap();
    }

    // Someone else's id and a missing one look the same, so ids reveal nothing.
    let not_found = json!({ "type": "error", "error": "notification not found" });
    assert_eq!(alice_n.transmissions(), vec![not_found; 4]);
    let stored = demo.db.notifications_for("bob", 10).await.unwrap();
    assert!(!stored[0].read, "bob's notification is untouched");
}

// ---------------------------------------------------------------------------------------
// The server's view

#[tokio::test]
async fn the_cable_lists_connections_with_their_subscriptions() {
    let demo = Demo::new();
    let (alice, lobby) = demo.in_room("alice", "lobby").await;
    let notifications = alice.subscribe::<NotificationChannel>(json!({})).await;
    let _bob = demo.stub_connection("bob").await;

    let connections = demo.cable.handle().connections();
    assert_eq!(connections.len(), 2);
    let info = connections.iter().find(|c| c.id == alice.id()).unwrap();
    assert_eq!(info.identity.get(CURRENT_USER), Some("alice"));
    assert_eq!(
        info.subscriptions,
        [
            lobby.identifier().to_owned(),
            notifications.identifier().to_owned()
        ]
    );

    // The server ends alice's chat subscription: her client is told it was rejected, and the
    // room hears that she left.
    assert!(alice.connection().unsubscribe(lobby.identifier()));
    alice.settle().await;
    assert!(lobby.is_rejected());
    assert_eq!(
        demo.cable.broadcasts("chat:lobby").last(),
        Some(&json!({ "type": "left", "user": "alice" }))
    );
    assert!(notifications.is_confirmed());
}

async fn notify(db: &Db, user: &str, message: &str) -> i64 {
    db.add_notification(NewNotification {
        user: user.into(),
        message: message.into(),
        kind: "info".into(),
        link: None,
    })
    .await
    .unwrap()
    .id
}

/// A fresh SQLite file path in the temporary directory.
fn temp_database() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir()
        .join(format!(
            "example-demo-channels-{}-{n}.sqlite3",
            std::process::id()
        ))
        .to_string_lossy()
        .into_owned()
}

fn remove_database(path: &str) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{path}{suffix}"));
    }
}
