//! Fan-out: one broadcast to N subscribers of a stream, through the server's own hub and
//! outboxes, without sockets (`cargo bench -p actioncable --bench fanout`).
//!
//! Each iteration broadcasts one message through the in-memory adapter — the JSON check, one
//! encoding per identifier, a shared frame pushed into every subscriber's bounded outbox — and
//! then empties every outbox, as the sessions' writers would. What a socket write costs on top
//! is in the load benchmark (`cable-bench`), not here.
//!
//! Three cases per size: history off (the default), history on with stock-protocol subscribers
//! (each broadcast is also kept, with its position), and history on with extended-protocol
//! subscribers (their frames carry the position, and the hub notes it per subscriber).
//!
//! `replay`: what a returning extended-protocol client costs — its `subscribe` with a `history`
//! request for a stream's 100 kept messages, answered with the confirmation, the 100 frames in
//! order and `confirm_history` (a new connection per iteration, made outside the measurement).

use actioncable::testing::{TestCable, TestConnection};
use actioncable::{Cable, Channel, ChannelContext, ChannelError, Identity, NoParams, async_trait};
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;

struct Bench;

#[async_trait]
impl Channel for Bench {
    const CLASS: &'static str = "BenchmarkChannel";
    type Params = NoParams;
    type Action = NoParams;

    async fn subscribed(ctx: &mut ChannelContext, _: NoParams) -> Result<Self, ChannelError> {
        ctx.stream_from("all").await?;
        Ok(Bench)
    }
}

fn fanout(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let mut group = c.benchmark_group("fanout");
    group.sample_size(20);
    let payload = json!({ "sender": 3, "seq": 1234, "sent_ns": 987_654_321_u64 }).to_string();
    let cases = [
        ("history_off", false, false),
        ("history_on", true, false),
        ("history_on_ext", true, true),
    ];
    for n in [100_usize, 1_000, 10_000] {
        for (case, history, ext) in cases {
            let (cable, conns): (TestCable, Vec<TestConnection>) = runtime.block_on(async {
                let cable = TestCable::new(Cable::builder().history(history).channel::<Bench>())
                    .expect("a cable");
                let mut conns = Vec::with_capacity(n);
                for _ in 0..n {
                    let conn = if ext {
                        cable.connect_ext_as(Identity::anonymous()).await
                    } else {
                        cable.connect_as(Identity::anonymous()).await
                    };
                    let sub = conn.subscribe::<Bench>(json!({})).await;
                    assert!(sub.is_confirmed());
                    conn.clear_frames();
                    conns.push(conn);
                }
                (cable, conns)
            });
            let handle = cable.handle();
            group.throughput(Throughput::Elements(n as u64));
            group.bench_with_input(BenchmarkId::new(case, n), &n, |b, _| {
                b.iter(|| {
                    runtime.block_on(async {
                        handle
                            .broadcast_json("all", &payload)
                            .await
                            .expect("the broadcast is accepted");
                    });
                    for conn in &conns {
                        conn.clear_frames();
                    }
                })
            });
        }
    }
    group.finish();
}

fn replay(c: &mut Criterion) {
    const KEPT: u64 = 100;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let (cable, subscribe) = runtime.block_on(async {
        let cable =
            TestCable::new(Cable::builder().history(true).channel::<Bench>()).expect("a cable");
        let first = cable.connect_ext_as(Identity::anonymous()).await;
        let sub = first.subscribe::<Bench>(json!({})).await;
        assert!(sub.is_confirmed());
        first.clear_frames();
        let handle = cable.handle();
        for seq in 0..KEPT {
            let payload = json!({ "sender": 3, "seq": seq, "sent_ns": 987_654_321_u64 });
            handle.broadcast("all", &payload).await.expect("kept");
        }
        first.settle().await;
        let frames = first.frames();
        let kept = frames
            .iter()
            .find(|f| f.get("offset").is_some())
            .expect("a kept message with its position");
        // A client that comes back having seen nothing after the one before the first kept
        // message: all 100 are replayed after its confirmation.
        let subscribe = json!({
            "command": "subscribe",
            "identifier": sub.identifier(),
            "history": { "streams": { "all": {
                "epoch": kept["epoch"],
                "offset": kept["offset"].as_u64().expect("an offset") - 1,
            } } },
        })
        .to_string();
        (cable, subscribe)
    });
    let mut group = c.benchmark_group("replay");
    group.sample_size(50);
    group.throughput(Throughput::Elements(KEPT));
    group.bench_function("subscribe_with_history_100", |b| {
        b.iter_batched(
            || runtime.block_on(cable.connect_ext_as(Identity::anonymous())),
            |conn| {
                runtime.block_on(async {
                    conn.send_frame(&subscribe).await;
                    conn.settle().await;
                });
                // confirm_subscription, the 100, confirm_history (a ping may come too).
                let frames = conn.frames();
                let answered = frames.iter().filter(|f| f.get("identifier").is_some());
                assert_eq!(answered.count() as u64, KEPT + 2, "{:?}", frames.last());
                conn
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, fanout, replay);
criterion_main!(benches);
