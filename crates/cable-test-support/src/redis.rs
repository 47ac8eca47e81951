//! Real Redis processes for tests: `redis-server` (plain and TLS) and Sentinel on spare
//! loopback ports, `redis-cli` for commands and as an independent subscriber, and readers of
//! Redis' own view (`CLIENT LIST`, `PUBSUB NUMSUB`).
//!
//! Nothing is mocked: a test that needs Redis to stop, restart or change its configuration gets
//! a server of its own here. A missing `redis-server` or `redis-cli` fails the test with an
//! install hint; it is never skipped. Every wait is bounded by [`WAIT`].

use crate::process::spare_port;
use crate::timing::WAIT;
use std::io::{BufRead as _, Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const INSTALL_HINT: &str = "install Redis: `apt-get install redis-server` (Debian/Ubuntu; it \
                            brings redis-cli too). These tests start their own servers and are \
                            never skipped.";

fn scratch_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "cable-test-{}-{tag}-{}",
        std::process::id(),
        spare_port()
    ));
    std::fs::create_dir_all(&dir).expect("create a scratch directory");
    dir
}

/// Sends `PING` and checks for `+PONG` (plain RESP, no client library).
fn pings(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

fn spawn_checked(program: &str, args: &[String]) -> Child {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                panic!("`{program}` not found: {INSTALL_HINT}");
            }
            panic!("cannot start {program}: {e}")
        })
}

/// A `redis-server` (or sentinel) process on a loopback port, killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    /// The plain-TCP port.
    pub port: u16,
    /// The TLS port, for [`start_tls`](Self::start_tls) servers.
    pub tls_port: Option<u16>,
    child: Option<Child>,
    args: Vec<String>,
    dir: PathBuf,
}

impl RedisServer {
    /// A new server on a spare port.
    pub fn start() -> RedisServer {
        for _ in 0..5 {
            let port = spare_port();
            let dir = scratch_dir("redis");
            let mut server = RedisServer {
                port,
                tls_port: None,
                child: None,
                args: Vec::new(),
                dir,
            };
            server.args = server.server_args();
            if server.launch() {
                return server;
            }
        }
        panic!("redis-server did not come up on any of 5 spare ports");
    }

    /// A server that also listens with TLS on [`tls_port`](Self::tls_port), with a fresh
    /// certificate for 127.0.0.1 from a fresh private CA (made with the `openssl` command).
    /// Returns the CA certificate (PEM) to trust.
    pub fn start_tls() -> (RedisServer, Vec<u8>) {
        for _ in 0..5 {
            let dir = scratch_dir("redis-tls");
            let (ca, cert, key) = (
                dir.join("ca.pem"),
                dir.join("cert.pem"),
                dir.join("key.pem"),
            );
            make_certificates(&dir);
            let (port, tls_port) = (spare_port(), spare_port());
            let mut server = RedisServer {
                port,
                tls_port: Some(tls_port),
                child: None,
                args: Vec::new(),
                dir,
            };
            server.args = server.server_args();
            server.args.extend([
                "--tls-port".to_owned(),
                tls_port.to_string(),
                "--tls-cert-file".to_owned(),
                cert.display().to_string(),
                "--tls-key-file".to_owned(),
                key.display().to_string(),
                "--tls-ca-cert-file".to_owned(),
                cert.display().to_string(),
                "--tls-auth-clients".to_owned(),
                "no".to_owned(),
            ]);
            if server.launch() {
                let pem = std::fs::read(&ca).expect("read the CA certificate");
                return (server, pem);
            }
        }
        panic!("redis-server with TLS did not come up on any of 5 spare ports");
    }

    fn server_args(&self) -> Vec<String> {
        [
            "--port",
            &self.port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dir",
            &self.dir.display().to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// Starts the process and waits (bounded) until it answers `PING`. `false` if it exited
    /// (e.g. the port was taken meanwhile).
    fn launch(&mut self) -> bool {
        let program = "redis-server";
        let mut child = spawn_checked(program, &self.args);
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Ok(Some(_status)) = child.try_wait() {
                return false;
            }
            if pings(self.port) {
                self.child = Some(child);
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "redis-server on port {} did not answer PING within {WAIT:?}",
            self.port
        );
    }

    /// `redis://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// SIGKILL, and wait until the port no longer answers.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        assert!(!pings(self.port), "redis on {} still answers", self.port);
    }

    /// Starts the server again on the same port.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "restart a killed server only");
        let deadline = Instant::now() + WAIT;
        while !self.launch() {
            assert!(
                Instant::now() < deadline,
                "redis-server could not restart on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs `redis-cli -p <port> <args>` and returns its stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        cli(self.port, args)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs `openssl` with `args` in `dir`.
fn openssl(dir: &Path, args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap_or_else(|e| {
            panic!("cannot run `openssl` ({e}): install it with `apt-get install openssl`")
        });
    assert!(status.success(), "openssl {args:?} failed");
}

/// `ca.pem` (a private CA) and `cert.pem`/`key.pem` (a server certificate for 127.0.0.1
/// signed by it) in `dir`.
fn make_certificates(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec![
        "req",
        "-x509",
        "-days",
        "1",
        "-subj",
        "/CN=actioncable-redis test CA",
    ];
    ca.extend(ec);
    ca.extend(["-keyout", "ca.key", "-out", "ca.pem"]);
    openssl(dir, &ca);
    let mut request = vec!["req", "-subj", "/CN=127.0.0.1"];
    request.extend(ec);
    request.extend(["-keyout", "key.pem", "-out", "cert.csr"]);
    openssl(dir, &request);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write ext.cnf");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "cert.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "ext.cnf",
            "-out",
            "cert.pem",
        ],
    );
}

/// A Redis Sentinel (`redis-server <conf> --sentinel`) monitoring `mymaster`.
#[derive(Debug)]
pub struct Sentinel {
    /// The sentinel process (its port, its `redis-cli`).
    pub server: RedisServer,
}

impl Sentinel {
    /// Monitors `master_port` as `mymaster` with quorum 1.
    pub fn start(master_port: u16) -> Sentinel {
        for _ in 0..5 {
            let port = spare_port();
            let dir = scratch_dir("sentinel");
            let conf = dir.join("sentinel.conf");
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndaemonize no\ndir {dir}\n\
                     sentinel resolve-hostnames no\n\
                     sentinel monitor mymaster 127.0.0.1 {master_port} 1\n\
                     sentinel down-after-milliseconds mymaster 60000\n",
                    dir = dir.display()
                ),
            )
            .expect("write sentinel.conf");
            let mut server = RedisServer {
                port,
                tls_port: None,
                child: None,
                args: vec![conf.display().to_string(), "--sentinel".into()],
                dir,
            };
            if server.launch() {
                let sentinel = Sentinel { server };
                sentinel.wait_for_master(master_port);
                return sentinel;
            }
        }
        panic!("redis sentinel did not come up on any of 5 spare ports");
    }

    /// Points `mymaster` at another server, as a failover would.
    pub fn monitor(&self, master_port: u16) {
        let _ = self.server.cli(&["SENTINEL", "REMOVE", "mymaster"]);
        let out = self.server.cli(&[
            "SENTINEL",
            "MONITOR",
            "mymaster",
            "127.0.0.1",
            &master_port.to_string(),
            "1",
        ]);
        assert_eq!(out.trim(), "OK", "SENTINEL MONITOR: {out}");
        self.wait_for_master(master_port);
    }

    fn wait_for_master(&self, master_port: u16) {
        let deadline = Instant::now() + WAIT;
        loop {
            let out = self
                .server
                .cli(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster"]);
            if out.lines().nth(1).map(str::trim) == Some(&master_port.to_string()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the sentinel does not name port {master_port}: {out}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `127.0.0.1:<port>`, as a sentinel address.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.server.port)
    }
}

/// Runs `redis-cli -p <port> <args>` and returns its stdout (raw, one value per line).
pub fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .arg("-p")
        .arg(port.to_string())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                panic!("`redis-cli` not found: {INSTALL_HINT}");
            }
            panic!("cannot run redis-cli: {e}")
        });
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `CLIENT LIST` as (name, number of channel subscriptions) pairs.
pub fn clients(port: u16) -> Vec<(String, usize)> {
    cli(port, &["CLIENT", "LIST"])
        .lines()
        .map(|line| {
            let field = |key: &str| {
                line.split(' ')
                    .find_map(|kv| kv.strip_prefix(key))
                    .unwrap_or("")
                    .to_owned()
            };
            (field("name="), field("sub=").parse().unwrap_or(0))
        })
        .collect()
}

/// The `CLIENT LIST` ids of the connections named `name`, sorted.
pub fn client_ids(port: u16, name: &str) -> Vec<u64> {
    let mut ids: Vec<u64> = cli(port, &["CLIENT", "LIST"])
        .lines()
        .filter(|line| {
            line.split(' ')
                .any(|kv| kv.strip_prefix("name=") == Some(name))
        })
        .filter_map(|line| {
            line.split(' ')
                .find_map(|kv| kv.strip_prefix("id="))
                .and_then(|id| id.parse().ok())
        })
        .collect();
    ids.sort_unstable();
    ids
}

/// `PUBSUB NUMSUB <channel>`.
pub fn numsub(port: u16, channel: &str) -> usize {
    cli(port, &["PUBSUB", "NUMSUB", channel])
        .lines()
        .nth(1)
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// A `redis-cli SUBSCRIBE` process whose output is read line by line: a subscriber that is
/// not our adapter, as a Rails process on the same Redis would be.
#[derive(Debug)]
pub struct CliSubscriber {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl CliSubscriber {
    /// Subscribes and waits for the confirmation (`subscribe`, channel, count).
    pub fn start(port: u16, channel: &str) -> CliSubscriber {
        let mut child = Command::new("redis-cli")
            .args(["-p", &port.to_string(), "SUBSCRIBE", channel])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run redis-cli ({e}): {INSTALL_HINT}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut sub = CliSubscriber { child, lines };
        assert_eq!(sub.line(), "subscribe");
        assert_eq!(sub.line(), channel);
        assert_eq!(sub.line(), "1");
        sub
    }

    /// The next output line (bounded by [`WAIT`]).
    pub fn line(&mut self) -> String {
        self.lines
            .recv_timeout(WAIT)
            .expect("a line from redis-cli SUBSCRIBE")
    }

    /// The next message as (channel, payload).
    pub fn message(&mut self) -> (String, String) {
        assert_eq!(self.line(), "message");
        let channel = self.line();
        let payload = self.line();
        (channel, payload)
    }
}

impl Drop for CliSubscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
