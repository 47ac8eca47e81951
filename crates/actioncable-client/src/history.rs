//! The extended protocol's memory (feature `ext`): the session to resume, and where each
//! subscription stands in its streams, so that after a reconnect the server can send what was
//! missed.
//!
//! The rules are `@anycable/core`'s (`action_cable_ext/index.js`), which this project's server
//! answers (`docs/reliability.md`):
//!
//! - `welcome` may carry a `sid`; the next socket asks to resume it
//!   (`X-ANYCABLE-RESTORE-SID`). A server `disconnect` forgets it: that session is over.
//! - every positioned message (`stream_id`, `epoch`, `offset`) moves its stream's position and
//!   ties the stream to the subscription it came for;
//! - `since` starts as the consumer's start and follows the server's pings;
//! - a `subscribe` carries `history: {since, streams: {stream: {epoch, offset}}}` with the
//!   subscription's streams; a resumed session (`restored: true`) gets a `history` command for
//!   each subscription it kept instead of a `subscribe`.

use crate::wire::Position;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The `history` key of a `subscribe` or `history` command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct HistoryRequest {
    /// Unix seconds: messages kept since then, for streams without a position.
    since: u64,
    /// The subscription's streams and their positions.
    streams: BTreeMap<String, StreamPosition>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct StreamPosition {
    epoch: String,
    offset: u64,
}

/// What the consumer remembers across sockets.
#[derive(Debug)]
pub(crate) struct History {
    sid: Option<String>,
    since: u64,
    positions: HashMap<String, StreamPosition>,
    streams_of: HashMap<String, BTreeSet<String>>,
}

impl History {
    pub(crate) fn new(now_unix: u64) -> History {
        History {
            sid: None,
            since: now_unix,
            positions: HashMap::new(),
            streams_of: HashMap::new(),
        }
    }

    /// The session to ask for on the next socket.
    pub(crate) fn sid(&self) -> Option<&str> {
        self.sid.as_deref()
    }

    /// A `welcome`'s session id (a new one each socket).
    pub(crate) fn welcome(&mut self, sid: Option<String>) {
        self.sid = sid;
    }

    /// A server `disconnect`: the session ends and cannot be resumed.
    pub(crate) fn forget_session(&mut self) {
        self.sid = None;
    }

    /// A ping: what is kept since now is what the consumer would miss from here on.
    pub(crate) fn ping(&mut self, at: u64) {
        self.since = at;
    }

    /// A positioned message for `identifier`.
    pub(crate) fn track(&mut self, identifier: &str, position: &Position<'_>) {
        let streams = self.streams_of.entry(identifier.to_owned()).or_default();
        if !streams.contains(position.stream.as_ref()) {
            streams.insert(position.stream.clone().into_owned());
        }
        let at = StreamPosition {
            epoch: position.epoch.clone().into_owned(),
            offset: position.offset,
        };
        match self.positions.get_mut(position.stream.as_ref()) {
            Some(known) => *known = at,
            None => {
                self.positions
                    .insert(position.stream.clone().into_owned(), at);
            }
        }
    }

    /// The subscription is gone: its streams are not asked for any more.
    pub(crate) fn forget(&mut self, identifier: &str) {
        self.streams_of.remove(identifier);
    }

    /// What a (re)subscription of `identifier` asks for.
    pub(crate) fn request_for(&self, identifier: &str) -> HistoryRequest {
        let streams = self
            .streams_of
            .get(identifier)
            .into_iter()
            .flatten()
            .filter_map(|stream| {
                self.positions
                    .get(stream)
                    .map(|at| (stream.clone(), at.clone()))
            })
            .collect();
        HistoryRequest {
            since: self.since,
            streams,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(stream: &str, epoch: &str, offset: u64) -> Position<'static> {
        Position {
            stream: stream.to_owned().into(),
            epoch: epoch.to_owned().into(),
            offset,
        }
    }

    #[test]
    fn a_request_carries_the_subscriptions_streams_and_since() {
        let mut h = History::new(1_700_000_000);
        let empty = serde_json::to_string(&h.request_for("a")).unwrap();
        assert_eq!(empty, r#"{"since":1700000000,"streams":{}}"#);
        h.track("a", &at("chat:1", "e1", 1));
        h.track("a", &at("chat:1", "e1", 2));
        h.track("b", &at("other", "e2", 9));
        h.ping(1_700_000_030);
        assert_eq!(
            serde_json::to_string(&h.request_for("a")).unwrap(),
            r#"{"since":1700000030,"streams":{"chat:1":{"epoch":"e1","offset":2}}}"#
        );
        h.forget("a");
        assert!(h.request_for("a").streams.is_empty());
        assert_eq!(h.request_for("b").streams.len(), 1);
    }

    #[test]
    fn a_session_lasts_until_a_server_disconnect() {
        let mut h = History::new(0);
        assert_eq!(h.sid(), None);
        h.welcome(Some("s1".into()));
        assert_eq!(h.sid(), Some("s1"));
        h.forget_session();
        assert_eq!(h.sid(), None);
    }
}
