//! The adapter's test fixtures, shared with the other adapters' tests: `StreamChannel`, its
//! cable node and client methods (`cable_test_support::adapter`); the client, the servers and
//! the timing bounds come from `cable-test-support` too.

pub(crate) use cable_test_support::adapter::*;
pub(crate) use cable_test_support::*;
