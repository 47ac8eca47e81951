//! Server-Sent Events: what a request for an event stream asks for, and what each frame of the
//! cable becomes on the stream, as AnyCable maps them.
//!
//! The facts come from anycable-go (commit 0d5e1a3, December 2024): `sse/sse.go` (the query
//! parameters, in the order they are tried, and `Last-Event-ID`), `sse/encoder.go` (which frames
//! become which events, the `id` and `retry` fields), `sse/handler.go` (the answers to a bad
//! request, a failed authentication, a rejected subscription), `sse/handler_test.go` and
//! `features/sse.testfile` (the exact events), and `docs/sse.md`.
//!
//! - **The request** names one subscription: `identifier` (a whole identifier, the JSON of a
//!   channel's params), else `channel` (a class without params), else AnyCable's signed-stream
//!   channel `$pubsub` with `stream` (a public stream) or `signed_stream`, else
//!   `Turbo::StreamsChannel` with `turbo_signed_stream_name`; the first non-empty one wins, as
//!   Go's `Query().Get` gives the first value. `history_since` (unix seconds) and the
//!   `Last-Event-ID` header (`<offset>/<epoch>/<stream>`) make it a subscription with history.
//!   `raw` (`1`, `true`, `t`, `y`) leaves out every protocol event: data only.
//! - **The frames**: one carrying a `type` becomes an event of that name whose data is the whole
//!   frame (`event: confirm_subscription`, `data: {…}`); a `disconnect` that forbids
//!   reconnecting adds `retry: 31536000000` (a year), so that `EventSource` does not come back.
//!   A delivery or a transmit becomes an unnamed event (`message` to `EventSource`) whose data is
//!   the `message` alone (a JSON string's text without its quotes), with `id:
//!   <offset>/<epoch>/<stream>` when the message carries its position, which the browser sends
//!   back as `Last-Event-ID` when it reconnects.
//! - **Heartbeats**: the beat's `ping` becomes a comment line (`: ping`), which `EventSource`
//!   ignores. AnyCable sends `event: ping` with the ping frame as data instead; a comment is
//!   what the Server-Sent Events standard suggests for keeping a connection alive, is invisible
//!   to every client, and survives `raw` mode, where AnyCable sends no heartbeat at all.
//!
//! Everything here is text in, text out, the events' bytes included ([`write_event`]); the
//! transport that sends them is `server/sse.rs`.

use super::{HistoryRequest, StreamPosition};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::time::Duration;

/// The query parameter holding a whole identifier, `JSON.stringify(params)`.
pub const IDENTIFIER_PARAM: &str = "identifier";
/// The query parameter holding a channel class, for a channel without params.
pub const CHANNEL_PARAM: &str = "channel";
/// The query parameter holding a public stream name (AnyCable's `$pubsub` channel).
pub const STREAM_PARAM: &str = "stream";
/// The query parameter holding a signed stream name (AnyCable's `$pubsub` channel).
pub const SIGNED_STREAM_PARAM: &str = "signed_stream";
/// The query parameter holding a Turbo signed stream name (`Turbo::StreamsChannel`).
pub const TURBO_STREAM_PARAM: &str = "turbo_signed_stream_name";
/// The query parameter asking for the history since a unix time (seconds).
pub const HISTORY_SINCE_PARAM: &str = "history_since";
/// The query parameter asking for data events only.
pub const RAW_PARAM: &str = "raw";
/// AnyCable's channel for public and signed streams.
pub const PUBSUB_CHANNEL: &str = "$pubsub";
/// Turbo's channel for signed stream names.
pub const TURBO_CHANNEL: &str = "Turbo::StreamsChannel";
/// The header a reconnecting `EventSource` sends with the last `id` it saw.
pub const LAST_EVENT_ID: &str = "last-event-id";
/// The comment a heartbeat is written as (`: ping`).
pub const HEARTBEAT: &str = "ping";
/// The `retry` of a `disconnect` that forbids reconnecting: a year, so that `EventSource`
/// effectively never comes back (AnyCable's `retryNoReconnect`).
pub const NO_RECONNECT_RETRY: Duration = Duration::from_millis(31_536_000_000);

/// What a request for an event stream asks for: one subscription, maybe with history.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SseRequest {
    /// The subscription's identifier, as a `subscribe` command would carry it.
    pub identifier: String,
    /// What the client missed: from `Last-Event-ID` and `history_since`.
    pub history: Option<HistoryRequest>,
    /// Data events only: no `welcome`, confirmation or other protocol event.
    pub raw: bool,
}

/// Why a request for an event stream names no subscription it can have. AnyCable answers
/// these with `400 Bad Request`, before authenticating.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SseRequestError {
    /// None of the parameters that name a subscription is there.
    #[error(
        "no channel given: pass `identifier`, `channel`, `stream`, `signed_stream` or \
         `turbo_signed_stream_name` in the query"
    )]
    NoChannel,
    /// `Last-Event-ID` has the shape `<offset>/<epoch>/<stream>` but its offset is no number.
    #[error("Last-Event-ID {0:?} is not <offset>/<epoch>/<stream>: the offset is not a number")]
    LastEventId(String),
    /// `history_since` is not a whole number of seconds.
    #[error("history_since {0:?} is not unix seconds")]
    HistorySince(String),
}

impl SseRequest {
    /// Reads a request's query string and its `Last-Event-ID` header, as anycable-go's
    /// `subscribeCommandFromGetRequest` does.
    ///
    /// ```
    /// use actioncable::protocol::sse::{SseRequest, SseRequestError};
    /// let id = r#"{"channel":"ChatChannel","room":"lobby"}"#;
    /// let query = "identifier=%7B%22channel%22%3A%22ChatChannel%22%2C%22room%22%3A%22lobby%22%7D&token=t";
    /// let request = SseRequest::parse(Some(query), None)?;
    /// assert_eq!(request.identifier, id);
    /// assert_eq!(request.history, None);
    ///
    /// // A channel without params; a reconnect that saw offset 7 of stream `chat/1`.
    /// let request = SseRequest::parse(Some("channel=NewsChannel"), Some("7/e1/chat/1"))?;
    /// assert_eq!(request.identifier, r#"{"channel":"NewsChannel"}"#);
    /// let position = &request.history.unwrap().streams[0];
    /// assert_eq!((position.stream.as_str(), position.epoch.as_str(), position.offset), ("chat/1", "e1", 7));
    ///
    /// assert_eq!(SseRequest::parse(Some("token=t"), None), Err(SseRequestError::NoChannel));
    /// # Ok::<(), SseRequestError>(())
    /// ```
    ///
    /// # Errors
    /// When no parameter names a subscription, or `Last-Event-ID` or `history_since` holds a
    /// number that is not one.
    pub fn parse(
        query: Option<&str>,
        last_event_id: Option<&str>,
    ) -> Result<SseRequest, SseRequestError> {
        let query = query.unwrap_or_default();
        // Go's `Query().Get`: the first value of a key, empty when absent.
        let get = |key: &str| -> String {
            form_urlencoded::parse(query.as_bytes())
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        let identifier = [
            (IDENTIFIER_PARAM, None),
            (CHANNEL_PARAM, Some((None, ""))),
            (STREAM_PARAM, Some((Some(PUBSUB_CHANNEL), "stream_name"))),
            (
                SIGNED_STREAM_PARAM,
                Some((Some(PUBSUB_CHANNEL), "signed_stream_name")),
            ),
            (
                TURBO_STREAM_PARAM,
                Some((Some(TURBO_CHANNEL), "signed_stream_name")),
            ),
        ]
        .into_iter()
        .find_map(|(param, build)| {
            let value = get(param);
            if value.is_empty() {
                return None;
            }
            Some(match build {
                None => value,
                Some((None, _)) => serde_json::json!({ "channel": value }).to_string(),
                Some((Some(channel), key)) => {
                    serde_json::json!({ "channel": channel, key: value }).to_string()
                }
            })
        })
        .ok_or(SseRequestError::NoChannel)?;

        let mut history = HistoryRequest::default();
        if let Some(id) = last_event_id.filter(|id| !id.is_empty()) {
            // `strings.SplitN(id, "/", 3)`: the stream keeps any further slashes; an id of
            // another shape is not a position and is ignored.
            let mut parts = id.splitn(3, '/');
            if let (Some(offset), Some(epoch), Some(stream)) =
                (parts.next(), parts.next(), parts.next())
            {
                let offset = offset
                    .parse::<u64>()
                    .map_err(|_| SseRequestError::LastEventId(id.to_owned()))?;
                history.streams.push(StreamPosition {
                    stream: stream.to_owned(),
                    epoch: epoch.to_owned(),
                    offset,
                });
            }
        }
        let since = get(HISTORY_SINCE_PARAM);
        if !since.is_empty() {
            let seconds = since
                .parse::<i64>()
                .map_err(|_| SseRequestError::HistorySince(since.clone()))?;
            // AnyCable asks for history only for a time after the epoch.
            history.since = u64::try_from(seconds).ok().filter(|&s| s > 0);
        }
        let wants_history = history.since.is_some() || !history.streams.is_empty();
        let raw = matches!(
            get(RAW_PARAM).to_ascii_lowercase().as_str(),
            "true" | "1" | "t" | "y"
        );
        Ok(SseRequest {
            identifier,
            history: wants_history.then_some(history),
            raw,
        })
    }
}

/// What one frame of the cable becomes on an event stream.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SseEvent<'a> {
    /// The beat's `ping`: a comment line ([`HEARTBEAT`]).
    Heartbeat,
    /// A protocol frame (`welcome`, `confirm_subscription`, `reject_subscription`,
    /// `confirm_history`, `reject_history`, `presence`, `disconnect`…): an event named after
    /// its `type`, the whole frame as its data.
    Typed {
        /// The event's name: the frame's `type` (never empty, never a line break in it).
        name: Cow<'a, str>,
        /// The whole frame.
        data: &'a str,
        /// A `disconnect` with `reconnect: false`: the event carries
        /// [`retry`](NO_RECONNECT_RETRY) so that `EventSource` does not come back.
        no_reconnect: bool,
    },
    /// A delivery or a transmit: an unnamed event.
    Message {
        /// The frame's `message` (a JSON string's text unquoted); the whole frame when it has
        /// none. Line breaks are `\n` only.
        data: Cow<'a, str>,
        /// `<offset>/<epoch>/<stream>` when the message carries its position
        /// ([`last_event_id`]).
        id: Option<String>,
    },
}

/// The keys of a frame that decide its event.
#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    message: Option<&'a RawValue>,
    #[serde(default, borrow)]
    stream_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    epoch: Option<Cow<'a, str>>,
    #[serde(default)]
    offset: Option<u64>,
    #[serde(default)]
    reconnect: Option<bool>,
}

/// The event `frame` (the JSON text the cable queued for the connection) becomes, as
/// anycable-go's `sse.Encoder` with `UnwrapData` (a `GET` request) encodes it.
///
/// ```
/// use actioncable::protocol::sse::{sse_event, SseEvent};
/// let confirm = r#"{"identifier":"{\"channel\":\"ChatChannel\"}","type":"confirm_subscription"}"#;
/// assert!(matches!(sse_event(confirm), SseEvent::Typed { name, data, no_reconnect: false }
///     if name == "confirm_subscription" && data == confirm));
///
/// let delivery = r#"{"identifier":"{\"channel\":\"ChatChannel\"}","message":{"text":"hi"},"stream_id":"chat","epoch":"e1","offset":3}"#;
/// assert_eq!(sse_event(delivery), SseEvent::Message {
///     data: r#"{"text":"hi"}"#.into(),
///     id: Some("3/e1/chat".to_owned()),
/// });
///
/// assert_eq!(sse_event(r#"{"type":"ping","message":1700000000}"#), SseEvent::Heartbeat);
/// ```
pub fn sse_event(frame: &str) -> SseEvent<'_> {
    let Ok(parsed) = serde_json::from_str::<Frame<'_>>(frame) else {
        // Not a frame of ours (a connection-level transmit of an odd shape): pass it on whole.
        return SseEvent::Message {
            data: single_line_breaks(Cow::Borrowed(frame)),
            id: None,
        };
    };
    if let Some(kind) = parsed.kind {
        if kind == "ping" {
            return SseEvent::Heartbeat;
        }
        if !kind.is_empty() && !kind.contains(['\r', '\n']) {
            let no_reconnect = kind == "disconnect" && parsed.reconnect == Some(false);
            return SseEvent::Typed {
                name: kind,
                data: frame,
                no_reconnect,
            };
        }
    }
    let data = match parsed.message {
        Some(message) => unquoted(message),
        None => Cow::Borrowed(frame),
    };
    let id = match (parsed.offset, parsed.epoch, parsed.stream_id) {
        (Some(offset), Some(epoch), Some(stream))
            if offset > 0 && !epoch.is_empty() && !stream.is_empty() =>
        {
            Some(last_event_id(offset, &epoch, &stream)).filter(|id| {
                // A stream name is the app's: one with a line break or a NUL cannot be an id.
                !id.contains(['\r', '\n', '\0'])
            })
        }
        _ => None,
    };
    SseEvent::Message {
        data: single_line_breaks(data),
        id,
    }
}

/// The `id` of a message at `offset` of `epoch` in `stream`: `<offset>/<epoch>/<stream>`, what
/// anycable-go's encoder writes and its `Last-Event-ID` parser reads (the stream last, so that
/// it may hold slashes).
///
/// ```
/// use actioncable::protocol::sse::last_event_id;
/// assert_eq!(last_event_id(321, "bc320", "chat/2023"), "321/bc320/chat/2023");
/// ```
pub fn last_event_id(offset: u64, epoch: &str, stream: &str) -> String {
    format!("{offset}/{epoch}/{stream}")
}

/// Appends `event` to `out` as a stream carries it: its fields in the order `event`, `data` (one
/// `data:` line per line of the text), `id`, `retry`, then the blank line that ends it; a
/// heartbeat is a comment line. Several events written one after the other are one valid piece
/// of a stream, which is how the transport sends the events it finds waiting.
///
/// ```
/// use actioncable::protocol::sse::{sse_event, write_event};
/// let mut out = String::new();
/// write_event(&sse_event(r#"{"type":"welcome"}"#), &mut out);
/// write_event(&sse_event(r#"{"identifier":"i","message":"a\nb","stream_id":"s","epoch":"e","offset":2}"#), &mut out);
/// write_event(&sse_event(r#"{"type":"ping","message":1}"#), &mut out);
/// assert_eq!(out, "event: welcome\ndata: {\"type\":\"welcome\"}\n\ndata: a\ndata: b\nid: 2/e/s\n\n: ping\n\n");
/// ```
pub fn write_event(event: &SseEvent<'_>, out: &mut String) {
    match event {
        SseEvent::Heartbeat => {
            out.push_str(": ");
            out.push_str(HEARTBEAT);
            out.push('\n');
        }
        SseEvent::Typed {
            name,
            data,
            no_reconnect,
        } => {
            field(out, "event", name);
            data_lines(out, data);
            if *no_reconnect {
                field(out, "retry", &NO_RECONNECT_RETRY.as_millis().to_string());
            }
        }
        SseEvent::Message { data, id } => {
            data_lines(out, data);
            if let Some(id) = id {
                field(out, "id", id);
            }
        }
    }
    out.push('\n');
}

/// `name: value` and its line break (`value` has none: [`sse_event`] sees to it).
fn field(out: &mut String, name: &str, value: &str) {
    out.push_str(name);
    out.push_str(": ");
    out.push_str(value);
    out.push('\n');
}

/// One `data:` line per line of `text`, whichever line breaks it has (a whole frame passed
/// through as data may hold the app's own between JSON tokens).
fn data_lines(out: &mut String, text: &str) {
    let text = single_line_breaks(Cow::Borrowed(text));
    for line in text.split('\n') {
        field(out, "data", line);
    }
}

/// A message's text for a `data` field: a JSON string's contents, any other JSON as it is.
fn unquoted(message: &RawValue) -> Cow<'_, str> {
    let text = message.get();
    if text.starts_with('"')
        && let Ok(inner) = serde_json::from_str::<Cow<'_, str>>(text)
    {
        return inner;
    }
    Cow::Borrowed(text)
}

/// `\r\n` and `\r` as `\n`: what a client's parser makes of them anyway (every one of them ends
/// a line), written as the one line break a `data` field can carry.
fn single_line_breaks(text: Cow<'_, str>) -> Cow<'_, str> {
    if text.contains('\r') {
        Cow::Owned(text.replace("\r\n", "\n").replace('\r', "\n"))
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(s: &str) -> String {
        form_urlencoded::byte_serialize(s.as_bytes()).collect()
    }

    #[test]
    fn the_parameters_are_tried_in_anycables_order() {
        let id = r#"{"channel":"ChatChannel","room":"lobby"}"#;
        let both = format!("channel=Other&identifier={}", encode(id));
        assert_eq!(SseRequest::parse(Some(&both), None).unwrap().identifier, id);
        assert_eq!(
            SseRequest::parse(Some("identifier=&channel=News"), None)
                .unwrap()
                .identifier,
            r#"{"channel":"News"}"#
        );
        assert_eq!(
            SseRequest::parse(Some("stream=chat%2F1&signed_stream=x"), None)
                .unwrap()
                .identifier,
            r#"{"channel":"$pubsub","stream_name":"chat/1"}"#
        );
        assert_eq!(
            SseRequest::parse(Some("signed_stream=abc--def"), None)
                .unwrap()
                .identifier,
            r#"{"channel":"$pubsub","signed_stream_name":"abc--def"}"#
        );
        assert_eq!(
            SseRequest::parse(Some("turbo_signed_stream_name=t--s"), None)
                .unwrap()
                .identifier,
            r#"{"channel":"Turbo::StreamsChannel","signed_stream_name":"t--s"}"#
        );
        // The first value of a key, as Go's `Get`.
        assert_eq!(
            SseRequest::parse(Some("channel=A&channel=B"), None)
                .unwrap()
                .identifier,
            r#"{"channel":"A"}"#
        );
        for nothing in [
            None,
            Some(""),
            Some("token=x"),
            Some("identifier=&channel="),
        ] {
            assert_eq!(
                SseRequest::parse(nothing, None),
                Err(SseRequestError::NoChannel)
            );
        }
    }

    #[test]
    fn last_event_id_and_history_since_ask_for_history() {
        let plain = SseRequest::parse(Some("channel=C"), None).unwrap();
        assert_eq!((plain.history, plain.raw), (None, false));

        let resumed = SseRequest::parse(Some("channel=C"), Some("12/ab/chat/room/1")).unwrap();
        let history = resumed.history.unwrap();
        assert_eq!(history.since, None);
        assert_eq!(
            history.streams,
            [StreamPosition {
                stream: "chat/room/1".into(),
                epoch: "ab".into(),
                offset: 12
            }]
        );
        // Not a position (fewer than two slashes): ignored, as AnyCable ignores it.
        for other in ["", "12", "12/ab"] {
            let r = SseRequest::parse(Some("channel=C"), Some(other)).unwrap();
            assert_eq!(r.history, None, "{other:?}");
        }
        assert_eq!(
            SseRequest::parse(Some("channel=C"), Some("x/ab/chat")),
            Err(SseRequestError::LastEventId("x/ab/chat".into()))
        );

        let since = SseRequest::parse(Some("channel=C&history_since=1700000000"), None).unwrap();
        assert_eq!(since.history.unwrap().since, Some(1_700_000_000));
        for none in ["0", "-5"] {
            let q = format!("channel=C&history_since={none}");
            assert_eq!(SseRequest::parse(Some(&q), None).unwrap().history, None);
        }
        assert_eq!(
            SseRequest::parse(Some("channel=C&history_since=yesterday"), None),
            Err(SseRequestError::HistorySince("yesterday".into()))
        );
    }

    #[test]
    fn raw_takes_anycables_spellings() {
        for yes in ["1", "true", "TRUE", "t", "y"] {
            let q = format!("channel=C&raw={yes}");
            assert!(SseRequest::parse(Some(&q), None).unwrap().raw, "{yes}");
        }
        for no in ["0", "false", "", "yes"] {
            let q = format!("channel=C&raw={no}");
            assert!(!SseRequest::parse(Some(&q), None).unwrap().raw, "{no}");
        }
    }

    #[test]
    fn frames_become_anycables_events() {
        let welcome = r#"{"type":"welcome"}"#;
        assert_eq!(
            sse_event(welcome),
            SseEvent::Typed {
                name: "welcome".into(),
                data: welcome,
                no_reconnect: false
            }
        );
        let gone = r#"{"type":"disconnect","reason":"remote","reconnect":false}"#;
        assert!(matches!(
            sse_event(gone),
            SseEvent::Typed {
                no_reconnect: true,
                ..
            }
        ));
        let restart = r#"{"type":"disconnect","reason":"server_restart","reconnect":true}"#;
        assert!(matches!(
            sse_event(restart),
            SseEvent::Typed {
                no_reconnect: false,
                ..
            }
        ));
        // A plain delivery: the message alone, no id.
        assert_eq!(
            sse_event(r#"{"identifier":"i","message":{"a":[1,2]}}"#),
            SseEvent::Message {
                data: r#"{"a":[1,2]}"#.into(),
                id: None
            }
        );
        // A JSON string is sent as its text (Turbo Streams' HTML), escapes decoded.
        assert_eq!(
            sse_event(r#"{"identifier":"i","message":"<p class=\"x\">hi</p>"}"#),
            SseEvent::Message {
                data: r#"<p class="x">hi</p>"#.into(),
                id: None
            }
        );
        // Line breaks inside become `\n` only.
        assert_eq!(
            sse_event(r#"{"identifier":"i","message":"a\r\nb\rc\nd"}"#),
            SseEvent::Message {
                data: "a\nb\nc\nd".into(),
                id: None
            }
        );
        // A frame without `message` (a connection-level transmit) is sent whole.
        assert_eq!(
            sse_event(r#"{"note":1}"#),
            SseEvent::Message {
                data: r#"{"note":1}"#.into(),
                id: None
            }
        );
        assert_eq!(
            sse_event("not json"),
            SseEvent::Message {
                data: "not json".into(),
                id: None
            }
        );
    }

    #[test]
    fn an_id_only_for_a_whole_position_that_fits_on_a_line() {
        let at = |stream: &str, epoch: &str, offset: u64| {
            let frame = serde_json::json!({
                "identifier": "i", "message": 1, "stream_id": stream, "epoch": epoch, "offset": offset,
            })
            .to_string();
            match sse_event(&frame) {
                SseEvent::Message { id, .. } => id,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(at("chat/1", "e", 4).as_deref(), Some("4/e/chat/1"));
        assert_eq!(at("chat", "e", 0), None, "offset 0 is no position");
        assert_eq!(at("chat", "", 4), None);
        assert_eq!(at("", "e", 4), None);
        assert_eq!(at("a\nb", "e", 4), None, "a line break cannot be in an id");
        assert_eq!(at("a\0b", "e", 4), None, "nor a NUL");
    }

    #[test]
    fn a_type_that_cannot_name_an_event_is_sent_as_data() {
        let frame = r#"{"type":"a\nb"}"#;
        assert_eq!(
            sse_event(frame),
            SseEvent::Message {
                data: frame.into(),
                id: None
            }
        );
        let empty = r#"{"type":""}"#;
        assert!(matches!(sse_event(empty), SseEvent::Message { .. }));
    }
}
