//! The test process: spare ports, its memory, and tests that need a process of their own.

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::Duration;
use tokio::time::Instant;

/// A loopback port that was free a moment ago (for a program that must be told its port; a
/// server of our own binds `127.0.0.1:0` instead).
pub fn spare_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a spare loopback port")
}

/// Resident set size of this process, in KiB (`VmRSS` of `/proc/self/status`).
pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

/// The harness's name of test `test` in module `module` (a `module_path!()`, which starts with
/// the crate's name that test names leave out).
pub(crate) fn test_path(module: &str, test: &str) -> String {
    match module.split_once("::") {
        Some((_crate, rest)) => format!("{rest}::{test}"),
        None => test.to_owned(),
    }
}

/// Set in the process [`own_process`] starts: the test it runs.
const OWN_PROCESS: &str = "CABLE_TEST_OWN_PROCESS";

/// For a test that measures its process (its RSS) and so must not share it with other tests
/// of its binary, which the harness runs on other threads of the same process.
///
/// Returns `true` in the test's own process: the caller goes on with its body. Otherwise it
/// starts this test binary again running only this test (`module` is the caller's
/// `module_path!()`, `test` its function name), waits for it (bounded by `limit`), prints its
/// output and returns `false` if it passed; it panics if it failed, timed out or did not run
/// the test. The caller then returns:
///
/// ```no_run
/// # use cable_test_support::{WAIT, own_process};
/// # async fn churning_clients_leave_nothing_behind() {
/// if !own_process(module_path!(), "churning_clients_leave_nothing_behind", WAIT * 6).await {
///     return;
/// }
/// // The test's body, alone in its process.
/// # }
/// ```
pub async fn own_process(module: &str, test: &str, limit: Duration) -> bool {
    let path = test_path(module, test);
    if std::env::var(OWN_PROCESS).is_ok_and(|v| v == path) {
        return true;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let log = std::env::temp_dir().join(format!(
        "cable-test-{}-{}.log",
        std::process::id(),
        path.replace("::", "-")
    ));
    let out = std::fs::File::create(&log).expect("create the child's log");
    let err = out.try_clone().expect("share the child's log");
    let mut child = Command::new(&exe)
        .args([path.as_str(), "--exact", "--nocapture", "--test-threads=1"])
        .env(OWN_PROCESS, &path)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {} for {path}: {e}", exe.display()));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("the child's status") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let output = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    print!("{output}");
    let status = status.unwrap_or_else(|| panic!("{path} did not finish within {limit:?}"));
    assert!(
        status.success(),
        "{path} failed in its own process ({status}); its output is above"
    );
    assert!(
        output.contains("test result: ok. 1 passed"),
        "{path} did not run in its own process; its output is above"
    );
    false
}
