//! Settings, read once from the environment at startup.
//!
//! Every setting has a default, so `cargo run -p example-demo` works as is. Values are
//! validated here so a typo stops the server with a clear message instead of surfacing later.

use crate::auth::SESSION_LIFETIME;
use crate::db::Retention;
use crate::validate::{is_valid_name, is_valid_room};
use actioncable::AllowedOrigins;
use actioncable_adapters::Adapter;
use anyhow::{Context as _, bail};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The development secret used when `SECRET_KEY_BASE` is unset (a WARN says so at startup).
const DEV_SECRET: &str = "example-demo development secret: never use this one in production";

/// Where the web page's files are when `DEMO_ASSETS` is unset: the repository's `js-client`
/// folder, found from this crate's manifest directory at compile time.
pub const DEFAULT_ASSETS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../js-client");

/// Who may enter each private room.
pub type PrivateRooms = BTreeMap<String, BTreeSet<String>>;

/// The demo's settings.
#[derive(Clone)]
pub struct Config {
    /// Address to bind (`BIND`, default `127.0.0.1`).
    pub bind: IpAddr,
    /// Port to bind (`PORT`, default 3000; 0 picks a free one).
    pub port: u16,
    /// Signs login tokens and derives the cookie key (`SECRET_KEY_BASE`, >= 32 bytes).
    secret_key_base: String,
    /// The operators' key for `GET /admin/stats` (`ADMIN_KEY`, >= 32 bytes); unset: no route.
    admin_key: Option<String>,
    /// Whether `secret_key_base` is the built-in development secret.
    pub using_dev_secret: bool,
    /// Extra exact origins allowed to open the cable (`ALLOWED_ORIGINS`); `None` means the
    /// development default (`http://localhost` and `http://127.0.0.1` on any port). The
    /// same origin as the `Host` header is always allowed.
    pub allowed_origins: Option<AllowedOrigins>,
    /// SQLite database path (`DEMO_DATABASE`, default `demo.sqlite3`; `:memory:` for none).
    pub database: String,
    /// Private rooms and their members (`PRIVATE_ROOMS`, default `staff=admin`).
    pub private_rooms: PrivateRooms,
    /// Cable ping interval (`PING_INTERVAL_MS`, default 3000).
    pub ping_interval: Duration,
    /// The `js-client` folder the web page is served from: `public/` at `/`, and the stock
    /// consumer's ES module from `node_modules/` (`DEMO_ASSETS`, default [`DEFAULT_ASSETS`]).
    pub assets: PathBuf,
    /// The pub/sub adapter (`CABLE_ADAPTER`: `memory`, the default; `redis` with `REDIS_URL`,
    /// `CABLE_CHANNEL_PREFIX`, `REDIS_SENTINELS`, `REDIS_SENTINEL_MASTER`; `postgres` with
    /// `DATABASE_URL`, `CABLE_CHANNEL_PREFIX`).
    pub adapter: Adapter,
    /// Keep stream history for `@anycable/core` clients of the extended protocol
    /// (`CABLE_HISTORY`: `on`/`off`; default on when the adapter keeps it: memory, and Redis,
    /// in Redis, so that nodes sharing it agree on positions and any node serves a
    /// reconnecting client).
    pub history: bool,
    /// Serve the cable's Prometheus metrics at `/metrics` (`METRICS`: `on`/`off`, default on).
    pub metrics: bool,
    /// How long a room member stays online after its last connection went
    /// (`PRESENCE_GRACE_MS`, default 15000: a reload does not show leave and join).
    pub presence_grace: Duration,
    /// With Redis: how long a member of a node that died stays online (`PRESENCE_TTL_MS`,
    /// default 15000).
    pub presence_ttl: Duration,
    /// How long a login (token and cookie) lasts (`SESSION_LIFETIME_SECS`, default 12 h).
    pub session_lifetime: Duration,
    /// The rate limits.
    pub limits: Limits,
    /// What the database keeps.
    pub retention: Retention,
}

/// The rate limits, each in requests per minute per key (a burst of that many, then refilled
/// evenly over the minute); 0 turns one off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// `POST /login` per client address (`LOGIN_LIMIT_PER_MINUTE`, default 120).
    pub logins_per_minute: u32,
    /// `POST /notifications` per signed-in sender (`NOTIFY_LIMIT_PER_MINUTE`, default 60).
    pub notifications_per_minute: u32,
    /// Chat messages stored (`speak`) per user (`CHAT_LIMIT_PER_MINUTE`, default 120).
    pub chat_messages_per_minute: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            logins_per_minute: 120,
            notifications_per_minute: 60,
            chat_messages_per_minute: 120,
        }
    }
}

impl Config {
    /// Reads the settings from the process environment.
    ///
    /// # Errors
    /// A setting with a value that cannot work (the message names it).
    pub fn from_env() -> anyhow::Result<Config> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `lookup` (the environment, or a map in tests).
    ///
    /// Unset settings take their defaults. A blank `PORT`, `BIND`, `CABLE_ADAPTER`,
    /// `DEMO_DATABASE`, `DEMO_ASSETS` or `PING_INTERVAL_MS` counts as unset; a blank
    /// `ALLOWED_ORIGINS` means "same origin only", a blank `PRIVATE_ROOMS` means "no private
    /// rooms", and a blank `SECRET_KEY_BASE` is an error (it is too short).
    ///
    /// # Errors
    /// A setting with a value that cannot work (the message names it).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<Config> {
        let non_blank = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());

        let adapter = Adapter::from_lookup(&lookup).context("the pub/sub adapter settings")?;

        let port = match non_blank("PORT") {
            Some(v) => v
                .trim()
                .parse::<u16>()
                .with_context(|| format!("PORT={v:?} is not a port number (0-65535)"))?,
            None => 3000,
        };
        let bind = match non_blank("BIND") {
            Some(v) => v
                .trim()
                .parse::<IpAddr>()
                .with_context(|| format!("BIND={v:?} is not an IP address"))?,
            None => IpAddr::from([127, 0, 0, 1]),
        };

        let (secret_key_base, using_dev_secret) = match lookup("SECRET_KEY_BASE") {
            Some(secret) => (secret, false),
            None => (DEV_SECRET.to_owned(), true),
        };
        if secret_key_base.len() < 32 {
            // Never echo the secret itself.
            bail!(
                "SECRET_KEY_BASE is too short ({} bytes): it must be at least 32 bytes",
                secret_key_base.len()
            );
        }

        let admin_key = lookup("ADMIN_KEY");
        if let Some(key) = &admin_key
            && key.len() < 32
        {
            bail!(
                "ADMIN_KEY is too short ({} bytes): it must be at least 32 bytes",
                key.len()
            );
        }

        let allowed_origins = match lookup("ALLOWED_ORIGINS") {
            Some(v) => Some(AllowedOrigins::from_list(&v).context("ALLOWED_ORIGINS")?),
            None => None,
        };

        let database = non_blank("DEMO_DATABASE").unwrap_or_else(|| "demo.sqlite3".to_owned());

        let private_rooms = match lookup("PRIVATE_ROOMS") {
            Some(v) => parse_private_rooms(&v).context("PRIVATE_ROOMS")?,
            None => parse_private_rooms("staff=admin")?,
        };

        let history = match non_blank("CABLE_HISTORY").as_deref().map(str::trim) {
            None => adapter.keeps_history(),
            Some("on" | "1" | "true") if !adapter.keeps_history() => bail!(
                "CABLE_HISTORY=on: the {} adapter keeps no stream history (memory, redis and nats do)",
                adapter.kind()
            ),
            Some("on" | "1" | "true") => true,
            Some("off" | "0" | "false") => false,
            Some(v) => bail!("CABLE_HISTORY={v:?} is neither on nor off"),
        };

        let metrics = match non_blank("METRICS").as_deref().map(str::trim) {
            None => true,
            Some("on" | "1" | "true") => true,
            Some("off" | "0" | "false") => false,
            Some(v) => bail!("METRICS={v:?} is neither on nor off"),
        };

        let ping_interval = match non_blank("PING_INTERVAL_MS") {
            Some(v) => match v.trim().parse::<u64>() {
                Ok(ms) if ms > 0 => Duration::from_millis(ms),
                _ => bail!("PING_INTERVAL_MS={v:?} is not a positive number of milliseconds"),
            },
            None => Duration::from_secs(3),
        };

        let millis = |name: &str, min: u64| -> anyhow::Result<Option<Duration>> {
            match non_blank(name) {
                Some(v) => match v.trim().parse::<u64>() {
                    Ok(ms) if ms >= min => Ok(Some(Duration::from_millis(ms))),
                    _ => bail!("{name}={v:?} is not a number of milliseconds from {min}"),
                },
                None => Ok(None),
            }
        };
        let presence_grace = millis("PRESENCE_GRACE_MS", 0)?.unwrap_or(Duration::from_secs(15));
        let presence_ttl = millis("PRESENCE_TTL_MS", 300)?.unwrap_or(Duration::from_secs(15));

        let assets =
            PathBuf::from(non_blank("DEMO_ASSETS").unwrap_or_else(|| DEFAULT_ASSETS.to_owned()));

        // A whole number from `min` on, or the default when unset.
        let number = |name: &str, default: u32, min: u32| -> anyhow::Result<u32> {
            match non_blank(name) {
                Some(v) => match v.trim().parse::<u32>() {
                    Ok(n) if n >= min => Ok(n),
                    _ => bail!(
                        "{name}={v:?} is not a whole number from {min} to {}",
                        u32::MAX
                    ),
                },
                None => Ok(default),
            }
        };
        let defaults = Limits::default();
        let limits = Limits {
            logins_per_minute: number("LOGIN_LIMIT_PER_MINUTE", defaults.logins_per_minute, 0)?,
            notifications_per_minute: number(
                "NOTIFY_LIMIT_PER_MINUTE",
                defaults.notifications_per_minute,
                0,
            )?,
            chat_messages_per_minute: number(
                "CHAT_LIMIT_PER_MINUTE",
                defaults.chat_messages_per_minute,
                0,
            )?,
        };
        let keep = Retention::default();
        let retention = Retention {
            messages_per_room: number("CHAT_KEEP_PER_ROOM", keep.messages_per_room, 1)?,
            messages_total: number("CHAT_KEEP_TOTAL", keep.messages_total, 1)?,
            notifications_per_user: number(
                "NOTIFICATIONS_KEEP_PER_USER",
                keep.notifications_per_user,
                1,
            )?,
            notifications_total: number("NOTIFICATIONS_KEEP_TOTAL", keep.notifications_total, 1)?,
        };
        let session_lifetime = Duration::from_secs(u64::from(number(
            "SESSION_LIFETIME_SECS",
            u32::try_from(SESSION_LIFETIME.as_secs()).unwrap_or(u32::MAX),
            1,
        )?));

        Ok(Config {
            bind,
            port,
            secret_key_base,
            admin_key,
            using_dev_secret,
            allowed_origins,
            database,
            private_rooms,
            ping_interval,
            assets,
            adapter,
            history,
            metrics,
            presence_grace,
            presence_ttl,
            session_lifetime,
            limits,
            retention,
        })
    }

    /// The secret that signs tokens and cookies.
    pub fn secret_key_base(&self) -> &str {
        &self.secret_key_base
    }

    /// The operators' key for `GET /admin/stats`, when the route is on.
    pub fn admin_key(&self) -> Option<&str> {
        self.admin_key.as_deref()
    }

    /// Whether `user` may enter `room` (everyone may enter a room that is not private).
    pub fn may_enter(&self, room: &str, user: &str) -> bool {
        may_enter(&self.private_rooms, room, user)
    }
}

/// Whether `user` may enter `room` given the private rooms.
pub fn may_enter(private_rooms: &PrivateRooms, room: &str, user: &str) -> bool {
    private_rooms
        .get(room)
        .is_none_or(|members| members.contains(user))
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The secret is left out on purpose.
        f.debug_struct("Config")
            .field("bind", &self.bind)
            .field("port", &self.port)
            .field("using_dev_secret", &self.using_dev_secret)
            .field("allowed_origins", &self.allowed_origins)
            .field("database", &self.database)
            .field("private_rooms", &self.private_rooms)
            .field("ping_interval", &self.ping_interval)
            .field("assets", &self.assets)
            .field("adapter", &self.adapter)
            .field("history", &self.history)
            .field("metrics", &self.metrics)
            .field("presence_grace", &self.presence_grace)
            .field("presence_ttl", &self.presence_ttl)
            .field("session_lifetime", &self.session_lifetime)
            .field("limits", &self.limits)
            .field("retention", &self.retention)
            .finish_non_exhaustive()
    }
}

/// Parses `PRIVATE_ROOMS`: `room=user|user;room2=user`.
///
/// # Errors
/// A malformed entry, an invalid room or user name, a room listed twice, or a room without
/// members.
pub fn parse_private_rooms(value: &str) -> anyhow::Result<PrivateRooms> {
    let mut rooms = PrivateRooms::new();
    for entry in value.split(';').map(str::trim).filter(|e| !e.is_empty()) {
        let Some((room, members)) = entry.split_once('=') else {
            bail!("{entry:?} is not `room=user|user`");
        };
        let room = room.trim();
        if !is_valid_room(room) {
            bail!(
                "{room:?} is not a valid room name (a-z, 0-9 and -, at most 40, starting with a letter or digit)"
            );
        }
        let mut set = BTreeSet::new();
        for user in members.split('|').map(str::trim).filter(|u| !u.is_empty()) {
            if !is_valid_name(user) {
                bail!("{user:?} (in room {room:?}) is not a valid user name");
            }
            set.insert(user.to_owned());
        }
        if set.is_empty() {
            bail!("private room {room:?} lists no members");
        }
        if rooms.insert(room.to_owned(), set).is_some() {
            bail!("private room {room:?} is listed twice");
        }
    }
    Ok(rooms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> anyhow::Result<Config> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_lookup(|k| vars.get(k).cloned())
    }

    #[test]
    fn defaults() {
        let c = config(&[]).unwrap();
        assert_eq!(c.port, 3000);
        assert_eq!(c.bind.to_string(), "127.0.0.1");
        assert!(c.using_dev_secret);
        assert!(c.secret_key_base().len() >= 32);
        assert!(c.allowed_origins.is_none());
        assert_eq!(c.database, "demo.sqlite3");
        assert_eq!(c.ping_interval, Duration::from_secs(3));
        assert_eq!(c.assets, PathBuf::from(DEFAULT_ASSETS));
        assert!(c.may_enter("staff", "admin"));
        assert!(!c.may_enter("staff", "alice"));
        assert!(c.may_enter("lobby", "alice"));
        assert_eq!(c.session_lifetime, Duration::from_secs(12 * 60 * 60));
        assert_eq!(
            c.limits,
            Limits {
                logins_per_minute: 120,
                notifications_per_minute: 60,
                chat_messages_per_minute: 120,
            }
        );
        assert_eq!(
            c.retention,
            Retention {
                messages_per_room: 1000,
                messages_total: 100_000,
                notifications_per_user: 200,
                notifications_total: 100_000,
            }
        );
    }

    #[test]
    fn limits_and_retention_are_settings() {
        let c = config(&[
            ("LOGIN_LIMIT_PER_MINUTE", "5"),
            ("NOTIFY_LIMIT_PER_MINUTE", "0"),
            ("CHAT_LIMIT_PER_MINUTE", " 7 "),
            ("CHAT_KEEP_PER_ROOM", "10"),
            ("CHAT_KEEP_TOTAL", "11"),
            ("NOTIFICATIONS_KEEP_PER_USER", "12"),
            ("NOTIFICATIONS_KEEP_TOTAL", "13"),
            ("SESSION_LIFETIME_SECS", "60"),
        ])
        .unwrap();
        assert_eq!(
            c.limits,
            Limits {
                logins_per_minute: 5,
                notifications_per_minute: 0,
                chat_messages_per_minute: 7,
            }
        );
        assert_eq!(
            c.retention,
            Retention {
                messages_per_room: 10,
                messages_total: 11,
                notifications_per_user: 12,
                notifications_total: 13,
            }
        );
        assert_eq!(c.session_lifetime, Duration::from_secs(60));
        for vars in [
            &[("LOGIN_LIMIT_PER_MINUTE", "-1")][..],
            &[("CHAT_LIMIT_PER_MINUTE", "lots")],
            &[("CHAT_KEEP_PER_ROOM", "0")],
            &[("NOTIFICATIONS_KEEP_TOTAL", "0")],
            &[("SESSION_LIFETIME_SECS", "0")],
        ] {
            let err = config(vars).unwrap_err();
            assert!(format!("{err:#}").contains(vars[0].0), "{err:#}");
        }
    }

    #[test]
    fn explicit_values() {
        let c = config(&[
            ("PORT", "0"),
            ("BIND", "0.0.0.0"),
            ("SECRET_KEY_BASE", "0123456789abcdef0123456789abcdef"),
            ("DEMO_DATABASE", ":memory:"),
            ("PING_INTERVAL_MS", "250"),
            ("CABLE_ADAPTER", "memory"),
            ("DEMO_ASSETS", "/srv/demo"),
        ])
        .unwrap();
        assert_eq!(c.assets, PathBuf::from("/srv/demo"));
        assert_eq!(c.port, 0);
        assert_eq!(c.bind.to_string(), "0.0.0.0");
        assert!(!c.using_dev_secret);
        assert_eq!(c.database, ":memory:");
        assert_eq!(c.ping_interval, Duration::from_millis(250));
    }

    #[test]
    fn bad_values_are_errors() {
        for vars in [
            &[("PORT", "70000")][..],
            &[("PORT", "abc")],
            &[("BIND", "localhost:3000")],
            &[("SECRET_KEY_BASE", "short")],
            &[("SECRET_KEY_BASE", "")],
            &[("PING_INTERVAL_MS", "0")],
            &[("PING_INTERVAL_MS", "-5")],
            &[("ALLOWED_ORIGINS", "example.com")],
            &[("PRIVATE_ROOMS", "Staff=admin")],
        ] {
            assert!(config(vars).is_err(), "{vars:?}");
        }
    }

    #[test]
    fn the_adapter_is_chosen_by_configuration() {
        let memory = config(&[]).unwrap();
        assert!(format!("{:?}", memory.adapter).contains("MemoryPubSub"));
        assert!(memory.history, "history is on with the memory adapter");
        let redis = config(&[
            ("CABLE_ADAPTER", "redis"),
            ("REDIS_URL", "redis://127.0.0.1:1/0"),
        ])
        .unwrap();
        assert!(format!("{:?}", redis.adapter).contains("RedisPubSub"));
        assert!(redis.history, "history is on with the Redis adapter too");
        let postgres = config(&[("CABLE_ADAPTER", "postgres")]).unwrap();
        assert!(format!("{:?}", postgres.adapter).contains("PostgresPubSub"));
        assert!(
            !postgres.history,
            "PostgreSQL keeps no history: off by default"
        );
        let err = config(&[("CABLE_ADAPTER", "postgres"), ("CABLE_HISTORY", "on")]).unwrap_err();
        assert!(format!("{err:#}").contains("CABLE_HISTORY"), "{err:#}");
        let err = config(&[("CABLE_ADAPTER", "kafka")]).unwrap_err();
        assert!(format!("{err:#}").contains("CABLE_ADAPTER"), "{err:#}");
    }

    #[test]
    fn short_secret_error_does_not_echo_it() {
        let err = config(&[("SECRET_KEY_BASE", "hunter2-secret")]).unwrap_err();
        assert!(!format!("{err:#}").contains("hunter2"));
    }

    #[test]
    fn debug_hides_the_secret() {
        let c = config(&[("SECRET_KEY_BASE", "a-very-secret-value-that-is-long-enough")]).unwrap();
        assert!(!format!("{c:?}").contains("a-very-secret"));
    }

    #[test]
    fn blank_settings() {
        let c = config(&[
            ("PORT", ""),
            ("PRIVATE_ROOMS", " "),
            ("ALLOWED_ORIGINS", ""),
        ])
        .unwrap();
        assert_eq!(c.port, 3000);
        assert!(c.private_rooms.is_empty());
        // Blank: the same origin only, not the development default's localhost on any port.
        let origins = c.allowed_origins.expect("a blank list is a list");
        assert!(origins.allows(Some("http://127.0.0.1:3000"), Some("127.0.0.1:3000")));
        assert!(!origins.allows(Some("http://localhost:5173"), Some("127.0.0.1:3000")));
    }

    #[test]
    fn private_rooms_parse() {
        let rooms = parse_private_rooms(" staff = admin | bob ; ops=carol;; ").unwrap();
        assert_eq!(rooms.len(), 2);
        assert!(may_enter(&rooms, "staff", "admin"));
        assert!(may_enter(&rooms, "staff", "bob"));
        assert!(!may_enter(&rooms, "staff", "carol"));
        assert!(may_enter(&rooms, "ops", "carol"));
        assert!(may_enter(&rooms, "lobby", "anyone"));
        assert!(parse_private_rooms("").unwrap().is_empty());
    }

    #[test]
    fn private_rooms_reject_bad_entries() {
        for bad in [
            "staff",
            "staff=",
            "staff=|",
            "=admin",
            "-staff=admin",
            "staff=admin;staff=bob",
            "staff=ad min",
            "staff=admin!",
        ] {
            assert!(parse_private_rooms(bad).is_err(), "{bad:?}");
        }
    }
}
