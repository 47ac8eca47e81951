//! The exact frames of the ActionCable JSON protocol, as the server encodes them (key order
//! included: Rails' encoder is the reference), and the stock consumer's encodings.

use serde_json::{Map, Value};

/// What the stock consumer offers in `Sec-WebSocket-Protocol`, in its order.
pub const CONSUMER_PROTOCOLS: &str = "actioncable-v1-json, actioncable-unsupported";

/// The welcome, the first frame of every accepted connection.
pub const WELCOME: &str = r#"{"type":"welcome"}"#;

/// Whether `text` is a `{"type":"ping",…}` frame.
pub fn is_ping(text: &str) -> bool {
    serde_json::from_str::<Value>(text).is_ok_and(|v| v["type"] == "ping")
}

/// `{"identifier":<identifier>,"message":<message>}`.
pub fn data_frame(identifier: &str, message: &Value) -> String {
    format!(
        r#"{{"identifier":{},"message":{}}}"#,
        json_string(identifier),
        serde_json::to_string(message).expect("a JSON value encodes")
    )
}

/// `{"identifier":<identifier>,"type":"confirm_subscription"}`.
pub fn confirm_frame(identifier: &str) -> String {
    format!(
        r#"{{"identifier":{},"type":"confirm_subscription"}}"#,
        json_string(identifier)
    )
}

/// `{"identifier":<identifier>,"type":"reject_subscription"}`.
pub fn reject_frame(identifier: &str) -> String {
    format!(
        r#"{{"identifier":{},"type":"reject_subscription"}}"#,
        json_string(identifier)
    )
}

/// `{"type":"disconnect","reason":<reason>,"reconnect":<reconnect>}`.
pub fn disconnect_frame(reason: &str, reconnect: bool) -> String {
    format!(r#"{{"type":"disconnect","reason":"{reason}","reconnect":{reconnect}}}"#)
}

/// The `data` string the stock consumer sends for `subscription.perform(action, data)`: `data`
/// (an object, or `null` for none) with `action` added last.
pub fn perform_data(action: &str, data: Value) -> String {
    let mut map = match data {
        Value::Object(map) => map,
        Value::Null => Map::new(),
        other => panic!("perform data must be an object, got {other}"),
    };
    map.insert("action".into(), Value::String(action.into()));
    serde_json::to_string(&map).expect("a JSON object encodes")
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).expect("a string encodes")
}
