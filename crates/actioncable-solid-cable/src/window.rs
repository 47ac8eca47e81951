//! [`Window`]: which ids the poller still has to look at, so that a row whose id was taken
//! before a later row's but which commits after it (two publishers inserting at once) is still
//! delivered. No I/O.
//!
//! Ids are handed out in the order inserts start, but rows become visible in the order their
//! transactions commit. The gem polls `id > last id seen` and so never sees such a late row.
//! The poller here polls `id > low`, leaving out the ids it already handled above `low`, and
//! moves `low` up only to ids it has known for at least the *commit window*: by then every
//! insert that took a smaller id has committed (or never will), and a poll that started after
//! that moment has returned it.

use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

/// How many handled ids above `low` are kept at most. Each is listed in the poll query (to be
/// left out), so this bounds the query's size; past it, the oldest are settled early.
pub(crate) const MAX_HANDLED: usize = 4096;

/// The poller's view of the id sequence. See the module docs.
#[derive(Debug)]
pub(crate) struct Window {
    /// Every row with an id up to this one has been handled, or never will be.
    low: i64,
    /// Ids above `low` that the poller received (delivered or skipped), with when it first
    /// saw each.
    handled: BTreeMap<i64, Instant>,
    /// Ids known to be committed at the time given (the largest id when a stream was
    /// subscribed, a row this node inserted), which `low` may reach once the window passed.
    marks: BTreeMap<i64, Instant>,
    commit_window: Duration,
}

impl Window {
    /// Starts above `low`: the largest id when the poller started (nothing below it is for a
    /// stream subscribed later).
    pub(crate) fn new(low: i64, commit_window: Duration) -> Window {
        Window {
            low,
            handled: BTreeMap::new(),
            marks: BTreeMap::new(),
            commit_window,
        }
    }

    pub(crate) fn low(&self) -> i64 {
        self.low
    }

    /// The handled ids above `low`, which the next poll leaves out, in ascending order.
    pub(crate) fn handled(&self) -> impl ExactSizeIterator<Item = i64> + '_ {
        self.handled.keys().copied()
    }

    /// Takes the row `id` that a poll returned; `false` when it was handled before (or lies
    /// at or below `low`), so it must not be delivered again.
    pub(crate) fn take(&mut self, id: i64, now: Instant) -> bool {
        if id <= self.low || self.handled.contains_key(&id) {
            return false;
        }
        self.handled.insert(id, now);
        true
    }

    /// `id` was committed at `now` (whether or not it is a row of ours).
    pub(crate) fn mark(&mut self, id: i64, now: Instant) {
        if id > self.low {
            self.marks.entry(id).or_insert(now);
        }
    }

    /// After a poll that started at `started`: moves `low` up to the largest known id seen at
    /// least the commit window before `started`. `full_up_to` is the last id of a poll that
    /// returned a full batch (rows above it may not have been returned yet), `None` when the
    /// poll returned everything.
    pub(crate) fn settle(&mut self, started: Instant, full_up_to: Option<i64>) {
        let limit = full_up_to.unwrap_or(i64::MAX);
        let old_enough = |seen: &Instant| seen.checked_add(self.commit_window) <= Some(started);
        let settled = self
            .handled
            .iter()
            .chain(self.marks.iter())
            .filter(|(id, seen)| **id <= limit && old_enough(seen))
            .map(|(id, _)| *id)
            .max();
        if let Some(id) = settled {
            self.raise(id);
        }
        // Bound the exclusion list: settle the oldest handled ids early.
        if self.handled.len() > MAX_HANDLED {
            let excess = self.handled.len() - MAX_HANDLED;
            if let Some(id) = self.handled.keys().nth(excess - 1).copied() {
                self.raise(id.min(limit));
            }
        }
    }

    fn raise(&mut self, id: i64) {
        if id <= self.low {
            return;
        }
        self.low = id;
        self.handled = self.handled.split_off(&(id + 1));
        self.marks = self.marks.split_off(&(id + 1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Duration = Duration::from_secs(2);

    #[test]
    fn rows_are_taken_once_and_low_waits_for_the_window() {
        let t0 = Instant::now();
        let mut w = Window::new(10, W);
        assert!(!w.take(10, t0), "at low: old");
        assert!(w.take(12, t0));
        assert!(!w.take(12, t0), "twice");
        w.settle(t0 + Duration::from_secs(1), None);
        assert_eq!(w.low(), 10, "11 may still commit");
        assert_eq!(w.handled().collect::<Vec<_>>(), [12]);
        // A late 11 shows up and is taken.
        assert!(w.take(11, t0 + Duration::from_secs(1)));
        w.settle(t0 + W, None);
        assert_eq!(w.low(), 12);
        assert_eq!(w.handled().count(), 0);
        assert!(!w.take(11, t0 + W), "settled");
    }

    #[test]
    fn marks_move_low_without_rows_and_full_batches_hold_it() {
        let t0 = Instant::now();
        let mut w = Window::new(0, W);
        w.mark(100, t0);
        w.take(5, t0);
        w.settle(t0 + W, Some(5));
        assert_eq!(
            w.low(),
            5,
            "a full batch ending at 5: rows above it may be unread"
        );
        w.settle(t0 + W, None);
        assert_eq!(w.low(), 100);
        w.mark(50, t0 + W);
        w.settle(t0 + W * 3, None);
        assert_eq!(w.low(), 100, "never down");
    }

    #[test]
    fn the_exclusion_list_is_bounded() {
        let t0 = Instant::now();
        let mut w = Window::new(0, W);
        for id in 1..=(MAX_HANDLED as i64 + 10) {
            w.take(id, t0);
        }
        w.settle(t0, None);
        assert_eq!(w.handled().len(), MAX_HANDLED);
        assert_eq!(w.low(), 10);
    }
}
