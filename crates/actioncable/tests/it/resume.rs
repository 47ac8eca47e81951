//! Session resume over real sockets (AnyCable's resumable sessions, node-local): an
//! extended-protocol session that loses its socket is kept for `session_ttl`; a reconnect with
//! the `sid` of its welcome gets it back — identity, subscriptions — without `connect` or
//! `subscribed` running again, and `history` replays what was broadcast meanwhile. Unclaimed,
//! it ends with its callbacks, once; a server `disconnect` ends it for good.

use crate::support::*;
use actioncable::protocol::EXT_PROTOCOL;
use actioncable::{ConnectRequest, Connection, Identity, Reject, async_trait};
use serde_json::{Value, json};
use std::time::Duration;

/// [`TestConnection`] that also records `connect:<user>`, to count authentications.
struct Counting(TestConnection);

#[async_trait]
impl Connection for Counting {
    async fn connect(&self, req: &ConnectRequest) -> Result<Identity, Reject> {
        let identity = self.0.connect(req).await?;
        self.0.rec.record(format!("connect:{identity}"));
        Ok(identity)
    }

    async fn disconnect(&self, identity: &Identity) {
        self.0.disconnect(identity).await;
    }
}

fn resume_builder(rec: &Recorder) -> actioncable::CableBuilder<TestState> {
    builder(rec)
        .connection(Counting(TestConnection { rec: rec.clone() }))
        .history(true)
}

fn ext(path: &str) -> Connect {
    Connect::new().path(path).protocols(EXT_PROTOCOL)
}

async fn ext_user(server: &CableServer, user: &str) -> CableClient {
    let c = CableClient::welcomed(server.addr, ext(&format!("/cable?user={user}"))).await;
    assert_eq!(c.protocol.as_deref(), Some(EXT_PROTOCOL));
    c
}

async fn speak(server: &CableServer, n: u64) {
    server
        .handle
        .broadcast("chat:lobby", &json!({ "n": n }))
        .await
        .unwrap();
}

/// The next frame's `n`, epoch and offset (a positioned delivery to the lobby).
async fn next_position(c: &mut CableClient) -> (u64, String, u64) {
    let frame = c.recv_json().await;
    assert_eq!(frame["identifier"], LOBBY, "{frame}");
    (
        frame["message"]["n"].as_u64().expect("n"),
        frame["epoch"].as_str().expect("epoch").to_owned(),
        frame["offset"].as_u64().expect("offset"),
    )
}

/// Drops the socket without a close frame, as a lost network does.
async fn cut(c: CableClient) {
    drop(c);
    // Let the server see the end of the socket.
    tokio::time::sleep(Duration::from_millis(100)).await;
}

fn restored(c: &CableClient) -> (bool, Vec<String>) {
    let welcome = c.welcome.as_ref().expect("an ext welcome");
    let ids = welcome["restored_ids"]
        .as_array()
        .map(|ids| ids.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default();
    (welcome["restored"] == Value::Bool(true), ids)
}

fn confirm_history(identifier: &str) -> String {
    format!(
        r#"{{"identifier":{},"type":"confirm_history"}}"#,
        serde_json::to_string(identifier).unwrap()
    )
}

#[tokio::test]
async fn a_cut_session_resumes_its_identity_and_subscriptions_and_replays_the_gap() {
    let rec = Recorder::new();
    let server = spawn_cable(resume_builder(&rec)).await;
    let mut first = ext_user(&server, "alice").await;
    let sid = first.sid.clone().expect("a sid");
    assert_eq!(restored(&first), (false, vec![]), "a fresh session");
    first.confirm(LOBBY).await;
    speak(&server, 1).await;
    let (_, epoch, offset) = next_position(&mut first).await;
    cut(first).await;
    for n in 2..=4 {
        speak(&server, n).await;
    }
    let mut again = CableClient::welcomed(server.addr, ext(&format!("/cable?sid={sid}"))).await;
    assert_eq!(restored(&again), (true, vec![LOBBY.to_owned()]));
    assert_ne!(
        again.sid.as_deref(),
        Some(sid.as_str()),
        "a new sid per socket, as AnyCable"
    );
    again
        .send_json(&json!({ "command": "history", "identifier": LOBBY,
            "history": { "streams": { "chat:lobby": { "epoch": epoch, "offset": offset } } } }))
        .await;
    for n in 2..=4 {
        assert_eq!(next_position(&mut again).await.0, n);
    }
    again.expect_frame(&confirm_history(LOBBY)).await;
    speak(&server, 5).await;
    assert_eq!(next_position(&mut again).await.0, 5, "live again");
    // The identity came back with the session; nothing ran again, nothing ended.
    again.perform(LOBBY, "whoami", json!({})).await;
    assert_eq!(again.recv_message(LOBBY).await, json!({ "user": "alice" }));
    assert_eq!(
        rec.count("connect:current_user=alice"),
        1,
        "{:?}",
        rec.events()
    );
    assert_eq!(rec.count(&format!("subscribed:{LOBBY}")), 1);
    assert_eq!(rec.count(&format!("unsubscribed:{LOBBY}")), 0);
    assert_eq!(rec.count("disconnect:current_user=alice"), 0);
    // Its end is the session's one end: callbacks once.
    again.close().await;
    drop(server);
}

#[tokio::test]
async fn a_sid_resumes_once_by_header_and_an_unknown_one_gets_a_fresh_session() {
    let rec = Recorder::new();
    let server = spawn_cable(resume_builder(&rec)).await;
    let mut first = ext_user(&server, "bob").await;
    let sid = first.sid.clone().unwrap();
    first.confirm(LOBBY).await;
    cut(first).await;
    let header = |sid: &str| ext("/cable?user=mallory").header("X-ANYCABLE-RESTORE-SID", sid);
    let resumed = CableClient::welcomed(server.addr, header(&sid)).await;
    assert!(restored(&resumed).0);
    assert_eq!(
        rec.count("connect:current_user=mallory"),
        0,
        "no authentication on resume"
    );
    // The same sid again: spent. A fresh session, authenticated as its request says.
    let twice = CableClient::welcomed(server.addr, header(&sid)).await;
    assert_eq!(restored(&twice), (false, vec![]));
    assert_eq!(rec.count("connect:current_user=mallory"), 1);
    let unknown =
        CableClient::welcomed(server.addr, header("00000000000000000000000000000000")).await;
    assert!(!restored(&unknown).0);
    assert_eq!(rec.count("connect:current_user=mallory"), 2);
    // A plain-protocol client cannot resume: its welcome stays Rails' bytes.
    let plain = CableClient::welcomed(
        server.addr,
        Connect::new().path(&format!("/cable?user=eve&sid={sid}")),
    )
    .await;
    assert_eq!(plain.sid, None);
    drop((resumed, twice, unknown, plain));
}

#[tokio::test]
async fn an_unclaimed_session_runs_its_callbacks_once_when_its_time_is_up() {
    let rec = Recorder::new();
    let server = spawn_cable(resume_builder(&rec).session_ttl(Duration::from_millis(300))).await;
    let mut first = ext_user(&server, "carol").await;
    let sid = first.sid.clone().unwrap();
    first.confirm(LOBBY).await;
    cut(first).await;
    assert_eq!(
        rec.count("disconnect:current_user=carol"),
        0,
        "kept, not ended"
    );
    rec.wait_for("disconnect:current_user=carol").await;
    assert_eq!(rec.count(&format!("unsubscribed:{LOBBY}")), 1);
    assert!(
        rec.events()
            .iter()
            .position(|e| *e == format!("unsubscribed:{LOBBY}"))
            < rec
                .events()
                .iter()
                .position(|e| e == "disconnect:current_user=carol"),
        "unsubscribed before disconnect, as on any close: {:?}",
        rec.events()
    );
    let late =
        CableClient::welcomed(server.addr, ext(&format!("/cable?user=carol&sid={sid}"))).await;
    assert!(!restored(&late).0, "expired: a fresh session");
    assert_eq!(rec.count("connect:current_user=carol"), 2);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(rec.count("disconnect:current_user=carol"), 1, "once");
    drop(late);
}

#[tokio::test]
async fn a_server_disconnect_ends_a_session_for_good_live_or_kept() {
    let rec = Recorder::new();
    let server = spawn_cable(resume_builder(&rec)).await;
    // Live: the server's `disconnect` is final, callbacks at once.
    let mut live = ext_user(&server, "dave").await;
    let sid = live.sid.clone().unwrap();
    live.confirm(LOBBY).await;
    server
        .handle
        .remote_disconnect(&Identity::new("current_user", "dave"), true)
        .await
        .unwrap();
    live.expect_disconnect("remote", true).await;
    rec.wait_for("disconnect:current_user=dave").await;
    let after = CableClient::welcomed(server.addr, ext(&format!("/cable?sid={sid}"))).await;
    assert!(!restored(&after).0);
    drop(after);
    // Kept: a revoked user cannot come back through its sid either.
    let mut kept = ext_user(&server, "erin").await;
    let sid = kept.sid.clone().unwrap();
    kept.confirm(LOBBY).await;
    cut(kept).await;
    server
        .handle
        .remote_disconnect(&Identity::new("current_user", "erin"), false)
        .await
        .unwrap();
    rec.wait_for("disconnect:current_user=erin").await;
    let back = CableClient::welcomed(server.addr, ext(&format!("/cable?sid={sid}"))).await;
    assert!(
        !restored(&back).0,
        "a remote disconnect ends a kept session"
    );
    assert_eq!(rec.count("disconnect:current_user=erin"), 1);
    drop(back);
}

#[tokio::test]
async fn kept_sessions_are_bounded_and_resuming_can_be_turned_off() {
    let rec = Recorder::new();
    let server = spawn_cable(resume_builder(&rec).max_parked_sessions(1)).await;
    let one = ext_user(&server, "one").await;
    let two = ext_user(&server, "two").await;
    let (sid_one, sid_two) = (one.sid.clone().unwrap(), two.sid.clone().unwrap());
    cut(one).await;
    cut(two).await;
    // The second found no room: closed at once, as without resuming.
    rec.wait_for("disconnect:current_user=two").await;
    assert_eq!(rec.count("disconnect:current_user=one"), 0);
    let back = CableClient::welcomed(server.addr, ext(&format!("/cable?sid={sid_one}"))).await;
    assert!(restored(&back).0);
    let no = CableClient::welcomed(server.addr, ext(&format!("/cable?sid={sid_two}"))).await;
    assert!(!restored(&no).0);
    drop((back, no));

    let rec = Recorder::new();
    let off = spawn_cable(resume_builder(&rec).session_ttl(Duration::ZERO)).await;
    let c = ext_user(&off, "frank").await;
    let sid = c.sid.clone().unwrap();
    cut(c).await;
    rec.wait_for("disconnect:current_user=frank").await;
    let again = CableClient::welcomed(off.addr, ext(&format!("/cable?sid={sid}"))).await;
    assert!(!restored(&again).0);
}

#[tokio::test]
async fn shutdown_ends_kept_sessions_with_their_callbacks() {
    let rec = Recorder::new();
    let server = spawn_cable(resume_builder(&rec)).await;
    let mut c = ext_user(&server, "gina").await;
    c.confirm(LOBBY).await;
    cut(c).await;
    assert_eq!(rec.count("disconnect:current_user=gina"), 0);
    assert!(server.handle.shutdown(Duration::from_secs(5)).await);
    assert_eq!(rec.count(&format!("unsubscribed:{LOBBY}")), 1);
    assert_eq!(rec.count("disconnect:current_user=gina"), 1);
}

#[tokio::test]
async fn a_sid_is_never_logged_in_full() {
    // Everything at TRACE but the test's own client, which logs the request it sends.
    let logs = LogCapture::new("trace,tungstenite::handshake::client=off");
    let _logs = logs.enter();
    let rec = Recorder::new();
    let server = spawn_cable(resume_builder(&rec)).await;
    let mut first = ext_user(&server, "hana").await;
    let sid = first.sid.clone().unwrap();
    first.confirm(LOBBY).await;
    cut(first).await;
    let header = ext("/cable").header("X-ANYCABLE-RESTORE-SID", &sid);
    let back = CableClient::welcomed(server.addr, header).await;
    assert!(restored(&back).0);
    let spent = CableClient::welcomed(server.addr, ext(&format!("/cable?sid={sid}"))).await;
    assert!(!restored(&spent).0);
    drop((back, spent));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(logs.count("session resumed") >= 1, "the capture works");
    assert_eq!(logs.count(&sid), 0, "the sid appeared in the logs");
    assert!(logs.count(&sid[..6]) >= 1, "its first digits name it");
}
