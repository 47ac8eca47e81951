//! [`Backoff`]: how long an adapter waits before reconnecting to its server, shared by every
//! adapter (Redis, PostgreSQL) so they back off alike.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher as _, Hasher as _};
use std::time::Duration;

/// Exponential backoff with jitter for an adapter's reconnections: `min`, doubling up to `max`;
/// each delay is drawn from `[d/2, d]`, so nodes that lost the same server do not come back in
/// step.
///
/// ```
/// use actioncable::pubsub::Backoff;
/// use std::time::Duration;
/// let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
/// let first = backoff.next_delay();
/// assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
/// ```
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
    max: Duration,
    random: RandomState,
    draws: u64,
}

impl Backoff {
    /// Starts at `min` (at least 1 ms), capped at `max`.
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            next: min.max(Duration::from_millis(1)),
            max: max.max(min),
            random: RandomState::new(),
            draws: 0,
        }
    }

    /// The delay before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let full = self.next.min(self.max);
        self.next = full.saturating_mul(2).min(self.max);
        self.draws += 1;
        let mut hasher = self.random.build_hasher();
        hasher.write_u64(self.draws);
        // A uniform fraction in [0, 1) from the hash.
        let fraction = (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64;
        full / 2 + full.mul_f64(fraction / 2.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let mut ceiling = Duration::from_millis(100);
        let mut delays = Vec::new();
        for _ in 0..12 {
            let d = b.next_delay();
            assert!(
                d >= ceiling / 2 && d <= ceiling,
                "{d:?} not in [{ceiling:?}/2, {ceiling:?}]"
            );
            delays.push(d);
            ceiling = (ceiling * 2).min(Duration::from_secs(5));
        }
        assert!(delays[11] >= Duration::from_millis(2500));
        // Jitter: not all capped delays are equal.
        assert!(delays[8..].windows(2).any(|w| w[0] != w[1]), "{delays:?}");
    }
}
