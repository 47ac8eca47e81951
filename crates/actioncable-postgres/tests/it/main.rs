//! The `actioncable-postgres` crate's integration tests: one test binary, one module per
//! concern, so the shared support compiles and links once. Every test runs real cables on
//! loopback ports against real PostgreSQL: a database of its own on the server at
//! 127.0.0.1:5432, or, for tests that stop the server, a server of its own (`initdb`/`pg_ctl`).

mod pg;
mod support;

mod postgres;
mod rails;
