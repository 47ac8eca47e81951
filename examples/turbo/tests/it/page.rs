//! The page, the form and the cable, served in-process: what a browser would do, by hand.

use actioncable_rails::KeyDigest;
use actioncable_rails::turbo::TurboStreams;
use cable_test_support::{
    CableClient, Connect, HttpReply, SILENCE, TestServer, data_frame, http_raw, http_request,
};
use example_turbo::{DEFAULT_ASSETS, Settings, app};
use serde_json::{Value, json};
use std::net::SocketAddr;

async fn serve() -> TestServer<TurboStreams> {
    let turbo = TurboStreams::from_secret_key_base("page tests", KeyDigest::Sha256).unwrap();
    let settings = Settings {
        turbo: turbo.clone(),
        assets: DEFAULT_ASSETS.into(),
    };
    let (router, handle) = app(settings).unwrap();
    TestServer::start(turbo, |listener, stop| async move {
        actioncable::serve(listener, router)
            .with_graceful_shutdown(async move {
                stop.await;
                handle.shutdown(cable_test_support::WAIT).await;
            })
            .await
    })
    .await
}

/// A form post, as a browser sends it from the page (same origin), plus `extra` headers.
async fn post_form(addr: SocketAddr, body: &str, extra: &[(&str, &str)]) -> HttpReply {
    let mut request = format!(
        "POST /messages HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in extra {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    http_raw(addr, &request, false).await
}

/// The `signed-stream-name` of the page's `<turbo-cable-stream-source>`.
fn signed_name(page: &str) -> String {
    let (_, rest) = page
        .split_once(
            r#"<turbo-cable-stream-source channel="Turbo::StreamsChannel" signed-stream-name=""#,
        )
        .unwrap_or_else(|| panic!("no stream source in the page:\n{page}"));
    rest.split('"').next().unwrap().to_owned()
}

fn identifier(signed: &str) -> String {
    json!({ "channel": "Turbo::StreamsChannel", "signed_stream_name": signed }).to_string()
}

#[tokio::test]
async fn a_posted_message_reaches_every_page_on_the_room_escaped() {
    let server = serve().await;
    let page = http_request(server.addr, "GET", "/?room=kitchen", &[], None).await;
    assert_eq!(page.status, 200, "{page:?}");
    let csp = page.header("content-security-policy").unwrap_or_default();
    assert!(csp.contains("script-src 'self' 'sha256-"), "{csp}");
    let signed = signed_name(page.body_text());
    assert_eq!(
        server.handle.verified_stream_name(&signed).unwrap(),
        "rooms:kitchen"
    );

    let id = identifier(&signed);
    let mut alice = server.client().await;
    let mut bob = server.client().await;
    alice.confirm(&id).await;
    bob.confirm(&id).await;

    let origin = server.origin();
    let reply = post_form(
        server.addr,
        "room=kitchen&text=%3Cscript%3Ealert(1)%3C%2Fscript%3E+%26+hi",
        &[("Origin", &origin)],
    )
    .await;
    assert_eq!(reply.status, 303, "{reply:?}");
    assert_eq!(reply.header("location"), Some("/?room=kitchen"));
    let html = r#"<turbo-stream action="append" target="messages"><template><p class="message" id="message_1">&lt;script&gt;alert(1)&lt;/script&gt; &amp; hi</p></template></turbo-stream>"#;
    let frame = data_frame(&id, &Value::String(html.to_owned()));
    alice.expect_frame(&frame).await;
    bob.expect_frame(&frame).await;

    // The room's page now shows it too, as text; another room's does not.
    let page = http_request(server.addr, "GET", "/?room=kitchen", &[], None).await;
    assert!(
        page.body_text()
            .contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; hi")
    );
    assert!(!page.body_text().contains("<script>alert"));
    let lobby = http_request(server.addr, "GET", "/", &[], None).await;
    assert!(!lobby.body_text().contains("alert(1)"));
    alice.expect_silence(SILENCE).await;
    server.shutdown().await;
}

#[tokio::test]
async fn turbo_gets_a_turbo_stream_that_resets_the_form() {
    let server = serve().await;
    let origin = server.origin();
    let reply = post_form(
        server.addr,
        "room=lobby&text=hello",
        &[
            ("Origin", &origin),
            (
                "Accept",
                "text/vnd.turbo-stream.html, text/html, application/xhtml+xml",
            ),
        ],
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(
        reply.header("content-type"),
        Some("text/vnd.turbo-stream.html; charset=utf-8")
    );
    let body = reply.body_text();
    assert!(
        body.starts_with(r#"<turbo-stream action="replace" target="new_message"><template><form id="new_message""#),
        "{body}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn cross_site_and_invalid_posts_are_refused_and_broadcast_nothing() {
    let server = serve().await;
    let page = http_request(server.addr, "GET", "/", &[], None).await;
    let id = identifier(&signed_name(page.body_text()));
    let mut watcher = server.client().await;
    watcher.confirm(&id).await;

    let cross = post_form(
        server.addr,
        "room=lobby&text=spam",
        &[("Origin", "http://evil.example")],
    )
    .await;
    assert_eq!(cross.status, 403, "{cross:?}");
    let fetched = post_form(
        server.addr,
        "room=lobby&text=spam",
        &[("Sec-Fetch-Site", "cross-site")],
    )
    .await;
    assert_eq!(fetched.status, 403, "{fetched:?}");
    for body in [
        "room=lobby&text=",
        "room=lobby&text=+++",
        "room=No+Such&text=hi",
        "room=lobby",
        &format!("room=lobby&text={}", "x".repeat(501)),
    ] {
        let reply = post_form(server.addr, body, &[]).await;
        assert!(
            reply.status == 400 || reply.status == 422,
            "{body}: {reply:?}"
        );
    }
    let bad_room = http_request(server.addr, "GET", "/?room=%3Cx%3E", &[], None).await;
    assert_eq!(bad_room.status, 400, "{bad_room:?}");
    watcher.expect_silence(SILENCE).await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_tampered_page_is_rejected() {
    let server = serve().await;
    let page = http_request(server.addr, "GET", "/?room=lobby", &[], None).await;
    let signed = signed_name(page.body_text());
    // The name of another room, under the lobby's signature.
    let (_, digest) = signed.rsplit_once("--").unwrap();
    let forged = format!("{}--{digest}", "InJvb21zOnNlY3JldCI=");
    let mut client = CableClient::welcomed(server.addr, Connect::new().path("/cable")).await;
    let id = identifier(&forged);
    client.send_subscribe(&id).await;
    client.expect_reject(&id).await;
    server.shutdown().await;
}
