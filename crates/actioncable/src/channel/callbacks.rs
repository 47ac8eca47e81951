//! Callbacks shared by every channel (Rails' `before_subscribe`, `after_unsubscribe`, … on
//! `ApplicationCable::Channel`, and 7.1's `around_command` on the connection).
//!
//! In Rails these live on a base class every channel inherits from. Here they are one value
//! registered on the builder with [`CableBuilder::callbacks`](crate::CableBuilder::callbacks):
//! they see the subscription's [`ChannelContext`] (so they can filter on
//! [`channel_class`](ChannelContext::channel_class)), and a channel needs no base type to get
//! them. What is specific to one channel belongs in its own `subscribed`, `perform` and
//! `unsubscribed`.

use super::ChannelContext;
use crate::connection::{ConnectionId, Identity};
use crate::error::ChannelError;
use async_trait::async_trait;
use std::fmt;
use std::future::Future;
use std::pin::Pin;

/// Callbacks around subscriptions and commands, for every channel.
///
/// ```
/// use actioncable::{async_trait, Cable, ChannelContext, ChannelError};
/// use actioncable::{Callbacks, CommandInfo, Next};
///
/// /// Only signed-in users may subscribe to anything but `PublicChannel`; every command is timed.
/// struct AppCallbacks;
///
/// #[async_trait]
/// impl Callbacks for AppCallbacks {
///     async fn before_subscribe(&self, ctx: &mut ChannelContext) -> Result<(), ChannelError> {
///         if ctx.channel_class() != "PublicChannel" && ctx.identity().is_anonymous() {
///             return Err(ChannelError::reject_because("sign in first"));
///         }
///         Ok(())
///     }
///
///     async fn around_command(&self, command: &CommandInfo<'_>, next: Next<'_>) -> Result<(), ChannelError> {
///         let started = std::time::Instant::now();
///         let result = next.run().await;
///         tracing::debug!(kind = ?command.kind, elapsed = ?started.elapsed(), "command");
///         result
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let cable = Cable::builder().callbacks(AppCallbacks).build().unwrap();
/// # }
/// ```
#[async_trait]
pub trait Callbacks<S: Send + Sync + 'static = ()>: Send + Sync + 'static {
    /// Before the channel's `subscribed`; an error rejects the subscription (the channel is
    /// never created).
    async fn before_subscribe(&self, ctx: &mut ChannelContext<S>) -> Result<(), ChannelError> {
        let _ = ctx;
        Ok(())
    }

    /// After a successful `subscribed`, before the client is told `confirm_subscription`; an
    /// error rejects the subscription after all (its streams are stopped).
    async fn after_subscribe(&self, ctx: &mut ChannelContext<S>) -> Result<(), ChannelError> {
        let _ = ctx;
        Ok(())
    }

    /// Before the channel's `unsubscribed`. An error is logged; the subscription ends anyway.
    async fn before_unsubscribe(&self, ctx: &mut ChannelContext<S>) -> Result<(), ChannelError> {
        let _ = ctx;
        Ok(())
    }

    /// After `unsubscribed`, once the subscription's streams and timers are stopped. An error
    /// is logged.
    async fn after_unsubscribe(&self, ctx: &mut ChannelContext<S>) -> Result<(), ChannelError> {
        let _ = ctx;
        Ok(())
    }

    /// Wraps every command the client sends (subscribe, unsubscribe, message): call
    /// `next.run().await` to run it, or return an error without calling it to refuse it (the
    /// refusal is logged; a refused `subscribe` is rejected). Whatever `next` returns is the
    /// command's outcome, already logged; pass it on.
    async fn around_command(
        &self,
        command: &CommandInfo<'_>,
        next: Next<'_>,
    ) -> Result<(), ChannelError> {
        let _ = command;
        next.run().await
    }
}

/// Which command a client sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CommandKind {
    /// `subscribe`
    Subscribe,
    /// `unsubscribe`
    Unsubscribe,
    /// `message` (perform an action or send data)
    Message,
    /// `history` (extended protocol): replay what a subscription missed
    History,
    /// `join`, `leave` or `presence` (extended protocol): a subscription's presence
    Presence,
    /// `whisper`: data to the other subscribers of a stream, no channel code involved
    Whisper,
}

/// What [`Callbacks::around_command`] knows about the command it wraps.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct CommandInfo<'a> {
    /// The command.
    pub kind: CommandKind,
    /// The subscription's identifier, as the client sent it.
    pub identifier: &'a str,
    /// The channel class named by the identifier, when it names one.
    pub channel_class: Option<&'a str>,
    /// For a message, the `action` it performs (`None` for data without one).
    pub action: Option<&'a str>,
    /// Who sent it.
    pub identity: &'a Identity,
    /// From which connection.
    pub connection: ConnectionId,
}

/// The rest of the command chain; [`run`](Next::run) it once, or drop it to skip the command.
pub struct Next<'a> {
    inner: Pin<Box<dyn Future<Output = Result<(), ChannelError>> + Send + 'a>>,
}

impl<'a> Next<'a> {
    pub(crate) fn new(
        inner: impl Future<Output = Result<(), ChannelError>> + Send + 'a,
    ) -> Next<'a> {
        Next {
            inner: Box::pin(inner),
        }
    }

    /// Runs the command (and any callbacks inside this one).
    ///
    /// # Errors
    /// The command's own error (an action that failed, a subscription that was rejected),
    /// already logged.
    pub async fn run(self) -> Result<(), ChannelError> {
        self.inner.await
    }
}

impl fmt::Debug for Next<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Next").finish_non_exhaustive()
    }
}
