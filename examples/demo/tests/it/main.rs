//! The demo's integration tests in one test binary: `channels` drives its channels and
//! connection through the socketless harness, as Rails channel tests do; `demo` drives the real
//! router on a loopback port over HTTP and WebSocket; `process` runs the binary itself.

mod support;

mod channels;
mod demo;
mod process;
