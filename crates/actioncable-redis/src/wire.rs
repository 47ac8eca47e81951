//! What goes over Redis, in Rails' format: channel names and the handling of one message,
//! with the position notes that precede kept messages (see `history.rs`). No I/O here.

use actioncable::pubsub::{Inbound, PendingTrace, Position, PresenceEvent, TRACE_CHANNEL};
use std::borrow::Cow;
use std::sync::Arc;

/// The channel Rails' listener subscribes to first, as a sentinel. Never prefixed.
pub(crate) const INTERNAL_CHANNEL: &str = "_action_cable_internal";

/// Maps broadcasting names to Redis channel names and back (Rails' `ChannelPrefix`:
/// `[channel_prefix, channel].compact.join(":")`).
#[derive(Debug, Clone)]
pub(crate) struct Naming {
    /// `"<prefix>:"`, or `None` without a prefix.
    prefix: Option<String>,
}

impl Naming {
    pub(crate) fn new(channel_prefix: Option<&str>) -> Naming {
        Naming {
            prefix: channel_prefix.map(|p| format!("{p}:")),
        }
    }

    /// The Redis channel of `stream`. Borrows when there is no prefix.
    pub(crate) fn channel<'a>(&self, stream: &'a str) -> Cow<'a, str> {
        match &self.prefix {
            None => Cow::Borrowed(stream),
            Some(prefix) => {
                let mut channel = String::with_capacity(prefix.len() + stream.len());
                channel.push_str(prefix);
                channel.push_str(stream);
                Cow::Owned(channel)
            }
        }
    }

    /// The stream of a Redis channel, or `None` for a channel that is not ours (the internal
    /// channel, or a channel without our prefix).
    pub(crate) fn stream<'a>(&self, channel: &'a str) -> Option<&'a str> {
        if channel == INTERNAL_CHANNEL {
            return None;
        }
        match &self.prefix {
            None => Some(channel),
            Some(prefix) => channel.strip_prefix(prefix.as_str()),
        }
    }
}

/// What the side channel of a stream's position notes starts with (before the stream's
/// channel, prefix included).
pub(crate) const POSITION_CHANNEL: &str = "_action_cable_position:";

/// The side channel of `stream`'s position notes.
pub(crate) fn position_channel(naming: &Naming, stream: &str) -> String {
    format!("{POSITION_CHANNEL}{}", naming.channel(stream))
}

/// The one channel of presence events, for every stream (see `presence.rs`). Never prefixed:
/// each event names its stream's channel, prefix included.
pub(crate) const PRESENCE_CHANNEL: &str = "_action_cable_presence";

/// A presence event as the scripts publish it: `"<join|leave> <channel bytes> <id bytes>
/// <channel><id><info>"` (lengths in bytes; `info`, JSON, only for a join and only when the
/// member has one). Lengths rather than separators: channels, ids and info may hold anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PresenceNote<'a> {
    pub(crate) channel: &'a str,
    pub(crate) event: PresenceEvent<'a>,
}

/// Reads a presence event; `None` when it is malformed.
pub(crate) fn parse_presence(payload: &str) -> Option<PresenceNote<'_>> {
    let (kind, rest) = payload.split_once(' ')?;
    let (channel_len, rest) = rest.split_once(' ')?;
    let (id_len, rest) = rest.split_once(' ')?;
    let channel_len: usize = channel_len.parse().ok()?;
    let id_len: usize = id_len.parse().ok()?;
    let channel = rest.get(..channel_len)?;
    let rest = rest.get(channel_len..)?;
    let id = rest.get(..id_len)?;
    let info = rest.get(id_len..)?;
    let event = match kind {
        "join" => PresenceEvent::Join {
            id,
            info: (!info.is_empty()).then_some(info),
        },
        "leave" if info.is_empty() => PresenceEvent::Leave { id },
        _ => return None,
    };
    Some(PresenceNote { channel, event })
}

/// The note published before a kept payload.
pub(crate) fn parse_note(note: &str) -> Option<Position> {
    let (epoch, offset) = note.split_once(' ')?;
    Some(Position {
        epoch: Arc::from(epoch),
        offset: offset.parse().ok()?,
    })
}

/// Pairs a position note with the payload right after it, on one subscriber connection (a
/// new connection starts with nothing pending).
///
/// The publishing script sends the two back to back, so on a connection subscribed to both
/// channels of a stream the message after a note is its payload. Any other message after a
/// note voids it, so a note can never be paired with a later payload (a Rails node's).
#[derive(Default)]
pub(crate) struct Pairing {
    pending: Option<(String, Position)>,
    /// The trace note just received, for the payload right after it. Trace notes go to every
    /// node, so most are followed by another stream's message, or by none of this node's
    /// streams: any other message voids it, silently.
    trace: PendingTrace,
}

impl Pairing {
    /// A note for `stream` arrived.
    pub(crate) fn note(&mut self, stream: &str, position: Position) {
        if let Some((stale, _)) = self.pending.replace((stream.to_owned(), position)) {
            tracing::warn!(
                stream = stale,
                "a position note was not followed by its payload"
            );
        }
    }

    /// A payload for `stream` arrived: the position of the note just before it, if any.
    pub(crate) fn payload(&mut self, stream: &str) -> Option<Position> {
        match self.pending.take() {
            Some((noted, position)) if noted == stream => Some(position),
            Some((noted, _)) => {
                tracing::warn!(
                    stream = noted,
                    "a position note was not followed by its payload"
                );
                None
            }
            None => None,
        }
    }
}

/// Hands one received message to the local subscribers: a position note is held for the
/// payload that follows it, a payload goes out with the position of the note just before it
/// (none for a message Rails published). Both parts are borrowed from the decoded message.
pub(crate) fn deliver(
    naming: &Naming,
    inbound: &Inbound,
    pairing: &mut Pairing,
    channel: &[u8],
    payload: &[u8],
) {
    let Ok(channel) = std::str::from_utf8(channel) else {
        tracing::warn!(
            channel = %String::from_utf8_lossy(channel),
            "dropping a Redis message whose channel name is not UTF-8"
        );
        return;
    };
    if channel == TRACE_CHANNEL {
        pairing
            .trace
            .noted(std::str::from_utf8(payload).unwrap_or_default());
        return;
    }
    // Whatever follows a trace note takes it: its payload, or nothing.
    let sent = pairing
        .trace
        .take_for(channel.strip_prefix(POSITION_CHANNEL).unwrap_or(channel));
    if channel == PRESENCE_CHANNEL {
        let note = std::str::from_utf8(payload).ok().and_then(parse_presence);
        match note {
            Some(note) => {
                // Another app's stream (another prefix) is none of ours.
                if let Some(stream) = naming.stream(note.channel) {
                    let reached = inbound.presence_event(stream, note.event);
                    tracing::trace!(stream, reached, "delivered a presence event");
                }
            }
            None => tracing::warn!("ignoring a malformed presence event"),
        }
        return;
    }
    if let Some(noted) = channel.strip_prefix(POSITION_CHANNEL) {
        let stream = naming.stream(noted);
        let position = std::str::from_utf8(payload).ok().and_then(parse_note);
        match (stream, position) {
            (Some(stream), Some(position)) => {
                // A kept message's trace note comes before its position note: keep it for
                // the payload after both.
                if let Some(sent) = sent {
                    pairing.trace.keep(noted, sent);
                }
                pairing.note(stream, position);
            }
            _ => tracing::warn!(channel, "ignoring a malformed position note"),
        }
        return;
    }
    let Some(stream) = naming.stream(channel) else {
        tracing::trace!(
            channel,
            "ignoring a message on a channel that is not a stream"
        );
        return;
    };
    let position = pairing.payload(stream);
    match std::str::from_utf8(payload) {
        Ok(payload) => {
            let reached = match sent {
                Some(sent) => inbound.deliver_traced(stream, payload, position.as_ref(), sent),
                None => inbound.deliver_at(stream, payload, position.as_ref()),
            };
            tracing::trace!(stream, reached, "delivered a Redis message");
        }
        Err(e) => {
            tracing::error!(stream, error = %e, "dropping a Redis message that is not UTF-8");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_prefix_the_channel_is_the_broadcasting() {
        let n = Naming::new(None);
        assert!(matches!(
            n.channel("chat:lobby"),
            Cow::Borrowed("chat:lobby")
        ));
        assert_eq!(n.stream("chat:lobby"), Some("chat:lobby"));
        assert_eq!(n.stream(INTERNAL_CHANNEL), None);
    }

    #[test]
    fn prefix_is_joined_with_a_colon_like_rails() {
        let n = Naming::new(Some("app"));
        assert_eq!(n.channel("chat:lobby"), "app:chat:lobby");
        assert_eq!(n.stream("app:chat:lobby"), Some("chat:lobby"));
        assert_eq!(n.stream("other:chat:lobby"), None);
        assert_eq!(n.stream("app"), None);
        assert_eq!(n.stream(INTERNAL_CHANNEL), None);
        // Rails' `compact` drops only nil: an empty prefix still adds the colon.
        assert_eq!(Naming::new(Some("")).channel("s"), ":s");
    }

    #[test]
    fn notes_pair_with_the_next_payload_of_their_stream_only() {
        let mut p = Pairing::default();
        let at = parse_note("abcd 7").unwrap();
        assert_eq!((&*at.epoch, at.offset), ("abcd", 7));
        assert!(parse_note("abcd").is_none());
        assert!(parse_note("abcd x").is_none());
        p.note("a", at.clone());
        assert_eq!(p.payload("a"), Some(at.clone()));
        assert_eq!(p.payload("a"), None, "a Rails payload after it");
        // A note whose payload did not follow is void, even for a later payload of its stream.
        p.note("a", at);
        assert_eq!(p.payload("b"), None);
        assert_eq!(p.payload("a"), None);
    }

    #[test]
    fn presence_events_are_length_prefixed_and_anything_else_is_refused() {
        // 'é' is two bytes: a length that cuts it is refused.
        let join = "join 12 3 app:chat:a bidé{\"n\":1}";
        assert_eq!(parse_presence(join), None);
        let join = "join 12 4 app:chat:a bidé{\"n\":1}";
        assert_eq!(
            parse_presence(join),
            Some(PresenceNote {
                channel: "app:chat:a b",
                event: PresenceEvent::Join {
                    id: "idé",
                    info: Some("{\"n\":1}")
                }
            })
        );
        assert_eq!(
            parse_presence("join 1 1 sx").unwrap().event,
            PresenceEvent::Join {
                id: "x",
                info: None
            }
        );
        assert_eq!(
            parse_presence("leave 1 1 sx"),
            Some(PresenceNote {
                channel: "s",
                event: PresenceEvent::Leave { id: "x" }
            })
        );
        for bad in [
            "leave 1 1 sxy",
            "dance 1 1 sx",
            "join 9 1 sx",
            "join a 1 sx",
            "join",
        ] {
            assert_eq!(parse_presence(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_position_channel_carries_the_prefix() {
        let n = Naming::new(Some("app"));
        assert_eq!(
            position_channel(&n, "chat"),
            "_action_cable_position:app:chat"
        );
    }
}
