//! The adapter's test fixtures: a channel that streams what its identifier names, a cable
//! node made of it, and client methods for that channel. The client, the servers and the
//! timing bounds come from `cable-test-support`, re-exported here.

pub(crate) use cable_test_support::*;

use actioncable::{
    AllowedOrigins, AnyAction, Cable, Channel, ChannelContext, ChannelError, PubSub, async_trait,
};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// `{"channel":"StreamChannel","stream":"<s>"}` streams `s`. With `"hello": true` it also
/// broadcasts `{"hello":"<s>"}` to `s` right after `stream_from` returns, i.e. right after
/// the adapter's `subscribe` returned.
pub(crate) struct StreamChannel;

#[derive(Deserialize)]
pub(crate) struct StreamParams {
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

/// A cable node of [`StreamChannel`].
pub(crate) type Node = CableServer;

/// A cable with [`StreamChannel`] on `pubsub`, served on a loopback port.
pub(crate) async fn stream_node(pubsub: Arc<dyn PubSub>) -> Node {
    spawn_cable(
        Cable::builder()
            .channel::<StreamChannel>()
            .pubsub(pubsub)
            .ping_interval(Duration::from_secs(1))
            .allowed_origins(AllowedOrigins::any()),
    )
    .await
}

/// The identifier the client sends for stream `s`.
pub(crate) fn identifier(stream: &str) -> String {
    json!({ "channel": "StreamChannel", "stream": stream }).to_string()
}

fn hello_identifier(stream: &str) -> String {
    json!({ "channel": "StreamChannel", "hello": true, "stream": stream }).to_string()
}

/// [`StreamChannel`] subscriptions by stream name.
pub(crate) trait StreamClient {
    /// Subscribes to `stream` and waits for the confirmation.
    async fn subscribe_stream(&mut self, stream: &str);
    /// Subscribes with `hello`: the channel broadcasts right after its stream went live.
    async fn subscribe_hello(&mut self, stream: &str);
    /// Sends `unsubscribe` for the `hello` subscription of `stream`.
    async fn unsubscribe_hello(&mut self, stream: &str);
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

    async fn unsubscribe_hello(&mut self, stream: &str) {
        self.send_unsubscribe(&hello_identifier(stream)).await;
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
