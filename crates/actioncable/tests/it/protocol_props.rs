//! Property tests of the wire protocol (`actioncable::protocol`): what a client can send is
//! decoded to exactly what it meant, what the server encodes is JSON that decodes back to what
//! it was given, and no input whatsoever makes the decoders panic.
//!
//! `PROPTEST_CASES` raises the number of cases (default 256 per property).

use actioncable::DisconnectReason;
use actioncable::protocol::{
    Command, DecodeError, Disconnect, Identifier, IdentifierError, ServerMessage, encode_data,
    internal_stream, parse_internal_message, raw_json, remote_disconnect_message,
};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// Any JSON value, nested a few levels (floats finite, as JSON requires).
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        // Floats whose shortest decimal form parses back exactly (serde_json's default float
        // parser is not correctly rounded for every 17-digit value; that is serde_json's
        // documented trade-off, not the protocol's).
        (any::<i32>(), -8i32..8).prop_map(|(m, e)| Value::from(f64::from(m) * 2f64.powi(e))),
        any::<String>().prop_map(Value::String),
        // Strings that look like the protocol's own words, so objects hit the interesting paths.
        prop_oneof![
            Just("subscribe"),
            Just("unsubscribe"),
            Just("message"),
            Just("channel"),
            Just("{\"channel\":\"ChatChannel\"}"),
        ]
        .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((object_key(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// Object keys: mostly the protocol's field names, sometimes anything.
fn object_key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop_oneof![
            Just("command"),
            Just("identifier"),
            Just("data"),
            Just("channel"),
            Just("action"),
        ]
        .prop_map(str::to_owned),
        1 => any::<String>(),
    ]
}

/// Text that is JSON-ish: braces, quotes, escapes, the protocol's words, and noise.
fn jsonish_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("{".to_owned()),
        Just("}".to_owned()),
        Just("[".to_owned()),
        Just("]".to_owned()),
        Just(":".to_owned()),
        Just(",".to_owned()),
        Just("\"".to_owned()),
        Just("\\".to_owned()),
        Just("\\u0000".to_owned()),
        Just("\\ud800".to_owned()),
        Just("\"command\"".to_owned()),
        Just("\"subscribe\"".to_owned()),
        Just("\"message\"".to_owned()),
        Just("\"identifier\"".to_owned()),
        Just("\"data\"".to_owned()),
        Just("null".to_owned()),
        Just("1e999".to_owned()),
        Just("-0".to_owned()),
        any::<String>(),
    ];
    prop::collection::vec(piece, 0..24).prop_map(|v| v.concat())
}

/// The three commands, as the test builds them from their parts.
#[derive(Debug, Clone)]
enum Kind {
    Subscribe,
    Unsubscribe,
    Message(String),
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::Subscribe),
        Just(Kind::Unsubscribe),
        any::<String>().prop_map(Kind::Message),
        json_value().prop_map(|v| Kind::Message(v.to_string())),
    ]
}

/// The frame a client sends for `kind` on `identifier`, with `extra` keys mixed in (before or
/// after the protocol's), as a JSON object.
fn frame(kind: &Kind, identifier: &str, extra: &[(String, Value)], extra_first: bool) -> String {
    let mut map = Map::new();
    let known = ["command", "identifier", "data"];
    let extras = extra.iter().filter(|(k, _)| !known.contains(&k.as_str()));
    if extra_first {
        for (k, v) in extras.clone() {
            map.insert(k.clone(), v.clone());
        }
    }
    let command = match kind {
        Kind::Subscribe => "subscribe",
        Kind::Unsubscribe => "unsubscribe",
        Kind::Message(_) => "message",
    };
    map.insert("command".into(), json!(command));
    map.insert("identifier".into(), json!(identifier));
    if let Kind::Message(data) = kind {
        map.insert("data".into(), json!(data));
    }
    if !extra_first {
        for (k, v) in extras {
            map.insert(k.clone(), v.clone());
        }
    }
    Value::Object(map).to_string()
}

/// What `Command::decode` must answer for a JSON value, written independently of it.
fn expected_decode(value: &Value) -> Result<Command, &'static str> {
    let Value::Object(map) = value else {
        return Err("not an object");
    };
    let command = match map.get("command") {
        Some(Value::String(c)) => c.as_str(),
        _ => return Err("unknown command"),
    };
    let identifier = match map.get("identifier") {
        Some(Value::String(id)) => Some(id.clone()),
        _ => None,
    };
    match command {
        "subscribe" | "unsubscribe" | "message" => {}
        _ => return Err("unknown command"),
    }
    let Some(identifier) = identifier else {
        return Err("missing identifier");
    };
    match command {
        "subscribe" => Ok(Command::Subscribe { identifier }),
        "unsubscribe" => Ok(Command::Unsubscribe { identifier }),
        _ => match map.get("data") {
            Some(Value::String(data)) => Ok(Command::Message {
                identifier,
                data: data.clone(),
            }),
            _ => Err("missing data"),
        },
    }
}

fn error_kind(e: &DecodeError) -> &'static str {
    match e {
        DecodeError::Json(_) => "json",
        DecodeError::NotAnObject => "not an object",
        DecodeError::UnknownCommand(_) => "unknown command",
        DecodeError::MissingIdentifier => "missing identifier",
        DecodeError::MissingData => "missing data",
        _ => "other",
    }
}

proptest! {
    // Failures are reported with their minimal input; nothing is written next to the sources.
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    /// A well-formed command decodes to exactly its parts, whatever the identifier and data
    /// strings hold (quotes, escapes, non-ASCII, not JSON at all) and whatever other keys the
    /// frame carries, in any order.
    #[test]
    fn well_formed_commands_round_trip(
        kind in kind(),
        identifier in prop_oneof![any::<String>(), json_value().prop_map(|v| v.to_string())],
        extra in prop::collection::vec((any::<String>(), json_value()), 0..3),
        extra_first in any::<bool>(),
    ) {
        let text = frame(&kind, &identifier, &extra, extra_first);
        let decoded = Command::decode(&text).expect("a well-formed command decodes");
        prop_assert_eq!(decoded.identifier(), identifier.as_str());
        match (&kind, &decoded) {
            (Kind::Subscribe, Command::Subscribe { .. })
            | (Kind::Unsubscribe, Command::Unsubscribe { .. }) => {}
            (Kind::Message(sent), Command::Message { data, .. }) => prop_assert_eq!(sent, data),
            _ => prop_assert!(false, "{kind:?} decoded as {decoded:?}"),
        }
    }

    /// The identifier the stock consumer sends (`JSON.stringify(params)`) survives decoding
    /// byte for byte and parses back to the same channel and params.
    #[test]
    fn consumer_identifiers_are_kept_verbatim_and_parse_back(
        channel in any::<String>(),
        params in prop::collection::vec((any::<String>(), json_value()), 0..5),
        channel_last in any::<bool>(),
    ) {
        let mut map = Map::new();
        if !channel_last {
            map.insert("channel".into(), json!(channel));
        }
        for (k, v) in params {
            if k != "channel" {
                map.insert(k, v);
            }
        }
        if channel_last {
            map.insert("channel".into(), json!(channel));
        }
        let raw = Value::Object(map.clone()).to_string();
        let text = json!({ "command": "subscribe", "identifier": raw }).to_string();
        let Command::Subscribe { identifier } = Command::decode(&text).unwrap() else {
            panic!("not a subscribe");
        };
        prop_assert_eq!(&identifier, &raw);
        let id = Identifier::parse(&identifier).expect("an object with a channel parses");
        prop_assert_eq!(id.as_str(), raw.as_str());
        prop_assert_eq!(id.to_string(), raw.clone());
        prop_assert_eq!(id.channel_class(), channel.as_str());
        prop_assert_eq!(id.params(), &map);
        // Key order is the client's, as in its string.
        let keys: Vec<&String> = id.params().keys().collect();
        let expected: Vec<&String> = map.keys().collect();
        prop_assert_eq!(keys, expected);
    }

    /// Decoding any JSON value agrees with an independent statement of the rules, and never
    /// panics.
    #[test]
    fn decode_of_any_json_value_follows_the_rules(value in json_value()) {
        let text = value.to_string();
        let got = Command::decode(&text);
        match (expected_decode(&value), got) {
            (Ok(want), Ok(got)) => prop_assert_eq!(want, got),
            (Err(want), Err(e)) => prop_assert_eq!(want, error_kind(&e), "{}", text),
            (want, got) => prop_assert!(false, "{text}: expected {want:?}, got {got:?}"),
        }
    }

    /// Any JSON object as an identifier: parses iff it has a string `channel`.
    #[test]
    fn identifier_parse_of_any_json_value_follows_the_rules(value in json_value()) {
        let raw = value.to_string();
        match (&value, Identifier::parse(&raw)) {
            (Value::Object(map), Ok(id)) => {
                prop_assert_eq!(Some(id.channel_class()), map.get("channel").and_then(Value::as_str));
                prop_assert_eq!(id.as_str(), raw.as_str());
            }
            (Value::Object(map), Err(e)) => {
                prop_assert_eq!(e, IdentifierError::NoChannel);
                prop_assert!(!map.get("channel").is_some_and(Value::is_string));
            }
            (_, Err(e)) => prop_assert_eq!(e, IdentifierError::NotAnObject),
            (_, Ok(id)) => prop_assert!(false, "{raw} parsed as {id:?}"),
        }
    }

    /// No string makes the decoders panic; a string that is not JSON is a `Json` error.
    #[test]
    fn decoders_never_panic_on_arbitrary_text(
        text in prop_oneof![any::<String>(), jsonish_text()],
    ) {
        let is_json = serde_json::from_str::<Value>(&text).is_ok();
        match Command::decode(&text) {
            Err(DecodeError::Json(_)) => prop_assert!(!is_json),
            Ok(cmd) => {
                prop_assert!(is_json);
                let _ = Identifier::parse(cmd.identifier());
            }
            Err(_) => prop_assert!(is_json),
        }
        match Identifier::parse(&text) {
            Err(IdentifierError::NotJson) => prop_assert!(!is_json),
            _ => prop_assert!(is_json),
        }
        let _ = parse_internal_message(&text);
    }

    /// Arbitrary bytes, as lossy UTF-8 (what a hostile client can put in a text frame is any
    /// valid UTF-8; this explores control characters and BOMs too).
    #[test]
    fn decoders_never_panic_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = Command::decode(&text);
        let _ = Identifier::parse(&text);
    }

    /// Confirm and reject frames carry the identifier exactly; nothing else.
    #[test]
    fn confirm_and_reject_round_trip(identifier in any::<String>()) {
        for (msg, kind) in [
            (ServerMessage::Confirm { identifier: &identifier }, "confirm_subscription"),
            (ServerMessage::Reject { identifier: &identifier }, "reject_subscription"),
        ] {
            let frame = msg.encode();
            let v: Value = serde_json::from_str(&frame).expect("the frame is JSON");
            prop_assert_eq!(v, json!({ "identifier": identifier, "type": kind }));
            // `identifier` comes first, as from Rails.
            prop_assert!(frame.starts_with(r#"{"identifier":"#), "{}", frame);
        }
    }

    /// Data frames wrap the payload's bytes verbatim under the identifier.
    #[test]
    fn data_frames_round_trip(identifier in any::<String>(), message in json_value(), pretty in any::<bool>()) {
        let payload = if pretty {
            serde_json::to_string_pretty(&message).unwrap()
        } else {
            message.to_string()
        };
        let raw = raw_json(&payload).expect("the payload is JSON");
        let frame = encode_data(&identifier, raw);
        let v: Value = serde_json::from_str(&frame).expect("the frame is JSON");
        prop_assert_eq!(&v["identifier"], &json!(identifier));
        let expected: Value = serde_json::from_str(&payload).unwrap();
        prop_assert_eq!(&v["message"], &expected);
        prop_assert!(frame.contains(&payload), "payload bytes kept verbatim");
        prop_assert!(v.get("type").is_none(), "data frames carry no type");
    }

    /// Disconnect and ping frames decode to their fields; any reason string is escaped.
    #[test]
    fn disconnect_and_ping_round_trip(reason in any::<String>(), reconnect in any::<bool>(), secs in any::<u64>()) {
        let frame = ServerMessage::Disconnect { kind: Disconnect, reason: &reason, reconnect }.encode();
        let v: Value = serde_json::from_str(&frame).unwrap();
        prop_assert_eq!(v, json!({ "type": "disconnect", "reason": reason.as_str(), "reconnect": reconnect }));
        let v: Value = serde_json::from_str(&ServerMessage::ping(secs).encode()).unwrap();
        prop_assert_eq!(v, json!({ "type": "ping", "message": secs }));
    }

    /// The internal stream's disconnect message round-trips; other shapes are not disconnects.
    #[test]
    fn internal_messages_round_trip(reconnect in any::<bool>(), reason in 0usize..6, id in any::<String>(), other in json_value()) {
        let reason = [
            DisconnectReason::Unauthorized, DisconnectReason::ServerRestart, DisconnectReason::Remote,
            DisconnectReason::TooSlow, DisconnectReason::TooManyConnections, DisconnectReason::TokenExpired,
        ][reason];
        prop_assert_eq!(parse_internal_message(&remote_disconnect_message(reason, reconnect)), Some((reason, reconnect)));
        prop_assert_eq!(internal_stream(&id), format!("action_cable/{id}"));
        if other.get("type") != Some(&json!("disconnect")) {
            prop_assert_eq!(parse_internal_message(&other.to_string()), None);
        }
    }
}

#[test]
fn fixed_frames_from_the_stock_consumer_decode() {
    // Fixed points for the generators above: the frames the consumer really sends.
    let id = r#"{"channel":"ChatChannel","room":"lobby"}"#;
    let sub = json!({ "command": "subscribe", "identifier": id }).to_string();
    assert_eq!(
        Command::decode(&sub),
        Ok(Command::Subscribe {
            identifier: id.into()
        })
    );
    let msg = json!({ "command": "message", "identifier": id, "data": r#"{"text":"hi","action":"speak"}"# })
        .to_string();
    assert_eq!(
        Command::decode(&msg),
        Ok(Command::Message {
            identifier: id.into(),
            data: r#"{"text":"hi","action":"speak"}"#.into()
        })
    );
}
