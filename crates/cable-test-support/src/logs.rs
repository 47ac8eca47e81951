//! Logging in tests: the process-wide subscriber, and captures that one test reads back.

use std::io::Write;
use std::sync::{Arc, Mutex};
use tracing::Dispatch;
use tracing::dispatcher::DefaultGuard;

/// Installs the process-wide tracing subscriber once: it honours `RUST_LOG` and is silent
/// without it. Output goes through the test harness's capture.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off")),
        )
        .with_test_writer()
        .try_init();
}

/// A log that tests assert on: everything that passes `filter`, as plain text, from the threads
/// that [`enter`](Self::enter) it.
///
/// A capture is a scoped subscriber, not the process's, so tests that capture share one test
/// binary with tests that do not. It sees what runs on the entering thread: for a
/// `#[tokio::test]` on the default current-thread runtime that is everything the test serves and
/// spawns. Several tests may enter the same capture (a `static`): it then holds what all of them
/// logged, in the order they logged it.
#[derive(Clone, Debug)]
pub struct LogCapture {
    buffer: Buffer,
    dispatch: Dispatch,
}

impl LogCapture {
    /// A capture of what passes `filter` (an `EnvFilter` directive such as
    /// `"actioncable=warn"`), without ANSI colours.
    pub fn new(filter: &str) -> LogCapture {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        LogCapture {
            buffer,
            dispatch: Dispatch::new(subscriber),
        }
    }

    /// Makes this capture the current thread's subscriber until the guard is dropped.
    #[must_use = "the capture ends when the guard is dropped"]
    pub fn enter(&self) -> DefaultGuard {
        tracing::dispatcher::set_default(&self.dispatch)
    }

    /// Everything captured so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.buffer.lock()).into_owned()
    }

    /// How often `needle` occurs in the capture so far.
    pub fn count(&self, needle: &str) -> usize {
        self.text().matches(needle).count()
    }
}

/// The bytes of a [`LogCapture`], shared with its writer.
#[derive(Clone, Debug, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Buffer {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        // A test that panicked while logging leaves whole lines behind: keep reading.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.lock().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
