//! Stream history kept in Redis, so that every node sharing the Redis assigns and reads the
//! same positions.
//!
//! Per stream, two keys (named after the stream's Redis channel, prefix included):
//! `_action_cable_history:<channel>:meta`, a hash with the stream's `epoch` and last `offset`,
//! and `_action_cable_history:<channel>:log`, a Redis Stream of the kept messages (entry ID:
//! Redis' clock in milliseconds; fields `offset` and `payload`), trimmed to the history limit.
//! Both expire `ttl` after the stream's last kept broadcast.
//!
//! One Lua script per kept broadcast (atomic, so positions are assigned in one order for all
//! nodes): it makes the epoch when the stream has none (the epoch is drawn by the publishing
//! node and used only then), counts the offset, appends to the log, refreshes both TTLs, then
//! `PUBLISH`es a position note (`"<epoch> <offset>"`) on `_action_cable_position:<channel>`
//! and **then the unchanged payload on `<channel>`**, exactly what Rails publishes. A node's
//! subscriber connection subscribes both channels of a stream with one `SUBSCRIBE`, and Redis
//! sends a connection its messages in the order they were published, so a note is immediately
//! followed by its payload: the push handler pairs them (`wire::Pairing`). A payload with no note
//! before it (a Rails node's broadcast) is delivered live, without a position.

use crate::wire::Naming;
use actioncable::PubSubError;
use actioncable::pubsub::{HistorySettings, Kept, Position};
use std::collections::HashMap;
use std::sync::Arc;

const KEY_PREFIX: &str = "_action_cable_history:";

/// The publishing script. KEYS: meta, log. ARGV: note channel, payload channel, payload,
/// a fresh epoch, limit, ttl in milliseconds, and a trace note with its channel (an empty
/// note for none: see `actioncable::pubsub::TraceNote`). Returns `{epoch, offset}`.
pub(crate) const PUBLISH_SCRIPT: &str = r"
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[4]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'offset', 0)
end
local offset = redis.call('HINCRBY', KEYS[1], 'offset', 1)
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[5], '*', 'offset', offset, 'payload', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[6])
redis.call('PEXPIRE', KEYS[2], ARGV[6])
if ARGV[7] ~= '' then
  redis.call('PUBLISH', ARGV[8], ARGV[7])
end
redis.call('PUBLISH', ARGV[1], epoch .. ' ' .. offset)
redis.call('PUBLISH', ARGV[2], ARGV[3])
return {epoch, offset}
";

/// The reading script. KEYS: meta, log. ARGV: ttl in milliseconds, the earliest entry time
/// wanted in milliseconds (0: any). Returns `{epoch or "", last offset or "0", entries}` with
/// the entries not yet expired by Redis' clock.
pub(crate) const READ_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local start = now - tonumber(ARGV[1]) + 1
local since = tonumber(ARGV[2])
if since > start then start = since end
if start < 0 then start = 0 end
local epoch = redis.call('HGET', KEYS[1], 'epoch')
local last = redis.call('HGET', KEYS[1], 'offset')
local entries = redis.call('XRANGE', KEYS[2], string.format('%d', start), '+')
return {epoch or '', last or '0', entries}
";

/// The two keys of `stream`'s history.
pub(crate) fn keys(naming: &Naming, stream: &str) -> (String, String) {
    let channel = naming.channel(stream);
    (
        format!("{KEY_PREFIX}{channel}:meta"),
        format!("{KEY_PREFIX}{channel}:log"),
    )
}

/// A stream's history as one read saw it.
pub(crate) struct Read {
    /// Empty when the stream keeps nothing (never kept, or expired).
    pub(crate) epoch: String,
    pub(crate) last: u64,
    /// Oldest first, none expired.
    pub(crate) entries: Vec<Kept>,
}

impl Read {
    /// The memory store's `after`, exactly: `None` for another epoch, a position never given,
    /// or one whose next message is gone; `Some` of nothing when up to date.
    pub(crate) fn after(self, epoch: &str, offset: u64) -> Option<Vec<Kept>> {
        if self.epoch.is_empty() || self.epoch != epoch || offset > self.last {
            return None;
        }
        if offset == self.last {
            return Some(Vec::new());
        }
        let first = self.entries.first()?.position.offset;
        if offset + 1 < first {
            return None;
        }
        Some(
            self.entries
                .into_iter()
                .filter(|k| k.position.offset > offset)
                .collect(),
        )
    }
}

/// A log entry as XRANGE gives it: its ID and fields.
type Entry = (String, HashMap<String, String>);

/// Decodes the reading script's answer.
pub(crate) fn decode_read(value: redis::Value) -> Result<Read, PubSubError> {
    let bad = |what: &str| PubSubError::Backend(format!("unexpected history reply: {what}").into());
    let (epoch, last, entries): (String, String, Vec<Entry>) =
        redis::from_redis_value(value).map_err(|e| bad(&e.to_string()))?;
    let last: u64 = last.parse().map_err(|_| bad("offset"))?;
    let epoch_arc: Arc<str> = Arc::from(epoch.as_str());
    let mut kept = Vec::with_capacity(entries.len());
    for (id, mut fields) in entries {
        let millis: u64 = id
            .split_once('-')
            .and_then(|(ms, _)| ms.parse().ok())
            .ok_or_else(|| bad("entry id"))?;
        let offset: u64 = fields
            .get("offset")
            .and_then(|o| o.parse().ok())
            .ok_or_else(|| bad("entry offset"))?;
        let payload = fields
            .remove("payload")
            .ok_or_else(|| bad("entry payload"))?;
        kept.push(Kept {
            position: Position {
                epoch: epoch_arc.clone(),
                offset,
            },
            unix_secs: millis / 1000,
            payload: Arc::from(payload),
        });
    }
    Ok(Read {
        epoch,
        last,
        entries: kept,
    })
}

/// Milliseconds of `settings.ttl`, at least 1 (`PEXPIRE 0` would delete the keys at once).
pub(crate) fn ttl_millis(settings: &HistorySettings) -> u64 {
    u64::try_from(settings.ttl.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// A fresh epoch: four characters from the standard library's randomly keyed hasher and the
/// clock, as the memory store draws its own (AnyCable's epochs are short random ids).
pub(crate) fn fresh_epoch() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    let mut n = hasher.finish();
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut out = String::with_capacity(8);
    for _ in 0..8 {
        out.push(char::from(ALPHABET[(n % ALPHABET.len() as u64) as usize]));
        n /= ALPHABET.len() as u64;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(offset: u64) -> Kept {
        Kept {
            position: Position {
                epoch: Arc::from("e"),
                offset,
            },
            unix_secs: 0,
            payload: Arc::from("{}"),
        }
    }

    fn read(epoch: &str, last: u64, offsets: &[u64]) -> Read {
        Read {
            epoch: epoch.to_owned(),
            last,
            entries: offsets.iter().copied().map(kept).collect(),
        }
    }

    fn offsets(k: Option<Vec<Kept>>) -> Option<Vec<u64>> {
        k.map(|k| k.iter().map(|k| k.position.offset).collect())
    }

    #[test]
    fn after_answers_as_the_memory_store() {
        assert_eq!(offsets(read("e", 2, &[1, 2]).after("e", 1)), Some(vec![2]));
        assert_eq!(
            offsets(read("e", 2, &[1, 2]).after("e", 0)),
            Some(vec![1, 2])
        );
        assert_eq!(offsets(read("e", 2, &[1, 2]).after("e", 2)), Some(vec![]));
        assert_eq!(offsets(read("e", 2, &[1, 2]).after("e", 3)), None);
        assert_eq!(offsets(read("e", 2, &[1, 2]).after("x", 1)), None);
        assert_eq!(offsets(read("", 0, &[]).after("", 0)), None, "not kept");
        // Evicted: 3, 4, 5 kept; a client at 2 is served, one at 1 missed 2 for good.
        assert_eq!(
            offsets(read("e", 5, &[3, 4, 5]).after("e", 2)),
            Some(vec![3, 4, 5])
        );
        assert_eq!(offsets(read("e", 5, &[3, 4, 5]).after("e", 1)), None);
        // All expired but the log still there: only an up-to-date client is served.
        assert_eq!(offsets(read("e", 5, &[]).after("e", 4)), None);
        assert_eq!(offsets(read("e", 5, &[]).after("e", 5)), Some(vec![]));
    }

    #[test]
    fn keys_carry_the_prefix() {
        let n = Naming::new(Some("app"));
        assert_eq!(
            keys(&n, "chat"),
            (
                "_action_cable_history:app:chat:meta".to_owned(),
                "_action_cable_history:app:chat:log".to_owned()
            )
        );
        assert_ne!(fresh_epoch(), fresh_epoch());
    }
}
