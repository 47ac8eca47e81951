//! The checks behind the fuzz targets, as plain functions.
//!
//! The stable test `crates/actioncable/tests/it/fuzz_corpus.rs` includes this file and replays
//! every committed corpus file through the same functions, so the corpus is checked on every
//! `cargo test`, nightly or not.

use actioncable::protocol::{Command, DecodeError, Identifier, IdentifierError, ServerMessage};

// `testing` is on by default in the fuzz crate; in the stable replay test it is
// actioncable's own feature of that name, which the harness needs.
#[cfg(feature = "testing")]
mod handling;
#[cfg(feature = "testing")]
pub use handling::command_handling;
use serde_json::{Value, json};

/// One WebSocket text frame (text frames are UTF-8 by the protocol; other bytes are rejected
/// by the WebSocket layer before they reach the decoder, so they are skipped here) through the
/// command decoder and the identifier parser. Panics when an invariant breaks:
///
/// - decoding never panics; a frame that is not JSON is a `Json` error, a JSON frame never is;
/// - a decoded command re-encoded as a frame decodes to the same command;
/// - a parsed identifier keeps the exact bytes, names a string `channel`, and a confirmation
///   for it is JSON carrying the same identifier.
pub fn command_decode(data: &[u8]) {
    let Ok(frame) = std::str::from_utf8(data) else {
        return;
    };
    let is_json = serde_json::from_str::<Value>(frame).is_ok();
    let command = match Command::decode(frame) {
        Ok(command) => command,
        Err(DecodeError::Json(_)) => {
            assert!(!is_json, "a JSON frame was reported as not JSON: {frame:?}");
            return check_identifier(frame, is_json);
        }
        Err(_) => {
            assert!(
                is_json,
                "a non-JSON frame got past the JSON check: {frame:?}"
            );
            return check_identifier(frame, is_json);
        }
    };
    assert!(is_json);

    let reencoded = match &command {
        Command::Subscribe { identifier } => {
            json!({ "command": "subscribe", "identifier": identifier })
        }
        Command::Unsubscribe { identifier } => {
            json!({ "command": "unsubscribe", "identifier": identifier })
        }
        Command::Message { identifier, data } => {
            json!({ "command": "message", "identifier": identifier, "data": data })
        }
        _ => return,
    };
    assert_eq!(
        Command::decode(&reencoded.to_string()).as_ref(),
        Ok(&command),
        "re-encoding changed the command"
    );

    let identifier = command.identifier();
    let id_is_json = serde_json::from_str::<Value>(identifier).is_ok();
    check_identifier(identifier, id_is_json);
    if let Command::Message { data, .. } = &command {
        // The session parses `data` as JSON next; that must be total too.
        let _ = serde_json::from_str::<Value>(data);
    }
}

fn check_identifier(raw: &str, is_json: bool) {
    match Identifier::parse(raw) {
        Ok(id) => {
            assert_eq!(id.as_str(), raw, "identifier bytes changed");
            assert_eq!(
                id.params().get("channel").and_then(Value::as_str),
                Some(id.channel_class())
            );
            let confirm = ServerMessage::Confirm {
                identifier: id.as_str(),
            }
            .encode();
            let v: Value = serde_json::from_str(&confirm).expect("a confirmation is JSON");
            assert_eq!(v["identifier"].as_str(), Some(raw));
        }
        Err(IdentifierError::NotJson) => assert!(!is_json, "JSON identifier reported as not JSON"),
        Err(_) => assert!(is_json, "non-JSON identifier got past the JSON check"),
    }
}
