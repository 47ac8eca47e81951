//! Stream history kept in JetStream: the stream's configuration, epochs, and the rules that
//! turn what JetStream holds into positions and replays. No I/O here (`adapter.rs` asks).
//!
//! One JetStream stream (default `ACTION_CABLE_HISTORY`) captures the subjects
//! `<prefix>.history.<token>`, one subject per broadcast stream, with `max_age` = the history
//! TTL and `max_msgs_per_subject` = the history limit. A kept broadcast is a JetStream publish
//! to its stream's history subject; its **offset is its JetStream sequence**, as AnyCable's
//! NATS broker uses the sequence (`broker/nats.go`). AnyCable keeps one JetStream stream per
//! broadcast stream (`_ac_<stream>`), so its sequences count each stream without gaps and one
//! epoch serves them all. One stream for all of them (stream names cannot hold every stream
//! name, and a JetStream stream per broadcast stream is never deleted) gives sequences that
//! rise in every broadcast stream but skip the others' messages, which the extended protocol
//! allows (a client only echoes positions back; the hub only compares them). What a gap hides
//! is told by two headers on every kept message:
//!
//! - `Cable-Prev`: the sequence of the stream's previous kept message (0 for the first of an
//!   epoch). The publish carries `Nats-Expected-Last-Subject-Sequence` with the same value, so
//!   JetStream refuses it if another message was kept meanwhile (the publisher reads the new
//!   last message and tries again): the kept messages of a stream form a chain, and a replay
//!   can tell whether a message after the client's position was evicted.
//! - `Cable-Epoch`: the stream's epoch, inherited along the chain; a publish that finds the
//!   stream holding nothing (never used, expired, or a new JetStream stream after the old one
//!   was lost) draws a fresh one, so a position from before is refused rather than matched
//!   against a restarted chain, as the memory store and Redis start a new epoch.
//!
//! JetStream republishes each kept message, once stored and in sequence order, to the
//! stream's ordinary subject (`RePublish`), with `Nats-Sequence` added: every node receives
//! it there on the subscription it already has, with its position.

use crate::wire::{self, EPOCH_HEADER, Naming};
use actioncable::PubSubError;
use actioncable::pubsub::{HistorySettings, Kept, Position};
use async_nats::jetstream::message::StreamMessage;
use async_nats::jetstream::stream::{Config, DiscardPolicy, Republish, StorageType};
use std::sync::Arc;
use std::time::Duration;

use crate::config::HistoryStorage;

/// JetStream's largest duplicate window by default; ours is never longer than the TTL
/// (JetStream refuses a window longer than `max_age`).
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// JetStream's shortest `max_age`.
const MIN_MAX_AGE: Duration = Duration::from_millis(100);

/// The history stream's configuration.
pub(crate) fn stream_config(
    naming: &Naming,
    name: &str,
    settings: &HistorySettings,
    storage: HistoryStorage,
    replicas: usize,
) -> Config {
    let max_age = settings.ttl.max(MIN_MAX_AGE);
    Config {
        name: name.to_owned(),
        description: Some("actioncable stream history (actioncable-nats)".to_owned()),
        subjects: vec![naming.history_filter()],
        max_age,
        max_messages_per_subject: i64::try_from(settings.limit.max(1)).unwrap_or(i64::MAX),
        discard: DiscardPolicy::Old,
        storage: match storage {
            HistoryStorage::File => StorageType::File,
            HistoryStorage::Memory => StorageType::Memory,
        },
        num_replicas: replicas.max(1),
        duplicate_window: DUPLICATE_WINDOW.min(max_age),
        republish: Some(Republish {
            source: naming.history_filter(),
            destination: naming.republish_destination(),
            headers_only: false,
        }),
        ..Config::default()
    }
}

/// A fresh epoch: eight characters from the standard library's randomly keyed hasher and the
/// clock (AnyCable's epochs are short random ids).
pub(crate) fn fresh_epoch() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    let mut n = hasher.finish();
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut out = String::with_capacity(8);
    for _ in 0..8 {
        out.push(char::from(ALPHABET[(n % ALPHABET.len() as u64) as usize]));
        n /= ALPHABET.len() as u64;
    }
    out
}

/// The head of a stream's chain: its last kept message's sequence and epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Head {
    pub(crate) sequence: u64,
    pub(crate) epoch: Arc<str>,
}

impl Head {
    /// The head of a stream whose last kept message is `message`; `None` for a message without
    /// an epoch (not kept by this adapter).
    pub(crate) fn of(message: &StreamMessage) -> Option<Head> {
        Some(Head {
            sequence: message.sequence,
            epoch: Arc::from(wire::epoch_of(&message.headers)?),
        })
    }
}

/// What a request for the messages after `epoch`/`offset` gets, from the stream's head alone.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum After {
    /// Refused: nothing kept, another epoch, or a position never given.
    Refused,
    /// The client has the newest message.
    UpToDate,
    /// Read on from the first kept message after the position.
    ReadOn,
}

/// The memory store's first rules: another or unknown epoch, or an offset past the newest,
/// is refused; the newest offset is up to date.
pub(crate) fn after_head(head: Option<&Head>, epoch: &str, offset: u64) -> After {
    match head {
        None => After::Refused,
        Some(head) if &*head.epoch != epoch || offset > head.sequence => After::Refused,
        Some(head) if offset == head.sequence => After::UpToDate,
        Some(_) => After::ReadOn,
    }
}

/// Whether `first`, the first kept message after the client's `offset`, follows on from what
/// the client has: same epoch, and the message before it in the chain is at or before
/// `offset` (otherwise one after the client's position was evicted, as the memory store's
/// "the first missed message must still be here").
pub(crate) fn continues(first: &StreamMessage, epoch: &str, offset: u64) -> bool {
    wire::epoch_of(&first.headers) == Some(epoch)
        && wire::prev_of(&first.headers).is_some_and(|prev| prev <= offset)
}

/// A kept message as the history hands it out.
pub(crate) fn kept(message: StreamMessage) -> Result<Kept, PubSubError> {
    let epoch = wire::epoch_of(&message.headers).ok_or_else(|| {
        PubSubError::Backend(
            format!(
                "history message {} has no {EPOCH_HEADER} header",
                message.sequence
            )
            .into(),
        )
    })?;
    let position = Position {
        epoch: Arc::from(epoch),
        offset: message.sequence,
    };
    let payload = std::str::from_utf8(&message.payload).map_err(|_| {
        PubSubError::Backend(format!("history message {} is not UTF-8", message.sequence).into())
    })?;
    Ok(Kept {
        position,
        unix_secs: u64::try_from(message.time.unix_timestamp()).unwrap_or(0),
        payload: Arc::from(payload),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::PREV_HEADER;
    use async_nats::HeaderMap;

    fn message(sequence: u64, epoch: &str, prev: u64) -> StreamMessage {
        let mut headers = HeaderMap::new();
        headers.insert(EPOCH_HEADER, epoch);
        headers.insert(PREV_HEADER, prev.to_string().as_str());
        StreamMessage {
            subject: "action_cable.history.s".into(),
            sequence,
            headers,
            payload: "{}".into(),
            time: time::OffsetDateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn the_head_decides_refusals_and_up_to_date() {
        let head = Head {
            sequence: 12,
            epoch: Arc::from("e"),
        };
        assert_eq!(after_head(None, "e", 3), After::Refused, "nothing kept");
        assert_eq!(after_head(Some(&head), "x", 3), After::Refused);
        assert_eq!(
            after_head(Some(&head), "e", 13),
            After::Refused,
            "never given"
        );
        assert_eq!(after_head(Some(&head), "e", 12), After::UpToDate);
        assert_eq!(after_head(Some(&head), "e", 9), After::ReadOn);
        assert_eq!(after_head(Some(&head), "e", 0), After::ReadOn);
    }

    #[test]
    fn a_chain_with_an_evicted_link_after_the_position_is_refused() {
        // Kept in stream "s": 3 (prev 0), 7 (prev 3), 9 (prev 7), 12 (prev 9); 3 and 7 evicted.
        let nine = message(9, "e", 7);
        assert!(
            continues(&nine, "e", 7),
            "the client has 7: 9 and 12 follow"
        );
        assert!(
            continues(&nine, "e", 8),
            "8 is none of the stream's: nothing missed"
        );
        assert!(!continues(&nine, "e", 3), "7 was evicted");
        assert!(!continues(&nine, "x", 7), "another epoch");
        let first = message(3, "e", 0);
        assert!(continues(&first, "e", 0), "from the start of the epoch");
        let mut bare = message(9, "e", 7);
        bare.headers = HeaderMap::new();
        assert!(!continues(&bare, "e", 7), "no chain headers: not ours");
    }

    #[test]
    fn the_stream_is_configured_from_the_settings() {
        let naming = Naming::new("action_cable", None);
        let settings = HistorySettings::new(100, Duration::from_secs(300));
        let config = stream_config(
            &naming,
            "ACTION_CABLE_HISTORY",
            &settings,
            HistoryStorage::File,
            1,
        );
        assert_eq!(config.subjects, vec!["action_cable.history.*"]);
        assert_eq!(config.max_age, Duration::from_secs(300));
        assert_eq!(config.max_messages_per_subject, 100);
        assert_eq!(config.duplicate_window, DUPLICATE_WINDOW);
        assert_eq!(config.storage, StorageType::File);
        let republish = config.republish.unwrap();
        assert_eq!(republish.source, "action_cable.history.*");
        assert_eq!(republish.destination, "action_cable.{{wildcard(1)}}");
        let short = stream_config(
            &naming,
            "X",
            &HistorySettings::new(3, Duration::from_millis(1500)),
            HistoryStorage::Memory,
            1,
        );
        assert_eq!(short.duplicate_window, Duration::from_millis(1500));
        assert_ne!(fresh_epoch(), fresh_epoch());
    }
}
