//! The trace note: how an adapter whose backend has no message headers carries a sampled
//! broadcast's publish time to the other nodes (see [`PubSub::publish_traced`]).
//!
//! Redis pub/sub and PostgreSQL `NOTIFY` carry a channel name and a payload, nothing else, and
//! the payload is what Rails nodes and clients receive, so it cannot change. Such an adapter
//! sends a [`TraceNote`] on one extra channel ([`TRACE_CHANNEL`]) right before the payload, in
//! one atomic step, and the receiving side pairs it with the next message if that message is
//! on the channel the note names. Anything else after a note voids it: a note is a sample for
//! metrics, never a condition for delivery. One format for every such adapter keeps one
//! definition of "a publish time on the wire".
//!
//! [`PubSub::publish_traced`]: super::PubSub::publish_traced

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The one channel of trace notes. Never prefixed: each note names its stream's channel with
/// the prefix included, so two apps sharing a server never pair each other's notes. Rails nodes
/// do not listen to it.
pub const TRACE_CHANNEL: &str = "_action_cable_trace";

/// A sampled broadcast's publish time and the backend channel its payload goes to.
///
/// On the wire: `"<nanoseconds since the Unix epoch> <channel>"`.
///
/// ```
/// use actioncable::pubsub::TraceNote;
/// use std::time::{Duration, UNIX_EPOCH};
///
/// let sent = UNIX_EPOCH + Duration::from_nanos(1_765_000_000_123_456_789);
/// let note = TraceNote { channel: "myapp:chat lobby", sent };
/// assert_eq!(note.encode(), "1765000000123456789 myapp:chat lobby");
/// assert_eq!(TraceNote::parse(&note.encode()), Some(note));
/// assert_eq!(TraceNote::parse("soon chat"), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceNote<'a> {
    /// The backend channel (prefix included) of the payload the note goes with.
    pub channel: &'a str,
    /// When the broadcast was made, on the publishing node's wall clock.
    pub sent: SystemTime,
}

impl<'a> TraceNote<'a> {
    /// The note as sent on [`TRACE_CHANNEL`].
    pub fn encode(&self) -> String {
        let nanos = self
            .sent
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        format!("{nanos} {}", self.channel)
    }

    /// Reads a note; `None` when it is malformed.
    pub fn parse(note: &'a str) -> Option<TraceNote<'a>> {
        let (nanos, channel) = note.split_once(' ')?;
        let nanos: u64 = nanos.parse().ok()?;
        Some(TraceNote {
            channel,
            sent: UNIX_EPOCH + Duration::from_nanos(nanos),
        })
    }
}

/// The trace note just received on one backend connection, waiting for the message after it.
///
/// Feed it every message in arrival order: [`noted`](Self::noted) for a note, then
/// [`take_for`](Self::take_for) for the next message, which gets the publish time only when
/// the note named its channel.
#[derive(Debug, Default)]
pub struct PendingTrace {
    pending: Option<(String, SystemTime)>,
}

impl PendingTrace {
    /// A message arrived on [`TRACE_CHANNEL`]. A malformed note is ignored (and voids an
    /// earlier one).
    pub fn noted(&mut self, note: &str) {
        self.pending = TraceNote::parse(note).map(|n| (n.channel.to_owned(), n.sent));
    }

    /// Any other message arrived on `channel`: the publish time of the note just before it, if
    /// that note named `channel`. The pending note is consumed either way.
    pub fn take_for(&mut self, channel: &str) -> Option<SystemTime> {
        self.pending
            .take()
            .and_then(|(noted, sent)| (noted == channel).then_some(sent))
    }

    /// Puts back a note taken by [`take_for`](Self::take_for), for a message that comes in two
    /// parts (a position note, then its payload).
    pub fn keep(&mut self, channel: &str, sent: SystemTime) {
        self.pending = Some((channel.to_owned(), sent));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_round_trip_and_refuse_garbage() {
        let sent = UNIX_EPOCH + Duration::from_nanos(1_765_000_000_123_456_789);
        let note = TraceNote {
            channel: "demo:chat lobby",
            sent,
        };
        assert_eq!(TraceNote::parse(&note.encode()), Some(note));
        for bad in [
            "",
            "123",
            "x chat",
            "-1 chat",
            "99999999999999999999999 chat",
        ] {
            assert_eq!(TraceNote::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_note_goes_only_with_the_next_message_on_its_channel() {
        let sent = UNIX_EPOCH + Duration::from_secs(7);
        let note = TraceNote { channel: "a", sent }.encode();
        let mut pending = PendingTrace::default();
        pending.noted(&note);
        assert_eq!(pending.take_for("a"), Some(sent));
        assert_eq!(pending.take_for("a"), None, "one message per note");
        pending.noted(&note);
        assert_eq!(pending.take_for("b"), None, "another channel voids it");
        assert_eq!(pending.take_for("a"), None);
        pending.noted(&note);
        pending.noted("garbage");
        assert_eq!(
            pending.take_for("a"),
            None,
            "a malformed note voids the earlier one"
        );
    }
}
