//! Against Rails' own code (`tests/ruby/rails.rb`, Debian's ruby-actioncable 6.1 and its Redis
//! adapter) on a real Redis: 127.0.0.1:6379, which the test machine runs, each test with a
//! channel prefix of its own.

use crate::support::{SECRET_KEY_BASE, rails, start, unique_prefix};
use cable_test_support::{Connect, mint_hs256, unix_now};
use serde_json::json;

const JWT_SECRET: &str = "the cable's JWT secret, thirty-two bytes at least";
const REDIS_URL: &str = "redis://127.0.0.1:6379/1";

/// `ActionCable.server.remote_connections.where(current_user: user).disconnect` in Rails closes
/// the connection here whose AnyCable token names that user: the identity is Rails'
/// `connection_identifier` (a record's `to_gid_param`), and the disconnect comes over Redis on
/// Rails' internal channel. Another user's connection stays.
#[tokio::test]
async fn a_rails_remote_disconnect_closes_the_users_jwt_connection() {
    let prefix = unique_prefix("remote-disconnect");
    let server = start(&[
        ("CABLE_ADAPTER", "redis"),
        ("REDIS_URL", REDIS_URL),
        ("CABLE_CHANNEL_PREFIX", &prefix),
        ("CABLE_JWT_SECRET", JWT_SECRET),
    ]);
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
    let env = [
        ("REDIS_URL", REDIS_URL),
        ("CABLE_CHANNEL_PREFIX", prefix.as_str()),
    ];
    let param = rails(
        &env,
        &["disconnect", "current_user", "gid://interop/User/bob"],
    );
    assert_eq!(
        param, "Z2lkOi8vaW50ZXJvcC9Vc2VyL2JvYg",
        "GlobalID's to_gid_param"
    );
    // Rails 6.1 sends no `reconnect`: the consumer's default, reconnecting, applies.
    bob.expect_disconnect("remote", true).await;
    alice.expect_silence(cable_test_support::SILENCE).await;
    alice.close().await;
}

/// The server with Redis on `prefix` and `env`.
fn start_on_redis(prefix: &str, env: &[(&str, &str)]) -> cable_test_support::ServerProcess {
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

/// `ActionCable.server.broadcast` in Rails, through Rails' Redis adapter and channel prefix,
/// reaches a `$pubsub` subscriber here whose name Rails' `MessageVerifier` signed (AnyCable's
/// algorithm): the frame holds Rails' JSON byte for byte, ActiveSupport's `\u003c` escapes
/// and all.
#[tokio::test]
async fn a_rails_broadcast_reaches_a_subscriber_byte_for_byte() {
    let prefix = unique_prefix("broadcast");
    let server = start_on_redis(&prefix, &[]);
    let ruby_env = [
        ("SECRET_KEY_BASE", SECRET_KEY_BASE),
        ("REDIS_URL", REDIS_URL),
        ("CABLE_CHANNEL_PREFIX", prefix.as_str()),
    ];
    let signed = rails(&ruby_env, &["pubsub_signed", "chat/2024"]);
    let identifier = json!({ "channel": "$pubsub", "signed_stream_name": signed }).to_string();
    let mut client = server.client(Connect::new()).await;
    client.confirm(&identifier).await;

    let payload = rails(
        &ruby_env,
        &[
            "broadcast",
            "chat/2024",
            r#"{"text":"<b>hi</b> & bye","n":1,"at":"é"}"#,
        ],
    );
    assert_eq!(
        payload, r#"{"text":"\u003cb\u003ehi\u003c/b\u003e \u0026 bye","n":1,"at":"é"}"#,
        "ActiveSupport::JSON's encoding"
    );
    client
        .expect_frame(&frame_with(&identifier, &payload))
        .await;

    // A name signed with another secret, or changed, is refused.
    let other = rails(
        &[("SECRET_KEY_BASE", "another secret_key_base")],
        &["pubsub_signed", "chat/2024"],
    );
    let refused = json!({ "channel": "$pubsub", "signed_stream_name": other }).to_string();
    assert_eq!(
        client.subscribe(&refused).await,
        cable_test_support::SubscribeReply::Rejected
    );
}

/// A Turbo page's subscription, with a name signed by turbo-rails' own two calls in Ruby
/// (`KeyGenerator#generate_key("turbo/signed_stream_verifier_key")`, then `MessageVerifier`
/// with SHA256 and JSON), receives the `<turbo-stream>` HTML Rails broadcasts: for a SHA256 key
/// generator (Rails 7.0+), a SHA1 one (6.1) and an explicit `signed_stream_verifier_key`. A name
/// signed under another setting is rejected.
#[tokio::test]
async fn turbo_names_signed_by_rails_subscribe_and_receive_rails_broadcasts() {
    let turbo_key = "the app's config.turbo.signed_stream_verifier_key";
    for (digest, server_env, ruby_extra) in [
        ("sha256", vec![], vec![]),
        ("sha1", vec![("RAILS_KEY_DIGEST", "sha1")], vec![]),
        (
            "sha256",
            vec![("TURBO_STREAMS_SECRET", turbo_key)],
            vec![("TURBO_STREAMS_SECRET", turbo_key)],
        ),
    ] {
        let case = format!("{digest} {server_env:?}");
        let prefix = unique_prefix("turbo");
        let server = start_on_redis(&prefix, &server_env);
        let mut ruby_env = vec![
            ("SECRET_KEY_BASE", SECRET_KEY_BASE),
            ("RAILS_KEY_DIGEST", digest),
            ("REDIS_URL", REDIS_URL),
            ("CABLE_CHANNEL_PREFIX", prefix.as_str()),
        ];
        ruby_env.extend(ruby_extra);
        // turbo_stream_from @room: the room's GlobalID param, then a plain name.
        let stream = "Z2lkOi8vaW50ZXJvcC9Sb29tLzE:messages";
        let signed = rails(&ruby_env, &["turbo_signed", stream]);
        let identifier =
            json!({ "channel": "Turbo::StreamsChannel", "signed_stream_name": signed }).to_string();
        let mut client = server.client(Connect::new()).await;
        client.confirm(&identifier).await;

        let html = r#"<turbo-stream action="append" target="messages"><template><p id="m1">hi &amp; bye</p></template></turbo-stream>"#;
        let payload = rails(
            &ruby_env,
            &["broadcast", stream, &serde_json::to_string(html).unwrap()],
        );
        client
            .expect_frame(&frame_with(&identifier, &payload))
            .await;
        assert_eq!(
            serde_json::from_str::<String>(&payload).unwrap(),
            html,
            "{case}"
        );

        // The same name signed under the other digest (or without the explicit key) does not
        // verify here.
        let mut wrong_env = ruby_env.clone();
        wrong_env.retain(|(k, _)| *k != "TURBO_STREAMS_SECRET" && *k != "RAILS_KEY_DIGEST");
        let other_digest = if digest == "sha256" && server_env.is_empty() {
            "sha1"
        } else {
            "sha256"
        };
        wrong_env.push(("RAILS_KEY_DIGEST", other_digest));
        let wrong = rails(&wrong_env, &["turbo_signed", stream]);
        let refused =
            json!({ "channel": "Turbo::StreamsChannel", "signed_stream_name": wrong }).to_string();
        assert_eq!(
            client.subscribe(&refused).await,
            cable_test_support::SubscribeReply::Rejected,
            "{case}"
        );
        client.close().await;
    }
}

/// `cookies.encrypted[:user_id] = 42`, written by Rails' own `ActionDispatch::Cookies`
/// (AES-256-GCM with purpose metadata, JSON), identifies the connection, under a SHA256 and a
/// SHA1 key generator: the id is `current_user`, which Rails' `remote_connections` then reaches.
/// No cookie, a changed one, one made with another secret, or the value of another cookie is
/// rejected as `reject_unauthorized_connection` rejects.
#[tokio::test]
async fn a_rails_encrypted_cookie_identifies_the_connection() {
    for digest in ["sha256", "sha1"] {
        let prefix = unique_prefix("cookie");
        let server = start_on_redis(
            &prefix,
            &[
                ("CABLE_AUTH_COOKIE", "user_id"),
                ("RAILS_KEY_DIGEST", digest),
            ],
        );
        let ruby_env = [
            ("SECRET_KEY_BASE", SECRET_KEY_BASE),
            ("RAILS_KEY_DIGEST", digest),
            ("REDIS_URL", REDIS_URL),
            ("CABLE_CHANNEL_PREFIX", prefix.as_str()),
        ];
        let cookie = rails(&ruby_env, &["encrypted_cookie", "user_id", "42"]);
        assert!(cookie.starts_with("user_id="), "{cookie}");
        let mut alice = server
            .client(Connect::new().cookie(&format!("theme=dark; {cookie}")))
            .await;
        let string_id = rails(&ruby_env, &["encrypted_cookie", "user_id", r#""7f3a""#]);
        let mut bob = server.client(Connect::new().cookie(&string_id)).await;

        // The identity is what Rails' connection_identifier is: Rails disconnects user 42 here.
        rails(&ruby_env, &["disconnect", "current_user", "42"]);
        alice.expect_disconnect("remote", true).await;
        bob.expect_silence(cable_test_support::SILENCE).await;
        rails(&ruby_env, &["disconnect", "current_user", "7f3a"]);
        bob.expect_disconnect("remote", true).await;

        let (name, value) = cookie.split_once('=').unwrap();
        let mut changed = value.to_owned().into_bytes();
        changed[5] = if changed[5] == b'A' { b'B' } else { b'A' };
        let changed = format!("{name}={}", String::from_utf8(changed).unwrap());
        let other_secret = rails(
            &[
                ("SECRET_KEY_BASE", "another app's secret_key_base"),
                ("RAILS_KEY_DIGEST", digest),
            ],
            &["encrypted_cookie", "user_id", "42"],
        );
        let other_cookie = rails(&ruby_env, &["encrypted_cookie", "admin_id", "42"]);
        let moved = other_cookie.replacen("admin_id=", "user_id=", 1);
        let other_digest = rails(
            &[
                ("SECRET_KEY_BASE", SECRET_KEY_BASE),
                (
                    "RAILS_KEY_DIGEST",
                    if digest == "sha1" { "sha256" } else { "sha1" },
                ),
            ],
            &["encrypted_cookie", "user_id", "42"],
        );
        for (why, opts) in [
            ("no cookie", Connect::new()),
            ("a changed cookie", Connect::new().cookie(&changed)),
            ("another secret", Connect::new().cookie(&other_secret)),
            ("another cookie's value", Connect::new().cookie(&moved)),
            ("the other key digest", Connect::new().cookie(&other_digest)),
            ("an unencrypted cookie", Connect::new().cookie("user_id=42")),
        ] {
            assert_rejected(&server, opts, &format!("{digest}: {why}")).await;
        }
    }
}

/// A cookie-store session written by Rails' own `ActionDispatch::Session::CookieStore` (behind
/// `ActionDispatch::Cookies`, as in a Rails app) identifies the connection by one of its keys;
/// Devise's `warden.user.user.key` too. A changed session cookie, or a session without the key,
/// is rejected.
#[tokio::test]
async fn a_rails_session_cookie_identifies_the_connection() {
    let prefix = unique_prefix("session");
    let ruby_env = [
        ("SECRET_KEY_BASE", SECRET_KEY_BASE),
        ("REDIS_URL", REDIS_URL),
        ("CABLE_CHANNEL_PREFIX", prefix.as_str()),
    ];
    let session = rails(
        &ruby_env,
        &[
            "session_cookie",
            "_myapp_session",
            r#"{"user_id":42,"_csrf_token":"x"}"#,
        ],
    );
    let devise = rails(
        &ruby_env,
        &[
            "session_cookie",
            "_myapp_session",
            r#"{"warden.user.user.key":[[42],"$2a$12$abcdefghijklmnopqrstuv"]}"#,
        ],
    );
    let anonymous = rails(
        &ruby_env,
        &["session_cookie", "_myapp_session", r#"{"flash":"hi"}"#],
    );

    let server = start_on_redis(&prefix, &[("CABLE_AUTH_SESSION", "_myapp_session:user_id")]);
    let mut client = server.client(Connect::new().cookie(&session)).await;
    rails(&ruby_env, &["disconnect", "current_user", "42"]);
    client.expect_disconnect("remote", true).await;
    let tampered = format!("{}A", &session[..session.len() - 1]);
    for (why, opts) in [
        ("no session", Connect::new()),
        (
            "a session without user_id",
            Connect::new().cookie(&anonymous),
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
    rails(&ruby_env, &["disconnect", "current_user", "42"]);
    client.expect_disconnect("remote", true).await;
    assert_rejected(
        &devise_server,
        Connect::new().cookie(&session),
        "no Devise user",
    )
    .await;
}

/// With `CABLE_IDENTIFIER_GID`, the cookie's id names a record as Rails' connection identifier
/// does (`to_gid_param`), so Rails' `remote_connections.where(current_user: User.find(42))`
/// (here a GlobalID-identified record in Ruby) reaches the connection.
#[tokio::test]
async fn a_global_id_identifier_matches_rails_records() {
    let prefix = unique_prefix("gid");
    let ruby_env = [
        ("SECRET_KEY_BASE", SECRET_KEY_BASE),
        ("REDIS_URL", REDIS_URL),
        ("CABLE_CHANNEL_PREFIX", prefix.as_str()),
    ];
    let server = start_on_redis(
        &prefix,
        &[
            ("CABLE_AUTH_COOKIE", "user_id"),
            ("CABLE_IDENTIFIER_GID", "gid://interop/User"),
        ],
    );
    let cookie = rails(&ruby_env, &["encrypted_cookie", "user_id", "42"]);
    let mut client = server.client(Connect::new().cookie(&cookie)).await;
    // The plain id no longer names this connection; the record does.
    rails(&ruby_env, &["disconnect", "current_user", "42"]);
    client.expect_silence(cable_test_support::SILENCE).await;
    let param = rails(
        &ruby_env,
        &["disconnect", "current_user", "gid://interop/User/42"],
    );
    assert_eq!(param, "Z2lkOi8vaW50ZXJvcC9Vc2VyLzQy");
    client.expect_disconnect("remote", true).await;
}

async fn assert_rejected(server: &cable_test_support::ServerProcess, opts: Connect, why: &str) {
    let mut client = cable_test_support::CableClient::connect(server.addr(), opts)
        .await
        .unwrap_or_else(|e| panic!("{why}: a rejected connection is still upgraded: {e}"));
    assert_eq!(
        client.recv_text_with_pings().await,
        cable_test_support::disconnect_frame("unauthorized", false),
        "{why}"
    );
    client.expect_close_code(1000).await;
}
