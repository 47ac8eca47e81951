//! The frames of the protocol as the consumer sees them: the commands it sends, and the
//! server's messages it reads. No I/O, so every rule here is a unit or property test.
//!
//! Reading follows `connection.js`'s `message` handler: a frame is a JSON object whose `type`
//! picks what happens (`welcome`, `disconnect`, `ping`, `confirm_subscription`,
//! `reject_subscription`) and **anything else**, a missing or unknown `type` included, is a
//! message for the subscriptions whose identifier it names. A field of the wrong type is read
//! as absent, so that no frame a server can send makes the consumer fail; a frame that is not a
//! JSON object is dropped, where the stock consumer's `JSON.parse` would throw in its handler.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;

/// The subprotocol of Rails' ActionCable, the one the stock consumer speaks.
pub const PROTOCOL: &str = "actioncable-v1-json";
/// AnyCable's extended protocol: the plain one plus session resume and stream history.
pub const EXT_PROTOCOL: &str = "actioncable-v1-ext-json";
/// The marker the stock consumer offers last: a server that speaks none of the consumer's
/// protocols selects it, and the consumer then stops (`INTERNAL.protocols` in `internal.js`).
pub const UNSUPPORTED_PROTOCOL: &str = "actioncable-unsupported";

/// A command to the server.
#[derive(Serialize)]
struct CommandFrame<'a> {
    command: &'a str,
    identifier: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a str>,
    #[cfg(feature = "ext")]
    #[serde(skip_serializing_if = "Option::is_none")]
    history: Option<&'a crate::history::HistoryRequest>,
}

fn command(command: &str, identifier: &str, data: Option<&str>) -> String {
    let frame = CommandFrame {
        command,
        identifier,
        data,
        #[cfg(feature = "ext")]
        history: None,
    };
    // Strings only: serializing cannot fail.
    serde_json::to_string(&frame).unwrap_or_default()
}

/// `{"command":"subscribe","identifier":…}`
pub(crate) fn subscribe(identifier: &str) -> String {
    command("subscribe", identifier, None)
}

/// `{"command":"unsubscribe","identifier":…}`
pub(crate) fn unsubscribe(identifier: &str) -> String {
    command("unsubscribe", identifier, None)
}

/// `{"command":"message","identifier":…,"data":"<data as JSON text>"}`: `data` travels as a
/// string, as `subscription.js`'s `send` does with `JSON.stringify(data)`.
pub(crate) fn message(identifier: &str, data: &str) -> String {
    command("message", identifier, Some(data))
}

/// `subscribe` with an extended-protocol `history` request.
#[cfg(feature = "ext")]
pub(crate) fn subscribe_with_history(
    identifier: &str,
    history: &crate::history::HistoryRequest,
) -> String {
    let frame = CommandFrame {
        command: "subscribe",
        identifier,
        data: None,
        history: Some(history),
    };
    serde_json::to_string(&frame).unwrap_or_default()
}

/// `{"command":"history","identifier":…,"history":{…}}`, for a subscription a resumed session
/// kept.
#[cfg(feature = "ext")]
pub(crate) fn history(identifier: &str, history: &crate::history::HistoryRequest) -> String {
    let frame = CommandFrame {
        command: "history",
        identifier,
        data: None,
        history: Some(history),
    };
    serde_json::to_string(&frame).unwrap_or_default()
}

/// The `data` of a `perform(action, data)`: `data` (a JSON object, or nothing) with `action`
/// set, as `subscription.js` does (`data.action = action`: an `action` key already there keeps
/// its place and takes the new value, otherwise it comes last).
///
/// # Errors
/// When `data` is not a JSON object (or `null`).
pub(crate) fn perform_data(action: &str, data: serde_json::Value) -> Result<String, DataError> {
    let mut map = match data {
        serde_json::Value::Object(map) => map,
        serde_json::Value::Null => serde_json::Map::new(),
        other => return Err(DataError(kind_of(&other))),
    };
    map.insert("action".to_owned(), action.into());
    Ok(json_text(&serde_json::Value::Object(map)))
}

/// A value's JSON text. `serde_json::to_string` writes straight into a buffer, where `Display`
/// (`to_string()`) goes through the formatter piece by piece: a few thousand instructions less
/// for every `perform`.
pub(crate) fn json_text(value: &serde_json::Value) -> String {
    // A `Value` always serializes: its keys are strings.
    serde_json::to_string(value).unwrap_or_default()
}

/// What a value that should have been a JSON object was.
#[derive(Debug)]
pub(crate) struct DataError(pub(crate) &'static str);

pub(crate) fn kind_of(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// A stream position on an extended-protocol message (`stream_id`, `epoch`, `offset`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Position<'a> {
    pub(crate) stream: Cow<'a, str>,
    pub(crate) epoch: Cow<'a, str>,
    pub(crate) offset: u64,
}

/// A message's payload, as the server sent it (compared by its text).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Payload<'a>(pub(crate) &'a RawValue);

impl PartialEq for Payload<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.0.get() == other.0.get()
    }
}

/// One frame from the server, as the consumer acts on it.
#[derive(Debug, PartialEq)]
pub(crate) enum Frame<'a> {
    /// `{"type":"welcome"}`; on the extended protocol with a session id, and `restored` with
    /// the identifiers a resumed session kept.
    Welcome {
        sid: Option<String>,
        restored: bool,
        restored_ids: Option<Vec<String>>,
    },
    /// `{"type":"ping","message":<unix seconds>}`
    Ping { at: Option<u64> },
    /// `{"type":"disconnect","reason":…,"reconnect":…}`. A missing `reconnect` stops the
    /// consumer too: `connection.js` passes `{allowReconnect: reconnect}`, and `undefined`
    /// does not allow it.
    Disconnect {
        reason: Option<Cow<'a, str>>,
        reconnect: bool,
    },
    /// `{"identifier":…,"type":"confirm_subscription"}`
    Confirm { identifier: Cow<'a, str> },
    /// `{"identifier":…,"type":"reject_subscription"}`
    Reject { identifier: Cow<'a, str> },
    /// Extended protocol: the history asked for was sent.
    ConfirmHistory { identifier: Cow<'a, str> },
    /// Extended protocol: the history asked for cannot be served.
    RejectHistory { identifier: Cow<'a, str> },
    /// `{"identifier":…,"message":…}`, or any other `type` with a message; with its stream
    /// position on the extended protocol.
    Message {
        identifier: Cow<'a, str>,
        message: Payload<'a>,
        position: Option<Position<'a>>,
    },
    /// A JSON object that is none of these (no identifier, no message): nothing to do, but it
    /// still proves the connection alive.
    Other,
}

/// Every key the consumer reads, each kept raw so that a key of the wrong type is read as
/// absent instead of failing the frame.
#[derive(Deserialize)]
struct RawFrame<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Option<&'a RawValue>,
    #[serde(default, borrow)]
    identifier: Option<&'a RawValue>,
    #[serde(default, borrow)]
    message: Option<&'a RawValue>,
    #[serde(default, borrow)]
    reason: Option<&'a RawValue>,
    #[serde(default, borrow)]
    reconnect: Option<&'a RawValue>,
    #[serde(default, borrow)]
    sid: Option<&'a RawValue>,
    #[serde(default, borrow)]
    restored: Option<&'a RawValue>,
    #[serde(default, borrow)]
    restored_ids: Option<&'a RawValue>,
    #[serde(default, borrow)]
    stream_id: Option<&'a RawValue>,
    #[serde(default, borrow)]
    epoch: Option<&'a RawValue>,
    #[serde(default, borrow)]
    offset: Option<&'a RawValue>,
}

fn string(raw: Option<&RawValue>) -> Option<Cow<'_, str>> {
    serde_json::from_str(raw?.get()).ok()
}

fn parse<'a, T: Deserialize<'a>>(raw: Option<&'a RawValue>) -> Option<T> {
    serde_json::from_str(raw?.get()).ok()
}

impl<'a> Frame<'a> {
    /// Reads one text frame; `None` when it is not a JSON object.
    pub(crate) fn decode(text: &'a str) -> Option<Frame<'a>> {
        // Serde would also read a struct from an array; only an object is a frame.
        if !text.trim_start().starts_with('{') {
            return None;
        }
        let raw: RawFrame<'a> = serde_json::from_str(text).ok()?;
        let kind = string(raw.kind);
        let identifier = || string(raw.identifier);
        let frame = match kind.as_deref() {
            Some("welcome") => Frame::Welcome {
                sid: parse(raw.sid),
                restored: parse(raw.restored).unwrap_or(false),
                restored_ids: parse(raw.restored_ids),
            },
            Some("ping") => Frame::Ping {
                // Whole seconds from Rails and from us; a fraction is cut.
                at: parse::<f64>(raw.message)
                    .filter(|s| s.is_finite() && *s >= 0.0)
                    .map(|s| s as u64),
            },
            Some("disconnect") => Frame::Disconnect {
                reason: string(raw.reason),
                reconnect: parse(raw.reconnect).unwrap_or(false),
            },
            Some("confirm_subscription") => match identifier() {
                Some(identifier) => Frame::Confirm { identifier },
                None => Frame::Other,
            },
            Some("reject_subscription") => match identifier() {
                Some(identifier) => Frame::Reject { identifier },
                None => Frame::Other,
            },
            Some("confirm_history") => match identifier() {
                Some(identifier) => Frame::ConfirmHistory { identifier },
                None => Frame::Other,
            },
            Some("reject_history") => match identifier() {
                Some(identifier) => Frame::RejectHistory { identifier },
                None => Frame::Other,
            },
            _ => match (identifier(), raw.message) {
                (Some(identifier), Some(message)) => {
                    let position = match (string(raw.stream_id), string(raw.epoch)) {
                        (Some(stream), Some(epoch)) => {
                            parse::<u64>(raw.offset).map(|offset| Position {
                                stream,
                                epoch,
                                offset,
                            })
                        }
                        _ => None,
                    };
                    Frame::Message {
                        identifier,
                        message: Payload(message),
                        position,
                    }
                }
                _ => Frame::Other,
            },
        };
        Some(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ID: &str = r#"{"channel":"ChatChannel","room":"lobby"}"#;

    fn id_json() -> String {
        serde_json::to_string(ID).unwrap()
    }

    #[test]
    fn commands_are_the_stock_consumers_frames() {
        assert_eq!(
            subscribe(ID),
            r#"{"command":"subscribe","identifier":"{\"channel\":\"ChatChannel\",\"room\":\"lobby\"}"}"#
        );
        assert_eq!(
            unsubscribe(ID),
            r#"{"command":"unsubscribe","identifier":"{\"channel\":\"ChatChannel\",\"room\":\"lobby\"}"}"#
        );
        let data = perform_data("speak", serde_json::json!({"text": "hi"})).unwrap();
        assert_eq!(data, r#"{"text":"hi","action":"speak"}"#);
        assert_eq!(
            message(ID, &data),
            r#"{"command":"message","identifier":"{\"channel\":\"ChatChannel\",\"room\":\"lobby\"}","data":"{\"text\":\"hi\",\"action\":\"speak\"}"}"#
        );
    }

    #[test]
    fn perform_data_sets_action_like_subscription_js() {
        assert_eq!(
            perform_data("away", serde_json::Value::Null).unwrap(),
            r#"{"action":"away"}"#
        );
        // An `action` already there keeps its place and takes the new value.
        assert_eq!(
            perform_data("b", serde_json::json!({"action": "a", "n": 1})).unwrap(),
            r#"{"action":"b","n":1}"#
        );
        assert_eq!(
            perform_data("x", serde_json::json!([1])).unwrap_err().0,
            "an array"
        );
    }

    #[test]
    fn reads_every_type_the_stock_consumer_knows() {
        assert_eq!(
            Frame::decode(r#"{"type":"welcome"}"#),
            Some(Frame::Welcome {
                sid: None,
                restored: false,
                restored_ids: None
            })
        );
        assert_eq!(
            Frame::decode(r#"{"type":"ping","message":1724310000}"#),
            Some(Frame::Ping {
                at: Some(1_724_310_000)
            })
        );
        assert_eq!(
            Frame::decode(r#"{"type":"disconnect","reason":"unauthorized","reconnect":false}"#),
            Some(Frame::Disconnect {
                reason: Some("unauthorized".into()),
                reconnect: false
            })
        );
        assert_eq!(
            Frame::decode(r#"{"type":"disconnect","reason":"server_restart","reconnect":true}"#),
            Some(Frame::Disconnect {
                reason: Some("server_restart".into()),
                reconnect: true
            })
        );
        // `reconnect` missing: the stock consumer stops.
        assert_eq!(
            Frame::decode(r#"{"type":"disconnect"}"#),
            Some(Frame::Disconnect {
                reason: None,
                reconnect: false
            })
        );
        let confirm = format!(
            r#"{{"identifier":{},"type":"confirm_subscription"}}"#,
            id_json()
        );
        assert_eq!(
            Frame::decode(&confirm),
            Some(Frame::Confirm {
                identifier: ID.into()
            })
        );
        let reject = format!(
            r#"{{"identifier":{},"type":"reject_subscription"}}"#,
            id_json()
        );
        assert_eq!(
            Frame::decode(&reject),
            Some(Frame::Reject {
                identifier: ID.into()
            })
        );
    }

    #[test]
    fn any_other_type_with_a_message_is_a_message() {
        let data = format!(
            r#"{{"identifier":{},"message":{{"text":"hi"}}}}"#,
            id_json()
        );
        let Some(Frame::Message {
            identifier,
            message,
            position,
        }) = Frame::decode(&data)
        else {
            panic!("not a message")
        };
        assert_eq!(
            (identifier.as_ref(), message.0.get()),
            (ID, r#"{"text":"hi"}"#)
        );
        assert_eq!(position, None);
        // Unknown types go to `received` too, as in `connection.js`'s default branch.
        let odd = format!(
            r#"{{"identifier":{},"type":"made_up","message":1}}"#,
            id_json()
        );
        assert!(matches!(Frame::decode(&odd), Some(Frame::Message { .. })));
        // Rails' encoding of `<` in an identifier names the same subscription.
        let escaped = r#"{"identifier":"{\"channel\":\"A\",\"x\":\"\u003c\"}","message":1}"#;
        let Some(Frame::Message { identifier, .. }) = Frame::decode(escaped) else {
            panic!("not a message")
        };
        assert_eq!(identifier, r#"{"channel":"A","x":"<"}"#);
    }

    #[test]
    fn reads_extended_protocol_frames() {
        let frame = r#"{"type":"welcome","sid":"abc","restored":true,"restored_ids":["x"]}"#;
        assert_eq!(
            Frame::decode(frame),
            Some(Frame::Welcome {
                sid: Some("abc".into()),
                restored: true,
                restored_ids: Some(vec!["x".into()])
            })
        );
        let positioned =
            r#"{"identifier":"i","message":1,"stream_id":"chat","epoch":"e1","offset":3}"#;
        let Some(Frame::Message { position, .. }) = Frame::decode(positioned) else {
            panic!("not a message")
        };
        assert_eq!(
            position,
            Some(Position {
                stream: "chat".into(),
                epoch: "e1".into(),
                offset: 3
            })
        );
        assert_eq!(
            Frame::decode(r#"{"identifier":"i","type":"confirm_history"}"#),
            Some(Frame::ConfirmHistory {
                identifier: "i".into()
            })
        );
        assert_eq!(
            Frame::decode(r#"{"identifier":"i","type":"reject_history"}"#),
            Some(Frame::RejectHistory {
                identifier: "i".into()
            })
        );
    }

    #[test]
    fn wrongly_typed_keys_are_read_as_absent() {
        assert_eq!(Frame::decode("[1]"), None);
        assert_eq!(Frame::decode("not json"), None);
        assert_eq!(Frame::decode(r#"{"type":5}"#), Some(Frame::Other));
        assert_eq!(
            Frame::decode(r#"{"type":"ping","message":"soon"}"#),
            Some(Frame::Ping { at: None })
        );
        assert_eq!(
            Frame::decode(r#"{"type":"ping","message":-3}"#),
            Some(Frame::Ping { at: None })
        );
        assert_eq!(
            Frame::decode(r#"{"type":"confirm_subscription","identifier":7}"#),
            Some(Frame::Other)
        );
        assert_eq!(
            Frame::decode(r#"{"type":"disconnect","reconnect":"yes","reason":1}"#),
            Some(Frame::Disconnect {
                reason: None,
                reconnect: false
            })
        );
        assert_eq!(
            Frame::decode(r#"{"type":"welcome","sid":1,"restored":"x","restored_ids":[1]}"#),
            Some(Frame::Welcome {
                sid: None,
                restored: false,
                restored_ids: None
            })
        );
        let bad_position =
            r#"{"identifier":"i","message":1,"stream_id":"s","epoch":"e","offset":-1}"#;
        assert!(matches!(
            Frame::decode(bad_position),
            Some(Frame::Message { position: None, .. })
        ));
    }

    /// JSON values of any shape, a few levels deep, with the keys the consumer reads among
    /// others.
    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(serde_json::Value::from),
            ".{0,12}".prop_map(serde_json::Value::from),
            prop::sample::select(vec![
                "welcome",
                "ping",
                "disconnect",
                "confirm_subscription",
                "reject_subscription",
                "confirm_history",
                "reject_history",
                ID,
            ])
            .prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(3, 24, 6, |inner| {
            let key = prop::sample::select(vec![
                "type",
                "identifier",
                "message",
                "reason",
                "reconnect",
                "sid",
                "restored",
                "restored_ids",
                "stream_id",
                "epoch",
                "offset",
                "other",
            ]);
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                prop::collection::btree_map(key.prop_map(str::to_owned), inner, 0..6)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// No text a server can send makes decoding panic.
        #[test]
        fn any_text_decodes_or_is_dropped(text in ".{0,200}") {
            let _ = Frame::decode(&text);
        }

        /// A JSON object of any shape always decodes to some frame (never dropped whole), and a
        /// message keeps its payload byte for byte.
        #[test]
        fn any_object_is_a_frame(value in json_value()) {
            let text = value.to_string();
            let frame = Frame::decode(&text);
            prop_assert_eq!(frame.is_some(), value.is_object());
            if let Some(Frame::Message { message, .. }) = frame {
                prop_assert_eq!(message.0.get(), value["message"].to_string());
            }
        }
    }
}
