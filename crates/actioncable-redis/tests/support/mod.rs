//! Test support: real `redis-server` (and sentinel) processes on spare loopback ports, a real
//! cable served by axum, and a WebSocket client speaking the ActionCable protocol.
//!
//! Nothing is mocked. A missing `redis-server` fails the test with an install hint; it is never
//! skipped. Every wait is bounded.

// Each test binary uses a different part of this module.
#![allow(dead_code, unreachable_pub)]

use actioncable::PubSub;
use actioncable::{
    AllowedOrigins, AnyAction, Cable, CableHandle, Channel, ChannelContext, ChannelError,
    async_trait,
};
use axum::serve::ListenerExt as _;
use futures_util::{SinkExt as _, StreamExt as _};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::io::{BufRead as _, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

/// Upper bound for anything we expect to happen (generous, for a loaded 2-core machine).
pub const WAIT: Duration = Duration::from_secs(10);
/// How long "nothing arrives" is observed.
pub const SILENCE: Duration = Duration::from_millis(300);

const INSTALL_HINT: &str = "install Redis: `apt-get install redis-server` (Debian/Ubuntu; it \
                            brings redis-cli too). These tests start their own servers and are \
                            never skipped.";

/// Installs a tracing subscriber once (honours `RUST_LOG`; silent by default).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off")),
        )
        .with_test_writer()
        .try_init();
}

// ---------------------------------------------------------------------------------------------
// Redis processes
// ---------------------------------------------------------------------------------------------

fn spare_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a spare loopback port")
}

fn scratch_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "actioncable-redis-test-{}-{tag}-{}",
        std::process::id(),
        spare_port()
    ));
    std::fs::create_dir_all(&dir).expect("create a scratch directory");
    dir
}

/// Sends `PING` and checks for `+PONG` (plain RESP, no client library).
fn pings(port: u16) -> bool {
    let Ok(mut s) = StdStream::connect(("127.0.0.1", port)) else {
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
fn openssl(dir: &std::path::Path, args: &[&str]) {
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
fn make_certificates(dir: &std::path::Path) {
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

/// Polls `cond` until it holds, bounded by [`WAIT`].
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A `redis-cli SUBSCRIBE` process whose output is read line by line.
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

// ---------------------------------------------------------------------------------------------
// The cable
// ---------------------------------------------------------------------------------------------

/// `{"channel":"StreamChannel","stream":"<s>"}` streams `s`. With `"hello": true` it also
/// broadcasts `{"hello":"<s>"}` to `s` right after `stream_from` returns, i.e. right after
/// the adapter's `subscribe` returned.
pub struct StreamChannel;

#[derive(Deserialize)]
pub struct StreamParams {
    stream: String,
    #[serde(default)]
    hello: bool,
}

#[async_trait]
impl Channel for StreamChannel {
    const CLASS: &'static str = "StreamChannel";
    type Params = StreamParams;
    type Action = AnyAction;

    async fn subscribed(
        ctx: &mut ChannelContext,
        params: StreamParams,
    ) -> Result<Self, ChannelError> {
        ctx.stream_from(params.stream.clone()).await?;
        if params.hello {
            ctx.broadcast(&params.stream, &json!({ "hello": params.stream }))
                .await?;
        }
        Ok(StreamChannel)
    }
}

/// A cable with [`StreamChannel`] on `pubsub`, served on 127.0.0.1:0. Dropping it stops
/// serving (open sockets keep their tasks until the runtime ends).
#[derive(Debug)]
pub struct Node {
    pub addr: SocketAddr,
    pub handle: CableHandle,
    task: JoinHandle<()>,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Node {
    pub async fn start(pubsub: Arc<dyn PubSub>) -> Node {
        init_tracing();
        let cable = Cable::builder()
            .channel::<StreamChannel>()
            .pubsub(pubsub)
            .ping_interval(Duration::from_secs(1))
            .allowed_origins(AllowedOrigins::any())
            .build()
            .expect("the test cable builds");
        let handle = cable.handle();
        let app: axum::Router = cable.router("/cable");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Small frames go out at once (no Nagle delay against the client's delayed ACKs).
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Node { addr, handle, task }
    }

    /// A connected, welcomed client.
    pub async fn client(&self) -> Client {
        Client::connect(self.addr).await
    }
}

// ---------------------------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------------------------

/// The identifier the client sends for stream `s`.
pub fn identifier(stream: &str) -> String {
    json!({ "channel": "StreamChannel", "stream": stream }).to_string()
}

fn hello_identifier(stream: &str) -> String {
    json!({ "channel": "StreamChannel", "hello": true, "stream": stream }).to_string()
}

/// A WebSocket client speaking the ActionCable JSON protocol like the stock consumer. Frames
/// that arrive while it waits for something else are kept, in order; pings are dropped.
#[derive(Debug)]
pub struct Client {
    ws: WebSocketStream<TcpStream>,
    pending: VecDeque<Value>,
    syncs: u64,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        let mut request = format!("ws://{addr}/cable").into_client_request().unwrap();
        request.headers_mut().insert(
            "sec-websocket-protocol",
            "actioncable-v1-json, actioncable-unsupported"
                .parse()
                .unwrap(),
        );
        request
            .headers_mut()
            .insert("origin", format!("http://{addr}").parse().unwrap());
        let tcp = timeout(WAIT, TcpStream::connect(addr))
            .await
            .expect("TCP connect in time")
            .expect("TCP connect");
        tcp.set_nodelay(true).expect("TCP_NODELAY");
        let (ws, _) = timeout(WAIT, tokio_tungstenite::client_async(request, tcp))
            .await
            .expect("WebSocket handshake in time")
            .expect("WebSocket handshake");
        let mut client = Client {
            ws,
            pending: VecDeque::new(),
            syncs: 0,
        };
        let welcome = client.read(WAIT).await.expect("a welcome");
        assert_eq!(welcome, json!({ "type": "welcome" }));
        client
    }

    async fn send_json(&mut self, value: Value) {
        timeout(WAIT, self.ws.send(Message::text(value.to_string())))
            .await
            .expect("send in time")
            .expect("send a frame");
    }

    /// The next non-ping frame from the socket (not from `pending`), or `None` after `wait`.
    /// Panics if the socket closes or a `disconnect` arrives.
    async fn read(&mut self, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let frame = match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return None,
                Ok(None) => panic!("the server closed the socket"),
                Ok(Some(Err(e))) => panic!("WebSocket error: {e}"),
                Ok(Some(Ok(frame))) => frame,
            };
            match frame {
                Message::Text(text) => {
                    let value: Value = serde_json::from_str(text.as_str()).expect("JSON frame");
                    match value["type"].as_str() {
                        Some("ping") => continue,
                        Some("disconnect") => panic!("the server sent {value}"),
                        _ => return Some(value),
                    }
                }
                Message::Close(c) => panic!("the server closed the socket: {c:?}"),
                _ => continue,
            }
        }
    }

    /// The first frame (pending or new) that `matches`, keeping the others.
    async fn take(
        &mut self,
        what: &str,
        wait: Duration,
        matches: impl Fn(&Value) -> bool,
    ) -> Option<Value> {
        if let Some(i) = self.pending.iter().position(&matches) {
            return self.pending.remove(i);
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let value = self.read(left).await?;
            if matches(&value) {
                return Some(value);
            }
            tracing::trace!(what, %value, "kept a frame for later");
            self.pending.push_back(value);
        }
    }

    /// Sends `subscribe` and returns whether it was confirmed (`false`: rejected).
    pub async fn try_subscribe_identifier(&mut self, id: &str) -> bool {
        self.send_json(json!({ "command": "subscribe", "identifier": id }))
            .await;
        let reply = self
            .take("confirmation", WAIT, |v| {
                v["identifier"] == id && v.get("type").is_some()
            })
            .await
            .unwrap_or_else(|| panic!("no confirm or reject for {id}"));
        match reply["type"].as_str() {
            Some("confirm_subscription") => true,
            Some("reject_subscription") => false,
            _ => panic!("unexpected reply {reply}"),
        }
    }

    /// Subscribes to `stream` and waits for the confirmation.
    pub async fn subscribe(&mut self, stream: &str) {
        assert!(
            self.try_subscribe_identifier(&identifier(stream)).await,
            "subscription to {stream} rejected"
        );
    }

    /// Subscribes with `hello`: the channel broadcasts right after its stream went live.
    pub async fn subscribe_hello(&mut self, stream: &str) {
        assert!(
            self.try_subscribe_identifier(&hello_identifier(stream))
                .await,
            "subscription to {stream} rejected"
        );
    }

    pub async fn unsubscribe(&mut self, stream: &str) {
        self.send_json(json!({ "command": "unsubscribe", "identifier": identifier(stream) }))
            .await;
    }

    /// Returns once the server has processed every command sent before (the server handles a
    /// connection's commands in order, and `unsubscribe` has no reply): subscribes to a fresh
    /// stream, waits for the confirmation, unsubscribes.
    pub async fn sync(&mut self) {
        self.syncs += 1;
        let stream = format!("sync:{:p}:{}", self as *const Client, self.syncs);
        self.subscribe(&stream).await;
        self.unsubscribe(&stream).await;
    }

    pub async fn unsubscribe_hello(&mut self, stream: &str) {
        self.send_json(json!({ "command": "unsubscribe", "identifier": hello_identifier(stream) }))
            .await;
    }

    /// The next message of the subscription to `stream` (plain or hello).
    pub async fn message(&mut self, stream: &str) -> Value {
        self.try_message(stream, WAIT)
            .await
            .unwrap_or_else(|| panic!("no message on {stream} within {WAIT:?}"))
    }

    /// As [`message`](Self::message), `None` after `wait`.
    pub async fn try_message(&mut self, stream: &str, wait: Duration) -> Option<Value> {
        let ids = [identifier(stream), hello_identifier(stream)];
        self.take("message", wait, |v| {
            v.get("message").is_some() && ids.iter().any(|id| v["identifier"] == id.as_str())
        })
        .await
        .map(|mut v| v["message"].take())
    }

    /// Asserts that no frame other than pings arrives for `wait` (and the socket stays open).
    pub async fn expect_silence(&mut self, wait: Duration) {
        assert!(
            self.pending.is_empty(),
            "unexpected frames {:?}",
            self.pending
        );
        if let Some(v) = self.read(wait).await {
            panic!("expected silence, got {v}");
        }
    }
}
