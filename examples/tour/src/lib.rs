//! A tour of the channel API beyond subscribe and perform, in one small app:
//!
//! - `ClockChannel` transmits the time on a periodic timer (Rails' `periodically`).
//! - `RoomChannel` is a chat room where what you say goes to everyone *but you*
//!   (`broadcast_except_self`), and anyone may kick a user out of the room: the kicked user's
//!   subscription is ended by the server (`reject_subscription` on the wire; the stock consumer
//!   calls `rejected()` and forgets it). The kick travels as a message on the room's control
//!   stream, which each subscriber watches through a stream filter, so it works across nodes.
//!   Its `rescue` answers data that fits none of its actions (an unknown action, a field of the
//!   wrong type) with `{"error":…,"action":…}` to the sender alone.
//! - `Audit` callbacks refuse subscriptions from users named `mallory` (`before_subscribe`)
//!   and log every command with its duration (`around_command`).
//!
//! Connections identify by `?user=` (no authentication: this is a tour, not the demo).

use actioncable::{
    AllowedOrigins, Cable, CableBuilder, Channel, ChannelContext, ChannelError, ConnectRequest,
    Connection, Identity, Reject, async_trait,
};
use actioncable::{AnyAction, Callbacks, CommandInfo, Next};
use serde::Deserialize;
use serde_json::json;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The identity key of a connection's user.
pub const USER: &str = "current_user";

/// Identifies a connection by its `?user=` query parameter.
#[derive(Debug, Clone, Copy)]
pub struct UserFromQuery;

#[async_trait]
impl Connection for UserFromQuery {
    async fn connect(&self, req: &ConnectRequest) -> Result<Identity, Reject> {
        let user = req
            .query("user")
            .filter(|u| !u.is_empty())
            .ok_or(Reject::Unauthorized)?;
        Ok(Identity::new(USER, user))
    }
}

fn user(ctx: &ChannelContext) -> String {
    ctx.identity().get(USER).unwrap_or_default().to_owned()
}

/// Transmits `{"now": <unix ms>, "tick": n}` every `every_ms` (at least 100).
#[derive(Debug)]
pub struct ClockChannel {
    ticks: u64,
}

/// `ClockChannel`'s params.
#[derive(Debug, Deserialize)]
pub struct ClockParams {
    /// Milliseconds between ticks.
    #[serde(default = "default_every")]
    pub every_ms: u64,
}

fn default_every() -> u64 {
    1000
}

#[async_trait]
impl Channel for ClockChannel {
    const CLASS: &'static str = "ClockChannel";
    type Params = ClockParams;
    type Action = AnyAction;

    async fn subscribed(ctx: &mut ChannelContext, p: ClockParams) -> Result<Self, ChannelError> {
        ctx.periodically("tick", Duration::from_millis(p.every_ms.max(100)));
        Ok(ClockChannel { ticks: 0 })
    }

    async fn periodic(
        &mut self,
        ctx: &mut ChannelContext,
        _timer: &'static str,
    ) -> Result<(), ChannelError> {
        self.ticks += 1;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        ctx.transmit(&json!({ "now": now, "tick": self.ticks }))
    }
}

/// A room: `say` reaches everyone else, `kick` ends another user's subscription.
#[derive(Debug)]
pub struct RoomChannel {
    room: String,
}

/// `RoomChannel`'s params.
#[derive(Debug, Deserialize)]
pub struct RoomParams {
    /// The room's name.
    pub room: String,
}

/// What a room's subscriber may do.
#[derive(Debug, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum RoomAction {
    /// Says `text` to everyone else in the room.
    Say {
        /// What to say.
        text: String,
    },
    /// Ends `user`'s subscriptions to the room, on every node.
    Kick {
        /// Whom to kick.
        user: String,
    },
}

fn room_stream(room: &str) -> String {
    format!("room:{room}")
}

fn control_stream(room: &str) -> String {
    format!("room:{room}:control")
}

#[async_trait]
impl Channel for RoomChannel {
    const CLASS: &'static str = "RoomChannel";
    type Params = RoomParams;
    type Action = RoomAction;

    async fn subscribed(ctx: &mut ChannelContext, p: RoomParams) -> Result<Self, ChannelError> {
        if p.room.is_empty() {
            return Err(ChannelError::reject_because("a room needs a name"));
        }
        ctx.stream_from(room_stream(&p.room)).await?;
        // Control messages are never shown to the client; a kick for this user ends this
        // subscription from the server side.
        let me = user(ctx);
        let connection = ctx.connection().clone();
        let identifier = ctx.identifier().to_owned();
        ctx.stream_from_with(control_stream(&p.room), move |message| {
            if message["kick"] == me.as_str() {
                connection.unsubscribe(&identifier);
            }
            None
        })
        .await?;
        ctx.broadcast_except_self(room_stream(&p.room), &json!({ "joined": user(ctx) }))
            .await?;
        Ok(RoomChannel { room: p.room })
    }

    async fn perform(
        &mut self,
        ctx: &mut ChannelContext,
        action: RoomAction,
    ) -> Result<(), ChannelError> {
        match action {
            RoomAction::Say { text } => {
                let message = json!({ "from": user(ctx), "text": text });
                ctx.broadcast_except_self(room_stream(&self.room), &message)
                    .await?;
            }
            RoomAction::Kick { user: kicked } => {
                let by = user(ctx);
                ctx.broadcast(control_stream(&self.room), &json!({ "kick": kicked }))
                    .await?;
                ctx.broadcast(
                    room_stream(&self.room),
                    &json!({ "kicked": kicked, "by": by }),
                )
                .await?;
            }
        }
        Ok(())
    }

    /// `perform("kick", {user: 5})` or `perform("shout")` fit none of the actions: tell the
    /// sender why instead of dropping it. Anything else is logged.
    async fn rescue(
        &mut self,
        ctx: &mut ChannelContext,
        action: &str,
        error: ChannelError,
    ) -> Result<(), ChannelError> {
        match error.invalid_action() {
            Some(invalid) => ctx.transmit(&json!({ "error": invalid.reason(), "action": action })),
            None => Err(error),
        }
    }
}

/// Callbacks for every channel: refuse `mallory`, log every command.
#[derive(Debug, Clone, Copy)]
pub struct Audit;

#[async_trait]
impl Callbacks for Audit {
    async fn before_subscribe(&self, ctx: &mut ChannelContext) -> Result<(), ChannelError> {
        if ctx.identity().get(USER) == Some("mallory") {
            return Err(ChannelError::reject_because("mallory may not subscribe"));
        }
        Ok(())
    }

    async fn around_command(
        &self,
        command: &CommandInfo<'_>,
        next: Next<'_>,
    ) -> Result<(), ChannelError> {
        let started = std::time::Instant::now();
        let result = next.run().await;
        tracing::info!(kind = ?command.kind, channel = command.channel_class, action = command.action,
            user = command.identity.get(USER), elapsed_us = started.elapsed().as_micros() as u64,
            ok = result.is_ok(), "command");
        result
    }
}

/// The tour's cable, for the binary and the tests.
pub fn cable_builder() -> CableBuilder {
    Cable::builder()
        .connection(UserFromQuery)
        .channel::<ClockChannel>()
        .channel::<RoomChannel>()
        .callbacks(Audit)
        .allowed_origins(AllowedOrigins::any())
}

#[cfg(test)]
mod tests {
    use super::*;
    use actioncable::testing::{TestCable, TestRequest};

    #[tokio::test]
    async fn say_reaches_everyone_but_the_speaker_and_a_kick_ends_a_subscription() {
        let cable = TestCable::new(cable_builder()).unwrap();
        let alice = cable
            .connect(TestRequest::new().query("user", "alice"))
            .await
            .unwrap();
        let bob = cable
            .connect(TestRequest::new().query("user", "bob"))
            .await
            .unwrap();
        let a = alice
            .subscribe::<RoomChannel>(json!({ "room": "lobby" }))
            .await;
        let b = bob
            .subscribe::<RoomChannel>(json!({ "room": "lobby" }))
            .await;
        assert!(a.is_confirmed() && b.is_confirmed());
        assert_eq!(a.transmissions(), vec![json!({ "joined": "bob" })]);
        a.perform("say", json!({ "text": "hi" })).await.unwrap();
        assert_eq!(
            b.transmissions(),
            vec![json!({ "from": "alice", "text": "hi" })]
        );
        assert_eq!(a.transmissions().len(), 1, "alice does not hear herself");

        a.perform("kick", json!({ "user": "bob" })).await.unwrap();
        bob.settle().await;
        assert!(
            b.is_rejected(),
            "bob's subscription was ended by the server"
        );
        assert!(b.streams().is_empty());
        assert!(a.is_confirmed());
        assert_eq!(
            a.transmissions().last(),
            Some(&json!({ "kicked": "bob", "by": "alice" }))
        );
    }

    #[tokio::test]
    async fn mallory_is_refused_and_anonymous_connections_rejected() {
        let cable = TestCable::new(cable_builder()).unwrap();
        assert!(cable.connect(TestRequest::new()).await.is_err());
        let mallory = cable
            .connect(TestRequest::new().query("user", "mallory"))
            .await
            .unwrap();
        let sub = mallory.subscribe::<ClockChannel>(json!({})).await;
        assert!(sub.is_rejected());
    }

    #[tokio::test(start_paused = true)]
    async fn the_clock_ticks_on_its_period() {
        let cable = TestCable::new(cable_builder()).unwrap();
        let conn = cable
            .connect(TestRequest::new().query("user", "ann"))
            .await
            .unwrap();
        let clock = conn
            .subscribe::<ClockChannel>(json!({ "every_ms": 250 }))
            .await;
        cable.advance(Duration::from_millis(1000)).await;
        let ticks: Vec<u64> = clock
            .transmissions()
            .iter()
            .filter_map(|t| t["tick"].as_u64())
            .collect();
        assert_eq!(ticks, [1, 2, 3, 4]);
    }
}
