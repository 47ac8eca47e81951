//! The `example-echo` binary and its `echo-client`, run as processes.

use cable_test_support::{
    Connect, POLL, SHUTDOWN_WAIT, ServerProcess, WAIT, WHOLE_TEST, eventually, within,
};
use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tokio::time::Instant;

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

/// `echo-client`, run as a process: its stdin written by the test, its stdout and stderr read
/// line by line; killed when dropped.
struct EchoClient {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: mpsc::UnboundedReceiver<String>,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl EchoClient {
    fn start(server: &ServerProcess) -> EchoClient {
        let url = format!("ws://{}/cable", server.addr());
        let mut child = Command::new(env!("CARGO_BIN_EXE_echo-client"))
            .arg(&url)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start echo-client");
        let (tx, stdout) = mpsc::unbounded_channel();
        let out = child.stdout.take().expect("echo-client's stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (err, kept) = (
            child.stderr.take().expect("echo-client's stderr"),
            stderr.clone(),
        );
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { return };
                kept.lock().unwrap().push(line);
            }
        });
        EchoClient {
            stdin: child.stdin.take(),
            child,
            stdout,
            stderr,
        }
    }

    fn write_lines(&mut self, lines: &[String]) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        for line in lines {
            writeln!(stdin, "{line}").expect("write to echo-client");
        }
        stdin.flush().expect("flush echo-client's stdin");
    }

    /// The next line of stdout, within [`WAIT`].
    async fn reply(&mut self) -> String {
        let line = within("echo-client's next reply", self.stdout.recv()).await;
        line.unwrap_or_else(|| panic!("echo-client's stdout ended; stderr:\n{}", self.errors()))
    }

    fn errors(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// Closes stdin, waits (bounded by `limit`) for the process to exit with success, and
    /// returns the rest of its stdout, and its stderr.
    async fn finish(mut self, limit: std::time::Duration) -> (Vec<String>, String) {
        drop(self.stdin.take());
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for echo-client") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "echo-client did not exit within {limit:?} of the end of its input; stderr:\n{}",
                self.errors()
            );
            tokio::time::sleep(POLL).await;
        };
        assert!(
            status.success(),
            "echo-client exited with {status}; stderr:\n{}",
            self.errors()
        );
        let mut rest = Vec::new();
        while let Some(line) = self.stdout.recv().await {
            rest.push(line);
        }
        (rest, self.errors())
    }
}

impl Drop for EchoClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Lines that are easy to get wrong: empty, quoted, escaped, not ASCII; and more of them than
/// the client keeps in flight.
fn input(tag: &str, n: usize) -> Vec<String> {
    let mut lines = vec![
        String::new(),
        r#"a "quoted" \ back\slash"#.to_owned(),
        "héllo wörld ✓".to_owned(),
        "  leading and trailing spaces  ".to_owned(),
    ];
    lines.extend((0..n).map(|i| format!("{tag} line {i}")));
    lines
}

/// Every line of stdin comes back on stdout, in order, and the client exits when stdin ends
/// and the last reply is in.
#[tokio::test]
async fn echo_client_prints_each_reply_in_order_and_exits_at_the_end_of_input() {
    let server = ServerProcess::start(env!("CARGO_BIN_EXE_example-echo"), &[]);
    let mut client = EchoClient::start(&server);
    let lines = input("only", 200);
    client.write_lines(&lines);
    let (replies, errors) = client.finish(WAIT).await;
    assert_eq!(replies, lines);
    assert_eq!(errors, "", "nothing to say on stderr");
}

/// The server restarts (SIGTERM, then a new process on the same port) in the middle of the
/// input: the client says on stderr that it was disconnected and reconnects, comes back on the
/// stock consumer's schedule, and answers the lines written while the server was down, in
/// order, after the ones answered before.
#[tokio::test]
async fn echo_client_reconnects_after_a_server_restart_and_answers_the_rest() {
    let mut server = ServerProcess::start(env!("CARGO_BIN_EXE_example-echo"), &[]);
    let port = server.addr().port().to_string();
    let mut client = EchoClient::start(&server);
    let before = input("before", 3);
    client.write_lines(&before);
    for line in &before {
        assert_eq!(&client.reply().await, line);
    }

    server.terminate();
    let status = server.exit_status(SHUTDOWN_WAIT).await;
    assert!(status.success(), "the server exited with {status}");
    eventually("echo-client to say it reconnects", || {
        client.errors().contains("reconnecting with backoff")
    })
    .await;
    let after = input("after", 100);
    client.write_lines(&after);
    let _again = ServerProcess::start(
        env!("CARGO_BIN_EXE_example-echo"),
        &[("PORT", port.as_str())],
    );

    // Reconnection comes 6–18 s after the disconnect.
    let (replies, errors) = client.finish(WHOLE_TEST).await;
    assert_eq!(replies, after);
    assert!(errors.contains("server_restart"), "{errors}");
    assert!(errors.ends_with("echo-client: reconnected"), "{errors}");
}
