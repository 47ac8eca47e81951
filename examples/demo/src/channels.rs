//! The two channels: `ChatChannel` (rooms) and `NotificationChannel` (one stream per user).
//!
//! Actions fail with an [`ActionError`]; each channel's `rescue` (Rails' `rescue_from`) turns
//! it into `{"type":"error","error":…}` for the sender only. Client mistakes (a blank message,
//! an unknown notification, a field of the wrong type) end there; failures on our side (the
//! database, the pub/sub adapter) are also logged with the channel, action and identifier.
//!
//! Storing chat messages is rate-limited per user (`CHAT_LIMIT_PER_MINUTE`): one over the limit
//! is not stored, and its sender is told `{"type":"error","error":…,"retry_after":seconds}`.

use crate::auth::CURRENT_USER;
use crate::config::{PrivateRooms, may_enter};
use crate::db::{Db, Message};
use crate::limits::RateLimiter;
use crate::validate::{chat_text, history_limit, is_valid_room};
use actioncable::{Channel, ChannelContext, ChannelError, NoParams, StreamOptions, async_trait};
use serde::{Deserialize, Deserializer, Serialize};
use std::error::Error as StdError;
use std::sync::Arc;

/// What the channels reach through `ChannelContext::state`.
#[derive(Debug, Clone)]
pub struct DemoState {
    /// Storage.
    pub db: Db,
    /// Private rooms and their members.
    pub private_rooms: Arc<PrivateRooms>,
    /// Chat messages stored per user (keyed by user name).
    pub chat_limit: Arc<RateLimiter<String>>,
}

impl DemoState {
    /// The channels' state: `db`, the private rooms, and at most `chat_messages_per_minute`
    /// stored messages per user (0: no limit).
    pub fn new(
        db: Db,
        private_rooms: Arc<PrivateRooms>,
        chat_messages_per_minute: u32,
    ) -> DemoState {
        DemoState {
            db,
            private_rooms,
            chat_limit: Arc::new(RateLimiter::per_minute(chat_messages_per_minute)),
        }
    }
}

/// A field that is either a well-typed `T` or something else the client sent (kept apart so
/// a wrong type gets a helpful error instead of failing the whole action).
#[derive(Debug, Clone, PartialEq)]
pub enum Loose<T> {
    /// The field has the expected type.
    Valid(T),
    /// The field is present but of another type.
    Invalid,
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Loose<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        Ok(match T::deserialize(value) {
            Ok(v) => Loose::Valid(v),
            Err(_) => Loose::Invalid,
        })
    }
}

/// The identifier's params: `{"channel":"ChatChannel","room":"lobby"}`.
#[derive(Debug, Deserialize)]
pub struct ChatParams {
    #[serde(default)]
    room: Option<Loose<String>>,
}

/// What a chat subscriber may do.
#[derive(Debug, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum ChatAction {
    /// `perform("speak", {text})`: say something to the room.
    Speak {
        /// The text (trimmed; 1..=500 characters).
        #[serde(default)]
        text: Option<Loose<String>>,
    },
    /// `perform("typing")`: tell the room you are typing.
    Typing,
    /// `perform("history", {limit})`: the last messages, to the sender only.
    History {
        /// How many (default 50, at most 200).
        #[serde(default)]
        limit: Option<Loose<i64>>,
    },
}

/// What a room's stream carries.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ChatEvent<'a> {
    Joined { user: &'a str },
    Left { user: &'a str },
    Typing { user: &'a str },
    Message(&'a Message),
}

/// What only the sender gets.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Reply<'a> {
    Error {
        error: &'a str,
        /// Seconds to wait, for a refusal over a rate limit.
        #[serde(skip_serializing_if = "Option::is_none")]
        retry_after: Option<u64>,
    },
    History {
        messages: &'a [Message],
    },
    MarkedRead {
        id: i64,
    },
}

/// Why an action did not do what the client asked; the sender is told [`reason`](Self::reason).
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// The client sent something wrong. Handled: nothing is logged as a server error.
    #[error("{0}")]
    Invalid(&'static str),
    /// The client is over a rate limit and may try again after `retry_after` seconds. Handled.
    #[error("{reason} (retry after {retry_after} s)")]
    Limited {
        /// What the client is told.
        reason: &'static str,
        /// Seconds to wait.
        retry_after: u64,
    },
    /// Something failed on our side. The client is told `reason`; the error is logged.
    #[error("{reason}: {source}")]
    Failed {
        /// What the client is told.
        reason: &'static str,
        /// What failed.
        source: Box<dyn StdError + Send + Sync>,
    },
}

impl ActionError {
    /// What the sender is told.
    pub fn reason(&self) -> &'static str {
        match self {
            ActionError::Invalid(reason)
            | ActionError::Limited { reason, .. }
            | ActionError::Failed { reason, .. } => reason,
        }
    }

    /// Seconds to wait, for a refusal over a rate limit.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            ActionError::Limited { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    fn failed(reason: &'static str, source: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        ActionError::Failed {
            reason,
            source: source.into(),
        }
    }
}

/// Both channels' `rescue`: an [`ActionError`] is transmitted to the sender as
/// `{"type":"error","error":reason}`; an invalid request is then handled, a failure is passed on
/// to be logged. Data that fits none of the channel's actions (an unknown action, say) is
/// answered the same way, with serde's explanation, and handled. Other errors are passed on
/// untouched.
fn rescue_action_error<S: Send + Sync + 'static>(
    ctx: &ChannelContext<S>,
    error: ChannelError,
) -> Result<(), ChannelError> {
    if let Some(invalid) = error.invalid_action() {
        return ctx.transmit(&Reply::Error {
            error: invalid.reason(),
            retry_after: None,
        });
    }
    let Some(action_error) = error
        .source_error()
        .and_then(|e| e.downcast_ref::<ActionError>())
    else {
        return Err(error);
    };
    ctx.transmit(&Reply::Error {
        error: action_error.reason(),
        retry_after: action_error.retry_after(),
    })?;
    match action_error {
        ActionError::Invalid(_) | ActionError::Limited { .. } => Ok(()),
        ActionError::Failed { .. } => Err(error),
    }
}

/// The user a connection was identified as. `DemoConnection` always sets one.
fn current_user<S: Send + Sync + 'static>(ctx: &ChannelContext<S>) -> Result<String, ChannelError> {
    ctx.identity()
        .get(CURRENT_USER)
        .map(str::to_owned)
        .ok_or_else(|| ChannelError::msg("connection has no current_user"))
}

/// One subscription to a chat room.
#[derive(Debug)]
pub struct ChatChannel {
    room: String,
    stream: String,
    user: String,
}

#[async_trait]
impl Channel<DemoState> for ChatChannel {
    const CLASS: &'static str = "ChatChannel";
    type Params = ChatParams;
    type Action = ChatAction;

    async fn subscribed(
        ctx: &mut ChannelContext<DemoState>,
        params: ChatParams,
    ) -> Result<Self, ChannelError> {
        let user = current_user(ctx)?;
        let Some(Loose::Valid(room)) = params.room else {
            tracing::debug!(%user, "ChatChannel: missing or non-string room; rejected");
            return Err(ChannelError::reject());
        };
        if !is_valid_room(&room) {
            tracing::debug!(%user, "ChatChannel: invalid room name; rejected");
            return Err(ChannelError::reject());
        }
        if !may_enter(&ctx.state().private_rooms, &room, &user) {
            tracing::info!(%user, %room, "ChatChannel: not a member of this private room; rejected");
            return Err(ChannelError::reject());
        }
        let stream = format!("chat:{room}");
        // Presence and whisper are AnyCable's extended protocol: `@anycable/core` clients see
        // who is in the room and whisper their typing; the stock consumer's frames stay as
        // they were (it gets no presence events, and sends no whispers of its own).
        // Presence where the adapter keeps it (memory, Redis; not PostgreSQL).
        let presence = ctx.handle().keeps_presence();
        let room_stream = StreamOptions::new().presence(presence).whisper(true);
        ctx.stream_from_with_options(stream.clone(), room_stream)
            .await?;
        // Present as the signed-in user, whoever the client claims to be: on behalf of every
        // subscriber, stock consumers included, so everyone online is listed.
        if presence {
            ctx.join_presence(user.clone(), &serde_json::json!({ "name": user }))
                .await?;
        }
        // Published right after the confirmation, so the joiner sees its own `joined` too.
        ctx.broadcast(&stream, &ChatEvent::Joined { user: &user })
            .await?;
        Ok(ChatChannel { room, stream, user })
    }

    async fn perform(
        &mut self,
        ctx: &mut ChannelContext<DemoState>,
        action: ChatAction,
    ) -> Result<(), ChannelError> {
        match action {
            ChatAction::Speak { text } => {
                let text = match text {
                    Some(Loose::Valid(text)) => text,
                    Some(Loose::Invalid) => {
                        return Err(ActionError::Invalid("text must be a string").into());
                    }
                    None => String::new(),
                };
                let text = chat_text(&text).map_err(ActionError::Invalid)?;
                ctx.state()
                    .chat_limit
                    .check(&self.user)
                    .map_err(|wait| ActionError::Limited {
                        reason: "you are sending messages too fast; wait a moment",
                        retry_after: wait.secs(),
                    })?;
                let message = ctx
                    .state()
                    .db
                    .add_message(&self.room, &self.user, text)
                    .await
                    .map_err(|e| ActionError::failed("the message could not be stored", e))?;
                // Stored, but if the room cannot hear it (Redis down, say) the speaker is told
                // rather than left believing everyone saw it.
                ctx.broadcast(&self.stream, &ChatEvent::Message(&message))
                    .await
                    .map_err(|e| {
                        ActionError::failed(
                            "the message was saved but could not be delivered live; it will show in the room's history",
                            e,
                        )
                    })?;
            }
            ChatAction::Typing => {
                ctx.broadcast(&self.stream, &ChatEvent::Typing { user: &self.user })
                    .await?;
            }
            ChatAction::History { limit } => {
                let limit = match limit {
                    None => history_limit(None),
                    Some(Loose::Valid(n)) => history_limit(Some(n)),
                    Some(Loose::Invalid) => {
                        return Err(ActionError::Invalid("limit must be an integer").into());
                    }
                };
                let messages = ctx
                    .state()
                    .db
                    .recent_messages(&self.room, limit)
                    .await
                    .map_err(|e| ActionError::failed("the history could not be loaded", e))?;
                ctx.transmit(&Reply::History {
                    messages: &messages,
                })?;
            }
        }
        Ok(())
    }

    async fn rescue(
        &mut self,
        ctx: &mut ChannelContext<DemoState>,
        _action: &str,
        error: ChannelError,
    ) -> Result<(), ChannelError> {
        rescue_action_error(ctx, error)
    }

    async fn unsubscribed(
        &mut self,
        ctx: &mut ChannelContext<DemoState>,
    ) -> Result<(), ChannelError> {
        ctx.broadcast(&self.stream, &ChatEvent::Left { user: &self.user })
            .await?;
        Ok(())
    }
}

/// The identifier's params for NotificationChannel: none.
type NotificationParams = NoParams;

/// What a notification subscriber may do.
#[derive(Debug, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum NotificationAction {
    /// `perform("mark_read", {id})`: mark one of your notifications read.
    MarkRead {
        /// The notification's id.
        #[serde(default)]
        id: Option<Loose<i64>>,
    },
}

/// One user's notification feed: streams `notification:<user>`.
#[derive(Debug)]
pub struct NotificationChannel {
    user: String,
}

#[async_trait]
impl Channel<DemoState> for NotificationChannel {
    const CLASS: &'static str = "NotificationChannel";
    type Params = NotificationParams;
    type Action = NotificationAction;

    async fn subscribed(
        ctx: &mut ChannelContext<DemoState>,
        _: NoParams,
    ) -> Result<Self, ChannelError> {
        let user = current_user(ctx)?;
        ctx.stream_for(&user).await?;
        Ok(NotificationChannel { user })
    }

    async fn perform(
        &mut self,
        ctx: &mut ChannelContext<DemoState>,
        action: NotificationAction,
    ) -> Result<(), ChannelError> {
        match action {
            NotificationAction::MarkRead { id } => {
                // Someone else's id and a missing one look the same, so ids reveal nothing.
                const NOT_FOUND: ActionError = ActionError::Invalid("notification not found");
                let Some(Loose::Valid(id)) = id else {
                    return Err(NOT_FOUND.into());
                };
                let marked = ctx
                    .state()
                    .db
                    .mark_read(id, &self.user)
                    .await
                    .map_err(|e| ActionError::failed("the notification could not be updated", e))?;
                if !marked {
                    return Err(NOT_FOUND.into());
                }
                ctx.transmit(&Reply::MarkedRead { id })
            }
        }
    }

    async fn rescue(
        &mut self,
        ctx: &mut ChannelContext<DemoState>,
        _action: &str,
        error: ChannelError,
    ) -> Result<(), ChannelError> {
        rescue_action_error(ctx, error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn actions_decode_leniently() {
        let a: ChatAction = serde_json::from_value(json!({"action":"speak","text":"hi"})).unwrap();
        assert!(matches!(a, ChatAction::Speak { text: Some(Loose::Valid(t)) } if t == "hi"));
        let a: ChatAction = serde_json::from_value(json!({"action":"speak","text":5})).unwrap();
        assert!(matches!(
            a,
            ChatAction::Speak {
                text: Some(Loose::Invalid)
            }
        ));
        let a: ChatAction = serde_json::from_value(json!({"action":"speak"})).unwrap();
        assert!(matches!(a, ChatAction::Speak { text: None }));
        let a: ChatAction = serde_json::from_value(json!({"action":"history"})).unwrap();
        assert!(matches!(a, ChatAction::History { limit: None }));
        let a: ChatAction = serde_json::from_value(json!({"action":"typing","x":1})).unwrap();
        assert!(matches!(a, ChatAction::Typing));
        assert!(serde_json::from_value::<ChatAction>(json!({"action":"shout"})).is_err());
        let a: NotificationAction =
            serde_json::from_value(json!({"action":"mark_read","id":"7"})).unwrap();
        assert!(matches!(
            a,
            NotificationAction::MarkRead {
                id: Some(Loose::Invalid)
            }
        ));
    }

    #[test]
    fn events_have_the_wire_shape() {
        let m = Message {
            id: 3,
            user: "alice".into(),
            text: "hi".into(),
            sent_at: "2026-11-25T18:00:00.123Z".into(),
        };
        assert_eq!(
            serde_json::to_value(ChatEvent::Message(&m)).unwrap(),
            json!({"type":"message","id":3,"user":"alice","text":"hi","sent_at":"2026-11-25T18:00:00.123Z"})
        );
        assert_eq!(
            serde_json::to_value(ChatEvent::Joined { user: "bob" }).unwrap(),
            json!({"type":"joined","user":"bob"})
        );
        assert_eq!(
            serde_json::to_value(Reply::MarkedRead { id: 9 }).unwrap(),
            json!({"type":"marked_read","id":9})
        );
        assert_eq!(
            serde_json::to_value(Reply::History { messages: &[] }).unwrap(),
            json!({"type":"history","messages":[]})
        );
        assert_eq!(
            serde_json::to_value(Reply::Error {
                error: "no",
                retry_after: None
            })
            .unwrap(),
            json!({"type":"error","error":"no"})
        );
        assert_eq!(
            serde_json::to_value(Reply::Error {
                error: "slow down",
                retry_after: Some(3)
            })
            .unwrap(),
            json!({"type":"error","error":"slow down","retry_after":3})
        );
    }

    #[test]
    fn params_decode_leniently() {
        let p: ChatParams =
            serde_json::from_value(json!({"channel":"ChatChannel","room":"lobby"})).unwrap();
        assert_eq!(p.room, Some(Loose::Valid("lobby".to_owned())));
        let p: ChatParams = serde_json::from_value(json!({"channel":"ChatChannel"})).unwrap();
        assert_eq!(p.room, None);
        let p: ChatParams =
            serde_json::from_value(json!({"channel":"ChatChannel","room":[1]})).unwrap();
        assert_eq!(p.room, Some(Loose::Invalid));
    }
}
