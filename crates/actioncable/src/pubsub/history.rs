//! Stream history: the last messages of each stream, each at a [`Position`], so that a client of
//! the extended protocol can ask for what it missed while it was away.
//!
//! The model is AnyCable's (its `broker/memory.go`, `node/node.go`): a position is an `epoch`
//! and an `offset`. The offset counts a stream's kept broadcasts (1, 2, 3, …); the epoch names
//! one life of that count and changes whenever the count could restart or messages could be
//! lost without a trace (a new process, a log dropped after its TTL), so a position from another
//! epoch is never mistaken for one in this epoch.
//!
//! A position is assigned **once per broadcast**, where it is stored ([`History::publish`]), and
//! travels with the message to every node's fan-out (`Inbound::deliver_at`): no node and no
//! subscriber numbers messages on its own, so positions agree wherever the message is read. An
//! adapter keeps history by answering [`PubSub::history`](super::PubSub::history); the default
//! answer is that it keeps none, so adapters written before history keep compiling and working.
//!
//! [`MemoryHistory`] is the in-process store: one node, a random epoch per process start.

use crate::error::PubSubError;
use crate::sync::lock;
use async_trait::async_trait;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// Where a broadcast sits in its stream's history: `offset` counts the stream's kept messages
/// within `epoch`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Position {
    /// One life of the stream's count; a different epoch means earlier positions are void.
    pub epoch: Arc<str>,
    /// 1 for the first message kept in this epoch, then +1 per message.
    pub offset: u64,
}

/// A message kept in a stream's history.
#[derive(Debug, Clone)]
pub struct Kept {
    /// Its position.
    pub position: Position,
    /// When it was kept, in unix seconds (what a `since` request compares with).
    pub unix_secs: u64,
    /// The broadcast's JSON, as published.
    pub payload: Arc<str>,
}

/// How much history to keep per stream. Defaults: AnyCable's, the last 100 messages for 5
/// minutes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct HistorySettings {
    /// Messages kept per stream; older ones are evicted.
    pub limit: usize,
    /// How long a message is kept.
    pub ttl: Duration,
}

impl Default for HistorySettings {
    fn default() -> Self {
        HistorySettings {
            limit: 100,
            ttl: Duration::from_secs(300),
        }
    }
}

impl HistorySettings {
    /// Settings with `limit` messages per stream kept for `ttl`.
    pub fn new(limit: usize, ttl: Duration) -> HistorySettings {
        HistorySettings { limit, ttl }
    }
}

/// An adapter's stream history: it stores broadcasts, assigns their positions and reads them
/// back. Returned by [`PubSub::history`](super::PubSub::history).
#[async_trait]
pub trait History: Send + Sync + fmt::Debug + 'static {
    /// Keeps `payload` in `stream`'s history at the stream's next position and sends it, with
    /// that position, to every node subscribed to `stream` (their `Inbound::deliver_at`), in
    /// position order. An `Err` means it was neither kept nor sent.
    async fn publish(&self, stream: &str, payload: &str) -> Result<Position, PubSubError>;

    /// [`publish`](Self::publish) for a broadcast the node's metrics sample, made at `sent`
    /// (wall clock): a history that can carry `sent` to every node delivers the message there
    /// with [`Inbound::deliver_traced`](super::Inbound::deliver_traced). The default drops it.
    ///
    /// # Errors
    /// As [`publish`](Self::publish).
    async fn publish_traced(
        &self,
        stream: &str,
        payload: &str,
        sent: SystemTime,
    ) -> Result<Position, PubSubError> {
        let _ = sent;
        self.publish(stream, payload).await
    }

    /// The messages kept after `epoch`/`offset`, oldest first; `Ok(None)` when that position
    /// cannot be served: another epoch, a stream not kept, or messages after it already evicted
    /// or expired. A position at the stream's newest message gives `Some` of nothing.
    async fn after(
        &self,
        stream: &str,
        epoch: &str,
        offset: u64,
    ) -> Result<Option<Vec<Kept>>, PubSubError>;

    /// The messages kept at or after `unix_secs`, oldest first.
    async fn since(&self, stream: &str, unix_secs: u64) -> Result<Vec<Kept>, PubSubError>;
}

/// One stream's kept messages.
struct Log {
    epoch: Arc<str>,
    last: u64,
    entries: VecDeque<(Instant, Kept)>,
    touched: Instant,
}

impl Log {
    fn expire(&mut self, now: Instant, ttl: Duration) {
        while self
            .entries
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) >= ttl)
        {
            self.entries.pop_front();
        }
    }
}

/// The in-process history store, shared by the in-memory adapters.
///
/// Every stream's log has an epoch of its own: the process's random prefix and a counter. A log
/// whose newest message expired is dropped (memory stays bounded by live streams), and one
/// made again later starts a new epoch, so a client's old position is refused rather than
/// matched against a restarted count.
pub(crate) struct MemoryHistory {
    settings: HistorySettings,
    prefix: String,
    logs_made: AtomicU64,
    logs: Mutex<Logs>,
}

#[derive(Default)]
struct Logs {
    by_stream: HashMap<Arc<str>, Log>,
    appends: u64,
}

/// Appends between sweeps for logs whose newest message expired.
const SWEEP_EVERY: u64 = 1024;

impl MemoryHistory {
    pub(crate) fn new(settings: HistorySettings) -> MemoryHistory {
        MemoryHistory {
            settings,
            prefix: random_prefix(),
            logs_made: AtomicU64::new(0),
            logs: Mutex::new(Logs::default()),
        }
    }

    /// Keeps `payload` at `stream`'s next position and runs `then` with that position while
    /// the store is still locked, so that what `then` queues is in position order.
    pub(crate) fn append<T>(
        &self,
        stream: &str,
        payload: &str,
        then: impl FnOnce(&Position) -> T,
    ) -> (Position, T) {
        let now = Instant::now();
        let ttl = self.settings.ttl;
        let mut logs = lock(&self.logs);
        logs.appends += 1;
        if logs.appends.is_multiple_of(SWEEP_EVERY) {
            logs.by_stream
                .retain(|_, log| now.duration_since(log.touched) < ttl);
        }
        let log = match logs.by_stream.get_mut(stream) {
            Some(log) => log,
            None => {
                let n = self.logs_made.fetch_add(1, Ordering::Relaxed);
                let epoch: Arc<str> = Arc::from(format!("{}{n:x}", self.prefix));
                logs.by_stream.entry(Arc::from(stream)).or_insert(Log {
                    epoch,
                    last: 0,
                    entries: VecDeque::new(),
                    touched: now,
                })
            }
        };
        log.expire(now, ttl);
        log.last += 1;
        log.touched = now;
        let position = Position {
            epoch: log.epoch.clone(),
            offset: log.last,
        };
        log.entries.push_back((
            now,
            Kept {
                position: position.clone(),
                unix_secs: unix_now(),
                payload: Arc::from(payload),
            },
        ));
        while log.entries.len() > self.settings.limit {
            log.entries.pop_front();
        }
        let out = then(&position);
        (position, out)
    }

    pub(crate) fn after(&self, stream: &str, epoch: &str, offset: u64) -> Option<Vec<Kept>> {
        let now = Instant::now();
        let mut logs = lock(&self.logs);
        let log = logs.by_stream.get_mut(stream)?;
        if &*log.epoch != epoch || offset > log.last {
            return None;
        }
        log.expire(now, self.settings.ttl);
        if offset == log.last {
            return Some(Vec::new());
        }
        // The first message the client misses must still be here.
        let first = log.entries.front()?.1.position.offset;
        if offset + 1 < first {
            return None;
        }
        Some(
            log.entries
                .iter()
                .filter(|(_, k)| k.position.offset > offset)
                .map(|(_, k)| k.clone())
                .collect(),
        )
    }

    pub(crate) fn since(&self, stream: &str, unix_secs: u64) -> Vec<Kept> {
        let now = Instant::now();
        let mut logs = lock(&self.logs);
        let Some(log) = logs.by_stream.get_mut(stream) else {
            return Vec::new();
        };
        log.expire(now, self.settings.ttl);
        log.entries
            .iter()
            .filter(|(_, k)| k.unix_secs >= unix_secs)
            .map(|(_, k)| k.clone())
            .collect()
    }

    #[cfg(test)]
    fn log_count(&self) -> usize {
        lock(&self.logs).by_stream.len()
    }
}

impl fmt::Debug for MemoryHistory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryHistory")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Four letters that differ between process starts (AnyCable's epochs are 4-character nano
/// ids): the clock's nanoseconds and the process id, hashed by the standard library's randomly
/// keyed hasher.
fn random_prefix() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.write_u32(std::process::id());
    let mut n = hasher.finish();
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut out = String::with_capacity(5);
    for _ in 0..4 {
        out.push(char::from(ALPHABET[(n % ALPHABET.len() as u64) as usize]));
        n /= ALPHABET.len() as u64;
    }
    out.push('-');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(limit: usize, ttl_secs: u64) -> MemoryHistory {
        MemoryHistory::new(HistorySettings::new(limit, Duration::from_secs(ttl_secs)))
    }

    fn offsets(kept: &[Kept]) -> Vec<u64> {
        kept.iter().map(|k| k.position.offset).collect()
    }

    #[tokio::test]
    async fn offsets_count_per_stream_and_replay_starts_after_the_position() {
        let h = store(100, 300);
        let (a1, ()) = h.append("a", "1", |_| ());
        let (a2, ()) = h.append("a", "2", |_| ());
        let (b1, ()) = h.append("b", "1", |_| ());
        assert_eq!((a1.offset, a2.offset, b1.offset), (1, 2, 1));
        assert_ne!(a1.epoch, b1.epoch, "each log has an epoch of its own");
        assert_eq!(offsets(&h.after("a", &a1.epoch, 1).unwrap()), vec![2]);
        assert_eq!(offsets(&h.after("a", &a1.epoch, 0).unwrap()), vec![1, 2]);
        assert!(h.after("a", &a1.epoch, 2).unwrap().is_empty(), "up to date");
        assert!(
            h.after("a", &a1.epoch, 3).is_none(),
            "a position never given"
        );
        assert!(h.after("a", "other", 1).is_none(), "unknown epoch");
        assert!(h.after("nope", &a1.epoch, 1).is_none(), "a stream not kept");
        assert_eq!(&*h.after("a", &a1.epoch, 1).unwrap()[0].payload, "2");
    }

    #[tokio::test]
    async fn the_limit_evicts_and_an_evicted_position_is_refused() {
        let h = store(3, 300);
        let mut epoch = None;
        for n in 1..=5 {
            epoch = Some(h.append("s", &n.to_string(), |_| ()).0.epoch);
        }
        let epoch = epoch.unwrap();
        // 3, 4, 5 are kept: a client at 2 misses only kept ones; one at 1 missed 2 for good.
        assert_eq!(offsets(&h.after("s", &epoch, 2).unwrap()), vec![3, 4, 5]);
        assert!(h.after("s", &epoch, 1).is_none());
        assert_eq!(offsets(&h.since("s", 0)), vec![3, 4, 5]);
    }

    #[tokio::test(start_paused = true)]
    async fn messages_expire_after_the_ttl_and_an_idle_log_gets_a_new_epoch() {
        let h = store(100, 10);
        let first = h.append("s", "1", |_| ()).0;
        tokio::time::advance(Duration::from_secs(6)).await;
        h.append("s", "2", |_| ());
        tokio::time::advance(Duration::from_secs(5)).await;
        // 1 expired, 2 has not.
        assert!(h.after("s", &first.epoch, 0).is_none());
        assert_eq!(offsets(&h.after("s", &first.epoch, 1).unwrap()), vec![2]);
        assert_eq!(offsets(&h.since("s", 0)), vec![2]);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(h.since("s", 0).is_empty());
        // The sweep drops logs idle past the TTL; one made again starts a new epoch.
        for _ in 0..SWEEP_EVERY {
            h.append("other", "x", |_| ());
        }
        assert_eq!(h.log_count(), 1);
        let again = h.append("s", "3", |_| ()).0;
        assert_eq!(again.offset, 1);
        assert_ne!(again.epoch, first.epoch);
        assert!(h.after("s", &first.epoch, 2).is_none());
    }

    #[test]
    fn epochs_differ_between_stores() {
        let a = store(1, 1).append("s", "1", |_| ()).0;
        let b = store(1, 1).append("s", "1", |_| ()).0;
        assert_ne!(a.epoch, b.epoch);
    }
}
