//! Against Rails' own code (`tests/ruby/rails.rb`, Debian's ruby-actioncable 6.1 and its Redis
//! adapter) on a real Redis: 127.0.0.1:6379, which the test machine runs, each test with a
//! channel prefix of its own.

use crate::support::{REDIS_URL, Rails, start, unique_prefix};
use cable_test_support::{
    CableClient, Connect, SILENCE, ServerProcess, SseClient, SubscribeReply, disconnect_frame,
    mint_hs256, unix_now,
};
use serde_json::json;

const JWT_SECRET: &str = "the cable's JWT secret, thirty-two bytes at least";

/// The server with Redis on `prefix`, plus `env`.
fn start_on_redis(prefix: &str, env: &[(&str, &str)]) -> ServerProcess {
    let mut all = vec![
        ("CABLE_ADAPTER", "redis"),
        ("REDIS_URL", REDIS_URL),
        ("CABLE_CHANNEL_PREFIX", prefix),
    ];
    all.extend_from_slice(env);
    start(&all)
}

/// `{"identifier":<identifier>,"message":<payload>}`, the payload exactly as given.
fn frame_with(identifier: &str, payload: &str) -> String {
    format!(
        r#"{{"identifier":{},"message":{payload}}}"#,
        serde_json::to_string(identifier).expect("a string")
    )
}

async fn assert_rejected(server: &ServerProcess, opts: Connect, why: &str) {
    let mut client = CableClient::connect(server.addr(), opts)
        .await
        .unwrap_or_else(|e| panic!("{why}: a rejected connection is still upgraded: {e}"));
    assert_eq!(
        client.recv_text_with_pings().await,
        disconnect_frame("unauthorized", false),
        "{why}"
    );
    client.expect_close_code(1000).await;
}

/// `ActionCable.server.broadcast` in Rails, through Rails' Redis adapter and channel prefix,
/// reaches a `$pubsub` subscriber here whose name Rails' `MessageVerifier` signed (AnyCable's
/// algorithm): the frame holds Rails' JSON byte for byte, ActiveSupport's `\u003c` escapes and
/// all. A name signed with another secret is rejected.
#[tokio::test]
async fn a_rails_broadcast_reaches_a_subscriber_byte_for_byte() {
    let prefix = unique_prefix("broadcast");
    let server = start_on_redis(&prefix, &[]);
    let rails = Rails::app().with("channel_prefix", &prefix);
    let signed = rails.pubsub_signed("chat/2024");
    let identifier = json!({ "channel": "$pubsub", "signed_stream_name": signed }).to_string();
    let mut client = server.client(Connect::new()).await;
    client.confirm(&identifier).await;

    let payload = rails.broadcast(
        "chat/2024",
        &json!({ "text": "<b>hi</b> & bye", "n": 1, "at": "é" }),
    );
    assert_eq!(
        payload, r#"{"text":"\u003cb\u003ehi\u003c/b\u003e \u0026 bye","n":1,"at":"é"}"#,
        "ActiveSupport::JSON's encoding"
    );
    client
        .expect_frame(&frame_with(&identifier, &payload))
        .await;

    let other = Rails::app()
        .with("secret_key_base", "another app's secret_key_base")
        .pubsub_signed("chat/2024");
    let refused = json!({ "channel": "$pubsub", "signed_stream_name": other }).to_string();
    assert_eq!(client.subscribe(&refused).await, SubscribeReply::Rejected);
}

/// A Turbo page's subscription, with a name signed by turbo-rails' own two calls in Ruby
/// (`KeyGenerator#generate_key("turbo/signed_stream_verifier_key")`, then `MessageVerifier`
/// with SHA256 and JSON), receives the `<turbo-stream>` HTML Rails broadcasts: for a SHA256 key
/// generator (Rails 7.0+), a SHA1 one (6.1) and an explicit `signed_stream_verifier_key`. A name
/// signed under another of these settings is rejected.
#[tokio::test]
async fn turbo_names_signed_by_rails_subscribe_and_receive_rails_broadcasts() {
    let turbo_key = "the app's config.turbo.signed_stream_verifier_key";
    let base = Rails::app();
    let cases = [
        (
            "SHA256",
            vec![],
            base.clone(),
            base.with("key_digest", "sha1"),
        ),
        (
            "SHA1",
            vec![("RAILS_KEY_DIGEST", "sha1")],
            base.with("key_digest", "sha1"),
            base.clone(),
        ),
        (
            "an explicit key",
            vec![("TURBO_STREAMS_SECRET", turbo_key)],
            base.with("turbo_streams_secret", turbo_key),
            base.clone(),
        ),
    ];
    for (case, server_env, rails, wrong) in cases {
        let prefix = unique_prefix("turbo");
        let server = start_on_redis(&prefix, &server_env);
        let rails = rails.with("channel_prefix", &prefix);
        // turbo_stream_from @room, :messages: the room's GlobalID param, then a plain name.
        let stream = "Z2lkOi8vaW50ZXJvcC9Sb29tLzE:messages";
        let identifier = json!({
            "channel": "Turbo::StreamsChannel",
            "signed_stream_name": rails.turbo_signed(stream),
        })
        .to_string();
        let mut client = server.client(Connect::new()).await;
        client.confirm(&identifier).await;

        let html = r#"<turbo-stream action="append" target="messages"><template><p id="m1">hi &amp; bye</p></template></turbo-stream>"#;
        let payload = rails.broadcast(stream, &json!(html));
        assert_eq!(
            serde_json::from_str::<String>(&payload).expect("a JSON string"),
            html,
            "{case}"
        );
        client
            .expect_frame(&frame_with(&identifier, &payload))
            .await;

        let refused = json!({
            "channel": "Turbo::StreamsChannel",
            "signed_stream_name": wrong.turbo_signed(stream),
        })
        .to_string();
        assert_eq!(
            client.subscribe(&refused).await,
            SubscribeReply::Rejected,
            "{case}"
        );
        client.close().await;
    }
}

/// `ActionCable.server.remote_connections.where(current_user: user).disconnect` in Rails closes
/// the connection here whose AnyCable token names that user: the identity is Rails'
/// `connection_identifier` (a record's `to_gid_param`), and the disconnect comes over Redis on
/// Rails' internal channel. Another user's connection stays.
/// `value` for a query string: every byte but letters, digits and `-._~` percent-encoded.
fn query_value(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// With `CABLE_SSE_PATH`, a page that only listens follows a Turbo stream as AnyCable serves it:
/// `GET /events?turbo_signed_stream_name=<signed by Rails>` gets the subscription confirmed and
/// each of Rails' broadcasts as a `data:` event whose data is the `<turbo-stream>` HTML itself
/// (what Turbo's `connectStreamSource` renders); a name signed with another key is refused with AnyCable's 400. Without the setting
/// there is no such route.
#[tokio::test]
async fn event_streams_follow_turbo_streams_rails_broadcasts() {
    let prefix = unique_prefix("sse");
    let server = start_on_redis(&prefix, &[("CABLE_SSE_PATH", "/events")]);
    let rails = Rails::app().with("channel_prefix", &prefix);
    let stream = "Z2lkOi8vaW50ZXJvcC9Sb29tLzE:messages";
    let path = format!(
        "/events?turbo_signed_stream_name={}",
        query_value(&rails.turbo_signed(stream))
    );
    let mut events = SseClient::open(server.addr(), &path, &[]).await.stream();
    events.expect_confirmed().await;

    let html = r#"<turbo-stream action="append" target="messages"><template><p>hi</p></template></turbo-stream>"#;
    let payload = rails.broadcast(stream, &json!(html));
    assert_eq!(
        serde_json::from_str::<String>(&payload).ok().as_deref(),
        Some(html)
    );
    // A string message is its text, as AnyCable sends it: what Turbo's stream source renders.
    let event = events.next_message().await;
    assert_eq!(event.data, html, "{event:?}");

    let wrong = Rails::app().with("turbo_streams_secret", "another key, not the app's");
    let forged = format!(
        "/events?turbo_signed_stream_name={}",
        query_value(&wrong.turbo_signed(stream))
    );
    let (status, _) = SseClient::open(server.addr(), &forged, &[]).await.refused();
    assert_eq!(status, 400, "a forged name is a rejected subscription");

    let without = start_on_redis(&unique_prefix("sse_off"), &[]);
    let (status, _) = SseClient::open(without.addr(), &path, &[]).await.refused();
    assert_eq!(status, 404, "no CABLE_SSE_PATH, no event streams");
}

#[tokio::test]
async fn a_rails_remote_disconnect_closes_the_users_jwt_connection() {
    let prefix = unique_prefix("remote-disconnect");
    let server = start_on_redis(&prefix, &[("CABLE_JWT_SECRET", JWT_SECRET)]);
    let jid = |user: &str| {
        mint_hs256(
            JWT_SECRET.as_bytes(),
            &json!({
                "ext": json!({ "current_user": format!("gid://interop/User/{user}") }).to_string(),
                "exp": unix_now() + 300,
            }),
        )
    };
    let mut bob = server
        .client(Connect::new().path(&format!("/cable?jid={}", jid("bob"))))
        .await;
    let mut alice = server
        .client(Connect::new().path(&format!("/cable?jid={}", jid("alice"))))
        .await;
    let rails = Rails::app().with("channel_prefix", &prefix);
    let param = rails.disconnect("current_user", "gid://interop/User/bob");
    assert_eq!(
        param, "Z2lkOi8vaW50ZXJvcC9Vc2VyL2JvYg",
        "GlobalID's to_gid_param"
    );
    // Rails 6.1 sends no `reconnect`: the consumer's default, reconnecting, applies.
    bob.expect_disconnect("remote", true).await;
    alice.expect_silence(SILENCE).await;

    // An id the gem escapes (an email): the token carries the URI as the gem wrote it.
    let mut carol = server
        .client(Connect::new().path(&format!("/cable?jid={}", jid("carol%40example.com"))))
        .await;
    let param = rails.disconnect("current_user", "gid://interop/User/carol%40example.com");
    assert_eq!(param, "Z2lkOi8vaW50ZXJvcC9Vc2VyL2Nhcm9sJTQwZXhhbXBsZS5jb20");
    carol.expect_disconnect("remote", true).await;
    alice.expect_silence(SILENCE).await;
    alice.close().await;
}

/// `cookies.encrypted[:user_id] = 42`, written by Rails' own `ActionDispatch::Cookies`
/// (AES-256-GCM with purpose metadata, JSON), identifies the connection, under a SHA256 and a
/// SHA1 key generator: the id is `current_user`, which Rails' `remote_connections` then reaches.
/// No cookie, a changed one, one made with another secret or key digest, the value of another
/// cookie, or a plain one is rejected as `reject_unauthorized_connection` rejects.
#[tokio::test]
async fn a_rails_encrypted_cookie_identifies_the_connection() {
    for (digest, other_digest) in [("sha256", "sha1"), ("sha1", "sha256")] {
        let prefix = unique_prefix("cookie");
        let server = start_on_redis(
            &prefix,
            &[
                ("CABLE_AUTH_COOKIE", "user_id"),
                ("RAILS_KEY_DIGEST", digest),
            ],
        );
        let rails = Rails::app()
            .with("key_digest", digest)
            .with("channel_prefix", &prefix);
        let cookie = rails.encrypted_cookie("user_id", &json!(42));
        assert!(cookie.starts_with("user_id="), "{cookie}");
        let mut alice = server
            .client(Connect::new().cookie(&format!("theme=dark; {cookie}")))
            .await;
        let string_id = rails.encrypted_cookie("user_id", &json!("7f3a"));
        let mut bob = server.client(Connect::new().cookie(&string_id)).await;

        // The identity is what Rails' connection_identifier is: Rails disconnects user 42 here.
        assert_eq!(rails.disconnect("current_user", "42"), "42");
        alice.expect_disconnect("remote", true).await;
        bob.expect_silence(SILENCE).await;
        rails.disconnect("current_user", "7f3a");
        bob.expect_disconnect("remote", true).await;

        let (name, value) = cookie.split_once('=').expect("name=value");
        let mut changed = value.to_owned().into_bytes();
        changed[5] = if changed[5] == b'A' { b'B' } else { b'A' };
        let changed = format!("{name}={}", String::from_utf8(changed).expect("ASCII"));
        let other_secret = rails
            .with("secret_key_base", "another app's secret_key_base")
            .encrypted_cookie("user_id", &json!(42));
        let moved =
            rails
                .encrypted_cookie("admin_id", &json!(42))
                .replacen("admin_id=", "user_id=", 1);
        let other_digest = rails
            .with("key_digest", other_digest)
            .encrypted_cookie("user_id", &json!(42));
        for (why, opts) in [
            ("no cookie", Connect::new()),
            ("a changed cookie", Connect::new().cookie(&changed)),
            ("another secret", Connect::new().cookie(&other_secret)),
            ("another cookie's value", Connect::new().cookie(&moved)),
            ("the other key digest", Connect::new().cookie(&other_digest)),
            ("a plain cookie", Connect::new().cookie("user_id=42")),
        ] {
            assert_rejected(&server, opts, &format!("{digest}: {why}")).await;
        }
    }
}

/// A cookie-store session written by Rails' own `ActionDispatch::Session::CookieStore` (behind
/// `ActionDispatch::Cookies`, as in a Rails app) identifies the connection by one of its keys;
/// Devise's `warden.user.user.key` too. A changed session cookie, or a session without the key
/// (signed out), is rejected.
#[tokio::test]
async fn a_rails_session_cookie_identifies_the_connection() {
    let prefix = unique_prefix("session");
    let rails = Rails::app().with("channel_prefix", &prefix);
    let session = rails.session_cookie(
        "_myapp_session",
        &json!({ "user_id": 42, "_csrf_token": "x" }),
    );
    let devise = rails.session_cookie(
        "_myapp_session",
        &json!({ "warden.user.user.key": [[42], "$2a$12$abcdefghijklmnopqrstuv"] }),
    );
    let signed_out = rails.session_cookie("_myapp_session", &json!({ "flash": "bye" }));

    let server = start_on_redis(&prefix, &[("CABLE_AUTH_SESSION", "_myapp_session:user_id")]);
    let mut client = server.client(Connect::new().cookie(&session)).await;
    rails.disconnect("current_user", "42");
    client.expect_disconnect("remote", true).await;
    let tampered = format!("{}A", &session[..session.len() - 1]);
    for (why, opts) in [
        ("no session", Connect::new()),
        (
            "a session without user_id",
            Connect::new().cookie(&signed_out),
        ),
        ("a changed session", Connect::new().cookie(&tampered)),
    ] {
        assert_rejected(&server, opts, why).await;
    }
    drop(server);

    let devise_server = start_on_redis(
        &prefix,
        &[("CABLE_AUTH_SESSION", "_myapp_session:warden.user.user.key")],
    );
    let mut client = devise_server.client(Connect::new().cookie(&devise)).await;
    rails.disconnect("current_user", "42");
    client.expect_disconnect("remote", true).await;
    assert_rejected(
        &devise_server,
        Connect::new().cookie(&session),
        "no Devise user",
    )
    .await;
}

/// With `CABLE_IDENTIFIER_GID`, the cookie's id names a record as Rails' connection identifier
/// does (`to_gid_param`), so Rails' `remote_connections.where(current_user: user)` with a
/// GlobalID-identified record reaches the connection, and the plain id no longer does.
#[tokio::test]
async fn a_global_id_identifier_matches_rails_records() {
    let prefix = unique_prefix("gid");
    let rails = Rails::app().with("channel_prefix", &prefix);
    let server = start_on_redis(
        &prefix,
        &[
            ("CABLE_AUTH_COOKIE", "user_id"),
            ("CABLE_IDENTIFIER_GID", "gid://interop/User"),
        ],
    );
    let cookie = rails.encrypted_cookie("user_id", &json!(42));
    let mut client = server.client(Connect::new().cookie(&cookie)).await;
    rails.disconnect("current_user", "42");
    client.expect_silence(SILENCE).await;
    let param = rails.disconnect("current_user", "gid://interop/User/42");
    assert_eq!(param, "Z2lkOi8vaW50ZXJvcC9Vc2VyLzQy");
    client.expect_disconnect("remote", true).await;
}
