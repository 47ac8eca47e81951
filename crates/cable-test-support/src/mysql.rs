//! Real MariaDB for tests: a private database per test on the server at 127.0.0.1:3306 (user
//! `root`, no password: [`MysqlDb`]), a private server on a spare port for tests that stop it
//! ([`MariaDbServer`]), and the `mariadb` client for statements.
//!
//! Nothing is mocked. A missing server or program fails the test with an install hint; it is
//! never skipped. Every wait is bounded by [`WAIT`].

use crate::process::spare_port;
use crate::timing::WAIT;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const INSTALL_HINT: &str = "install MariaDB: `apt-get install mariadb-server` (Debian; \
    scripts/test.sh does it and starts a server on 127.0.0.1:3306, user root without a password)";

/// The shared server's port.
const SHARED_PORT: u16 = 3306;

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

fn client(port: u16, db: &str) -> Command {
    let mut command = Command::new("mariadb");
    command
        .args(["--no-defaults", "-h", "127.0.0.1", "-P", &port.to_string()])
        .args(["-u", "root", "-N", "-B", "-D", db]);
    command
}

/// Runs `sql` with the `mariadb` client as `root` in `db` on `port`; its output, one line a
/// row, columns separated by tabs (batch mode: special characters escaped, so select binary
/// columns with `HEX(…)`).
pub fn mariadb(port: u16, db: &str, sql: &str) -> String {
    let output = run(client(port, db).args(["-e", sql]), "mariadb");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn answers(port: u16) -> bool {
    client(port, "mysql")
        .args(["-e", "SELECT 1"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A database of its own on the shared server, dropped on drop.
#[derive(Debug)]
pub struct MysqlDb {
    /// The database's name.
    pub name: String,
}

impl MysqlDb {
    /// Creates an empty database named after this process and a counter.
    pub fn create() -> MysqlDb {
        static COUNT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "cable_test_{}_{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        );
        mariadb(SHARED_PORT, "mysql", &format!("CREATE DATABASE {name}"));
        MysqlDb { name }
    }

    /// Its URL, user `root` without a password.
    pub fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:{SHARED_PORT}/{}", self.name)
    }

    /// Runs `sql` in it with [`mariadb`].
    pub fn sql(&self, sql: &str) -> String {
        mariadb(SHARED_PORT, &self.name, sql)
    }
}

impl Drop for MysqlDb {
    fn drop(&mut self) {
        let _ = client(SHARED_PORT, "mysql")
            .args(["-e", &format!("DROP DATABASE IF EXISTS {}", self.name)])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// `name` from the `PATH`, or from `/usr/sbin` (where Debian puts `mariadbd`, not on every
/// user's `PATH`).
fn program(name: &str) -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    });
    on_path.unwrap_or_else(|| PathBuf::from("/usr/sbin").join(name))
}

/// Whether this process runs as root (MariaDB then needs `--user=root` to run).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|ids| ids.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// A MariaDB server of its own (`mariadb-install-db` in a scratch directory, `mariadbd` as a
/// child process), on 127.0.0.1 and a spare port, `root` without a password, with a database
/// `test`. Stopped and deleted on drop.
#[derive(Debug)]
pub struct MariaDbServer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl MariaDbServer {
    /// Installs and starts a server; panics with an install hint when MariaDB is missing.
    pub fn start() -> MariaDbServer {
        let dir = std::env::temp_dir().join(format!(
            "cable-test-{}-mariadb-{}",
            std::process::id(),
            spare_port()
        ));
        std::fs::create_dir_all(&dir).expect("create a scratch directory");
        let mut install = Command::new(program("mariadb-install-db"));
        install
            .arg("--no-defaults")
            .arg(format!("--datadir={}", dir.join("data").display()))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"]);
        if is_root() {
            install.arg("--user=root");
        }
        run(&mut install, "mariadb-install-db");
        let mut server = MariaDbServer {
            port: 0,
            dir,
            child: None,
        };
        for _ in 0..5 {
            server.port = spare_port();
            if server.launch() {
                mariadb(server.port, "mysql", "CREATE DATABASE test");
                return server;
            }
        }
        panic!("MariaDB did not come up on any of 5 spare ports");
    }

    /// Starts `mariadbd` and waits until it answers; `false` if it exited first (e.g. the port
    /// was taken meanwhile).
    fn launch(&mut self) -> bool {
        let log = std::fs::File::create(self.dir.join("server.log")).expect("the server's log");
        let err = log.try_clone().expect("share the server's log");
        let mut command = Command::new(program("mariadbd"));
        command
            .arg("--no-defaults")
            .arg(format!("--datadir={}", self.dir.join("data").display()))
            .arg(format!("--port={}", self.port))
            .arg(format!(
                "--socket={}",
                self.dir.join("mysqld.sock").display()
            ))
            .arg(format!(
                "--pid-file={}",
                self.dir.join("mysqld.pid").display()
            ))
            .args([
                "--bind-address=127.0.0.1",
                "--skip-name-resolve",
                "--skip-log-bin",
            ])
            .args([
                "--innodb-buffer-pool-size=16M",
                "--innodb-flush-log-at-trx-commit=0",
            ]);
        if is_root() {
            command.arg("--user=root");
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run mariadbd ({e}): {INSTALL_HINT}"));
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if answers(self.port) {
                self.child = Some(child);
                return true;
            }
            if let Ok(Some(_)) = child.try_wait() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// The URL of its `test` database.
    pub fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}/test", self.port)
    }

    /// Stops the server with SIGTERM (a clean shutdown: every session is closed) and waits
    /// until it exited.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts the stopped server again on the same port.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "restart a stopped server only");
        let deadline = Instant::now() + WAIT;
        while !self.launch() {
            assert!(
                Instant::now() < deadline,
                "MariaDB could not restart on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Runs `sql` in its `test` database with [`mariadb`].
    pub fn sql(&self, sql: &str) -> String {
        mariadb(self.port, "test", sql)
    }
}

impl Drop for MariaDbServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
