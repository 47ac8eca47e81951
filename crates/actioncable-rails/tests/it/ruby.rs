//! Running `tests/ruby/cookies.rb`, and the fixtures it prints (made once per test run).

use std::sync::OnceLock;

use actioncable_rails::{HmacDigest, KeyDigest, KeyGenerator, RailsCookies};
use cable_test_support::run_json_script;
use http::HeaderMap;
use serde_json::Value;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/ruby/cookies.rb");

/// Debian's packages for Rails' own cookie code (6.1).
const INSTALL: &str = "ruby ruby-actionpack ruby-activesupport";

/// Runs the script in `mode` with `input` (a JSON value) and parses what it prints.
pub(crate) fn run(mode: &str, input: Value) -> Value {
    let request = serde_json::json!({ "mode": mode, "input": input });
    run_json_script("ruby", SCRIPT, &request, INSTALL)
}

/// What Rails wrote: `{"cookies": [...], "messages": [...]}`.
pub(crate) fn fixtures() -> &'static Value {
    static FIXTURES: OnceLock<Value> = OnceLock::new();
    FIXTURES.get_or_init(|| run("fixtures", Value::Null))
}

/// The fixtures of `kind` ("cookies" or "messages") for which `keep` holds.
pub(crate) fn select(kind: &str, keep: impl Fn(&Value) -> bool) -> Vec<&'static Value> {
    let all = fixtures()[kind].as_array().expect("a list of fixtures");
    let picked: Vec<_> = all.iter().filter(|f| keep(f)).collect();
    assert!(!picked.is_empty(), "no {kind} fixture selected");
    picked
}

pub(crate) fn str_of<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} in {value}"))
}

pub(crate) fn key_digest(name: &str) -> KeyDigest {
    match name {
        "SHA1" => KeyDigest::Sha1,
        "SHA256" => KeyDigest::Sha256,
        other => panic!("key digest {other}"),
    }
}

pub(crate) fn hmac_digest(name: &str) -> HmacDigest {
    match name {
        "SHA1" => HmacDigest::Sha1,
        "SHA256" => HmacDigest::Sha256,
        other => panic!("signed digest {other}"),
    }
}

/// The app's cookie keys as a fixture's `config` describes them (no rotations).
pub(crate) fn cookies_for(config: &Value) -> RailsCookies {
    RailsCookies::new(
        str_of(config, "secret"),
        key_digest(str_of(config, "key_digest")),
    )
    .expect("a secret")
    .signed_cookie_digest(hmac_digest(str_of(config, "signed_digest")))
}

pub(crate) fn key_generator(config: &Value) -> KeyGenerator {
    KeyGenerator::new(
        str_of(config, "secret"),
        key_digest(str_of(config, "key_digest")),
    )
    .expect("a secret")
}

/// A request carrying `cookie` (`name=value`, as in the Set-Cookie) among other cookies.
pub(crate) fn request_with(cookie: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let header = format!("_ga=GA1.1.42; {cookie}; theme=dark");
    headers.insert(http::header::COOKIE, header.parse().expect("a header"));
    headers
}
