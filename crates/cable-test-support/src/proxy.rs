//! A TCP proxy in front of a server, for what a network does to a client: freeze (the server
//! looks alive to TCP and says nothing), or cut every connection at once.
//!
//! A paused proxy stops moving bytes in both directions but keeps every socket open, and new
//! connections are accepted and then left waiting: what a client sees of a server stopped with
//! SIGSTOP, or of a network that drops packets, without stopping anything in this process.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A TCP proxy on a free loopback port to `target`; stops when dropped (its connections too).
#[derive(Debug)]
pub struct TcpProxy {
    addr: SocketAddr,
    paused: watch::Sender<bool>,
    /// Bumped by [`cut`](Self::cut): every connection older than the bump ends.
    cuts: watch::Sender<u64>,
    accepted: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cuts.send_modify(|c| *c += 1);
    }
}

impl TcpProxy {
    /// Listens on `127.0.0.1:<free port>` and forwards each connection to `target`.
    pub async fn start(target: SocketAddr) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy's port");
        let addr = listener.local_addr().expect("the proxy's address");
        let (paused, _) = watch::channel(false);
        let (cuts, _) = watch::channel(0u64);
        let accepted = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicUsize::new(0));
        let task = {
            let (paused, cuts) = (paused.subscribe(), cuts.subscribe());
            let (accepted, open) = (accepted.clone(), open.clone());
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    accepted.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(forward(
                        client,
                        target,
                        paused.clone(),
                        cuts.clone(),
                        open.clone(),
                    ));
                }
            })
        };
        TcpProxy {
            addr,
            paused,
            cuts,
            accepted,
            open,
            task,
        }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://<proxy><path_and_query>`
    pub fn url(&self, path_and_query: &str) -> String {
        format!("ws://{}{}", self.addr, path_and_query)
    }

    /// Stops moving bytes, both ways, on every connection, new ones included; sockets stay
    /// open.
    pub fn pause(&self) {
        self.paused.send_replace(true);
    }

    /// Moves bytes again (what was sent meanwhile is delivered).
    pub fn resume(&self) {
        self.paused.send_replace(false);
    }

    /// Closes every current connection at once, on both sides, without a WebSocket close
    /// (a dropped network, a restarted load balancer). New connections are forwarded as
    /// before.
    pub fn cut(&self) {
        self.cuts.send_modify(|c| *c += 1);
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
}

async fn forward(
    client: TcpStream,
    target: SocketAddr,
    mut paused: watch::Receiver<bool>,
    mut cuts: watch::Receiver<u64>,
    open: Arc<AtomicUsize>,
) {
    open.fetch_add(1, Ordering::SeqCst);
    cuts.mark_unchanged();
    let _ = client.set_nodelay(true);
    // A paused proxy does not even connect upstream: the client waits, as for a frozen server.
    let unpaused = async {
        let _ = paused.wait_for(|p| !*p).await;
    };
    let upstream = tokio::select! {
        () = unpaused => TcpStream::connect(target).await.ok(),
        _ = cuts.changed() => None,
    };
    if let Some(upstream) = upstream {
        let _ = upstream.set_nodelay(true);
        let (mut client_read, mut client_write) = client.into_split();
        let (mut upstream_read, mut upstream_write) = upstream.into_split();
        let up = pipe(&mut client_read, &mut upstream_write, paused.clone());
        let down = pipe(&mut upstream_read, &mut client_write, paused.clone());
        tokio::select! {
            () = up => {}
            () = down => {}
            _ = cuts.changed() => {}
        }
    }
    open.fetch_sub(1, Ordering::SeqCst);
}

/// Copies `from` to `to`, holding every chunk while the proxy is paused.
async fn pipe(
    from: &mut (impl tokio::io::AsyncRead + Unpin),
    to: &mut (impl tokio::io::AsyncWrite + Unpin),
    mut paused: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if paused.wait_for(|p| !*p).await.is_err() {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if paused.wait_for(|p| !*p).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timing::{SILENCE, within};

    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = socket.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    async fn round_trip(stream: &mut TcpStream, byte: u8) -> Option<u8> {
        stream.write_all(&[byte]).await.ok()?;
        let mut buf = [0u8; 1];
        tokio::time::timeout(SILENCE, stream.read_exact(&mut buf))
            .await
            .ok()?
            .ok()?;
        Some(buf[0])
    }

    #[tokio::test]
    async fn forwards_pauses_resumes_and_cuts() {
        let proxy = TcpProxy::start(echo_server().await).await;
        let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut stream, 1).await, Some(1));
        proxy.pause();
        assert_eq!(round_trip(&mut stream, 2).await, None, "paused");
        proxy.resume();
        let mut buf = [0u8; 1];
        within("the held byte", stream.read_exact(&mut buf))
            .await
            .unwrap();
        assert_eq!(buf[0], 2, "held, then delivered");
        assert_eq!(proxy.open_connections(), 1);
        proxy.cut();
        let mut rest = Vec::new();
        let read = within("the cut", stream.read_to_end(&mut rest)).await;
        assert!(
            !matches!(read, Ok(n) if n > 0),
            "closed, nothing more: {read:?}"
        );
        let mut again = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut again, 3).await, Some(3));
        assert_eq!(proxy.accepted(), 2);
    }
}
