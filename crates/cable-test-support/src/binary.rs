//! A server binary run as a real child process, for what only the process shows: how it
//! stops when a process manager sends it SIGTERM, and how it fares at a low descriptor limit.
//!
//! Every server binary of the workspace prints one line with the address it listens on
//! (`… listening on ws://127.0.0.1:41234/cable`, or `http://…`) and takes `PORT` from the
//! environment; [`ServerProcess::start`] passes `PORT=0` and reads that line, so tests never
//! race for a port. Its output is kept (the last lines) to explain a failure.
//!
//! A test can also be its own server: [`ServerProcess::this_test`] runs the calling test again
//! in a child process, with a lower limit on open files, where it serves instead of testing.

use crate::client::{CableClient, Connect};
use crate::flood::{HeldConnections, half_sent_upgrade};
use crate::frames::disconnect_frame;
use crate::http::http_request;
use crate::process::test_path;
use crate::timing::{SHUTDOWN_WAIT, WAIT, within};
use std::collections::VecDeque;
use std::io::{BufRead as _, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;
use tokio::time::Instant;

/// Output lines kept for failure messages.
const KEEP_LINES: usize = 40;

/// Set in the process [`ServerProcess::this_test`] starts: the test that serves there.
const SERVER_CHILD: &str = "CABLE_TEST_SERVER_CHILD";

/// A server binary running as a child process; killed when dropped.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    addr: SocketAddr,
    output: Arc<Mutex<VecDeque<String>>>,
}

impl ServerProcess {
    /// Starts `program` (a path, e.g. `env!("CARGO_BIN_EXE_example-echo")`) with `env` and
    /// `PORT=0`, and waits (bounded by [`WAIT`]) for the line that tells its address.
    ///
    /// # Panics
    /// When the program cannot start, exits early or prints no address in time.
    pub fn start(program: &str, env: &[(&str, &str)]) -> ServerProcess {
        let mut command = Command::new(program);
        command
            .env("PORT", "0")
            .env("RUST_LOG", "info")
            .envs(env.iter().copied());
        ServerProcess::spawn(command, program)
    }

    /// Runs the calling test (`module` is its `module_path!()`, `test` its function name) again
    /// in a child process whose limit on open files (`ulimit -n`) is `open_files`, so that the
    /// server there can run out of descriptors without starving this process.
    ///
    /// Returns `None` in the child: the test then serves, printing `… listening on
    /// http://<addr>`, until it is killed. Returns the child in the test's own process, once it
    /// has printed its address; dropping it kills the child.
    ///
    /// ```no_run
    /// # use cable_test_support::ServerProcess;
    /// # async fn serve_somehow() {}
    /// # async fn a_server_low_on_descriptors_recovers() {
    /// let Some(server) = ServerProcess::this_test(module_path!(), "a_server_low_on_descriptors_recovers", 256) else {
    ///     // The child: serve (and print the address) until killed.
    ///     return serve_somehow().await;
    /// };
    /// // The test, against `server.addr()`.
    /// # }
    /// ```
    pub fn this_test(module: &str, test: &str, open_files: u64) -> Option<ServerProcess> {
        let path = test_path(module, test);
        if std::env::var(SERVER_CHILD).is_ok_and(|v| v == path) {
            return None;
        }
        let exe = std::env::current_exe().expect("the test binary's path");
        let mut command = Command::new("sh");
        command
            .args(["-c", r#"ulimit -n "$0" && exec "$@""#])
            .arg(open_files.to_string())
            .arg(&exe)
            .args([path.as_str(), "--exact", "--nocapture", "--test-threads=1"])
            .env(SERVER_CHILD, &path);
        Some(ServerProcess::spawn(command, &path))
    }

    /// Starts `command` with its output piped and waits (bounded by [`WAIT`]) for the line that
    /// tells its address; `name` names it in failures.
    fn spawn(mut command: Command, name: &str) -> ServerProcess {
        let program = name;
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        let output = Arc::new(Mutex::new(VecDeque::new()));
        let (found, address) = mpsc::channel();
        if let Some(stdout) = child.stdout.take() {
            drain(stdout, output.clone(), Some(found.clone()));
        }
        if let Some(stderr) = child.stderr.take() {
            drain(stderr, output.clone(), Some(found));
        }
        let addr = match address.recv_timeout(WAIT) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "{program} printed no listening address within {WAIT:?}; its output:\n{}",
                    lines(&output)
                );
            }
        };
        ServerProcess {
            child,
            addr,
            output,
        }
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sends the process SIGTERM, as a process manager or container orchestrator does.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {} failed", self.child.id());
    }

    /// Waits up to `limit` for the process to exit and returns its status.
    ///
    /// # Panics
    /// When it is still running after `limit`.
    pub async fn exit_status(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the server") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the server did not exit within {limit:?}; its output:\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The last lines the process printed (stdout and stderr).
    pub fn output(&self) -> String {
        lines(&self.output)
    }

    /// Checks what a connected client sees when the process gets SIGTERM: `disconnect` with
    /// `server_restart` and `reconnect: true`, then a close, and the process exits with
    /// success within [`SHUTDOWN_WAIT`]. `client` must be connected to this process (and
    /// subscribed to whatever the test wants to see survive until the end).
    pub async fn assert_sigterm_stops_gracefully(self, client: CableClient) {
        self.sigterm_stops_gracefully(client, None).await;
    }

    /// [`assert_sigterm_stops_gracefully`](Self::assert_sigterm_stops_gracefully), and the
    /// server's readiness route (`/ready`, `CableHandle::readiness_router`) answers 200 before
    /// the SIGTERM and 503 once `client` has its `server_restart`, while the listener still
    /// answers (`client` has not yet replied to the close, so the shutdown is still under way).
    pub async fn assert_sigterm_turns_unready_and_stops_gracefully(self, client: CableClient) {
        self.sigterm_stops_gracefully(client, Some("/ready")).await;
    }

    async fn sigterm_stops_gracefully(mut self, mut client: CableClient, ready: Option<&str>) {
        if let Some(path) = ready {
            let reply = http_request(self.addr, "GET", path, &[], None).await;
            assert_eq!(reply.status, 200, "{path} before the SIGTERM: {reply:?}");
        }
        self.terminate();
        let restart = disconnect_frame("server_restart", true);
        loop {
            let frame = within("the frame after SIGTERM", client.next_frame_or_end()).await;
            match frame {
                Some(text) if text == restart => break,
                // Pings, or deliveries already queued, may come first.
                Some(text) if !text.contains(r#""type":"disconnect""#) => continue,
                other => panic!(
                    "expected {restart} after SIGTERM, got {other:?}; server output:\n{}",
                    self.output()
                ),
            }
        }
        if let Some(path) = ready {
            let reply = http_request(self.addr, "GET", path, &[], None).await;
            assert_eq!(
                reply.status,
                503,
                "{path} during the shutdown: {reply:?}; server output:\n{}",
                self.output()
            );
            assert_eq!(reply.json()["shutting_down"], serde_json::json!(true));
        }
        client.expect_close().await;
        client.expect_end().await;
        let status = self.exit_status(SHUTDOWN_WAIT).await;
        assert!(
            status.success(),
            "the server exited with {status} after SIGTERM; its output:\n{}",
            self.output()
        );
    }

    /// Checks that the server closes, by itself, a connection that sends nothing and one that
    /// sends half an upgrade request, after `actioncable::serve`'s default header-read timeout
    /// (not before it, and not much after): the server serves with `actioncable::serve`.
    pub async fn assert_closes_connections_that_send_no_request(&self) {
        let timeout = actioncable::Serve::DEFAULT_HEADER_READ_TIMEOUT;
        let silent = HeldConnections::open(self.addr, 1, b"", WAIT).await;
        let half_sent =
            HeldConnections::open(self.addr, 1, &half_sent_upgrade(self.addr), WAIT).await;
        for held in [silent, half_sent] {
            let lived = held.closed_within(timeout + WAIT).await[0];
            assert!(
                lived >= timeout.mul_f64(0.9) && lived <= timeout + WAIT / 2,
                "a connection that sent no whole request was closed after {lived:?}, expected \
                 about {timeout:?}; server output:\n{}",
                self.output()
            );
        }
    }

    /// A client of this server with `opts` (its path, origin, cookies…), welcomed.
    pub async fn client(&self, opts: Connect) -> CableClient {
        CableClient::welcomed(self.addr, opts).await
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads `pipe` line by line on a thread of its own (so the child never blocks on a full
/// pipe), keeps the last lines, and sends the first address it sees to `found`.
fn drain(
    pipe: impl Read + Send + 'static,
    output: Arc<Mutex<VecDeque<String>>>,
    mut found: Option<mpsc::Sender<SocketAddr>>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { return };
            if let Some(addr) = listening_address(&line)
                && let Some(tx) = found.take()
            {
                let _ = tx.send(addr);
            }
            let mut kept = output.lock().unwrap_or_else(|p| p.into_inner());
            if kept.len() == KEEP_LINES {
                kept.pop_front();
            }
            kept.push_back(line);
        }
    });
}

/// The address in a line such as `echo cable listening on ws://127.0.0.1:3000/cable`.
fn listening_address(line: &str) -> Option<SocketAddr> {
    let (_, rest) = line.split_once("listening on ")?;
    let (_, rest) = rest.split_once("://")?;
    let end = rest.find(['/', ' ']).unwrap_or(rest.len());
    rest[..end].parse().ok()
}

fn lines(output: &Mutex<VecDeque<String>>) -> String {
    let kept = output.lock().unwrap_or_else(|p| p.into_inner());
    kept.iter().cloned().collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_address_every_binary_prints() {
        for line in [
            "echo cable listening on ws://127.0.0.1:3000/cable",
            "bench listening on ws://127.0.0.1:3000/cable (pid 42)",
            "demo listening on http://127.0.0.1:3000",
            "rails-twin listening on http://127.0.0.1:3000",
        ] {
            assert_eq!(
                listening_address(line),
                Some("127.0.0.1:3000".parse().unwrap()),
                "{line}"
            );
        }
        assert_eq!(listening_address("INFO demo ready"), None);
    }
}
