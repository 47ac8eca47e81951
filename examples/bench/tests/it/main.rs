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
