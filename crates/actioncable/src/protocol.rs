//! The ActionCable v1 JSON wire protocol, and AnyCable's extension of it: what the client sends
//! and what the server answers.
//!
//! Every wire string of the protocol lives in this module and nowhere else, so the rest of the
//! crate cannot drift from what the stock `@rails/actioncable` consumer expects. The module does
//! no I/O: decoding and encoding are plain functions, cheap to unit-test, property-test and fuzz.
//!
//! Two facts shape the API:
//!
//! * The consumer matches subscriptions by comparing the identifier **string** (`===`), so the
//!   identifier is kept byte-for-byte as the client sent it ([`Identifier::as_str`]) and echoed
//!   back unchanged. Its parsed form is only used to pick the channel and its params.
//! * `message.data` is a JSON document *encoded as a string* inside the command (the consumer
//!   calls `JSON.stringify` twice), so decoding a `message` yields that inner text as is.
//!
//! The extended protocol, `actioncable-v1-ext-json` (spoken by `@anycable/core`; AnyCable's
//! `docs/reliable_streams.md`, `common/common.go`, and the client's
//! `packages/core/action_cable_ext/index.js`), adds to the same frames: stream positions on
//! deliveries (`stream_id`, `epoch`, `offset`), a `history` request (a command of its own, or a
//! key of `subscribe`) answered by `confirm_history`/`reject_history`, `pong`, and presence: the
//! commands `join`, `leave` and `presence` (also a `presence` key of `subscribe`), answered by
//! `{"type":"presence",…}` frames (AnyCable's `docs/presence.md`, `node/node.go`, and the client's
//! `action_cable_ext/index.js`, `channel/presence.js`). A session decodes with
//! [`Command::decode`] or [`Command::decode_ext`] according to the protocol it negotiated, so a
//! plain client is answered exactly as before. `whisper` (AnyCable's client sends it with either
//! protocol) is decoded by both.
//!
//! The Server-Sent Events transport speaks neither: a request names one subscription in its
//! query and gets the frames back as events. What it asks for and what each frame becomes, as
//! AnyCable maps them, is [`sse`].
//!
//! ```
//! use actioncable::protocol::{Command, ServerMessage};
//!
//! let cmd = Command::decode(r#"{"command":"subscribe","identifier":"{\"channel\":\"ChatChannel\"}"}"#).unwrap();
//! assert!(matches!(cmd, Command::Subscribe { .. }));
//!
//! let frame = ServerMessage::Confirm { identifier: r#"{"channel":"ChatChannel"}"# }.encode();
//! assert_eq!(frame, r#"{"identifier":"{\"channel\":\"ChatChannel\"}","type":"confirm_subscription"}"#);
//! ```

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

pub mod sse;

/// The subprotocol the stock consumer offers first and the server selects.
pub const PROTOCOL: &str = "actioncable-v1-json";
/// AnyCable's extended protocol (`@anycable/core` with `protocol: 'actioncable-v1-ext-json'`):
/// the plain protocol plus stream positions and history.
pub const EXT_PROTOCOL: &str = "actioncable-v1-ext-json";
/// The marker protocol the consumer also offers; selected only when the client offers no
/// protocol this server speaks, which makes the consumer stop with "protocol unsupported".
pub const UNSUPPORTED_PROTOCOL: &str = "actioncable-unsupported";
/// The subprotocols this server can select, in order of preference: the extended protocol
/// whenever a client offers it, else the plain one (what the stock consumer offers first).
pub const PROTOCOLS: [&str; 3] = [EXT_PROTOCOL, PROTOCOL, UNSUPPORTED_PROTOCOL];
/// Body of the 404 Rails answers for a non-WebSocket request or a refused origin.
pub const PAGE_NOT_FOUND: &str = "Page not found";

/// A command from the client, decoded from one text frame.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command {
    /// `{"command":"subscribe","identifier":"…"}`
    Subscribe {
        /// The identifier exactly as sent.
        identifier: String,
    },
    /// `{"command":"unsubscribe","identifier":"…"}` (no reply is sent, as in Rails).
    Unsubscribe {
        /// The identifier exactly as sent.
        identifier: String,
    },
    /// `{"command":"message","identifier":"…","data":"<JSON text>"}`
    Message {
        /// The identifier exactly as sent.
        identifier: String,
        /// The inner JSON text carried as a string in `data`, not yet decoded.
        data: String,
    },
    /// Extended protocol only: `{"command":"history","identifier":"…","history":{…}}`, the
    /// messages a subscription missed.
    History {
        /// The identifier exactly as sent.
        identifier: String,
        /// What the client has already seen.
        request: HistoryRequest,
    },
    /// Extended protocol only: `{"command":"pong"}`, the answer to a ping (nothing to do: any
    /// frame proves the client alive).
    Pong,
    /// Extended protocol only: `{"command":"join","identifier":"…","presence":{"id":"…","info":…}}`,
    /// join the subscription's presence stream as member `id`.
    Join {
        /// The identifier exactly as sent.
        identifier: String,
        /// Who joins.
        presence: PresenceJoin,
    },
    /// Extended protocol only: `{"command":"leave","identifier":"…"}`, leave the subscription's
    /// presence stream.
    Leave {
        /// The identifier exactly as sent.
        identifier: String,
    },
    /// Extended protocol only: `{"command":"presence","identifier":"…","data":{}}`, who is in
    /// the subscription's presence stream (answered with an `info` frame).
    Presence {
        /// The identifier exactly as sent.
        identifier: String,
    },
    /// `{"command":"whisper","identifier":"…","data":{…}}`: `data` (a JSON value, not a string as
    /// in `message`) goes to the other subscribers of the subscription's whisper stream.
    Whisper {
        /// The identifier exactly as sent.
        identifier: String,
        /// `data` as JSON text.
        data: String,
    },
}

/// A presence `join`: the member's `id` (a string, as AnyCable's client sends `String(id)`) and
/// its `info`, any JSON value, shown to the others as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceJoin {
    /// The member: one per person, however many connections it has.
    pub id: String,
    /// JSON text; `None` when the client sent none (or `null`).
    pub info: Option<String>,
}

/// What an extended-protocol `subscribe` may carry beside its identifier: a `history` request
/// and a presence to join once confirmed (the client resubscribes with both after a reconnect).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Extras {
    /// Replay what the subscription missed.
    pub history: Option<HistoryRequest>,
    /// Join its presence stream.
    pub presence: Option<PresenceJoin>,
}

/// Where a client stands in one stream: the `epoch` and `offset` of the last message it got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamPosition {
    /// The stream (the `stream_id` the server sent).
    pub stream: String,
    /// The history's epoch the offset counts in.
    pub epoch: String,
    /// The offset of the last message seen.
    pub offset: u64,
}

/// A `history` request: the client's position per stream, and `since` (unix seconds) for the
/// streams it has no position for. AnyCable's Go comment calls `since` milliseconds, but its
/// client sends `Date.now() / 1000 | 0` and its memory broker compares it with `time.Now().Unix()`:
/// seconds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HistoryRequest {
    /// Messages kept at or after this unix time (seconds), for streams without a position.
    pub since: Option<u64>,
    /// Positions, in the order the client sent them.
    pub streams: Vec<StreamPosition>,
}

/// Why a frame could not be decoded as a [`Command`]. Rails logs these and sends nothing.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The frame is not JSON.
    #[error("frame is not JSON: {0}")]
    Json(String),
    /// The frame is JSON but not an object (an array, a string, …).
    #[error("frame is not a JSON object")]
    NotAnObject,
    /// The `command` field is missing or names no known command.
    #[error("unrecognized command {0:?}")]
    UnknownCommand(String),
    /// The `identifier` field is missing or not a string.
    #[error("`identifier` is missing or not a string")]
    MissingIdentifier,
    /// A `message` command whose `data` is missing or not a string.
    #[error("`data` is missing or not a string")]
    MissingData,
    /// A `history` (extended protocol) that is not `{since?, streams?: {stream: {epoch, offset}}}`.
    #[error("`history` is malformed")]
    BadHistory,
    /// A `join` (or a `subscribe`'s `presence`) that is not `{"id": "<string>", "info"?: …}`.
    #[error("`presence` is missing or malformed (an object with a string `id`)")]
    BadPresence,
}

/// The fields of a command frame that decoding reads: the frame is read once, without building
/// a `serde_json::Value` of the whole object (a map, a `String` per key) only to take two or
/// three strings out of it. A field that is a string (what the consumer sends) is decoded
/// straight from the frame; another value is parsed as a `Value`, as before, and so is any other
/// key's value, so a frame is accepted or refused exactly as when it was parsed whole (valid
/// escapes, numbers in range, nesting within serde_json's limit). Of a key given twice the last
/// counts, and `null` is absent, as in a parsed object (and in Rails' `JSON.parse`).
#[derive(Default)]
struct Fields<'de> {
    command: Option<Field<'de>>,
    identifier: Option<Field<'de>>,
    data: Option<Field<'de>>,
    history: Option<Field<'de>>,
    presence: Option<Field<'de>>,
}

/// One field's value; a string without escapes is borrowed from the frame.
enum Field<'de> {
    Str(Cow<'de, str>),
    Other(Value),
}

impl Field<'_> {
    fn into_string(self) -> Option<String> {
        match self {
            Field::Str(s) => Some(s.into_owned()),
            Field::Other(_) => None,
        }
    }

    fn into_value(self) -> Value {
        match self {
            Field::Str(s) => Value::String(s.into_owned()),
            Field::Other(v) => v,
        }
    }
}

impl<'de> Deserialize<'de> for Field<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Field<'de>, D::Error> {
        struct FieldVisitor;
        impl<'de> serde::de::Visitor<'de> for FieldVisitor {
            type Value = Field<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: serde::de::Error>(self, s: &'de str) -> Result<Field<'de>, E> {
                Ok(Field::Str(Cow::Borrowed(s)))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Field<'de>, E> {
                Ok(Field::Str(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E: serde::de::Error>(self, s: String) -> Result<Field<'de>, E> {
                Ok(Field::Str(Cow::Owned(s)))
            }
            fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<Field<'de>, E> {
                Ok(Field::Other(Value::Bool(b)))
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Field<'de>, E> {
                Ok(Field::Other(Value::from(n)))
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Field<'de>, E> {
                Ok(Field::Other(Value::from(n)))
            }
            fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<Field<'de>, E> {
                Ok(Field::Other(Value::from(n)))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                seq: A,
            ) -> Result<Field<'de>, A::Error> {
                let de = serde::de::value::SeqAccessDeserializer::new(seq);
                Value::deserialize(de).map(Field::Other)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Field<'de>, A::Error> {
                let de = serde::de::value::MapAccessDeserializer::new(map);
                Value::deserialize(de).map(Field::Other)
            }
        }
        deserializer.deserialize_any(FieldVisitor)
    }
}

/// A key of a command frame: one of the fields decoding reads, or another.
enum Key {
    Command,
    Identifier,
    Data,
    History,
    Presence,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Key, D::Error> {
        struct KeyVisitor;
        impl serde::de::Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            // Keys with escapes arrive unescaped here too: `"comm\u0061nd"` is `command`.
            fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<Key, E> {
                Ok(match key {
                    "command" => Key::Command,
                    "identifier" => Key::Identifier,
                    "data" => Key::Data,
                    "history" => Key::History,
                    "presence" => Key::Presence,
                    _ => Key::Other,
                })
            }
        }
        deserializer.deserialize_identifier(KeyVisitor)
    }
}

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Fields<'de>, D::Error> {
        struct FieldsVisitor;
        impl<'de> serde::de::Visitor<'de> for FieldsVisitor {
            type Value = Fields<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Fields<'de>, A::Error> {
                let mut fields = Fields::default();
                while let Some(key) = map.next_key::<Key>()? {
                    let slot = match key {
                        Key::Command => &mut fields.command,
                        Key::Identifier => &mut fields.identifier,
                        Key::Data => &mut fields.data,
                        Key::History => &mut fields.history,
                        Key::Presence => &mut fields.presence,
                        Key::Other => {
                            // Parsed, not skipped: what a parsed object refuses is refused.
                            map.next_value::<Value>()?;
                            continue;
                        }
                    };
                    // `null` reads as absent.
                    *slot = map.next_value::<Option<Field<'de>>>()?;
                }
                Ok(fields)
            }
        }
        deserializer.deserialize_map(FieldsVisitor)
    }
}

impl<'de> Fields<'de> {
    /// Reads a frame's fields; an error says what [`Command::decode`] reports.
    fn read(frame: &'de str) -> Result<Fields<'de>, DecodeError> {
        serde_json::from_str(frame).map_err(|e| match e.classify() {
            // Only the top level can have the wrong type: it is valid JSON, or not JSON at all.
            serde_json::error::Category::Data => match serde_json::from_str::<Value>(frame) {
                Ok(_) => DecodeError::NotAnObject,
                Err(e) => DecodeError::Json(e.to_string()),
            },
            _ => DecodeError::Json(e.to_string()),
        })
    }
}

impl Command {
    /// Decodes one text frame.
    ///
    /// # Errors
    /// Returns a [`DecodeError`] naming what is wrong with the frame; the caller logs it.
    pub fn decode(frame: &str) -> Result<Command, DecodeError> {
        Command::decode_as(frame, false).map(|(command, _)| command)
    }

    /// Decodes one text frame of the extended protocol: the plain commands, `history`, `pong`,
    /// the presence commands, and what a `subscribe` carries (`history`, `presence`), returned
    /// beside it.
    ///
    /// ```
    /// use actioncable::protocol::Command;
    /// let frame = r#"{"command":"subscribe","identifier":"{\"channel\":\"A\"}","history":{"since":1700000000,"streams":{"chat":{"epoch":"e1","offset":7}}}}"#;
    /// let (command, extras) = Command::decode_ext(frame).unwrap();
    /// assert!(matches!(command, Command::Subscribe { .. }));
    /// let history = extras.history.unwrap();
    /// assert_eq!(history.since, Some(1_700_000_000));
    /// assert_eq!((history.streams[0].epoch.as_str(), history.streams[0].offset), ("e1", 7));
    /// assert_eq!(Command::decode_ext(r#"{"command":"pong"}"#).unwrap().0, Command::Pong);
    /// // The plain protocol knows neither.
    /// assert!(Command::decode(r#"{"command":"pong"}"#).is_err());
    /// ```
    ///
    /// # Errors
    /// As [`decode`](Self::decode), [`DecodeError::BadHistory`] and [`DecodeError::BadPresence`].
    pub fn decode_ext(frame: &str) -> Result<(Command, Extras), DecodeError> {
        Command::decode_as(frame, true)
    }

    fn decode_as(frame: &str, ext: bool) -> Result<(Command, Extras), DecodeError> {
        let mut fields = Fields::read(frame)?;
        let command = match fields.command {
            Some(Field::Str(command)) => command,
            Some(Field::Other(other)) => {
                return Err(DecodeError::UnknownCommand(other.to_string()));
            }
            None => return Err(DecodeError::UnknownCommand(String::new())),
        };
        let identifier = fields.identifier.and_then(Field::into_string);
        let history = match fields.history {
            Some(value) if ext => Some(parse_history(value.into_value())?),
            _ => None,
        };
        let command = match &*command {
            "subscribe" => Command::Subscribe {
                identifier: identifier.ok_or(DecodeError::MissingIdentifier)?,
            },
            "unsubscribe" => Command::Unsubscribe {
                identifier: identifier.ok_or(DecodeError::MissingIdentifier)?,
            },
            "message" => {
                let identifier = identifier.ok_or(DecodeError::MissingIdentifier)?;
                match fields.data.and_then(Field::into_string) {
                    Some(data) => Command::Message { identifier, data },
                    None => return Err(DecodeError::MissingData),
                }
            }
            "history" if ext => {
                let identifier = identifier.ok_or(DecodeError::MissingIdentifier)?;
                let request = history.ok_or(DecodeError::BadHistory)?;
                return Ok((
                    Command::History {
                        identifier,
                        request,
                    },
                    Extras::default(),
                ));
            }
            "pong" if ext => return Ok((Command::Pong, Extras::default())),
            "join" if ext => Command::Join {
                identifier: identifier.ok_or(DecodeError::MissingIdentifier)?,
                presence: parse_presence(fields.presence.take().map(Field::into_value))?,
            },
            "leave" if ext => Command::Leave {
                identifier: identifier.ok_or(DecodeError::MissingIdentifier)?,
            },
            "presence" if ext => Command::Presence {
                identifier: identifier.ok_or(DecodeError::MissingIdentifier)?,
            },
            "whisper" => {
                let identifier = identifier.ok_or(DecodeError::MissingIdentifier)?;
                match fields.data {
                    // JSON text, compact whatever the client's spacing.
                    Some(data) => Command::Whisper {
                        identifier,
                        data: data.into_value().to_string(),
                    },
                    None => return Err(DecodeError::MissingData),
                }
            }
            _ => return Err(DecodeError::UnknownCommand(command.into_owned())),
        };
        if !matches!(command, Command::Subscribe { .. }) || !ext {
            return Ok((command, Extras::default()));
        }
        // A `subscribe` with a malformed `presence` is still a subscribe (AnyCable subscribes,
        // then logs the failed join): the presence is dropped, not the subscription.
        let presence = fields
            .presence
            .and_then(|p| parse_presence(Some(p.into_value())).ok());
        Ok((command, Extras { history, presence }))
    }

    /// The identifier the command is about (empty for `pong`).
    pub fn identifier(&self) -> &str {
        match self {
            Command::Subscribe { identifier }
            | Command::Unsubscribe { identifier }
            | Command::Message { identifier, .. }
            | Command::History { identifier, .. }
            | Command::Join { identifier, .. }
            | Command::Leave { identifier }
            | Command::Presence { identifier }
            | Command::Whisper { identifier, .. } => identifier,
            Command::Pong => "",
        }
    }
}

/// `{"id": "<string>", "info"?: <any JSON>}` (AnyCable's `common.PresenceEvent`: `id` is a Go
/// string, so a number is refused, as its decoder refuses it).
fn parse_presence(value: Option<Value>) -> Result<PresenceJoin, DecodeError> {
    let Some(Value::Object(mut map)) = value else {
        return Err(DecodeError::BadPresence);
    };
    let Some(Value::String(id)) = map.remove("id") else {
        return Err(DecodeError::BadPresence);
    };
    let info = match map.remove("info") {
        None | Some(Value::Null) => None,
        Some(info) => Some(info.to_string()),
    };
    Ok(PresenceJoin { id, info })
}

/// `{"since"?: unix seconds, "streams"?: {"<stream>": {"epoch": "…", "offset": n}}}`; anything
/// else is refused whole, as AnyCable's decoder does.
fn parse_history(value: Value) -> Result<HistoryRequest, DecodeError> {
    let Value::Object(mut map) = value else {
        return Err(DecodeError::BadHistory);
    };
    let since = match map.remove("since") {
        None | Some(Value::Null) => None,
        // The client sends whole seconds; a fraction is cut.
        Some(Value::Number(n)) => match (n.as_u64(), n.as_f64()) {
            (Some(s), _) => Some(s),
            (None, Some(f)) if f >= 0.0 && f.is_finite() => Some(f as u64),
            _ => return Err(DecodeError::BadHistory),
        },
        Some(_) => return Err(DecodeError::BadHistory),
    };
    let mut streams = Vec::new();
    match map.remove("streams") {
        None | Some(Value::Null) => {}
        Some(Value::Object(positions)) => {
            for (stream, position) in positions {
                let epoch = position.get("epoch").and_then(Value::as_str);
                let offset = position.get("offset").and_then(Value::as_u64);
                let (Some(epoch), Some(offset)) = (epoch, offset) else {
                    return Err(DecodeError::BadHistory);
                };
                streams.push(StreamPosition {
                    stream,
                    epoch: epoch.to_owned(),
                    offset,
                });
            }
        }
        Some(_) => return Err(DecodeError::BadHistory),
    }
    Ok(HistoryRequest { since, streams })
}

/// A subscription identifier: the exact string the client sent, plus its parsed params.
///
/// The string is what the consumer compares, so it is never re-serialized. Cloning is cheap
/// (one reference count), and the server shares one parse between the subscriptions that
/// use the same string.
#[derive(Clone)]
pub struct Identifier(Arc<Parsed>);

struct Parsed {
    raw: Arc<str>,
    params: Map<String, Value>,
    channel: Box<str>,
}

impl PartialEq for Identifier {
    fn eq(&self, other: &Identifier) -> bool {
        // The params are a function of the string.
        self.0.raw == other.0.raw
    }
}

/// Why an identifier cannot name a subscription.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdentifierError {
    /// The identifier is not JSON.
    #[error("identifier is not JSON")]
    NotJson,
    /// The identifier is JSON but not an object.
    #[error("identifier is not a JSON object")]
    NotAnObject,
    /// The identifier has no string `channel` key.
    #[error("identifier has no `channel`")]
    NoChannel,
}

impl Identifier {
    /// Parses the identifier string of a `subscribe` command.
    ///
    /// ```
    /// use actioncable::protocol::Identifier;
    /// let id = Identifier::parse(r#"{"channel":"ChatChannel","room":"lobby"}"#).unwrap();
    /// assert_eq!(id.channel_class(), "ChatChannel");
    /// assert_eq!(id.params()["room"], "lobby");
    /// assert!(Identifier::parse("[1]").is_err());
    /// ```
    ///
    /// # Errors
    /// Fails when the string is not a JSON object with a string `channel` key.
    pub fn parse(raw: &str) -> Result<Identifier, IdentifierError> {
        let value: Value = serde_json::from_str(raw).map_err(|_| IdentifierError::NotJson)?;
        let Value::Object(params) = value else {
            return Err(IdentifierError::NotAnObject);
        };
        let channel = match params.get("channel") {
            Some(Value::String(c)) => c.as_str().into(),
            _ => return Err(IdentifierError::NoChannel),
        };
        Ok(Identifier(Arc::new(Parsed {
            raw: Arc::from(raw),
            params,
            channel,
        })))
    }

    /// The identifier exactly as the client sent it.
    pub fn as_str(&self) -> &str {
        &self.0.raw
    }

    /// The channel class named by the identifier, e.g. `ChatChannel`.
    pub fn channel_class(&self) -> &str {
        &self.0.channel
    }

    /// All params, including `channel`.
    pub fn params(&self) -> &Map<String, Value> {
        &self.0.params
    }

    pub(crate) fn shared_str(&self) -> Arc<str> {
        self.0.raw.clone()
    }

    /// Whether anything holds this parse or its string beyond `parses` handles on the parse
    /// and `strings` on the string (the string's own handle in the parse included).
    pub(crate) fn used_beyond(&self, parses: usize, strings: usize) -> bool {
        Arc::strong_count(&self.0) > parses || Arc::strong_count(&self.0.raw) > strings
    }

    /// The same parse (not only an equal string).
    #[cfg(test)]
    pub(crate) fn same_as(&self, other: &Identifier) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl fmt::Debug for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Identifier").field(&self.0.raw).finish()
    }
}

impl fmt::Display for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.raw)
    }
}

/// Why the server closes a connection, sent as `reason` in a `disconnect` message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// `connect` rejected the connection (`reject_unauthorized_connection`).
    Unauthorized,
    /// The server is restarting or shutting down.
    ServerRestart,
    /// Disconnected on request from elsewhere (`remote_connections…disconnect`).
    Remote,
    /// The client did not read its messages fast enough (an AnyCable reason).
    TooSlow,
    /// Its identity already has `max_connections_per_identity` open connections.
    TooManyConnections,
    /// Its credential expired: at `connect` (a [`Reject::TokenExpired`](crate::Reject)), or
    /// during the connection, at its [`Identity::expiry`](crate::Identity::expiry) (an
    /// AnyCable reason; its client refreshes the token and reconnects).
    TokenExpired,
}

impl DisconnectReason {
    /// The wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            DisconnectReason::Unauthorized => "unauthorized",
            DisconnectReason::ServerRestart => "server_restart",
            DisconnectReason::Remote => "remote",
            DisconnectReason::TooSlow => "too_slow",
            DisconnectReason::TooManyConnections => "too_many_connections",
            DisconnectReason::TokenExpired => "token_expired",
        }
    }

    /// The reason a wire string names, if it is one of these.
    pub fn from_wire(reason: &str) -> Option<DisconnectReason> {
        [
            DisconnectReason::Unauthorized,
            DisconnectReason::ServerRestart,
            DisconnectReason::Remote,
            DisconnectReason::TooSlow,
            DisconnectReason::TooManyConnections,
            DisconnectReason::TokenExpired,
        ]
        .into_iter()
        .find(|r| r.as_str() == reason)
    }
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message from the server. [`ServerMessage::encode`] gives the frame text.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(untagged)]
#[non_exhaustive]
pub enum ServerMessage<'a> {
    /// `{"type":"welcome"}`, after a successful connect.
    Welcome {
        /// Always `"welcome"`.
        #[serde(rename = "type")]
        kind: Welcome,
    },
    /// `{"type":"ping","message":<unix seconds>}`, every beat.
    Ping {
        /// Always `"ping"`.
        #[serde(rename = "type")]
        kind: Ping,
        /// Unix time in whole seconds.
        message: u64,
    },
    /// `{"identifier":…,"type":"confirm_subscription"}`
    Confirm {
        /// The identifier exactly as sent.
        identifier: &'a str,
    },
    /// `{"identifier":…,"type":"reject_subscription"}`
    Reject {
        /// The identifier exactly as sent.
        identifier: &'a str,
    },
    /// `{"type":"disconnect","reason":…,"reconnect":…}`
    Disconnect {
        /// Always `"disconnect"`.
        #[serde(rename = "type")]
        kind: Disconnect,
        /// The reason's wire string.
        reason: &'a str,
        /// Whether the consumer should reconnect.
        reconnect: bool,
    },
    /// Extended protocol: `{"identifier":…,"type":"confirm_history"}`, after a history replay.
    ConfirmHistory {
        /// The identifier exactly as sent.
        identifier: &'a str,
    },
    /// Extended protocol: `{"identifier":…,"type":"reject_history"}`: the history asked for
    /// cannot be served (unknown epoch, evicted or expired).
    RejectHistory {
        /// The identifier exactly as sent.
        identifier: &'a str,
    },
    /// `{"identifier":…,"message":…}`: a `transmit` or a stream delivery.
    Data {
        /// The identifier exactly as sent.
        identifier: &'a str,
        /// The payload, already JSON.
        message: &'a RawValue,
    },
}

macro_rules! tag {
    ($name:ident, $s:literal) => {
        #[doc = concat!("The `\"", $s, "\"` tag.")]
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct $name;
        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str($s)
            }
        }
    };
}
tag!(Welcome, "welcome");
tag!(Ping, "ping");
tag!(Disconnect, "disconnect");

#[derive(Serialize)]
struct Typed<'a> {
    identifier: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
}

impl ServerMessage<'_> {
    /// `{"type":"welcome"}`
    pub const WELCOME: ServerMessage<'static> = ServerMessage::Welcome { kind: Welcome };

    /// A ping carrying `unix_seconds`.
    pub fn ping(unix_seconds: u64) -> ServerMessage<'static> {
        ServerMessage::Ping {
            kind: Ping,
            message: unix_seconds,
        }
    }

    /// A disconnect message.
    pub fn disconnect(reason: DisconnectReason, reconnect: bool) -> ServerMessage<'static> {
        ServerMessage::Disconnect {
            kind: Disconnect,
            reason: reason.as_str(),
            reconnect,
        }
    }

    /// The frame text.
    pub fn encode(&self) -> String {
        // Serializing these shapes cannot fail: every field is a string, a number, a bool or
        // already-valid JSON. The fallback keeps this function total anyway.
        let out = match self {
            ServerMessage::Confirm { identifier } => to_exact_string(&Typed {
                identifier,
                kind: "confirm_subscription",
            }),
            ServerMessage::Reject { identifier } => to_exact_string(&Typed {
                identifier,
                kind: "reject_subscription",
            }),
            ServerMessage::ConfirmHistory { identifier } => to_exact_string(&Typed {
                identifier,
                kind: "confirm_history",
            }),
            ServerMessage::RejectHistory { identifier } => to_exact_string(&Typed {
                identifier,
                kind: "reject_history",
            }),
            other => to_exact_string(other),
        };
        out.unwrap_or_default()
    }
}

/// The extended protocol's `welcome` (AnyCable's `common.Reply`): the session id a client
/// reconnects with to resume, and, for a resumed session, `"restored":true` with the
/// identifiers of the subscriptions it got back. The plain protocol's welcome is
/// [`ServerMessage::WELCOME`], unchanged.
pub fn encode_welcome_ext<I: AsRef<str>>(sid: &str, restored_ids: Option<&[I]>) -> String {
    #[derive(Serialize)]
    struct Welcome<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        sid: &'a str,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        restored: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        restored_ids: Option<Vec<&'a str>>,
    }
    let frame = Welcome {
        kind: "welcome",
        sid,
        restored: restored_ids.is_some(),
        restored_ids: restored_ids.map(|ids| ids.iter().map(AsRef::as_ref).collect()),
    };
    serde_json::to_string(&frame).unwrap_or_else(|_| String::from(r#"{"type":"welcome"}"#))
}

/// Each identified connection listens on `action_cable/<connection identifier>` (Rails'
/// `internal_channel`); a `{"type":"disconnect","reconnect":…}` published there closes it,
/// on whichever node it is (Rails' `remote_connections.where(…).disconnect`). Ours may add a
/// `reason` (what the client is told instead of `remote`); Rails nodes ignore the key.
///
/// ```
/// use actioncable::DisconnectReason;
/// use actioncable::protocol::{internal_stream, remote_disconnect_message, parse_internal_message};
/// assert_eq!(internal_stream("alice"), "action_cable/alice");
/// let msg = remote_disconnect_message(DisconnectReason::Remote, false);
/// assert_eq!(msg, r#"{"type":"disconnect","reconnect":false}"#);
/// assert_eq!(parse_internal_message(&msg), Some((DisconnectReason::Remote, false)));
/// // Rails 6.1 sends no `reconnect`: the default is to reconnect.
/// assert_eq!(parse_internal_message(r#"{"type":"disconnect"}"#), Some((DisconnectReason::Remote, true)));
/// assert_eq!(parse_internal_message(r#"{"type":"other"}"#), None);
/// let revoked = remote_disconnect_message(DisconnectReason::Unauthorized, false);
/// assert_eq!(revoked, r#"{"type":"disconnect","reconnect":false,"reason":"unauthorized"}"#);
/// assert_eq!(parse_internal_message(&revoked), Some((DisconnectReason::Unauthorized, false)));
/// // A reason this node does not know is `remote`.
/// assert_eq!(
///     parse_internal_message(r#"{"type":"disconnect","reason":"made_up"}"#),
///     Some((DisconnectReason::Remote, true))
/// );
/// ```
pub fn internal_stream(connection_identifier: &str) -> String {
    format!("action_cable/{connection_identifier}")
}

#[derive(Serialize, Deserialize)]
struct InternalMessage {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reconnect: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// The message that closes a connection through its internal stream, telling its client
/// `reason` (Rails' exact message for `remote`).
pub fn remote_disconnect_message(reason: DisconnectReason, reconnect: bool) -> String {
    let msg = InternalMessage {
        kind: "disconnect".into(),
        reconnect: Some(reconnect),
        reason: (reason != DisconnectReason::Remote).then(|| reason.as_str().to_owned()),
    };
    serde_json::to_string(&msg).unwrap_or_default()
}

/// `Some((reason, reconnect))` when `payload` asks the connection to disconnect.
pub fn parse_internal_message(payload: &str) -> Option<(DisconnectReason, bool)> {
    let msg: InternalMessage = serde_json::from_str(payload).ok()?;
    let reason = msg
        .reason
        .as_deref()
        .and_then(DisconnectReason::from_wire)
        .unwrap_or(DisconnectReason::Remote);
    (msg.kind == "disconnect").then(|| (reason, msg.reconnect.unwrap_or(true)))
}

/// A data frame whose message is serialized in place.
#[derive(Serialize)]
struct DataOf<'a, T: ?Sized> {
    identifier: &'a str,
    message: &'a T,
}

/// Encodes a data frame `{"identifier":…,"message":…}` with `message` serialized straight into
/// it: one pass, one allocation (what `transmit` sends).
pub(crate) fn encode_data_of<T: Serialize + ?Sized>(
    identifier: &str,
    message: &T,
) -> Result<String, serde_json::Error> {
    to_exact_string(&DataOf {
        identifier,
        message,
    })
}

/// Scratch buffers above this size are not kept for the next frame.
const SCRATCH_KEEP: usize = 64 * 1024;

thread_local! {
    /// Each thread's buffer to serialize frames in: a frame costs one allocation of its exact
    /// size, whatever growing the serializer needed on the way.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `serde_json::to_string`, in one allocation of exactly the output's size (a frame's `Bytes`
/// then needs no allocation of its own either).
pub(crate) fn to_exact_string<T: Serialize + ?Sized>(
    value: &T,
) -> Result<String, serde_json::Error> {
    SCRATCH.with(|cell| {
        // A serializer that sends a frame from inside `Serialize` finds the buffer in use.
        let Ok(mut buf) = cell.try_borrow_mut() else {
            return serde_json::to_string(value);
        };
        buf.clear();
        let written = serde_json::to_writer(&mut *buf, value);
        let out = written.map(|()| String::from_utf8_lossy(&buf).into_owned());
        if buf.capacity() > SCRATCH_KEEP {
            *buf = Vec::new();
        }
        out
    })
}

/// Encodes a data frame `{"identifier":…,"message":…}` around an already-encoded payload.
pub fn encode_data(identifier: &str, message: &RawValue) -> String {
    ServerMessage::Data {
        identifier,
        message,
    }
    .encode()
}

#[derive(Serialize)]
struct DataAt<'a> {
    identifier: &'a str,
    message: &'a RawValue,
    stream_id: &'a str,
    epoch: &'a str,
    offset: u64,
}

/// Encodes an extended-protocol delivery with its stream position:
/// `{"identifier":…,"message":…,"stream_id":…,"epoch":…,"offset":…}` (AnyCable's `Reply`).
///
/// ```
/// use actioncable::protocol::{encode_data_at, raw_json};
/// let frame = encode_data_at("id", raw_json("1").unwrap(), "chat", "e1", 3);
/// assert_eq!(frame, r#"{"identifier":"id","message":1,"stream_id":"chat","epoch":"e1","offset":3}"#);
/// ```
pub fn encode_data_at(
    identifier: &str,
    message: &RawValue,
    stream: &str,
    epoch: &str,
    offset: u64,
) -> String {
    serde_json::to_string(&DataAt {
        identifier,
        message,
        stream_id: stream,
        epoch,
        offset,
    })
    .unwrap_or_default()
}

/// A presence frame to subscription `identifier`:
/// `{"type":"presence","identifier":…,"message":…}` (AnyCable's `common.Reply` with the
/// broadcast type `presence`), `message` being an event ([`presence_join_event`],
/// [`presence_leave_event`]) or an answer ([`presence_info`], [`PRESENCE_ERROR`]).
///
/// ```
/// use actioncable::protocol::{encode_presence, presence_join_event, presence_leave_event, raw_json};
/// let join = presence_join_event("42", Some(raw_json(r#"{"name":"Ann"}"#).unwrap()));
/// assert_eq!(join, r#"{"type":"join","info":{"name":"Ann"},"id":"42"}"#);
/// assert_eq!(presence_leave_event("42"), r#"{"type":"leave","id":"42"}"#);
/// assert_eq!(
///     encode_presence("i", raw_json(&join).unwrap()),
///     r#"{"type":"presence","identifier":"i","message":{"type":"join","info":{"name":"Ann"},"id":"42"}}"#
/// );
/// ```
pub fn encode_presence(identifier: &str, message: &RawValue) -> String {
    #[derive(Serialize)]
    struct Frame<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        identifier: &'a str,
        message: &'a RawValue,
    }
    serde_json::to_string(&Frame {
        kind: "presence",
        identifier,
        message,
    })
    .unwrap_or_default()
}

/// One presence record as AnyCable's `common.PresenceEvent` writes it: `type` when it is an
/// event, `info` unless there is none, then `id`, in that order.
#[derive(Serialize)]
struct PresenceRecord<'a> {
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    info: Option<&'a RawValue>,
    id: &'a str,
}

/// The event sent to a presence stream's subscribers when member `id` joins (its first
/// connection does): `{"type":"join","info":…,"id":…}`.
pub fn presence_join_event(id: &str, info: Option<&RawValue>) -> String {
    serde_json::to_string(&PresenceRecord {
        kind: Some("join"),
        info,
        id,
    })
    .unwrap_or_default()
}

/// The event sent when member `id` leaves (its last connection did):
/// `{"type":"leave","id":…}`.
pub fn presence_leave_event(id: &str) -> String {
    serde_json::to_string(&PresenceRecord {
        kind: Some("leave"),
        info: None,
        id,
    })
    .unwrap_or_default()
}

/// The answer to a `presence` command: `{"type":"info","total":N,"records":[{"info":…,"id":…}]}`,
/// `records` left out when there are none (AnyCable's `common.PresenceInfo`, `omitempty`).
/// An `info` that is not JSON is left out of its record.
///
/// ```
/// use actioncable::protocol::presence_info;
/// assert_eq!(presence_info::<&str>(&[]), r#"{"type":"info","total":0}"#);
/// assert_eq!(
///     presence_info(&[("1", Some(r#"{"n":"A"}"#)), ("2", None)]),
///     r#"{"type":"info","total":2,"records":[{"info":{"n":"A"},"id":"1"},{"id":"2"}]}"#
/// );
/// ```
pub fn presence_info<I: AsRef<str>>(members: &[(I, Option<I>)]) -> String {
    #[derive(Serialize)]
    struct Info<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        total: usize,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        records: Vec<PresenceRecord<'a>>,
    }
    let records = members
        .iter()
        .map(|(id, info)| PresenceRecord {
            kind: None,
            info: info.as_ref().and_then(|i| raw_json(i.as_ref()).ok()),
            id: id.as_ref(),
        })
        .collect();
    serde_json::to_string(&Info {
        kind: "info",
        total: members.len(),
        records,
    })
    .unwrap_or_default()
}

/// The `message` of a `presence` answer when presence cannot be read: the client rejects its
/// `info()` promise ("failed to retrieve presence"). AnyCable's `PresenceInfo{Type: "error"}`,
/// whose `total` has no `omitempty`.
pub const PRESENCE_ERROR: &str = r#"{"type":"error","total":0}"#;

/// Checks that `payload` is one JSON value and returns it as a raw value.
///
/// # Errors
/// Returns the parse error when `payload` is not JSON.
pub fn raw_json(payload: &str) -> Result<&RawValue, serde_json::Error> {
    serde_json::from_str(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_messages_match_rails_frames() {
        assert_eq!(ServerMessage::WELCOME.encode(), r#"{"type":"welcome"}"#);
        assert_eq!(
            encode_welcome_ext::<&str>("abc", None),
            r#"{"type":"welcome","sid":"abc"}"#
        );
        assert_eq!(
            encode_welcome_ext("abc", Some(&[r#"{"channel":"A"}"#])),
            r#"{"type":"welcome","sid":"abc","restored":true,"restored_ids":["{\"channel\":\"A\"}"]}"#
        );
        assert_eq!(
            ServerMessage::ping(1724310000).encode(),
            r#"{"type":"ping","message":1724310000}"#
        );
        assert_eq!(
            ServerMessage::disconnect(DisconnectReason::Unauthorized, false).encode(),
            r#"{"type":"disconnect","reason":"unauthorized","reconnect":false}"#
        );
        assert_eq!(
            ServerMessage::Reject {
                identifier: r#"{"channel":"X"}"#
            }
            .encode(),
            r#"{"identifier":"{\"channel\":\"X\"}","type":"reject_subscription"}"#
        );
        let msg = raw_json(r#"{"a": [1, 2]}"#).unwrap();
        assert_eq!(
            encode_data("id", msg),
            r#"{"identifier":"id","message":{"a": [1, 2]}}"#
        );
    }

    #[test]
    fn fields_are_read_as_a_parsed_object_reads_them() {
        // Escaped keys are their unescaped selves; the last of a repeated key counts; `null` is
        // absent; other keys, nested as deep as they like, are skipped.
        assert_eq!(
            Command::decode(
                r#"{"comm\u0061nd":"message","identifier":"a","identifier":"b","data":"{}","x":[{"y":[1,{"z":null}]}]}"#
            ),
            Ok(Command::Message {
                identifier: "b".into(),
                data: "{}".into()
            })
        );
        assert_eq!(
            Command::decode(r#"{"command":"subscribe","identifier":"x","identifier":null}"#),
            Err(DecodeError::MissingIdentifier)
        );
        assert_eq!(
            Command::decode(r#"{"command":null,"identifier":"x"}"#),
            Err(DecodeError::UnknownCommand(String::new()))
        );
        assert_eq!(
            Command::decode(r#"{"command":[1, 2],"identifier":"x"}"#),
            Err(DecodeError::UnknownCommand("[1,2]".into()))
        );
        // Escapes inside the strings are undone.
        assert_eq!(
            Command::decode(r#"{"command":"subscribe","identifier":"\u00e9\"\n"}"#),
            Ok(Command::Subscribe {
                identifier: "\u{e9}\"\n".into()
            })
        );
        assert_eq!(
            Command::decode(r#"{"command":"whisper","identifier":"x","data":{ "a" : [1, 2] }}"#),
            Ok(Command::Whisper {
                identifier: "x".into(),
                data: r#"{"a":[1,2]}"#.into()
            })
        );
        assert_eq!(
            Command::decode(r#"{"command":"whisper","identifier":"x","data":null}"#),
            Err(DecodeError::MissingData)
        );
        assert_eq!(Command::decode("[1,2]"), Err(DecodeError::NotAnObject));
        assert_eq!(
            Command::decode(r#""command""#),
            Err(DecodeError::NotAnObject)
        );
        assert!(matches!(Command::decode("[1,"), Err(DecodeError::Json(_))));
        assert!(matches!(
            Command::decode(r#"{"command":"message"} x"#),
            Err(DecodeError::Json(_))
        ));
    }

    #[test]
    fn decodes_the_three_commands() {
        assert_eq!(
            Command::decode(r#"{"command":"subscribe","identifier":"{\"channel\":\"A\"}"}"#),
            Ok(Command::Subscribe {
                identifier: r#"{"channel":"A"}"#.into()
            })
        );
        assert_eq!(
            Command::decode(r#"{"command":"unsubscribe","identifier":"x"}"#),
            Ok(Command::Unsubscribe {
                identifier: "x".into()
            })
        );
        assert_eq!(
            Command::decode(
                r#"{"command":"message","identifier":"x","data":"{\"action\":\"go\"}"}"#
            ),
            Ok(Command::Message {
                identifier: "x".into(),
                data: r#"{"action":"go"}"#.into()
            })
        );
    }

    #[test]
    fn keeps_identifier_bytes_verbatim() {
        let raw = r#"{ "room":"é","channel":"ChatChannel" }"#;
        let frame = serde_json::json!({"command": "subscribe", "identifier": raw}).to_string();
        let Command::Subscribe { identifier } = Command::decode(&frame).unwrap() else {
            panic!()
        };
        assert_eq!(identifier, raw);
        assert_eq!(Identifier::parse(&identifier).unwrap().as_str(), raw);
    }

    #[test]
    fn bad_frames_are_errors_not_panics() {
        assert!(matches!(Command::decode("nope"), Err(DecodeError::Json(_))));
        assert_eq!(Command::decode("[1]"), Err(DecodeError::NotAnObject));
        assert_eq!(Command::decode("3"), Err(DecodeError::NotAnObject));
        assert_eq!(
            Command::decode("{}"),
            Err(DecodeError::UnknownCommand(String::new()))
        );
        assert_eq!(
            Command::decode(r#"{"command":"dance","identifier":"x"}"#),
            Err(DecodeError::UnknownCommand("dance".into()))
        );
        assert_eq!(
            Command::decode(r#"{"command":"subscribe"}"#),
            Err(DecodeError::MissingIdentifier)
        );
        assert_eq!(
            Command::decode(r#"{"command":"subscribe","identifier":{"channel":"A"}}"#),
            Err(DecodeError::MissingIdentifier)
        );
        assert_eq!(
            Command::decode(r#"{"command":"message","identifier":"x","data":{"a":1}}"#),
            Err(DecodeError::MissingData)
        );
    }

    #[test]
    fn identifiers_must_be_objects_with_a_channel() {
        assert_eq!(
            Identifier::parse("nope").unwrap_err(),
            IdentifierError::NotJson
        );
        assert_eq!(
            Identifier::parse("null").unwrap_err(),
            IdentifierError::NotAnObject
        );
        assert_eq!(
            Identifier::parse("{}").unwrap_err(),
            IdentifierError::NoChannel
        );
        assert_eq!(
            Identifier::parse(r#"{"channel":1}"#).unwrap_err(),
            IdentifierError::NoChannel
        );
    }

    #[test]
    fn the_extended_protocol_decodes_history_and_pong_and_refuses_bad_history() {
        let id = r#"{"channel":"A"}"#;
        let frame = |history: &str| {
            format!(
                r#"{{"command":"history","identifier":{},"history":{history}}}"#,
                serde_json::to_string(id).unwrap()
            )
        };
        let (cmd, _) =
            Command::decode_ext(&frame(r#"{"streams":{"s":{"epoch":"e","offset":2}}}"#)).unwrap();
        assert_eq!(
            cmd,
            Command::History {
                identifier: id.into(),
                request: HistoryRequest {
                    since: None,
                    streams: vec![StreamPosition {
                        stream: "s".into(),
                        epoch: "e".into(),
                        offset: 2
                    }],
                },
            }
        );
        for bad in [
            r#""x""#,
            r#"{"since":"1"}"#,
            r#"{"streams":{"s":{"epoch":1,"offset":2}}}"#,
            r#"{"streams":[1]}"#,
        ] {
            assert_eq!(
                Command::decode_ext(&frame(bad)),
                Err(DecodeError::BadHistory),
                "{bad}"
            );
        }
        // A `history` command needs its request; the plain protocol ignores a subscribe's.
        assert_eq!(
            Command::decode_ext(r#"{"command":"history","identifier":"x"}"#),
            Err(DecodeError::BadHistory)
        );
        let sub =
            r#"{"command":"subscribe","identifier":"x","history":"junk","presence":{"id":"1"}}"#;
        assert_eq!(
            Command::decode(sub),
            Ok(Command::Subscribe {
                identifier: "x".into()
            })
        );
        assert_eq!(
            ServerMessage::ConfirmHistory { identifier: "x" }.encode(),
            r#"{"identifier":"x","type":"confirm_history"}"#
        );
    }

    #[test]
    fn presence_commands_are_extended_protocol_and_whisper_is_both() {
        let join =
            r#"{"command":"join","identifier":"x","presence":{"id":"42","info":{"name":"Ann"}}}"#;
        assert_eq!(
            Command::decode_ext(join).unwrap().0,
            Command::Join {
                identifier: "x".into(),
                presence: PresenceJoin {
                    id: "42".into(),
                    info: Some(r#"{"name":"Ann"}"#.into())
                }
            }
        );
        assert_eq!(
            Command::decode(join),
            Err(DecodeError::UnknownCommand("join".into()))
        );
        // The client's `leave` has no `presence`; `presence` sends `data: {}`.
        assert_eq!(
            Command::decode_ext(r#"{"command":"leave","identifier":"x"}"#)
                .unwrap()
                .0,
            Command::Leave {
                identifier: "x".into()
            }
        );
        assert_eq!(
            Command::decode_ext(r#"{"command":"presence","identifier":"x","data":{}}"#)
                .unwrap()
                .0,
            Command::Presence {
                identifier: "x".into()
            }
        );
        for bad in [
            r#"{"command":"join","identifier":"x"}"#,
            r#"{"command":"join","identifier":"x","presence":{"id":42}}"#,
            r#"{"command":"join","identifier":"x","presence":"42"}"#,
        ] {
            assert_eq!(
                Command::decode_ext(bad),
                Err(DecodeError::BadPresence),
                "{bad}"
            );
        }
        let whisper = r#"{"command":"whisper","identifier":"x","data":{"typing":true}}"#;
        let expected = Command::Whisper {
            identifier: "x".into(),
            data: r#"{"typing":true}"#.into(),
        };
        assert_eq!(Command::decode(whisper), Ok(expected.clone()));
        assert_eq!(Command::decode_ext(whisper).unwrap().0, expected);
        assert_eq!(
            Command::decode(r#"{"command":"whisper","identifier":"x"}"#),
            Err(DecodeError::MissingData)
        );
        // A subscribe's presence comes beside it; a malformed one is dropped, not the subscribe.
        let sub = r#"{"command":"subscribe","identifier":"x","presence":{"id":"7"}}"#;
        let (cmd, extras) = Command::decode_ext(sub).unwrap();
        assert!(matches!(cmd, Command::Subscribe { .. }));
        assert_eq!(
            extras.presence,
            Some(PresenceJoin {
                id: "7".into(),
                info: None
            })
        );
        let sub = r#"{"command":"subscribe","identifier":"x","presence":{"id":7}}"#;
        assert_eq!(Command::decode_ext(sub).unwrap().1.presence, None);
    }
}
