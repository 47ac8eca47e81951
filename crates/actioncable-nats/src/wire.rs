//! What goes over NATS: subjects for streams (the reversible token mapping), the headers our
//! messages carry (publish time, history position), the handling of one received message, and
//! AnyCable's broadcast format. No I/O here.

use actioncable::pubsub::{Inbound, Position};
use async_nats::HeaderMap;
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The first token(s) of every subject of ours, unless configured otherwise.
pub(crate) const DEFAULT_SUBJECT_PREFIX: &str = "action_cable";

/// The token between the prefix and a stream's token in its history subject:
/// `<prefix>.history.<token>`. Live subjects have one token after the prefix, history subjects
/// two, so no stream name can make the two meet.
pub(crate) const HISTORY_TOKEN: &str = "history";

/// The token of the subjects that only serve as a round trip to the server
/// (`<prefix>._sync.<nonce>`), which nobody subscribes to.
pub(crate) const SYNC_TOKEN: &str = "_sync";

/// The longest token a stream name is written as; a longer one is hashed instead.
pub(crate) const MAX_TOKEN: usize = 200;

/// The header with a sampled broadcast's publish time: nanoseconds since the Unix epoch.
pub(crate) const SENT_HEADER: &str = "Cable-Sent";
/// The header with a kept broadcast's epoch.
pub(crate) const EPOCH_HEADER: &str = "Cable-Epoch";
/// The header with the JetStream sequence of the message kept before this one in its stream
/// and epoch (0 for the first of an epoch).
pub(crate) const PREV_HEADER: &str = "Cable-Prev";
/// Set by JetStream on what it republishes: the message's sequence in the history stream.
pub(crate) const SEQUENCE_HEADER: &str = "Nats-Sequence";
/// Checked by JetStream: the sequence the subject's last message must have for the publish
/// to be accepted (0: the subject must have none).
pub(crate) const EXPECTED_LAST_HEADER: &str = "Nats-Expected-Last-Subject-Sequence";

/// Writes a stream name as one subject token, reversibly.
///
/// ASCII letters, digits and `-_:/=@+,` stay as they are (so `chat:lobby` and Rails'
/// `action_cable/<identifier>` are readable in `nats sub`); every other byte, `%` included, is
/// `%XX` (uppercase hex). The empty name is a lone `%`. A result longer than [`MAX_TOKEN`]
/// bytes is replaced by `#` and the hex SHA-256 of the name (65 bytes), which is not
/// reversible.
pub(crate) fn encode_token(name: &str) -> String {
    if name.is_empty() {
        return "%".to_owned();
    }
    let mut out = String::with_capacity(name.len());
    for &byte in name.as_bytes() {
        if kept_as_is(byte) {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
        if out.len() > MAX_TOKEN {
            return hashed_token(name);
        }
    }
    out
}

fn kept_as_is(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"-_:/=@+,".contains(&byte)
}

fn hashed_token(name: &str) -> String {
    let digest = Sha256::digest(name.as_bytes());
    let mut out = String::with_capacity(65);
    out.push('#');
    for byte in digest {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// The stream name of a token [`encode_token`] wrote; `None` for a hashed token or one it
/// cannot have written.
pub(crate) fn decode_token(token: &str) -> Option<String> {
    if token == "%" {
        return Some(String::new());
    }
    if token.starts_with('#') {
        return None;
    }
    let bytes = token.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = token.get(i + 1..i + 3)?;
                if hex.bytes().any(|b| b.is_ascii_lowercase()) {
                    return None;
                }
                let byte = u8::from_str_radix(hex, 16).ok()?;
                if kept_as_is(byte) {
                    return None;
                }
                out.push(byte);
                i += 3;
            }
            b if kept_as_is(b) => {
                out.push(b);
                i += 1;
            }
            _ => return None,
        }
    }
    String::from_utf8(out).ok()
}

/// Maps stream names to subjects: `<prefix>.<token>` for a stream, where the token is the
/// stream name (with the channel prefix in front as Rails writes it, `<channel_prefix>:<stream>`)
/// written by [`encode_token`].
#[derive(Debug, Clone)]
pub(crate) struct Naming {
    /// The subject prefix, e.g. `action_cable`.
    root: String,
    /// `"<channel prefix>:"`, or `None`.
    channel_prefix: Option<String>,
}

impl Naming {
    pub(crate) fn new(root: &str, channel_prefix: Option<&str>) -> Naming {
        Naming {
            root: root.to_owned(),
            channel_prefix: channel_prefix.map(|p| format!("{p}:")),
        }
    }

    /// The stream's name on the wire: the channel prefix and the stream, as Rails joins them.
    fn name<'a>(&self, stream: &'a str) -> Cow<'a, str> {
        match &self.channel_prefix {
            None => Cow::Borrowed(stream),
            Some(prefix) => Cow::Owned(format!("{prefix}{stream}")),
        }
    }

    /// The subject every node of the stream subscribes to: live broadcasts are published
    /// there, and JetStream republishes kept ones there.
    pub(crate) fn subject(&self, stream: &str) -> String {
        format!("{}.{}", self.root, encode_token(&self.name(stream)))
    }

    /// The subject a kept broadcast is published to, captured by the history stream.
    pub(crate) fn history_subject(&self, stream: &str) -> String {
        format!(
            "{}.{HISTORY_TOKEN}.{}",
            self.root,
            encode_token(&self.name(stream))
        )
    }

    /// The history stream's subjects (and what it republishes).
    pub(crate) fn history_filter(&self) -> String {
        format!("{}.{HISTORY_TOKEN}.*", self.root)
    }

    /// Where JetStream republishes a kept message: its stream's subject.
    pub(crate) fn republish_destination(&self) -> String {
        format!("{}.{{{{wildcard(1)}}}}", self.root)
    }

    /// The stream a subject of this naming names: `None` for another subject, a hashed token,
    /// or a name without the channel prefix.
    pub(crate) fn stream_of(&self, subject: &str) -> Option<String> {
        let token = subject.strip_prefix(&self.root)?.strip_prefix('.')?;
        if token.contains('.') {
            return None;
        }
        let name = decode_token(token)?;
        match &self.channel_prefix {
            None => Some(name),
            Some(prefix) => name.strip_prefix(prefix.as_str()).map(str::to_owned),
        }
    }

    /// A subject for one round trip to the server.
    pub(crate) fn sync_subject(&self, nonce: u64) -> String {
        format!("{}.{SYNC_TOKEN}.{nonce:x}", self.root)
    }
}

/// The value of the trace header for a broadcast made at `sent`.
pub(crate) fn sent_value(sent: SystemTime) -> String {
    sent.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos()
        .to_string()
}

/// Reads a trace header; `None` when it is malformed.
pub(crate) fn parse_sent(value: &str) -> Option<SystemTime> {
    let nanos: u64 = value.parse().ok()?;
    Some(UNIX_EPOCH + Duration::from_nanos(nanos))
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|v| v.as_str())
}

/// The position of a message that carries one: the epoch header and JetStream's sequence
/// (republished messages have both).
pub(crate) fn position_of(headers: &HeaderMap) -> Option<Position> {
    let epoch = header(headers, EPOCH_HEADER).filter(|e| !e.is_empty())?;
    let offset = header(headers, SEQUENCE_HEADER)?.parse().ok()?;
    Some(Position {
        epoch: Arc::from(epoch),
        offset,
    })
}

/// The epoch header of a kept message.
pub(crate) fn epoch_of(headers: &HeaderMap) -> Option<&str> {
    header(headers, EPOCH_HEADER).filter(|e| !e.is_empty())
}

/// The previous-sequence header of a kept message; `None` when missing or malformed.
pub(crate) fn prev_of(headers: &HeaderMap) -> Option<u64> {
    header(headers, PREV_HEADER)?.parse().ok()
}

/// Hands one message received on `stream`'s subject to the local subscribers: with its
/// position when JetStream republished it from the history, timed when it carries its publish
/// time.
pub(crate) fn deliver(
    inbound: &Inbound,
    stream: &str,
    payload: &[u8],
    headers: Option<&HeaderMap>,
) {
    let Ok(payload) = std::str::from_utf8(payload) else {
        tracing::error!(stream, "dropping a NATS message that is not UTF-8");
        return;
    };
    let position = headers.and_then(position_of);
    let sent = headers
        .and_then(|h| header(h, SENT_HEADER))
        .and_then(parse_sent);
    let reached = match sent {
        Some(sent) => inbound.deliver_traced(stream, payload, position.as_ref(), sent),
        None => inbound.deliver_at(stream, payload, position.as_ref()),
    };
    tracing::trace!(stream, reached, "delivered a NATS message");
}

/// The on-the-wire size of `headers` (as NATS counts it against `max_payload`): the
/// `NATS/1.0` line, each `name: value` line, and the blank line.
pub(crate) fn headers_len(headers: &HeaderMap) -> usize {
    let mut len = b"NATS/1.0\r\n\r\n".len();
    for (name, values) in headers.iter() {
        for value in values {
            len += AsRef::<str>::as_ref(name).len() + 2 + value.as_str().len() + 2;
        }
    }
    len
}

/// The subject AnyCable's broadcasters publish to unless configured otherwise (AnyCable's
/// `nats_channel`).
pub(crate) const ANYCABLE_SUBJECT: &str = "__anycable__";

/// One broadcast in AnyCable's format: `{"stream":…,"data":…,"meta":{…}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AnyBroadcast {
    pub(crate) stream: String,
    /// The JSON document to deliver.
    pub(crate) payload: String,
    /// `meta.exclude_socket` was set: AnyCable skips that socket; we cannot (see the crate
    /// docs).
    pub(crate) excludes_a_socket: bool,
}

/// A message on AnyCable's subject, read as `anycable-go` reads it
/// (`common.PubSubMessageFromJSON`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AnyCable {
    /// One broadcast, or a batch (a JSON array of them).
    Broadcasts(Vec<AnyBroadcast>),
    /// `{"command":"disconnect","payload":{"identifier":…,"reconnect":…}}`.
    Disconnect {
        /// The connection's identifiers as AnyCable sends them: a JSON object.
        identifier: String,
        reconnect: bool,
    },
    /// Another remote command; AnyCable itself knows only `disconnect`.
    Command(String),
    /// Not a message AnyCable would act on.
    Malformed(&'static str),
}

/// Reads a message of AnyCable's subject. As `anycable-go`: an object with a non-empty
/// `stream` is a broadcast, an array whose first element has one is a batch, any other object
/// is a remote command. `data` is a string holding the JSON to send (AnyCable's broadcasters
/// encode it); data that is not JSON is sent as a JSON string, as AnyCable does, and data that
/// is not a string at all is taken as the JSON document itself (AnyCable drops such messages).
pub(crate) fn parse_anycable(bytes: &[u8]) -> AnyCable {
    let Ok(value) = serde_json::from_slice::<Value>(bytes) else {
        return AnyCable::Malformed("not JSON");
    };
    match value {
        Value::Object(object) => {
            if let Some(broadcast) = broadcast_of(&object) {
                return AnyCable::Broadcasts(vec![broadcast]);
            }
            let command = object
                .get("command")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if command != "disconnect" {
                return AnyCable::Command(command.to_owned());
            }
            let payload = object.get("payload");
            let identifier = payload
                .and_then(|p| p.get("identifier"))
                .and_then(Value::as_str);
            match identifier {
                Some(identifier) => AnyCable::Disconnect {
                    identifier: identifier.to_owned(),
                    reconnect: payload
                        .and_then(|p| p.get("reconnect"))
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                },
                None => AnyCable::Malformed("a disconnect command without an identifier"),
            }
        }
        Value::Array(items) => {
            let first_is_a_broadcast = items
                .first()
                .and_then(Value::as_object)
                .and_then(broadcast_of)
                .is_some();
            if !first_is_a_broadcast {
                return AnyCable::Malformed("an array that is not a batch of broadcasts");
            }
            AnyCable::Broadcasts(
                items
                    .iter()
                    .filter_map(Value::as_object)
                    .filter_map(broadcast_of)
                    .collect(),
            )
        }
        _ => AnyCable::Malformed("neither a broadcast nor a command"),
    }
}

fn broadcast_of(object: &serde_json::Map<String, Value>) -> Option<AnyBroadcast> {
    let stream = object.get("stream")?.as_str().filter(|s| !s.is_empty())?;
    let payload = match object.get("data") {
        Some(Value::String(data)) => json_or_string(data),
        // Missing: Go's zero value, the empty string, sent as a JSON string.
        None | Some(Value::Null) => "\"\"".to_owned(),
        Some(other) => other.to_string(),
    };
    let excludes_a_socket = object
        .get("meta")
        .and_then(|m| m.get("exclude_socket"))
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty());
    Some(AnyBroadcast {
        stream: stream.to_owned(),
        payload,
        excludes_a_socket,
    })
}

/// `data` itself when it is a JSON document, else `data` as a JSON string.
fn json_or_string(data: &str) -> String {
    if serde_json::from_str::<serde::de::IgnoredAny>(data).is_ok() {
        data.to_owned()
    } else {
        Value::String(data.to_owned()).to_string()
    }
}

/// The Rails connection identifier of an AnyCable identifier: the values of its JSON object
/// (strings as they are, other values as JSON, nulls left out), sorted and joined with `:`,
/// as Rails' `connection_identifier` joins a connection's `identified_by` values. An
/// identifier that is not a JSON object is taken as it is.
pub(crate) fn connection_identifier(anycable_identifier: &str) -> String {
    match serde_json::from_str::<serde_json::Map<String, Value>>(anycable_identifier) {
        Ok(map) => {
            let mut values: Vec<String> = map
                .into_iter()
                .filter_map(|(_, v)| match v {
                    Value::Null => None,
                    Value::String(s) => Some(s),
                    other => Some(other.to_string()),
                })
                .collect();
            values.sort_unstable();
            values.join(":")
        }
        Err(_) => anycable_identifier.to_owned(),
    }
}

/// Rails' internal stream of a connection identifier, which every identified connection
/// listens to for remote disconnects.
pub(crate) fn internal_stream(connection_identifier: &str) -> String {
    format!("action_cable/{connection_identifier}")
}

/// Rails' remote disconnect message, as `CableHandle::remote_disconnect` publishes it.
pub(crate) fn disconnect_message(reconnect: bool) -> String {
    format!(r#"{{"type":"disconnect","reconnect":{reconnect}}}"#)
}

/// What is logged only once per adapter about AnyCable messages we cannot honour fully.
#[derive(Debug, Default)]
pub(crate) struct Notices {
    command: AtomicBool,
    exclude_socket: AtomicBool,
    malformed: AtomicBool,
}

impl Notices {
    fn first(flag: &AtomicBool) -> bool {
        !flag.swap(true, Ordering::Relaxed)
    }
}

/// Hands one message of AnyCable's subject to the local subscribers; returns how many
/// subscriptions it reached.
pub(crate) fn deliver_anycable(inbound: &Inbound, notices: &Notices, bytes: &[u8]) -> usize {
    match parse_anycable(bytes) {
        AnyCable::Broadcasts(broadcasts) => {
            let mut reached = 0;
            for b in broadcasts {
                if b.excludes_a_socket && Notices::first(&notices.exclude_socket) {
                    tracing::warn!(
                        stream = b.stream,
                        "an AnyCable broadcast asks to exclude a socket (`to_others`); this \
                         node cannot tell which, and sends it to every subscriber (logged once)"
                    );
                }
                reached += inbound.deliver(&b.stream, &b.payload);
            }
            reached
        }
        AnyCable::Disconnect {
            identifier,
            reconnect,
        } => {
            let stream = internal_stream(&connection_identifier(&identifier));
            let reached = inbound.deliver(&stream, &disconnect_message(reconnect));
            tracing::debug!(reached, "AnyCable remote disconnect");
            reached
        }
        AnyCable::Command(command) => {
            if Notices::first(&notices.command) {
                tracing::warn!(
                    command,
                    "ignoring an AnyCable remote command other than `disconnect` (logged once)"
                );
            }
            0
        }
        AnyCable::Malformed(why) => {
            if Notices::first(&notices.malformed) {
                tracing::warn!(
                    why,
                    "ignoring a message on the AnyCable subject that AnyCable would not act on \
                     (logged once)"
                );
            }
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_keep_readable_names_and_escape_the_rest() {
        assert_eq!(encode_token("chat:lobby"), "chat:lobby");
        assert_eq!(
            encode_token("action_cable/Z2lkOi8vYXBwL1VzZXIvMQ=="),
            "action_cable/Z2lkOi8vYXBwL1VzZXIvMQ=="
        );
        assert_eq!(encode_token("a b.c*d>e"), "a%20b%2Ec%2Ad%3Ee");
        assert_eq!(encode_token("100%"), "100%25");
        assert_eq!(encode_token("é"), "%C3%A9");
        assert_eq!(encode_token(""), "%");
        assert_eq!(encode_token("\t\r\n"), "%09%0D%0A");
    }

    #[test]
    fn tokens_round_trip_and_are_valid_subject_tokens() {
        for name in [
            "chat:lobby",
            "a b",
            "a.b",
            "*",
            ">",
            "%41",
            "",
            "日本語 🎉",
            "x#y",
            "trailing.",
            "..",
        ] {
            let token = encode_token(name);
            assert_eq!(decode_token(&token).as_deref(), Some(name), "{name:?}");
            assert!(
                !token.is_empty()
                    && token
                        .bytes()
                        .all(|b| b.is_ascii_graphic() && !b".*>".contains(&b)),
                "{token:?}"
            );
        }
        // Only what encode_token writes decodes.
        for bad in ["a b", "%4", "%zz", "%41", "%2e", "a.b", "#00"] {
            assert_eq!(decode_token(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn long_names_are_hashed() {
        let name = "n".repeat(MAX_TOKEN);
        assert_eq!(encode_token(&name), name, "at the limit: as is");
        let longer = "n".repeat(MAX_TOKEN + 1);
        let token = encode_token(&longer);
        assert_eq!(token.len(), 65);
        assert!(token.starts_with('#'));
        assert_eq!(decode_token(&token), None);
        // 67 two-byte characters escape to 402 bytes: hashed, and distinct names stay apart.
        let a = encode_token(&"é".repeat(67));
        let b = encode_token(&"è".repeat(67));
        assert!(a.starts_with('#') && b.starts_with('#') && a != b);
    }

    #[test]
    fn subjects_carry_the_prefixes() {
        let n = Naming::new("action_cable", None);
        assert_eq!(n.subject("chat:lobby"), "action_cable.chat:lobby");
        assert_eq!(
            n.history_subject("chat lobby"),
            "action_cable.history.chat%20lobby"
        );
        assert_eq!(n.history_filter(), "action_cable.history.*");
        assert_eq!(n.republish_destination(), "action_cable.{{wildcard(1)}}");
        assert_eq!(n.sync_subject(255), "action_cable._sync.ff");
        let p = Naming::new("apps.cable", Some("myapp"));
        assert_eq!(p.subject("chat"), "apps.cable.myapp:chat");
        // A stream literally named like the history token stays a one-token subject.
        assert_eq!(n.subject("history"), "action_cable.history");
        for stream in ["chat:lobby", "a b.c", "", "é"] {
            assert_eq!(p.stream_of(&p.subject(stream)).as_deref(), Some(stream));
        }
        assert_eq!(p.stream_of("apps.cable.other:chat"), None, "another prefix");
        assert_eq!(n.stream_of("action_cable.history.x"), None);
        assert_eq!(n.stream_of("elsewhere.x"), None);
        assert_eq!(n.stream_of(&n.subject(&"x".repeat(300))), None, "hashed");
    }

    #[test]
    fn trace_values_round_trip_and_refuse_garbage() {
        let sent = UNIX_EPOCH + Duration::from_nanos(1_765_000_000_123_456_789);
        assert_eq!(sent_value(sent), "1765000000123456789");
        assert_eq!(parse_sent("1765000000123456789"), Some(sent));
        for bad in ["", "x", "-1", "1.5"] {
            assert_eq!(parse_sent(bad), None);
        }
    }

    #[test]
    fn positions_need_an_epoch_and_a_sequence() {
        let mut h = HeaderMap::new();
        h.insert(SEQUENCE_HEADER, "42");
        assert_eq!(position_of(&h), None);
        h.insert(EPOCH_HEADER, "Ab3dE6gH");
        h.insert(PREV_HEADER, "40");
        let p = position_of(&h).unwrap();
        assert_eq!((&*p.epoch, p.offset), ("Ab3dE6gH", 42));
        assert_eq!(prev_of(&h), Some(40));
        assert_eq!(headers_len(&h), 70);
    }

    /// What the `anycable` gem publishes, byte for byte (`BroadcastAdapters::Base`:
    /// `{stream:, data:, meta:}.compact.to_json`, a batch as a JSON array, and
    /// `broadcast_command`'s `{command:, payload:}.to_json`).
    #[test]
    fn anycable_messages_are_read_as_anycable_go_reads_them() {
        assert_eq!(
            parse_anycable(br#"{"stream":"chat_1","data":"{\"text\":\"hi\"}"}"#),
            AnyCable::Broadcasts(vec![AnyBroadcast {
                stream: "chat_1".into(),
                payload: r#"{"text":"hi"}"#.into(),
                excludes_a_socket: false,
            }])
        );
        let batch = br#"[{"stream":"a","data":"1"},{"stream":"b","data":"\"x\"","meta":{"exclude_socket":"s1"}}]"#;
        let AnyCable::Broadcasts(b) = parse_anycable(batch) else {
            panic!("a batch")
        };
        assert_eq!(
            b.iter()
                .map(|b| (b.stream.as_str(), b.payload.as_str(), b.excludes_a_socket))
                .collect::<Vec<_>>(),
            vec![("a", "1", false), ("b", "\"x\"", true)]
        );
        // Data that is not JSON goes out as a JSON string, as anycable-go's `ToReplyFor`.
        assert_eq!(
            parse_anycable(br#"{"stream":"s","data":"hello!"}"#),
            AnyCable::Broadcasts(vec![AnyBroadcast {
                stream: "s".into(),
                payload: r#""hello!""#.into(),
                excludes_a_socket: false,
            }])
        );
        assert_eq!(
            parse_anycable(
                br#"{"command":"disconnect","payload":{"identifier":"{\"current_user\":\"gid://app/User/1\",\"url\":\"anycable.io/cable\"}","reconnect":true}}"#
            ),
            AnyCable::Disconnect {
                identifier: r#"{"current_user":"gid://app/User/1","url":"anycable.io/cable"}"#
                    .into(),
                reconnect: true
            }
        );
        assert_eq!(
            parse_anycable(br#"{"command":"disconnect","payload":{"identifier":"42"}}"#),
            AnyCable::Disconnect {
                identifier: "42".into(),
                reconnect: false
            }
        );
        assert_eq!(
            parse_anycable(br#"{"command":"reload","payload":{}}"#),
            AnyCable::Command("reload".into())
        );
        assert!(matches!(parse_anycable(b"nope"), AnyCable::Malformed(_)));
        assert!(matches!(parse_anycable(b"[1,2]"), AnyCable::Malformed(_)));
        assert!(matches!(parse_anycable(b"\"s\""), AnyCable::Malformed(_)));
        // An empty stream is no broadcast: read as a command (with no name), as anycable-go.
        assert_eq!(
            parse_anycable(br#"{"stream":"","data":"1"}"#),
            AnyCable::Command(String::new())
        );
    }

    #[test]
    fn anycable_identifiers_map_to_rails_connection_identifiers() {
        assert_eq!(
            connection_identifier(r#"{"url":"anycable.io/cable","current_user":"Z2lk"}"#),
            "Z2lk:anycable.io/cable"
        );
        assert_eq!(
            connection_identifier(r#"{"user":"alice","n":7,"gone":null}"#),
            "7:alice"
        );
        assert_eq!(connection_identifier("42"), "42");
        assert_eq!(internal_stream("alice"), "action_cable/alice");
        assert_eq!(
            disconnect_message(false),
            r#"{"type":"disconnect","reconnect":false}"#
        );
    }
}
