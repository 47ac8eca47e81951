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

/// `cable-bench echo`, whose clients are `actioncable-client` consumers, against `cable-ref`:
/// every client subscribes, round trips are counted, and none times out, is cut off or loses
/// its connection.
#[test]
fn echo_mode_round_trips_through_its_consumers() {
    let server = ServerProcess::start(env!("CARGO_BIN_EXE_cable-ref"), &[]);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_cable-bench"))
        .args([
            "--threads",
            "1",
            "echo",
            "--clients",
            "4",
            "--duration-secs",
            "1",
        ])
        .args(["--timeout-secs", "20", "--url"])
        .arg(format!("ws://{}/cable", server.addr()))
        .output()
        .expect("run cable-bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "cable-bench echo failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    let summary: serde_json::Value = stdout
        .lines()
        .last()
        .and_then(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| panic!("no JSON summary line:\n{stdout}"));
    assert_eq!(summary["mode"], "echo", "{summary}");
    assert_eq!(summary["clients"], 4, "{summary}");
    assert!(summary["round_trips"].as_u64() > Some(0), "{summary}");
    for zero in [
        "timeouts",
        "send_errors",
        "connections_lost",
        "cut_off",
        "late",
    ] {
        assert_eq!(summary[zero], 0, "{zero}: {summary}");
    }
}
