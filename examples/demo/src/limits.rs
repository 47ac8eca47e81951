//! Rate limits: a small keyed token bucket (per client address for `POST /login`, per user for
//! `POST /notifications` and for storing chat messages).
//!
//! Each key gets a bucket of `per_minute` tokens that refills at `per_minute` tokens a minute;
//! a request takes one token, and when none is left it is refused with the time until the next
//! one (`Retry-After`). So a client may send a burst of `per_minute` requests, then one every
//! `60 / per_minute` seconds.
//!
//! Memory stays bounded: at most [`MAX_KEYS`] keys are tracked. When that many are, buckets that
//! have refilled completely are forgotten (a fresh bucket is the same thing), and if all are in
//! use an arbitrary one is dropped: its owner gets a fresh bucket, which only someone who holds
//! that many addresses or names can arrange, and they have that much capacity anyway.
//!
//! The limits are per node: several nodes behind a load balancer each allow the full rate.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most keys one limiter tracks at once.
pub const MAX_KEYS: usize = 100_000;

/// How long to wait before the next request is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub Duration);

impl RetryAfter {
    /// Whole seconds, rounded up, at least 1: the `Retry-After` header's value.
    pub fn secs(self) -> u64 {
        let d = self.0;
        (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// A token bucket per key. `per_minute == 0` turns the limit off.
#[derive(Debug)]
pub struct RateLimiter<K> {
    per_minute: u32,
    max_keys: usize,
    state: Mutex<State<K>>,
}

#[derive(Debug)]
struct State<K> {
    buckets: HashMap<K, Bucket>,
    last_prune: Option<Instant>,
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    /// `per_minute` requests a minute per key, in bursts of up to `per_minute`; 0: no limit.
    pub fn per_minute(per_minute: u32) -> RateLimiter<K> {
        RateLimiter::with_max_keys(per_minute, MAX_KEYS)
    }

    /// The same, tracking at most `max_keys` keys (tests use a small number).
    pub fn with_max_keys(per_minute: u32, max_keys: usize) -> RateLimiter<K> {
        RateLimiter {
            per_minute,
            max_keys: max_keys.max(1),
            state: Mutex::new(State {
                buckets: HashMap::new(),
                last_prune: None,
            }),
        }
    }

    /// The configured rate (0: no limit).
    pub fn limit(&self) -> u32 {
        self.per_minute
    }

    /// Takes a token for `key` now, or says how long until one is available.
    ///
    /// # Errors
    /// [`RetryAfter`] when `key` has used up its bucket.
    pub fn check(&self, key: &K) -> Result<(), RetryAfter> {
        self.check_at(key, Instant::now())
    }

    /// [`check`](Self::check) at a given instant (for tests).
    ///
    /// # Errors
    /// As [`check`](Self::check).
    pub fn check_at(&self, key: &K, now: Instant) -> Result<(), RetryAfter> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let capacity = f64::from(self.per_minute);
        let per_sec = capacity / 60.0;
        // Only arithmetic happens under the lock; a poisoned lock still holds valid buckets.
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if !state.buckets.contains_key(key) && state.buckets.len() >= self.max_keys {
            self.make_room(&mut state, now, per_sec, capacity);
        }
        let bucket = state.buckets.entry(key.clone()).or_insert(Bucket {
            tokens: capacity,
            updated: now,
        });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_sec).min(capacity);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) / per_sec;
            Err(RetryAfter(Duration::from_secs_f64(wait)))
        }
    }

    /// Number of keys tracked now.
    pub fn tracked_keys(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .buckets
            .len()
    }

    fn make_room(&self, state: &mut State<K>, now: Instant, per_sec: f64, capacity: f64) {
        // Forgetting full buckets costs a pass over all of them: at most once a minute.
        let due = state
            .last_prune
            .is_none_or(|at| now.saturating_duration_since(at) >= Duration::from_secs(60));
        if due {
            state.last_prune = Some(now);
            state.buckets.retain(|_, b| {
                let elapsed = now.saturating_duration_since(b.updated).as_secs_f64();
                b.tokens + elapsed * per_sec < capacity
            });
        }
        if state.buckets.len() >= self.max_keys
            && let Some(victim) = state.buckets.keys().next().cloned()
        {
            state.buckets.remove(&victim);
        }
    }
}

/// The rate-limit key for a client address: the address itself for IPv4, its /64 network for
/// IPv6 (one host usually holds a whole /64, so counting single addresses would let it rotate).
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(segments.into())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_refill_rate() {
        let limiter = RateLimiter::per_minute(3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.check_at(&"a", t0), Ok(()));
        }
        let refused = limiter.check_at(&"a", t0).unwrap_err();
        // One token every 20 s.
        assert_eq!(refused.secs(), 20);
        // Other keys are not affected.
        assert_eq!(limiter.check_at(&"b", t0), Ok(()));
        // 10 s later: half a token, 10 s to go.
        assert_eq!(
            limiter
                .check_at(&"a", t0 + Duration::from_secs(10))
                .unwrap_err()
                .secs(),
            10
        );
        assert_eq!(limiter.check_at(&"a", t0 + Duration::from_secs(20)), Ok(()));
        assert!(
            limiter
                .check_at(&"a", t0 + Duration::from_secs(20))
                .is_err()
        );
        // A long pause refills the bucket, but never beyond the burst.
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..3 {
            assert_eq!(limiter.check_at(&"a", later), Ok(()));
        }
        assert!(limiter.check_at(&"a", later).is_err());
    }

    #[test]
    fn zero_means_no_limit() {
        let limiter = RateLimiter::per_minute(0);
        let t0 = Instant::now();
        for _ in 0..10_000 {
            assert_eq!(limiter.check_at(&1, t0), Ok(()));
        }
        assert_eq!(limiter.tracked_keys(), 0);
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(RetryAfter(Duration::from_millis(1)).secs(), 1);
        assert_eq!(RetryAfter(Duration::from_millis(1001)).secs(), 2);
        assert_eq!(RetryAfter(Duration::from_secs(3)).secs(), 3);
        assert_eq!(RetryAfter(Duration::ZERO).secs(), 1);
    }

    #[test]
    fn the_number_of_keys_stays_bounded() {
        let limiter = RateLimiter::with_max_keys(2, 100);
        let t0 = Instant::now();
        for key in 0..1000 {
            limiter.check_at(&key, t0).unwrap();
            assert!(limiter.tracked_keys() <= 100);
        }
        // Once their buckets have refilled, old keys are forgotten to make room.
        let later = t0 + Duration::from_secs(120);
        limiter.check_at(&5000, later).unwrap();
        assert_eq!(limiter.tracked_keys(), 1);
    }

    #[test]
    fn a_key_in_use_keeps_its_bucket_while_there_is_room() {
        let limiter = RateLimiter::<String>::with_max_keys(1, 10);
        let t0 = Instant::now();
        limiter.check_at(&"busy".to_owned(), t0).unwrap();
        for key in 0..5 {
            limiter.check_at(&key.to_string(), t0).unwrap();
        }
        assert!(limiter.check_at(&"busy".to_owned(), t0).is_err());
    }

    #[test]
    fn ipv6_clients_are_counted_per_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(other));
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(client_key(v4), v4);
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(client_key(mapped), v4);
    }
}
