//! One connection to the database holding the table, whichever it is: [`Conn`] runs the
//! adapter's few statements on PostgreSQL (`tokio-postgres`), MySQL/MariaDB (`mysql_async`) or
//! SQLite (`rusqlite` on Tokio's blocking threads), and sorts failures into [`Failure`]s.

mod mysql;
mod postgres;
mod sqlite;

use crate::config::Target;
use crate::sql::{Dialect, Poll};
use crate::wire::Timestamp;
use std::fmt;
use std::time::Duration;

/// A row of the table, as a poll reads it.
#[derive(Debug)]
pub(crate) struct Row {
    pub(crate) id: i64,
    pub(crate) channel: Vec<u8>,
    pub(crate) payload: Vec<u8>,
}

/// A row to insert (`SolidCable::Message.broadcast`).
#[derive(Debug)]
pub(crate) struct NewRow<'a> {
    pub(crate) channel: &'a [u8],
    pub(crate) payload: &'a [u8],
    pub(crate) channel_hash: i64,
    pub(crate) created_at: Timestamp,
}

/// What kind of failure a statement met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The connection is gone or unusable (refused, closed, the server shutting down): it is
    /// replaced.
    Connection,
    /// The database is busy (a lock not granted in time): try again later, same connection.
    Busy,
    /// The database refused the statement (a missing table, a value too large): the
    /// connection is fine.
    Refused,
}

/// A failed statement: its kind and the database's message (never a password).
#[derive(Debug)]
pub(crate) struct DbError {
    pub(crate) kind: Failure,
    pub(crate) message: String,
}

impl DbError {
    pub(crate) fn new(kind: Failure, message: impl Into<String>) -> DbError {
        DbError {
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// How connections are opened.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// One connection attempt.
    pub(crate) connect: Duration,
    /// How long SQLite waits for another writer's lock.
    pub(crate) busy: Duration,
}

/// One open connection.
pub(crate) enum Conn {
    Postgres(postgres::PgConn),
    Mysql(mysql::MyConn),
    Sqlite(sqlite::LiteConn),
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Conn").field(&self.dialect()).finish()
    }
}

impl Conn {
    /// Opens a connection (bounded by `limits.connect`).
    pub(crate) async fn open(target: &Target, limits: Limits) -> Result<Conn, DbError> {
        let opening = async {
            match target {
                Target::Postgres(config) => {
                    postgres::PgConn::open(config).await.map(Conn::Postgres)
                }
                Target::Mysql(opts) => mysql::MyConn::open(opts).await.map(Conn::Mysql),
                Target::Sqlite(path) => sqlite::LiteConn::open(path, limits.busy)
                    .await
                    .map(Conn::Sqlite),
            }
        };
        match tokio::time::timeout(limits.connect, opening).await {
            Ok(result) => result,
            Err(_) => Err(DbError::new(
                Failure::Connection,
                format!("no connection within {:?}", limits.connect),
            )),
        }
    }

    pub(crate) fn dialect(&self) -> Dialect {
        match self {
            Conn::Postgres(_) => Dialect::Postgres,
            Conn::Mysql(_) => Dialect::Mysql,
            Conn::Sqlite(_) => Dialect::Sqlite,
        }
    }

    /// Whether the connection still answers.
    pub(crate) async fn ping(&mut self) -> Result<(), DbError> {
        match self {
            Conn::Postgres(c) => c.ping().await,
            Conn::Mysql(c) => c.ping().await,
            Conn::Sqlite(c) => c.ping().await,
        }
    }

    /// Creates the table and its indexes if they are missing.
    pub(crate) async fn create_table(&mut self) -> Result<(), DbError> {
        match self {
            Conn::Postgres(c) => c.create_table().await,
            Conn::Mysql(c) => c.create_table().await,
            Conn::Sqlite(c) => c.create_table().await,
        }
    }

    /// The largest id, 0 when the table is empty.
    pub(crate) async fn max_id(&mut self) -> Result<i64, DbError> {
        match self {
            Conn::Postgres(c) => c.max_id().await,
            Conn::Mysql(c) => c.max_id().await,
            Conn::Sqlite(c) => c.max_id().await,
        }
    }

    /// Runs one poll: the rows it selects, by ascending id.
    pub(crate) async fn poll(&mut self, poll: &Poll<'_>) -> Result<Vec<Row>, DbError> {
        match self {
            Conn::Postgres(c) => c.poll(poll).await,
            Conn::Mysql(c) => c.poll(poll).await,
            Conn::Sqlite(c) => c.poll(poll).await,
        }
    }

    /// Inserts a row; its id.
    pub(crate) async fn insert(&mut self, row: &NewRow<'_>) -> Result<i64, DbError> {
        match self {
            Conn::Postgres(c) => c.insert(row).await,
            Conn::Mysql(c) => c.insert(row).await,
            Conn::Sqlite(c) => c.insert(row).await,
        }
    }

    /// Deletes up to `batch` rows created before `cutoff`; how many.
    pub(crate) async fn trim(
        &mut self,
        cutoff: Timestamp,
        batch: u32,
        skip_locked: bool,
    ) -> Result<u64, DbError> {
        match self {
            Conn::Postgres(c) => c.trim(cutoff, batch, skip_locked).await,
            Conn::Mysql(c) => c.trim(cutoff, batch, skip_locked).await,
            Conn::Sqlite(c) => c.trim(cutoff, batch).await,
        }
    }
}
