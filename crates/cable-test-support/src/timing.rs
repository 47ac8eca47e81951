//! The timing bounds every test uses, and the bounded waits built on them.
//!
//! The bounds are generous: the tests run on loaded two-core machines next to other builds, and
//! a bound that is too tight makes a flaky test, not a faster one. A test that needs a tighter
//! bound to prove something (a timeout that must fire, a throttle that must hold) says so with
//! its own constant.

use std::future::Future;
use std::time::Duration;
use tokio::time::{Instant, timeout};

/// Upper bound for any one thing a test expects to happen: a frame, a reply, a connection, a
/// callback, a count reaching its value.
pub const WAIT: Duration = Duration::from_secs(10);

/// How long "nothing arrives" is observed.
pub const SILENCE: Duration = Duration::from_millis(300);

/// Upper bound for a whole end-to-end test that chains many steps, each bounded by [`WAIT`].
pub const WHOLE_TEST: Duration = Duration::from_secs(30);

/// Upper bound for a served app to stop after its graceful shutdown was triggered (a cable's
/// own shutdown deadline plus the HTTP drain, with slack).
pub const SHUTDOWN_WAIT: Duration = Duration::from_secs(15);

/// How often [`eventually`] checks its condition.
pub const POLL: Duration = Duration::from_millis(10);

/// Polls `cond` every [`POLL`] until it holds; panics naming `what` after [`WAIT`].
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(POLL).await;
    }
}

/// Runs `fut` with the [`WAIT`] bound; panics naming `what` when it passes.
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    within_for(WAIT, what, fut).await
}

/// Runs `fut` with the bound `limit`; panics naming `what` when it passes.
pub async fn within_for<T>(limit: Duration, what: &str, fut: impl Future<Output = T>) -> T {
    match timeout(limit, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {limit:?}: {what}"),
    }
}
