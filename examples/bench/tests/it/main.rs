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
    server.assert_sigterm_stops_gracefully(client).await;
}
