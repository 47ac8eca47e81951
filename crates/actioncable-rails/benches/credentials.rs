//! What reading a Rails user costs a `Connection::connect` (`cargo bench -p actioncable-rails
//! --bench credentials`): an encrypted cookie and a signed cookie read from the request's
//! headers, a cookie-store session, and — to show why `RailsCookies` is built once, not per
//! connection — deriving the keys from `secret_key_base` (PBKDF2, 1,000 iterations, twice).

use actioncable_rails::{HmacDigest, KeyDigest, RailsCookies};
use criterion::{Criterion, criterion_group, criterion_main};
use http::HeaderMap;
use serde_json::json;
use std::hint::black_box;

const SECRET_KEY_BASE: &str = "4f0a8e5c2b7d9f1e3a6c8b0d2f4e6a8c0b2d4f6e8a0c2e4b6d8f0a2c4e6b8d0f\
                               1a3c5e7b9d1f3a5c7e9b1d3f5a7c9e1b3d5f7a9c1e3b5d7f9a1c3e5b7d9f1a3c";

fn headers(cookie: String) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::COOKIE,
        cookie.parse().expect("a valid header"),
    );
    headers
}

fn read(c: &mut Criterion) {
    let cookies = RailsCookies::new(SECRET_KEY_BASE, KeyDigest::Sha256)
        .expect("a secret")
        .signed_cookie_digest(HmacDigest::Sha256);
    let encrypted = cookies
        .encrypt_cookie("user_id", &42, None)
        .expect("a cookie");
    let signed = cookies.sign_cookie("user_id", &42, None).expect("a cookie");
    let session = json!({
        "session_id": "5f0c1b9e7a3d2c4b8e6f1a0d9c7b5e3a",
        "_csrf_token": "Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmE=",
        "warden.user.user.key": [[42], "$2a$12$Kz3vQ9mT1xY7bN5cD8eF0u"],
    });
    let session = cookies
        .encrypt_cookie("_myapp_session", &session, None)
        .expect("a cookie");
    // The cookie among others, as a browser sends it.
    let encrypted = headers(format!("_ga=GA1.1.123; user_id={encrypted}; theme=dark"));
    let signed = headers(format!("_ga=GA1.1.123; user_id={signed}; theme=dark"));
    let session = headers(format!("_ga=GA1.1.123; _myapp_session={session}"));

    let mut group = c.benchmark_group("read");
    group.bench_function("encrypted cookie", |b| {
        b.iter(|| {
            cookies
                .jar(black_box(&encrypted))
                .encrypted::<u64>("user_id")
        })
    });
    group.bench_function("signed cookie", |b| {
        b.iter(|| cookies.jar(black_box(&signed)).signed::<u64>("user_id"))
    });
    group.bench_function("cookie-store session", |b| {
        b.iter(|| {
            cookies
                .jar(black_box(&session))
                .session("_myapp_session")
                .map(|s| s.and_then(|s| s.warden_user_key("user")))
        })
    });
    group.finish();
}

fn derive(c: &mut Criterion) {
    let mut group = c.benchmark_group("RailsCookies::new");
    for (name, digest) in [("sha1", KeyDigest::Sha1), ("sha256", KeyDigest::Sha256)] {
        group.bench_function(name, |b| {
            b.iter(|| RailsCookies::new(black_box(SECRET_KEY_BASE), digest))
        });
    }
    group.finish();
}

criterion_group!(benches, read, derive);
criterion_main!(benches);
