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
    server.assert_sigterm_stops_gracefully(client).await;
}
