//! MySQL and MariaDB through `mysql_async`. The poll's lists are written into its text (MySQL
//! has no array parameters); the insert is a prepared statement, cached by the driver.

use super::{DbError, Failure, NewRow, Row};
use crate::sql::{self, Dialect, Poll};
use crate::wire::Timestamp;
use mysql_async::prelude::Queryable as _;
use mysql_async::{Params, TxOpts, Value};

pub(crate) struct MyConn {
    conn: mysql_async::Conn,
}

fn kind(e: &mysql_async::Error) -> Failure {
    match e {
        mysql_async::Error::Server(server) => match server.code {
            // ER_SERVER_SHUTDOWN, ER_CONNECTION_KILLED, ER_NET_PACKET_TOO_LARGE (the server
            // closes the connection after it), ER_CON_COUNT_ERROR.
            1053 | 1927 | 1153 | 1040 => Failure::Connection,
            // ER_LOCK_WAIT_TIMEOUT, ER_LOCK_DEADLOCK.
            1205 | 1213 => Failure::Busy,
            _ => Failure::Refused,
        },
        mysql_async::Error::Url(_) => Failure::Refused,
        mysql_async::Error::Driver(mysql_async::DriverError::FromValue { .. })
        | mysql_async::Error::Driver(mysql_async::DriverError::FromRow { .. }) => Failure::Refused,
        _ => Failure::Connection,
    }
}

fn error(e: &mysql_async::Error) -> DbError {
    let message = match e {
        mysql_async::Error::Server(server) => {
            format!(
                "{} ({}, SQLSTATE {})",
                server.message, server.code, server.state
            )
        }
        other => other.to_string(),
    };
    DbError::new(kind(e), message)
}

fn date(at: Timestamp) -> Value {
    Value::Date(
        u16::try_from(at.year).unwrap_or(0),
        at.month,
        at.day,
        at.hour,
        at.minute,
        at.second,
        at.micros,
    )
}

fn take<T: mysql_async::prelude::FromValue>(
    row: &mut mysql_async::Row,
    index: usize,
) -> Result<T, DbError> {
    match row.take_opt::<T, usize>(index) {
        Some(Ok(value)) => Ok(value),
        Some(Err(e)) => Err(DbError::new(
            Failure::Refused,
            format!("column {index}: {e}"),
        )),
        None => Err(DbError::new(
            Failure::Refused,
            format!("column {index} missing"),
        )),
    }
}

impl MyConn {
    pub(crate) async fn open(opts: &mysql_async::Opts) -> Result<MyConn, DbError> {
        let conn = mysql_async::Conn::new(opts.clone())
            .await
            .map_err(|e| error(&e))?;
        Ok(MyConn { conn })
    }

    pub(crate) async fn ping(&mut self) -> Result<(), DbError> {
        self.conn.ping().await.map_err(|e| error(&e))
    }

    pub(crate) async fn create_table(&mut self) -> Result<(), DbError> {
        for statement in sql::create_table(Dialect::Mysql) {
            self.conn
                .query_drop(statement)
                .await
                .map_err(|e| error(&e))?;
        }
        Ok(())
    }

    pub(crate) async fn max_id(&mut self) -> Result<i64, DbError> {
        let row: Option<mysql_async::Row> = self
            .conn
            .query_first(sql::max_id(Dialect::Mysql))
            .await
            .map_err(|e| error(&e))?;
        match row {
            Some(mut row) => take(&mut row, 0),
            None => Ok(0),
        }
    }

    pub(crate) async fn poll(&mut self, poll: &Poll<'_>) -> Result<Vec<Row>, DbError> {
        let rows: Vec<mysql_async::Row> = self
            .conn
            .query(sql::poll_inline(Dialect::Mysql, poll))
            .await
            .map_err(|e| error(&e))?;
        rows.into_iter()
            .map(|mut row| {
                Ok(Row {
                    id: take(&mut row, 0)?,
                    channel: take(&mut row, 1)?,
                    payload: take(&mut row, 2)?,
                })
            })
            .collect()
    }

    pub(crate) async fn insert(&mut self, new: &NewRow<'_>) -> Result<i64, DbError> {
        let params = Params::Positional(vec![
            Value::Bytes(new.channel.to_vec()),
            Value::Bytes(new.payload.to_vec()),
            date(new.created_at),
            Value::Int(new.channel_hash),
        ]);
        self.conn
            .exec_drop(sql::insert(Dialect::Mysql), params)
            .await
            .map_err(|e| error(&e))?;
        let id = self.conn.last_insert_id().ok_or_else(|| {
            DbError::new(Failure::Refused, "the insert returned no id".to_owned())
        })?;
        i64::try_from(id).map_err(|_| DbError::new(Failure::Refused, format!("id {id} too large")))
    }

    pub(crate) async fn trim(
        &mut self,
        cutoff: Timestamp,
        batch: u32,
        skip_locked: bool,
    ) -> Result<u64, DbError> {
        let mut tx = self
            .conn
            .start_transaction(TxOpts::default())
            .await
            .map_err(|e| error(&e))?;
        let rows: Vec<mysql_async::Row> = tx
            .exec(
                sql::trim_select(skip_locked),
                Params::Positional(vec![date(cutoff), Value::UInt(u64::from(batch))]),
            )
            .await
            .map_err(|e| error(&e))?;
        let ids = rows
            .into_iter()
            .map(|mut row| take::<i64>(&mut row, 0))
            .collect::<Result<Vec<_>, _>>()?;
        let mut deleted = 0;
        if !ids.is_empty() {
            tx.query_drop(sql::trim_delete(&ids))
                .await
                .map_err(|e| error(&e))?;
            deleted = tx.affected_rows();
        }
        tx.commit().await.map_err(|e| error(&e))?;
        Ok(deleted)
    }
}
