//! The `example-tour` binary, run as a process.

use cable_test_support::{Connect, ServerProcess};

/// SIGTERM tells an identified client `server_restart` and the process exits cleanly.
#[tokio::test]
async fn sigterm_sends_server_restart_and_exits() {
    let server = ServerProcess::start(env!("CARGO_BIN_EXE_example-tour"), &[]);
    let client = server
        .client(Connect::new().path("/cable?user=alice"))
        .await;
    server.assert_sigterm_stops_gracefully(client).await;
}
