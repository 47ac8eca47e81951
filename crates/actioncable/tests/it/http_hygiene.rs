//! `actioncable::serve`'s limits on connections that have not upgraded, over real sockets:
//! connections that send nothing or half a request head are closed after the header-read
//! timeout while the server goes on answering; keep-alive connections left idle too; a stalled
//! request body and an unread response after the idle timeout; beyond the limit on pending
//! connections new ones wait (upgraded cables do not count); and a server at a low descriptor
//! limit, flooded far beyond it, recovers by itself.
//!
//! The timeouts are short here (1 s) so the tests are quick; the defaults are in
//! `actioncable::Serve`.

use crate::support::*;
use actioncable::{CableHandle, Serve};
use axum::Router;
use axum::routing::{get, post};
use serde_json::json;
use std::future::IntoFuture as _;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// The header-read timeout of these tests.
const HEADER_TIMEOUT: Duration = Duration::from_secs(1);
/// The low-descriptor child's header-read timeout: long enough that a flood opened on busy
/// cores still holds every descriptor at once (with 1 s, a server accepting slowly timed the
/// first connections out before the last arrived, and the flood never exhausted it).
const FLOOD_HEADER_TIMEOUT: Duration = Duration::from_secs(4);

/// The idle timeout of these tests.
const IDLE_TIMEOUT: Duration = Duration::from_secs(1);

/// How much later than its timeout a connection may be closed: timers fire on time, but a
/// loaded two-core machine running the other tests may take a while to get to thousands of
/// them.
const CLOSE_SLACK: Duration = Duration::from_secs(3);

/// Size of `/big`'s body: more than loopback's socket buffers hold, so a client that does not
/// read it blocks the server's writes.
const BIG: usize = 32 << 20;

/// The app of these tests: `/health`, `/echo` (a POST that reads its whole body and returns
/// it), `/big` (a 32 MiB response) and the test cable at `/cable`.
fn app(rec: &Recorder) -> (Router, CableHandle) {
    let cable = builder(rec).build().expect("the test cable builds");
    let handle = cable.handle();
    let router = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/echo", post(|body: String| async move { body }))
        .route("/big", get(|| async { vec![b'x'; BIG] }))
        .merge(cable.router("/cable"));
    (router, handle)
}

/// [`app`] served by `actioncable::serve` with `settings`; its shutdown shuts the cable down
/// first, as an app does.
async fn serve_app(settings: impl FnOnce(Serve) -> Serve) -> (TestServer<CableHandle>, Recorder) {
    let rec = Recorder::new();
    let (router, handle) = app(&rec);
    let cable = handle.clone();
    let server = TestServer::start(handle, |listener, stop| {
        settings(actioncable::serve(listener, router))
            .with_graceful_shutdown(async move {
                stop.await;
                cable.shutdown(WAIT).await;
            })
            .into_future()
    })
    .await;
    (server, rec)
}

/// Asserts every lifetime lies between `timeout` and `timeout` plus `slack`, and prints the
/// shortest and the longest. Lifetimes are measured by the client, from the moment its
/// `connect` returned; the server may have accepted the connection (and started its timer) a
/// little earlier, hence a lower bound of 90 % of the timeout.
fn assert_closed_after(what: &str, lifetimes: &[Duration], timeout: Duration, slack: Duration) {
    let (first, last) = (lifetimes[0], lifetimes[lifetimes.len() - 1]);
    assert!(
        first >= timeout.mul_f64(0.9),
        "{what}: one was closed after {first:?}, before the {timeout:?} timeout"
    );
    assert!(
        last <= timeout + slack,
        "{what}: one was closed only after {last:?} (timeout {timeout:?})"
    );
    println!(
        "{}: {what} closed after {first:?} .. {last:?} (timeout {timeout:?})",
        lifetimes.len()
    );
}

#[tokio::test]
async fn silent_and_half_sent_connections_are_closed_after_the_header_timeout_while_the_server_answers()
 {
    // A limit above the flood: this test is about the timeout (the limit has its own test).
    let (server, _rec) = serve_app(|serve| {
        serve
            .header_read_timeout(HEADER_TIMEOUT)
            .max_pending_connections(4096)
    })
    .await;
    let addr = server.addr;
    let probe = HttpProbe::start(addr, "/health", Duration::from_millis(50), WAIT);

    let silent = HeldConnections::open(addr, 1000, b"", WAIT).await;
    let half_sent = HeldConnections::open(addr, 1000, &half_sent_upgrade(addr), WAIT).await;
    // Meanwhile a new cable connects, subscribes and gets its echo.
    let mut client = server.client().await;
    client.confirm(ECHO).await;
    client
        .perform(ECHO, "echo", json!({ "payload": "during the flood" }))
        .await;
    client
        .expect_data(ECHO, &json!({ "echo": "during the flood" }))
        .await;

    let silent = silent.closed_within(HEADER_TIMEOUT + WAIT).await;
    let half_sent = half_sent.closed_within(HEADER_TIMEOUT + WAIT).await;
    let report = probe.finish().await;
    assert_closed_after("silent connections", &silent, HEADER_TIMEOUT, CLOSE_SLACK);
    assert_closed_after(
        "half-sent upgrades",
        &half_sent,
        HEADER_TIMEOUT,
        CLOSE_SLACK,
    );
    assert!(
        report.failures.is_empty(),
        "/health failed during the flood: {report:?}"
    );
    assert!(
        report.answered >= 5,
        "/health was asked too rarely: {report:?}"
    );
    println!(
        "/health during the flood: {} answers, slowest {:?}",
        report.answered, report.slowest
    );

    // The cable connected during the flood is untouched by the timeout.
    client
        .perform(ECHO, "echo", json!({ "payload": "after" }))
        .await;
    client.expect_data(ECHO, &json!({ "echo": "after" })).await;
    server.shutdown().await;
}

/// Reads one response to a `GET /health` (body `ok`, `Content-Length: 2`) from a keep-alive
/// connection.
async fn read_health_reply(tcp: &mut TcpStream) {
    let mut reply = Vec::new();
    while !reply.ends_with(b"\r\n\r\nok") {
        let mut buf = [0u8; 1024];
        let n = within("the /health reply", tcp.read(&mut buf))
            .await
            .expect("read the reply");
        assert!(n > 0, "closed before the reply: {reply:?}");
        reply.extend_from_slice(&buf[..n]);
    }
    assert!(reply.starts_with(b"HTTP/1.1 200"), "{reply:?}");
}

/// Waits (bounded) for the server to close `tcp`; returns when it did, reading and dropping
/// whatever it sends first.
async fn closed_by_server(tcp: &mut TcpStream, limit: Duration) -> Instant {
    within_for(limit, "the server to close the connection", async {
        let mut buf = [0u8; 64 * 1024];
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return Instant::now(),
                Ok(_) => {}
            }
        }
    })
    .await
}

#[tokio::test]
async fn a_keep_alive_connection_left_idle_is_closed_after_the_header_timeout() {
    let (server, _rec) = serve_app(|serve| serve.header_read_timeout(HEADER_TIMEOUT)).await;
    let mut tcp = TcpStream::connect(server.addr).await.expect("connect");
    let request = format!("GET /health HTTP/1.1\r\nHost: {}\r\n\r\n", server.addr);
    // Requests in good time are served, however many.
    for _ in 0..3 {
        tcp.write_all(request.as_bytes()).await.expect("send");
        read_health_reply(&mut tcp).await;
        tokio::time::sleep(HEADER_TIMEOUT / 2).await;
    }
    tcp.write_all(request.as_bytes()).await.expect("send");
    read_health_reply(&mut tcp).await;
    let answered = Instant::now();
    let closed = closed_by_server(&mut tcp, HEADER_TIMEOUT + WAIT).await;
    let idle = closed - answered;
    assert!(
        idle >= HEADER_TIMEOUT.mul_f64(0.9) && idle <= HEADER_TIMEOUT + CLOSE_SLACK,
        "an idle keep-alive connection was closed {idle:?} after its last response"
    );
    println!("an idle keep-alive connection was closed {idle:?} after its last response");
    server.shutdown().await;
}

#[tokio::test]
async fn a_stalled_body_and_an_unread_response_are_closed_after_the_idle_timeout() {
    // A long header-read timeout, so only the idle timeout can close these.
    let (server, _rec) = serve_app(|serve| {
        serve
            .header_read_timeout(Duration::from_secs(60))
            .idle_timeout(IDLE_TIMEOUT)
    })
    .await;
    let addr = server.addr;
    let most = IDLE_TIMEOUT + IDLE_TIMEOUT / 4 + CLOSE_SLACK;

    // 10 bytes of a 100-byte body, then nothing.
    let mut stalled = TcpStream::connect(addr).await.expect("connect");
    stalled
        .write_all(
            format!("POST /echo HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 100\r\n\r\n0123456789")
                .as_bytes(),
        )
        .await
        .expect("send");
    let sent = Instant::now();
    let lived = closed_by_server(&mut stalled, most + WAIT).await - sent;
    assert!(
        lived >= IDLE_TIMEOUT.mul_f64(0.9) && lived <= most,
        "a stalled body was closed after {lived:?}"
    );
    println!("a stalled body was closed {lived:?} after its last byte");

    // A 32 MiB response that the client does not read: the server's writes block.
    let mut unread = TcpStream::connect(addr).await.expect("connect");
    unread
        .write_all(format!("GET /big HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .expect("send");
    tokio::time::sleep(most).await;
    let mut received = Vec::new();
    within(
        "what the kernel buffered before the close",
        unread.read_to_end(&mut received),
    )
    .await
    .expect("read");
    assert!(
        received.len() < BIG,
        "a client that did not read got the whole response ({} bytes): it was not closed",
        received.len()
    );
    println!(
        "a client that did not read a {BIG}-byte response got {} bytes, then the close",
        received.len()
    );

    server.shutdown().await;
}

#[tokio::test]
async fn a_slow_but_steady_body_is_not_idle() {
    let (server, _rec) = serve_app(|serve| serve.idle_timeout(IDLE_TIMEOUT)).await;
    let mut tcp = TcpStream::connect(server.addr).await.expect("connect");
    let body = "one byte at a time!!";
    tcp.write_all(
        format!(
            "POST /echo HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
            server.addr,
            body.len()
        )
        .as_bytes(),
    )
    .await
    .expect("send the head");
    // 20 bytes, one every 250 ms: 5 s in all, five times the idle timeout.
    for byte in body.as_bytes() {
        tokio::time::sleep(IDLE_TIMEOUT / 4).await;
        tcp.write_all(&[*byte]).await.expect("send a byte");
    }
    let mut reply = String::new();
    within("the echo", tcp.read_to_string(&mut reply))
        .await
        .expect("read the reply");
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.ends_with(body), "{reply}");
    server.shutdown().await;
}

#[tokio::test]
async fn beyond_max_pending_connections_new_connections_wait_and_cables_do_not_count() {
    let logs = LogCapture::new("actioncable=warn");
    let _guard = logs.enter();
    let (server, _rec) = serve_app(|serve| {
        serve
            .max_pending_connections(2)
            .header_read_timeout(Duration::from_secs(60))
    })
    .await;
    let addr = server.addr;

    // Upgraded cables leave the limit: five of them, one after the other.
    let mut cables = Vec::new();
    for n in 0..5 {
        let mut cable = server.user(&format!("user{n}")).await;
        cable.confirm(ECHO).await;
        cables.push(cable);
    }
    assert_eq!(
        http_request(addr, "GET", "/health", &[], None).await.status,
        200
    );
    assert!(!logs.text().contains("new ones wait"), "{}", logs.text());

    // Two connections that send nothing take both places; the next one waits, unaccepted.
    let mut silent = Vec::new();
    for _ in 0..2 {
        silent.push(TcpStream::connect(addr).await.expect("connect"));
    }
    let mut waiting = tokio::spawn(http_request(addr, "GET", "/health", &[], None));
    assert!(
        tokio::time::timeout(SILENCE * 2, &mut waiting)
            .await
            .is_err(),
        "a request was answered beyond max_pending_connections"
    );
    eventually("the warning about the limit", || {
        logs.text()
            .contains("too many HTTP connections have not upgraded")
    })
    .await;
    // The cables are not affected.
    cables[0]
        .perform(ECHO, "echo", json!({ "payload": "still here" }))
        .await;
    cables[0]
        .expect_data(ECHO, &json!({ "echo": "still here" }))
        .await;

    // One place frees up: the waiting request is accepted and answered.
    drop(silent.pop());
    let reply = within("the waiting request", waiting)
        .await
        .expect("the request task");
    assert_eq!(reply.status, 200, "{reply:?}");

    // A graceful shutdown while at the limit (the remaining silent connection and a new one)
    // does not wait for them.
    silent.push(TcpStream::connect(addr).await.expect("connect"));
    server.shutdown().await;
    drop(cables);
}

/// The child's side of the test below: the test app at a low descriptor limit, with every
/// default but a 4 s header-read timeout, logging warnings to stderr.
async fn serve_at_a_low_descriptor_limit() {
    tracing_subscriber::fmt()
        .with_env_filter("actioncable=warn")
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let rec = Recorder::new();
    let (router, _handle) = app(&rec);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    println!(
        "low-descriptor server listening on http://{}",
        listener.local_addr().expect("the bound address")
    );
    actioncable::serve(listener, router)
        .header_read_timeout(FLOOD_HEADER_TIMEOUT)
        .await
        .expect("serve");
}

#[tokio::test]
async fn at_a_low_descriptor_limit_a_flooded_server_recovers_by_itself() {
    // A flood four times the server's descriptors: about four waves of timeouts (16 s).
    const OPEN_FILES: u64 = 256;
    const EACH: usize = 500;
    let Some(server) = ServerProcess::this_test(
        module_path!(),
        "at_a_low_descriptor_limit_a_flooded_server_recovers_by_itself",
        OPEN_FILES,
    ) else {
        return serve_at_a_low_descriptor_limit().await;
    };
    let addr = server.addr();
    let recovery = WAIT * 3;
    assert_eq!(
        http_request(addr, "GET", "/health", &[], None).await.status,
        200
    );

    let flooded = Instant::now();
    let silent = HeldConnections::open(addr, EACH, b"", WAIT).await;
    let half_sent = HeldConnections::open(addr, EACH, &half_sent_upgrade(addr), WAIT).await;
    let probe = HttpProbe::start(addr, "/health", Duration::from_millis(100), recovery);
    // The attacker keeps every connection open: the server closes them all by itself, as
    // descriptors free up.
    let silent = silent.closed_within(recovery).await;
    let half_sent = half_sent.closed_within(recovery).await;
    let all_closed = flooded.elapsed();
    let report = probe.finish().await;
    let output = server.output();
    assert!(
        output.contains("cannot accept connections"),
        "the flood never exhausted the server's {OPEN_FILES} descriptors, so this proves \
         nothing; server output:\n{output}"
    );
    let first = report
        .first_answer
        .unwrap_or_else(|| panic!("/health never answered again: {report:?}\n{output}"));
    assert!(
        silent[0] >= FLOOD_HEADER_TIMEOUT.mul_f64(0.9)
            && half_sent[0] >= FLOOD_HEADER_TIMEOUT.mul_f64(0.9),
        "closed before the timeout: after {:?} (silent) and {:?} (half-sent); server output:\n{output}",
        silent[0],
        half_sent[0]
    );
    println!(
        "{} connections at a {OPEN_FILES}-descriptor limit: all closed by the server {all_closed:?} \
         after the flood began; /health first answered {first:?} after the probe began, {} \
         answers (slowest {:?}), {} failures meanwhile",
        2 * EACH,
        report.answered,
        report.slowest,
        report.failures.len()
    );
    if let Some(line) = output.lines().find(|l| l.contains("cannot accept")) {
        println!("the server logged: {line}");
    }

    // Recovered: a cable connects and echoes, /health answers at once.
    let mut client = server.client(Connect::new()).await;
    client.confirm(ECHO).await;
    client
        .perform(ECHO, "echo", json!({ "payload": "back" }))
        .await;
    client.expect_data(ECHO, &json!({ "echo": "back" })).await;
    let started = Instant::now();
    assert_eq!(
        http_request(addr, "GET", "/health", &[], None).await.status,
        200
    );
    assert!(
        started.elapsed() < HEADER_TIMEOUT,
        "{:?}",
        started.elapsed()
    );
}
