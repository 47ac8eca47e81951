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
