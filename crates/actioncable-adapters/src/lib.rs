//! # actioncable-adapters
//!
//! Picks the [`PubSub`] adapter of an [`actioncable`] server by configuration alone, the way
//! `adapter:` in Rails' `config/cable.yml` does: the same binary runs on one process in
//! development and on Redis or PostgreSQL in production, with nothing but environment
//! variables changed.
//!
//! ```
//! use actioncable::Cable;
//! use actioncable_adapters::{Adapter, AdapterKind};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // CABLE_ADAPTER unset: in this process only.
//! let adapter = Adapter::from_lookup(|_| None)?;
//! assert_eq!(adapter.kind(), AdapterKind::Memory);
//! let cable = Cable::builder()
//!     .pubsub(adapter.pubsub())
//!     .history(adapter.keeps_history())
//!     .build()?;
//! # drop(cable);
//! # Ok(())
//! # }
//! ```
//!
//! | `CABLE_ADAPTER` | adapter | its settings | `cable.yml` |
//! |---|---|---|---|
//! | unset, empty, `memory`, `async` | [`MemoryPubSub`]: this process only | — | `adapter: async` |
//! | `redis` | `actioncable_redis::RedisPubSub` | `REDIS_URL`, `CABLE_CHANNEL_PREFIX`, `REDIS_SENTINELS`, `REDIS_SENTINEL_MASTER` | `adapter: redis` |
//! | `postgres`, `postgresql` | `actioncable_postgres::PostgresPubSub` | `DATABASE_URL`, `CABLE_CHANNEL_PREFIX` | `adapter: postgresql` |
//! | `solid_cable` | `actioncable_solid_cable::SolidCablePubSub` | `CABLE_DATABASE_URL` (else `DATABASE_URL`; `postgres://`, `mysql://`, `sqlite://`), `CABLE_CHANNEL_PREFIX`, `SOLID_CABLE_POLLING_INTERVAL`, `SOLID_CABLE_MESSAGE_RETENTION`, `SOLID_CABLE_AUTOTRIM` | `adapter: solid_cable` |
//! | `nats` | `actioncable_nats::NatsPubSub` | `NATS_URL` (else `ANYCABLE_NATS_SERVERS`), `CABLE_CHANNEL_PREFIX`, `ANYCABLE_NATS_CHANNEL` | AnyCable's `broadcast_adapter: nats` (and `--broker=nats` for history) |
//!
//! What each adapter can do beyond carrying broadcasts differs: stream history (the extended
//! protocol's replay) is kept by the memory, Redis and NATS (in JetStream) adapters, presence
//! by the memory and Redis ones; PostgreSQL's and Solid Cable's keep neither. [`Adapter::keeps_history`] and [`Adapter::keeps_presence`] say which, so an
//! app can turn features on where they work instead of failing to start elsewhere.
//!
//! Each backend is a cargo feature (`redis`, `postgres`, `solid-cable`, `nats`, all on by
//! default); an app built
//! without one refuses its name with [`AdapterError::NotBuilt`].
//!
//! [`PubSub`]: actioncable::PubSub
//! [`MemoryPubSub`]: actioncable::MemoryPubSub

use actioncable::{MemoryPubSub, PubSub};
use std::cell::Cell;
use std::fmt;
use std::sync::Arc;

/// The backends `CABLE_ADAPTER` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AdapterKind {
    /// In this process only (`memory`, `async`).
    Memory,
    /// Redis pub/sub, Rails' format (`redis`).
    Redis,
    /// PostgreSQL `LISTEN`/`NOTIFY`, Rails' format (`postgres`, `postgresql`).
    Postgres,
    /// Rails 8's Solid Cable table, polled (`solid_cable`).
    SolidCable,
    /// NATS core subjects, AnyCable's NATS broadcasts, history in JetStream (`nats`).
    Nats,
}

impl AdapterKind {
    /// Every kind, in the order the docs list them.
    pub const ALL: [AdapterKind; 5] = [
        AdapterKind::Memory,
        AdapterKind::Redis,
        AdapterKind::Postgres,
        AdapterKind::SolidCable,
        AdapterKind::Nats,
    ];

    /// The kind `CABLE_ADAPTER` names (trimmed, any case); `None` for an unknown name. Empty
    /// counts as unset: [`Memory`](Self::Memory).
    ///
    /// ```
    /// use actioncable_adapters::AdapterKind;
    /// assert_eq!(AdapterKind::from_name("PostgreSQL"), Some(AdapterKind::Postgres));
    /// assert_eq!(AdapterKind::from_name(""), Some(AdapterKind::Memory));
    /// assert_eq!(AdapterKind::from_name("kafka"), None);
    /// ```
    pub fn from_name(name: &str) -> Option<AdapterKind> {
        match name.trim().to_ascii_lowercase().as_str() {
            "" | "memory" | "async" => Some(AdapterKind::Memory),
            "redis" => Some(AdapterKind::Redis),
            "postgres" | "postgresql" => Some(AdapterKind::Postgres),
            "solid_cable" | "solidcable" | "solid-cable" => Some(AdapterKind::SolidCable),
            "nats" => Some(AdapterKind::Nats),
            _ => None,
        }
    }

    /// The name logs and health answers use: `memory`, `redis`, `postgres`, `solid_cable`,
    /// `nats`.
    pub fn name(self) -> &'static str {
        match self {
            AdapterKind::Memory => "memory",
            AdapterKind::Redis => "redis",
            AdapterKind::Postgres => "postgres",
            AdapterKind::SolidCable => "solid_cable",
            AdapterKind::Nats => "nats",
        }
    }

    /// Whether the kind's adapter keeps stream history.
    fn keeps_history(self) -> bool {
        matches!(
            self,
            AdapterKind::Memory | AdapterKind::Redis | AdapterKind::Nats
        )
    }

    /// Whether the kind's adapter keeps presence.
    fn keeps_presence(self) -> bool {
        matches!(self, AdapterKind::Memory | AdapterKind::Redis)
    }
}

impl fmt::Display for AdapterKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why no adapter could be made from the settings. The messages name the setting, never a
/// password from a URL.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdapterError {
    /// `CABLE_ADAPTER` names no adapter.
    #[error(
        "CABLE_ADAPTER={0:?} is not an adapter: use `memory` (the default), `redis`, `postgres`, \
         `solid_cable` or `nats`"
    )]
    Unknown(String),
    /// The adapter exists but this program was built without its cargo feature.
    #[error("CABLE_ADAPTER={0}: this program was built without that adapter (cargo feature `{0}`)")]
    NotBuilt(AdapterKind),
    /// An environment variable is not valid Unicode.
    #[error("environment variable {0} is not valid Unicode")]
    NotUnicode(String),
    /// An invalid Redis setting.
    #[cfg(feature = "redis")]
    #[error("the Redis settings: {0}")]
    Redis(#[from] actioncable_redis::RedisConfigError),
    /// An invalid PostgreSQL setting.
    #[cfg(feature = "postgres")]
    #[error("the PostgreSQL settings: {0}")]
    Postgres(#[from] actioncable_postgres::PostgresConfigError),
    /// An invalid Solid Cable setting.
    #[cfg(feature = "solid-cable")]
    #[error("the Solid Cable settings: {0}")]
    SolidCable(#[from] actioncable_solid_cable::SolidCableConfigError),
    /// An invalid NATS setting.
    #[cfg(feature = "nats")]
    #[error("the NATS settings: {0}")]
    Nats(#[from] actioncable_nats::NatsConfigError),
}

/// The adapter the settings chose, ready to give to
/// [`CableBuilder::pubsub`](actioncable::CableBuilder::pubsub).
#[derive(Clone)]
pub struct Adapter {
    kind: AdapterKind,
    pubsub: Arc<dyn PubSub>,
}

impl Adapter {
    /// The adapter the process environment names (`CABLE_ADAPTER` and that adapter's own
    /// variables: see the [crate docs](crate)). Nothing connects yet: the adapter connects when
    /// the cable is built.
    ///
    /// # Errors
    /// An unknown adapter, one not built in, or an invalid setting of the chosen one.
    pub fn from_env() -> Result<Adapter, AdapterError> {
        let not_unicode = Cell::new(None);
        let adapter = Adapter::from_lookup(|name| match std::env::var(name) {
            Ok(v) => Some(v),
            Err(std::env::VarError::NotPresent) => None,
            Err(std::env::VarError::NotUnicode(_)) => {
                not_unicode.set(Some(name.to_owned()));
                None
            }
        });
        match not_unicode.take() {
            Some(name) => Err(AdapterError::NotUnicode(name)),
            None => adapter,
        }
    }

    /// [`from_env`](Self::from_env) over any source of variables (flags, a map in tests).
    ///
    /// ```
    /// use actioncable_adapters::{Adapter, AdapterKind};
    ///
    /// let vars = |name: &str| match name {
    ///     "CABLE_ADAPTER" => Some("postgresql".to_owned()),
    ///     "DATABASE_URL" => Some("postgres://app@db.internal/app".to_owned()),
    ///     _ => None,
    /// };
    /// let adapter = Adapter::from_lookup(vars)?;
    /// assert_eq!(adapter.kind(), AdapterKind::Postgres);
    /// assert!(!adapter.keeps_history());
    /// # Ok::<(), actioncable_adapters::AdapterError>(())
    /// ```
    ///
    /// # Errors
    /// As [`from_env`](Self::from_env).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Adapter, AdapterError> {
        let name = lookup("CABLE_ADAPTER").unwrap_or_default();
        let kind = AdapterKind::from_name(&name)
            .ok_or_else(|| AdapterError::Unknown(name.trim().to_owned()))?;
        Adapter::of_kind(kind, lookup)
    }

    /// The adapter of `kind`, with its settings from `lookup`.
    ///
    /// # Errors
    /// As [`from_env`](Self::from_env).
    pub fn of_kind(
        kind: AdapterKind,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Adapter, AdapterError> {
        let _ = &lookup;
        let pubsub: Arc<dyn PubSub> = match kind {
            AdapterKind::Memory => Arc::new(MemoryPubSub::new()),
            #[cfg(feature = "redis")]
            AdapterKind::Redis => Arc::new(actioncable_redis::RedisPubSub::new(
                actioncable_redis::RedisConfig::from_lookup(lookup)?,
            )),
            #[cfg(feature = "postgres")]
            AdapterKind::Postgres => Arc::new(actioncable_postgres::PostgresPubSub::new(
                actioncable_postgres::PostgresConfig::from_lookup(lookup)?,
            )),
            #[cfg(feature = "solid-cable")]
            AdapterKind::SolidCable => Arc::new(actioncable_solid_cable::SolidCablePubSub::new(
                actioncable_solid_cable::SolidCableConfig::from_lookup(lookup)?,
            )),
            #[cfg(feature = "nats")]
            AdapterKind::Nats => Arc::new(actioncable_nats::NatsPubSub::new(
                actioncable_nats::NatsConfig::from_lookup(lookup)?,
            )),
            #[allow(unreachable_patterns)]
            other => return Err(AdapterError::NotBuilt(other)),
        };
        Ok(Adapter { kind, pubsub })
    }

    /// Which backend it is.
    pub fn kind(&self) -> AdapterKind {
        self.kind
    }

    /// The adapter, shared: give it to the cable, and keep this to ask
    /// [`is_connected`](PubSub::is_connected).
    pub fn pubsub(&self) -> Arc<dyn PubSub> {
        self.pubsub.clone()
    }

    /// Whether it keeps stream history, so
    /// [`CableBuilder::history(true)`](actioncable::CableBuilder::history) works with it.
    pub fn keeps_history(&self) -> bool {
        self.kind.keeps_history()
    }

    /// Whether it keeps presence
    /// ([`StreamOptions::presence`](actioncable::StreamOptions::presence)).
    pub fn keeps_presence(&self) -> bool {
        self.kind.keeps_presence()
    }
}

impl fmt::Debug for Adapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Adapter")
            .field("kind", &self.kind)
            .field("pubsub", &self.pubsub)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn every_kind_is_named_and_found_by_its_name() {
        for kind in AdapterKind::ALL {
            assert_eq!(AdapterKind::from_name(kind.name()), Some(kind));
            assert_eq!(
                AdapterKind::from_name(&kind.name().to_uppercase()),
                Some(kind)
            );
        }
        assert_eq!(AdapterKind::from_name(" async "), Some(AdapterKind::Memory));
    }

    #[test]
    fn the_settings_choose_the_adapter() {
        let memory = Adapter::from_lookup(vars(&[])).unwrap();
        assert!(format!("{memory:?}").contains("MemoryPubSub"));
        assert!(memory.keeps_history() && memory.keeps_presence());
        let redis = Adapter::from_lookup(vars(&[
            ("CABLE_ADAPTER", "redis"),
            ("REDIS_URL", "redis://127.0.0.1:1/0"),
        ]))
        .unwrap();
        assert_eq!(redis.kind(), AdapterKind::Redis);
        assert!(format!("{redis:?}").contains("RedisPubSub"));
        assert!(redis.keeps_history() && redis.keeps_presence());
        let postgres = Adapter::from_lookup(vars(&[("CABLE_ADAPTER", "postgres")])).unwrap();
        assert!(format!("{postgres:?}").contains("PostgresPubSub"));
        assert!(!postgres.keeps_history() && !postgres.keeps_presence());
        let solid = Adapter::from_lookup(vars(&[
            ("CABLE_ADAPTER", "solid_cable"),
            ("CABLE_DATABASE_URL", "sqlite:///tmp/cable.sqlite3"),
        ]))
        .unwrap();
        assert_eq!(solid.kind(), AdapterKind::SolidCable);
        assert!(format!("{solid:?}").contains("SolidCablePubSub"));
        assert!(!solid.keeps_history() && !solid.keeps_presence());
        let nats = Adapter::from_lookup(vars(&[
            ("CABLE_ADAPTER", "nats"),
            ("NATS_URL", "nats://127.0.0.1:1"),
        ]))
        .unwrap();
        assert_eq!(nats.kind(), AdapterKind::Nats);
        assert!(format!("{nats:?}").contains("NatsPubSub"));
        assert!(nats.keeps_history() && !nats.keeps_presence());
        let err = Adapter::from_lookup(vars(&[("CABLE_ADAPTER", "solid_cable")])).unwrap_err();
        assert!(err.to_string().contains("DATABASE_URL"), "{err}");
    }

    #[test]
    fn bad_settings_are_errors_that_name_the_setting_not_the_password() {
        let err = Adapter::from_lookup(vars(&[("CABLE_ADAPTER", "kafka")])).unwrap_err();
        assert!(err.to_string().contains("CABLE_ADAPTER=\"kafka\""), "{err}");
        let err = Adapter::from_lookup(vars(&[
            ("CABLE_ADAPTER", "redis"),
            ("REDIS_URL", "http://:hunter2@localhost"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("Redis"), "{err}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
        let err = Adapter::from_lookup(vars(&[
            ("CABLE_ADAPTER", "postgresql"),
            (
                "DATABASE_URL",
                "postgres://app:hunter2@db/app?sslmode=require",
            ),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("PostgreSQL"), "{err}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}
