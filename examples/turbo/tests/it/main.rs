//! The `example-turbo` app: the `example-turbo` binary run as a process (SIGTERM, connections
//! that send no request), and the page, the form and the cable served in-process (`page`).

mod page;

use cable_test_support::{Connect, ServerProcess, eventually};

const SECRET: (&str, &str) = ("SECRET_KEY_BASE", "example-turbo tests: a secret_key_base");

/// SIGTERM tells a connected client `server_restart` and the process exits cleanly.
#[tokio::test]
async fn sigterm_sends_server_restart_and_exits() {
    let server = ServerProcess::start(env!("CARGO_BIN_EXE_example-turbo"), &[SECRET]);
    let client = server.client(Connect::new().path("/cable")).await;
    server
        .assert_sigterm_turns_unready_and_stops_gracefully(client)
        .await;
}

/// The binary serves with `actioncable::serve`: a connection that sends nothing, and one that
/// sends half an upgrade request, are closed by the server after the default header-read
/// timeout instead of holding a descriptor for as long as their client likes.
#[tokio::test]
async fn connections_that_send_no_whole_request_are_closed_by_the_server() {
    let server = ServerProcess::start(env!("CARGO_BIN_EXE_example-turbo"), &[SECRET]);
    server
        .assert_closes_connections_that_send_no_request()
        .await;
}

/// Without `SECRET_KEY_BASE` (blank counts as unset) the binary still starts, and says it uses
/// a development secret.
#[tokio::test]
async fn a_missing_secret_is_a_warning_not_a_silence() {
    let server = ServerProcess::start(
        env!("CARGO_BIN_EXE_example-turbo"),
        &[("SECRET_KEY_BASE", "")],
    );
    // The warning goes to stderr, the address to stdout: either may be read first.
    eventually("the warning about the development secret", || {
        server.output().contains("SECRET_KEY_BASE is not set")
    })
    .await;
}
