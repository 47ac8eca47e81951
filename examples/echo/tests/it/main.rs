//! The `example-echo` binary, run as a process.

use cable_test_support::{Connect, ServerProcess};

const ECHO: &str = r#"{"channel":"EchoChannel"}"#;

/// SIGTERM (what a process manager sends) tells a subscribed client `server_restart` and the
/// process exits cleanly, instead of dying with the client seeing an abnormal close.
#[tokio::test]
async fn sigterm_sends_server_restart_and_exits() {
    let server = ServerProcess::start(env!("CARGO_BIN_EXE_example-echo"), &[]);
    let mut client = server.client(Connect::new()).await;
    client.confirm(ECHO).await;
    server
        .assert_sigterm_turns_unready_and_stops_gracefully(client)
        .await;
}

/// The binary serves with `actioncable::serve`: a connection that sends nothing, and one that
/// sends half an upgrade request, are closed by the server after the default header-read
/// timeout instead of holding a descriptor for as long as their client likes.
#[tokio::test]
async fn connections_that_send_no_whole_request_are_closed_by_the_server() {
    let server = ServerProcess::start(env!("CARGO_BIN_EXE_example-echo"), &[]);
    server
        .assert_closes_connections_that_send_no_request()
        .await;
}
