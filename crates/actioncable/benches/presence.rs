//! Presence and whisper against a broadcast, in one run, to a room of 1,000 extended-protocol
//! subscribers through the server's own dispatcher, hub and outboxes, without sockets
//! (`cargo bench -p actioncable --bench presence`).
//!
//! - `broadcast/plain_stream`: a broadcast to a stream opened without presence or whisper;
//! - `broadcast/presence_stream`: the same broadcast to a stream opened with both: presence
//!   bookkeeping must add nothing per message;
//! - `whisper`: one subscriber's `whisper` command, reaching the 999 others;
//! - `presence_join_leave`: one subscriber's `join` then `leave`, two events to all 1,000.
//!
//! Each iteration empties every outbox afterwards, as the sessions' writers would (the
//! fan-out benchmark does the same).

use actioncable::testing::{TestCable, TestConnection};
use actioncable::{
    Cable, Channel, ChannelContext, ChannelError, Identity, StreamOptions, async_trait,
};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde::Deserialize;
use serde_json::json;

const ROOM: usize = 1_000;

struct Room;

#[derive(Deserialize)]
struct RoomParams {
    presence: bool,
}

#[async_trait]
impl Channel for Room {
    const CLASS: &'static str = "RoomChannel";
    type Params = RoomParams;
    type Action = actioncable::NoParams;

    async fn subscribed(ctx: &mut ChannelContext, p: RoomParams) -> Result<Self, ChannelError> {
        let (stream, options) = if p.presence {
            ("room", StreamOptions::new().presence(true).whisper(true))
        } else {
            ("plain", StreamOptions::new())
        };
        ctx.stream_from_with_options(stream, options).await?;
        Ok(Room)
    }
}

fn room(
    runtime: &tokio::runtime::Runtime,
    presence: bool,
) -> (TestCable, Vec<TestConnection>, String) {
    runtime.block_on(async {
        let cable = TestCable::new(Cable::builder().channel::<Room>()).expect("a cable");
        let mut conns = Vec::with_capacity(ROOM);
        let mut identifier = String::new();
        for _ in 0..ROOM {
            let conn = cable.connect_ext_as(Identity::anonymous()).await;
            let sub = conn
                .subscribe::<Room>(json!({ "presence": presence }))
                .await;
            assert!(sub.is_confirmed());
            identifier = sub.identifier().to_owned();
            conn.clear_frames();
            conns.push(conn);
        }
        (cable, conns, identifier)
    })
}

fn presence(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let payload = json!({ "sender": 3, "seq": 1234, "sent_ns": 987_654_321_u64 }).to_string();
    let mut group = c.benchmark_group("room_of_1000");
    group.sample_size(30);
    group.throughput(Throughput::Elements(ROOM as u64));

    let (plain_cable, plain_conns, _) = room(&runtime, false);
    let (cable, conns, identifier) = room(&runtime, true);
    let clear = |conns: &[TestConnection]| {
        for conn in conns {
            conn.clear_frames();
        }
    };
    for (case, cable, conns, stream) in [
        ("plain_stream", &plain_cable, &plain_conns, "plain"),
        ("presence_stream", &cable, &conns, "room"),
    ] {
        let handle = cable.handle();
        group.bench_function(BenchmarkId::new("broadcast", case), |b| {
            b.iter(|| {
                runtime.block_on(async {
                    handle
                        .broadcast_json(stream, &payload)
                        .await
                        .expect("accepted");
                });
                clear(conns);
            })
        });
    }

    let whisper =
        json!({ "command": "whisper", "identifier": identifier, "data": { "typing": "ann" } })
            .to_string();
    group.bench_function("whisper", |b| {
        b.iter(|| {
            runtime.block_on(conns[0].send_frame(&whisper));
            clear(&conns);
        })
    });

    let join = json!({ "command": "join", "identifier": identifier, "presence": { "id": "ann", "info": { "name": "Ann" } } })
        .to_string();
    let leave = json!({ "command": "leave", "identifier": identifier }).to_string();
    group.bench_function("presence_join_leave", |b| {
        b.iter(|| {
            runtime.block_on(async {
                conns[0].send_frame(&join).await;
                conns[0].send_frame(&leave).await;
            });
            clear(&conns);
        })
    });
    // Every subscriber got the events: a bench that measured nothing would fail here.
    runtime.block_on(conns[0].send_frame(&join));
    assert!(
        conns[ROOM - 1]
            .frames()
            .iter()
            .any(|f| f["type"] == "presence"),
        "the join reached the room"
    );
    group.finish();
}

criterion_group!(benches, presence);
criterion_main!(benches);
