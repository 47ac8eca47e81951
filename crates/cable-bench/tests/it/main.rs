//! The `cable-ref` binary, run as a process.

use cable_test_support::{Connect, ServerProcess};

const BENCHMARK: &str = r#"{"channel":"BenchmarkChannel"}"#;

/// The raw reference server stops like the framework's: SIGTERM tells a subscribed client
/// `server_restart`, closes it, and the process exits cleanly.
#[tokio::test]
async fn cable_ref_sigterm_sends_server_restart_and_exits() {
    let server = ServerProcess::start(env!("CARGO_BIN_EXE_cable-ref"), &[]);
    let mut client = server.client(Connect::new().no_origin()).await;
    client.confirm(BENCHMARK).await;
    server.assert_sigterm_stops_gracefully(client).await;
}
