//! The binary as a process: it starts from its environment, refuses settings that are wrong
//! (conflicting identification above all) with a message and a non-zero status, stops
//! gracefully on SIGTERM, and sheds connections that never send a request.

use crate::support::{SECRET_KEY_BASE, run_to_exit, start};
use cable_test_support::{CableClient, Connect, http_request};

/// Configured by the environment alone: the cable at `CABLE_PATH`, `/health` answering with the
/// adapter, and nothing at the default path.
#[tokio::test]
async fn starts_from_its_environment() {
    let server = start(&[("CABLE_PATH", "/sockets/cable")]);
    let health = http_request(server.addr(), "GET", "/health", &[], None).await;
    assert_eq!(health.status, 200, "{health:?}");
    assert_eq!(health.header("content-type"), Some("application/json"));
    let body = health.json();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["adapter"], "memory");
    let client = server.client(Connect::new().path("/sockets/cable")).await;
    let body = http_request(server.addr(), "GET", "/health", &[], None)
        .await
        .json();
    assert_eq!(body["connections"], 1, "{body}");
    client.close().await;
    // Nothing else is served: the default path and the broadcast endpoint (no key) are 404.
    for path in ["/cable", "/_broadcast", "/"] {
        let reply = http_request(server.addr(), "GET", path, &[], None).await;
        assert_eq!(reply.status, 404, "{path}: {reply:?}");
    }
}

/// The same settings as flags, which win over the environment.
#[tokio::test]
async fn flags_are_the_same_settings() {
    let (status, help) = run_to_exit(&[], &["--help"]);
    assert!(status.success(), "{help}");
    for name in [
        "CABLE_AUTH_COOKIE",
        "CABLE_JWT_SECRET",
        "--broadcast-key",
        "REDIS_URL",
    ] {
        assert!(help.contains(name), "--help does not name {name}: {help}");
    }
    let (status, stderr) = run_to_exit(
        &[
            ("SECRET_KEY_BASE", SECRET_KEY_BASE),
            ("CABLE_PATH", "/cable"),
        ],
        &["--cable-path", "no-slash"],
    );
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("CABLE_PATH") && stderr.contains("no-slash"),
        "{stderr}"
    );
}

/// Two ways of identifying connections at once is a mistake the server will not guess about:
/// it says which settings conflict and exits with status 2 before listening.
#[tokio::test]
async fn conflicting_identification_refuses_to_start() {
    let jwt = (
        "CABLE_JWT_SECRET",
        "a JWT secret of at least thirty-two bytes",
    );
    for (env, named) in [
        (
            vec![("CABLE_AUTH_COOKIE", "user_id"), jwt],
            ["CABLE_AUTH_COOKIE", "CABLE_JWT_SECRET"],
        ),
        (
            vec![
                ("CABLE_AUTH_COOKIE", "user_id"),
                ("CABLE_AUTH_SESSION", "_app_session:user_id"),
            ],
            ["CABLE_AUTH_COOKIE", "CABLE_AUTH_SESSION"],
        ),
        (
            vec![("CABLE_AUTH_SESSION", "_app_session:user_id"), jwt],
            ["CABLE_AUTH_SESSION", "CABLE_JWT_SECRET"],
        ),
    ] {
        let mut env = env;
        env.push(("SECRET_KEY_BASE", SECRET_KEY_BASE));
        let (status, stderr) = run_to_exit(&env, &[]);
        assert_eq!(status.code(), Some(2), "{env:?}: {stderr}");
        for name in named {
            assert!(stderr.contains(name), "{env:?}: {stderr}");
        }
        assert!(stderr.contains("exactly one way"), "{stderr}");
        assert!(!stderr.contains("listening"), "{stderr}");
        assert!(
            !stderr.contains("thirty-two"),
            "the JWT secret was echoed: {stderr}"
        );
    }
}

/// Other settings that cannot work stop the server with a message naming them, and never
/// echo a secret.
#[tokio::test]
async fn wrong_settings_refuse_to_start_without_echoing_secrets() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[], "SECRET_KEY_BASE"),
        (
            &[
                ("CABLE_AUTH_COOKIE", "user_id"),
                ("TURBO_STREAMS_SECRET", "turbo"),
            ],
            "SECRET_KEY_BASE",
        ),
        (
            &[
                ("SECRET_KEY_BASE", SECRET_KEY_BASE),
                ("CABLE_BROADCAST_KEY", "hunter2-short-key"),
            ],
            "CABLE_BROADCAST_KEY",
        ),
        (
            &[
                ("SECRET_KEY_BASE", SECRET_KEY_BASE),
                ("CABLE_JWT_SECRET", "hunter2"),
            ],
            "CABLE_JWT_SECRET",
        ),
        (
            &[
                ("SECRET_KEY_BASE", SECRET_KEY_BASE),
                ("CABLE_AUTH_SESSION", "_app_session"),
            ],
            "CABLE_AUTH_SESSION",
        ),
        (
            &[
                ("SECRET_KEY_BASE", SECRET_KEY_BASE),
                ("RAILS_KEY_DIGEST", "md5"),
            ],
            "md5",
        ),
        (
            &[
                ("SECRET_KEY_BASE", SECRET_KEY_BASE),
                ("CABLE_PUBLIC_STREAMS", "ture"),
            ],
            "CABLE_PUBLIC_STREAMS",
        ),
        (
            &[
                ("SECRET_KEY_BASE", SECRET_KEY_BASE),
                ("REDIS_URL", "redis://:hunter2@127.0.0.1:6379/x"),
            ],
            "Redis",
        ),
        (
            &[
                ("SECRET_KEY_BASE", SECRET_KEY_BASE),
                ("ALLOWED_ORIGINS", "example.com"),
            ],
            "ALLOWED_ORIGINS",
        ),
    ];
    for (env, named) in cases {
        let (status, stderr) = run_to_exit(env, &[]);
        assert_eq!(status.code(), Some(2), "{env:?}: {stderr}");
        assert!(stderr.contains(named), "{env:?}: {stderr}");
        assert!(!stderr.contains("hunter2"), "a secret was echoed: {stderr}");
        assert!(
            !stderr.contains(SECRET_KEY_BASE),
            "the secret was echoed: {stderr}"
        );
    }
}

/// SIGTERM tells a connected client `server_restart` and the process exits cleanly.
#[tokio::test]
async fn sigterm_sends_server_restart_and_exits() {
    let server = start(&[]);
    let client = server.client(Connect::new()).await;
    server
        .assert_sigterm_turns_unready_and_stops_gracefully(client)
        .await;
}

/// The binary serves with `actioncable::serve`: a connection that sends nothing, and one that
/// sends half an upgrade request, are closed by the server after the default header-read
/// timeout instead of holding a descriptor for as long as their client likes.
#[tokio::test]
async fn connections_that_send_no_whole_request_are_closed_by_the_server() {
    let server = start(&[]);
    server
        .assert_closes_connections_that_send_no_request()
        .await;
}

/// `ALLOWED_ORIGINS` adds origins to the server's own; others are refused as Rails refuses
/// them (404), and `*` allows any.
#[tokio::test]
async fn allowed_origins_are_a_setting() {
    let server = start(&[("ALLOWED_ORIGINS", "https://app.example.com")]);
    server
        .client(Connect::new().origin("https://app.example.com"))
        .await
        .close()
        .await;
    let refused =
        CableClient::connect(server.addr(), Connect::new().origin("https://evil.example")).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 404)
        }
        other => panic!("a foreign origin was not refused: {other:?}"),
    }
    let any = start(&[("ALLOWED_ORIGINS", "*")]);
    any.client(Connect::new().origin("https://evil.example"))
        .await
        .close()
        .await;
}

/// `GET /_stats` with `CABLE_ADMIN_KEY`: the node's counts and top streams for the operator's
/// key, 401 for anything else; without the setting the route does not exist.
#[tokio::test]
async fn the_stats_route_needs_the_admin_key_and_counts_the_node() {
    const ADMIN: &str = "0123456789abcdef0123456789abcdef-operator";
    let server = start(&[("CABLE_ADMIN_KEY", ADMIN), ("CABLE_PUBLIC_STREAMS", "1")]);
    let mut client = server.client(Connect::new()).await;
    client
        .confirm(r#"{"channel":"$pubsub","stream_name":"news"}"#)
        .await;
    let bearer = format!("Bearer {ADMIN}");
    let reply = http_request(
        server.addr(),
        "GET",
        "/_stats",
        &[("Authorization", &bearer)],
        None,
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let stats = reply.json();
    assert_eq!(stats["connections"], serde_json::json!(1));
    assert_eq!(
        stats["top_streams"],
        serde_json::json!([{ "stream": "news", "subscribers": 1 }])
    );
    let refused = http_request(
        server.addr(),
        "GET",
        "/_stats",
        &[("Authorization", "Bearer wrong")],
        None,
    )
    .await;
    assert_eq!(refused.status, 401);
    assert!(!server.output().contains(ADMIN), "the key is never logged");

    let without = start(&[]);
    let reply = http_request(without.addr(), "GET", "/_stats", &[], None).await;
    assert_eq!(reply.status, 404);
}

/// `GET /metrics`: the node's Prometheus text, on by default, counting what happened (a
/// connection and its subscription); `CABLE_METRICS=off` turns the route off.
#[tokio::test]
async fn metrics_are_served_unless_turned_off() {
    let server = start(&[("CABLE_PUBLIC_STREAMS", "1")]);
    let mut client = server.client(Connect::new()).await;
    client
        .confirm(r#"{"channel":"$pubsub","stream_name":"news"}"#)
        .await;
    let reply = http_request(server.addr(), "GET", "/metrics", &[], None).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let text = reply.body_text();
    assert!(
        text.contains(r#"actioncable_connections{protocol="plain"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"actioncable_subscriptions{channel="$pubsub"} 1"#),
        "{text}"
    );

    let off = start(&[("CABLE_PUBLIC_STREAMS", "1"), ("CABLE_METRICS", "off")]);
    let reply = http_request(off.addr(), "GET", "/metrics", &[], None).await;
    assert_eq!(reply.status, 404);
}
