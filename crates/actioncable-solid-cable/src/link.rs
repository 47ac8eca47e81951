//! [`Link`]: one of the adapter's two connections (the poller's, the publisher's), opened when
//! needed, checked after idling or when the other one failed, and reopened with backoff.

use crate::config::{SolidCableConfig, Target};
use crate::db::{Conn, DbError, Failure, Limits};
use actioncable::pubsub::Backoff;
use std::fmt;
use std::time::Duration;
use tokio::time::Instant;

/// A connection unused for this long is pinged before it is used again (a server may have
/// closed it meanwhile, e.g. MySQL's `wait_timeout`).
const IDLE_CHECK: Duration = Duration::from_secs(10);

/// Which connection, for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Polls for rows; also reads the largest id when a stream is subscribed.
    Poller,
    /// Inserts rows and trims.
    Publisher,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Poller => "poller",
            Role::Publisher => "publisher",
        })
    }
}

/// One connection and what it takes to get it back.
pub(crate) struct Link {
    role: Role,
    target: Target,
    limits: Limits,
    create_table: bool,
    backoff_min: Duration,
    backoff_max: Duration,
    conn: Option<Conn>,
    backoff: Backoff,
    /// No new attempt before this, after a failed one.
    retry_at: Option<Instant>,
    /// Failed attempts since the connection was last up.
    failures: u32,
    last_used: Instant,
    /// Ping before the next use: the other connection failed, so this one may be dead too.
    suspect: bool,
}

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link")
            .field("role", &self.role)
            .field("up", &self.conn.is_some())
            .field("failures", &self.failures)
            .finish_non_exhaustive()
    }
}

impl Link {
    pub(crate) fn new(role: Role, config: &SolidCableConfig) -> Link {
        Link {
            role,
            target: config.target.clone(),
            limits: Limits {
                connect: config.connect_timeout,
                busy: config.publish_timeout,
            },
            create_table: config.create_table,
            backoff_min: config.backoff_min,
            backoff_max: config.backoff_max,
            conn: None,
            backoff: Backoff::new(config.backoff_min, config.backoff_max),
            retry_at: None,
            failures: 0,
            last_used: Instant::now(),
            suspect: false,
        }
    }

    /// Whether a connection is open (it answered its last statement).
    pub(crate) fn is_up(&self) -> bool {
        self.conn.is_some()
    }

    /// When the next connection attempt may be made, while one is being waited out.
    pub(crate) fn retry_at(&self) -> Option<Instant> {
        self.retry_at.filter(|at| *at > Instant::now())
    }

    /// Check the connection before its next use.
    pub(crate) fn suspect(&mut self) {
        self.suspect = true;
    }

    /// The connection, opened (and the table created, when configured) if there is none. A
    /// connection that idled or is suspect is pinged first and replaced if it does not answer.
    /// While a failed attempt's backoff runs, fails at once.
    pub(crate) async fn conn(&mut self) -> Result<&mut Conn, DbError> {
        let check = self.suspect || self.last_used.elapsed() >= IDLE_CHECK;
        if let (true, Some(conn)) = (check, self.conn.as_mut()) {
            self.suspect = false;
            if let Err(e) = conn.ping().await {
                tracing::debug!(role = %self.role, error = %e, "connection did not answer a ping; reconnecting");
                self.conn = None;
            }
        }
        if self.conn.is_none() {
            if let Some(at) = self.retry_at() {
                return Err(DbError::new(
                    Failure::Connection,
                    format!(
                        "no database connection (next attempt in {:.1?})",
                        at - Instant::now()
                    ),
                ));
            }
            let opened = self.open().await;
            match opened {
                Ok(conn) => {
                    if self.failures > 0 {
                        tracing::info!(role = %self.role, attempts = self.failures + 1, "connected to the database again");
                    } else {
                        tracing::debug!(role = %self.role, "connected to the database");
                    }
                    self.failures = 0;
                    self.retry_at = None;
                    self.backoff = Backoff::new(self.backoff_min, self.backoff_max);
                    self.conn = Some(conn);
                }
                Err(e) => {
                    self.failures += 1;
                    let delay = self.backoff.next_delay();
                    self.retry_at = Some(Instant::now() + delay);
                    if self.failures == 1 || self.failures.is_multiple_of(20) {
                        tracing::warn!(role = %self.role, attempts = self.failures, error = %e, retry_in = ?delay, "cannot connect to the database");
                    } else {
                        tracing::debug!(role = %self.role, attempts = self.failures, error = %e, retry_in = ?delay, "cannot connect to the database");
                    }
                    return Err(e);
                }
            }
        }
        self.last_used = Instant::now();
        match self.conn.as_mut() {
            Some(conn) => Ok(conn),
            None => Err(DbError::new(Failure::Connection, "no database connection")),
        }
    }

    async fn open(&self) -> Result<Conn, DbError> {
        let mut conn = Conn::open(&self.target, self.limits).await?;
        if self.create_table {
            let created =
                tokio::time::timeout(self.limits.connect.max(Duration::from_secs(5)), async {
                    conn.create_table().await
                })
                .await;
            match created {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    return Err(DbError::new(
                        e.kind,
                        format!("cannot create the table: {}", e.message),
                    ));
                }
                Err(_) => {
                    return Err(DbError::new(
                        Failure::Connection,
                        "creating the table took too long",
                    ));
                }
            }
        }
        Ok(conn)
    }

    /// Takes note of a failed statement: after a connection failure the connection is
    /// dropped, and the next use opens a new one at once (then with backoff).
    pub(crate) fn failed(&mut self, e: &DbError) {
        if e.kind == Failure::Connection && self.conn.take().is_some() {
            tracing::warn!(role = %self.role, error = %e, "database connection lost; reconnecting");
        }
    }

    /// Closes the connection (on shutdown).
    pub(crate) fn close(&mut self) {
        self.conn = None;
    }
}
