//! The settings: each one an environment variable and the same command-line flag (the flag
//! wins), read once at startup and checked before anything listens, so a typo stops the
//! server with a message naming the variable instead of surfacing on the first connection.
//!
//! An empty variable counts as unset. No message here ever contains a secret's value.

use actioncable::AllowedOrigins;
use actioncable_adapters::{Adapter, AdapterKind};
use actioncable_rails::KeyDigest;
use anyhow::{Context as _, bail};
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{CommandFactory as _, Parser, ValueEnum};
use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// The shortest secret accepted for `CABLE_BROADCAST_KEY` and `CABLE_JWT_SECRET`, as for every
/// HMAC secret of the framework: 32 bytes.
pub(crate) const MIN_SECRET_BYTES: usize = 32;

/// The routes beside the cable, which `CABLE_PATH` may not take.
pub(crate) const HEALTH_PATH: &str = "/health";
/// The readiness probe's path (`CableHandle::readiness_router`).
pub(crate) const READY_PATH: &str = "/ready";
/// AnyCable's path for HTTP broadcasts.
pub(crate) const BROADCAST_PATH: &str = "/_broadcast";
/// The Prometheus metrics route (`Cable::metrics_router`), unless `CABLE_METRICS=off`.
pub(crate) const METRICS_PATH: &str = "/metrics";
/// The operators' stats route (`CableHandle::stats_router`), with `CABLE_ADMIN_KEY`.
pub(crate) const STATS_PATH: &str = "/_stats";

/// `RAILS_KEY_DIGEST`: the digest of the Rails app's key generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum DigestArg {
    /// Rails 7.0+ defaults (`key_generator_hash_digest_class = OpenSSL::Digest::SHA256`).
    Sha256,
    /// Rails 5.2 to 6.1, and 7.x apps that kept `load_defaults` below 7.0.
    Sha1,
}

/// The command line and the environment, as clap reads them. Checked by [`Settings::new`].
#[derive(Parser)]
#[command(
    name = "actioncable-server",
    version,
    about = "A cable server for Rails apps: Turbo Streams and $pubsub signed streams, \
             identified by the app's cookie, session or a JWT, on Rails' Redis.",
    after_help = "Every flag is also an environment variable (shown in brackets); an empty \
                  variable counts as unset. See docs/rails.md for moving a Rails app's cable here."
)]
pub(crate) struct Args {
    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "PORT", default_value_t = 8080)]
    pub(crate) port: u16,

    /// Address to listen on: every interface by default, as a server in a container or behind
    /// a load balancer must; 127.0.0.1 for local development only.
    #[arg(long, env = "BIND", default_value = "0.0.0.0")]
    pub(crate) bind: IpAddr,

    /// Where the cable is mounted (Rails' `config.action_cable.mount_path`).
    #[arg(long, env = "CABLE_PATH")]
    pub(crate) cable_path: Option<String>,

    /// Also serve the channels over Server-Sent Events at this path (AnyCable's `/events`:
    /// `?identifier=…`, `?channel=…`, `?turbo_signed_stream_name=…`, `?signed_stream=…`),
    /// identified as the cable identifies; docs/sse.md. Off unless set.
    #[arg(long, env = "CABLE_SSE_PATH")]
    pub(crate) sse_path: Option<String>,

    /// Pub/sub adapter: `redis`, `postgres` (`postgresql`: Rails' PostgreSQL adapter, with
    /// DATABASE_URL), `solid_cable` (Rails 8's Solid Cable table, with CABLE_DATABASE_URL or
    /// DATABASE_URL), `nats` (with NATS_URL) or `memory` (`async` is memory too). Default: `redis` when REDIS_URL or
    /// REDIS_SENTINELS is set, else `memory`.
    #[arg(long, env = "CABLE_ADAPTER")]
    pub(crate) adapter: Option<String>,

    /// Redis server, as in `config/cable.yml`'s `url:` (default redis://127.0.0.1:6379).
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub(crate) redis_url: Option<String>,

    /// The PostgreSQL database of `CABLE_ADAPTER=postgres` (the Rails app's, so both hear each
    /// other's broadcasts), e.g. postgres://app:secret@db/app_production.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub(crate) database_url: Option<String>,

    /// The Solid Cable database when it is not DATABASE_URL (Rails' `cable` database, e.g.
    /// sqlite:///rails/storage/production_cable.sqlite3 or mysql://app@db/app_cable).
    #[arg(long, env = "CABLE_DATABASE_URL", hide_env_values = true)]
    pub(crate) cable_database_url: Option<String>,

    /// The NATS servers of `CABLE_ADAPTER=nats`, comma-separated (AnyCable's
    /// ANYCABLE_NATS_SERVERS is read too when this is unset).
    #[arg(long, env = "NATS_URL", hide_env_values = true)]
    pub(crate) nats_url: Option<String>,

    /// With `nats`: the subject of AnyCable's broadcasts (AnyCable's `nats_channel`, default
    /// `__anycable__`), so a Rails app's anycable-rails broadcasts reach our clients.
    #[arg(long, env = "ANYCABLE_NATS_CHANNEL")]
    pub(crate) anycable_nats_channel: Option<String>,

    /// Solid Cable's `polling_interval` (`0.1.seconds`, or seconds: `0.1`).
    #[arg(long, env = "SOLID_CABLE_POLLING_INTERVAL")]
    pub(crate) solid_cable_polling_interval: Option<String>,

    /// Solid Cable's `message_retention` (`1.day`, or seconds).
    #[arg(long, env = "SOLID_CABLE_MESSAGE_RETENTION")]
    pub(crate) solid_cable_message_retention: Option<String>,

    /// Solid Cable's `autotrim` (`false` turns it off).
    #[arg(long, env = "SOLID_CABLE_AUTOTRIM")]
    pub(crate) solid_cable_autotrim: Option<String>,

    /// Prefix of every channel (Redis, PostgreSQL, Solid Cable), as in `cable.yml`'s
    /// `channel_prefix:`.
    #[arg(long, env = "CABLE_CHANNEL_PREFIX")]
    pub(crate) channel_prefix: Option<String>,

    /// Redis Sentinels, comma-separated `host:port` (needs REDIS_SENTINEL_MASTER).
    #[arg(long, env = "REDIS_SENTINELS")]
    pub(crate) redis_sentinels: Option<String>,

    /// The Sentinel master's name.
    #[arg(long, env = "REDIS_SENTINEL_MASTER")]
    pub(crate) redis_sentinel_master: Option<String>,

    /// Origins allowed to open the cable besides the server's own, comma-separated
    /// (`https://app.example.com,https://admin.example.com`), or `*` for any.
    #[arg(long, env = "ALLOWED_ORIGINS")]
    pub(crate) allowed_origins: Option<String>,

    /// The Rails app's `secret_key_base`: reads its cookies and session, and derives Turbo's
    /// key and the `$pubsub` secret unless they are given.
    #[arg(long, env = "SECRET_KEY_BASE", hide_env_values = true)]
    pub(crate) secret_key_base: Option<String>,

    /// The Rails app's `key_generator_hash_digest_class`: sha256 (Rails 7.0+) or sha1.
    #[arg(long, env = "RAILS_KEY_DIGEST", value_enum, default_value_t = DigestArg::Sha256)]
    pub(crate) key_digest: DigestArg,

    /// Turbo's `config.turbo.signed_stream_verifier_key`, when the app sets one (default:
    /// derived from SECRET_KEY_BASE as turbo-rails derives it).
    #[arg(long, env = "TURBO_STREAMS_SECRET", hide_env_values = true)]
    pub(crate) turbo_streams_secret: Option<String>,

    /// The secret `$pubsub` stream names are signed with (AnyCable's `streams_secret`;
    /// default: SECRET_KEY_BASE, as AnyCable's Rails SDK signs).
    #[arg(long, env = "CABLE_STREAMS_SECRET", hide_env_values = true)]
    pub(crate) streams_secret: Option<String>,

    /// Lets `$pubsub` subscribe to unsigned `stream_name`s: any client may then read any
    /// stream. For public data only.
    #[arg(long, env = "CABLE_PUBLIC_STREAMS", value_parser = switch)]
    pub(crate) public_streams: bool,

    /// Keeps each stream's recent broadcasts (100 per stream, 5 minutes) with their positions,
    /// for clients on AnyCable's extended protocol (`@anycable/web` with
    /// `actioncable-v1-ext-json`): one that reconnects gets what it missed. It applies to what
    /// this server broadcasts (`POST /_broadcast`); what the Rails app publishes on Redis stays
    /// live only. The stock consumer is unaffected.
    #[arg(long, env = "CABLE_HISTORY", value_parser = switch)]
    pub(crate) history: bool,

    /// Serves the node's Prometheus metrics at `GET /metrics` (connections, broadcasts,
    /// deliveries, sampled broadcast-to-socket latency …; docs/operations.md). On by default;
    /// `off` turns counting and the route off. The route has no authentication: let only the
    /// scraper reach it.
    #[arg(long, env = "CABLE_METRICS", value_parser = switch, default_value = "on")]
    pub(crate) metrics: bool,

    /// Identify connections by this encrypted cookie of the Rails app (e.g. `user_id`);
    /// without it, or with a forged one, a connection is rejected.
    #[arg(long, env = "CABLE_AUTH_COOKIE")]
    pub(crate) auth_cookie: Option<String>,

    /// Identify connections by a key of the Rails app's cookie-store session:
    /// `<session cookie name>:<key>`, e.g. `_myapp_session:user_id`.
    #[arg(long, env = "CABLE_AUTH_SESSION")]
    pub(crate) auth_session: Option<String>,

    /// Identify connections by an HS256 JWT in the `jid` query parameter (or an `X-JID`
    /// header), AnyCable's format: the `ext` claim holds the identifiers as JSON.
    #[arg(long, env = "CABLE_JWT_SECRET", hide_env_values = true)]
    pub(crate) jwt_secret: Option<String>,

    /// The identifier's name for cookie and session identification (Rails' `identified_by`).
    #[arg(long, env = "CABLE_IDENTIFIER")]
    pub(crate) identifier: Option<String>,

    /// Make the identifier a record's GlobalID, as Rails does for `identified_by
    /// :current_user` holding a User: `gid://<app>/<Model>` (e.g. `gid://myapp/User`).
    #[arg(long, env = "CABLE_IDENTIFIER_GID")]
    pub(crate) identifier_gid: Option<String>,

    /// Enables `POST /_broadcast` with `Authorization: Bearer <key>` (at least 32 bytes).
    /// Unset: the endpoint does not exist (404).
    #[arg(long, env = "CABLE_BROADCAST_KEY", hide_env_values = true)]
    pub(crate) broadcast_key: Option<String>,

    /// Enables `GET /_stats`, the node's counts, top streams and slowest queues as JSON, with
    /// `Authorization: Bearer <key>` (at least 32 bytes). Unset: the route does not exist.
    #[arg(long, env = "CABLE_ADMIN_KEY", hide_env_values = true)]
    pub(crate) admin_key: Option<String>,
}

/// An on/off setting: `1`, `true`, `yes`, `on` or `0`, `false`, `no`, `off`, empty; anything else
/// is refused rather than guessed (a typo must not open public streams).
fn switch(value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "" | "0" | "false" | "no" | "off" => Ok(false),
        _ => Err("expected 1 or 0 (true/false, yes/no, on/off)".into()),
    }
}

/// What `main` does when clap refuses the command line or the environment: `--help` and
/// `--version` print and succeed; any other error is printed with the environment variable of
/// the flag it names (clap names only the flag, while most deployments set variables), and the
/// status is 2.
pub(crate) fn parse_failure(error: &clap::Error) -> std::process::ExitCode {
    if matches!(
        error.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    ) {
        let _ = error.print();
        return std::process::ExitCode::SUCCESS;
    }
    let _ = error.print();
    if let Some(ContextValue::String(arg)) = error.get(ContextKind::InvalidArg) {
        let long = arg
            .split_whitespace()
            .next()
            .and_then(|a| a.strip_prefix("--"));
        let command = Args::command();
        let env = command
            .get_arguments()
            .find(|a| long.is_some() && a.get_long() == long)
            .and_then(|a| a.get_env())
            .and_then(|e| e.to_str());
        if let (Some(long), Some(env)) = (long, env) {
            eprintln!("note: --{long} is also the environment variable {env}");
        }
    }
    std::process::ExitCode::from(2)
}

/// A secret setting: its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret(String);

impl Secret {
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// How connections are identified: exactly one way, or none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Identification {
    /// Every connection is accepted, anonymous. Streams stay protected by their signatures.
    Public,
    /// An encrypted cookie (`cookies.encrypted[:user_id]`).
    Cookie(String),
    /// A key of the cookie-store session.
    Session {
        /// The session cookie's name (`_myapp_session`).
        cookie: String,
        /// The key in the session (`user_id`).
        key: String,
    },
    /// An AnyCable JWT in `jid`.
    Jwt(Secret),
}

impl Identification {
    /// How it is described in the startup log (never the secret).
    pub(crate) fn describe(&self) -> String {
        match self {
            Identification::Public => "none (every connection is accepted, anonymous)".into(),
            Identification::Cookie(name) => format!("the encrypted cookie {name:?}"),
            Identification::Session { cookie, key } => {
                format!("the key {key:?} of the session cookie {cookie:?}")
            }
            Identification::Jwt(_) => "an HS256 JWT in `jid` (AnyCable's `ext` claim)".into(),
        }
    }
}

/// `CABLE_IDENTIFIER_GID`: the app and model of the identifier's GlobalID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GidModel {
    pub(crate) app: String,
    pub(crate) model: String,
}

/// The checked settings.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) addr: SocketAddr,
    pub(crate) cable_path: String,
    pub(crate) sse_path: Option<String>,
    pub(crate) adapter: Adapter,
    pub(crate) allowed_origins: AllowedOrigins,
    pub(crate) identification: Identification,
    pub(crate) identifier: String,
    pub(crate) identifier_gid: Option<GidModel>,
    pub(crate) secret_key_base: Option<Secret>,
    pub(crate) key_digest: KeyDigest,
    pub(crate) turbo_streams_secret: Option<Secret>,
    pub(crate) streams_secret: Option<Secret>,
    pub(crate) public_streams: bool,
    pub(crate) history: bool,
    pub(crate) metrics: bool,
    pub(crate) broadcast_key: Option<Secret>,
    pub(crate) admin_key: Option<Secret>,
}

/// A string setting with blanks taken as unset.
fn set(value: &Option<String>) -> Option<String> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// A secret setting: blank is unset, and the value is kept as given (a secret may well end in
/// a space, and trimming it would make a different key than the Rails app's).
fn secret(value: &Option<String>) -> Option<Secret> {
    value
        .as_ref()
        .filter(|v| !v.trim().is_empty())
        .map(|v| Secret(v.clone()))
}

impl Settings {
    /// Checks `args`.
    ///
    /// # Errors
    /// A message naming the variable (and flag) that is wrong and why; never a secret.
    pub(crate) fn new(args: &Args) -> anyhow::Result<Settings> {
        let cable_path = match set(&args.cable_path) {
            Some(path) => check_path(&path).context("CABLE_PATH (--cable-path)")?,
            None => "/cable".to_owned(),
        };
        let sse_path = match set(&args.sse_path) {
            Some(path) => {
                let path = check_path(&path).context("CABLE_SSE_PATH (--sse-path)")?;
                if path == cable_path {
                    bail!("CABLE_SSE_PATH (--sse-path) {path:?} is the cable's own path");
                }
                Some(path)
            }
            None => None,
        };

        let adapter = adapter(args)?;

        let allowed_origins = match set(&args.allowed_origins) {
            Some(v) => {
                AllowedOrigins::from_list(&v).context("ALLOWED_ORIGINS (--allowed-origins)")?
            }
            None => AllowedOrigins::same_origin(),
        };

        let identification = identification(args)?;
        let secret_key_base = secret(&args.secret_key_base);
        if matches!(
            identification,
            Identification::Cookie(_) | Identification::Session { .. }
        ) && secret_key_base.is_none()
        {
            bail!(
                "{} needs SECRET_KEY_BASE (--secret-key-base): the Rails app's secret_key_base, \
                 which its cookies are encrypted with",
                match identification {
                    Identification::Cookie(_) => "CABLE_AUTH_COOKIE (--auth-cookie)",
                    _ => "CABLE_AUTH_SESSION (--auth-session)",
                }
            );
        }

        let identifier = match set(&args.identifier) {
            Some(name) => {
                if !is_identifier(&name) {
                    bail!(
                        "CABLE_IDENTIFIER (--identifier) {name:?} is not a Ruby attribute name \
                         (letters, digits and _, not starting with a digit), as in \
                         `identified_by :current_user`"
                    );
                }
                name
            }
            None => "current_user".to_owned(),
        };
        let identifier_gid = match set(&args.identifier_gid) {
            Some(v) => {
                Some(parse_gid_model(&v).context("CABLE_IDENTIFIER_GID (--identifier-gid)")?)
            }
            None => None,
        };

        if matches!(
            identification,
            Identification::Public | Identification::Jwt(_)
        ) && (set(&args.identifier).is_some() || identifier_gid.is_some())
        {
            tracing::warn!(
                "CABLE_IDENTIFIER and CABLE_IDENTIFIER_GID apply to cookie and session \
                 identification only; ignored (a JWT's identifiers are the keys of its `ext`)"
            );
        }

        let broadcast_key = secret(&args.broadcast_key);
        if let Some(key) = &broadcast_key
            && key.expose().len() < MIN_SECRET_BYTES
        {
            bail!(
                "CABLE_BROADCAST_KEY (--broadcast-key) is too short ({} bytes): it must be at \
                 least {MIN_SECRET_BYTES} bytes; make one with `openssl rand -hex 32`",
                key.expose().len()
            );
        }

        let admin_key = secret(&args.admin_key);
        if let Some(key) = &admin_key
            && key.expose().len() < MIN_SECRET_BYTES
        {
            bail!(
                "CABLE_ADMIN_KEY (--admin-key) is too short ({} bytes): it must be at least \
                 {MIN_SECRET_BYTES} bytes; make one with `openssl rand -hex 32`",
                key.expose().len()
            );
        }

        let turbo_streams_secret = secret(&args.turbo_streams_secret);
        let streams_secret = secret(&args.streams_secret);
        if secret_key_base.is_none() && turbo_streams_secret.is_none() && streams_secret.is_none() {
            bail!(
                "nothing to serve: set SECRET_KEY_BASE (--secret-key-base), the Rails app's \
                 secret_key_base, from which Turbo's stream key and the $pubsub secret are \
                 derived; or TURBO_STREAMS_SECRET and/or CABLE_STREAMS_SECRET"
            );
        }

        if args.public_streams && streams_secret.is_none() && secret_key_base.is_none() {
            bail!(
                "CABLE_PUBLIC_STREAMS (--public-streams) opens `$pubsub` to plain stream names, \
                 and `$pubsub` needs CABLE_STREAMS_SECRET or SECRET_KEY_BASE for its signed ones"
            );
        }

        Ok(Settings {
            addr: SocketAddr::new(args.bind, args.port),
            cable_path,
            sse_path,
            adapter,
            allowed_origins,
            identification,
            identifier,
            identifier_gid,
            secret_key_base,
            key_digest: match args.key_digest {
                DigestArg::Sha256 => KeyDigest::Sha256,
                DigestArg::Sha1 => KeyDigest::Sha1,
            },
            turbo_streams_secret,
            streams_secret,
            public_streams: args.public_streams,
            history: args.history,
            metrics: args.metrics,
            broadcast_key,
            admin_key,
        })
    }
}

/// `CABLE_ADAPTER`, and the chosen adapter's settings.
fn adapter(args: &Args) -> anyhow::Result<Adapter> {
    let redis_named = set(&args.redis_url).is_some() || set(&args.redis_sentinels).is_some();
    let kind = match set(&args.adapter) {
        None if redis_named => AdapterKind::Redis,
        None => AdapterKind::Memory,
        Some(name) => AdapterKind::from_name(&name).with_context(|| {
            format!(
                "CABLE_ADAPTER (--adapter) {name:?} is not an adapter: `redis`, `postgres`, \
                 `solid_cable`, `nats` or `memory`"
            )
        })?,
    };
    if kind != AdapterKind::Redis && redis_named {
        tracing::warn!(
            adapter = %kind,
            "REDIS_URL and REDIS_SENTINELS are ignored: CABLE_ADAPTER names another adapter"
        );
    }
    if kind == AdapterKind::Memory {
        tracing::warn!("CABLE_ADAPTER=memory: broadcasts reach this process's clients only");
    }
    // The adapters read the same variables the examples use; here they come from the flags or
    // the environment, whichever clap found.
    let lookup = |name: &str| -> Option<String> {
        match name {
            "REDIS_URL" => set(&args.redis_url),
            "DATABASE_URL" => set(&args.database_url),
            "CABLE_DATABASE_URL" => set(&args.cable_database_url),
            "NATS_URL" => set(&args.nats_url),
            "ANYCABLE_NATS_SERVERS" => std::env::var("ANYCABLE_NATS_SERVERS").ok(),
            "ANYCABLE_NATS_CHANNEL" => set(&args.anycable_nats_channel),
            "SOLID_CABLE_POLLING_INTERVAL" => set(&args.solid_cable_polling_interval),
            "SOLID_CABLE_MESSAGE_RETENTION" => set(&args.solid_cable_message_retention),
            "SOLID_CABLE_AUTOTRIM" => set(&args.solid_cable_autotrim),
            "CABLE_CHANNEL_PREFIX" => set(&args.channel_prefix),
            "REDIS_SENTINELS" => set(&args.redis_sentinels),
            "REDIS_SENTINEL_MASTER" => set(&args.redis_sentinel_master),
            _ => None,
        }
    };
    // The error names the setting and never a URL's password (the adapters' own words).
    let adapter = Adapter::of_kind(kind, lookup).context("the pub/sub adapter settings")?;
    if args.history && !adapter.keeps_history() {
        bail!(
            "CABLE_HISTORY=on: the {kind} adapter keeps no stream history (memory, redis and \
             nats do)"
        );
    }
    Ok(adapter)
}

/// Exactly one of `CABLE_AUTH_COOKIE`, `CABLE_AUTH_SESSION`, `CABLE_JWT_SECRET`, or none.
fn identification(args: &Args) -> anyhow::Result<Identification> {
    let mut chosen = Vec::new();
    if let Some(name) = set(&args.auth_cookie) {
        if !is_cookie_name(&name) {
            bail!("CABLE_AUTH_COOKIE (--auth-cookie) {name:?} is not a cookie name");
        }
        chosen.push((
            "CABLE_AUTH_COOKIE (--auth-cookie)",
            Identification::Cookie(name),
        ));
    }
    if let Some(value) = set(&args.auth_session) {
        let Some((cookie, key)) = value
            .split_once(':')
            .map(|(c, k)| (c.trim(), k.trim()))
            .filter(|(c, k)| is_cookie_name(c) && !k.is_empty())
        else {
            bail!(
                "CABLE_AUTH_SESSION (--auth-session) {value:?} is not `<session cookie \
                 name>:<key>`, e.g. `_myapp_session:user_id`"
            );
        };
        chosen.push((
            "CABLE_AUTH_SESSION (--auth-session)",
            Identification::Session {
                cookie: cookie.to_owned(),
                key: key.to_owned(),
            },
        ));
    }
    if let Some(jwt) = secret(&args.jwt_secret) {
        if jwt.expose().len() < MIN_SECRET_BYTES {
            bail!(
                "CABLE_JWT_SECRET (--jwt-secret) is too short ({} bytes): an HMAC secret must be \
                 at least {MIN_SECRET_BYTES} bytes",
                jwt.expose().len()
            );
        }
        chosen.push(("CABLE_JWT_SECRET (--jwt-secret)", Identification::Jwt(jwt)));
    }
    match chosen.len() {
        0 => Ok(Identification::Public),
        1 => Ok(chosen.remove(0).1),
        _ => {
            let names: Vec<&str> = chosen.iter().map(|(n, _)| *n).collect();
            bail!(
                "{} are all set: connections are identified in exactly one way; keep one of them",
                names.join(" and ")
            )
        }
    }
}

/// A path axum can route and no other route uses.
fn check_path(path: &str) -> anyhow::Result<String> {
    let valid = path.starts_with('/')
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/-._~".contains(&b))
        && !path.contains("//");
    if !valid {
        bail!(
            "{path:?} is not a path like /cable (a leading /, then letters, digits and - . _ ~ /)"
        );
    }
    if [
        HEALTH_PATH,
        READY_PATH,
        METRICS_PATH,
        BROADCAST_PATH,
        STATS_PATH,
    ]
    .contains(&path)
    {
        bail!("{path} is the server's own route; choose another path for the cable");
    }
    Ok(path.to_owned())
}

/// RFC 6265's `token`: what a cookie name may be.
fn is_cookie_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
}

/// A Ruby attribute name, as `identified_by` takes.
fn is_identifier(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// `gid://<app>/<Model>`.
fn parse_gid_model(value: &str) -> anyhow::Result<GidModel> {
    let parts = value
        .strip_prefix("gid://")
        .and_then(|rest| rest.trim_end_matches('/').split_once('/'))
        .filter(|(app, model)| {
            !app.is_empty()
                && !model.is_empty()
                && !model.contains('/')
                && app
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                && model
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b':' || b == b'_')
        });
    match parts {
        Some((app, model)) => Ok(GidModel {
            app: app.to_owned(),
            model: model.to_owned(),
        }),
        None => bail!(
            "{value:?} is not `gid://<app>/<Model>`, e.g. `gid://myapp/User` (the GlobalID of \
             the record `identified_by` holds, without its id)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Settings from flags only, so the test process's environment (a `PORT`, say) cannot
    /// change them: a flag wins over its variable.
    fn settings(flags: &[&str]) -> anyhow::Result<Settings> {
        let mut argv = vec!["actioncable-server"];
        argv.extend_from_slice(flags);
        let args = Args::try_parse_from(argv)?;
        Settings::new(&args)
    }

    const SKB: &str = "--secret-key-base=0123456789abcdef0123456789abcdef0123456789abcdef";

    fn error(flags: &[&str]) -> String {
        format!("{:#}", settings(flags).expect_err("an error"))
    }

    #[test]
    fn the_flags_are_the_documented_ones() {
        let s = settings(&[
            SKB,
            "--port=9000",
            "--bind=127.0.0.1",
            "--cable-path=/ws",
            "--adapter=memory",
            "--key-digest=sha1",
            "--public-streams",
        ])
        .unwrap();
        assert_eq!(s.addr, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(s.cable_path, "/ws");
        assert_eq!(s.adapter.kind(), AdapterKind::Memory);
        assert_eq!(s.key_digest, KeyDigest::Sha1);
        assert!(s.public_streams);
        assert_eq!(s.identification, Identification::Public);
        assert_eq!(s.identifier, "current_user");
    }

    #[test]
    fn redis_is_the_default_adapter_once_a_redis_is_named() {
        let s = settings(&[SKB, "--redis-url=redis://127.0.0.1:1/1"]).unwrap();
        assert_eq!(s.adapter.kind(), AdapterKind::Redis);
        let s = settings(&[SKB, "--redis-url=redis://127.0.0.1:1/1", "--adapter=memory"]).unwrap();
        assert_eq!(s.adapter.kind(), AdapterKind::Memory);
        let s = settings(&[SKB, "--adapter=redis"]).unwrap();
        assert_eq!(s.adapter.kind(), AdapterKind::Redis);
        assert!(error(&[SKB, "--adapter=kafka"]).contains("CABLE_ADAPTER"));
    }

    #[test]
    fn postgres_is_chosen_by_name_with_its_database_url() {
        let s = settings(&[
            SKB,
            "--adapter=postgresql",
            "--database-url=postgres://app@127.0.0.1:1/app",
        ])
        .unwrap();
        assert_eq!(s.adapter.kind(), AdapterKind::Postgres);
        assert!(format!("{:?}", s.adapter).contains("PostgresPubSub"));
        let e = error(&[
            SKB,
            "--adapter=postgres",
            "--database-url=postgres://app:hunter2@db/app?sslmode=require",
        ]);
        assert!(e.contains("PostgreSQL"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
        let e = error(&[SKB, "--adapter=postgres", "--history"]);
        assert!(e.contains("CABLE_HISTORY"), "{e}");
        let s = settings(&[
            SKB,
            "--adapter=solid_cable",
            "--cable-database-url=sqlite:///tmp/cable.sqlite3",
            "--solid-cable-polling-interval=0.05.seconds",
        ])
        .unwrap();
        assert_eq!(s.adapter.kind(), AdapterKind::SolidCable);
        let e = error(&[SKB, "--adapter=solid_cable"]);
        assert!(e.contains("DATABASE_URL"), "{e}");
        let e = error(&[
            SKB,
            "--adapter=solid_cable",
            "--cable-database-url=sqlite:///tmp/cable.sqlite3",
            "--solid-cable-polling-interval=soon",
        ]);
        assert!(e.contains("SOLID_CABLE_POLLING_INTERVAL"), "{e}");
        let s = settings(&[
            SKB,
            "--adapter=nats",
            "--nats-url=nats://127.0.0.1:1",
            "--history",
        ])
        .unwrap();
        assert_eq!(s.adapter.kind(), AdapterKind::Nats);
        assert!(
            error(&[SKB, "--redis-sentinels=127.0.0.1:26379"]).contains("REDIS_SENTINEL_MASTER")
        );
    }

    #[test]
    fn identification_is_exactly_one_way() {
        let jwt = "--jwt-secret=a-jwt-secret-of-at-least-thirty-two-bytes";
        assert_eq!(
            settings(&[SKB, "--auth-cookie=user_id"])
                .unwrap()
                .identification,
            Identification::Cookie("user_id".into())
        );
        assert_eq!(
            settings(&[SKB, "--auth-session=_app_session:user_id"])
                .unwrap()
                .identification,
            Identification::Session {
                cookie: "_app_session".into(),
                key: "user_id".into()
            }
        );
        assert!(matches!(
            settings(&[SKB, jwt]).unwrap().identification,
            Identification::Jwt(_)
        ));
        let both = error(&[SKB, "--auth-cookie=user_id", jwt]);
        assert!(
            both.contains("CABLE_AUTH_COOKIE") && both.contains("CABLE_JWT_SECRET"),
            "{both}"
        );
        assert!(both.contains("exactly one"), "{both}");
        let all = error(&[SKB, "--auth-cookie=a", "--auth-session=s:k", jwt]);
        assert!(all.contains("CABLE_AUTH_SESSION"), "{all}");
    }

    #[test]
    fn identification_settings_are_checked() {
        for (flags, names) in [
            (&["--auth-session=_app_session"][..], "CABLE_AUTH_SESSION"),
            (&["--auth-session=:user_id"], "CABLE_AUTH_SESSION"),
            (&["--auth-cookie=user id"], "CABLE_AUTH_COOKIE"),
            (&["--jwt-secret=short"], "CABLE_JWT_SECRET"),
            (&["--identifier=current-user"], "CABLE_IDENTIFIER"),
            (&["--identifier-gid=myapp/User"], "CABLE_IDENTIFIER_GID"),
            (&["--identifier-gid=gid://myapp"], "CABLE_IDENTIFIER_GID"),
        ] {
            let mut all = vec![SKB];
            all.extend_from_slice(flags);
            let e = error(&all);
            assert!(e.contains(names), "{flags:?}: {e}");
        }
        let s = settings(&[SKB, "--identifier-gid=gid://my-app/Admin::User"]).unwrap();
        assert_eq!(
            s.identifier_gid,
            Some(GidModel {
                app: "my-app".into(),
                model: "Admin::User".into()
            })
        );
    }

    #[test]
    fn cookies_need_the_secret_key_base() {
        let e = error(&["--auth-cookie=user_id", "--turbo-streams-secret=turbo-key"]);
        assert!(e.contains("SECRET_KEY_BASE"), "{e}");
        let e = error(&[]);
        assert!(e.contains("nothing to serve"), "{e}");
        // Turbo alone, with its own key, needs no secret_key_base.
        assert!(settings(&["--turbo-streams-secret=turbo-key"]).is_ok());
    }

    #[test]
    fn the_admin_key_is_long_or_refused_without_being_echoed() {
        let e = error(&[SKB, "--admin-key=hunter2-password"]);
        assert!(e.contains("CABLE_ADMIN_KEY"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
        let s = settings(&[SKB, "--admin-key=0123456789abcdef0123456789abcdef"]).unwrap();
        assert!(s.admin_key.is_some());
        assert!(!format!("{s:?}").contains("0123456789abcdef0123456789abcdef"));
    }

    #[test]
    fn the_broadcast_key_is_long_or_refused_without_being_echoed() {
        let e = error(&[SKB, "--broadcast-key=hunter2-password"]);
        assert!(e.contains("CABLE_BROADCAST_KEY"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
        let s = settings(&[SKB, "--broadcast-key=0123456789abcdef0123456789abcdef"]).unwrap();
        assert!(s.broadcast_key.is_some());
        assert!(!format!("{s:?}").contains("0123456789abcdef0123456789abcdef"));
        assert!(!format!("{s:?}").contains("0123456789abcdef0123456789abcdef0123456789abcdef"));
    }

    #[test]
    fn switches_are_strict_and_public_streams_need_a_secret() {
        for on in ["1", "true", "YES", " on "] {
            assert_eq!(switch(on), Ok(true), "{on}");
        }
        for off in ["", "0", "false", "no", "OFF"] {
            assert_eq!(switch(off), Ok(false), "{off}");
        }
        for typo in ["ture", "2", "enabled"] {
            assert!(switch(typo).is_err(), "{typo}");
        }
        let e = error(&["--turbo-streams-secret=turbo-key", "--public-streams"]);
        assert!(e.contains("CABLE_PUBLIC_STREAMS"), "{e}");
        assert!(settings(&["--streams-secret=pubsub-key", "--public-streams"]).is_ok());
    }

    #[test]
    fn blank_settings_are_unset() {
        let s = settings(&[SKB, "--cable-path= ", "--auth-cookie=", "--adapter="]).unwrap();
        assert_eq!(s.cable_path, "/cable");
        assert_eq!(s.identification, Identification::Public);
        assert_eq!(s.adapter.kind(), AdapterKind::Memory);
    }

    #[test]
    fn event_streams_are_off_unless_given_a_path_of_their_own() {
        assert_eq!(settings(&[SKB]).unwrap().sse_path, None);
        let s = settings(&[SKB, "--sse-path=/events"]).unwrap();
        assert_eq!(s.sse_path.as_deref(), Some("/events"));
        for bad in ["/cable", "/health", "events"] {
            let e = error(&[SKB, &format!("--sse-path={bad}")]);
            assert!(e.contains("CABLE_SSE_PATH"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_cable_path_is_checked() {
        for bad in [
            "cable",
            "/ca ble",
            "/{id}",
            "/health",
            "/ready",
            "/metrics",
            "/_stats",
            "/_broadcast",
            "//x",
            "/:x",
        ] {
            let e = error(&[SKB, &format!("--cable-path={bad}")]);
            assert!(e.contains("CABLE_PATH"), "{bad}: {e}");
        }
        for good in ["/", "/cable", "/sockets/cable", "/cable-v2"] {
            assert!(
                settings(&[SKB, &format!("--cable-path={good}")]).is_ok(),
                "{good}"
            );
        }
    }
}
