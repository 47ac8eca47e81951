//! One PostgreSQL connection and its driver task, connection states, error classification
//! and reconnection backoff.

use crate::config::PostgresConfig;
use actioncable::pubsub::Backoff;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tokio_postgres::{AsyncMessage, Client, NoTls, Statement};
use tokio_util::sync::CancellationToken;

/// Which of the two connections, for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// `LISTEN`s every stream and receives the notifications.
    Listener,
    /// Sends `NOTIFY` (and stores large payloads).
    Publisher,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Listener => "listener",
            Role::Publisher => "publisher",
        })
    }
}

/// The state of one connection, published through a `watch` channel.
#[derive(Clone)]
pub(crate) enum LinkState {
    /// Not connected (yet, or any more) since `since`; the supervisor is connecting.
    Down { since: Instant },
    /// Connected and ready.
    Up(Up),
    /// The adapter was shut down.
    Closed,
}

/// A live connection.
#[derive(Clone)]
pub(crate) struct Up {
    /// Distinguishes successive connections.
    pub(crate) generation: u64,
    pub(crate) client: Arc<Client>,
    /// Cancelled when the connection is found dead (by its driver, a health check or a failed
    /// request); the driver then drops the connection and the supervisor replaces it.
    pub(crate) alive: CancellationToken,
    /// The publisher's prepared statements.
    pub(crate) notify: Option<NotifyStatements>,
    /// Whether this connection made sure the large-payload table exists.
    pub(crate) table_ready: Arc<AtomicBool>,
}

/// The publisher's prepared statements.
#[derive(Clone)]
pub(crate) struct NotifyStatements {
    /// `pg_notify($1, $2)`: channel, payload.
    pub(crate) plain: Statement,
    /// The same, right after a trace note: channel, payload, trace channel, note. The note is
    /// sent first: a CTE with a volatile function is never folded into its query, so its row
    /// (and its notification) is made before the query reads it. Both are in one transaction,
    /// so PostgreSQL delivers them back to back, in that order.
    pub(crate) traced: Statement,
}

const NOTIFY: &str = "SELECT pg_notify($1, $2)";
const NOTIFY_TRACED: &str =
    "WITH trace AS (SELECT pg_notify($3, $4)) SELECT pg_notify($1, $2) FROM trace";

/// A notification as it arrived: the channel identifier and the payload.
#[derive(Debug)]
pub(crate) struct Note {
    pub(crate) channel: String,
    pub(crate) payload: String,
}

/// Whether a failed request says the connection is broken (closed, an I/O error, or the
/// server terminating the session, SQLSTATE classes 08 and 57P), as opposed to PostgreSQL
/// refusing the statement, which says nothing about the connection.
pub(crate) fn is_connection_error(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        Some(state) => {
            let code = state.code();
            code.starts_with("08") || code.starts_with("57P")
        }
        None => e.as_db_error().is_none(),
    }
}

/// A readable reason: the server's message when it gave one.
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {} ({})", db.severity(), db.message(), db.code().code()),
        None => e.to_string(),
    }
}

/// Opens connections as the configuration says.
#[derive(Debug)]
pub(crate) struct Connector {
    pg: tokio_postgres::Config,
    connect_timeout: Duration,
    backoff_min: Duration,
    backoff_max: Duration,
    /// Signalled when a connection succeeds, so the other connection, if it is waiting out a
    /// backoff delay, retries at once: PostgreSQL is back.
    reachable: Notify,
}

impl Connector {
    pub(crate) fn new(config: &PostgresConfig) -> Connector {
        Connector {
            pg: config.connection(),
            connect_timeout: config.connect_timeout,
            backoff_min: config.backoff_min,
            backoff_max: config.backoff_max,
            reachable: Notify::new(),
        }
    }

    /// One attempt. The connection's driver runs in a task of its own until the connection
    /// fails, `alive` is cancelled or `stop` is; notifications go to `forward`.
    async fn connect(
        &self,
        role: Role,
        generation: u64,
        stop: &CancellationToken,
        forward: Option<&mpsc::UnboundedSender<Note>>,
    ) -> Result<Up, String> {
        let (client, mut connection) =
            match tokio::time::timeout(self.connect_timeout, self.pg.connect(NoTls)).await {
                Ok(Ok(pair)) => pair,
                Ok(Err(e)) => return Err(describe(&e)),
                Err(_) => return Err(format!("no connection within {:?}", self.connect_timeout)),
            };
        let alive = CancellationToken::new();
        let (stop, driver_alive, forward) = (stop.clone(), alive.clone(), forward.cloned());
        tokio::spawn(async move {
            loop {
                let message = tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = driver_alive.cancelled() => break,
                    m = std::future::poll_fn(|cx| connection.poll_message(cx)) => m,
                };
                match message {
                    Some(Ok(AsyncMessage::Notification(n))) => {
                        if let Some(forward) = &forward {
                            let _ = forward.send(Note {
                                channel: n.channel().to_owned(),
                                payload: n.payload().to_owned(),
                            });
                        }
                    }
                    Some(Ok(AsyncMessage::Notice(notice))) => {
                        tracing::debug!(%role, notice = %notice.message(), "PostgreSQL notice");
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        tracing::debug!(%role, error = %describe(&e), "PostgreSQL connection ended");
                        break;
                    }
                    None => break,
                }
            }
            // Dropping `connection` here closes the socket.
            driver_alive.cancel();
        });
        let notify = match role {
            Role::Listener => None,
            Role::Publisher => {
                let prepared = tokio::time::timeout(self.connect_timeout, async {
                    Ok::<_, tokio_postgres::Error>(NotifyStatements {
                        plain: client.prepare(NOTIFY).await?,
                        traced: client.prepare(NOTIFY_TRACED).await?,
                    })
                })
                .await;
                match prepared {
                    Ok(Ok(statements)) => Some(statements),
                    Ok(Err(e)) => {
                        alive.cancel();
                        return Err(describe(&e));
                    }
                    Err(_) => {
                        alive.cancel();
                        return Err("no answer to PREPARE in time".into());
                    }
                }
            }
        };
        Ok(Up {
            generation,
            client: Arc::new(client),
            alive,
            notify,
            table_ready: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Connects, retrying with backoff until it works or `stop` is cancelled (`None`).
    pub(crate) async fn connect_with_retry(
        &self,
        role: Role,
        next_generation: impl Fn() -> u64,
        stop: &CancellationToken,
        forward: Option<&mpsc::UnboundedSender<Note>>,
    ) -> Option<Up> {
        let mut backoff = Backoff::new(self.backoff_min, self.backoff_max);
        let mut failures = 0u32;
        loop {
            let error = tokio::select! {
                _ = stop.cancelled() => return None,
                result = self.connect(role, next_generation(), stop, forward) => match result {
                    Ok(up) => {
                        self.reachable.notify_waiters();
                        if failures > 0 {
                            tracing::info!(%role, attempts = failures + 1, "connected to PostgreSQL again");
                        } else {
                            tracing::debug!(%role, "connected to PostgreSQL");
                        }
                        return Some(up);
                    }
                    Err(e) => e,
                },
            };
            failures += 1;
            let delay = backoff.next_delay();
            if failures == 1 || failures.is_multiple_of(20) {
                tracing::warn!(%role, attempts = failures, error, retry_in = ?delay, "cannot connect to PostgreSQL");
            } else {
                tracing::debug!(%role, attempts = failures, error, retry_in = ?delay, "cannot connect to PostgreSQL");
            }
            tokio::select! {
                _ = stop.cancelled() => return None,
                _ = tokio::time::sleep(delay) => {}
                _ = self.reachable.notified() => {}
            }
        }
    }

    /// Checks that the connection still answers.
    pub(crate) async fn health_check(&self, client: &Client) -> Result<(), String> {
        match tokio::time::timeout(self.connect_timeout, client.simple_query("SELECT 1")).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(describe(&e)),
            Err(_) => Err(format!("no answer within {:?}", self.connect_timeout)),
        }
    }
}
