//! SQLite through `rusqlite` (the workspace's one bundled libsqlite3), each statement on
//! Tokio's blocking threads. The connection is set up as Rails sets up its own (WAL journal,
//! `synchronous = NORMAL`) with a busy timeout, so several processes share the file.

use super::{DbError, Failure, NewRow, Row};
use crate::sql::{self, Dialect, Poll};
use crate::wire::Timestamp;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, ErrorCode, params};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub(crate) struct LiteConn {
    /// Shared with the blocking task of a statement still running after its caller gave up.
    conn: Arc<Mutex<Connection>>,
}

fn kind(e: &rusqlite::Error) -> Failure {
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => Failure::Busy,
        Some(
            ErrorCode::CannotOpen
            | ErrorCode::SystemIoFailure
            | ErrorCode::NotADatabase
            | ErrorCode::DatabaseCorrupt
            | ErrorCode::FileLockingProtocolFailed,
        ) => Failure::Connection,
        _ => Failure::Refused,
    }
}

fn error(e: &rusqlite::Error) -> DbError {
    DbError::new(kind(e), e.to_string())
}

/// A `blob` column as Rails writes it, or text (a row inserted by hand).
fn bytes(row: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<Vec<u8>> {
    match row.get_ref(index)? {
        ValueRef::Blob(b) | ValueRef::Text(b) => Ok(b.to_vec()),
        other => Err(rusqlite::Error::InvalidColumnType(
            index,
            format!("column {index}"),
            other.data_type(),
        )),
    }
}

impl LiteConn {
    pub(crate) async fn open(path: &Path, busy: Duration) -> Result<LiteConn, DbError> {
        let path = path.to_owned();
        let conn = blocking(move || {
            let conn = Connection::open(&path)?;
            conn.busy_timeout(busy)?;
            conn.pragma_update_and_check(None, "journal_mode", "wal", |r| r.get::<_, String>(0))?;
            conn.pragma_update(None, "synchronous", "normal")?;
            Ok(conn)
        })
        .await?;
        Ok(LiteConn {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` with the connection on a blocking thread.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, DbError> {
        let conn = self.conn.clone();
        blocking(move || {
            // A statement that panicked leaves nothing half-done in SQLite: its transaction is
            // rolled back, so the lock's poisoning says nothing about the connection.
            let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut conn)
        })
        .await
    }

    pub(crate) async fn ping(&mut self) -> Result<(), DbError> {
        self.run(|c| c.query_row("SELECT 1", [], |_| Ok(()))).await
    }

    pub(crate) async fn create_table(&mut self) -> Result<(), DbError> {
        self.run(|c| c.execute_batch(&sql::create_table(Dialect::Sqlite).join(";\n")))
            .await
    }

    pub(crate) async fn max_id(&mut self) -> Result<i64, DbError> {
        self.run(|c| c.query_row(&sql::max_id(Dialect::Sqlite), [], |r| r.get(0)))
            .await
    }

    pub(crate) async fn poll(&mut self, poll: &Poll<'_>) -> Result<Vec<Row>, DbError> {
        let text = sql::poll_inline(Dialect::Sqlite, poll);
        self.run(move |c| {
            let mut statement = c.prepare(&text)?;
            let rows = statement.query_map([], |row| {
                Ok(Row {
                    id: row.get(0)?,
                    channel: bytes(row, 1)?,
                    payload: bytes(row, 2)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    pub(crate) async fn insert(&mut self, new: &NewRow<'_>) -> Result<i64, DbError> {
        let (channel, payload) = (new.channel.to_vec(), new.payload.to_vec());
        let (created_at, hash) = (new.created_at.to_rails(), new.channel_hash);
        self.run(move |c| {
            // Blobs, as Rails binds a binary column (`x'…'`); created_at as Rails' text.
            c.prepare_cached(&sql::insert(Dialect::Sqlite))?
                .execute(params![channel, payload, created_at, hash])?;
            Ok(c.last_insert_rowid())
        })
        .await
    }

    pub(crate) async fn trim(&mut self, cutoff: Timestamp, batch: u32) -> Result<u64, DbError> {
        let cutoff = cutoff.to_rails();
        self.run(move |c| {
            let deleted = c.execute(&sql::trim_sqlite(), params![cutoff, batch])?;
            Ok(deleted as u64)
        })
        .await
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> rusqlite::Result<T> + Send + 'static,
) -> Result<T, DbError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(error(&e)),
        Err(e) => Err(DbError::new(
            Failure::Connection,
            format!("SQLite task failed: {e}"),
        )),
    }
}
