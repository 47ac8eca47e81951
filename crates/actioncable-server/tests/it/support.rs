//! What the modules share: starting the binary, running it to a refusal, Rails' Ruby side.

use cable_test_support::{ServerProcess, WAIT};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_actioncable-server");

/// A Rails-like `secret_key_base` (128 hex digits, as `bin/rails secret` prints).
pub(crate) const SECRET_KEY_BASE: &str = "3b7cd727ee24e8444053437c36cc66c4f9a2e4a7a1d2c1c8b5e0a6b8f7d1c2e3\
                                          a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8";

/// The settings a test may set; every one is removed from a refused run's environment so the
/// machine's own (a `REDIS_URL`, say) cannot change what is tested.
const SETTINGS: &[&str] = &[
    "PORT",
    "BIND",
    "CABLE_PATH",
    "CABLE_ADAPTER",
    "REDIS_URL",
    "CABLE_CHANNEL_PREFIX",
    "REDIS_SENTINELS",
    "REDIS_SENTINEL_MASTER",
    "ALLOWED_ORIGINS",
    "SECRET_KEY_BASE",
    "RAILS_KEY_DIGEST",
    "TURBO_STREAMS_SECRET",
    "CABLE_STREAMS_SECRET",
    "CABLE_PUBLIC_STREAMS",
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

/// Runs `tests/ruby/rails.rb` with `args` and `env`: Rails' own code, from Debian's
/// ruby-actioncable. Returns its one line of output; panics, with its stderr, if it fails.
pub(crate) fn rails(env: &[(&str, &str)], args: &[&str]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ruby/rails.rb");
    let mut command = Command::new("ruby");
    for name in SETTINGS {
        command.env_remove(name);
    }
    let mut child = command
        .arg(&script)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run ruby ({e}): install Debian's ruby, ruby-actioncable and ruby-redis \
                 (scripts/test.sh does)"
            )
        });
    let deadline = Instant::now() + WAIT * 2;
    loop {
        if child.try_wait().expect("wait for ruby").is_some() {
            break;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("rails.rb {args:?} did not finish within {:?}", WAIT * 2);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("ruby's output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "rails.rb {args:?} failed ({}): {}{}",
        output.status,
        stdout,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout.trim_end_matches('\n').to_owned()
}
