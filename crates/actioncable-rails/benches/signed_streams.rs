//! What a subscription to a signed stream costs the server: verifying the name a page sends
//! (`cargo bench -p actioncable-rails --bench signed_streams`).
//!
//! `Turbo::StreamsChannel` verifies once per subscribe: HMAC-SHA256 over the Base64 data, a
//! constant-time compare, Base64 decoding and a JSON parse. Signing is what a page render
//! costs. Deriving the key (PBKDF2, 1,000 iterations) happens once per process and is shown for
//! scale.

use actioncable::GlobalId;
use actioncable_rails::KeyDigest;
use actioncable_rails::turbo::{TurboStreams, stream_name_from};
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;

fn signed_streams(c: &mut Criterion) {
    let turbo = TurboStreams::from_secret_key_base("a secret_key_base", KeyDigest::Sha256)
        .expect("a verifier");
    // A typical Turbo name: a record's GlobalID param and a collection.
    let name = stream_name_from(&[&GlobalId::new("bcx", "Account", 123_456), &"entries"]);
    let signed = turbo.signed_stream_name(&name);
    let forged = format!("{}0", &signed[..signed.len() - 1]);

    let mut group = c.benchmark_group("turbo");
    group.bench_function("verified_stream_name", |b| {
        b.iter(|| turbo.verified_stream_name(black_box(&signed)))
    });
    group.bench_function("verified_stream_name (forged)", |b| {
        b.iter(|| turbo.verified_stream_name(black_box(&forged)))
    });
    group.bench_function("signed_stream_name", |b| {
        b.iter(|| turbo.signed_stream_name(black_box(&name)))
    });
    group.sample_size(20);
    group.bench_function("from_secret_key_base (PBKDF2)", |b| {
        b.iter(|| {
            TurboStreams::from_secret_key_base(black_box("a secret_key_base"), KeyDigest::Sha256)
        })
    });
    group.finish();
}

criterion_group!(benches, signed_streams);
criterion_main!(benches);
