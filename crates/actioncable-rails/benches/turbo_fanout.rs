//! A Turbo Stream broadcast costs what any broadcast costs
//! (`cargo bench -p actioncable-rails --bench turbo_fanout`).
//!
//! The Turbo Stream's HTML is rendered once by the broadcaster; `Turbo::StreamsChannel`
//! subscribers get it through a plain `stream_from`, with no work per subscriber. This runs one
//! broadcast of the same rendered `append` to 10,000 `Turbo::StreamsChannel` subscribers and
//! to 10,000 subscribers of a channel of the app's own, through the server's hub and outboxes
//! without sockets (as `actioncable`'s own `fanout` bench does); the two should be equal.

use actioncable::testing::{TestCable, TestConnection};
use actioncable::{Cable, Channel, ChannelContext, ChannelError, Identity, NoParams, async_trait};
use actioncable_rails::{Html, KeyDigest, StreamsChannel, TurboStream, TurboStreams};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;

const STREAM: &str = "gid://bcx/Room/1:messages";
const SUBSCRIBERS: usize = 10_000;

struct State {
    turbo: TurboStreams,
}

impl AsRef<TurboStreams> for State {
    fn as_ref(&self) -> &TurboStreams {
        &self.turbo
    }
}

/// The same stream, subscribed to through a channel of the app's own.
struct Plain;

#[async_trait]
impl Channel<State> for Plain {
    const CLASS: &'static str = "RoomChannel";
    type Params = NoParams;
    type Action = NoParams;

    async fn subscribed(
        ctx: &mut ChannelContext<State>,
        _: NoParams,
    ) -> Result<Self, ChannelError> {
        ctx.stream_from(STREAM).await?;
        Ok(Plain)
    }
}

fn turbo_fanout(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let turbo = TurboStreams::from_secret_key_base("a secret_key_base", KeyDigest::Sha256)
        .expect("a verifier");
    let signed = turbo.signed_stream_name(STREAM);
    let message = TurboStream::append(
        "messages",
        Html::trusted(r#"<div id="message_1"><b>alice</b>: hello &amp; welcome</div>"#),
    );
    let mut group = c.benchmark_group("turbo_fanout");
    group.sample_size(20);
    group.throughput(Throughput::Elements(SUBSCRIBERS as u64));
    for kind in ["Turbo::StreamsChannel", "RoomChannel"] {
        let (cable, conns): (TestCable<State>, Vec<TestConnection<State>>) =
            runtime.block_on(async {
                let builder = Cable::builder_with_state(State {
                    turbo: turbo.clone(),
                })
                .channel::<StreamsChannel>()
                .channel::<Plain>();
                let cable = TestCable::new(builder).expect("a cable");
                let mut conns = Vec::with_capacity(SUBSCRIBERS);
                for _ in 0..SUBSCRIBERS {
                    let conn = cable.connect_as(Identity::anonymous()).await;
                    let sub = if kind == "RoomChannel" {
                        conn.subscribe::<Plain>(json!({})).await
                    } else {
                        conn.subscribe::<StreamsChannel>(json!({ "signed_stream_name": signed }))
                            .await
                    };
                    assert!(sub.is_confirmed());
                    conn.clear_frames();
                    conns.push(conn);
                }
                (cable, conns)
            });
        let handle = cable.handle();
        group.bench_with_input(BenchmarkId::new(kind, SUBSCRIBERS), &kind, |b, _| {
            b.iter(|| {
                runtime.block_on(async {
                    handle
                        .broadcast(STREAM, &message)
                        .await
                        .expect("the broadcast is accepted");
                });
                for conn in &conns {
                    conn.clear_frames();
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, turbo_fanout);
criterion_main!(benches);
