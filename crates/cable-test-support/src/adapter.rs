//! What every pub/sub adapter's tests share: a channel that streams what its identifier names,
//! a cable node made of it on the adapter under test, client methods for that channel, the wait
//! for delivery to resume after an outage, and the kept-broadcast cost measurement. The Redis,
//! PostgreSQL and NATS adapters' tests run on it.

use crate::{CableClient, CableServer, SubscribeReply, WAIT, spawn_cable};
use actioncable::{
    AllowedOrigins, AnyAction, Cable, Channel, ChannelContext, ChannelError, PubSub, async_trait,
};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// `{"channel":"StreamChannel","stream":"<s>"}` streams `s`. With `"hello": true` it also
/// broadcasts `{"hello":"<s>"}` to `s` right after `stream_from` returns, i.e. right after
/// the adapter's `subscribe` returned.
#[derive(Debug)]
pub struct StreamChannel;

/// The identifier's params of [`StreamChannel`].
#[derive(Debug, Deserialize)]
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

/// A cable node of [`StreamChannel`] (see [`stream_node`]).
pub type Node = CableServer;

/// A cable with [`StreamChannel`] on `pubsub`, served on a loopback port. Dropping it stops
/// serving (open sockets keep their tasks until the runtime ends).
pub async fn stream_node(pubsub: Arc<dyn PubSub>) -> Node {
    spawn_cable(
        Cable::builder()
            .channel::<StreamChannel>()
            .pubsub(pubsub)
            .ping_interval(Duration::from_secs(1))
            .allowed_origins(AllowedOrigins::any()),
    )
    .await
}

/// Broadcasts `{"probe": n}` from `node` until `client` receives one (pub/sub drops what is
/// published while a node's connection is being re-established), bounded by [`WAIT`]; then
/// drains late probes, so the next message the client sees is the next one broadcast.
pub async fn until_delivered(node: &Node, client: &mut CableClient, stream: &str) {
    let deadline = Instant::now() + WAIT;
    for n in 0.. {
        assert!(
            Instant::now() < deadline,
            "delivery on {stream} did not resume within {WAIT:?}"
        );
        if node
            .handle
            .broadcast(stream, &json!({ "probe": n }))
            .await
            .is_ok()
        {
            if let Some(m) = client
                .try_stream_message(stream, Duration::from_millis(300))
                .await
            {
                assert!(m["probe"].is_number(), "unexpected message {m}");
                break;
            }
        } else {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    node.handle
        .broadcast(stream, &json!({ "marker": true }))
        .await
        .expect("a broadcast once delivery works");
    loop {
        let m = client.stream_message(stream).await;
        if m["marker"] == true {
            return;
        }
        assert!(m["probe"].is_number(), "unexpected message {m}");
    }
}

/// Prints what keeping a broadcast costs on `node` (a cable with history on): 5,000 kept
/// broadcasts to `stream` against 5,000 transient ones, one at a time and then 64 in flight
/// (on 64 streams named after `stream`), twice, the second round printed with `labels` (kept,
/// plain). A measurement for an ignored test, not a check.
pub async fn kept_broadcast_cost(node: &Node, stream: &str, labels: (&str, &str)) {
    const N: u32 = 5000;
    let payload = json!({ "text": "x".repeat(100) });
    for round in 0..2 {
        for kept in [false, true] {
            let started = Instant::now();
            for _ in 0..N {
                if kept {
                    node.handle.broadcast(stream, &payload).await.unwrap();
                } else {
                    node.handle
                        .broadcast_transient(stream, &payload)
                        .await
                        .unwrap();
                }
            }
            let serial = started.elapsed() / N;
            let started = Instant::now();
            let mut tasks = tokio::task::JoinSet::new();
            for t in 0..64 {
                let (handle, payload) = (node.handle.clone(), payload.clone());
                let stream = format!("{stream}:{t}");
                tasks.spawn(async move {
                    for _ in 0..N / 64 {
                        if kept {
                            handle.broadcast(&stream, &payload).await.unwrap();
                        } else {
                            handle.broadcast_transient(&stream, &payload).await.unwrap();
                        }
                    }
                });
            }
            tasks.join_all().await;
            let per_second = f64::from(N / 64 * 64) / started.elapsed().as_secs_f64();
            if round == 1 {
                println!(
                    "{}: {serial:.1?} per broadcast one at a time, {per_second:.0}/s with 64 in flight",
                    if kept { labels.0 } else { labels.1 }
                );
            }
        }
    }
}

/// The identifier the client sends for stream `s`.
pub fn identifier(stream: &str) -> String {
    json!({ "channel": "StreamChannel", "stream": stream }).to_string()
}

fn hello_identifier(stream: &str) -> String {
    json!({ "channel": "StreamChannel", "hello": true, "stream": stream }).to_string()
}

/// [`StreamChannel`] subscriptions by stream name (test code only, so the futures' auto
/// traits are left to inference). Frames of other subscriptions that arrive
/// while one of these waits are kept for later, in order (the client's `take_*` reads).
#[allow(async_fn_in_trait)]
pub trait StreamClient {
    /// Subscribes to `stream` and waits for the confirmation.
    async fn subscribe_stream(&mut self, stream: &str);
    /// Subscribes with `hello`: the channel broadcasts right after its stream went live.
    async fn subscribe_hello(&mut self, stream: &str);
    /// Sends `unsubscribe` for `stream` (no reply).
    async fn unsubscribe_stream(&mut self, stream: &str);
    /// Sends `unsubscribe` for the `hello` subscription of `stream`.
    async fn unsubscribe_hello(&mut self, stream: &str);
    /// Returns once the server has processed every command sent before (the server handles a
    /// connection's commands in order, and `unsubscribe` has no reply): subscribes to a fresh
    /// stream, waits for the confirmation, unsubscribes.
    async fn sync(&mut self);
    /// The next message of the subscription to `stream` (plain or hello).
    async fn stream_message(&mut self, stream: &str) -> Value;
    /// As [`stream_message`](Self::stream_message), `None` after `wait`.
    async fn try_stream_message(&mut self, stream: &str, wait: Duration) -> Option<Value>;
}

impl StreamClient for CableClient {
    async fn subscribe_stream(&mut self, stream: &str) {
        assert_eq!(
            self.take_subscribe(&identifier(stream)).await,
            SubscribeReply::Confirmed,
            "subscription to {stream} rejected"
        );
    }

    async fn subscribe_hello(&mut self, stream: &str) {
        assert_eq!(
            self.take_subscribe(&hello_identifier(stream)).await,
            SubscribeReply::Confirmed,
            "subscription to {stream} rejected"
        );
    }

    async fn unsubscribe_stream(&mut self, stream: &str) {
        self.send_unsubscribe(&identifier(stream)).await;
    }

    async fn unsubscribe_hello(&mut self, stream: &str) {
        self.send_unsubscribe(&hello_identifier(stream)).await;
    }

    async fn sync(&mut self) {
        static SYNCS: AtomicU64 = AtomicU64::new(0);
        let stream = format!("sync:{}", SYNCS.fetch_add(1, Ordering::Relaxed));
        self.subscribe_stream(&stream).await;
        self.unsubscribe_stream(&stream).await;
    }

    async fn stream_message(&mut self, stream: &str) -> Value {
        self.try_stream_message(stream, WAIT)
            .await
            .unwrap_or_else(|| panic!("no message on {stream} within {WAIT:?}"))
    }

    async fn try_stream_message(&mut self, stream: &str, wait: Duration) -> Option<Value> {
        let ids = [identifier(stream), hello_identifier(stream)];
        self.take_message(&[&ids[0], &ids[1]], wait).await
    }
}
