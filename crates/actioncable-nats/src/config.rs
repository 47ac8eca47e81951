//! [`NatsConfig`]: where NATS is, how we sign in, the subjects, the history stream and the
//! timeouts.

use crate::wire::{ANYCABLE_SUBJECT, DEFAULT_SUBJECT_PREFIX, Naming};
use async_nats::ServerAddr;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// The server [`NatsConfig::from_env`] uses when neither `NATS_URL` nor
/// `ANYCABLE_NATS_SERVERS` is set (also AnyCable's default, `nats://localhost:4222`).
pub const DEFAULT_URL: &str = "nats://127.0.0.1:4222";

/// A NATS setting could not be used. Passwords and tokens never appear in these messages.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NatsConfigError {
    /// A server URL does not parse or names something unsupported.
    #[error("invalid NATS server URL: {reason}")]
    InvalidUrl {
        /// What is wrong with it.
        reason: String,
    },
    /// A subject, subject prefix or stream name cannot be used.
    #[error("invalid {setting} {value:?}: {reason}")]
    InvalidName {
        /// The setting.
        setting: &'static str,
        /// Its value.
        value: String,
        /// Why it cannot be used.
        reason: &'static str,
    },
    /// An environment variable is set but is not valid Unicode.
    #[error("environment variable {0} is not valid Unicode")]
    NotUnicode(&'static str),
}

/// Where the history's JetStream stream keeps its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum HistoryStorage {
    /// On disk (JetStream's `file` storage): the history survives a NATS restart, and so do
    /// clients' positions.
    #[default]
    File,
    /// In the server's memory: faster, lost when the server restarts (positions are then
    /// refused, and the history starts a new epoch).
    Memory,
}

/// How the adapter signs in.
#[derive(Clone, Default)]
enum Auth {
    #[default]
    None,
    UserPassword(String, String),
    Token(String),
}

/// Settings of [`NatsPubSub`](crate::NatsPubSub). See the [crate docs](crate#configuration)
/// for the table with AnyCable's and Rails' equivalents.
///
/// ```
/// use actioncable_nats::NatsConfig;
/// use std::time::Duration;
///
/// let config = NatsConfig::from_url("nats://10.0.0.5:4222,nats://10.0.0.6:4222")?
///     .channel_prefix(Some("myapp_production".into()))
///     .publish_timeout(Duration::from_millis(500));
/// assert_eq!(config.subject("chat:lobby"), "action_cable.myapp_production:chat:lobby");
/// # Ok::<(), actioncable_nats::NatsConfigError>(())
/// ```
#[derive(Clone)]
pub struct NatsConfig {
    pub(crate) servers: Vec<ServerAddr>,
    auth: Auth,
    pub(crate) channel_prefix: Option<String>,
    pub(crate) subject_prefix: String,
    pub(crate) anycable_subject: Option<String>,
    name: Option<String>,
    pub(crate) tls_root_certificates: Option<PathBuf>,
    pub(crate) publish_timeout: Duration,
    pub(crate) subscribe_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) backoff_min: Duration,
    pub(crate) backoff_max: Duration,
    pub(crate) health_check_interval: Duration,
    history_stream: Option<String>,
    pub(crate) history_storage: HistoryStorage,
    pub(crate) history_replicas: usize,
}

impl NatsConfig {
    /// Settings for the servers in `urls`: one URL or several separated by commas (as
    /// AnyCable's `nats_servers` and the `nats` CLI's `NATS_URL`), each `nats://host:port`
    /// (`host` alone means port 4222) or `tls://host:port`. Credentials may be given in a URL:
    /// `nats://user:password@host` or `nats://token@host`.
    ///
    /// # Errors
    /// An empty list, a URL that does not parse, another scheme (WebSocket URLs are not
    /// supported), or two different credentials.
    pub fn from_url(urls: &str) -> Result<NatsConfig, NatsConfigError> {
        let invalid = |reason: String| NatsConfigError::InvalidUrl { reason };
        let mut servers = Vec::new();
        let mut auth = Auth::None;
        for url in urls.split(',').map(str::trim).filter(|u| !u.is_empty()) {
            let server: ServerAddr = url.parse().map_err(|e: std::io::Error| {
                // The parser's message never contains the URL (nor its password).
                invalid(e.to_string())
            })?;
            if server.is_websocket() {
                return Err(invalid(
                    "WebSocket URLs (ws://, wss://) are not supported; use nats:// or tls://"
                        .into(),
                ));
            }
            if server.host().is_empty() {
                return Err(invalid("a URL without a host".into()));
            }
            let found = match (server.username(), server.password()) {
                (Some(user), Some(password)) => {
                    Auth::UserPassword(percent_decode(user), percent_decode(password))
                }
                (Some(token), None) => Auth::Token(percent_decode(token)),
                _ => Auth::None,
            };
            match (&auth, &found) {
                (_, Auth::None) => {}
                (Auth::None, _) => auth = found,
                (a, b) if same_auth(a, b) => {}
                _ => return Err(invalid("the URLs carry different credentials".into())),
            }
            servers.push(server);
        }
        if servers.is_empty() {
            return Err(invalid("no server URL given".into()));
        }
        Ok(NatsConfig {
            servers,
            auth,
            channel_prefix: None,
            subject_prefix: DEFAULT_SUBJECT_PREFIX.to_owned(),
            anycable_subject: Some(ANYCABLE_SUBJECT.to_owned()),
            name: None,
            tls_root_certificates: None,
            publish_timeout: Duration::from_secs(1),
            subscribe_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            health_check_interval: Duration::from_secs(10),
            history_stream: None,
            history_storage: HistoryStorage::File,
            history_replicas: 1,
        })
    }

    /// Settings from the environment:
    ///
    /// - `NATS_URL` (the `nats` CLI's variable), else `ANYCABLE_NATS_SERVERS` (AnyCable's),
    ///   else [`DEFAULT_URL`]: the servers, as [`from_url`](Self::from_url) reads them;
    /// - `CABLE_CHANNEL_PREFIX`: [`channel_prefix`](Self::channel_prefix);
    /// - `ANYCABLE_NATS_CHANNEL`: the subject of AnyCable's broadcasts
    ///   ([`anycable_subject`](Self::anycable_subject)), default `__anycable__`.
    ///
    /// Empty variables count as unset.
    ///
    /// # Errors
    /// As [`from_url`](Self::from_url), or a variable that is not Unicode or not a valid subject.
    pub fn from_env() -> Result<NatsConfig, NatsConfigError> {
        NatsConfig::from_vars(|name| match std::env::var(name) {
            Ok(v) => Ok(Some(v)),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err(NatsConfigError::NotUnicode(name)),
        })
    }

    /// [`from_env`](Self::from_env) over any source of variables.
    ///
    /// ```
    /// use actioncable_nats::NatsConfig;
    ///
    /// let config = NatsConfig::from_lookup(|name| match name {
    ///     "ANYCABLE_NATS_SERVERS" => Some("nats://nats-1:4222".to_owned()),
    ///     "ANYCABLE_NATS_CHANNEL" => Some("_cable_".to_owned()),
    ///     _ => None,
    /// })?;
    /// assert_eq!(config.anycable_subject_name(), Some("_cable_"));
    /// # Ok::<(), actioncable_nats::NatsConfigError>(())
    /// ```
    ///
    /// # Errors
    /// As [`from_env`](Self::from_env).
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<NatsConfig, NatsConfigError> {
        NatsConfig::from_vars(|name| Ok(lookup(name)))
    }

    fn from_vars(
        var: impl Fn(&'static str) -> Result<Option<String>, NatsConfigError>,
    ) -> Result<NatsConfig, NatsConfigError> {
        let set = |name: &'static str| -> Result<Option<String>, NatsConfigError> {
            Ok(var(name)?.filter(|v| !v.trim().is_empty()))
        };
        let urls = match set("NATS_URL")? {
            Some(urls) => urls,
            None => set("ANYCABLE_NATS_SERVERS")?.unwrap_or_else(|| DEFAULT_URL.to_owned()),
        };
        let mut config = NatsConfig::from_url(&urls)?.channel_prefix(set("CABLE_CHANNEL_PREFIX")?);
        if let Some(subject) = set("ANYCABLE_NATS_CHANNEL")? {
            config = config.anycable_subject(Some(subject.trim().to_owned()));
        }
        config.validate()?;
        Ok(config)
    }

    /// Prefix of every stream name (Rails' `channel_prefix:`): the stream `chat:lobby` goes
    /// by `<prefix>:chat:lobby` on NATS (in its subject and history), as Rails names its Redis
    /// channels. Use it when several apps or environments share one NATS account. `None`
    /// (the default) uses the stream name itself.
    pub fn channel_prefix(mut self, prefix: Option<String>) -> Self {
        self.channel_prefix = prefix;
        self
    }

    /// The first token(s) of every subject of this adapter (default `action_cable`): a stream's
    /// subject is `<subject prefix>.<token>`. Tokens of ASCII letters, digits, `-` and `_`,
    /// separated by dots. The adapter refuses to start with another value.
    pub fn subject_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.subject_prefix = prefix.into();
        self
    }

    /// The subject of AnyCable's broadcasts (AnyCable's `nats_channel`, default
    /// `__anycable__`), which every node subscribes to; `None` does not subscribe it.
    pub fn anycable_subject(mut self, subject: Option<String>) -> Self {
        self.anycable_subject = subject;
        self
    }

    /// The subject of AnyCable's broadcasts, if they are listened to.
    pub fn anycable_subject_name(&self) -> Option<&str> {
        self.anycable_subject.as_deref()
    }

    /// The connection's name, as the server's monitoring (`/connz`) shows it. Default:
    /// `ActionCable-PID-<process id>`, the name Rails gives its Redis connections.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Trust the PEM root certificates in this file for `tls://` servers (e.g. a private CA),
    /// in addition to the system's.
    pub fn tls_root_certificates(mut self, path: impl Into<PathBuf>) -> Self {
        self.tls_root_certificates = Some(path.into());
        self
    }

    /// How long a broadcast may take before it fails with
    /// [`PubSubError::Unavailable`](actioncable::PubSubError::Unavailable) (default 1 s). While
    /// NATS is unreachable a broadcast waits at most this long after the connection was lost
    /// for it to come back, and fails at once after that.
    pub fn publish_timeout(mut self, timeout: Duration) -> Self {
        self.publish_timeout = timeout;
        self
    }

    /// How long a new stream waits for the server to have its subscription, including waiting
    /// for a lost connection to come back (default 5 s). When it passes, the subscription that
    /// asked for the stream is rejected.
    pub fn subscribe_timeout(mut self, timeout: Duration) -> Self {
        self.subscribe_timeout = timeout;
        self
    }

    /// How long one connection attempt may take (default 2 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Delay between reconnection attempts: it starts at `min`, doubles after each failed
    /// attempt up to `max`, and each wait is randomised to between half and all of it
    /// (default 100 ms to 5 s), as the other adapters of the workspace back off.
    pub fn reconnect_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.backoff_min = min;
        self.backoff_max = max.max(min);
        self
    }

    /// How often the client pings the server (default 10 s); two unanswered pings mark the
    /// connection dead, so one that died silently is replaced within about three intervals.
    pub fn health_check_interval(mut self, interval: Duration) -> Self {
        self.health_check_interval = interval;
        self
    }

    /// The JetStream stream that keeps the history (when the cable keeps history). Default:
    /// the subject prefix in capitals with `_` for `.`, then `_HISTORY`
    /// (`ACTION_CABLE_HISTORY`). ASCII letters, digits, `-` and `_`.
    pub fn history_stream(mut self, name: impl Into<String>) -> Self {
        self.history_stream = Some(name.into());
        self
    }

    /// Where the history stream keeps its messages (default [`HistoryStorage::File`]).
    pub fn history_storage(mut self, storage: HistoryStorage) -> Self {
        self.history_storage = storage;
        self
    }

    /// How many copies of the history stream a JetStream cluster keeps (default 1).
    pub fn history_replicas(mut self, replicas: usize) -> Self {
        self.history_replicas = replicas.max(1);
        self
    }

    /// The name of the history's JetStream stream.
    pub fn history_stream_name(&self) -> String {
        match &self.history_stream {
            Some(name) => name.clone(),
            None => format!(
                "{}_HISTORY",
                self.subject_prefix.replace('.', "_").to_ascii_uppercase()
            ),
        }
    }

    /// The channel prefix, if any.
    pub fn prefix(&self) -> Option<&str> {
        self.channel_prefix.as_deref()
    }

    /// The subject `stream`'s broadcasts travel on: what another program publishes to (a JSON
    /// document) to reach the stream's subscribers on every node.
    pub fn subject(&self, stream: &str) -> String {
        self.naming().subject(stream)
    }

    /// The stream a subject of ours carries, the reverse of [`subject`](Self::subject):
    /// `None` for another subject, or for a stream name too long to be written out (its token
    /// is a hash; see the [crate docs](crate#subjects)).
    ///
    /// ```
    /// # let config = actioncable_nats::NatsConfig::from_url("nats://127.0.0.1")?;
    /// assert_eq!(config.subject("a b.c"), "action_cable.a%20b%2Ec");
    /// assert_eq!(config.stream_of("action_cable.a%20b%2Ec").as_deref(), Some("a b.c"));
    /// # Ok::<(), actioncable_nats::NatsConfigError>(())
    /// ```
    pub fn stream_of(&self, subject: &str) -> Option<String> {
        self.naming().stream_of(subject)
    }

    pub(crate) fn naming(&self) -> Naming {
        Naming::new(&self.subject_prefix, self.channel_prefix.as_deref())
    }

    /// The connection name: the configured [`name`](Self::name) or `ActionCable-PID-<pid>`.
    pub(crate) fn client_name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("ActionCable-PID-{}", std::process::id()))
    }

    /// The credentials to sign in with, for the client's options.
    pub(crate) fn apply_auth(
        &self,
        options: async_nats::ConnectOptions,
    ) -> async_nats::ConnectOptions {
        match &self.auth {
            Auth::None => options,
            Auth::UserPassword(user, password) => {
                options.user_and_password(user.clone(), password.clone())
            }
            Auth::Token(token) => options.token(token.clone()),
        }
    }

    /// Checks the names this configuration puts on the wire.
    ///
    /// # Errors
    /// The first name that NATS or JetStream would not take.
    pub fn validate(&self) -> Result<(), NatsConfigError> {
        let bad = |setting, value: &str, reason| NatsConfigError::InvalidName {
            setting,
            value: value.to_owned(),
            reason,
        };
        let plain = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
        if self.subject_prefix.is_empty()
            || self
                .subject_prefix
                .split('.')
                .any(|t| t.is_empty() || !t.bytes().all(plain))
        {
            return Err(bad(
                "subject prefix",
                &self.subject_prefix,
                "dot-separated tokens of ASCII letters, digits, `-` and `_`",
            ));
        }
        if let Some(subject) = &self.anycable_subject
            && (subject.is_empty()
                || subject.split('.').any(|t| {
                    t.is_empty() || t == "*" || t == ">" || t.bytes().any(|b| !b.is_ascii_graphic())
                }))
        {
            return Err(bad(
                "AnyCable subject",
                subject,
                "a NATS subject: non-empty dot-separated tokens, no spaces, no wildcards",
            ));
        }
        let stream = self.history_stream_name();
        if stream.is_empty() || stream.len() > 255 || !stream.bytes().all(plain) {
            return Err(bad(
                "history stream name",
                &stream,
                "ASCII letters, digits, `-` and `_`, at most 255",
            ));
        }
        if self.client_name().chars().any(char::is_control) {
            return Err(bad(
                "connection name",
                &self.client_name(),
                "no control characters",
            ));
        }
        Ok(())
    }
}

fn same_auth(a: &Auth, b: &Auth) -> bool {
    match (a, b) {
        (Auth::None, Auth::None) => true,
        (Auth::UserPassword(u1, p1), Auth::UserPassword(u2, p2)) => u1 == u2 && p1 == p2,
        (Auth::Token(t1), Auth::Token(t2)) => t1 == t2,
        _ => false,
    }
}

/// Undoes the URL's percent-encoding of a user name or password.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(byte) = s
                .get(i + 1..i + 3)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl fmt::Debug for NatsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let servers: Vec<String> = self
            .servers
            .iter()
            .map(|s| format!("{}://{}:{}", s.scheme(), s.host(), s.port()))
            .collect();
        let auth = match self.auth {
            Auth::None => "none",
            Auth::UserPassword(..) => "user and <redacted> password",
            Auth::Token(_) => "<redacted> token",
        };
        f.debug_struct("NatsConfig")
            .field("servers", &servers)
            .field("auth", &auth)
            .field("channel_prefix", &self.channel_prefix)
            .field("subject_prefix", &self.subject_prefix)
            .field("anycable_subject", &self.anycable_subject)
            .field("name", &self.client_name())
            .field("tls_root_certificates", &self.tls_root_certificates)
            .field("publish_timeout", &self.publish_timeout)
            .field("subscribe_timeout", &self.subscribe_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("reconnect_backoff", &(self.backoff_min, self.backoff_max))
            .field("health_check_interval", &self.health_check_interval)
            .field("history_stream", &self.history_stream_name())
            .field("history_storage", &self.history_storage)
            .field("history_replicas", &self.history_replicas)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(vars: &[(&'static str, &str)]) -> Result<NatsConfig, NatsConfigError> {
        let vars: HashMap<&'static str, String> =
            vars.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        NatsConfig::from_lookup(|name| vars.get(name).cloned())
    }

    fn addresses(config: &NatsConfig) -> Vec<(String, u16)> {
        config
            .servers
            .iter()
            .map(|s| (s.host().to_owned(), s.port()))
            .collect()
    }

    #[test]
    fn env_defaults_to_local_nats_and_anycables_subject() {
        let config = from(&[]).unwrap();
        assert_eq!(addresses(&config), vec![("127.0.0.1".to_owned(), 4222)]);
        assert_eq!(config.prefix(), None);
        assert_eq!(config.anycable_subject_name(), Some("__anycable__"));
        assert_eq!(config.history_stream_name(), "ACTION_CABLE_HISTORY");
        assert_eq!(
            config.client_name(),
            format!("ActionCable-PID-{}", std::process::id())
        );
        assert_eq!(config.subject("chat:lobby"), "action_cable.chat:lobby");
    }

    #[test]
    fn env_servers_prefix_and_subject() {
        let config = from(&[
            ("NATS_URL", "nats://a:4333, b"),
            ("ANYCABLE_NATS_SERVERS", "nats://ignored"),
            ("CABLE_CHANNEL_PREFIX", "app"),
            ("ANYCABLE_NATS_CHANNEL", "_cable_"),
        ])
        .unwrap();
        assert_eq!(
            addresses(&config),
            vec![("a".to_owned(), 4333), ("b".to_owned(), 4222)]
        );
        assert_eq!(config.prefix(), Some("app"));
        assert_eq!(config.anycable_subject_name(), Some("_cable_"));
        let anycable = from(&[("ANYCABLE_NATS_SERVERS", "nats://nats-1:4222")]).unwrap();
        assert_eq!(addresses(&anycable), vec![("nats-1".to_owned(), 4222)]);
        let empty = from(&[("NATS_URL", " "), ("CABLE_CHANNEL_PREFIX", "")]).unwrap();
        assert_eq!(addresses(&empty), vec![("127.0.0.1".to_owned(), 4222)]);
        assert_eq!(empty.prefix(), None);
    }

    #[test]
    fn credentials_come_from_the_url_and_are_never_shown() {
        let config = NatsConfig::from_url("nats://al%40ice:s3cr%2Ft@h:4222,nats://h2").unwrap();
        assert!(matches!(
            &config.auth,
            Auth::UserPassword(u, p) if u == "al@ice" && p == "s3cr/t"
        ));
        let debug = format!("{config:?}");
        assert!(
            !debug.contains("s3cr") && !debug.contains("al@ice"),
            "{debug}"
        );
        assert!(debug.contains("nats://h:4222"), "{debug}");
        let token = NatsConfig::from_url("tls://t0k3n@h").unwrap();
        assert!(matches!(&token.auth, Auth::Token(t) if t == "t0k3n"));
        assert!(!format!("{token:?}").contains("t0k3n"));
        assert!(matches!(
            NatsConfig::from_url("nats://a:b@h1,nats://c:d@h2"),
            Err(NatsConfigError::InvalidUrl { .. })
        ));
    }

    #[test]
    fn bad_values_are_errors() {
        for bad in ["", " , ", "http://h", "ws://h:80", "nats://"] {
            assert!(
                matches!(
                    NatsConfig::from_url(bad),
                    Err(NatsConfigError::InvalidUrl { .. })
                ),
                "{bad:?}"
            );
        }
        let ok = NatsConfig::from_url("h").unwrap();
        for prefix in ["", "a..b", "a.*", "a b", "é"] {
            assert!(
                ok.clone().subject_prefix(prefix).validate().is_err(),
                "{prefix:?}"
            );
        }
        assert!(ok.clone().subject_prefix("apps.cable-1").validate().is_ok());
        for subject in ["", "a b", "a.>", "a..b"] {
            assert!(
                ok.clone()
                    .anycable_subject(Some(subject.into()))
                    .validate()
                    .is_err(),
                "{subject:?}"
            );
        }
        assert!(ok.clone().history_stream("a.b").validate().is_err());
        assert!(
            from(&[("ANYCABLE_NATS_CHANNEL", "a b")]).is_err(),
            "validated from the environment"
        );
        assert_eq!(
            ok.clone()
                .subject_prefix("apps.cable")
                .history_stream_name(),
            "APPS_CABLE_HISTORY"
        );
    }
}
