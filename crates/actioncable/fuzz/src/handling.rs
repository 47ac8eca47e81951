//! The connection's command handling under arbitrary client input.
//!
//! One input is a sequence of text frames, one per line, sent by one client to a cable with a
//! few channels that stream, transmit, fail, panic, run timers, end their own subscription
//! and broadcast past their sender. The line `tick` moves the (paused) clock by one second
//! instead. Everything runs through the server's own command code via `actioncable::testing`.
//!
//! The channels return errors but never panic: libFuzzer aborts on any panic, caught or not
//! (the server's containment of channel panics has its own tests).
//!
//! Invariants, checked after every input:
//! - nothing panics;
//! - every frame sent to the client is JSON of a known shape;
//! - every well-formed `subscribe` to a registered channel got an answer;
//! - after the client disconnects, no connection, stream, subscription or timer is left.

use actioncable::AnyAction;
use actioncable::testing::TestCable;
use actioncable::{Cable, Channel, ChannelContext, ChannelError, Identity, async_trait};
use serde_json::{Value, json};
use std::time::Duration;

/// Frames per input, at most (longer inputs are cut).
const MAX_FRAMES: usize = 64;

struct Fuzzed;

#[async_trait]
impl Channel for Fuzzed {
    const CLASS: &'static str = "Fuzzed";
    type Params = Value;
    type Action = AnyAction;

    async fn subscribed(ctx: &mut ChannelContext, params: Value) -> Result<Self, ChannelError> {
        if params["reject"] == true {
            return Err(ChannelError::reject());
        }
        if let Some(stream) = params["stream"].as_str() {
            ctx.stream_from(format!("fuzz:{stream}")).await?;
        }
        if params["filtered"] == true {
            ctx.stream_from_with("fuzz:filtered", |m| m.get("keep").cloned())
                .await?;
        }
        if params["timer"] == true {
            ctx.periodically("tick", Duration::from_millis(500));
        }
        if params["fail"] == true {
            return Err(ChannelError::msg("subscribe failed on purpose"));
        }
        Ok(Fuzzed)
    }

    async fn perform(
        &mut self,
        ctx: &mut ChannelContext,
        action: AnyAction,
    ) -> Result<(), ChannelError> {
        let arg = action
            .data
            .get("arg")
            .and_then(Value::as_str)
            .unwrap_or("x");
        match action.name.as_str() {
            "echo" => ctx.transmit(&Value::Object(action.data.clone()))?,
            "fail" => return Err(ChannelError::msg("failed on purpose")),
            "fail_hard" => return Err(ChannelError::msg("not rescued")),
            "stream" => ctx.stream_from(format!("fuzz:{arg}")).await?,
            "stop" => ctx.stop_stream_from(&format!("fuzz:{arg}")).await,
            "stop_all" => ctx.stop_all_streams().await,
            "broadcast" => ctx.broadcast(format!("fuzz:{arg}"), &action.data).await?,
            "shout" => {
                ctx.broadcast_except_self(format!("fuzz:{arg}"), &action.data)
                    .await?
            }
            "leave" => ctx.unsubscribe(),
            "timer" => ctx.periodically("tick", Duration::from_millis(300)),
            "untimer" => ctx.stop_periodic("tick"),
            "note" => ctx.connection().transmit(&json!({ "type": "note" }))?,
            _ => return Err(ChannelError::msg("unknown action")),
        }
        Ok(())
    }

    async fn receive(&mut self, ctx: &mut ChannelContext, data: Value) -> Result<(), ChannelError> {
        ctx.transmit(&json!({ "received": data }))
    }

    async fn periodic(
        &mut self,
        ctx: &mut ChannelContext,
        timer: &'static str,
    ) -> Result<(), ChannelError> {
        ctx.transmit(&json!({ "timer": timer }))
    }

    async fn rescue(
        &mut self,
        ctx: &mut ChannelContext,
        action: &str,
        error: ChannelError,
    ) -> Result<(), ChannelError> {
        if action == "fail" {
            return ctx.transmit(&json!({ "error": error.to_string() }));
        }
        Err(error)
    }
}

fn runtime() -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("no runtime: {e}"),
    }
}

/// Runs one input; panics when an invariant breaks.
pub fn command_handling(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let frames: Vec<&str> = text.split('\n').take(MAX_FRAMES).collect();
    runtime().block_on(run(&frames));
}

async fn run(frames: &[&str]) {
    let cable = match TestCable::new(Cable::builder().channel::<Fuzzed>().max_subscriptions(8)) {
        Ok(cable) => cable,
        Err(e) => panic!("the fuzz cable does not build: {e}"),
    };
    let handle = cable.handle();
    let conn = cable.connect_as(Identity::new("user", "fuzz")).await;
    let watcher = cable.connect_as(Identity::new("user", "watcher")).await;
    let _watching = watcher
        .subscribe::<Fuzzed>(json!({ "stream": "x", "filtered": true }))
        .await;

    let mut subscribed = Vec::new();
    for frame in frames {
        if *frame == "tick" {
            conn.advance(Duration::from_secs(1)).await;
            continue;
        }
        conn.send_frame(frame).await;
        if let Ok(actioncable::protocol::Command::Subscribe { identifier }) =
            actioncable::protocol::Command::decode(frame)
        {
            subscribed.push(identifier);
        }
    }

    let sent = conn.frames();
    for frame in &sent {
        assert!(known_shape(frame), "a frame of unknown shape: {frame}");
    }
    for identifier in &subscribed {
        let answered = sent.iter().any(|f| {
            f["identifier"] == identifier.as_str()
                && matches!(
                    f["type"].as_str(),
                    Some("confirm_subscription" | "reject_subscription")
                )
        });
        assert!(answered, "subscribe {identifier:?} got no answer");
    }
    assert!(
        handle
            .connections()
            .iter()
            .all(|c| c.subscriptions.len() <= 8)
    );

    conn.disconnect().await;
    watcher.disconnect().await;
    assert_eq!(handle.connection_count(), 0, "a connection leaked");
    assert_eq!(handle.stream_count(), 0, "a stream leaked");
}

fn known_shape(frame: &Value) -> bool {
    let Some(map) = frame.as_object() else {
        return false;
    };
    match map.get("type").and_then(Value::as_str) {
        Some("confirm_subscription" | "reject_subscription") => map["identifier"].is_string(),
        Some("ping") => map["message"].is_u64(),
        Some("note") => true,
        Some("disconnect") => map["reason"].is_string(),
        Some(_) => false,
        None => map.get("identifier").is_some_and(Value::is_string) && map.contains_key("message"),
    }
}
