//! The connection monitor: when a connection counts as stale, and when to try again.
//!
//! A port of `connection_monitor.js` (rails/rails, `actioncable/app/javascript/action_cable/`),
//! kept free of I/O and of the clock (every method takes `now`, the random draw is an argument)
//! so that its numbers are unit-tested exactly:
//!
//! - every message from the server counts as a sign of life (`recordMessage`, Rails 7.2+);
//! - the connection is stale when nothing arrived for more than `staleThreshold` = 6 s, two of
//!   the server's 3 s pings (`connectionIsStale`);
//! - the monitor polls at `staleThreshold × (1 + rate)^min(attempts, 10) × (1 + jitter)` with
//!   `reconnectionBackoffRate` = 0.15 and `jitter` uniform in `[0, 1)` while `attempts` is 0,
//!   in `[0, 0.15)` after (`getPollInterval`): 6–12 s while healthy, at most about 24.3 s ×
//!   1.15 ≈ 27.9 s;
//! - a poll that finds the connection stale counts an attempt and reopens it, unless it was
//!   disconnected less than `staleThreshold` ago (`reconnectIfStale`, `disconnectedRecently`);
//! - a `welcome` resets the attempts (`recordConnect`).

use std::time::Duration;
use tokio::time::Instant;

/// `ConnectionMonitor.staleThreshold`: 6 s, two of the server's 3 s pings.
pub const STALE_THRESHOLD: Duration = Duration::from_secs(6);
/// `ConnectionMonitor.reconnectionBackoffRate`: each failed attempt polls 15 % later.
pub const RECONNECTION_BACKOFF_RATE: f64 = 0.15;
/// `Connection.reopenDelay`: 500 ms between closing a stale socket and opening the next.
pub const REOPEN_DELAY: Duration = Duration::from_millis(500);
/// `SubscriptionGuarantor`'s retry: an unconfirmed `subscribe` is sent again every 500 ms.
pub const SUBSCRIBE_RETRY: Duration = Duration::from_millis(500);
/// The attempts after which the backoff stops growing (`Math.min(this.reconnectAttempts, 10)`).
pub(crate) const MAX_BACKOFF_ATTEMPTS: u32 = 10;

/// The consumer's timings; [`Default`] is the stock consumer's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Timing {
    pub(crate) stale_threshold: Duration,
    pub(crate) backoff_rate: f64,
    pub(crate) reopen_delay: Duration,
    pub(crate) subscribe_retry: Duration,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            stale_threshold: STALE_THRESHOLD,
            backoff_rate: RECONNECTION_BACKOFF_RATE,
            reopen_delay: REOPEN_DELAY,
            subscribe_retry: SUBSCRIBE_RETRY,
        }
    }
}

/// What a poll decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Poll {
    /// The connection is fresh: nothing to do.
    Fresh,
    /// Stale, but disconnected too recently to reopen yet (an attempt is counted anyway).
    Wait,
    /// Stale: reopen it.
    Reopen,
}

/// The monitor's state (`ConnectionMonitor`'s fields).
#[derive(Debug)]
pub(crate) struct Monitor {
    timing: Timing,
    started_at: Instant,
    running: bool,
    /// The last message from the server (`pingedAt`).
    message_at: Option<Instant>,
    disconnected_at: Option<Instant>,
    attempts: u32,
}

impl Monitor {
    /// A running monitor (`start`).
    pub(crate) fn start(timing: Timing, now: Instant) -> Monitor {
        Monitor {
            timing,
            started_at: now,
            running: true,
            message_at: None,
            disconnected_at: None,
            attempts: 0,
        }
    }

    pub(crate) fn timing(&self) -> &Timing {
        &self.timing
    }

    /// `stop`: no more polls, no more reconnecting.
    pub(crate) fn stop(&mut self) {
        self.running = false;
    }

    /// `isRunning`: whether the consumer will reconnect.
    pub(crate) fn is_running(&self) -> bool {
        self.running
    }

    /// Failed attempts since the last welcome (`reconnectAttempts`).
    pub(crate) fn attempts(&self) -> u32 {
        self.attempts
    }

    /// `recordMessage`: any message from the server.
    pub(crate) fn record_message(&mut self, now: Instant) {
        self.message_at = Some(now);
    }

    /// `recordConnect`: a welcome.
    pub(crate) fn record_connect(&mut self) {
        self.attempts = 0;
        self.disconnected_at = None;
    }

    /// `recordDisconnect`: an open socket closed.
    pub(crate) fn record_disconnect(&mut self, now: Instant) {
        self.disconnected_at = Some(now);
    }

    /// `getPollInterval`, `random` drawn uniformly from `[0, 1)`.
    pub(crate) fn poll_interval(&self, random: f64) -> Duration {
        let rate = self.timing.backoff_rate;
        let exponent = self.attempts.min(MAX_BACKOFF_ATTEMPTS);
        let backoff = (1.0 + rate).powi(exponent as i32);
        let jitter_max = if self.attempts == 0 { 1.0 } else { rate };
        let jitter = jitter_max * random.clamp(0.0, 1.0);
        self.timing
            .stale_threshold
            .mul_f64(backoff * (1.0 + jitter))
    }

    /// `connectionIsStale`: nothing for more than the threshold, counted from the last message,
    /// or from the start when there was none.
    pub(crate) fn is_stale(&self, now: Instant) -> bool {
        let since = self.message_at.unwrap_or(self.started_at);
        now.saturating_duration_since(since) > self.timing.stale_threshold
    }

    /// `disconnectedRecently`.
    fn disconnected_recently(&self, now: Instant) -> bool {
        self.disconnected_at
            .is_some_and(|at| now.saturating_duration_since(at) < self.timing.stale_threshold)
    }

    /// `reconnectIfStale`, run at each poll.
    pub(crate) fn poll(&mut self, now: Instant) -> Poll {
        if !self.is_stale(now) {
            return Poll::Fresh;
        }
        self.attempts = self.attempts.saturating_add(1);
        if self.disconnected_recently(now) {
            Poll::Wait
        } else {
            Poll::Reopen
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    fn close(a: Duration, b: Duration) -> bool {
        a.abs_diff(b) < Duration::from_micros(10)
    }

    #[test]
    fn the_stock_consumers_numbers() {
        assert_eq!(STALE_THRESHOLD, secs(6.0));
        assert_eq!(RECONNECTION_BACKOFF_RATE, 0.15);
        assert_eq!(REOPEN_DELAY, Duration::from_millis(500));
        assert_eq!(SUBSCRIBE_RETRY, Duration::from_millis(500));
    }

    #[test]
    fn healthy_polls_come_every_6_to_12_seconds() {
        let m = Monitor::start(Timing::default(), Instant::now());
        assert!(close(m.poll_interval(0.0), secs(6.0)));
        assert!(close(m.poll_interval(0.5), secs(9.0)));
        assert!(close(m.poll_interval(0.999_999), secs(11.999_994)));
    }

    #[test]
    fn failed_attempts_back_off_by_15_percent_with_15_percent_jitter_up_to_10() {
        let now = Instant::now();
        let mut m = Monitor::start(Timing::default(), now);
        let mut at = now;
        for attempt in 1..=12u32 {
            at += secs(100.0);
            assert_eq!(m.poll(at), Poll::Reopen);
            assert_eq!(m.attempts(), attempt);
            let backoff = 1.15f64.powi(attempt.min(10) as i32);
            assert!(close(m.poll_interval(0.0), secs(6.0 * backoff)));
            assert!(close(m.poll_interval(1.0), secs(6.0 * backoff * 1.15)));
        }
        // The cap: 6 × 1.15^10 × 1.15 ≈ 27.9 s.
        assert!(close(m.poll_interval(1.0), secs(6.0 * 1.15f64.powi(11))));
        assert!((m.poll_interval(1.0).as_secs_f64() - 27.9).abs() < 0.05);
        m.record_connect();
        assert_eq!(m.attempts(), 0);
        assert!(close(m.poll_interval(0.0), secs(6.0)));
    }

    #[test]
    fn stale_after_six_seconds_without_a_message() {
        let start = Instant::now();
        let mut m = Monitor::start(Timing::default(), start);
        // Counted from the start until the first message.
        assert!(!m.is_stale(start + secs(6.0)));
        assert!(m.is_stale(start + secs(6.001)));
        m.record_message(start + secs(5.0));
        assert!(!m.is_stale(start + secs(11.0)));
        assert!(m.is_stale(start + secs(11.001)));
        assert_eq!(m.poll(start + secs(10.0)), Poll::Fresh);
        assert_eq!(m.attempts(), 0);
    }

    #[test]
    fn a_recent_disconnect_waits_but_counts_the_attempt() {
        let start = Instant::now();
        let mut m = Monitor::start(Timing::default(), start);
        m.record_message(start);
        m.record_disconnect(start + secs(3.0));
        assert_eq!(m.poll(start + secs(7.0)), Poll::Wait);
        assert_eq!(m.attempts(), 1);
        assert_eq!(m.poll(start + secs(9.0)), Poll::Reopen);
        assert_eq!(m.attempts(), 2);
        // A welcome forgets the disconnect.
        m.record_connect();
        m.record_disconnect(start + secs(20.0));
        m.record_connect();
        assert_eq!(m.poll(start + secs(21.0)), Poll::Reopen);
    }

    #[test]
    fn stop_ends_reconnecting() {
        let mut m = Monitor::start(Timing::default(), Instant::now());
        assert!(m.is_running());
        m.stop();
        assert!(!m.is_running());
    }
}
