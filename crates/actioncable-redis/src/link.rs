//! One Redis connection and its life: resolving the server (directly or through the
//! sentinels), connecting with RESP3, `CLIENT SETNAME`, health checks, and retrying with
//! backoff.

use crate::config::{RedisConfig, SentinelTarget, Target};
use actioncable::pubsub::Backoff;
use redis::aio::{AsyncPushSender, MultiplexedConnection};
use redis::sentinel::{SentinelClientBuilder, SentinelServerType};
use redis::{AsyncConnectionConfig, ConnectionAddr, ProtocolVersion, RedisError, RedisResult};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Which of the two connections, for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// `SUBSCRIBE`s every stream and receives their messages.
    Subscriber,
    /// `PUBLISH`es broadcasts.
    Publisher,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Subscriber => "subscriber",
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

/// A live connection. Cloning it is cheap (the connection is a handle to a driver task).
#[derive(Clone)]
pub(crate) struct Up {
    /// Distinguishes successive connections.
    pub(crate) generation: u64,
    pub(crate) conn: MultiplexedConnection,
    /// Cancelled when the connection is found dead (by the driver, a health check or a failed
    /// request), which makes the supervisor replace it.
    pub(crate) alive: CancellationToken,
}

/// Whether a failed request says the connection is broken (as opposed to Redis refusing
/// the command, e.g. an ACL error, which says nothing about the connection).
pub(crate) fn is_connection_error(e: &RedisError) -> bool {
    !matches!(e.kind(), redis::ErrorKind::Server(_))
}

/// Opens connections the way the configuration says.
#[derive(Clone)]
pub(crate) struct Connector {
    target: Target,
    client_name: String,
    connect_timeout: Duration,
    backoff_min: Duration,
    backoff_max: Duration,
    tls_root_certificates: Option<Vec<u8>>,
    /// Signalled when a connection succeeds, so the other connection, if it is waiting out a
    /// backoff delay, retries at once: Redis is back.
    reachable: Arc<Notify>,
}

impl Connector {
    pub(crate) fn new(config: &RedisConfig) -> Connector {
        Connector {
            target: config.target.clone(),
            client_name: config.client_name(),
            connect_timeout: config.connect_timeout,
            backoff_min: config.backoff_min,
            backoff_max: config.backoff_max,
            tls_root_certificates: config.tls_root_certificates.clone(),
            reachable: Arc::new(Notify::new()),
        }
    }

    pub(crate) fn client_name(&self) -> &str {
        &self.client_name
    }

    /// One attempt: resolve the server, connect (RESP3, so messages arrive as pushes on
    /// `push`), name the connection.
    async fn connect(&self, push: impl AsyncPushSender) -> RedisResult<MultiplexedConnection> {
        let client = match &self.target {
            Target::Direct(info) => {
                let redis = info
                    .redis_settings()
                    .clone()
                    .set_protocol(ProtocolVersion::RESP3);
                let info = info.clone().set_redis_settings(redis);
                self.client_for(info)?
            }
            Target::Sentinel(s) => master_through_sentinels(s).await?,
        };
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            // Requests are bounded by the adapter's own timeouts.
            .set_response_timeout(None)
            .set_push_sender(push);
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        redis::cmd("CLIENT")
            .arg("SETNAME")
            .arg(&self.client_name)
            .exec_async(&mut conn)
            .await?;
        Ok(conn)
    }

    #[cfg(feature = "tls")]
    fn client_for(&self, info: redis::ConnectionInfo) -> RedisResult<redis::Client> {
        match &self.tls_root_certificates {
            Some(pem) if matches!(info.addr(), ConnectionAddr::TcpTls { .. }) => {
                let certificates = redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.clone()),
                };
                redis::Client::build_with_tls(info, certificates)
            }
            _ => redis::Client::open(info),
        }
    }

    #[cfg(not(feature = "tls"))]
    fn client_for(&self, info: redis::ConnectionInfo) -> RedisResult<redis::Client> {
        let _ = &self.tls_root_certificates;
        redis::Client::open(info)
    }

    /// Connects, retrying with backoff until it works or `stop` is cancelled (`None`).
    /// `make_push` builds the push handler of each attempt from the attempt's `alive` token.
    pub(crate) async fn connect_with_retry<P: AsyncPushSender>(
        &self,
        role: Role,
        stop: &CancellationToken,
        make_push: impl Fn(CancellationToken) -> P,
    ) -> Option<(MultiplexedConnection, CancellationToken)> {
        let mut backoff = Backoff::new(self.backoff_min, self.backoff_max);
        let mut failures = 0u32;
        loop {
            let alive = CancellationToken::new();
            let attempt =
                tokio::time::timeout(self.connect_timeout, self.connect(make_push(alive.clone())));
            let error = tokio::select! {
                _ = stop.cancelled() => return None,
                result = attempt => match result {
                    Ok(Ok(conn)) => {
                        self.reachable.notify_waiters();
                        if failures > 0 {
                            tracing::info!(%role, attempts = failures + 1, "connected to Redis again");
                        } else {
                            tracing::debug!(%role, "connected to Redis");
                        }
                        return Some((conn, alive));
                    }
                    Ok(Err(e)) => describe(&e),
                    Err(_) => format!("no connection within {:?}", self.connect_timeout),
                },
            };
            failures += 1;
            let delay = backoff.next_delay();
            if failures == 1 || failures.is_multiple_of(20) {
                tracing::warn!(%role, attempts = failures, error, retry_in = ?delay, "cannot connect to Redis");
            } else {
                tracing::debug!(%role, attempts = failures, error, retry_in = ?delay, "cannot connect to Redis");
            }
            tokio::select! {
                _ = stop.cancelled() => return None,
                _ = tokio::time::sleep(delay) => {}
                _ = self.reachable.notified() => {}
            }
        }
    }

    /// Checks that `conn` still answers, and with sentinels that it still talks to a master.
    pub(crate) async fn health_check(
        &self,
        conn: &mut MultiplexedConnection,
    ) -> Result<(), String> {
        let check = async {
            match &self.target {
                Target::Direct(_) => redis::cmd("PING")
                    .exec_async(conn)
                    .await
                    .map_err(|e| describe(&e)),
                Target::Sentinel(_) => {
                    let role: redis::Role = redis::cmd("ROLE")
                        .query_async(conn)
                        .await
                        .map_err(|e| describe(&e))?;
                    match role {
                        redis::Role::Primary { .. } => Ok(()),
                        _ => Err("the server is no longer the master".to_owned()),
                    }
                }
            }
        };
        tokio::time::timeout(self.connect_timeout, check)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {:?}", self.connect_timeout)))
    }
}

/// Asks the sentinels for the current master and returns a client for it.
async fn master_through_sentinels(s: &SentinelTarget) -> RedisResult<redis::Client> {
    let sentinels = s
        .sentinels
        .iter()
        .map(|(host, port)| ConnectionAddr::Tcp(host.clone(), *port));
    let mut builder = SentinelClientBuilder::new(sentinels, &s.master, SentinelServerType::Master)?
        .set_client_to_redis_db(s.db)
        .set_client_to_redis_protocol(ProtocolVersion::RESP3);
    if let Some(username) = &s.username {
        builder = builder.set_client_to_redis_username(username);
    }
    if let Some(password) = &s.password {
        builder = builder.set_client_to_redis_password(password);
    }
    if let Some(password) = &s.sentinel_password {
        builder = builder.set_client_to_sentinel_password(password);
    }
    // A fresh client per attempt: nothing cached from before a failover.
    builder.build()?.async_get_client().await
}

/// A readable reason, with a hint for the one server-version problem people hit.
pub(crate) fn describe(e: &RedisError) -> String {
    if e.kind() == redis::ErrorKind::RESP3NotSupported {
        format!("{e} (actioncable-redis needs Redis 6 or newer)")
    } else {
        e.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_are_not_connection_errors() {
        let server = RedisError::from((
            redis::ErrorKind::Server(redis::ServerErrorKind::NoPerm),
            "no permissions",
        ));
        assert!(!is_connection_error(&server));
        let io = RedisError::from(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        assert!(is_connection_error(&io));
    }
}
