//! The Redis adapter's test fixtures: the ones every adapter's tests share (`StreamChannel`,
//! its cable node and client methods: `cable_test_support::adapter`), and the client, servers,
//! timing bounds and real Redis processes of `cable-test-support`, re-exported here.

pub(crate) use cable_test_support::adapter::*;
pub(crate) use cable_test_support::redis::*;
pub(crate) use cable_test_support::*;
