//! Micro-benchmarks of the wire protocol on the hot path: decoding a client's command and
//! encoding what the server sends (`cargo bench -p actioncable --bench protocol`).
//!
//! The frames are the load benchmark's (`cable-bench` against the websocket-shootout
//! `BenchmarkChannel`), plus a 1 KiB payload to show how the cost grows with size.

use actioncable::protocol::{Command, DisconnectReason, ServerMessage, encode_data, raw_json};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

const IDENTIFIER: &str = r#"{"channel":"BenchmarkChannel"}"#;

/// The data of one `broadcast` action, as `cable-bench` sends it, with `pad` bytes of padding.
fn bench_data(pad: usize) -> String {
    let mut payload = serde_json::json!({ "sender": 3, "seq": 1234, "sent_ns": 987_654_321_u64 });
    if pad > 0 {
        payload["pad"] = "x".repeat(pad).into();
    }
    serde_json::json!({ "action": "broadcast", "payload": payload }).to_string()
}

/// A `message` command carrying `data`, as the stock consumer encodes it.
fn message_frame(data: &str) -> String {
    serde_json::json!({ "command": "message", "identifier": IDENTIFIER, "data": data }).to_string()
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    let subscribe =
        serde_json::json!({ "command": "subscribe", "identifier": IDENTIFIER }).to_string();
    group.throughput(Throughput::Bytes(subscribe.len() as u64));
    group.bench_function("subscribe", |b| {
        b.iter(|| Command::decode(black_box(&subscribe)))
    });
    for pad in [0, 1024] {
        let frame = message_frame(&bench_data(pad));
        group.throughput(Throughput::Bytes(frame.len() as u64));
        group.bench_with_input(
            BenchmarkId::new("message", format!("{}B", frame.len())),
            &frame,
            |b, frame| b.iter(|| Command::decode(black_box(frame))),
        );
    }
    group.bench_function("not_json", |b| {
        b.iter(|| Command::decode(black_box("{\"command\":\"message\",")))
    });
    group.finish();
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    group.bench_function("welcome", |b| {
        b.iter(|| black_box(ServerMessage::WELCOME).encode())
    });
    group.bench_function("ping", |b| {
        b.iter(|| ServerMessage::ping(black_box(1_724_310_000)).encode())
    });
    group.bench_function("confirm_subscription", |b| {
        b.iter(|| {
            ServerMessage::Confirm {
                identifier: black_box(IDENTIFIER),
            }
            .encode()
        })
    });
    group.bench_function("disconnect", |b| {
        b.iter(|| ServerMessage::disconnect(black_box(DisconnectReason::TooSlow), true).encode())
    });
    for pad in [0, 1024] {
        let data = bench_data(pad);
        group.throughput(Throughput::Bytes(data.len() as u64));
        // A broadcast's payload is checked to be JSON once (`raw_json`), then wrapped once per
        // identifier listening to the stream (`encode_data`): the frame every subscriber with
        // that identifier shares.
        group.bench_with_input(
            BenchmarkId::new("raw_json", format!("{}B", data.len())),
            &data,
            |b, data| b.iter(|| raw_json(black_box(data)).map(|raw| raw.get().len())),
        );
        let raw = match raw_json(&data) {
            Ok(raw) => raw,
            Err(e) => panic!("the benchmark's own data is JSON: {e}"),
        };
        group.bench_with_input(
            BenchmarkId::new("data_frame", format!("{}B", data.len())),
            raw,
            |b, raw| b.iter(|| encode_data(black_box(IDENTIFIER), black_box(raw))),
        );
    }
    group.finish();
}

criterion_group!(benches, decode, encode);
criterion_main!(benches);
