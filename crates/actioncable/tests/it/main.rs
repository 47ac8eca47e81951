//! The `actioncable` crate's integration tests: one test binary, one module per concern, so the
//! shared support compiles and links once. Whole-server tests run a real cable on a loopback
//! port and drive it with real WebSocket clients; `channel_api` and `timers` use the socketless
//! harness (`actioncable::testing`, enabled for these tests by the crate's dev-dependency on
//! itself).
//!
//! `soak` and `slow_consumer` measure the process's memory, so each runs in a process of its own
//! (`cable_test_support::own_process`); `security` and `limits` read their own logs through a
//! scoped capture (`cable_test_support::LogCapture`).

mod support;

mod admin;
mod amplification;
mod auth;
mod bad_input;
mod broadcast;
mod channel_api;
mod channel_wire;
mod fuzz_corpus;
mod handshake;
mod http_hygiene;
mod limits;
mod metrics;
mod presence;
mod protocol_props;
mod reliable;
mod resume;
mod security;
mod slow_consumer;
mod soak;
mod sse;
mod subscriptions;
mod timers;
