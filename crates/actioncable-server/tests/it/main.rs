//! The `actioncable-server` binary's integration tests: one test binary, a module per concern.
//! Every test runs the real binary as a child process configured by environment variables, on
//! a loopback port, and talks to it over real sockets; the Rails side is Rails' own Ruby code
//! (`tests/ruby/rails.rb`, Debian's ruby-actioncable) on a real Redis.

mod support;

mod broadcast;
mod jwt;
mod process;
mod rails;
