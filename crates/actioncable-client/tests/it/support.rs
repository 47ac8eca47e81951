//! The fixtures of the consumer's tests: a connection that names its user from `?user=`, the
//! channels the tests subscribe to, and bounded waits for events. Servers, the proxy and the
//! Rails app come from `cable-test-support`.

pub(crate) use cable_test_support::*;

use actioncable::{
    AnyAction, Cable, CableBuilder, Channel, ChannelContext, ChannelError, ConnectRequest,
    Connection, Identity, Reject, async_trait,
};
use actioncable_client::{Event, Subscription};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Mutex;

/// How many times `ChatChannel#subscribed` ran, per room (rooms are unique per test).
static SUBSCRIBED: Mutex<Option<HashMap<String, usize>>> = Mutex::new(None);

/// How many times a subscription to `room` was made on the server.
pub(crate) fn subscribed_count(room: &str) -> usize {
    let counts = SUBSCRIBED.lock().unwrap();
    counts
        .as_ref()
        .and_then(|c| c.get(room).copied())
        .unwrap_or(0)
}

/// `?user=<name>` names the connection's user; `banned` is rejected; none is anonymous.
#[derive(Debug, Clone, Copy)]
pub(crate) struct UserConnection;

#[async_trait]
impl Connection for UserConnection {
    async fn connect(&self, req: &ConnectRequest) -> Result<Identity, Reject> {
        match req.query("user").as_deref() {
            Some("banned") => Err(Reject::Unauthorized),
            Some(user) => Ok(Identity::new("current_user", user)),
            None => Ok(Identity::anonymous()),
        }
    }
}

/// `EchoChannel`: every action's data comes back to its sender (`{"action":…, …}`), as in
/// `examples/echo`.
pub(crate) struct EchoChannel;

#[async_trait]
impl Channel for EchoChannel {
    const CLASS: &'static str = "EchoChannel";
    type Params = actioncable::NoParams;
    type Action = AnyAction;

    async fn subscribed(
        _: &mut ChannelContext,
        _: actioncable::NoParams,
    ) -> Result<Self, ChannelError> {
        Ok(EchoChannel)
    }

    async fn perform(
        &mut self,
        ctx: &mut ChannelContext,
        action: AnyAction,
    ) -> Result<(), ChannelError> {
        ctx.transmit(&action.data)
    }
}

#[derive(Deserialize)]
pub(crate) struct Room {
    room: String,
}

#[derive(Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub(crate) enum ChatAction {
    Speak { text: String },
}

/// `ChatChannel` (`{room}`): streams `chat:<room>`; `speak` broadcasts `{user, text}` there;
/// an empty room is rejected.
pub(crate) struct ChatChannel {
    stream: String,
}

#[async_trait]
impl Channel for ChatChannel {
    const CLASS: &'static str = "ChatChannel";
    type Params = Room;
    type Action = ChatAction;

    async fn subscribed(ctx: &mut ChannelContext, params: Room) -> Result<Self, ChannelError> {
        if params.room.is_empty() {
            return Err(ChannelError::reject());
        }
        *SUBSCRIBED
            .lock()
            .unwrap()
            .get_or_insert_default()
            .entry(params.room.clone())
            .or_default() += 1;
        let stream = format!("chat:{}", params.room);
        ctx.stream_from(stream.clone()).await?;
        Ok(ChatChannel { stream })
    }

    async fn perform(
        &mut self,
        ctx: &mut ChannelContext,
        action: ChatAction,
    ) -> Result<(), ChannelError> {
        let ChatAction::Speak { text } = action;
        let user = ctx.identity().get("current_user").unwrap_or("anonymous");
        ctx.broadcast(&self.stream, &json!({ "user": user, "text": text }))
            .await?;
        Ok(())
    }
}

/// What the chat broadcasts.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct Said {
    pub(crate) user: String,
    pub(crate) text: String,
}

/// The echo of `perform("echo", {text})`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct Echoed {
    pub(crate) text: String,
}

/// The test cable: [`UserConnection`], [`EchoChannel`], [`ChatChannel`].
pub(crate) fn cable() -> CableBuilder {
    Cable::builder()
        .connection(UserConnection)
        .channel::<EchoChannel>()
        .channel::<ChatChannel>()
}

/// The next event, within [`WAIT`].
pub(crate) async fn next<T: DeserializeOwned>(sub: &mut Subscription<T>) -> Event<T> {
    next_within(WAIT, sub).await
}

/// The next event, within `limit`.
pub(crate) async fn next_within<T: DeserializeOwned>(
    limit: std::time::Duration,
    sub: &mut Subscription<T>,
) -> Event<T> {
    within_for(limit, "the next event", sub.recv())
        .await
        .expect("the subscription's events ended")
}

/// Waits (bounded by [`WHOLE_TEST`]) for the `Connected` of a reconnection, which the stock
/// consumer's schedule may put up to 18 s after the disconnect; panics on any other event.
pub(crate) async fn reconnected<T: DeserializeOwned + std::fmt::Debug>(sub: &mut Subscription<T>) {
    match next_within(WHOLE_TEST, sub).await {
        Event::Connected { reconnected: true } => {}
        other => panic!("expected Connected {{ reconnected: true }}, got {other:?}"),
    }
}

/// Waits for `Connected` and returns its `reconnected`; panics on any other event.
pub(crate) async fn connected<T: DeserializeOwned + std::fmt::Debug>(
    sub: &mut Subscription<T>,
) -> bool {
    match next(sub).await {
        Event::Connected { reconnected } => reconnected,
        other => panic!("expected Connected, got {other:?}"),
    }
}

/// The next `Received` message, skipping nothing; panics on any other event.
pub(crate) async fn received<T: DeserializeOwned + std::fmt::Debug>(
    sub: &mut Subscription<T>,
) -> T {
    match next(sub).await {
        Event::Received(message) => message,
        other => panic!("expected Received, got {other:?}"),
    }
}
