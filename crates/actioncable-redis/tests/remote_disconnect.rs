//! Remote disconnect across two nodes sharing a (private) Redis: `CableHandle::remote_disconnect`
//! on one node closes every connection of that identity on both, and a Rails-style message
//! published straight into Redis on the internal channel does the same. Other users stay.

mod support;

use actioncable::{
    AllowedOrigins, Cable, CableHandle, ConnectRequest, Connection, Identity, Reject, async_trait,
};
use actioncable_redis::{RedisConfig, RedisPubSub};
use axum::serve::ListenerExt as _;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::Duration;
use support::*;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

/// Identity `current_user=<?user=>`.
#[derive(Debug)]
struct UserFromQuery;

#[async_trait]
impl Connection for UserFromQuery {
    async fn connect(&self, req: &ConnectRequest) -> Result<Identity, Reject> {
        let user = req.query("user").ok_or(Reject)?;
        Ok(Identity::new("current_user", user))
    }
}

struct IdentifiedNode {
    addr: SocketAddr,
    handle: CableHandle,
    task: JoinHandle<()>,
}

impl Drop for IdentifiedNode {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start_node(redis: &RedisServer) -> IdentifiedNode {
    init_tracing();
    let pubsub = RedisPubSub::new(RedisConfig::from_url(&redis.url()).unwrap());
    let cable = Cable::builder()
        .connection(UserFromQuery)
        .channel::<StreamChannel>()
        .pubsub(pubsub)
        .allowed_origins(AllowedOrigins::any())
        .build()
        .expect("the cable builds");
    let handle = cable.handle();
    let app: axum::Router = cable.router("/cable");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    IdentifiedNode { addr, handle, task }
}

type Ws = WebSocketStream<TcpStream>;

/// The next non-ping frame as JSON, or `None` once the socket ended (close frame or EOF).
async fn next(ws: &mut Ws) -> Option<Value> {
    loop {
        match timeout(WAIT, ws.next())
            .await
            .expect("a frame or the end in time")
        {
            None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return None,
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                if v["type"] != "ping" {
                    return Some(v);
                }
            }
            Some(Ok(_)) => {}
        }
    }
}

/// A welcomed client of `user`, subscribed to `stream`.
async fn user_client(node: &IdentifiedNode, user: &str, stream: &str) -> Ws {
    let addr = node.addr;
    let mut request = format!("ws://{addr}/cable?user={user}")
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "actioncable-v1-json, actioncable-unsupported"
            .parse()
            .unwrap(),
    );
    let tcp = timeout(WAIT, TcpStream::connect(addr))
        .await
        .unwrap()
        .unwrap();
    let (mut ws, _) = timeout(WAIT, tokio_tungstenite::client_async(request, tcp))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(next(&mut ws).await, Some(json!({ "type": "welcome" })));
    let id = identifier(stream);
    ws.send(Message::text(
        json!({ "command": "subscribe", "identifier": id }).to_string(),
    ))
    .await
    .unwrap();
    assert_eq!(
        next(&mut ws).await,
        Some(json!({ "identifier": id, "type": "confirm_subscription" }))
    );
    ws
}

/// `disconnect` with reason `remote` and `reconnect`, then the socket ends.
async fn expect_remote_disconnect(ws: &mut Ws, reconnect: bool) {
    assert_eq!(
        next(ws).await,
        Some(json!({ "type": "disconnect", "reason": "remote", "reconnect": reconnect }))
    );
    assert_eq!(next(ws).await, None, "the socket ends after the disconnect");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_disconnect_closes_an_identity_on_every_node_and_nobody_else() {
    let redis = RedisServer::start();
    let a = start_node(&redis).await;
    let b = start_node(&redis).await;

    let mut alice_a = user_client(&a, "alice", "room").await;
    let mut alice_b = user_client(&b, "alice", "room").await;
    let mut bob_b = user_client(&b, "bob", "room").await;
    // Both nodes listen on alice's internal channel (each adapter has its own connection).
    eventually("both nodes subscribed action_cable/alice", || {
        numsub(redis.port, "action_cable/alice") == 2
    })
    .await;
    eventually("node b subscribed action_cable/bob", || {
        numsub(redis.port, "action_cable/bob") == 1
    })
    .await;

    // From node a: alice is closed on a and on b.
    a.handle
        .remote_disconnect(&Identity::new("current_user", "alice"), false)
        .await
        .expect("published");
    expect_remote_disconnect(&mut alice_a, false).await;
    expect_remote_disconnect(&mut alice_b, false).await;
    eventually("alice's connections are gone on both nodes", || {
        a.handle.connection_count() == 0 && b.handle.connection_count() == 1
    })
    .await;
    eventually("nobody listens on alice's internal channel", || {
        numsub(redis.port, "action_cable/alice") == 0
    })
    .await;

    // bob was not touched: a broadcast from node a still reaches him on node b.
    a.handle
        .broadcast("room", &json!({ "still": "here" }))
        .await
        .unwrap();
    assert_eq!(
        next(&mut bob_b).await,
        Some(json!({ "identifier": identifier("room"), "message": { "still": "here" } }))
    );

    // What a Rails process sharing the Redis publishes for
    // `remote_connections.where(current_user: bob).disconnect` (Rails 6.1: no `reconnect`).
    let receivers = redis.cli(&["PUBLISH", "action_cable/bob", r#"{"type":"disconnect"}"#]);
    assert_eq!(receivers.trim(), "1", "node b's adapter got it");
    expect_remote_disconnect(&mut bob_b, true).await;
    eventually("every connection and stream released on both nodes", || {
        a.handle.connection_count() == 0
            && b.handle.connection_count() == 0
            && a.handle.stream_count() == 0
            && b.handle.stream_count() == 0
    })
    .await;
    // Bounded wait for the adapters to drop their Redis subscriptions too.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while numsub(redis.port, "action_cable/bob") != 0 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
