//! Connections that never become requests, the flood a server must shed by itself, and a probe
//! that checks the server answers meanwhile.
//!
//! [`HeldConnections`] opens many TCP connections that send nothing, or a prefix of a request,
//! and then only wait: each one notes when the server closes it. [`HttpProbe`] asks for a path
//! on a fresh connection again and again while that goes on and reports how each request fared.

use crate::http::upgrade_request;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, timeout};

/// A WebSocket upgrade request for `/cable` without its last line: the server waits for the
/// rest of the head, which never comes.
pub fn half_sent_upgrade(addr: SocketAddr) -> Vec<u8> {
    let whole = upgrade_request(addr, "/cable", &[]);
    let head = whole
        .strip_suffix("\r\n")
        .expect("a request head ends with an empty line");
    head.as_bytes().to_vec()
}

/// Raises this process's soft limit on open files to its hard limit, for a test that opens
/// thousands of sockets (the soft limit is often 1,024). Returns the limit now in force.
pub fn raise_open_files_limit() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX).expect("raise the open-files limit")
}

/// TCP connections held open by the test, each having sent the same bytes and then nothing,
/// each reading until the server closes it (anything the server sends first, such as a `408`,
/// is read and ignored).
#[derive(Debug)]
pub struct HeldConnections {
    tasks: JoinSet<Result<Duration, String>>,
    closed: Arc<AtomicUsize>,
    count: usize,
}

impl HeldConnections {
    /// Opens `count` connections to `addr` (one after the other; the kernel completes each
    /// handshake even while the server does not accept) and sends `prefix` on each.
    ///
    /// # Panics
    /// When a connection cannot be opened within `limit` in all.
    pub async fn open(addr: SocketAddr, count: usize, prefix: &[u8], limit: Duration) -> Self {
        raise_open_files_limit();
        let deadline = Instant::now() + limit;
        let closed = Arc::new(AtomicUsize::new(0));
        let mut tasks = JoinSet::new();
        for n in 0..count {
            let left = deadline.saturating_duration_since(Instant::now());
            let mut tcp = match timeout(left, TcpStream::connect(addr)).await {
                Ok(Ok(tcp)) => tcp,
                Ok(Err(e)) => panic!("connection {n} of {count} to {addr} failed: {e}"),
                Err(_) => panic!("opened only {n} of {count} connections to {addr} in {limit:?}"),
            };
            let opened = Instant::now();
            let prefix = prefix.to_vec();
            let closed = closed.clone();
            tasks.spawn(async move {
                if !prefix.is_empty() {
                    tcp.write_all(&prefix)
                        .await
                        .map_err(|e| format!("sending the prefix failed: {e}"))?;
                }
                let mut buf = [0u8; 1024];
                loop {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
                closed.fetch_add(1, Ordering::Relaxed);
                Ok(opened.elapsed())
            });
        }
        HeldConnections {
            tasks,
            closed,
            count,
        }
    }

    /// How many the server has closed so far.
    pub fn closed(&self) -> usize {
        self.closed.load(Ordering::Relaxed)
    }

    /// How many are open.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Waits (bounded by `limit`) until the server has closed every one; returns how long each
    /// lived, from being opened to being closed, shortest first.
    ///
    /// # Panics
    /// When some are still open after `limit`, saying how many.
    pub async fn closed_within(mut self, limit: Duration) -> Vec<Duration> {
        let closed = self.closed.clone();
        let count = self.count;
        let collect = async {
            let mut lifetimes = Vec::with_capacity(count);
            while let Some(joined) = self.tasks.join_next().await {
                match joined.expect("a held connection's task panicked") {
                    Ok(lived) => lifetimes.push(lived),
                    Err(e) => panic!("{e}"),
                }
            }
            lifetimes
        };
        match timeout(limit, collect).await {
            Ok(mut lifetimes) => {
                lifetimes.sort();
                lifetimes
            }
            Err(_) => panic!(
                "the server closed only {} of {count} held connections within {limit:?}",
                closed.load(Ordering::Relaxed)
            ),
        }
    }
}

/// What an [`HttpProbe`] saw.
#[derive(Debug, Clone)]
pub struct ProbeReport {
    /// Requests answered with the expected status.
    pub answered: usize,
    /// The slowest of those, from connecting to the end of the response.
    pub slowest: Duration,
    /// When the first answer arrived, from the probe's start.
    pub first_answer: Option<Duration>,
    /// Requests that failed or got another status, with why.
    pub failures: Vec<String>,
}

/// `GET path` on a fresh connection, again and again, until [`finish`](Self::finish).
#[derive(Debug)]
pub struct HttpProbe {
    stop: oneshot::Sender<()>,
    task: JoinHandle<ProbeReport>,
}

impl HttpProbe {
    /// Starts asking `addr` for `path` (expecting `200`) every `every`, each request bounded by
    /// `limit` (a request that takes longer is a failure).
    pub fn start(addr: SocketAddr, path: &str, every: Duration, limit: Duration) -> HttpProbe {
        let (stop, mut stopped) = oneshot::channel::<()>();
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let mut report = ProbeReport {
                answered: 0,
                slowest: Duration::ZERO,
                first_answer: None,
                failures: Vec::new(),
            };
            loop {
                let sent = Instant::now();
                match timeout(limit, get(addr, &request)).await {
                    Ok(Ok(status)) if status.starts_with("HTTP/1.1 200") => {
                        report.answered += 1;
                        report.slowest = report.slowest.max(sent.elapsed());
                        report.first_answer.get_or_insert(started.elapsed());
                    }
                    Ok(Ok(status)) => report.failures.push(format!("answered {status:?}")),
                    Ok(Err(e)) => report.failures.push(e),
                    Err(_) => report.failures.push(format!("no answer within {limit:?}")),
                }
                tokio::select! {
                    _ = &mut stopped => return report,
                    () = tokio::time::sleep(every) => {}
                }
            }
        });
        HttpProbe { stop, task }
    }

    /// Stops asking and returns what it saw (the request in flight, if any, is finished first).
    pub async fn finish(self) -> ProbeReport {
        let _ = self.stop.send(());
        self.task.await.expect("the probe panicked")
    }
}

/// Sends `request` on a new connection and returns the response's status line.
async fn get(addr: SocketAddr, request: &str) -> Result<String, String> {
    let mut tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    tcp.write_all(request.as_bytes())
        .await
        .map_err(|e| format!("send: {e}"))?;
    let mut reply = Vec::new();
    tcp.read_to_end(&mut reply)
        .await
        .map_err(|e| format!("read: {e}"))?;
    let reply = String::from_utf8_lossy(&reply);
    match reply.split_once("\r\n") {
        Some((status, _)) => Ok(status.to_owned()),
        None => Err(format!("no status line in {reply:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_half_sent_upgrade_lacks_only_the_end_of_its_head() {
        let addr: SocketAddr = "127.0.0.1:3000".parse().unwrap();
        let half = String::from_utf8(half_sent_upgrade(addr)).unwrap();
        assert!(half.starts_with("GET /cable HTTP/1.1\r\n"));
        assert!(half.ends_with("\r\n") && !half.ends_with("\r\n\r\n"));
        assert_eq!(format!("{half}\r\n"), upgrade_request(addr, "/cable", &[]));
    }
}
