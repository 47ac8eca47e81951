//! What a row of the Solid Cable table holds, computed exactly as the gem computes it, with no
//! I/O: the channel (the broadcasting with its prefix), `channel_hash`, `created_at` in Rails'
//! format, the trim decision and `cable.yml`'s duration strings.

use sha2::{Digest as _, Sha256};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The gem's table (`SolidCable::Message`, `db/cable_schema.rb`).
pub(crate) const TABLE: &str = "solid_cable_messages";

/// The channel stored for `stream`: Rails' `ChannelPrefix#channel_with_prefix`,
/// `[channel_prefix, broadcasting].compact.join(":")`.
pub(crate) fn channel_name(prefix: Option<&str>, stream: &str) -> String {
    match prefix {
        Some(prefix) => format!("{prefix}:{stream}"),
        None => stream.to_owned(),
    }
}

/// `SolidCable::Message.channel_hash_for`: the SHA-256 digest of the channel's bytes, its first
/// 8 bytes read as a signed big-endian 64-bit integer (`unpack1("q>")`).
pub fn channel_hash(channel: &[u8]) -> i64 {
    let digest = Sha256::digest(channel);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

/// A UTC wall-clock time with microseconds: `created_at` as Rails writes it (`Time.current`,
/// cut to the column's precision 6, converted to UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Timestamp {
    pub(crate) year: i32,
    pub(crate) month: u8,
    pub(crate) day: u8,
    pub(crate) hour: u8,
    pub(crate) minute: u8,
    pub(crate) second: u8,
    pub(crate) micros: u32,
}

impl Timestamp {
    /// Now, by this machine's clock (the gem uses its process's clock too, never the
    /// database's).
    pub(crate) fn now() -> Timestamp {
        Timestamp::at(SystemTime::now())
    }

    /// `at` minus `age`: the trim cut-off (`message_retention.ago`).
    pub(crate) fn before(at: SystemTime, age: Duration) -> Timestamp {
        Timestamp::at(at.checked_sub(age).unwrap_or(UNIX_EPOCH))
    }

    /// `at` in UTC, its sub-microsecond part dropped (Rails' `apply_seconds_precision`
    /// truncates, it does not round).
    pub(crate) fn at(at: SystemTime) -> Timestamp {
        let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
        let date = time::OffsetDateTime::UNIX_EPOCH + since;
        Timestamp {
            year: date.year(),
            month: u8::from(date.month()),
            day: date.day(),
            hour: date.hour(),
            minute: date.minute(),
            second: date.second(),
            micros: date.microsecond(),
        }
    }

    /// Rails' `quoted_date`: `YYYY-MM-DD HH:MM:SS`, followed by `.` and six digits only when
    /// the microseconds are not zero. The text SQLite stores, and what PostgreSQL is sent.
    pub(crate) fn to_rails(self) -> String {
        let mut text = format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        );
        if self.micros > 0 {
            text.push_str(&format!(".{:06}", self.micros));
        }
        text
    }
}

/// Whether this publish trims (`SolidCable::TrimJob#trim?` with autotrim on): with
/// `ratio = trim_chance / trim_batch_size`, the gem trims when `rand < ratio - ratio.floor`,
/// so 2 / 100 by default trims on one publish in fifty. `draw` is a uniform number in `[0, 1)`.
///
/// One deliberate difference: where the ratio is a whole number (chance 2 with a batch of 2,
/// say) the gem's fractional part is 0 and it never trims; here it trims on every publish.
pub(crate) fn trims(trim_chance: f64, trim_batch_size: u32, draw: f64) -> bool {
    let ratio = trim_chance / f64::from(trim_batch_size.max(1));
    if !ratio.is_finite() || ratio <= 0.0 {
        return false;
    }
    let fraction = ratio - ratio.floor();
    if fraction == 0.0 {
        return true;
    }
    draw < fraction
}

/// A `cable.yml` duration as the gem reads it (`SolidCable.parse_duration`): the last
/// `.`-separated part is the unit, the rest the amount, e.g. `0.1.seconds`, `1.day`,
/// `2.5.minutes`. `None` for anything else (the gem then raises, or falls back to its default
/// when the setting is empty).
pub fn parse_rails_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let (amount, unit) = text.rsplit_once('.')?;
    let amount: f64 = amount.trim().parse().ok()?;
    let seconds = match unit.trim() {
        "second" | "seconds" => 1.0,
        "minute" | "minutes" => 60.0,
        "hour" | "hours" => 3600.0,
        "day" | "days" => 86_400.0,
        "week" | "weeks" => 7.0 * 86_400.0,
        "fortnight" | "fortnights" => 14.0 * 86_400.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(amount * seconds).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pinned from an independent computation: `python3 -c 'import hashlib;
    /// print(int.from_bytes(hashlib.sha256(b"…").digest()[:8], "big", signed=True))'`, the
    /// same arithmetic as Ruby's `Digest::SHA256.digest(c).unpack1("q>")`.
    #[test]
    fn channel_hash_is_the_signed_big_endian_head_of_sha256() {
        assert_eq!(channel_hash(b"chat:lobby"), 2_001_220_323_953_712_540);
        assert_eq!(channel_hash(b""), -2_039_914_840_885_289_964);
        assert_eq!(channel_hash(b"channel"), 7_630_053_694_495_213_145);
    }

    #[test]
    fn prefix_joins_with_a_colon_like_rails() {
        assert_eq!(channel_name(None, "chat"), "chat");
        assert_eq!(channel_name(Some("app"), "chat"), "app:chat");
        assert_eq!(channel_name(Some(""), "chat"), ":chat");
    }

    #[test]
    fn timestamps_use_rails_format_and_truncate_to_microseconds() {
        let at = UNIX_EPOCH + Duration::new(1_714_566_896, 123_456_789);
        let t = Timestamp::at(at);
        assert_eq!(t.to_rails(), "2024-05-01 12:34:56.123456");
        let whole = Timestamp::at(UNIX_EPOCH + Duration::from_secs(1_714_566_896));
        assert_eq!(whole.to_rails(), "2024-05-01 12:34:56");
        let tiny = Timestamp::at(UNIX_EPOCH + Duration::new(1_714_566_896, 999));
        assert_eq!(
            tiny.to_rails(),
            "2024-05-01 12:34:56",
            "below a microsecond is cut"
        );
        let day_before = Timestamp::before(at, Duration::from_secs(86_400));
        assert_eq!(day_before.to_rails(), "2024-04-30 12:34:56.123456");
        assert!(day_before < t);
    }

    #[test]
    fn trim_chance_follows_the_gem() {
        // Defaults: 2 / 100.
        assert!(trims(2.0, 100, 0.0199));
        assert!(!trims(2.0, 100, 0.02));
        // The gem's own test: 99.999999 / 2 → fraction 0.9999995.
        assert!(trims(99.999_999, 2, 0.999));
        // A whole ratio trims every time (the gem: never).
        assert!(trims(2.0, 2, 0.999_999));
        assert!(!trims(0.0, 100, 0.0));
    }

    #[test]
    fn durations_read_like_cable_yml() {
        assert_eq!(
            parse_rails_duration("0.1.seconds"),
            Some(Duration::from_millis(100))
        );
        assert_eq!(
            parse_rails_duration("1.day"),
            Some(Duration::from_secs(86_400))
        );
        assert_eq!(
            parse_rails_duration("2.5.minutes"),
            Some(Duration::from_secs(150))
        );
        assert_eq!(parse_rails_duration("5"), None);
        assert_eq!(parse_rails_duration("1.month"), None);
        assert_eq!(parse_rails_duration("x.seconds"), None);
    }
}
