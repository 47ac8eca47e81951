//! [`PostgresConfig`]: where PostgreSQL is, the channel prefix, the connection name, the
//! timeouts and the large-payload table.

use crate::wire::{MAX_NOTIFY_PAYLOAD, quote_identifier};
use std::fmt;
use std::str::FromStr as _;
use std::time::Duration;
use tokio_postgres::config::{Host, SslMode};

/// The URL [`PostgresConfig::from_env`] uses when `DATABASE_URL` is not set.
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The table that holds payloads too large for `NOTIFY`, unless
/// [`large_payload_table`](PostgresConfig::large_payload_table) names another.
pub const DEFAULT_LARGE_PAYLOAD_TABLE: &str = "action_cable_large_payloads";

/// A PostgreSQL setting could not be used. Passwords never appear in these messages.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PostgresConfigError {
    /// The URL (or `key=value` connection string) does not parse.
    #[error("invalid PostgreSQL URL: {reason}")]
    InvalidUrl {
        /// What is wrong with it.
        reason: String,
    },
    /// The URL asks for TLS (`sslmode=require`), which this adapter does not do.
    #[error("`sslmode=require`: actioncable-postgres connects without TLS only")]
    TlsNotSupported,
    /// An environment variable is not valid Unicode.
    #[error("environment variable {0} is not valid Unicode")]
    NotUnicode(&'static str),
    /// A setting is out of range.
    #[error("invalid setting {name}: {reason}")]
    InvalidSetting {
        /// The builder method.
        name: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// How to reach PostgreSQL and how the adapter behaves when it can't.
///
/// Build it from a URL ([`from_url`](Self::from_url)) or from the environment
/// ([`from_env`](Self::from_env)), then adjust it with the builder methods. Every setting has
/// a default; the crate docs list the Rails `cable.yml` equivalent of each.
///
/// ```
/// use actioncable_postgres::PostgresConfig;
/// use std::time::Duration;
///
/// let config = PostgresConfig::from_url("postgres://app:secret@10.0.0.5:5432/app_production")?
///     .channel_prefix(Some("myapp_production".into()))
///     .publish_timeout(Duration::from_millis(500));
/// assert_eq!(config.prefix(), Some("myapp_production"));
/// // Passwords are never printed.
/// assert!(!format!("{config:?}").contains("secret"));
/// # Ok::<(), actioncable_postgres::PostgresConfigError>(())
/// ```
#[derive(Clone)]
#[must_use]
pub struct PostgresConfig {
    pub(crate) pg: tokio_postgres::Config,
    pub(crate) channel_prefix: Option<String>,
    pub(crate) id: Option<String>,
    pub(crate) publish_timeout: Duration,
    pub(crate) subscribe_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) backoff_min: Duration,
    pub(crate) backoff_max: Duration,
    pub(crate) health_check_interval: Duration,
    pub(crate) large_payload_table: String,
    pub(crate) large_payload_retention: Duration,
    pub(crate) max_notify_payload: usize,
}

impl PostgresConfig {
    /// A server from a URL, `postgres://[user[:password]@]host[:port][/database][?param=…]`
    /// (or `postgresql://`, or libpq's `host=… user=…` form), as `DATABASE_URL` holds it.
    /// `host=/run/postgresql` (a directory) connects through the Unix socket there.
    ///
    /// # Errors
    /// A URL that does not parse, or one with `sslmode=require`: the adapter connects without
    /// TLS (`sslmode=prefer`, libpq's default, falls back to plain TCP).
    pub fn from_url(url: &str) -> Result<PostgresConfig, PostgresConfigError> {
        let pg = tokio_postgres::Config::from_str(url).map_err(|e| {
            // The error describes the problem, never the URL (which may hold a password).
            PostgresConfigError::InvalidUrl {
                reason: e.to_string(),
            }
        })?;
        if pg.get_ssl_mode() == SslMode::Require {
            return Err(PostgresConfigError::TlsNotSupported);
        }
        Ok(PostgresConfig {
            pg,
            channel_prefix: None,
            id: None,
            publish_timeout: Duration::from_secs(1),
            subscribe_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            health_check_interval: Duration::from_secs(10),
            large_payload_table: DEFAULT_LARGE_PAYLOAD_TABLE.to_owned(),
            large_payload_retention: Duration::from_secs(60),
            max_notify_payload: MAX_NOTIFY_PAYLOAD,
        })
    }

    /// Reads the configuration from environment variables:
    ///
    /// | variable | meaning | default |
    /// |---|---|---|
    /// | `DATABASE_URL` | the server, as for [`from_url`](Self::from_url) | `postgres://postgres@127.0.0.1:5432/postgres` |
    /// | `CABLE_CHANNEL_PREFIX` | [`channel_prefix`](Self::channel_prefix) | none |
    ///
    /// An empty variable counts as unset.
    ///
    /// # Errors
    /// An invalid value.
    pub fn from_env() -> Result<PostgresConfig, PostgresConfigError> {
        PostgresConfig::from_vars(|name| match std::env::var(name) {
            Ok(v) => Ok(Some(v)),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err(PostgresConfigError::NotUnicode(name)),
        })
    }

    /// [`from_env`](Self::from_env) over any source of variables (a map in tests, say).
    ///
    /// ```
    /// use actioncable_postgres::PostgresConfig;
    ///
    /// let config = PostgresConfig::from_lookup(|name| match name {
    ///     "DATABASE_URL" => Some("postgres://app@db.internal/app".into()),
    ///     "CABLE_CHANNEL_PREFIX" => Some("app_production".into()),
    ///     _ => None,
    /// })?;
    /// assert_eq!(config.prefix(), Some("app_production"));
    /// # Ok::<(), actioncable_postgres::PostgresConfigError>(())
    /// ```
    ///
    /// # Errors
    /// As [`from_env`](Self::from_env).
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<PostgresConfig, PostgresConfigError> {
        PostgresConfig::from_vars(|name| Ok(lookup(name)))
    }

    fn from_vars(
        get: impl Fn(&'static str) -> Result<Option<String>, PostgresConfigError>,
    ) -> Result<PostgresConfig, PostgresConfigError> {
        let var = |name| -> Result<Option<String>, PostgresConfigError> {
            Ok(get(name)?
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty()))
        };
        let url = var("DATABASE_URL")?;
        let prefix = var("CABLE_CHANNEL_PREFIX")?;
        Ok(PostgresConfig::from_url(url.as_deref().unwrap_or(DEFAULT_URL))?.channel_prefix(prefix))
    }

    /// Prefix of every channel name (Rails' `channel_prefix:`): the broadcasting
    /// `chat:lobby` is sent on `<prefix>:chat:lobby`. Use it when several apps or environments
    /// share one database server. `None` (the default) uses the broadcasting name itself. As in
    /// Rails, the prefix is used verbatim, so `Some("")` gives `:chat:lobby`.
    pub fn channel_prefix(mut self, prefix: Option<String>) -> Self {
        self.channel_prefix = prefix;
        self
    }

    /// The channel prefix, if any.
    pub fn prefix(&self) -> Option<&str> {
        self.channel_prefix.as_deref()
    }

    /// The `application_name` of both connections (Rails' `id:`, which Rails sets on its
    /// listening connection), as `pg_stat_activity` shows it. Default:
    /// `ActionCable-PID-<process id>`, as Rails.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// How long a broadcast may take before it fails with
    /// [`PubSubError::Unavailable`](actioncable::PubSubError::Unavailable) (default 1 s),
    /// storing a large payload included. While PostgreSQL is down a broadcast waits at most
    /// this long after the connection was lost for it to come back, and fails at once after
    /// that.
    pub fn publish_timeout(mut self, timeout: Duration) -> Self {
        self.publish_timeout = timeout;
        self
    }

    /// How long a new stream waits for its `LISTEN`, including waiting for a lost connection
    /// to come back (default 5 s). When it passes, the subscription that asked for the stream
    /// is rejected.
    pub fn subscribe_timeout(mut self, timeout: Duration) -> Self {
        self.subscribe_timeout = timeout;
        self
    }

    /// How long one connection attempt may take; also the limit for a health check's answer
    /// and for reading a stored payload (default 2 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Delays between reconnection attempts: `min`, doubling up to `max`, each randomised
    /// to between half and all of it (default 100 ms to 5 s). Attempts never stop.
    pub fn reconnect_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.backoff_min = min;
        self.backoff_max = max;
        self
    }

    /// How often an idle connection is checked with `SELECT 1` (default 10 s), so that one
    /// that died silently is replaced.
    pub fn health_check_interval(mut self, every: Duration) -> Self {
        self.health_check_interval = every.max(Duration::from_millis(10));
        self
    }

    /// The table that holds payloads too large for `NOTIFY` (default
    /// `action_cable_large_payloads`, in the connection's `search_path`). It is created on the
    /// first large broadcast if it does not exist. Every node of an app must name the same
    /// table.
    ///
    /// # Errors
    /// An empty name or one with a NUL character.
    pub fn large_payload_table(
        mut self,
        table: impl Into<String>,
    ) -> Result<Self, PostgresConfigError> {
        let table = table.into();
        if table.is_empty() || quote_identifier(&table).is_none() {
            return Err(PostgresConfigError::InvalidSetting {
                name: "large_payload_table",
                reason: "a table name must be non-empty and hold no NUL character",
            });
        }
        self.large_payload_table = table;
        Ok(self)
    }

    /// How long a stored large payload is kept (default 60 s): long enough for every node to
    /// read it, even one whose listening connection is busy. Older rows are deleted by the
    /// health check of a node that stored one, and before each large broadcast.
    pub fn large_payload_retention(mut self, retention: Duration) -> Self {
        self.large_payload_retention = retention.max(Duration::from_secs(1));
        self
    }

    /// Payloads longer than this many bytes are stored in the
    /// [table](Self::large_payload_table) instead of sent with `NOTIFY` (default 7999, the
    /// most PostgreSQL's `NOTIFY` takes). Lower it only for a server built with a smaller
    /// block size, or to try the large-payload path with small messages.
    ///
    /// # Errors
    /// Zero, or more than 7999.
    pub fn max_notify_payload(mut self, bytes: usize) -> Result<Self, PostgresConfigError> {
        if bytes == 0 || bytes > MAX_NOTIFY_PAYLOAD {
            return Err(PostgresConfigError::InvalidSetting {
                name: "max_notify_payload",
                reason: "must be between 1 and 7999 bytes",
            });
        }
        self.max_notify_payload = bytes;
        Ok(self)
    }

    /// The connection name: the configured [`id`](Self::id) or `ActionCable-PID-<pid>`.
    pub(crate) fn application_name(&self) -> String {
        self.id
            .clone()
            .unwrap_or_else(|| format!("ActionCable-PID-{}", std::process::id()))
    }

    /// The connection settings for one connection.
    pub(crate) fn connection(&self) -> tokio_postgres::Config {
        let mut pg = self.pg.clone();
        pg.application_name(self.application_name());
        pg.connect_timeout(self.connect_timeout);
        pg
    }
}

impl fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hosts: Vec<String> = self
            .pg
            .get_hosts()
            .iter()
            .map(|h| match h {
                Host::Tcp(name) => name.clone(),
                Host::Unix(path) => path.display().to_string(),
            })
            .collect();
        f.debug_struct("PostgresConfig")
            .field("hosts", &hosts)
            .field("ports", &self.pg.get_ports())
            .field("dbname", &self.pg.get_dbname())
            .field("user", &self.pg.get_user())
            .field("channel_prefix", &self.channel_prefix)
            .field("id", &self.id)
            .field("publish_timeout", &self.publish_timeout)
            .field("subscribe_timeout", &self.subscribe_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("backoff", &(self.backoff_min, self.backoff_max))
            .field("health_check_interval", &self.health_check_interval)
            .field("large_payload_table", &self.large_payload_table)
            .field("large_payload_retention", &self.large_payload_retention)
            .field("max_notify_payload", &self.max_notify_payload)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_connection_strings_parse() {
        let c = PostgresConfig::from_url("postgres://app:pw@db:6543/app_dev").unwrap();
        assert_eq!(c.pg.get_ports(), [6543]);
        assert_eq!(c.pg.get_dbname(), Some("app_dev"));
        assert_eq!(c.pg.get_user(), Some("app"));
        let c = PostgresConfig::from_url("host=/run/postgresql user=postgres").unwrap();
        assert!(matches!(c.pg.get_hosts(), [Host::Unix(_)]));
        assert!(matches!(
            PostgresConfig::from_url("postgres://[::1"),
            Err(PostgresConfigError::InvalidUrl { .. })
        ));
    }

    #[test]
    fn tls_is_refused_when_required_and_skipped_when_preferred() {
        assert!(matches!(
            PostgresConfig::from_url("postgres://db/app?sslmode=require"),
            Err(PostgresConfigError::TlsNotSupported)
        ));
        assert!(PostgresConfig::from_url("postgres://db/app?sslmode=prefer").is_ok());
        assert!(PostgresConfig::from_url("postgres://db/app?sslmode=disable").is_ok());
    }

    #[test]
    fn environment_defaults_and_empty_values() {
        let c = PostgresConfig::from_lookup(|_| None).unwrap();
        assert_eq!(c.pg.get_dbname(), Some("postgres"));
        assert_eq!(c.prefix(), None);
        let c = PostgresConfig::from_lookup(|name| match name {
            "DATABASE_URL" => Some(" postgres://u@h/d ".into()),
            "CABLE_CHANNEL_PREFIX" => Some("  ".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.pg.get_dbname(), Some("d"));
        assert_eq!(c.prefix(), None);
    }

    #[test]
    fn the_connection_is_named_like_rails_unless_configured() {
        let c = PostgresConfig::from_url(DEFAULT_URL).unwrap();
        assert_eq!(
            c.connection().get_application_name(),
            Some(format!("ActionCable-PID-{}", std::process::id()).as_str())
        );
        let c = c.id("cable-7");
        assert_eq!(c.connection().get_application_name(), Some("cable-7"));
    }

    #[test]
    fn settings_are_checked() {
        let c = PostgresConfig::from_url(DEFAULT_URL).unwrap();
        assert!(c.clone().max_notify_payload(0).is_err());
        assert!(c.clone().max_notify_payload(8000).is_err());
        assert!(c.clone().max_notify_payload(7999).is_ok());
        assert!(c.clone().large_payload_table("").is_err());
        assert!(c.clone().large_payload_table("a\0b").is_err());
        let c = c.large_payload_table("cable \"big\" rows").unwrap();
        assert_eq!(c.large_payload_table, "cable \"big\" rows");
        let debug = format!(
            "{:?}",
            PostgresConfig::from_url("postgres://u:hunter2@h/d").unwrap()
        );
        assert!(!debug.contains("hunter2"), "{debug}");
    }
}
