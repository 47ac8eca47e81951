//! The NATS adapter's test fixtures: the ones every adapter's tests share (`StreamChannel`, its
//! cable node and client methods: `cable_test_support::adapter`), the shared NATS server on
//! 127.0.0.1:4222 (with JetStream; `scripts/test.sh` starts one if none answers), and private
//! `nats-server` processes for the tests that stop or restart their server.
//!
//! Tests on the shared server never see each other: each takes a subject prefix, an AnyCable
//! subject and a history stream name of its own.

pub(crate) use cable_test_support::adapter::*;
pub(crate) use cable_test_support::*;

use actioncable_nats::{HistoryStorage, NatsConfig, NatsPubSub};
use std::io::{BufRead as _, BufReader};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The NATS server every machine that runs the tests has (see `scripts/test.sh`).
pub(crate) const SHARED_URL: &str = "nats://127.0.0.1:4222";

const INSTALL_HINT: &str = "install NATS: `apt-get install nats-server` (Debian/Ubuntu). \
                            scripts/test.sh starts one with JetStream on 127.0.0.1:4222 if none \
                            answers there; these tests are never skipped.";

/// Whether a NATS server answers on `port`: it greets every connection with `INFO {…}`.
fn greets(port: u16) -> bool {
    let Ok(stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).is_ok() && line.starts_with("INFO ")
}

/// A name no other test (nor another run of this one) uses: `t<pid>x<n>`.
pub(crate) fn unique(tag: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{tag}{}x{}x{nanos:x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Settings for the shared server, with a subject prefix, AnyCable subject and history
/// stream of this test's own (history in memory: nothing is left on disk).
pub(crate) fn shared_config() -> NatsConfig {
    assert!(
        greets(4222),
        "no NATS server on 127.0.0.1:4222: {INSTALL_HINT}"
    );
    config_for(SHARED_URL)
}

/// Settings for the server at `url`, isolated as [`shared_config`]'s are.
pub(crate) fn config_for(url: &str) -> NatsConfig {
    let prefix = unique("t");
    NatsConfig::from_url(url)
        .expect("a valid URL")
        .subject_prefix(prefix.clone())
        .anycable_subject(Some(format!("{prefix}_anycable")))
        .history_stream(format!("{prefix}_HISTORY"))
        .history_storage(HistoryStorage::Memory)
        .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(500))
}

/// A [`StreamChannel`] node on `pubsub`, returned once the adapter is connected.
pub(crate) async fn node(pubsub: &NatsPubSub) -> Node {
    let node = stream_node(Arc::new(pubsub.clone())).await;
    connected(pubsub).await;
    node
}

/// Waits until the adapter is connected (its subscriptions in place).
pub(crate) async fn connected(pubsub: &NatsPubSub) {
    eventually("the NATS adapter to connect", || pubsub.is_connected()).await;
}

/// A raw NATS client: what another program (an AnyCable broadcaster, say) uses.
pub(crate) async fn raw_client(url: &str) -> async_nats::Client {
    within("a raw NATS client to connect", async_nats::connect(url))
        .await
        .expect("a raw NATS connection")
}

/// Subscribes a raw client to `subject` and returns once the server has the subscription
/// (`flush` only writes to the socket: a request nobody answers comes back after the server
/// processed everything sent before it).
pub(crate) async fn raw_subscribe(
    client: &async_nats::Client,
    subject: String,
) -> async_nats::Subscriber {
    let subscriber = client.subscribe(subject).await.expect("a raw subscription");
    let answer = within(
        "a round trip to the server",
        client.request(unique("nobody.listens."), Default::default()),
    )
    .await;
    assert!(
        matches!(&answer, Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders),
        "{answer:?}"
    );
    subscriber
}

/// A private `nats-server` on a spare loopback port, killed on drop. With JetStream its store
/// is a directory of its own, which outlives a restart and is removed on drop.
#[derive(Debug)]
pub(crate) struct NatsServer {
    pub(crate) port: u16,
    child: Option<Child>,
    store: Option<PathBuf>,
}

impl NatsServer {
    /// Core NATS only.
    pub(crate) fn start() -> NatsServer {
        NatsServer::launch_new(false)
    }

    /// With JetStream, file storage in a temporary directory.
    pub(crate) fn start_jetstream() -> NatsServer {
        NatsServer::launch_new(true)
    }

    fn launch_new(jetstream: bool) -> NatsServer {
        for _ in 0..5 {
            let port = spare_port();
            let store = jetstream.then(|| {
                let dir = std::env::temp_dir().join(format!("cable-test-{}", unique("nats")));
                std::fs::create_dir_all(&dir).expect("create a store directory");
                dir
            });
            let mut server = NatsServer {
                port,
                child: None,
                store,
            };
            if server.launch() {
                return server;
            }
        }
        panic!("nats-server did not come up on any of 5 spare ports");
    }

    /// Starts the process and waits (bounded) until it greets. `false` if it exited (the port
    /// was taken meanwhile).
    fn launch(&mut self) -> bool {
        let mut args = vec![
            "-a".to_owned(),
            "127.0.0.1".to_owned(),
            "-p".to_owned(),
            self.port.to_string(),
        ];
        if let Some(store) = &self.store {
            args.extend([
                "-js".to_owned(),
                "-sd".to_owned(),
                store.display().to_string(),
            ]);
        }
        let mut child = Command::new("nats-server")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    panic!("`nats-server` not found: {INSTALL_HINT}");
                }
                panic!("cannot start nats-server: {e}")
            });
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Ok(Some(_status)) = child.try_wait() {
                return false;
            }
            if greets(self.port) {
                self.child = Some(child);
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "nats-server on port {} did not answer within {WAIT:?}",
            self.port
        );
    }

    /// `nats://127.0.0.1:<port>`
    pub(crate) fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// SIGKILL, and wait until the port no longer answers.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        assert!(
            !greets(self.port),
            "nats-server on {} still answers",
            self.port
        );
    }

    /// Starts the server again on the same port (with the same store).
    pub(crate) fn restart(&mut self) {
        assert!(self.child.is_none(), "restart a killed server only");
        let deadline = Instant::now() + WAIT;
        while !self.launch() {
            assert!(
                Instant::now() < deadline,
                "nats-server could not restart on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(store) = &self.store {
            let _ = std::fs::remove_dir_all(store);
        }
    }
}

/// Deletes a test's history stream from the shared server when dropped.
pub(crate) struct DropStream {
    pub(crate) name: String,
}

impl Drop for DropStream {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Best effort, on a thread of its own: drop may run outside the test's runtime.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                if let Ok(Ok(client)) =
                    tokio::time::timeout(Duration::from_secs(2), async_nats::connect(SHARED_URL))
                        .await
                {
                    let js = async_nats::jetstream::new(client);
                    let _ =
                        tokio::time::timeout(Duration::from_secs(2), js.delete_stream(&name)).await;
                }
            });
        })
        .join();
    }
}
