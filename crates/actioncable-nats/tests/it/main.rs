//! The `actioncable-nats` crate's integration tests: one test binary, one module per concern,
//! so the shared support compiles and links once. Every test runs real cables on loopback
//! ports against real `nats-server` processes: the shared one on 127.0.0.1:4222 (with
//! JetStream), or a private one for the tests that stop or restart their server.

mod support;

mod anycable;
mod history;
mod nodes;
mod outage;
