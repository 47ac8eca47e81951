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

use actioncable::testing::{TestCable, TestConnection};
use actioncable::{Cable, Channel, ChannelContext, ChannelError, Identity, NoParams, async_trait};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
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

criterion_group!(benches, fanout);
criterion_main!(benches);
