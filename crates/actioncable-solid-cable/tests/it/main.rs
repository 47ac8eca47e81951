//! The `actioncable-solid-cable` crate's integration tests: one test binary, one module per
//! concern. Every test runs real cables on loopback ports against real databases: a database of
//! its own on the shared PostgreSQL (127.0.0.1:5432) and MariaDB (127.0.0.1:3306), a fresh
//! SQLite file, or, for tests that stop the database, a server of its own.

mod support;

mod exchange;
mod format;
mod order;
mod outage;
