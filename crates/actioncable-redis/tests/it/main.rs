//! The `actioncable-redis` crate's integration tests: one test binary, one module per concern,
//! so the shared support compiles and links once. Every test runs real cables on loopback
//! ports against real `redis-server` processes of its own (`cable_test_support::redis`).

mod support;

mod conformance;
mod history;
mod presence;
mod redis;
mod remote_disconnect;
