//! The `actioncable-rails` crate's integration tests: one test binary, one module per concern.
//! Values are checked against what Rails' own Ruby code (and, for AnyCable's algorithm, Node's
//! `crypto`) computes, through the scripts in `tests/ruby` and `tests/node`; channels are
//! checked through a real cable on a loopback port.

mod signed_streams;
mod turbo;
