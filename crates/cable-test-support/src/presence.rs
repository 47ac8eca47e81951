//! What the presence and whisper tests share (the core's over sockets, the Redis adapter's
//! across nodes): a channel that opens its stream with presence and whisper, and frames as
//! AnyCable's extended protocol writes them.

use actioncable::{Channel, ChannelContext, ChannelError, StreamOptions, async_trait};
use serde::Deserialize;
use serde_json::{Value, json};

/// What `@anycable/core` offers.
pub const EXT_PROTOCOL: &str = "actioncable-v1-ext-json";

/// `{"channel":"PresenceChannel","stream":"<s>"}` streams `s` with presence and whisper on;
/// `"quiet": true` streams it with neither. Its actions join and leave from the server side.
#[derive(Debug)]
pub struct PresenceChannel;

/// The identifier's params of [`PresenceChannel`].
#[derive(Debug, Deserialize)]
pub struct PresenceParams {
    stream: String,
    #[serde(default)]
    quiet: bool,
}

/// [`PresenceChannel`]'s actions.
#[derive(Debug, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum PresenceAction {
    /// `ctx.join_presence(id, info)`; transmits `{"joined": <error or null>}`.
    JoinAs {
        /// The member.
        id: String,
        /// Its info.
        #[serde(default)]
        info: Value,
    },
    /// `ctx.leave_presence()`.
    LeaveNow,
    /// Transmits `{"performed": true}`: proof the connection still works.
    Ping,
}

#[async_trait]
impl<S: Send + Sync + 'static> Channel<S> for PresenceChannel {
    const CLASS: &'static str = "PresenceChannel";
    type Params = PresenceParams;
    type Action = PresenceAction;

    async fn subscribed(
        ctx: &mut ChannelContext<S>,
        params: PresenceParams,
    ) -> Result<Self, ChannelError> {
        let options = StreamOptions::new()
            .presence(!params.quiet)
            .whisper(!params.quiet);
        ctx.stream_from_with_options(params.stream, options).await?;
        Ok(PresenceChannel)
    }

    async fn perform(
        &mut self,
        ctx: &mut ChannelContext<S>,
        action: PresenceAction,
    ) -> Result<(), ChannelError> {
        match action {
            PresenceAction::JoinAs { id, info } => {
                let error = ctx.join_presence(id, &info).await.err();
                ctx.transmit(&json!({ "joined": error.map(|e| e.to_string()) }))
            }
            PresenceAction::LeaveNow => ctx.leave_presence().await,
            PresenceAction::Ping => ctx.transmit(&json!({ "performed": true })),
        }
    }
}

/// The identifier of the [`PresenceChannel`] subscription to `stream`.
pub fn presence_identifier(stream: &str) -> String {
    json!({ "channel": "PresenceChannel", "stream": stream }).to_string()
}

/// The identifier of a [`PresenceChannel`] subscription to `stream` without presence or whisper.
pub fn quiet_identifier(stream: &str) -> String {
    json!({ "channel": "PresenceChannel", "quiet": true, "stream": stream }).to_string()
}

/// The `join` command of `@anycable/core`'s `channel.presence.join(id, info)`.
pub fn join_command(identifier: &str, id: &str, info: &Value) -> Value {
    json!({ "command": "join", "identifier": identifier, "presence": { "id": id, "info": info } })
}

/// The `whisper` command of `@anycable/core`'s `channel.whisper(data)`.
pub fn whisper_command(identifier: &str, data: &Value) -> Value {
    json!({ "command": "whisper", "identifier": identifier, "data": data })
}

/// A presence frame, byte for byte as AnyCable writes it: `message` is the event's JSON text.
pub fn presence_frame(identifier: &str, message: &str) -> String {
    format!(
        r#"{{"type":"presence","identifier":{},"message":{message}}}"#,
        serde_json::to_string(identifier).unwrap_or_default()
    )
}

/// The `join` event of member `id` with `info` (JSON text).
pub fn join_event(id: &str, info: &str) -> String {
    format!(
        r#"{{"type":"join","info":{info},"id":{}}}"#,
        serde_json::to_string(id).unwrap_or_default()
    )
}

/// The `leave` event of member `id`.
pub fn leave_event(id: &str) -> String {
    format!(
        r#"{{"type":"leave","id":{}}}"#,
        serde_json::to_string(id).unwrap_or_default()
    )
}
