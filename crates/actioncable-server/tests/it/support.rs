//! What the modules share: starting the binary, running it to a refusal, Rails' Ruby side.

use cable_test_support::{ServerProcess, WAIT, run_json_script};
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_actioncable-server");

/// A Rails-like `secret_key_base` (128 hex digits, as `bin/rails secret` prints).
pub(crate) const SECRET_KEY_BASE: &str = "3b7cd727ee24e8444053437c36cc66c4f9a2e4a7a1d2c1c8b5e0a6b8f7d1c2e3\
                                          a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8";

/// The Redis every test machine runs (`scripts/test.sh` starts one if none answers); tests that
/// use it take a channel prefix of their own ([`unique_prefix`]).
pub(crate) const REDIS_URL: &str = "redis://127.0.0.1:6379/1";

/// The settings a test may set; every one is removed from a refused run's environment so the
/// machine's own (a `REDIS_URL`, say) cannot change what is tested.
const SETTINGS: &[&str] = &[
    "PORT",
    "BIND",
    "CABLE_PATH",
    "CABLE_SSE_PATH",
    "CABLE_ADAPTER",
    "REDIS_URL",
    "DATABASE_URL",
    "CABLE_DATABASE_URL",
    "NATS_URL",
    "ANYCABLE_NATS_SERVERS",
    "ANYCABLE_NATS_CHANNEL",
    "SOLID_CABLE_POLLING_INTERVAL",
    "SOLID_CABLE_MESSAGE_RETENTION",
    "SOLID_CABLE_AUTOTRIM",
    "CABLE_CHANNEL_PREFIX",
    "REDIS_SENTINELS",
    "REDIS_SENTINEL_MASTER",
    "ALLOWED_ORIGINS",
    "SECRET_KEY_BASE",
    "RAILS_KEY_DIGEST",
    "TURBO_STREAMS_SECRET",
    "CABLE_STREAMS_SECRET",
    "CABLE_PUBLIC_STREAMS",
    "CABLE_HISTORY",
    "CABLE_AUTH_COOKIE",
    "CABLE_AUTH_SESSION",
    "CABLE_JWT_SECRET",
    "CABLE_IDENTIFIER",
    "CABLE_IDENTIFIER_GID",
    "CABLE_BROADCAST_KEY",
];

/// The binary with `env` over a base of `SECRET_KEY_BASE` and the memory adapter (so a Redis
/// named by the machine's environment is not used unless the test names one).
pub(crate) fn start(env: &[(&str, &str)]) -> ServerProcess {
    let mut all = vec![
        ("SECRET_KEY_BASE", SECRET_KEY_BASE),
        ("CABLE_ADAPTER", "memory"),
        ("BIND", "127.0.0.1"),
    ];
    all.extend_from_slice(env);
    ServerProcess::start(BIN, &all)
}

/// Runs the binary with exactly `env` (and `PORT=0`) and `args` until it exits, which it must
/// do within [`WAIT`]; returns its status and its output (stdout and stderr).
pub(crate) fn run_to_exit(env: &[(&str, &str)], args: &[&str]) -> (ExitStatus, String) {
    let mut command = Command::new(BIN);
    for name in SETTINGS {
        command.env_remove(name);
    }
    let stderr_path = std::env::temp_dir().join(format!(
        "actioncable-server-test-{}-{}.stderr",
        std::process::id(),
        cable_test_support::spare_port()
    ));
    let stderr = std::fs::File::create(&stderr_path).expect("a file for stderr");
    let mut child = command
        .env("PORT", "0")
        .env("BIND", "127.0.0.1")
        .envs(env.iter().copied())
        .args(args)
        .stdin(Stdio::null())
        .stdout(stderr.try_clone().expect("share the output file"))
        .stderr(stderr)
        .spawn()
        .expect("start the binary");
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the binary") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the binary did not exit within {WAIT:?} with {env:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let _ = std::fs::remove_file(&stderr_path);
    (status, output)
}

/// A channel prefix no other test (or run) uses, for tests on a shared Redis.
pub(crate) fn unique_prefix(test: &str) -> String {
    format!(
        "acs-test-{test}-{}-{}",
        std::process::id(),
        cable_test_support::spare_port()
    )
}

/// Rails' side of a test: `tests/ruby/rails.rb`, Rails' own code (Debian's ruby-actioncable
/// 6.1), with one app's settings.
#[derive(Debug, Clone)]
pub(crate) struct Rails {
    config: Value,
}

/// What rails.rb needs installed.
const RUBY_PACKAGES: &str = "ruby ruby-actioncable ruby-redis ruby-globalid";

impl Rails {
    /// An app with [`SECRET_KEY_BASE`], Rails 7.0+'s SHA256 key generator, and no Redis prefix.
    pub(crate) fn app() -> Rails {
        Rails {
            config: json!({
                "secret_key_base": SECRET_KEY_BASE,
                "key_digest": "sha256",
                "redis_url": REDIS_URL,
            }),
        }
    }

    /// The same app with one setting changed (`key_digest`, `turbo_streams_secret`, …).
    pub(crate) fn with(&self, setting: &str, value: &str) -> Rails {
        let mut other = self.clone();
        other.config[setting] = Value::from(value);
        other
    }

    fn run(&self, command: &str, mut request: Value, answer: &str) -> String {
        request["command"] = Value::from(command);
        request["config"] = self.config.clone();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ruby/rails.rb");
        let script = script.to_str().expect("a UTF-8 path");
        let reply = run_json_script("ruby", script, &request, RUBY_PACKAGES);
        match reply[answer].as_str() {
            Some(text) => text.to_owned(),
            None => panic!("rails.rb {command}: no {answer} in {reply}"),
        }
    }

    /// `ActionCable.server.broadcast(stream, message)` on Redis; the JSON text Rails published.
    pub(crate) fn broadcast(&self, stream: &str, message: &Value) -> String {
        self.run(
            "broadcast",
            json!({ "stream": stream, "message": message }),
            "payload",
        )
    }

    /// `ActionCable.server.remote_connections.where(identifier => value).disconnect`, `value`
    /// a GlobalID record when it is `gid://…`; the connection identifier Rails addressed.
    pub(crate) fn disconnect(&self, identifier: &str, value: &str) -> String {
        self.run(
            "disconnect",
            json!({ "identifier": identifier, "value": value }),
            "connection_identifier",
        )
    }

    /// Turbo's signed stream name for `name` (turbo-rails' two calls).
    pub(crate) fn turbo_signed(&self, name: &str) -> String {
        self.run("turbo_signed", json!({ "name": name }), "signed")
    }

    /// AnyCable's signed `$pubsub` name for `name`.
    pub(crate) fn pubsub_signed(&self, name: &str) -> String {
        self.run("pubsub_signed", json!({ "name": name }), "signed")
    }

    /// `cookies.encrypted[name] = value`: the `name=value` pair the browser sends back.
    pub(crate) fn encrypted_cookie(&self, name: &str, value: &Value) -> String {
        self.run(
            "encrypted_cookie",
            json!({ "name": name, "value": value }),
            "cookie",
        )
    }

    /// A cookie-store session in cookie `cookie` holding `session`'s keys: the cookie pair.
    pub(crate) fn session_cookie(&self, cookie: &str, session: &Value) -> String {
        self.run(
            "session_cookie",
            json!({ "cookie": cookie, "session": session }),
            "cookie",
        )
    }
}
