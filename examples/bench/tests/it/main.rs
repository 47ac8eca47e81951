//! The `example-bench` binary, run as a process.

use cable_test_support::{Connect, ServerProcess};

const BENCHMARK: &str = r#"{"channel":"BenchmarkChannel"}"#;

/// SIGTERM tells a subscribed client `server_restart` and the process exits cleanly: a
/// benchmark run stops its server with SIGTERM.
#[tokio::test]
async fn sigterm_sends_server_restart_and_exits() {
    let server = ServerProcess::start(
        env!("CARGO_BIN_EXE_example-bench"),
        &[("CABLE_ADAPTER", "memory")],
    );
    let mut client = server.client(Connect::new().no_origin()).await;
    client.confirm(BENCHMARK).await;
    server
        .assert_sigterm_turns_unready_and_stops_gracefully(client)
        .await;
}

/// The binary serves with `actioncable::serve`: a connection that sends nothing, and one that
/// sends half an upgrade request, are closed by the server after the default header-read
/// timeout instead of holding a descriptor for as long as their client likes.
#[tokio::test]
async fn connections_that_send_no_whole_request_are_closed_by_the_server() {
    let server = ServerProcess::start(
        env!("CARGO_BIN_EXE_example-bench"),
        &[("CABLE_ADAPTER", "memory")],
    );
    server
        .assert_closes_connections_that_send_no_request()
        .await;
}

/// The shootout's two actions, as its clients (and `cable-bench`) send them, with the typed
/// channel and with `ACTIONS=any`: `echo` comes back to the sender alone; `broadcast` reaches
/// every subscriber and comes back to the sender as `broadcastResult`. The typed channel
/// passes the payload on byte for byte (spacing and key order as sent); the untyped one
/// re-serializes it, keys in the order sent.
#[tokio::test]
async fn echo_and_broadcast_with_typed_and_untyped_actions() {
    for actions in ["typed", "any"] {
        let server = ServerProcess::start(
            env!("CARGO_BIN_EXE_example-bench"),
            &[("CABLE_ADAPTER", "memory"), ("ACTIONS", actions)],
        );
        let mut sender = server.client(Connect::new().no_origin()).await;
        sender.confirm(BENCHMARK).await;
        let mut other = server.client(Connect::new().no_origin()).await;
        other.confirm(BENCHMARK).await;

        let payload = r#"{"sender": 7,"seq":1, "body":"h\u00e9"}"#;
        let compact = r#"{"sender":7,"seq":1,"body":"hé"}"#;
        let sent = if actions == "typed" { payload } else { compact };
        sender
            .send_message(
                BENCHMARK,
                &format!(r#"{{"action":"echo","payload":{payload}}}"#),
            )
            .await;
        assert_eq!(
            sender.recv_text().await,
            format!(
                r#"{{"identifier":{},"message":{{"action":"echo","payload":{sent}}}}}"#,
                serde_json::to_string(BENCHMARK).unwrap()
            ),
            "{actions}: the echo"
        );

        sender
            .send_message(
                BENCHMARK,
                &format!(r#"{{"action":"broadcast","payload":{payload}}}"#),
            )
            .await;
        let delivered = other.recv_message(BENCHMARK).await;
        assert_eq!(delivered["action"], "broadcast", "{actions}: {delivered}");
        assert_eq!(delivered["payload"]["body"], "hé", "{actions}: {delivered}");
        let mut replies = [
            sender.recv_message(BENCHMARK).await,
            sender.recv_message(BENCHMARK).await,
        ];
        replies.sort_by_key(|r| r["action"].as_str().map(str::to_owned));
        assert_eq!(
            replies[0]["action"], "broadcast",
            "{actions}: the sender streams `all` too"
        );
        assert_eq!(replies[1]["action"], "broadcastResult", "{actions}");
        assert_eq!(replies[1]["payload"]["seq"], 1, "{actions}");

        // An action the channel does not have: nothing comes back, and the connection stays.
        sender.send_message(BENCHMARK, r#"{"action":"nope"}"#).await;
        sender
            .send_message(BENCHMARK, r#"{"action":"echo","payload":2}"#)
            .await;
        assert_eq!(
            sender.recv_message(BENCHMARK).await["payload"],
            2,
            "{actions}"
        );
    }
}
