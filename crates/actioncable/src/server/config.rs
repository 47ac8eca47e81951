//! The server's settings, their defaults (Rails' where Rails has one) and their validation.
//! The builder's setters document each one; this file decides what is acceptable.

use super::AllowedOrigins;
use crate::error::ConfigError;
use crate::metrics::Sampling;
use crate::pubsub::{HistorySettings, PresenceSettings};
use std::time::Duration;

/// Server settings. Every field has a default; see the builder methods.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) ping_interval: Duration,
    pub(crate) max_message_size: usize,
    pub(crate) max_subscriptions: usize,
    pub(crate) max_identifier_size: usize,
    pub(crate) outbound_capacity: usize,
    pub(crate) outbound_bytes: usize,
    pub(crate) read_buffer_size: usize,
    pub(crate) write_buffer_size: usize,
    pub(crate) close_timeout: Duration,
    pub(crate) max_connections: usize,
    pub(crate) max_connections_per_identity: usize,
    pub(crate) client_timeout: Duration,
    pub(crate) max_commands_per_second: u32,
    pub(crate) origins: AllowedOrigins,
    /// Keep stream history (off by default: only extended-protocol clients can use it).
    pub(crate) history: bool,
    pub(crate) history_settings: HistorySettings,
    /// How long an extended-protocol session is kept for a reconnect with its `sid`; zero: not
    /// at all.
    pub(crate) session_ttl: Duration,
    /// Most sessions kept waiting for a reconnect on this node at once.
    pub(crate) max_parked_sessions: usize,
    /// How long a presence record outlives its connection (a quick reconnect does not flap).
    pub(crate) presence_grace: Duration,
    pub(crate) presence_settings: PresenceSettings,
    /// Largest `whisper` data, in bytes of JSON.
    pub(crate) max_whisper_size: usize,
    /// Largest presence `id` plus `info`, in bytes of JSON.
    pub(crate) max_presence_size: usize,
    /// Count and time what the node does (`CableBuilder::metrics`), off by default.
    pub(crate) metrics: bool,
    pub(crate) sampling: Sampling,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            ping_interval: Duration::from_secs(3),
            max_message_size: 1024 * 1024,
            max_subscriptions: 256,
            max_identifier_size: 4096,
            outbound_capacity: 1024,
            outbound_bytes: 8 * 1024 * 1024,
            read_buffer_size: 512,
            write_buffer_size: 8192,
            close_timeout: Duration::from_secs(2),
            max_connections: 50_000,
            max_connections_per_identity: 100,
            client_timeout: Duration::from_secs(20),
            max_commands_per_second: 100,
            origins: AllowedOrigins::same_origin(),
            history: false,
            history_settings: HistorySettings::default(),
            session_ttl: Duration::from_secs(120),
            max_parked_sessions: 10_000,
            presence_grace: Duration::from_secs(15),
            presence_settings: PresenceSettings::default(),
            max_whisper_size: 4096,
            max_presence_size: 4096,
            metrics: false,
            sampling: Sampling::default(),
        }
    }
}

impl Config {
    /// Refuses settings that cannot work.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |name, reason: &str| ConfigError::Invalid {
            name,
            reason: reason.into(),
        };
        if self.ping_interval.is_zero() {
            return Err(invalid("ping_interval", "must be positive"));
        }
        if self.max_message_size < 1024 {
            return Err(invalid("max_message_size", "must be at least 1 KiB"));
        }
        if self.client_timeout < Duration::from_millis(100) {
            return Err(invalid("client_timeout", "must be at least 100 ms"));
        }
        if self.max_identifier_size < 64 {
            return Err(invalid("max_identifier_size", "must be at least 64 bytes"));
        }
        if self.outbound_bytes < 1024 {
            return Err(invalid("outbound_bytes", "must be at least 1 KiB"));
        }
        if self.max_connections_per_identity == 0 {
            return Err(invalid("max_connections_per_identity", "must be positive"));
        }
        if self.outbound_capacity == 0
            || self.max_subscriptions == 0
            || self.max_commands_per_second == 0
        {
            return Err(invalid(
                "outbound_capacity/max_subscriptions/max_commands_per_second",
                "must be positive",
            ));
        }
        if self.history_settings.limit == 0 {
            return Err(invalid("history_limit", "must be positive"));
        }
        if self.history_settings.ttl < Duration::from_secs(1) {
            return Err(invalid("history_ttl", "must be at least 1 s"));
        }
        if self.presence_settings.ttl < Duration::from_millis(300) {
            return Err(invalid("presence_ttl", "must be at least 300 ms"));
        }
        if self.max_whisper_size == 0 || self.max_presence_size < 16 {
            return Err(invalid(
                "max_whisper_size/max_presence_size",
                "must be positive (max_presence_size at least 16 bytes)",
            ));
        }
        if self.sampling.broadcasts == 0 || self.sampling.deliveries == 0 {
            return Err(invalid(
                "metrics_sampling",
                "must be positive (1: every one)",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_and_unworkable_values_are_named() {
        assert!(Config::default().validate().is_ok());
        let zero_ping = Config {
            ping_interval: Duration::ZERO,
            ..Config::default()
        };
        assert!(matches!(
            zero_ping.validate(),
            Err(ConfigError::Invalid {
                name: "ping_interval",
                ..
            })
        ));
        let tiny = Config {
            max_message_size: 10,
            ..Config::default()
        };
        assert!(matches!(
            tiny.validate(),
            Err(ConfigError::Invalid {
                name: "max_message_size",
                ..
            })
        ));
    }
}
