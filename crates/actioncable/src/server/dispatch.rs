//! What a connection does, without its socket: open, run commands and control events, close.
//!
//! The WebSocket session (`session.rs`) feeds the [`Dispatcher`] from its socket; the
//! `testing` harness and the fuzz targets feed it directly. Both therefore run the very same subscribe, perform, callback,
//! timer and cleanup code, so a channel tested with the harness behaves the same on the wire.
//!
//! What each kind of bad input does is decided here, once: a message for an unknown
//! subscription or an action that fails is logged and ignored (as in Rails); a `subscribe`
//! that cannot succeed gets `reject_subscription` (Rails stays silent, which makes the stock
//! consumer retry every 500 ms forever).
//!
//! A connection of the extended protocol may ask for history, with its `subscribe` or alone
//! (AnyCable's `node/node.go`, `Subscribe` and `History`): the subscription is confirmed
//! first, then the missed messages are queued in order, then `confirm_history` (or, when a
//! position cannot be served, `reject_history`). The hub holds the subscription's live messages
//! meanwhile and drops any the replay already carried.
//!
//! Presence and whisper run no channel code (AnyCable's `node/node.go`, `PresenceJoin`,
//! `PresenceLeave`, `Presence`, `Whisper`): `join`/`leave` change the subscription's record in
//! its presence stream, `presence` answers who is there, and `whisper` broadcasts its data to
//! the subscription's whisper stream, skipping the sender. A subscription without such a
//! stream gets nothing: the command is logged and ignored (a refused whisper once per
//! subscription, as a client may whisper on every keystroke); a `presence` question is answered
//! with AnyCable's error frame, so the client's promise does not hang.

use super::Shared;
use crate::channel::erased::{ErasedChannel, PerformError};
use crate::channel::{ChannelContext, CommandInfo, CommandKind, Next};
use crate::connection::{ConnectionId, ConnectionRef, Identity};
use crate::error::ChannelError;
use crate::hub::{INTERNAL, Listen};
use crate::outbox::{Control, Frames, Outbox};
use crate::protocol::{
    self, Command, DisconnectReason, Extras, HistoryRequest, Identifier, PresenceJoin,
    ServerMessage,
};
use crate::pubsub::{History, Kept};
use crate::untrusted::untrusted;
use axum::extract::ws::Utf8Bytes;
use futures_util::FutureExt as _;
use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub(crate) struct Subscription<S> {
    channel: Box<dyn ErasedChannel<S>>,
    pub(crate) ctx: ChannelContext<S>,
}

/// One connection's subscriptions and the code that runs its commands: everything its
/// commands touch but the socket and the receiving end of its frame queue, so that queued
/// frames can be written while a command runs.
pub(crate) struct Dispatcher<S> {
    pub(crate) shared: Arc<Shared<S>>,
    pub(crate) connection: ConnectionRef,
    /// Boxed: the map's buckets stay small for connections with few subscriptions.
    pub(crate) subscriptions: HashMap<Arc<str>, Box<Subscription<S>>>,
    next_subscription: u64,
    /// The internal stream for remote disconnects, when the connection is identified.
    internal: Option<Arc<str>>,
    /// The extended protocol: its subscriptions may get positions and presence events.
    ext: bool,
    /// Closes the connection when its credential expires (`Identity::expiry`).
    _expiry: Option<ExpiryTimer>,
}

/// Sends the connection `disconnect` `token_expired` (`reconnect: true`) when its identity's
/// credential expires; dropped with the dispatcher, it stops. A kept session (resume) keeps its
/// timer: a credential that expires while kept ends the session.
struct ExpiryTimer(tokio::task::JoinHandle<()>);

impl ExpiryTimer {
    fn start(connection: &ConnectionRef) -> Option<ExpiryTimer> {
        let at = connection.identity().expiry()?;
        let left = at
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default();
        // Beyond what an `Instant` can hold: never, in practice.
        let deadline = tokio::time::Instant::now().checked_add(left)?;
        let outbox = connection.outbox().clone();
        Some(ExpiryTimer(tokio::spawn(async move {
            tokio::time::sleep_until(deadline).await;
            outbox.close(DisconnectReason::TokenExpired, true);
        })))
    }
}

impl Drop for ExpiryTimer {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<S: Send + Sync + 'static> Dispatcher<S> {
    /// Opens connection `id` of `identity`: registered with the node and, when identified,
    /// listening to its internal stream. Returns the dispatcher and the frames to write to
    /// the client.
    pub(crate) async fn open(
        shared: Arc<Shared<S>>,
        identity: Arc<Identity>,
        id: ConnectionId,
        ext: bool,
    ) -> (Self, Frames) {
        let config = &shared.config;
        let (outbox, frames) = Outbox::new(config.outbound_capacity, config.outbound_bytes);
        let connection = ConnectionRef::new(id, identity, outbox);
        let handle = &shared.handle;
        handle.registry().register(&connection);
        // Rails' internal channel: a remote disconnect for this identity reaches it from any node.
        let internal = if connection.identity().is_anonymous() {
            None
        } else {
            let stream = protocol::internal_stream(&connection.identity().connection_identifier());
            match handle
                .hub()
                .add(
                    &stream,
                    &Arc::from(INTERNAL),
                    &connection,
                    Listen::default(),
                )
                .await
            {
                Ok(name) => Some(name),
                Err(e) => {
                    tracing::warn!(error = %untrusted(&e), "remote disconnect is unavailable for this connection");
                    None
                }
            }
        };
        let expiry = ExpiryTimer::start(&connection);
        let dispatcher = Dispatcher {
            shared,
            connection,
            subscriptions: HashMap::new(),
            next_subscription: 1,
            internal,
            ext,
            _expiry: expiry,
        };
        (dispatcher, frames)
    }

    /// Ends every subscription, runs the connection's `disconnect` callback and unregisters.
    pub(crate) async fn close(mut self) {
        self.outbox().end();
        let subscriptions: Vec<_> = self.subscriptions.drain().collect();
        let grace = self.shared.config.presence_grace;
        for (_, sub) in subscriptions {
            self.end_subscription(sub, Some(grace)).await;
        }
        let connection = self.shared.connection.clone();
        let identity = self.connection.shared_identity().clone();
        if guard(async {
            connection.disconnect(&identity).await;
            Ok::<_, ChannelError>(())
        })
        .await
        .is_err()
        {
            tracing::error!("the connection's disconnect callback panicked");
        }
        let handle = &self.shared.handle;
        if let Some(stream) = self.internal.take() {
            handle.hub().remove(&stream, INTERNAL, self.id()).await;
        }
        handle.registry().unregister(self.id());
    }

    pub(crate) fn id(&self) -> ConnectionId {
        self.connection.id()
    }

    pub(crate) fn outbox(&self) -> &Outbox {
        self.connection.outbox()
    }

    fn send(&self, message: ServerMessage<'_>) {
        self.outbox().push(Utf8Bytes::from(message.encode()));
    }

    /// Runs one client command, inside the `around_command` callbacks if there are any.
    /// Returns its outcome, already logged.
    /// `extras` is what a `subscribe` of the extended protocol carried.
    /// With metrics on, it is counted by kind and timed by channel class.
    ///
    /// Without callbacks or metrics, the command runs as is; with them, their work is boxed,
    /// so that the plain case's future (allocated for every command) stays small.
    // Not an `async fn`: its arguments would be stored twice in its future.
    #[allow(clippy::manual_async_fn)]
    pub(crate) fn run_with(
        &mut self,
        command: Command,
        extras: Extras,
    ) -> impl Future<Output = Result<(), ChannelError>> + Send + '_ {
        async move {
            if self.shared.callbacks.is_empty() && self.shared.handle.hub().metrics().is_none() {
                return self.run_plain(command, extras).await;
            }
            Box::pin(self.run_observed(command, extras)).await
        }
    }

    /// [`run_with`](Self::run_with) with metrics or callbacks on.
    async fn run_observed(&mut self, command: Command, extras: Extras) -> Result<(), ChannelError> {
        let Some(metrics) = self.shared.handle.hub().metrics().cloned() else {
            return self.run_command(command, extras).await;
        };
        let kind = match &command {
            Command::Subscribe { .. } => 0,
            Command::Unsubscribe { .. } => 1,
            Command::Message { .. } => 2,
            Command::History { .. } => 3,
            Command::Join { .. } | Command::Leave { .. } | Command::Presence { .. } => 4,
            Command::Whisper { .. } => 5,
            _ => 6,
        };
        metrics.command(kind);
        if kind == 6 {
            return self.run_command(command, extras).await;
        }
        // A registered class only (a label never holds client text).
        let class = match &command {
            Command::Subscribe { identifier } => self
                .shared
                .identifiers
                .parse(identifier)
                .ok()
                .and_then(|p| {
                    self.shared
                        .channels
                        .get_key_value(p.channel_class())
                        .map(|(&class, _)| class)
                }),
            other => self
                .subscriptions
                .get(other.identifier())
                .map(|s| s.ctx.channel_class()),
        };
        let started = std::time::Instant::now();
        let result = self.run_command(command, extras).await;
        metrics.command_took(class.unwrap_or("unknown"), started.elapsed());
        result
    }

    async fn run_command(&mut self, command: Command, extras: Extras) -> Result<(), ChannelError> {
        let kind = match &command {
            Command::Subscribe { .. } => CommandKind::Subscribe,
            Command::Unsubscribe { .. } => CommandKind::Unsubscribe,
            Command::Message { .. } => CommandKind::Message,
            Command::History { .. } => CommandKind::History,
            Command::Join { .. } | Command::Leave { .. } | Command::Presence { .. } => {
                CommandKind::Presence
            }
            Command::Whisper { .. } => CommandKind::Whisper,
            // Nothing to do: reading it proved the client alive.
            Command::Pong => return Ok(()),
        };
        if self.shared.callbacks.is_empty() {
            return self.run_plain(command, extras).await;
        }
        let shared = self.shared.clone();
        let identifier = command.identifier().to_owned();
        let action = match &command {
            Command::Message { data, .. } => peek_action(data),
            _ => None,
        };
        let channel = self.shared.identifiers.parse(&identifier).ok();
        let identity = self.connection.shared_identity().clone();
        let info = CommandInfo {
            kind,
            identifier: &identifier,
            channel_class: channel.as_ref().map(Identifier::channel_class),
            action: action.as_deref(),
            identity: &identity,
            connection: self.connection.id(),
        };
        // Whether the command itself ran and failed: its error is logged where it happened.
        let failed = AtomicBool::new(false);
        let ran = AtomicBool::new(false);
        let mut next = Next::new(async {
            ran.store(true, Ordering::Relaxed);
            let result = self.run_plain(command, extras).await;
            failed.store(result.is_err(), Ordering::Relaxed);
            result
        });
        for callbacks in shared.callbacks.iter().rev() {
            next = Next::new(callbacks.around_command(&info, next));
        }
        let result = guard(next.run()).await;
        if let Err(e) = &result
            && !failed.load(Ordering::Relaxed)
        {
            tracing::warn!(identifier = %untrusted(&identifier), command = ?kind, error = %untrusted(&e),
                "command refused by an around_command callback");
            if kind == CommandKind::Subscribe && !ran.load(Ordering::Relaxed) {
                self.send(ServerMessage::Reject {
                    identifier: &identifier,
                });
            }
        }
        result
    }

    /// Runs one command. The commands other than `message` and `whisper` are boxed: a future
    /// is as large as its largest branch, and `subscribe`'s (the app's callback, streams,
    /// history, presence) would otherwise be allocated and moved for every action a client
    /// performs.
    // Not an `async fn`: its arguments would be stored twice in its future.
    #[allow(clippy::manual_async_fn)]
    fn run_plain(
        &mut self,
        command: Command,
        extras: Extras,
    ) -> impl Future<Output = Result<(), ChannelError>> + Send + '_ {
        async move {
            match command {
                Command::Message { identifier, data } => self.message(&identifier, &data).await,
                Command::Whisper { identifier, data } => self.whisper(&identifier, &data).await,
                Command::Subscribe { identifier } => {
                    Box::pin(self.subscribe(identifier, extras)).await
                }
                Command::Unsubscribe { identifier } => {
                    Box::pin(self.unsubscribe(&identifier)).await
                }
                Command::History {
                    identifier,
                    request,
                } => Box::pin(self.history(&identifier, &request)).await,
                Command::Join {
                    identifier,
                    presence,
                } => Box::pin(self.join(&identifier, presence)).await,
                Command::Leave { identifier } => Box::pin(self.leave(&identifier)).await,
                Command::Presence { identifier } => Box::pin(self.presence(&identifier)).await,
                Command::Pong => Ok(()),
                // Decoded by a newer protocol module than this dispatcher knows: nothing to run.
                #[allow(unreachable_patterns)]
                _ => Ok(()),
            }
        }
    }

    /// Runs a control event: a timer tick or a server-side unsubscribe.
    pub(crate) async fn control(&mut self, event: Control) {
        match event {
            Control::Tick {
                identifier,
                subscription,
                timer,
            } => {
                let Some(sub) = self
                    .subscriptions
                    .get_mut(&identifier)
                    .filter(|s| s.ctx.subscription_id() == subscription)
                else {
                    return;
                };
                let Some(name) = sub.ctx.timer_due(timer) else {
                    return;
                };
                let result = guard(sub.channel.periodic(&mut sub.ctx, name)).await;
                if let Err(PerformError { action, error }) = result {
                    tracing::error!(channel = sub.ctx.channel_class(), timer = %action, identifier = %untrusted(&identifier),
                        error = %untrusted(&error), "periodic timer {}#{} failed", sub.ctx.channel_class(), action);
                }
            }
            Control::Unsubscribe {
                identifier,
                subscription,
            } => {
                let matches = self
                    .subscriptions
                    .get(&identifier)
                    .is_some_and(|s| subscription.is_none_or(|id| s.ctx.subscription_id() == id));
                if !matches {
                    return;
                }
                if let Some(sub) = self.subscriptions.remove(&identifier) {
                    tracing::info!(channel = sub.ctx.channel_class(), identifier = %untrusted(&identifier),
                        "subscription ended by the server");
                    self.end_subscription(sub, None).await;
                    self.send(ServerMessage::Reject {
                        identifier: &identifier,
                    });
                }
            }
        }
    }

    async fn subscribe(&mut self, identifier: String, extras: Extras) -> Result<(), ChannelError> {
        let Extras { history, presence } = extras;
        // Every frame to the subscription repeats its identifier, and the identifier is kept
        // for as long as it lasts: its size is bounded like its count.
        let max_size = self.shared.config.max_identifier_size;
        if identifier.len() > max_size {
            tracing::warn!(identifier = %untrusted(&identifier), size = identifier.len(), limit = max_size,
                "rejecting a subscription: identifier too large");
            self.send(ServerMessage::Reject {
                identifier: &identifier,
            });
            return Err(ChannelError::reject_because("identifier too large"));
        }
        if self.subscriptions.contains_key(identifier.as_str()) {
            tracing::debug!(identifier = %untrusted(&identifier), "already subscribed; ignored");
            return Ok(());
        }
        let parsed = match self.shared.identifiers.parse(&identifier) {
            Ok(parsed) => parsed,
            Err(e) => {
                tracing::warn!(identifier = %untrusted(&identifier), error = %untrusted(&e), "rejecting a subscription");
                self.send(ServerMessage::Reject {
                    identifier: &identifier,
                });
                return Err(ChannelError::reject_because(e));
            }
        };
        let limit = self.shared.config.max_subscriptions;
        if self.subscriptions.len() >= limit {
            tracing::warn!(identifier = %untrusted(&identifier), limit, "rejecting a subscription: too many on this connection");
            self.send(ServerMessage::Reject {
                identifier: &identifier,
            });
            return Err(ChannelError::reject_because("too many subscriptions"));
        }
        let shared = self.shared.clone();
        let Some((&class, factory)) = shared.channels.get_key_value(parsed.channel_class()) else {
            tracing::warn!(channel = %untrusted(parsed.channel_class()), "Subscription class not found; rejecting");
            self.send(ServerMessage::Reject {
                identifier: &identifier,
            });
            return Err(ChannelError::reject_because("unknown channel"));
        };
        let subscription = self.next_subscription;
        self.next_subscription += 1;
        let mut ctx = ChannelContext::new(
            shared.handle.clone(),
            shared.state.clone(),
            parsed,
            class,
            self.connection.clone(),
            subscription,
            self.ext,
        );
        // Streams added by `subscribed` hold their live messages until the replay below.
        ctx.set_holding(history.is_some());
        let subscribed = guard(async {
            for callbacks in &shared.callbacks {
                callbacks.before_subscribe(&mut ctx).await?;
            }
            let channel = factory.subscribe(&mut ctx).await?;
            for callbacks in &shared.callbacks {
                callbacks.after_subscribe(&mut ctx).await?;
            }
            Ok::<_, ChannelError>(channel)
        })
        .await;
        // Broadcasts made during `subscribed` go out once the answer is queued, so the new
        // subscriber sees its own `joined` after `connected`, as Rails intends.
        let deferred = ctx.take_deferred_broadcasts();
        let outcome = match subscribed {
            Ok(channel) => {
                tracing::debug!(channel = class, identifier = %untrusted(&identifier), "subscribed");
                self.send(ServerMessage::Confirm {
                    identifier: &identifier,
                });
                ctx.set_holding(false);
                let key: Arc<str> = ctx.shared_identifier();
                self.connection.add_subscription(&key);
                if let Some(metrics) = shared.handle.hub().metrics() {
                    metrics.subscriptions(class, 1);
                }
                self.subscriptions
                    .insert(key, Box::new(Subscription { channel, ctx }));
                Ok(())
            }
            Err(e) => {
                if let Some(reason) = e.rejection_reason() {
                    tracing::warn!(channel = class, identifier = %untrusted(&identifier), reason = %untrusted(reason),
                        "subscription rejected");
                } else if e.is_rejection() {
                    tracing::debug!(channel = class, identifier = %untrusted(&identifier), "subscription rejected");
                } else {
                    tracing::error!(channel = class, identifier = %untrusted(&identifier), error = %untrusted(&e),
                        "subscribe failed; rejecting");
                }
                ctx.stop_everything().await;
                self.send(ServerMessage::Reject {
                    identifier: &identifier,
                });
                Err(e)
            }
        };
        let handle = &shared.handle;
        for d in deferred {
            // Failures are logged by the broadcast itself; the caller was told at `broadcast`
            // time that the message would go out after the confirmation.
            let _ = handle.publish(&d.stream, &d.json, d.except).await;
        }
        if let (Ok(()), Some(request)) = (&outcome, history) {
            self.replay(&identifier, &request).await;
        }
        if outcome.is_ok() {
            // A join from `subscribed`, then the client's own (its resubscribe carries it).
            if let Some(sub) = self.subscriptions.get_mut(identifier.as_str())
                && let Err(e) = sub.ctx.join_pending_presence().await
            {
                tracing::warn!(channel = class, identifier = %untrusted(&identifier), error = %untrusted(&e),
                    "presence join from subscribed failed");
            }
            if let Some(presence) = presence {
                let _ = self.join(&identifier, presence).await;
            }
        }
        outcome
    }

    /// `join`: the subscription's record in its presence stream, as member `presence.id`.
    async fn join(&mut self, identifier: &str, presence: PresenceJoin) -> Result<(), ChannelError> {
        let max = self.shared.config.max_presence_size;
        let Some(sub) = self.subscriptions.get_mut(identifier) else {
            tracing::warn!(identifier = %untrusted(identifier), "join: no subscription with this identifier");
            return Err(ChannelError::msg("no subscription with this identifier"));
        };
        let size = presence.id.len() + presence.info.as_ref().map_or(0, String::len);
        let refused = if sub.ctx.presence_stream().is_none() {
            Some("presence stream not found".to_owned())
        } else if size > max {
            Some(format!(
                "presence of {size} bytes is over max_presence_size ({max})"
            ))
        } else {
            None
        };
        if let Some(reason) = refused {
            tracing::warn!(identifier = %untrusted(identifier), id = %untrusted(&presence.id), reason,
                "presence join refused");
            return Err(ChannelError::msg(reason));
        }
        let result = sub.ctx.join_presence_json(presence.id, presence.info).await;
        if let Err(e) = &result {
            tracing::warn!(identifier = %untrusted(identifier), error = %untrusted(e), "presence join failed");
        }
        result
    }

    /// `leave`: the subscription's record leaves its presence stream now.
    async fn leave(&mut self, identifier: &str) -> Result<(), ChannelError> {
        let Some(sub) = self.subscriptions.get_mut(identifier) else {
            tracing::warn!(identifier = %untrusted(identifier), "leave: no subscription with this identifier");
            return Err(ChannelError::msg("no subscription with this identifier"));
        };
        if sub.ctx.presence_stream().is_none() {
            tracing::warn!(identifier = %untrusted(identifier), "presence leave refused: presence stream not found");
            return Err(ChannelError::msg("presence stream not found"));
        }
        let result = sub.ctx.end_presence(None).await;
        if let Err(e) = &result {
            tracing::warn!(identifier = %untrusted(identifier), error = %untrusted(e), "presence leave failed");
        }
        result
    }

    /// `presence`: who is in the subscription's presence stream, as an `info` frame; AnyCable's
    /// error frame when there is no such stream or the adapter fails.
    async fn presence(&mut self, identifier: &str) -> Result<(), ChannelError> {
        let Some(sub) = self.subscriptions.get(identifier) else {
            tracing::warn!(identifier = %untrusted(identifier), "presence: no subscription with this identifier");
            return Err(ChannelError::msg("no subscription with this identifier"));
        };
        let stream = sub.ctx.presence_stream().cloned();
        let store = self.shared.handle.hub().presence().cloned();
        let answer = match (stream, store) {
            (Some(stream), Some(store)) => store.members(&stream).await.map_err(|e| e.to_string()),
            _ => Err("presence stream not found".to_owned()),
        };
        let message = match &answer {
            Ok(members) => {
                let records: Vec<(&str, Option<&str>)> = members
                    .iter()
                    .map(|m| (m.id.as_str(), m.info.as_deref()))
                    .collect();
                protocol::presence_info(&records)
            }
            Err(reason) => {
                tracing::warn!(identifier = %untrusted(identifier), reason = %untrusted(reason), "presence info refused");
                protocol::PRESENCE_ERROR.to_owned()
            }
        };
        if let Ok(raw) = protocol::raw_json(&message) {
            let frame = protocol::encode_presence(identifier, raw);
            self.outbox().push(Utf8Bytes::from(frame));
        }
        answer.map(|_| ()).map_err(ChannelError::msg)
    }

    /// `whisper`: `data` to the other subscribers of the subscription's whisper stream,
    /// skipping this connection, never kept in the history. Refused (ignored; logged once per
    /// subscription) without a whisper stream or over `max_whisper_size`.
    async fn whisper(&mut self, identifier: &str, data: &str) -> Result<(), ChannelError> {
        let max = self.shared.config.max_whisper_size;
        let id = self.id();
        let Some(sub) = self.subscriptions.get_mut(identifier) else {
            tracing::warn!(identifier = %untrusted(identifier), "whisper: no subscription with this identifier");
            return Err(ChannelError::msg("no subscription with this identifier"));
        };
        let refused = match sub.ctx.whisper_stream() {
            None => Some("whisper stream not found".to_owned()),
            Some(_) if data.len() > max => Some(format!(
                "whisper of {} bytes is over max_whisper_size ({max})",
                data.len()
            )),
            Some(_) => None,
        };
        if let Some(reason) = refused {
            if sub.ctx.first_whisper_refusal() {
                tracing::warn!(channel = sub.ctx.channel_class(), identifier = %untrusted(identifier), reason,
                    "whisper refused (further refusals on this subscription are not logged)");
            }
            return Err(ChannelError::msg(reason));
        }
        let Some(stream) = sub.ctx.whisper_stream().cloned() else {
            return Ok(());
        };
        self.shared
            .handle
            .whisper(&stream, data, id)
            .await
            .map_err(ChannelError::from)
    }

    /// The `history` command: replays what an existing subscription missed.
    async fn history(
        &mut self,
        identifier: &str,
        request: &HistoryRequest,
    ) -> Result<(), ChannelError> {
        let Some(sub) = self.subscriptions.get(identifier) else {
            tracing::warn!(identifier = %untrusted(identifier), "history: no subscription with this identifier");
            return Err(ChannelError::msg("no subscription with this identifier"));
        };
        // Live messages wait from now on, so none overtakes the replay.
        let hub = self.shared.handle.hub();
        for stream in sub.ctx.positioned_streams() {
            hub.hold(stream, identifier, self.id());
        }
        self.replay(identifier, request).await;
        Ok(())
    }

    /// Queues the messages the subscription missed (its streams held), releases what was held,
    /// then `confirm_history`; `reject_history` when any position cannot be served.
    async fn replay(&mut self, identifier: &str, request: &HistoryRequest) {
        let Some(sub) = self.subscriptions.get(identifier) else {
            return;
        };
        let streams = sub.ctx.positioned_streams().to_vec();
        let shared = self.shared.clone();
        let hub = shared.handle.hub();
        let backlog = match hub.history() {
            Some(history) => fetch(history.as_ref(), &streams, request).await,
            None => Err("this cable keeps no history".to_owned()),
        };
        let id = self.id();
        let empty = Vec::new();
        let mut sent = 0;
        for (i, stream) in streams.iter().enumerate() {
            let kept = backlog
                .as_ref()
                .ok()
                .and_then(|b| b.get(i))
                .unwrap_or(&empty);
            sent += hub.replay(stream, identifier, id, kept);
        }
        match backlog {
            Ok(_) => {
                tracing::debug!(identifier = %untrusted(identifier), sent, "history replayed");
                self.send(ServerMessage::ConfirmHistory { identifier });
            }
            Err(reason) => {
                tracing::debug!(identifier = %untrusted(identifier), reason = %untrusted(&reason), "history refused");
                self.send(ServerMessage::RejectHistory { identifier });
            }
        }
    }

    async fn unsubscribe(&mut self, identifier: &str) -> Result<(), ChannelError> {
        let Some(sub) = self.subscriptions.remove(identifier) else {
            tracing::warn!(identifier = %untrusted(identifier), "unsubscribe: no subscription with this identifier");
            return Err(ChannelError::msg("no subscription with this identifier"));
        };
        self.end_subscription(sub, None).await;
        Ok(())
    }

    async fn message(&mut self, identifier: &str, data: &str) -> Result<(), ChannelError> {
        let Some(sub) = self.subscriptions.get_mut(identifier) else {
            tracing::warn!(identifier = %untrusted(identifier), "message: no subscription with this identifier");
            return Err(ChannelError::msg("no subscription with this identifier"));
        };
        let result = guard(sub.channel.message(&mut sub.ctx, data)).await;
        match result {
            Ok(()) => Ok(()),
            Err(PerformError { action, error }) => {
                let channel = sub.ctx.channel_class();
                if let Some(invalid) = error.invalid_action() {
                    // The client's mistake: a warning, with what it sent escaped.
                    tracing::warn!(channel, action = %untrusted(&action), identifier = %untrusted(identifier),
                        reason = %untrusted(invalid.reason()), "Unable to process {channel}#{}: invalid action data",
                        untrusted(&action));
                } else {
                    tracing::error!(channel, action = %untrusted(&action), identifier = %untrusted(identifier),
                        error = %untrusted(&error), "Unable to process {}#{}", channel, untrusted(&action));
                }
                Err(error)
            }
        }
    }

    /// Runs the unsubscribe callbacks and stops the subscription's streams and timers. With
    /// `grace` (the connection is gone), its presence ends that much later; without (an
    /// unsubscribe), at once.
    async fn end_subscription(&mut self, mut sub: Box<Subscription<S>>, grace: Option<Duration>) {
        let shared = self.shared.clone();
        if grace.is_some()
            && let Err(e) = sub.ctx.end_presence(grace).await
        {
            tracing::warn!(identifier = %untrusted(sub.ctx.identifier()), error = %untrusted(&e), "presence leave failed");
        }
        self.connection.remove_subscription(sub.ctx.identifier());
        let name = sub.ctx.channel_class();
        if let Some(metrics) = shared.handle.hub().metrics() {
            metrics.subscriptions(name, -1);
        }
        for callbacks in &shared.callbacks {
            if let Err(e) = guard(callbacks.before_unsubscribe(&mut sub.ctx)).await {
                tracing::error!(channel = name, identifier = %untrusted(sub.ctx.identifier()), error = %untrusted(&e),
                    "before_unsubscribe failed");
            }
        }
        if let Err(e) = guard(sub.channel.unsubscribed(&mut sub.ctx)).await {
            tracing::error!(channel = name, identifier = %untrusted(sub.ctx.identifier()), error = %untrusted(&e),
                "unsubscribed failed");
        }
        sub.ctx.stop_everything().await;
        for callbacks in &shared.callbacks {
            if let Err(e) = guard(callbacks.after_unsubscribe(&mut sub.ctx)).await {
                tracing::error!(channel = name, identifier = %untrusted(sub.ctx.identifier()), error = %untrusted(&e),
                    "after_unsubscribe failed");
            }
        }
    }
}

/// What each of `streams` missed, in their order: after the client's position where it has one,
/// else since `since`; `Err` (why) when a position cannot be served.
async fn fetch(
    history: &dyn History,
    streams: &[Arc<str>],
    request: &HistoryRequest,
) -> Result<Vec<Vec<Kept>>, String> {
    let mut backlog = Vec::with_capacity(streams.len());
    for stream in streams {
        let kept = match request.streams.iter().find(|p| *p.stream == **stream) {
            Some(p) => match history.after(stream, &p.epoch, p.offset).await {
                Ok(Some(kept)) => kept,
                Ok(None) => {
                    return Err(format!(
                        "{stream}: position {}/{} is not kept (another epoch, evicted or expired)",
                        p.epoch, p.offset
                    ));
                }
                Err(e) => return Err(format!("{stream}: {e}")),
            },
            None => match request.since {
                Some(since) => history
                    .since(stream, since)
                    .await
                    .map_err(|e| format!("{stream}: {e}"))?,
                None => Vec::new(),
            },
        };
        backlog.push(kept);
    }
    Ok(backlog)
}

/// The `action` of a message's data, for callbacks; `None` when there is none or it is not
/// a string (the command then fails on its own and says why).
fn peek_action(data: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Peek {
        action: Option<serde_json::Value>,
    }
    match serde_json::from_str::<Peek>(data).ok()?.action? {
        serde_json::Value::String(s) if !s.is_empty() => Some(s),
        _ => None,
    }
}

/// Runs user code; a panic becomes an error instead of killing the session mid-way (which
/// would leave its streams registered).
pub(crate) async fn guard<T, E: From<ChannelError>>(
    fut: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    match AssertUnwindSafe(fut).catch_unwind().await {
        Ok(result) => result,
        Err(_) => Err(ChannelError::msg("callback panicked").into()),
    }
}
