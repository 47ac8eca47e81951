//! Presence: who is in a stream, kept by the adapter so that every node sees the same set.
//!
//! The model is AnyCable's (its `docs/presence.md`, `broker/memory.go`): a stream's presence is
//! a set of **members**, each named by an `id` the client (or the channel) chooses and carrying
//! an `info` value shown to the others. A member may be present through several
//! **records**, one per subscription that joined as it (two browser tabs of one person); it
//! joins with its first record and leaves with its last. Only those two moments are events,
//! and the adapter sends each to every node ([`Inbound::presence_event`]), where the fan-out
//! hands it to the stream's presence subscribers.
//!
//! A record is named by a *key* the server makes unique on its node (connection and
//! subscription); an adapter shared by several nodes makes it unique among them. When a node
//! dies without leaving, its records must not stay: an adapter shared by nodes keeps each
//! record only for [`PresenceSettings::ttl`] past its node's last sign of life, and every live
//! node keeps its own records alive. The grace period after a clean disconnect is the server's
//! business, not the adapter's (it calls [`Presence::leave`] when it is over).
//!
//! [`MemoryPresence`] is the in-process store: one node, nothing to expire.

use super::Inbound;
use crate::error::PubSubError;
use crate::sync::lock;
use async_trait::async_trait;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// One member of a stream's presence, as [`Presence::members`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceMember {
    /// Who: one per person, however many connections it has.
    pub id: String,
    /// What it joined with, as JSON text; `None` when it gave none.
    pub info: Option<String>,
}

/// A change of a stream's presence, as an adapter delivers it to every node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PresenceEvent<'a> {
    /// Member `id` has its first record: it joined, with `info` (JSON text).
    Join {
        /// The member.
        id: &'a str,
        /// Its info, as JSON text.
        info: Option<&'a str>,
    },
    /// Member `id` lost its last record: it left.
    Leave {
        /// The member.
        id: &'a str,
    },
}

/// How an adapter shared by several nodes keeps presence. Default: AnyCable's
/// `--presence_ttl`, 15 seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PresenceSettings {
    /// How long a record outlives its node's last sign of life: a node that dies (SIGKILL, a
    /// lost machine) takes its members with it within this time. In-process stores ignore it.
    pub ttl: Duration,
}

impl Default for PresenceSettings {
    fn default() -> Self {
        PresenceSettings {
            ttl: Duration::from_secs(15),
        }
    }
}

impl PresenceSettings {
    /// Settings with records kept `ttl` past their node's last sign of life.
    pub fn new(ttl: Duration) -> PresenceSettings {
        PresenceSettings { ttl }
    }
}

/// An adapter's presence state. Returned by [`PubSub::presence`](super::PubSub::presence).
///
/// For one `(stream, key)` the server never joins with two different ids (it refuses that
/// itself), and calls never overlap.
#[async_trait]
pub trait Presence: Send + Sync + fmt::Debug + 'static {
    /// Adds record `key` to `stream` as member `id` with `info` (JSON text). When `id` had no
    /// record there, sends [`PresenceEvent::Join`] to every node and returns `true`; joining
    /// again with a key already present changes nothing.
    async fn join(
        &self,
        stream: &str,
        key: &str,
        id: &str,
        info: Option<&str>,
    ) -> Result<bool, PubSubError>;

    /// Removes record `key` from `stream`. When it was its member's last, sends
    /// [`PresenceEvent::Leave`] to every node and returns `true`. An unknown key is not an
    /// error.
    async fn leave(&self, stream: &str, key: &str) -> Result<bool, PubSubError>;

    /// The members of `stream`, each once.
    async fn members(&self, stream: &str) -> Result<Vec<PresenceMember>, PubSubError>;
}

/// One stream's presence in a [`MemoryPresence`].
#[derive(Default)]
struct StreamPresence {
    /// Member id → its info and how many records it has.
    members: HashMap<String, (Option<String>, usize)>,
    /// Record key → member id.
    records: HashMap<String, String>,
}

/// The in-process presence store: one node's streams, events delivered straight to its
/// fan-out. `MemoryPubSub` answers [`PubSub::presence`](super::PubSub::presence) with it.
pub(crate) struct MemoryPresence {
    streams: Mutex<HashMap<String, StreamPresence>>,
    inbound: Arc<OnceLock<Inbound>>,
}

impl MemoryPresence {
    /// A store delivering its events through `inbound` once the adapter is started.
    pub(crate) fn new(inbound: Arc<OnceLock<Inbound>>) -> MemoryPresence {
        MemoryPresence {
            streams: Mutex::new(HashMap::new()),
            inbound,
        }
    }

    fn announce(&self, stream: &str, event: PresenceEvent<'_>) {
        if let Some(inbound) = self.inbound.get() {
            inbound.presence_event(stream, event);
        }
    }
}

#[async_trait]
impl Presence for MemoryPresence {
    async fn join(
        &self,
        stream: &str,
        key: &str,
        id: &str,
        info: Option<&str>,
    ) -> Result<bool, PubSubError> {
        let joined = {
            let mut streams = lock(&self.streams);
            let presence = streams.entry(stream.to_owned()).or_default();
            if presence.records.contains_key(key) {
                return Ok(false);
            }
            presence.records.insert(key.to_owned(), id.to_owned());
            let member = presence
                .members
                .entry(id.to_owned())
                .or_insert_with(|| (info.map(str::to_owned), 0));
            member.1 += 1;
            member.1 == 1
        };
        if joined {
            self.announce(stream, PresenceEvent::Join { id, info });
        }
        Ok(joined)
    }

    async fn leave(&self, stream: &str, key: &str) -> Result<bool, PubSubError> {
        let left = {
            let mut streams = lock(&self.streams);
            let Some(presence) = streams.get_mut(stream) else {
                return Ok(false);
            };
            let Some(id) = presence.records.remove(key) else {
                return Ok(false);
            };
            let last = match presence.members.get_mut(&id) {
                Some(member) if member.1 > 1 => {
                    member.1 -= 1;
                    false
                }
                _ => {
                    presence.members.remove(&id);
                    true
                }
            };
            if presence.records.is_empty() {
                streams.remove(stream);
            }
            last.then_some(id)
        };
        match left {
            Some(id) => {
                self.announce(stream, PresenceEvent::Leave { id: &id });
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn members(&self, stream: &str) -> Result<Vec<PresenceMember>, PubSubError> {
        let streams = lock(&self.streams);
        let Some(presence) = streams.get(stream) else {
            return Ok(Vec::new());
        };
        let mut members: Vec<PresenceMember> = presence
            .members
            .iter()
            .map(|(id, (info, _))| PresenceMember {
                id: id.clone(),
                info: info.clone(),
            })
            .collect();
        members.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(members)
    }
}

impl fmt::Debug for MemoryPresence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryPresence")
            .field("streams", &lock(&self.streams).len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> MemoryPresence {
        MemoryPresence::new(Arc::new(OnceLock::new()))
    }

    #[tokio::test]
    async fn a_member_joins_with_its_first_record_and_leaves_with_its_last() {
        let p = store();
        assert!(p.join("s", "1.1", "ann", Some(r#"{"n":1}"#)).await.unwrap());
        // A second tab: no event, still one member.
        assert!(!p.join("s", "2.1", "ann", Some(r#"{"n":2}"#)).await.unwrap());
        // The same record again: nothing.
        assert!(!p.join("s", "1.1", "ann", None).await.unwrap());
        assert!(p.join("s", "3.1", "bob", None).await.unwrap());
        let members = p.members("s").await.unwrap();
        assert_eq!(
            members,
            vec![
                PresenceMember {
                    id: "ann".into(),
                    info: Some(r#"{"n":1}"#.into())
                },
                PresenceMember {
                    id: "bob".into(),
                    info: None
                }
            ]
        );
        assert!(!p.leave("s", "1.1").await.unwrap());
        assert!(!p.leave("s", "1.1").await.unwrap());
        assert!(p.leave("s", "2.1").await.unwrap());
        assert!(p.leave("s", "3.1").await.unwrap());
        assert!(p.members("s").await.unwrap().is_empty());
        assert!(lock(&p.streams).is_empty(), "an empty stream is forgotten");
        assert!(!p.leave("nowhere", "x").await.unwrap());
    }
}
