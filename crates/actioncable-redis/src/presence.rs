//! Presence kept in Redis, so that every node sharing the Redis sees the same members, and a
//! node that dies takes its members with it.
//!
//! Per stream, three hashes (named after the stream's Redis channel, prefix included):
//! `_action_cable_presence:<channel>:records` (record key → member id),
//! `…:members` (member id → info JSON) and `…:counts` (member id → how many records). One
//! sorted set for all streams, `_action_cable_presence_deadlines`, holds every record as
//! `"<record key> <channel>"`, scored with the Redis time (ms) at which it expires unless its
//! node refreshes it. Record keys are `<node id>-<connection>.<subscription>`: unique among
//! nodes.
//!
//! Every change is one Lua script (atomic): `join` adds a record and, for a member's first,
//! stores its info and `PUBLISH`es a join event; `leave` removes one and, for a member's last,
//! publishes a leave event; `sweep` removes the records whose time is up, with the same leave
//! events; `refresh` moves a node's records' deadlines forward and says which ones Redis no
//! longer has (after a Redis restart, or an outage longer than the TTL), for the node to join
//! them again. Events go to one channel, `_action_cable_presence` (`wire::PRESENCE_CHANNEL`),
//! which every node's subscriber connection listens to; each node hands the events of streams
//! it serves to its fan-out.
//!
//! Timing, for a TTL `t`: each node refreshes its records and sweeps every `t/3`, and a record
//! lives `2t/3` past its last refresh. A live node's record therefore always has `t/3` to spare,
//! and a dead node's records expire at most `2t/3` after its death and are swept at most `t/3`
//! later: its members leave within `t`. The per-stream hashes expire `2t` after the last
//! refresh, so a stream abandoned by every node leaves nothing behind.
//!
//! The scripts name the per-stream keys of the records they sweep or refresh themselves, so
//! presence needs a single Redis (or Sentinel), not Redis Cluster.

use crate::wire::Naming;
use std::time::Duration;

const KEY_PREFIX: &str = "_action_cable_presence:";

/// The sorted set of every record's deadline.
pub(crate) const DEADLINES: &str = "_action_cable_presence_deadlines";

/// Most records one sweep removes (the next sweep takes the rest).
pub(crate) const SWEEP_LIMIT: usize = 1000;

/// Most records one refresh names.
pub(crate) const REFRESH_CHUNK: usize = 500;

/// What the scripts share: Redis' clock in milliseconds.
const NOW: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
";

/// Removes record `key` of `channel` (keys under `base`) and publishes a leave event when it
/// was its member's last. Returns 1 then, else 0.
const REMOVE: &str = r"
local function remove(base, key, channel, events)
  local id = redis.call('HGET', base .. ':records', key)
  if not id then return 0 end
  redis.call('HDEL', base .. ':records', key)
  if redis.call('HINCRBY', base .. ':counts', id, -1) <= 0 then
    redis.call('HDEL', base .. ':counts', id)
    redis.call('HDEL', base .. ':members', id)
    redis.call('PUBLISH', events, 'leave ' .. #channel .. ' ' .. #id .. ' ' .. channel .. id)
    return 1
  end
  return 0
end
";

/// The joining script. KEYS: records, members, counts, deadlines. ARGV: record key, member id,
/// info ('' for none), record lifetime ms, deadline entry, events channel, stream channel, keys'
/// TTL ms. Returns 1 when the member is new (a join event was published), else 0.
pub(crate) fn join_script() -> String {
    format!(
        r"{NOW}
redis.call('ZADD', KEYS[4], now + tonumber(ARGV[4]), ARGV[5])
redis.call('PEXPIRE', KEYS[4], ARGV[8])
local joined = 0
if not redis.call('HGET', KEYS[1], ARGV[1]) then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  if redis.call('HINCRBY', KEYS[3], ARGV[2], 1) == 1 then
    redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
    redis.call('PUBLISH', ARGV[6], 'join ' .. #ARGV[7] .. ' ' .. #ARGV[2] .. ' ' .. ARGV[7] .. ARGV[2] .. ARGV[3])
    joined = 1
  end
end
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ARGV[8]) end
return joined
"
    )
}

/// The leaving script. KEYS: deadlines. ARGV: keys' base, record key, deadline entry, events
/// channel, stream channel. Returns 1 when the member left (a leave event was published).
pub(crate) fn leave_script() -> String {
    format!(
        r"{REMOVE}
redis.call('ZREM', KEYS[1], ARGV[3])
return remove(ARGV[1], ARGV[2], ARGV[5], ARGV[4])
"
    )
}

/// The sweeping script. KEYS: deadlines. ARGV: key prefix, events channel, limit. Removes the
/// records whose deadline passed; returns how many members left.
pub(crate) fn sweep_script() -> String {
    format!(
        r"{NOW}{REMOVE}
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
local left = 0
for _, entry in ipairs(due) do
  redis.call('ZREM', KEYS[1], entry)
  local sp = string.find(entry, ' ', 1, true)
  if sp then
    local channel = string.sub(entry, sp + 1)
    left = left + remove(ARGV[1] .. channel, string.sub(entry, 1, sp - 1), channel, ARGV[2])
  end
end
return left
"
    )
}

/// The refreshing script. KEYS: deadlines. ARGV: record lifetime ms, keys' TTL ms, key
/// prefix, then deadline entries. Moves each entry's deadline on and extends its stream's
/// hashes; returns the entries Redis no longer has.
pub(crate) fn refresh_script() -> String {
    format!(
        r"{NOW}
local missing = {{}}
for i = 4, #ARGV do
  local entry = ARGV[i]
  if redis.call('ZSCORE', KEYS[1], entry) then
    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), entry)
    local sp = string.find(entry, ' ', 1, true)
    if sp then
      local base = ARGV[3] .. string.sub(entry, sp + 1)
      redis.call('PEXPIRE', base .. ':records', ARGV[2])
      redis.call('PEXPIRE', base .. ':members', ARGV[2])
      redis.call('PEXPIRE', base .. ':counts', ARGV[2])
    end
  else
    table.insert(missing, entry)
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return missing
"
    )
}

/// The keys of one stream's presence.
pub(crate) struct Keys {
    /// `_action_cable_presence:<channel>`, what the per-stream hashes' names start with.
    pub(crate) base: String,
    pub(crate) records: String,
    pub(crate) members: String,
    pub(crate) counts: String,
    /// The stream's Redis channel (prefix included).
    pub(crate) channel: String,
}

/// The keys of `stream`'s presence.
pub(crate) fn keys(naming: &Naming, stream: &str) -> Keys {
    let channel = naming.channel(stream).into_owned();
    let base = format!("{KEY_PREFIX}{channel}");
    Keys {
        records: format!("{base}:records"),
        members: format!("{base}:members"),
        counts: format!("{base}:counts"),
        base,
        channel,
    }
}

/// What every per-stream key name starts with (the scripts add the channel).
pub(crate) fn key_prefix() -> &'static str {
    KEY_PREFIX
}

/// A record's entry in the deadlines set: `"<record key> <channel>"`.
pub(crate) fn entry(record: &str, channel: &str) -> String {
    format!("{record} {channel}")
}

/// The timings for a TTL: how long a record lives past a refresh, how often to refresh and
/// sweep, and how long the per-stream keys outlive the last refresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timing {
    pub(crate) lifetime: Duration,
    pub(crate) every: Duration,
    pub(crate) keys_ttl: Duration,
}

impl Timing {
    pub(crate) fn new(ttl: Duration) -> Timing {
        Timing {
            lifetime: ttl * 2 / 3,
            every: ttl / 3,
            keys_ttl: ttl * 2,
        }
    }
}

/// A node id for record keys: random, short, without spaces.
pub(crate) fn node_id() -> String {
    crate::history::fresh_epoch()
}

/// Milliseconds for a script argument (at least 1).
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_channel_prefix_and_entries_split_at_the_first_space() {
        let k = keys(&Naming::new(Some("app")), "chat:a b");
        assert_eq!(k.base, "_action_cable_presence:app:chat:a b");
        assert_eq!(k.records, "_action_cable_presence:app:chat:a b:records");
        assert_eq!(k.channel, "app:chat:a b");
        let e = entry("n1-3.1", &k.channel);
        assert_eq!(e.split_once(' '), Some(("n1-3.1", "app:chat:a b")));
        assert!(!node_id().contains(' '));
    }

    #[test]
    fn a_dead_nodes_records_go_within_the_ttl_and_a_live_ones_never() {
        let t = Timing::new(Duration::from_secs(15));
        // Death just after a refresh: expiry after `lifetime`, swept within `every` more.
        assert!(t.lifetime + t.every <= Duration::from_secs(15));
        // A live node refreshes before its records expire, with time to spare.
        assert!(t.every < t.lifetime);
        assert!(t.keys_ttl > t.lifetime + t.every);
    }
}
