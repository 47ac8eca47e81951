//! The newer channel features as a client sees them on a real socket: server-side
//! unsubscribe, periodic timers and broadcasts that skip their sender.

use crate::support::*;
use actioncable::AnyAction;
use actioncable::{Cable, Channel, ChannelContext, ChannelError, NoParams, async_trait};
use serde_json::json;
use std::time::Duration;

/// Streams `room`, ticks every 50 ms when asked, leaves or shouts on request.
struct Room {
    ticks: u64,
}

#[async_trait]
impl Channel for Room {
    const CLASS: &'static str = "Room";
    type Params = serde_json::Value;
    type Action = AnyAction;

    async fn subscribed(
        ctx: &mut ChannelContext,
        params: serde_json::Value,
    ) -> Result<Self, ChannelError> {
        ctx.stream_from("room").await?;
        if params["ticking"] == true {
            ctx.periodically("tick", Duration::from_millis(50));
        }
        Ok(Room { ticks: 0 })
    }

    async fn perform(
        &mut self,
        ctx: &mut ChannelContext,
        action: AnyAction,
    ) -> Result<(), ChannelError> {
        match action.name.as_str() {
            "leave" => ctx.unsubscribe(),
            "shout" => {
                ctx.broadcast_except_self("room", &action.data["text"])
                    .await?
            }
            _ => ctx.transmit(&json!({ "unknown": action.name }))?,
        }
        Ok(())
    }

    async fn periodic(
        &mut self,
        ctx: &mut ChannelContext,
        _: &'static str,
    ) -> Result<(), ChannelError> {
        self.ticks += 1;
        ctx.transmit(&json!({ "tick": self.ticks }))
    }
}

async fn server() -> CableServer {
    spawn_cable(Cable::builder().channel::<Room>().channel::<NoParamsRoom>()).await
}

/// A second channel on the same stream, to show the other subscription is untouched.
struct NoParamsRoom;

#[async_trait]
impl Channel for NoParamsRoom {
    const CLASS: &'static str = "NoParamsRoom";
    type Params = NoParams;
    type Action = AnyAction;

    async fn subscribed(ctx: &mut ChannelContext, _: NoParams) -> Result<Self, ChannelError> {
        ctx.stream_from("room").await?;
        Ok(NoParamsRoom)
    }
}

const ROOM: &str = r#"{"channel":"Room"}"#;
const TICKING: &str = r#"{"channel":"Room","ticking":true}"#;
const OTHER: &str = r#"{"channel":"NoParamsRoom"}"#;

#[tokio::test]
async fn the_server_ends_a_subscription_with_reject_subscription_and_keeps_the_others() {
    let server = server().await;
    let mut client = server.client().await;
    client.confirm(ROOM).await;
    client.confirm(OTHER).await;
    client.perform(ROOM, "leave", json!({})).await;
    client.expect_reject(ROOM).await;
    server
        .handle
        .broadcast("room", &json!("after"))
        .await
        .unwrap();
    client.expect_data(OTHER, &json!("after")).await;
    client.expect_silence(Duration::from_millis(200)).await;
    // The identifier is free again: the client may subscribe anew.
    client.confirm(ROOM).await;
    assert_eq!(server.handle.connections()[0].subscriptions.len(), 2);
}

#[tokio::test]
async fn timers_tick_on_the_socket_and_stop_with_the_subscription() {
    let server = server().await;
    let mut client = server.client().await;
    client.confirm(TICKING).await;
    for n in 1..=3 {
        client.expect_data(TICKING, &json!({ "tick": n })).await;
    }
    client.send_unsubscribe(TICKING).await;
    // A tick may have been queued before the unsubscribe ran; after that, silence.
    tokio::time::sleep(Duration::from_millis(120)).await;
    while let Some(_frame) = client.next_frame(Duration::from_millis(50)).await {}
    client.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn a_shout_reaches_everyone_but_the_sender() {
    let server = server().await;
    let mut alice = server.client().await;
    let mut bob = server.client().await;
    alice.confirm(ROOM).await;
    alice.confirm(OTHER).await;
    bob.confirm(ROOM).await;
    alice.perform(ROOM, "shout", json!({ "text": "hi" })).await;
    bob.expect_data(ROOM, &json!("hi")).await;
    // The whole connection is skipped, all its subscriptions of the stream included.
    alice.expect_silence(Duration::from_millis(200)).await;
}
