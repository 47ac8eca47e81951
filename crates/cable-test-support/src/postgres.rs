//! Real PostgreSQL for tests: a private database per test on the server at 127.0.0.1:5432
//! ([`TestDb`]), a private server on a spare port for tests that stop it ([`PgServer`]), and
//! `psql` for statements. The PostgreSQL and Solid Cable adapters' tests both use them.
//!
//! Nothing is mocked. A missing server or program fails the test with an install hint; it is
//! never skipped. Every wait is bounded by [`WAIT`].

use crate::process::spare_port;
use crate::timing::WAIT;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

const INSTALL_HINT: &str = "install PostgreSQL: `apt-get install postgresql` (Debian; \
    scripts/test.sh does it and starts a server on 127.0.0.1:5432 with trust authentication)";

/// The shared server's port.
const SHARED_PORT: u16 = 5432;

fn run(command: &mut Command, what: &str) -> Output {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what} ({e}): {INSTALL_HINT}"));
    assert!(
        output.status.success(),
        "{what} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Runs `sql` with `psql` as user `postgres` in `db` on `port`; its output, one line a row,
/// columns separated by `|`.
pub fn psql(port: u16, db: &str, sql: &str) -> String {
    let output = run(
        Command::new("psql")
            .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
            .args(["-d", db, "-c", sql]),
        "psql",
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// A database of its own on the shared server, dropped (connections and all) on drop.
#[derive(Debug)]
pub struct TestDb {
    /// The database's name.
    pub name: String,
}

impl TestDb {
    /// Creates an empty database named after this process and a counter.
    pub fn create() -> TestDb {
        static COUNT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "cable_test_{}_{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        );
        psql(SHARED_PORT, "postgres", &format!("CREATE DATABASE {name}"));
        TestDb { name }
    }

    /// Its URL, user `postgres` without a password.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{SHARED_PORT}/{}", self.name)
    }

    /// Runs `sql` in it with [`psql`].
    pub fn psql(&self, sql: &str) -> String {
        psql(SHARED_PORT, &self.name, sql)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args([
                "-X",
                "-q",
                "-h",
                "127.0.0.1",
                "-p",
                &SHARED_PORT.to_string(),
            ])
            .args(["-U", "postgres", "-d", "postgres", "-c"])
            .arg(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The newest `/usr/lib/postgresql/<version>/bin` (Debian's layout).
fn bin_dir() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .unwrap_or_else(|e| panic!("no /usr/lib/postgresql ({e}): {INSTALL_HINT}"))
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .unwrap_or_else(|| panic!("no initdb under /usr/lib/postgresql: {INSTALL_HINT}"))
        .1
}

/// PostgreSQL refuses to run as root: as root, its programs run as the `postgres` user.
fn as_server_user(program: &Path) -> Command {
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|ids| ids.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false);
    if root {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

/// A PostgreSQL server of its own (`initdb` in a scratch directory, `pg_ctl`), listening on
/// 127.0.0.1 on a spare port with trust authentication. Stopped and deleted on drop.
#[derive(Debug)]
pub struct PgServer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: PathBuf,
    bin: PathBuf,
    running: bool,
}

impl PgServer {
    /// `initdb` and start a server; panics with an install hint when PostgreSQL is missing.
    pub fn start() -> PgServer {
        let bin = bin_dir();
        let dir = std::env::temp_dir().join(format!(
            "cable-test-{}-postgres-{}",
            std::process::id(),
            spare_port()
        ));
        std::fs::create_dir_all(&dir).expect("create a scratch directory");
        let mut server = PgServer {
            port: 0,
            dir,
            bin,
            running: false,
        };
        // Owned by the server's user (a no-op when that is us).
        let _ = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&server.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        run(
            as_server_user(&server.bin.join("initdb"))
                .arg("-D")
                .arg(server.data())
                .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"]),
            "initdb",
        );
        for _ in 0..5 {
            server.port = spare_port();
            if server.launch() {
                return server;
            }
        }
        panic!("PostgreSQL did not come up on any of 5 spare ports");
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn pg_ctl(&self) -> Command {
        let mut command = as_server_user(&self.bin.join("pg_ctl"));
        command.arg("-D").arg(self.data());
        command
    }

    /// Starts the server and waits until it accepts connections; `false` if it did not start
    /// (e.g. the port was taken meanwhile).
    fn launch(&mut self) -> bool {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off",
            self.port,
            self.dir.display()
        );
        let status = self
            .pg_ctl()
            .args([
                "-w",
                "-t",
                &WAIT.as_secs().to_string(),
                "-o",
                &options,
                "-l",
            ])
            .arg(self.dir.join("server.log"))
            .arg("start")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap_or_else(|e| panic!("cannot run pg_ctl ({e}): {INSTALL_HINT}"));
        self.running = status.success();
        self.running
    }

    /// The URL of its `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// `pg_ctl stop -m fast`: every session is terminated, the server exits.
    pub fn stop(&mut self) {
        run(
            self.pg_ctl().args(["-w", "-m", "fast", "stop"]),
            "pg_ctl stop",
        );
        self.running = false;
    }

    /// Starts the stopped server again on the same port.
    pub fn restart(&mut self) {
        assert!(!self.running, "restart a stopped server only");
        let deadline = std::time::Instant::now() + WAIT;
        while !self.launch() {
            assert!(
                std::time::Instant::now() < deadline,
                "PostgreSQL could not restart on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Runs `sql` in its `postgres` database with [`psql`].
    pub fn psql(&self, sql: &str) -> String {
        psql(self.port, "postgres", sql)
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if self.running {
            let _ = self
                .pg_ctl()
                .args(["-w", "-m", "immediate", "stop"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
