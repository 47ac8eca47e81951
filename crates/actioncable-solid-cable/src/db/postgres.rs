//! PostgreSQL through `tokio-postgres`: arrays carry the poll's hashes and exclusions, so its
//! statements are prepared once per connection.

use super::{DbError, Failure, NewRow, Row};
use crate::sql::{self, Dialect, Poll};
use crate::wire::Timestamp;
use tokio_postgres::{Client, NoTls, Statement};

pub(crate) struct PgConn {
    client: Client,
    poll: Option<Statement>,
    insert: Option<Statement>,
}

/// Whether a failed request says the connection is broken (closed, an I/O error, or the
/// server terminating the session, SQLSTATE classes 08 and 57P), as opposed to PostgreSQL
/// refusing the statement.
fn kind(e: &tokio_postgres::Error) -> Failure {
    if e.is_closed() {
        return Failure::Connection;
    }
    match e.code().map(|c| c.code()) {
        Some(code) if code.starts_with("08") || code.starts_with("57P") => Failure::Connection,
        // lock_not_available, deadlock_detected, serialization_failure.
        Some("55P03" | "40P01" | "40001") => Failure::Busy,
        Some(_) => Failure::Refused,
        None if e.as_db_error().is_none() => Failure::Connection,
        None => Failure::Refused,
    }
}

fn error(e: &tokio_postgres::Error) -> DbError {
    let message = match e.as_db_error() {
        Some(db) => format!("{}: {} ({})", db.severity(), db.message(), db.code().code()),
        None => e.to_string(),
    };
    DbError::new(kind(e), message)
}

/// A `bytea` column, or `text` in a table made by a Solid Cable before 3.0.
fn bytes(row: &tokio_postgres::Row, index: usize) -> Result<Vec<u8>, DbError> {
    match row.try_get::<_, Vec<u8>>(index) {
        Ok(bytes) => Ok(bytes),
        Err(_) => row
            .try_get::<_, String>(index)
            .map(String::into_bytes)
            .map_err(|e| DbError::new(Failure::Refused, format!("column {index}: {e}"))),
    }
}

impl PgConn {
    pub(crate) async fn open(config: &tokio_postgres::Config) -> Result<PgConn, DbError> {
        let (client, connection) = config.connect(NoTls).await.map_err(|e| error(&e))?;
        // The driver ends when the client is dropped or the server goes away.
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "PostgreSQL connection ended");
            }
        });
        // As Rails does with its default `default_timezone = :utc`, so that a `timestamptz`
        // column reads created_at as UTC too.
        client
            .batch_execute("SET TIME ZONE 'UTC'")
            .await
            .map_err(|e| error(&e))?;
        Ok(PgConn {
            client,
            poll: None,
            insert: None,
        })
    }

    pub(crate) async fn ping(&mut self) -> Result<(), DbError> {
        self.client
            .simple_query("SELECT 1")
            .await
            .map(drop)
            .map_err(|e| error(&e))
    }

    pub(crate) async fn create_table(&mut self) -> Result<(), DbError> {
        for statement in sql::create_table(Dialect::Postgres) {
            match self.client.batch_execute(&statement).await {
                Ok(()) => {}
                // Another node created it at the same moment (`IF NOT EXISTS` is not atomic).
                Err(e) if matches!(e.code().map(|c| c.code()), Some("42P07" | "23505")) => {}
                Err(e) => return Err(error(&e)),
            }
        }
        Ok(())
    }

    pub(crate) async fn max_id(&mut self) -> Result<i64, DbError> {
        let row = self
            .client
            .query_one(&sql::max_id(Dialect::Postgres), &[])
            .await
            .map_err(|e| error(&e))?;
        row.try_get(0)
            .map_err(|e| DbError::new(Failure::Refused, e.to_string()))
    }

    async fn statement(
        client: &Client,
        slot: &mut Option<Statement>,
        text: impl FnOnce() -> String,
    ) -> Result<Statement, DbError> {
        if let Some(statement) = slot {
            return Ok(statement.clone());
        }
        let statement = client.prepare(&text()).await.map_err(|e| error(&e))?;
        *slot = Some(statement.clone());
        Ok(statement)
    }

    pub(crate) async fn poll(&mut self, poll: &Poll<'_>) -> Result<Vec<Row>, DbError> {
        let statement = Self::statement(&self.client, &mut self.poll, sql::poll_postgres).await?;
        let limit = i64::from(poll.limit);
        let rows = self
            .client
            .query(
                &statement,
                &[
                    &poll.low,
                    &poll.settled,
                    &poll.young,
                    &poll.young_after,
                    &poll.exclude,
                    &limit,
                ],
            )
            .await
            .map_err(|e| error(&e))?;
        rows.iter()
            .map(|row| {
                Ok(Row {
                    id: row
                        .try_get(0)
                        .map_err(|e| DbError::new(Failure::Refused, e.to_string()))?,
                    channel: bytes(row, 1)?,
                    payload: bytes(row, 2)?,
                })
            })
            .collect()
    }

    pub(crate) async fn insert(&mut self, new: &NewRow<'_>) -> Result<i64, DbError> {
        let statement = Self::statement(&self.client, &mut self.insert, || {
            sql::insert(Dialect::Postgres)
        })
        .await?;
        let created_at = new.created_at.to_rails();
        let row = self
            .client
            .query_one(
                &statement,
                &[&new.channel, &new.payload, &created_at, &new.channel_hash],
            )
            .await
            .map_err(|e| error(&e))?;
        row.try_get(0)
            .map_err(|e| DbError::new(Failure::Refused, e.to_string()))
    }

    pub(crate) async fn trim(
        &mut self,
        cutoff: Timestamp,
        batch: u32,
        skip_locked: bool,
    ) -> Result<u64, DbError> {
        let cutoff = cutoff.to_rails();
        let batch = i64::from(batch);
        self.client
            .execute(&sql::trim_postgres(skip_locked), &[&cutoff, &batch])
            .await
            .map_err(|e| error(&e))
    }
}
