//! The `example-demo` binary, run as a process.

use crate::support::{LOBBY, join, login};
use cable_test_support::{Connect, ServerProcess};

/// SIGTERM (what systemd, Docker or Kubernetes send) tells a logged-in chatter
/// `server_restart` and the process exits cleanly once its cable is down.
#[tokio::test]
async fn sigterm_sends_server_restart_and_exits() {
    let server = ServerProcess::start(
        env!("CARGO_BIN_EXE_example-demo"),
        &[
            ("BIND", "127.0.0.1"),
            ("SECRET_KEY_BASE", "0123456789abcdef0123456789abcdef"),
            ("DEMO_DATABASE", ":memory:"),
            ("CABLE_ADAPTER", "memory"),
        ],
    );
    let (token, _cookie) = login(server.addr(), "alice").await;
    let mut client = server
        .client(Connect::new().path(&format!("/cable?token={token}")))
        .await;
    join(&mut client, LOBBY, "alice").await;
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
        env!("CARGO_BIN_EXE_example-demo"),
        &[
            ("BIND", "127.0.0.1"),
            ("SECRET_KEY_BASE", "0123456789abcdef0123456789abcdef"),
            ("DEMO_DATABASE", ":memory:"),
            ("CABLE_ADAPTER", "memory"),
        ],
    );
    server
        .assert_closes_connections_that_send_no_request()
        .await;
}
