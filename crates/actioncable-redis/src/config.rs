//! [`RedisConfig`]: where Redis is, the channel prefix, the client name and the timeouts.

use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo as _};
use std::fmt;
use std::time::Duration;

/// The URL [`RedisConfig::from_env`] uses when `REDIS_URL` is not set.
pub const DEFAULT_URL: &str = "redis://127.0.0.1:6379";

/// The port of a sentinel address given without one (Redis Sentinel's default).
pub const DEFAULT_SENTINEL_PORT: u16 = 26379;

/// A Redis setting could not be used. Passwords never appear in these messages.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisConfigError {
    /// The Redis URL does not parse or names something unsupported.
    #[error("invalid Redis URL: {reason}")]
    InvalidUrl {
        /// What is wrong with it.
        reason: String,
    },
    /// A `rediss://` URL, but the crate was built without its `tls` feature.
    #[error("`rediss://` needs the `tls` feature of actioncable-redis")]
    TlsNotEnabled,
    /// A sentinel address is not `host:port` (or `host`).
    #[error("invalid sentinel address {address:?}: {reason}")]
    InvalidSentinel {
        /// The address as given.
        address: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An environment variable that the others make necessary is missing or empty.
    #[error("environment variable {0} must be set")]
    MissingEnv(&'static str),
    /// An environment variable is not valid Unicode.
    #[error("environment variable {0} is not valid Unicode")]
    NotUnicode(&'static str),
}

/// Where the Redis server is.
#[derive(Clone)]
pub(crate) enum Target {
    /// One server, from a URL.
    Direct(ConnectionInfo),
    /// Whichever server the sentinels name as the master of `master`.
    Sentinel(SentinelTarget),
}

#[derive(Clone)]
pub(crate) struct SentinelTarget {
    pub(crate) master: String,
    pub(crate) sentinels: Vec<(String, u16)>,
    pub(crate) db: i64,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) sentinel_password: Option<String>,
}

/// How to reach Redis and how the adapter behaves when it can't.
///
/// Build it from a URL ([`from_url`](Self::from_url)), from sentinels
/// ([`sentinel`](Self::sentinel)) or from the environment ([`from_env`](Self::from_env)), then
/// adjust it with the builder methods. Every setting has a default; the crate docs list the
/// Rails `cable.yml` equivalent of each.
///
/// ```
/// use actioncable_redis::RedisConfig;
/// use std::time::Duration;
///
/// let config = RedisConfig::from_url("redis://:secret@10.0.0.5:6379/2")?
///     .channel_prefix(Some("myapp_production".into()))
///     .publish_timeout(Duration::from_millis(500));
/// assert_eq!(config.prefix(), Some("myapp_production"));
/// // Passwords are never printed.
/// assert!(!format!("{config:?}").contains("secret"));
/// # Ok::<(), actioncable_redis::RedisConfigError>(())
/// ```
#[derive(Clone)]
#[must_use]
pub struct RedisConfig {
    pub(crate) target: Target,
    pub(crate) channel_prefix: Option<String>,
    pub(crate) id: Option<String>,
    pub(crate) publish_timeout: Duration,
    pub(crate) subscribe_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) backoff_min: Duration,
    pub(crate) backoff_max: Duration,
    pub(crate) health_check_interval: Duration,
    /// PEM root certificates that replace the system's for `rediss://`.
    pub(crate) tls_root_certificates: Option<Vec<u8>>,
}

impl RedisConfig {
    fn with_target(target: Target) -> RedisConfig {
        RedisConfig {
            target,
            channel_prefix: None,
            id: None,
            publish_timeout: Duration::from_secs(1),
            subscribe_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            health_check_interval: Duration::from_secs(10),
            tls_root_certificates: None,
        }
    }

    /// One Redis server, from a URL (Rails' `url:`):
    /// `redis://[[username]:password@]host[:port][/db]`, `rediss://…` for TLS (feature `tls`,
    /// on by default; the server certificate is checked against the system's root
    /// certificates, or those given to
    /// [`tls_root_certificates`](Self::tls_root_certificates)) or
    /// `redis+unix:///path/to/socket`. The port defaults to 6379 and the database to 0.
    ///
    /// # Errors
    /// A URL that does not parse, or `rediss://` without the `tls` feature.
    pub fn from_url(url: &str) -> Result<RedisConfig, RedisConfigError> {
        let scheme = url.split_once("://").map(|(s, _)| s).unwrap_or("");
        if matches!(scheme, "rediss" | "valkeys") && !cfg!(feature = "tls") {
            return Err(RedisConfigError::TlsNotEnabled);
        }
        if !matches!(
            scheme,
            "redis" | "rediss" | "valkey" | "valkeys" | "redis+unix" | "valkey+unix" | "unix"
        ) {
            return Err(RedisConfigError::InvalidUrl {
                reason: "the scheme must be redis://, rediss:// or redis+unix://".into(),
            });
        }
        let info = url
            .into_connection_info()
            .map_err(|e| RedisConfigError::InvalidUrl {
                // The error describes the problem, never the URL (which may hold a password).
                reason: e.to_string(),
            })?;
        Ok(RedisConfig::with_target(Target::Direct(info)))
    }

    /// A master found through Redis Sentinel (Rails' `sentinels:` with the master name as the
    /// URL's host). `sentinels` are `host:port` addresses (`host` alone means port 26379,
    /// IPv6 as `[::1]:26379`). Every (re)connection asks the sentinels for the current master,
    /// so after a failover the adapter follows the new one. Set the master's database and
    /// credentials with [`db`](Self::db), [`username`](Self::username) and
    /// [`password`](Self::password), the sentinels' with
    /// [`sentinel_password`](Self::sentinel_password).
    ///
    /// ```
    /// use actioncable_redis::RedisConfig;
    ///
    /// let config = RedisConfig::sentinel("mymaster", ["10.0.0.1:26379", "10.0.0.2"])?
    ///     .db(1)
    ///     .password("secret");
    /// # let _ = config;
    /// # Ok::<(), actioncable_redis::RedisConfigError>(())
    /// ```
    ///
    /// # Errors
    /// No sentinels, an empty master name, or an address that is not `host[:port]`.
    pub fn sentinel<I, S>(master_name: &str, sentinels: I) -> Result<RedisConfig, RedisConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let sentinels = sentinels
            .into_iter()
            .map(|s| parse_host_port(s.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        if sentinels.is_empty() {
            return Err(RedisConfigError::InvalidSentinel {
                address: String::new(),
                reason: "at least one sentinel is needed",
            });
        }
        if master_name.trim().is_empty() {
            return Err(RedisConfigError::InvalidSentinel {
                address: master_name.into(),
                reason: "the master name is empty",
            });
        }
        Ok(RedisConfig::with_target(Target::Sentinel(SentinelTarget {
            master: master_name.trim().to_owned(),
            sentinels,
            db: 0,
            username: None,
            password: None,
            sentinel_password: None,
        })))
    }

    /// Reads the configuration from environment variables:
    ///
    /// | variable | meaning | default |
    /// |---|---|---|
    /// | `REDIS_URL` | the server, as for [`from_url`](Self::from_url); with sentinels only its database, username and password are used | `redis://127.0.0.1:6379` |
    /// | `CABLE_CHANNEL_PREFIX` | [`channel_prefix`](Self::channel_prefix) | none |
    /// | `REDIS_SENTINELS` | comma-separated sentinel `host:port` list; switches to [`sentinel`](Self::sentinel) | none |
    /// | `REDIS_SENTINEL_MASTER` | the master name; required with `REDIS_SENTINELS` | none |
    ///
    /// An empty variable counts as unset.
    ///
    /// # Errors
    /// An invalid value, or `REDIS_SENTINELS` without `REDIS_SENTINEL_MASTER`.
    pub fn from_env() -> Result<RedisConfig, RedisConfigError> {
        RedisConfig::from_vars(|name| match std::env::var(name) {
            Ok(v) => Ok(Some(v)),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err(RedisConfigError::NotUnicode(name)),
        })
    }

    /// [`from_env`](Self::from_env) over any source of variables (a map in tests, say).
    ///
    /// # Errors
    /// As [`from_env`](Self::from_env).
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<RedisConfig, RedisConfigError> {
        RedisConfig::from_vars(|name| Ok(lookup(name)))
    }

    /// [`from_env`](Self::from_env) over any source of variables.
    pub(crate) fn from_vars(
        get: impl Fn(&'static str) -> Result<Option<String>, RedisConfigError>,
    ) -> Result<RedisConfig, RedisConfigError> {
        let var = |name| -> Result<Option<String>, RedisConfigError> {
            Ok(get(name)?
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty()))
        };
        let url = var("REDIS_URL")?;
        let prefix = var("CABLE_CHANNEL_PREFIX")?;
        let config = match var("REDIS_SENTINELS")? {
            None => RedisConfig::from_url(url.as_deref().unwrap_or(DEFAULT_URL))?,
            Some(list) => {
                let master = var("REDIS_SENTINEL_MASTER")?
                    .ok_or(RedisConfigError::MissingEnv("REDIS_SENTINEL_MASTER"))?;
                let addresses = list.split(',').map(str::trim).filter(|s| !s.is_empty());
                let mut config = RedisConfig::sentinel(&master, addresses)?;
                if let Some(url) = url {
                    let parsed = RedisConfig::from_url(&url)?;
                    if let Target::Direct(info) = &parsed.target {
                        let redis = info.redis_settings();
                        config = config.db(redis.db());
                        if let Some(user) = redis.username() {
                            config = config.username(user);
                        }
                        if let Some(password) = redis.password() {
                            config = config.password(password);
                        }
                    }
                }
                config
            }
        };
        Ok(config.channel_prefix(prefix))
    }

    /// Prefix of every Redis channel name (Rails' `channel_prefix:`): the broadcasting
    /// `chat:lobby` is published on `<prefix>:chat:lobby`. Use it when several apps or
    /// environments share one Redis. `None` (the default) publishes on the broadcasting name
    /// itself. As in Rails, the prefix is used verbatim, so `Some("")` gives `:chat:lobby`.
    pub fn channel_prefix(mut self, prefix: Option<String>) -> Self {
        self.channel_prefix = prefix;
        self
    }

    /// The channel prefix, if any.
    pub fn prefix(&self) -> Option<&str> {
        self.channel_prefix.as_deref()
    }

    /// The name both connections give themselves with `CLIENT SETNAME` (Rails' `id:`), as
    /// shown by `CLIENT LIST`. Default: `ActionCable-PID-<process id>`, as Rails. Spaces and
    /// control characters are not allowed (the adapter refuses to start).
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// The database number (`SELECT`). With a URL it is the URL's path; this overrides it.
    pub fn db(mut self, db: i64) -> Self {
        match &mut self.target {
            Target::Direct(info) => {
                let redis = info.redis_settings().clone().set_db(db);
                *info = info.clone().set_redis_settings(redis);
            }
            Target::Sentinel(s) => s.db = db,
        }
        self
    }

    /// The ACL username for the Redis server (not the sentinels).
    pub fn username(mut self, username: impl Into<String>) -> Self {
        let username = username.into();
        match &mut self.target {
            Target::Direct(info) => {
                let redis = info.redis_settings().clone().set_username(&username);
                *info = info.clone().set_redis_settings(redis);
            }
            Target::Sentinel(s) => s.username = Some(username),
        }
        self
    }

    /// The password for the Redis server (not the sentinels).
    pub fn password(mut self, password: impl Into<String>) -> Self {
        let password = password.into();
        match &mut self.target {
            Target::Direct(info) => {
                let redis = info.redis_settings().clone().set_password(&password);
                *info = info.clone().set_redis_settings(redis);
            }
            Target::Sentinel(s) => s.password = Some(password),
        }
        self
    }

    /// The password of the sentinels themselves (Rails' `sentinel_password:`). Ignored
    /// without sentinels.
    pub fn sentinel_password(mut self, password: impl Into<String>) -> Self {
        if let Target::Sentinel(s) = &mut self.target {
            s.sentinel_password = Some(password.into());
        }
        self
    }

    /// Trust these PEM root certificates (one or more) instead of the system's for a
    /// `rediss://` server, e.g. a private CA (Rails' `ssl_params: { ca_file: … }`). Without
    /// the `tls` feature there are no `rediss://` URLs, and this has no effect.
    pub fn tls_root_certificates(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls_root_certificates = Some(pem.into());
        self
    }

    /// How long a broadcast may take before it fails with
    /// [`PubSubError::Unavailable`](actioncable::PubSubError::Unavailable) (default 1 s).
    /// While Redis is down a broadcast waits at most this long after the connection was lost
    /// for it to come back, and fails at once after that.
    pub fn publish_timeout(mut self, timeout: Duration) -> Self {
        self.publish_timeout = timeout;
        self
    }

    /// How long a new stream waits for Redis to acknowledge its `SUBSCRIBE`, including waiting
    /// for a lost connection to come back (default 5 s). When it passes, the subscription that
    /// asked for the stream is rejected.
    pub fn subscribe_timeout(mut self, timeout: Duration) -> Self {
        self.subscribe_timeout = timeout;
        self
    }

    /// How long one connection attempt may take, sentinel lookup included; also the limit for
    /// a health check's answer (default 2 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Delay between reconnection attempts: it starts at `min`, doubles after each failed
    /// attempt up to `max`, and each wait is randomised to between half and all of it
    /// (default 100 ms to 5 s). The first attempt after a connection is lost is immediate.
    pub fn reconnect_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.backoff_min = min;
        self.backoff_max = max.max(min);
        self
    }

    /// How often an idle connection is checked with `PING` (with sentinels: `ROLE`, so that a
    /// master demoted by a failover is left) to find connections that died silently
    /// (default 10 s).
    pub fn health_check_interval(mut self, interval: Duration) -> Self {
        self.health_check_interval = interval;
        self
    }

    /// The client name: the configured [`id`](Self::id) or `ActionCable-PID-<pid>`.
    pub(crate) fn client_name(&self) -> String {
        self.id
            .clone()
            .unwrap_or_else(|| format!("ActionCable-PID-{}", std::process::id()))
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("RedisConfig");
        match &self.target {
            Target::Direct(info) => {
                let redis = info.redis_settings();
                d.field("addr", &DisplayAddr(info.addr()))
                    .field("db", &redis.db())
                    .field("username", &redis.username())
                    .field("password", &redis.password().map(|_| "<redacted>"));
            }
            Target::Sentinel(s) => {
                d.field("sentinel_master", &s.master)
                    .field("sentinels", &s.sentinels)
                    .field("db", &s.db)
                    .field("username", &s.username)
                    .field("password", &s.password.as_ref().map(|_| "<redacted>"))
                    .field(
                        "sentinel_password",
                        &s.sentinel_password.as_ref().map(|_| "<redacted>"),
                    );
            }
        }
        d.field(
            "tls_root_certificates",
            &self.tls_root_certificates.as_ref().map(|_| "<custom>"),
        )
        .field("channel_prefix", &self.channel_prefix)
        .field("id", &self.client_name())
        .field("publish_timeout", &self.publish_timeout)
        .field("subscribe_timeout", &self.subscribe_timeout)
        .field("connect_timeout", &self.connect_timeout)
        .field("reconnect_backoff", &(self.backoff_min, self.backoff_max))
        .field("health_check_interval", &self.health_check_interval)
        .finish()
    }
}

/// `host:port` of an address, without TLS parameters.
struct DisplayAddr<'a>(&'a ConnectionAddr);

impl fmt::Debug for DisplayAddr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            ConnectionAddr::Tcp(host, port) => write!(f, "redis://{host}:{port}"),
            ConnectionAddr::TcpTls { host, port, .. } => write!(f, "rediss://{host}:{port}"),
            ConnectionAddr::Unix(path) => write!(f, "redis+unix://{}", path.display()),
            _ => f.write_str("<address>"),
        }
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn parse_host_port(address: &str) -> Result<(String, u16), RedisConfigError> {
    let invalid = |reason| RedisConfigError::InvalidSentinel {
        address: address.to_owned(),
        reason,
    };
    let address = address.trim();
    let (host, port) = if let Some(rest) = address.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or(invalid("unclosed `[`"))?;
        match after.strip_prefix(':') {
            Some(port) => (host, Some(port)),
            None if after.is_empty() => (host, None),
            None => return Err(invalid("expected `:port` after `]`")),
        }
    } else {
        match address.rsplit_once(':') {
            Some((host, _)) if host.contains(':') => {
                return Err(invalid("write IPv6 addresses as [addr]:port"));
            }
            Some((host, port)) => (host, Some(port)),
            None => (address, None),
        }
    };
    if host.is_empty() {
        return Err(invalid("the host is empty"));
    }
    let port = match port {
        None => DEFAULT_SENTINEL_PORT,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or(invalid("the port is not a number from 1 to 65535"))?,
    };
    Ok((host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(vars: &[(&'static str, &str)]) -> Result<RedisConfig, RedisConfigError> {
        let vars: HashMap<&'static str, String> =
            vars.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        RedisConfig::from_vars(|name| Ok(vars.get(name).cloned()))
    }

    fn direct(config: &RedisConfig) -> &ConnectionInfo {
        match &config.target {
            Target::Direct(info) => info,
            Target::Sentinel(_) => panic!("expected a direct target"),
        }
    }

    fn sentinel(config: &RedisConfig) -> &SentinelTarget {
        match &config.target {
            Target::Sentinel(s) => s,
            Target::Direct(_) => panic!("expected a sentinel target"),
        }
    }

    #[test]
    fn env_defaults_to_local_redis_db_0_without_prefix() {
        let config = from(&[]).unwrap();
        let info = direct(&config);
        assert_eq!(info.addr(), &ConnectionAddr::Tcp("127.0.0.1".into(), 6379));
        assert_eq!(info.redis_settings().db(), 0);
        assert_eq!(config.prefix(), None);
        assert_eq!(
            config.client_name(),
            format!("ActionCable-PID-{}", std::process::id())
        );
    }

    #[test]
    fn env_url_and_prefix() {
        let config = from(&[
            ("REDIS_URL", "redis://user:pw@redis.internal:6380/3"),
            ("CABLE_CHANNEL_PREFIX", "app"),
        ])
        .unwrap();
        let info = direct(&config);
        assert_eq!(
            info.addr(),
            &ConnectionAddr::Tcp("redis.internal".into(), 6380)
        );
        assert_eq!(info.redis_settings().db(), 3);
        assert_eq!(info.redis_settings().username(), Some("user"));
        assert_eq!(info.redis_settings().password(), Some("pw"));
        assert_eq!(config.prefix(), Some("app"));
        let debug = format!("{config:?}");
        assert!(!debug.contains("pw\""), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
    }

    #[test]
    fn empty_env_vars_count_as_unset() {
        let config = from(&[("REDIS_URL", ""), ("CABLE_CHANNEL_PREFIX", " ")]).unwrap();
        assert_eq!(config.prefix(), None);
        assert_eq!(direct(&config).redis_settings().db(), 0);
    }

    #[test]
    fn env_sentinels() {
        let config = from(&[
            ("REDIS_SENTINELS", "10.0.0.1:26380, 10.0.0.2 ,[::1]:5000"),
            ("REDIS_SENTINEL_MASTER", "mymaster"),
            ("REDIS_URL", "redis://:secret@ignored/2"),
        ])
        .unwrap();
        let s = sentinel(&config);
        assert_eq!(s.master, "mymaster");
        assert_eq!(
            s.sentinels,
            vec![
                ("10.0.0.1".to_owned(), 26380),
                ("10.0.0.2".to_owned(), 26379),
                ("::1".to_owned(), 5000)
            ]
        );
        assert_eq!(s.db, 2);
        assert_eq!(s.password.as_deref(), Some("secret"));
        assert!(!format!("{config:?}").contains("secret"));
    }

    #[test]
    fn sentinels_need_a_master_name() {
        let err = from(&[("REDIS_SENTINELS", "127.0.0.1:26379")]).unwrap_err();
        assert!(matches!(
            err,
            RedisConfigError::MissingEnv("REDIS_SENTINEL_MASTER")
        ));
    }

    #[test]
    fn bad_values_are_errors() {
        assert!(matches!(
            RedisConfig::from_url("http://localhost"),
            Err(RedisConfigError::InvalidUrl { .. })
        ));
        assert!(matches!(
            RedisConfig::from_url("redis://localhost/notadb"),
            Err(RedisConfigError::InvalidUrl { .. })
        ));
        for bad in ["", "host:", "host:0", "host:x", "::1:5", "[::1", ":26379"] {
            assert!(
                RedisConfig::sentinel("m", [bad]).is_err(),
                "{bad:?} should be rejected"
            );
        }
        assert!(RedisConfig::sentinel("m", Vec::<String>::new()).is_err());
        assert!(RedisConfig::sentinel(" ", ["h"]).is_err());
    }

    #[cfg(not(feature = "tls"))]
    #[test]
    fn rediss_without_tls_says_which_feature() {
        let err = RedisConfig::from_url("rediss://h:6380").unwrap_err();
        assert!(matches!(err, RedisConfigError::TlsNotEnabled));
        assert!(err.to_string().contains("`tls` feature"));
    }

    #[cfg(feature = "tls")]
    #[test]
    fn rediss_is_tls() {
        let config = RedisConfig::from_url("rediss://:pw@h:6380/1").unwrap();
        assert!(matches!(
            direct(&config).addr(),
            ConnectionAddr::TcpTls { host, port: 6380, insecure: false, .. } if host == "h"
        ));
        assert!(format!("{config:?}").contains("rediss://h:6380"));
    }

    #[test]
    fn builder_overrides_url_settings() {
        let config = RedisConfig::from_url("redis://h/1")
            .unwrap()
            .db(4)
            .password("p")
            .id("worker-1");
        assert_eq!(direct(&config).redis_settings().db(), 4);
        assert_eq!(direct(&config).redis_settings().password(), Some("p"));
        assert_eq!(config.client_name(), "worker-1");
    }
}
