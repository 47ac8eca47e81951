//! `POST /_broadcast`, AnyCable's HTTP broadcaster: 201 with the key, 401 without it, 422 for a
//! body that is not a publication (or another method), 413 over the size limit, and no endpoint
//! at all (404) without `CABLE_BROADCAST_KEY`.

use crate::support::start;
use cable_test_support::{Connect, HttpReply, ServerProcess, http_request};

pub(crate) const KEY: &str = "0123456789abcdef0123456789abcdef-broadcast";

pub(crate) async fn post(server: &ServerProcess, auth: Option<&str>, body: &str) -> HttpReply {
    let header = auth.map(|key| format!("Bearer {key}"));
    let headers: Vec<(&str, &str)> = header
        .iter()
        .map(|h| ("Authorization", h.as_str()))
        .collect();
    http_request(server.addr(), "POST", "/_broadcast", &headers, Some(body)).await
}

/// Without the key, or with another, nothing is read or published: 401. Neither the key nor
/// the body ends up in the log.
#[tokio::test]
async fn the_key_is_required() {
    let server = start(&[("CABLE_BROADCAST_KEY", KEY)]);
    let body = r#"{"stream":"chat","data":"{\"secret\":\"payload-text\"}"}"#;
    assert_eq!(post(&server, Some(KEY), body).await.status, 201);
    for auth in [
        None,
        Some("wrong"),
        Some(&KEY[..KEY.len() - 1]),
        Some(&format!("{KEY}x")),
    ] {
        let reply = post(&server, auth, body).await;
        assert_eq!(reply.status, 401, "{auth:?}: {reply:?}");
    }
    let lowercase = http_request(
        server.addr(),
        "POST",
        "/_broadcast",
        &[("Authorization", &format!("bearer{KEY}"))],
        Some(body),
    )
    .await;
    assert_eq!(lowercase.status, 401);
    let output = server.output();
    assert!(
        output.contains("broadcast request without the right key"),
        "{output}"
    );
    assert!(!output.contains(KEY), "the key was logged: {output}");
    assert!(
        !output.contains("payload-text"),
        "the payload was logged: {output}"
    );
}

/// A body that is not a publication, or an array of them, is 422, as is any method but POST
/// (AnyCable's answer); an empty array publishes nothing and is fine.
#[tokio::test]
async fn bad_bodies_and_methods_are_unprocessable() {
    let server = start(&[("CABLE_BROADCAST_KEY", KEY)]);
    for body in [
        "",
        "not json",
        "{}",
        r#"{"stream":"chat"}"#,
        r#"{"data":"{}"}"#,
        r#"{"stream":"chat","data":{"text":"an object, not a JSON-encoded string"}}"#,
        r#"{"stream":"","data":"{}"}"#,
        r#"{"stream":7,"data":"{}"}"#,
        r#"[{"stream":"chat","data":"{}"},{"stream":"chat"}]"#,
        r#""a string""#,
    ] {
        let reply = post(&server, Some(KEY), body).await;
        assert_eq!(reply.status, 422, "{body:?}: {reply:?}");
    }
    assert_eq!(post(&server, Some(KEY), "[]").await.status, 201);
    let auth = format!("Bearer {KEY}");
    for method in ["GET", "PUT", "DELETE"] {
        let reply = http_request(
            server.addr(),
            method,
            "/_broadcast",
            &[("Authorization", &auth)],
            None,
        )
        .await;
        assert_eq!(reply.status, 422, "{method}: {reply:?}");
    }
}

/// Bodies are bounded: 1 MiB passes, more is 413, and only an authorized caller gets its body
/// read at all.
#[tokio::test]
async fn bodies_are_bounded() {
    let server = start(&[("CABLE_BROADCAST_KEY", KEY)]);
    let fits = format!(
        r#"{{"stream":"chat","data":"{}"}}"#,
        "x".repeat(1024 * 1024 - 40)
    );
    assert_eq!(post(&server, Some(KEY), &fits).await.status, 201);
    let over = format!(
        r#"{{"stream":"chat","data":"{}"}}"#,
        "x".repeat(1024 * 1024)
    );
    assert_eq!(post(&server, Some(KEY), &over).await.status, 413);
    assert_eq!(post(&server, None, &over).await.status, 401);
}

/// Without `CABLE_BROADCAST_KEY` there is no endpoint: 404, like any unknown path.
#[tokio::test]
async fn without_a_key_there_is_no_endpoint() {
    let server = start(&[]);
    let reply = post(&server, Some(KEY), r#"{"stream":"chat","data":"{}"}"#).await;
    assert_eq!(reply.status, 404, "{reply:?}");
}

/// A publication reaches the stream's subscribers with its `data` as the message, byte for byte
/// (key order and escapes as the sender wrote them); a batch publishes each; `data` that is not
/// JSON arrives as a JSON string, as AnyCable delivers it.
#[tokio::test]
async fn publications_reach_subscribers_byte_for_byte() {
    let server = start(&[("CABLE_BROADCAST_KEY", KEY), ("CABLE_PUBLIC_STREAMS", "1")]);
    let mut client = server.client(Connect::new()).await;
    let chat = r#"{"channel":"$pubsub","stream_name":"chat"}"#;
    let news = r#"{"channel":"$pubsub","stream_name":"news"}"#;
    client.confirm(chat).await;
    client.confirm(news).await;

    let data = r#"{"b":1,"a":"\u003c&\u003e","c":[1.50,"é"]}"#;
    let body = serde_json::json!({ "stream": "chat", "data": data }).to_string();
    assert_eq!(post(&server, Some(KEY), &body).await.status, 201);
    client
        .expect_frame(&format!(
            r#"{{"identifier":{},"message":{data}}}"#,
            serde_json::to_string(chat).unwrap()
        ))
        .await;

    let batch = serde_json::json!([
        { "stream": "news", "data": "\"first\"" },
        { "stream": "chat", "data": "not JSON at all", "meta": { "exclude_socket": "x" } },
        { "stream": "news", "data": "{\"n\":3}" },
    ])
    .to_string();
    assert_eq!(post(&server, Some(KEY), &batch).await.status, 201);
    client.expect_data(news, &serde_json::json!("first")).await;
    client
        .expect_data(chat, &serde_json::json!("not JSON at all"))
        .await;
    client
        .expect_data(news, &serde_json::json!({ "n": 3 }))
        .await;
    client.expect_silence(cable_test_support::SILENCE).await;
}

/// With `CABLE_HISTORY`, what `/_broadcast` publishes is kept with its position: a client on
/// AnyCable's extended protocol gets `stream_id`/`epoch`/`offset`, and one that comes back with
/// its last position is replayed what it missed, in order, before `confirm_history`. A stock
/// client on the same stream gets today's frames.
#[tokio::test]
async fn history_keeps_http_broadcasts_for_extended_protocol_clients() {
    let server = start(&[
        ("CABLE_BROADCAST_KEY", KEY),
        ("CABLE_PUBLIC_STREAMS", "1"),
        ("CABLE_HISTORY", "1"),
    ]);
    let chat = r#"{"channel":"$pubsub","stream_name":"chat"}"#;
    let ext = || Connect::new().protocols("actioncable-v1-ext-json");
    let mut first = server.client(ext()).await;
    assert_eq!(first.protocol.as_deref(), Some("actioncable-v1-ext-json"));
    first.confirm(chat).await;
    let mut plain = server.client(Connect::new()).await;
    plain.confirm(chat).await;

    let publish = |n: u64| {
        serde_json::json!({ "stream": "chat", "data": format!("{{\"n\":{n}}}") }).to_string()
    };
    let mut positions = Vec::new();
    for n in 1..=3 {
        assert_eq!(post(&server, Some(KEY), &publish(n)).await.status, 201);
        let frame = first.recv_json().await;
        assert_eq!(frame["message"]["n"], n, "{frame}");
        assert_eq!(frame["stream_id"], "chat", "{frame}");
        positions.push((
            frame["epoch"].as_str().expect("an epoch").to_owned(),
            frame["offset"].as_u64().expect("an offset"),
        ));
        plain
            .expect_frame(&format!(
                r#"{{"identifier":{},"message":{{"n":{n}}}}}"#,
                serde_json::to_string(chat).unwrap()
            ))
            .await;
    }
    assert!(
        positions
            .windows(2)
            .all(|w| w[0].0 == w[1].0 && w[1].1 == w[0].1 + 1)
    );

    // A client that saw only the first message comes back: it is sent the other two.
    let (epoch, offset) = positions[0].clone();
    let mut back = server.client(ext()).await;
    back.send_json(&serde_json::json!({
        "command": "subscribe",
        "identifier": chat,
        "history": { "streams": { "chat": { "epoch": epoch, "offset": offset } } },
    }))
    .await;
    let confirm = back.recv_json().await;
    assert_eq!(confirm["type"], "confirm_subscription", "{confirm}");
    for n in 2..=3 {
        let frame = back.recv_json().await;
        assert_eq!(frame["message"]["n"], n, "{frame}");
        assert_eq!(frame["offset"], positions[n as usize - 1].1, "{frame}");
    }
    let done = back.recv_json().await;
    assert_eq!(done["type"], "confirm_history", "{done}");
}

/// `psql` on the shared PostgreSQL server (127.0.0.1:5432, user postgres, which scripts/test.sh
/// starts if none answers); its output.
fn psql(database: &str, sql: &str) -> String {
    let output = std::process::Command::new("psql")
        .args([
            "-X",
            "-q",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
        ])
        .args(["-U", "postgres", "-d", database, "-c", sql])
        .output()
        .expect("psql runs (apt-get install postgresql-client; scripts/test.sh installs it)");
    assert!(
        output.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// `CABLE_ADAPTER=postgres` with `DATABASE_URL`: two servers on one database share broadcasts
/// (a publication to one reaches the other's subscriber), a `NOTIFY` in Rails' format reaches
/// both, and `/health` names the adapter and its state.
#[tokio::test]
async fn two_servers_share_broadcasts_through_postgres() {
    let database = format!("cable_server_{}", std::process::id());
    psql("postgres", &format!("DROP DATABASE IF EXISTS {database}"));
    psql("postgres", &format!("CREATE DATABASE {database}"));
    let url = format!("postgres://postgres@127.0.0.1:5432/{database}");
    let env = [
        ("CABLE_ADAPTER", "postgresql"),
        ("DATABASE_URL", url.as_str()),
        ("CABLE_CHANNEL_PREFIX", "app"),
        ("CABLE_BROADCAST_KEY", KEY),
        ("CABLE_PUBLIC_STREAMS", "1"),
    ];
    let a = start(&env);
    let b = start(&env);
    for server in [&a, &b] {
        // The adapter connects in the background: `disconnected` until it has.
        let deadline = tokio::time::Instant::now() + cable_test_support::WAIT;
        let health = loop {
            let health = http_request(server.addr(), "GET", "/health", &[], None)
                .await
                .json();
            assert_eq!(health["adapter"], "postgres", "{health}");
            if health["postgres"] == "connected" || tokio::time::Instant::now() >= deadline {
                break health;
            }
            tokio::time::sleep(cable_test_support::POLL).await;
        };
        assert_eq!(health["postgres"], "connected", "{health}");
        assert_eq!(health["status"], "ok", "{health}");
    }
    let chat = r#"{"channel":"$pubsub","stream_name":"chat"}"#;
    let mut on_b = b.client(Connect::new()).await;
    on_b.confirm(chat).await;
    let body = serde_json::json!({ "stream": "chat", "data": "{\"from\":\"a\"}" }).to_string();
    assert_eq!(post(&a, Some(KEY), &body).await.status, 201);
    on_b.expect_data(chat, &serde_json::json!({ "from": "a" }))
        .await;
    let mut on_a = a.client(Connect::new()).await;
    on_a.confirm(chat).await;
    psql(&database, r#"NOTIFY "app:chat", '{"from":"rails"}'"#);
    for client in [&mut on_a, &mut on_b] {
        client
            .expect_data(chat, &serde_json::json!({ "from": "rails" }))
            .await;
        client.expect_silence(cable_test_support::SILENCE).await;
    }
    drop((on_a, on_b, a, b));
    psql(
        "postgres",
        &format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"),
    );
}
