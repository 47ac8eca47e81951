//! Channels: what a subscription does (Rails' `ApplicationCable::Channel`).
//!
//! A client subscribes with an identifier such as `{"channel":"ChatChannel","room":"lobby"}`.
//! The server finds the channel registered under `"ChatChannel"`, deserializes the identifier
//! into the channel's [`Params`](Channel::Params) and calls [`subscribed`](Channel::subscribed),
//! which builds the subscription's channel value (one per subscription, like a Rails channel
//! instance) or rejects it. Actions the client performs (`subscription.perform("speak", {…})`)
//! arrive as the channel's typed [`Action`](Channel::Action), a serde enum tagged by `action`;
//! data without an `action` goes to [`receive`](Channel::receive). When the subscription ends,
//! [`unsubscribed`](Channel::unsubscribed) runs and its streams are stopped.
//!
//! Channel code talks to its subscriber and to streams through the [`ChannelContext`]:
//! `transmit`, `stream_from`, `stream_for`, `stop_stream_from`, `stop_all_streams`,
//! `broadcast`, `broadcast_to`, plus the connection's [`Identity`](crate::Identity) and the
//! app state `S` given to [`Cable::builder_with_state`](crate::Cable::builder_with_state).
//!
//! ```
//! use actioncable::{async_trait, Channel, ChannelContext, ChannelError};
//! use serde::Deserialize;
//! use serde_json::json;
//!
//! #[derive(Deserialize)]
//! struct Room { room: String }
//!
//! #[derive(Deserialize)]
//! #[serde(tag = "action", rename_all = "snake_case")]
//! enum ChatAction { Speak { text: String } }
//!
//! struct ChatChannel { room: String }
//!
//! #[async_trait]
//! impl Channel for ChatChannel {
//!     const CLASS: &'static str = "ChatChannel";
//!     type Params = Room;
//!     type Action = ChatAction;
//!
//!     async fn subscribed(ctx: &mut ChannelContext, params: Room) -> Result<Self, ChannelError> {
//!         if params.room.is_empty() {
//!             return Err(ChannelError::reject());
//!         }
//!         ctx.stream_from(format!("chat:{}", params.room)).await?;
//!         Ok(ChatChannel { room: params.room })
//!     }
//!
//!     async fn perform(&mut self, ctx: &mut ChannelContext, action: ChatAction) -> Result<(), ChannelError> {
//!         match action {
//!             ChatAction::Speak { text } => {
//!                 let user = ctx.identity().get("current_user").unwrap_or("anonymous").to_owned();
//!                 ctx.broadcast(format!("chat:{}", self.room), &json!({ "user": user, "text": text })).await?;
//!             }
//!         }
//!         Ok(())
//!     }
//! }
//! ```

mod callbacks;
mod context;
pub(crate) mod erased;

pub use callbacks::{Callbacks, CommandInfo, CommandKind, Next};
pub use context::{ChannelContext, StreamOptions};

use crate::error::ChannelError;
use async_trait::async_trait;
use serde::de::{DeserializeOwned, Deserializer, Error as _};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A channel: one value per subscription. See the [module docs](self).
///
/// `S` is the app state the server was built with (`()` when there is none); a channel
/// implements `Channel<AppState>` to reach it through [`ChannelContext::state`].
#[async_trait]
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a channel for a cable with state `{S}`",
    note = "implement `actioncable::Channel<{S}>` for `{Self}` (with `#[async_trait]`), or build the cable with the state this channel expects"
)]
pub trait Channel<S: Send + Sync + 'static = ()>: Sized + Send + 'static {
    /// The class name clients put in the identifier's `channel` key, e.g. `"ChatChannel"`.
    /// `stream_for` derives stream names from it the way Rails does.
    const CLASS: &'static str;

    /// The identifier's params (the `channel` key included; unknown keys are ignored unless
    /// the type denies them). Use [`NoParams`] when there are none, `serde_json::Value` for
    /// untyped access. Params that do not deserialize reject the subscription.
    type Params: DeserializeOwned + Send;

    /// The actions clients may perform: typically an enum with `#[serde(tag = "action")]`.
    /// Use [`AnyAction`] for untyped dispatch. Data that does not deserialize (an unknown
    /// action, a field of the wrong type) goes to [`rescue`](Channel::rescue) as an
    /// [`InvalidAction`](crate::InvalidAction).
    ///
    /// A typed action is read straight from the message's text, so a field of a struct action
    /// may be a `Box<serde_json::value::RawValue>` (not within a `tag`ged enum, whose fields
    /// serde buffers): a payload the channel passes on (transmits, broadcasts) without parsing
    /// it, byte for byte as the client sent it. An [`AnyAction`]
    /// parses the whole object into a map instead (a few allocations per key and string).
    type Action: DeserializeOwned + Send + 'static;

    /// The subscription starts: set up streams and return the channel, or reject with
    /// [`ChannelError::reject`]. Any error rejects (and is logged). The client gets
    /// `confirm_subscription` only after this returns and every stream it started is live.
    async fn subscribed(
        ctx: &mut ChannelContext<S>,
        params: Self::Params,
    ) -> Result<Self, ChannelError>;

    /// The client performed an action.
    async fn perform(
        &mut self,
        ctx: &mut ChannelContext<S>,
        action: Self::Action,
    ) -> Result<(), ChannelError> {
        let _ = (ctx, action);
        Err(ChannelError::msg("this channel has no actions"))
    }

    /// The client sent data without an `action` (Rails' `receive`).
    async fn receive(
        &mut self,
        ctx: &mut ChannelContext<S>,
        data: Value,
    ) -> Result<(), ChannelError> {
        let _ = (ctx, data);
        Err(ChannelError::msg(
            "this channel does not implement `receive`",
        ))
    }

    /// The subscription ended (the client unsubscribed, the server ended it, or the
    /// connection closed). Streams and timers are stopped after this returns.
    async fn unsubscribed(&mut self, ctx: &mut ChannelContext<S>) -> Result<(), ChannelError> {
        let _ = ctx;
        Ok(())
    }

    /// A timer started with [`ChannelContext::periodically`] is due (Rails'
    /// `periodically :method, every:`); `timer` is the name it was started with. Runs on the
    /// connection's task, in order with the client's commands, so it may use `&mut self`.
    async fn periodic(
        &mut self,
        ctx: &mut ChannelContext<S>,
        timer: &'static str,
    ) -> Result<(), ChannelError> {
        let _ = ctx;
        Err(ChannelError::msg(format_args!(
            "timer `{timer}` is due but the channel does not implement `periodic`"
        )))
    }

    /// An action, `receive` or timer returned `error` (Rails' `rescue_from`), or the client's
    /// data fit none of the channel's actions: an unknown action, a field of the wrong type
    /// ([`ChannelError::invalid_action`] returns it, with serde's explanation). Return `Ok` when
    /// it is handled — after transmitting a friendly error to the client, say — or the error to
    /// have it logged with the channel, action and identifier (invalid data at warning level,
    /// anything else as an error). Either way the subscription and the connection carry on.
    ///
    /// ```
    /// # use actioncable::{async_trait, Channel, ChannelContext, ChannelError, NoParams, AnyAction};
    /// # struct Orders;
    /// # #[async_trait]
    /// # impl Channel for Orders {
    /// #     const CLASS: &'static str = "Orders";
    /// #     type Params = NoParams;
    /// #     type Action = AnyAction;
    /// #     async fn subscribed(_: &mut ChannelContext, _: NoParams) -> Result<Self, ChannelError> { Ok(Orders) }
    /// async fn rescue(&mut self, ctx: &mut ChannelContext, action: &str, error: ChannelError) -> Result<(), ChannelError> {
    ///     tracing::warn!(action, %error, "order action failed");
    ///     ctx.transmit(&serde_json::json!({ "error": "Something went wrong, please retry" }))
    /// }
    /// # }
    /// ```
    async fn rescue(
        &mut self,
        ctx: &mut ChannelContext<S>,
        action: &str,
        error: ChannelError,
    ) -> Result<(), ChannelError> {
        let _ = (ctx, action);
        Err(error)
    }
}

/// Params for a channel that takes none; accepts any identifier.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize)]
pub struct NoParams {}

/// An untyped action: its name plus the whole data object (the `action` key included, as
/// Rails passes it).
///
/// ```
/// use actioncable::AnyAction;
/// let a: AnyAction = serde_json::from_str(r#"{"action":"echo","n":1}"#).unwrap();
/// assert_eq!(a.name, "echo");
/// assert_eq!(a.data["n"], 1);
/// assert_eq!(a.data["action"], "echo");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct AnyAction {
    /// The `action` value.
    pub name: String,
    /// The whole data object.
    pub data: Map<String, Value>,
}

impl<'de> Deserialize<'de> for AnyAction {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let data = Map::<String, Value>::deserialize(deserializer)?;
        let name = match data.get("action") {
            Some(Value::String(s)) => s.clone(),
            _ => return Err(D::Error::missing_field("action")),
        };
        Ok(AnyAction { name, data })
    }
}
