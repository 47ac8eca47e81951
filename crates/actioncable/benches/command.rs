//! One command from its frame to its reply, without sockets (`cargo bench -p actioncable --bench
//! command`): the frame decoded (`Command::decode`), the subscription found by its identifier,
//! the action's data parsed and handed to the channel, and the channel's `transmit` encoded into
//! the connection's outbox, which is then emptied as the session's writer would. What the socket
//! and the session's loop cost on top is in the load benchmark (`cable-bench echo`), not here.
//!
//! Cases: the websocket-shootout `echo` (its data an `AnyAction`, sent back whole) with the
//! load benchmark's payload and with 1 KiB more; a typed action (a serde enum) that transmits
//! a small reply; and a frame for a subscription the connection does not have (refused).

use actioncable::testing::{TestCable, TestConnection};
use actioncable::{
    AnyAction, Cable, Channel, ChannelContext, ChannelError, Identity, NoParams, async_trait,
};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde::Deserialize;
use serde_json::json;

/// `BenchmarkChannel`'s `echo`: the data back as it came.
struct Echo;

#[async_trait]
impl Channel for Echo {
    const CLASS: &'static str = "BenchmarkChannel";
    type Params = NoParams;
    type Action = AnyAction;

    async fn subscribed(_: &mut ChannelContext, _: NoParams) -> Result<Self, ChannelError> {
        Ok(Echo)
    }

    async fn perform(
        &mut self,
        ctx: &mut ChannelContext,
        action: AnyAction,
    ) -> Result<(), ChannelError> {
        ctx.transmit(&action.data)
    }
}

/// A channel with typed actions, as an app writes one.
struct Chat;

#[derive(Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
enum ChatAction {
    Speak { text: String },
}

#[async_trait]
impl Channel for Chat {
    const CLASS: &'static str = "ChatChannel";
    type Params = NoParams;
    type Action = ChatAction;

    async fn subscribed(_: &mut ChannelContext, _: NoParams) -> Result<Self, ChannelError> {
        Ok(Chat)
    }

    async fn perform(
        &mut self,
        ctx: &mut ChannelContext,
        action: ChatAction,
    ) -> Result<(), ChannelError> {
        let ChatAction::Speak { text } = action;
        ctx.transmit(&json!({ "said": text.len() }))
    }
}

/// A `message` frame for `identifier` carrying `data`, as the stock consumer encodes it.
fn message_frame(identifier: &str, data: &serde_json::Value) -> String {
    json!({ "command": "message", "identifier": identifier, "data": data.to_string() }).to_string()
}

fn command(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let (_cable, conn): (TestCable, TestConnection) = runtime.block_on(async {
        let cable =
            TestCable::new(Cable::builder().channel::<Echo>().channel::<Chat>()).expect("a cable");
        let conn = cable.connect_as(Identity::anonymous()).await;
        assert!(conn.subscribe::<Echo>(json!({})).await.is_confirmed());
        assert!(conn.subscribe::<Chat>(json!({})).await.is_confirmed());
        conn.clear_frames();
        (cable, conn)
    });
    let echo_id = json!({ "channel": "BenchmarkChannel" }).to_string();
    let chat_id = json!({ "channel": "ChatChannel" }).to_string();
    let payload = |pad: usize| {
        let mut payload = json!({ "sender": 3, "seq": 1234, "sent_ns": 987_654_321_u64 });
        if pad > 0 {
            payload["pad"] = "x".repeat(pad).into();
        }
        json!({ "action": "echo", "payload": payload })
    };
    let cases = [
        ("echo", message_frame(&echo_id, &payload(0))),
        ("echo", message_frame(&echo_id, &payload(1024))),
        (
            "typed_action",
            message_frame(
                &chat_id,
                &json!({ "action": "speak", "text": "hello, room" }),
            ),
        ),
        (
            "no_subscription",
            message_frame(r#"{"channel":"Nope"}"#, &payload(0)),
        ),
    ];
    // Every case answers as it should before it is timed.
    runtime.block_on(async {
        for (case, frame) in &cases {
            conn.send_frame(frame).await;
            conn.settle().await;
            let frames = conn.frames();
            let expected = usize::from(*case != "no_subscription");
            assert_eq!(frames.len(), expected, "{case}: {frames:?}");
            conn.clear_frames();
        }
    });
    let mut group = c.benchmark_group("command");
    for (case, frame) in &cases {
        group.throughput(Throughput::Bytes(frame.len() as u64));
        group.bench_with_input(
            BenchmarkId::new(*case, format!("{}B", frame.len())),
            frame,
            |b, frame| {
                b.iter(|| {
                    runtime.block_on(conn.send_frame(frame));
                    conn.clear_frames();
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, command);
criterion_main!(benches);
