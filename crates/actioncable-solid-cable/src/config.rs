//! [`SolidCableConfig`]: which database, the gem's settings (`polling_interval`,
//! `message_retention`, `autotrim`, `trim_batch_size`, `use_skip_locked`, `silence_polling`),
//! the channel prefix, and how the adapter waits and reconnects.

use crate::wire::parse_rails_duration;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr as _;
use std::time::Duration;
use tokio_postgres::config::{Host, SslMode};

/// A setting could not be used. Passwords never appear in these messages.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SolidCableConfigError {
    /// The URL does not parse, or names no database this adapter knows.
    #[error("invalid database URL: {reason}")]
    InvalidUrl {
        /// What is wrong with it.
        reason: String,
    },
    /// The URL asks for TLS (`sslmode=require`), which this adapter does not do.
    #[error("`sslmode=require`: actioncable-solid-cable connects without TLS only")]
    TlsNotSupported,
    /// Neither `CABLE_DATABASE_URL` nor `DATABASE_URL` is set.
    #[error("no database: set CABLE_DATABASE_URL (or DATABASE_URL)")]
    MissingUrl,
    /// An environment variable is not valid Unicode.
    #[error("environment variable {0} is not valid Unicode")]
    NotUnicode(&'static str),
    /// A setting is out of range or does not parse.
    #[error("invalid setting {name}: {reason}")]
    InvalidSetting {
        /// The setting.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// The kind of database a [`SolidCableConfig`] points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Database {
    /// PostgreSQL (`postgres://`, `postgresql://`).
    Postgres,
    /// MySQL or MariaDB (`mysql://`, `mariadb://`, `mysql2://`, `trilogy://`).
    Mysql,
    /// SQLite (`sqlite://path`, `sqlite3://path`).
    Sqlite,
}

/// Where the table is.
#[derive(Clone)]
pub(crate) enum Target {
    Postgres(Box<tokio_postgres::Config>),
    Mysql(mysql_async::Opts),
    Sqlite(PathBuf),
}

/// Which database holds the Solid Cable table, the gem's settings, and how the adapter behaves
/// when the database is away.
///
/// Build it from a URL ([`from_url`](Self::from_url)) or from the environment
/// ([`from_env`](Self::from_env)), then adjust it with the builder methods. Every setting has
/// a default; the crate docs list the `cable.yml` equivalent of each.
///
/// ```
/// use actioncable_solid_cable::SolidCableConfig;
/// use std::time::Duration;
///
/// let config = SolidCableConfig::from_url("mysql://app:secret@10.0.0.5:3306/app_cable")?
///     .polling_interval(Duration::from_millis(50))
///     .message_retention(Duration::from_secs(3600));
/// assert_eq!(config.polling_interval_value(), Duration::from_millis(50));
/// // Passwords are never printed.
/// assert!(!format!("{config:?}").contains("secret"));
/// # Ok::<(), actioncable_solid_cable::SolidCableConfigError>(())
/// ```
#[derive(Clone)]
#[must_use]
pub struct SolidCableConfig {
    pub(crate) target: Target,
    pub(crate) channel_prefix: Option<String>,
    pub(crate) polling_interval: Duration,
    pub(crate) message_retention: Duration,
    pub(crate) autotrim: bool,
    pub(crate) trim_batch_size: u32,
    pub(crate) trim_chance: f64,
    pub(crate) use_skip_locked: bool,
    pub(crate) silence_polling: bool,
    pub(crate) create_table: bool,
    pub(crate) commit_window: Duration,
    pub(crate) poll_batch_size: u32,
    pub(crate) publish_timeout: Duration,
    pub(crate) subscribe_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) backoff_min: Duration,
    pub(crate) backoff_max: Duration,
}

/// The gem's defaults (`lib/solid_cable.rb`).
const POLLING_INTERVAL: Duration = Duration::from_millis(100);
const MESSAGE_RETENTION: Duration = Duration::from_secs(86_400);
const TRIM_BATCH_SIZE: u32 = 100;
const TRIM_CHANCE: f64 = 2.0;

impl SolidCableConfig {
    /// A database from a URL:
    ///
    /// - `postgres://[user[:password]@]host[:port][/database][?param=…]` (or `postgresql://`,
    ///   or libpq's `host=… user=…` form); `host=/run/postgresql` connects through the Unix
    ///   socket there;
    /// - `mysql://[user[:password]@]host[:port]/database[?param=…]` (or `mariadb://`, or
    ///   Rails' adapter names `mysql2://` and `trilogy://`), parameters as `mysql_async` reads
    ///   them;
    /// - `sqlite://path/to/cable.sqlite3` (a path relative to the working directory) or
    ///   `sqlite:///var/db/cable.sqlite3` (absolute); also `sqlite3://`. The file is created if
    ///   it is missing.
    ///
    /// # Errors
    /// A URL that does not parse, another scheme, an in-memory SQLite database (each
    /// connection would get its own), or `sslmode=require`: the adapter connects without TLS.
    pub fn from_url(url: &str) -> Result<SolidCableConfig, SolidCableConfigError> {
        Ok(SolidCableConfig::with_target(parse_target(url.trim())?))
    }

    fn with_target(target: Target) -> SolidCableConfig {
        SolidCableConfig {
            target,
            channel_prefix: None,
            polling_interval: POLLING_INTERVAL,
            message_retention: MESSAGE_RETENTION,
            autotrim: true,
            trim_batch_size: TRIM_BATCH_SIZE,
            trim_chance: TRIM_CHANCE,
            use_skip_locked: true,
            silence_polling: true,
            create_table: true,
            commit_window: Duration::from_secs(2),
            poll_batch_size: 100,
            publish_timeout: Duration::from_secs(2),
            subscribe_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
        }
    }

    /// Reads the configuration from environment variables:
    ///
    /// | variable | meaning | default |
    /// |---|---|---|
    /// | `CABLE_DATABASE_URL` | the database, as for [`from_url`](Self::from_url) (Rails' variable for a `cable` database) | `DATABASE_URL` |
    /// | `DATABASE_URL` | the database, when `CABLE_DATABASE_URL` is not set | none: an error |
    /// | `CABLE_CHANNEL_PREFIX` | [`channel_prefix`](Self::channel_prefix) | none |
    /// | `SOLID_CABLE_POLLING_INTERVAL` | [`polling_interval`](Self::polling_interval), as `0.1.seconds` or in seconds (`0.1`) | `0.1.seconds` |
    /// | `SOLID_CABLE_MESSAGE_RETENTION` | [`message_retention`](Self::message_retention), as `1.day` or in seconds | `1.day` |
    /// | `SOLID_CABLE_AUTOTRIM` | [`autotrim`](Self::autotrim): `false` turns it off | `true` |
    ///
    /// An empty variable counts as unset.
    ///
    /// # Errors
    /// No URL, or an invalid value.
    pub fn from_env() -> Result<SolidCableConfig, SolidCableConfigError> {
        SolidCableConfig::from_vars(|name| match std::env::var(name) {
            Ok(v) => Ok(Some(v)),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err(SolidCableConfigError::NotUnicode(name)),
        })
    }

    /// [`from_env`](Self::from_env) over any source of variables (a map in tests, say).
    ///
    /// ```
    /// use actioncable_solid_cable::{Database, SolidCableConfig};
    /// use std::time::Duration;
    ///
    /// let config = SolidCableConfig::from_lookup(|name| match name {
    ///     "CABLE_DATABASE_URL" => Some("sqlite://storage/production_cable.sqlite3".into()),
    ///     "SOLID_CABLE_POLLING_INTERVAL" => Some("0.05.seconds".into()),
    ///     _ => None,
    /// })?;
    /// assert_eq!(config.database(), Database::Sqlite);
    /// assert_eq!(config.polling_interval_value(), Duration::from_millis(50));
    /// # Ok::<(), actioncable_solid_cable::SolidCableConfigError>(())
    /// ```
    ///
    /// # Errors
    /// As [`from_env`](Self::from_env).
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<SolidCableConfig, SolidCableConfigError> {
        SolidCableConfig::from_vars(|name| Ok(lookup(name)))
    }

    fn from_vars(
        get: impl Fn(&'static str) -> Result<Option<String>, SolidCableConfigError>,
    ) -> Result<SolidCableConfig, SolidCableConfigError> {
        let var = |name| -> Result<Option<String>, SolidCableConfigError> {
            Ok(get(name)?
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty()))
        };
        let url = match var("CABLE_DATABASE_URL")? {
            Some(url) => url,
            None => var("DATABASE_URL")?.ok_or(SolidCableConfigError::MissingUrl)?,
        };
        let mut config =
            SolidCableConfig::from_url(&url)?.channel_prefix(var("CABLE_CHANNEL_PREFIX")?);
        if let Some(text) = var("SOLID_CABLE_POLLING_INTERVAL")? {
            config = config.polling_interval(duration("SOLID_CABLE_POLLING_INTERVAL", &text)?);
        }
        if let Some(text) = var("SOLID_CABLE_MESSAGE_RETENTION")? {
            config = config.message_retention(duration("SOLID_CABLE_MESSAGE_RETENTION", &text)?);
        }
        if let Some(text) = var("SOLID_CABLE_AUTOTRIM")? {
            // The gem: `cable_config.autotrim != false`.
            config = config.autotrim(text != "false");
        }
        Ok(config)
    }

    /// The kind of database.
    pub fn database(&self) -> Database {
        match self.target {
            Target::Postgres(_) => Database::Postgres,
            Target::Mysql(_) => Database::Mysql,
            Target::Sqlite(_) => Database::Sqlite,
        }
    }

    /// Prefix of every channel name (`channel_prefix:` in `cable.yml`): the broadcasting
    /// `chat:lobby` is stored as `<prefix>:chat:lobby`. `None` (the default) stores the
    /// broadcasting name itself. As in Rails, the prefix is used verbatim.
    pub fn channel_prefix(mut self, prefix: Option<String>) -> Self {
        self.channel_prefix = prefix;
        self
    }

    /// The channel prefix, if any.
    pub fn prefix(&self) -> Option<&str> {
        self.channel_prefix.as_deref()
    }

    /// How long the poller sleeps between polls (`polling_interval:`, default 0.1 s): the
    /// delay a broadcast may take to reach another node, and one query per interval per node.
    /// At least 1 ms.
    pub fn polling_interval(mut self, interval: Duration) -> Self {
        self.polling_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// The polling interval.
    pub fn polling_interval_value(&self) -> Duration {
        self.polling_interval
    }

    /// How long rows are kept before a trim may delete them (`message_retention:`, default
    /// 1 day).
    pub fn message_retention(mut self, retention: Duration) -> Self {
        self.message_retention = retention;
        self
    }

    /// Whether publishes trim old rows (`autotrim:`, default `true`). Off, nothing here
    /// deletes rows: run the gem's `SolidCable::TrimJob` or your own `DELETE` instead.
    pub fn autotrim(mut self, on: bool) -> Self {
        self.autotrim = on;
        self
    }

    /// How many rows one trim deletes at most (`trim_batch_size:`, default 100). As in the
    /// gem, a value below 2 means 100.
    pub fn trim_batch_size(mut self, size: u32) -> Self {
        self.trim_batch_size = if size < 2 { TRIM_BATCH_SIZE } else { size };
        self
    }

    /// How many rows each publish aims to trim, relative to the batch size: a publish trims
    /// with the probability `trim_chance / trim_batch_size` (its fractional part, as the gem
    /// computes it; a whole number trims every time). Default 2, the gem's constant
    /// `SolidCable.trim_chance` (not a `cable.yml` setting): one publish in fifty with the
    /// default batch of 100.
    ///
    /// # Errors
    /// A negative or non-finite number.
    pub fn trim_chance(mut self, chance: f64) -> Result<Self, SolidCableConfigError> {
        if !chance.is_finite() || chance < 0.0 {
            return Err(SolidCableConfigError::InvalidSetting {
                name: "trim_chance",
                reason: format!("{chance} is not a finite number of at least 0"),
            });
        }
        self.trim_chance = chance;
        Ok(self)
    }

    /// Whether the trim locks its rows with `FOR UPDATE SKIP LOCKED` (`use_skip_locked:`,
    /// default `true`) or waits for them with `FOR UPDATE`. Turn it off for MySQL before 8.0
    /// or MariaDB before 10.6. No effect on SQLite.
    pub fn use_skip_locked(mut self, on: bool) -> Self {
        self.use_skip_locked = on;
        self
    }

    /// Whether polls stay out of the log (`silence_polling:`, default `true`). Off, every poll
    /// is logged at `debug` with its row count.
    pub fn silence_polling(mut self, on: bool) -> Self {
        self.silence_polling = on;
        self
    }

    /// Whether the adapter creates the table (and its indexes) when it is missing (default
    /// `true`). A Rails app creates it with its migration (`db/cable_schema.rb`); turn this off
    /// when the database user may not create tables.
    pub fn create_table(mut self, on: bool) -> Self {
        self.create_table = on;
        self
    }

    /// How long after a row was seen a row with a smaller id may still commit and be
    /// delivered (default 2 s; not in the gem, which never delivers such a row). See the crate
    /// docs, "Rows that commit out of order".
    pub fn commit_window(mut self, window: Duration) -> Self {
        self.commit_window = window;
        self
    }

    /// How many rows one poll reads at most (default 100); a full batch is followed by the
    /// next poll at once. At least 1.
    pub fn poll_batch_size(mut self, rows: u32) -> Self {
        self.poll_batch_size = rows.max(1);
        self
    }

    /// How long a broadcast may take before it fails with
    /// [`PubSubError::Unavailable`](actioncable::PubSubError::Unavailable) (default 2 s),
    /// reconnecting included.
    pub fn publish_timeout(mut self, timeout: Duration) -> Self {
        self.publish_timeout = timeout;
        self
    }

    /// How long a new stream may wait for the database (default 5 s); when it passes, the
    /// subscription that asked for the stream is rejected.
    pub fn subscribe_timeout(mut self, timeout: Duration) -> Self {
        self.subscribe_timeout = timeout;
        self
    }

    /// How long one connection attempt may take (default 2 s); also the limit for one poll.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Delays between reconnection attempts: `min`, doubling up to `max`, each randomised to
    /// between half and all of it (default 100 ms to 5 s). Attempts never stop.
    pub fn reconnect_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.backoff_min = min;
        self.backoff_max = max;
        self
    }
}

fn duration(name: &'static str, text: &str) -> Result<Duration, SolidCableConfigError> {
    let parsed = parse_rails_duration(text).or_else(|| {
        text.parse::<f64>()
            .ok()
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
    });
    parsed.ok_or_else(|| SolidCableConfigError::InvalidSetting {
        name,
        reason: format!("{text:?} is not a duration such as `0.1.seconds` or `1.day`"),
    })
}

fn invalid(reason: impl Into<String>) -> SolidCableConfigError {
    SolidCableConfigError::InvalidUrl {
        reason: reason.into(),
    }
}

fn parse_target(url: &str) -> Result<Target, SolidCableConfigError> {
    let (scheme, rest) = match url.split_once(':') {
        Some((scheme, rest)) if !scheme.contains(char::is_whitespace) => {
            (scheme.to_ascii_lowercase(), rest)
        }
        // libpq's `host=… user=…` form.
        _ if url.contains('=') => return postgres(url),
        _ => return Err(invalid("expected postgres://, mysql:// or sqlite://")),
    };
    match scheme.as_str() {
        "postgres" | "postgresql" => postgres(url),
        "mysql" | "mariadb" | "mysql2" | "trilogy" => {
            let url = format!("mysql:{rest}");
            // The error describes the problem, never the URL (which may hold a password).
            let opts = mysql_async::Opts::from_url(&url).map_err(|e| invalid(e.to_string()))?;
            Ok(Target::Mysql(opts))
        }
        "sqlite" | "sqlite3" => {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if path.is_empty() {
                return Err(invalid("a sqlite:// URL needs a file path"));
            }
            if path == ":memory:" || path.starts_with("file::memory:") {
                return Err(invalid(
                    "an in-memory SQLite database cannot be shared between connections",
                ));
            }
            Ok(Target::Sqlite(PathBuf::from(path)))
        }
        other => Err(invalid(format!(
            "unknown scheme {other:?}: expected postgres://, mysql:// or sqlite://"
        ))),
    }
}

fn postgres(url: &str) -> Result<Target, SolidCableConfigError> {
    let pg = tokio_postgres::Config::from_str(url).map_err(|e| invalid(e.to_string()))?;
    if pg.get_ssl_mode() == SslMode::Require {
        return Err(SolidCableConfigError::TlsNotSupported);
    }
    Ok(Target::Postgres(Box::new(pg)))
}

impl fmt::Debug for SolidCableConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("SolidCableConfig");
        match &self.target {
            Target::Postgres(pg) => {
                let hosts: Vec<String> = pg
                    .get_hosts()
                    .iter()
                    .map(|h| match h {
                        Host::Tcp(name) => name.clone(),
                        Host::Unix(path) => path.display().to_string(),
                    })
                    .collect();
                d.field("database", &"postgres")
                    .field("hosts", &hosts)
                    .field("ports", &pg.get_ports())
                    .field("dbname", &pg.get_dbname())
                    .field("user", &pg.get_user());
            }
            Target::Mysql(opts) => {
                d.field("database", &"mysql")
                    .field("host", &opts.ip_or_hostname())
                    .field("port", &opts.tcp_port())
                    .field("dbname", &opts.db_name())
                    .field("user", &opts.user());
            }
            Target::Sqlite(path) => {
                d.field("database", &"sqlite").field("path", path);
            }
        }
        d.field("channel_prefix", &self.channel_prefix)
            .field("polling_interval", &self.polling_interval)
            .field("message_retention", &self.message_retention)
            .field("autotrim", &self.autotrim)
            .field("trim_batch_size", &self.trim_batch_size)
            .field("trim_chance", &self.trim_chance)
            .field("use_skip_locked", &self.use_skip_locked)
            .field("silence_polling", &self.silence_polling)
            .field("create_table", &self.create_table)
            .field("commit_window", &self.commit_window)
            .field("poll_batch_size", &self.poll_batch_size)
            .field("publish_timeout", &self.publish_timeout)
            .field("subscribe_timeout", &self.subscribe_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("backoff", &(self.backoff_min, self.backoff_max))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_pick_the_database() {
        let c = SolidCableConfig::from_url("postgres://app:pw@db:6543/app_cable").unwrap();
        assert_eq!(c.database(), Database::Postgres);
        let c = SolidCableConfig::from_url("host=/run/postgresql user=postgres").unwrap();
        assert_eq!(c.database(), Database::Postgres);
        for url in [
            "mysql://root@127.0.0.1:3306/app",
            "mariadb://root@127.0.0.1/app",
            "trilogy://root@db/app",
            "mysql2://root@db/app",
        ] {
            let c = SolidCableConfig::from_url(url).unwrap();
            assert_eq!(c.database(), Database::Mysql, "{url}");
        }
        let Target::Sqlite(path) = SolidCableConfig::from_url("sqlite://storage/cable.sqlite3")
            .unwrap()
            .target
        else {
            panic!("not sqlite");
        };
        assert_eq!(path, PathBuf::from("storage/cable.sqlite3"));
        let Target::Sqlite(path) = SolidCableConfig::from_url("sqlite3:///var/db/c.sqlite3")
            .unwrap()
            .target
        else {
            panic!("not sqlite");
        };
        assert_eq!(path, PathBuf::from("/var/db/c.sqlite3"));
        for bad in [
            "redis://127.0.0.1",
            "sqlite://",
            "sqlite://:memory:",
            "nothing",
        ] {
            assert!(SolidCableConfig::from_url(bad).is_err(), "{bad}");
        }
        assert!(matches!(
            SolidCableConfig::from_url("postgres://db/app?sslmode=require"),
            Err(SolidCableConfigError::TlsNotSupported)
        ));
    }

    #[test]
    fn defaults_are_the_gems() {
        let c = SolidCableConfig::from_url("sqlite://x.sqlite3").unwrap();
        assert_eq!(c.polling_interval, Duration::from_millis(100));
        assert_eq!(c.message_retention, Duration::from_secs(86_400));
        assert!(c.autotrim && c.use_skip_locked && c.silence_polling);
        assert_eq!(c.trim_batch_size, 100);
        assert_eq!(c.trim_chance, 2.0);
        assert_eq!(c.clone().trim_batch_size(1).trim_batch_size, 100);
        assert_eq!(c.clone().trim_batch_size(2).trim_batch_size, 2);
        assert!(c.clone().trim_chance(-1.0).is_err());
    }

    #[test]
    fn environment() {
        assert!(matches!(
            SolidCableConfig::from_lookup(|_| None),
            Err(SolidCableConfigError::MissingUrl)
        ));
        let c = SolidCableConfig::from_lookup(|name| match name {
            "DATABASE_URL" => Some("postgres://u@h/d".into()),
            "CABLE_CHANNEL_PREFIX" => Some(" app ".into()),
            "SOLID_CABLE_MESSAGE_RETENTION" => Some("2.hours".into()),
            "SOLID_CABLE_POLLING_INTERVAL" => Some("0.25".into()),
            "SOLID_CABLE_AUTOTRIM" => Some("false".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.database(), Database::Postgres);
        assert_eq!(c.prefix(), Some("app"));
        assert_eq!(c.message_retention, Duration::from_secs(7200));
        assert_eq!(c.polling_interval, Duration::from_millis(250));
        assert!(!c.autotrim);
        let c = SolidCableConfig::from_lookup(|name| match name {
            "CABLE_DATABASE_URL" => Some("mysql://root@h/cable".into()),
            "DATABASE_URL" => Some("postgres://u@h/d".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.database(), Database::Mysql, "CABLE_DATABASE_URL first");
        assert!(
            SolidCableConfig::from_lookup(|name| match name {
                "DATABASE_URL" => Some("sqlite://x".into()),
                "SOLID_CABLE_POLLING_INTERVAL" => Some("soon".into()),
                _ => None,
            })
            .is_err()
        );
    }

    #[test]
    fn passwords_stay_out_of_debug_output() {
        for url in ["postgres://u:hunter2@h/d", "mysql://u:hunter2@h/d"] {
            let debug = format!("{:?}", SolidCableConfig::from_url(url).unwrap());
            assert!(!debug.contains("hunter2"), "{debug}");
        }
        let e = SolidCableConfig::from_url("mysql://u:hunter2@h:notaport/d").unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }
}
