//! [`ChannelContext`]: what a channel can do and see for its subscription.
//!
//! One context per subscription, owned by the connection's dispatcher next to the channel
//! value, and lent to every callback. It reaches the rest of the server only through the
//! [`CableHandle`] (fan-out and broadcasts) and the connection's [`ConnectionRef`] (its
//! outbox), so a channel cannot touch another connection's socket or the server's internals.

use crate::connection::{ConnectionId, ConnectionRef, Identity};
use crate::error::{BroadcastError, ChannelError};
use crate::handle::CableHandle;
use crate::hub::{Listen, StreamFilter};
use crate::outbox::Control;
use crate::protocol::{self, Identifier};
use crate::stream::{self, ToStreamParam};
use crate::sync::lock;
use crate::untrusted::untrusted;
use axum::extract::ws::Utf8Bytes;
use serde::Serialize;
use serde_json::{Map, Value};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What a channel can do and see for its subscription: transmit to its subscriber, manage
/// its streams and timers, broadcast, and read the identity, params and app state.
pub struct ChannelContext<S = ()> {
    handle: CableHandle,
    state: Arc<S>,
    identifier: Identifier,
    class: &'static str,
    connection: ConnectionRef,
    /// Tells this subscription apart from an earlier one with the same identifier.
    subscription: u64,
    streams: Vec<Arc<str>>,
    /// The streams whose kept messages carry positions to this subscriber (a subset of
    /// `streams`): what a `history` request can replay.
    positioned: Vec<Arc<str>>,
    /// Positions go to this subscriber: an extended-protocol client on a cable with history.
    positions: bool,
    /// While a `subscribe` that asked for history runs: new streams hold their live
    /// messages until the replay.
    holding: bool,
    /// The connection speaks the extended protocol: presence events can reach it.
    ext: bool,
    /// The stream opened with presence (one per subscription), and who this subscription is
    /// in it. Boxed: most subscriptions have none, and every one would carry its size.
    presence: Option<Box<PresenceStream>>,
    /// The stream opened for whispers (one per subscription).
    whisper: Option<Arc<str>>,
    /// A refused whisper was logged already: further ones are not.
    whisper_refusal_logged: bool,
    timers: Vec<Timer>,
    /// `Some` while `subscribed` runs: broadcasts wait there until the confirmation is queued.
    deferred: Mutex<Option<Vec<Deferred>>>,
}

/// How a subscription listens to one stream, for
/// [`stream_from_with_options`](ChannelContext::stream_from_with_options).
///
/// ```
/// # use actioncable::{ChannelContext, ChannelError, StreamOptions};
/// # async fn demo(ctx: &mut ChannelContext) -> Result<(), ChannelError> {
/// // Cursor positions are stale the moment they arrive: no replay after a reconnect.
/// ctx.stream_from_with_options("cursors:doc-1", StreamOptions::new().history(false)).await
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamOptions {
    history: bool,
    presence: bool,
    whisper: bool,
}

impl Default for StreamOptions {
    fn default() -> Self {
        StreamOptions {
            history: true,
            presence: false,
            whisper: false,
        }
    }
}

/// A subscription's presence stream and its record there.
struct PresenceStream {
    stream: Arc<str>,
    /// Who this subscription is present as, once it joined.
    joined: Option<Member>,
    /// A join asked for during `subscribed`, made once the subscription is confirmed.
    pending: Option<Member>,
    /// Its connection went: the record leaves after the grace unless this is cancelled first
    /// (the session resumed, or joined again).
    leaving: Option<(Member, Arc<AtomicBool>)>,
}

/// A member id and its info (JSON text).
#[derive(Clone)]
struct Member {
    id: String,
    info: Option<String>,
}

impl StreamOptions {
    /// The defaults: what [`stream_from`](ChannelContext::stream_from) does.
    pub fn new() -> StreamOptions {
        StreamOptions::default()
    }

    /// Whether this subscription follows the stream's history (default: yes, when the cable
    /// keeps history and the client speaks the extended protocol): its messages carry their
    /// positions and a reconnecting client gets what it missed. With `false` the client gets
    /// them live only, without positions, and never asks to replay them.
    pub fn history(mut self, on: bool) -> StreamOptions {
        self.history = on;
        self
    }

    /// Whether this stream tracks who is in it (default: no), AnyCable's presence: the client
    /// (`@anycable/core`'s `channel.presence.join(id, info)`, `info()`, `leave()`) or the
    /// channel ([`ChannelContext::join_presence`]) joins it as a member, and its
    /// extended-protocol subscribers get `join` and `leave` events. A member with several
    /// connections is counted once; it leaves when its last one goes, after
    /// [`presence_grace`](crate::CableBuilder::presence_grace). Read it from anywhere with
    /// [`CableHandle::presence`](crate::CableHandle::presence). One stream per subscription;
    /// stock `@rails/actioncable` consumers never see any of it.
    pub fn presence(mut self, on: bool) -> StreamOptions {
        self.presence = on;
        self
    }

    /// Whether clients may whisper on this stream (default: no): a `whisper` command's data
    /// goes to the stream's other subscribers, never back to the sender, without any channel
    /// code running (`@anycable/core`'s `channel.whisper(data)`; typing indicators, cursors).
    /// Whispers are never kept in the history, count against
    /// [`max_commands_per_second`](crate::CableBuilder::max_commands_per_second) and are
    /// limited by [`max_whisper_size`](crate::CableBuilder::max_whisper_size). One stream per
    /// subscription.
    pub fn whisper(mut self, on: bool) -> StreamOptions {
        self.whisper = on;
        self
    }
}

/// A broadcast made during `subscribed`, sent once the subscription is answered.
pub(crate) struct Deferred {
    pub(crate) stream: String,
    pub(crate) json: String,
    pub(crate) except: Option<ConnectionId>,
}

struct Timer {
    name: &'static str,
    /// Stopped by `stop_periodic` or the end of the subscription; a tick already queued is
    /// then dropped (an aborted task may not have noticed yet).
    stopped: bool,
    task: tokio::task::AbortHandle,
    /// A tick is queued and has not run yet: the next one is skipped rather than piling up.
    pending: Arc<AtomicBool>,
}

impl<S: Send + Sync + 'static> ChannelContext<S> {
    pub(crate) fn new(
        handle: CableHandle,
        state: Arc<S>,
        identifier: Identifier,
        class: &'static str,
        connection: ConnectionRef,
        subscription: u64,
        ext: bool,
    ) -> ChannelContext<S> {
        // Positions go to extended-protocol clients on a cable that keeps history.
        let positions = ext && handle.hub().history().is_some();
        ChannelContext {
            handle,
            state,
            identifier,
            class,
            connection,
            subscription,
            streams: Vec::new(),
            positioned: Vec::new(),
            positions,
            holding: false,
            ext,
            presence: None,
            whisper: None,
            whisper_refusal_logged: false,
            timers: Vec::new(),
            deferred: Mutex::new(Some(Vec::new())),
        }
    }

    pub(crate) fn subscription_id(&self) -> u64 {
        self.subscription
    }

    /// Whether streams added from now on hold their live messages for a replay.
    pub(crate) fn set_holding(&mut self, on: bool) {
        self.holding = on && self.positions;
    }

    /// The streams a `history` request can replay for this subscription.
    pub(crate) fn positioned_streams(&self) -> &[Arc<str>] {
        &self.positioned
    }

    pub(crate) fn shared_identifier(&self) -> Arc<str> {
        self.identifier.shared_str()
    }

    /// Marks timer `index` as run and returns its name, if it still exists.
    pub(crate) fn timer_due(&self, index: usize) -> Option<&'static str> {
        let timer = self.timers.get(index)?;
        timer.pending.store(false, Ordering::Release);
        (!timer.stopped).then_some(timer.name)
    }

    /// Stops every stream and timer: the subscription is over.
    pub(crate) async fn stop_everything(&mut self) {
        self.stop_timers();
        self.stop_all_streams().await;
    }

    /// Its session is parked: its positioned streams stop sending to it, without noting
    /// anything as sent (a resume replays what passed by).
    pub(crate) fn park_streams(&self) {
        let hub = self.handle.hub();
        for stream in &self.positioned {
            hub.park(stream, self.identifier.as_str(), self.connection.id());
        }
    }

    /// Its session is resumed: its positioned streams hold their live messages until the
    /// client's `history` replays what it missed.
    pub(crate) fn unpark_streams(&self) {
        let hub = self.handle.hub();
        for stream in &self.positioned {
            hub.unpark(stream, self.identifier.as_str(), self.connection.id());
        }
    }

    /// Ends the `subscribed` phase and returns the broadcasts it deferred.
    pub(crate) fn take_deferred_broadcasts(&mut self) -> Vec<Deferred> {
        lock(&self.deferred).take().unwrap_or_default()
    }

    /// The subscription's identifier, exactly as the client sent it.
    pub fn identifier(&self) -> &str {
        self.identifier.as_str()
    }

    /// The identifier's params, untyped (the `channel` key included).
    pub fn params(&self) -> &Map<String, Value> {
        self.identifier.params()
    }

    /// The channel class (`Channel::CLASS`), e.g. `"ChatChannel"`. Rails' `channel_name`
    /// (`"chat"`) is [`stream::channel_name`] of it.
    pub fn channel_class(&self) -> &'static str {
        self.class
    }

    /// Who the connection belongs to, as `Connection::connect` decided.
    pub fn identity(&self) -> &Identity {
        self.connection.identity()
    }

    /// The connection this subscription belongs to: its id, its other subscriptions, and
    /// connection-level [`transmit`](ConnectionRef::transmit).
    pub fn connection(&self) -> &ConnectionRef {
        &self.connection
    }

    /// The app state the cable was built with.
    pub fn state(&self) -> &S {
        &self.state
    }

    /// The cable's handle, to broadcast from a spawned task, say.
    pub fn handle(&self) -> CableHandle {
        self.handle.clone()
    }

    /// Sends `message` to this subscription's client only (Rails' `transmit`), as
    /// `{"identifier":…,"message":…}`.
    ///
    /// # Errors
    /// When `message` does not serialize to JSON.
    pub fn transmit<T: Serialize + ?Sized>(&self, message: &T) -> Result<(), ChannelError> {
        let frame = protocol::encode_data_of(self.identifier.as_str(), message)?;
        self.connection.outbox().push(Utf8Bytes::from(frame));
        Ok(())
    }

    /// Sends an already-encoded JSON message to this subscription's client.
    ///
    /// # Errors
    /// When `json` is not JSON.
    pub fn transmit_json(&self, json: &str) -> Result<(), ChannelError> {
        let raw = protocol::raw_json(json)?;
        let frame = protocol::encode_data(self.identifier.as_str(), raw);
        self.connection.outbox().push(Utf8Bytes::from(frame));
        Ok(())
    }

    /// Ends this subscription from the server side, something Rails cannot do: once the
    /// current action (or `subscribed`) returns, the subscription's `unsubscribed` callbacks
    /// run, its streams and timers stop, and the client is sent `reject_subscription` for its
    /// identifier — the stock consumer then forgets the subscription and calls its
    /// `rejected()`. Called from `subscribed`, the subscription is confirmed first.
    pub fn unsubscribe(&self) {
        self.connection.outbox().push_control(Control::Unsubscribe {
            identifier: self.identifier.shared_str(),
            subscription: Some(self.subscription),
        });
    }

    /// Calls [`Channel::periodic`](super::Channel::periodic) with `name` every `every` while
    /// the subscription lasts (Rails' `periodically`). The first call comes after one period.
    /// Ticks run on the connection's task in order with its commands; when the channel is
    /// still busy with one, the next is skipped rather than queued. Periods under a
    /// millisecond count as one millisecond.
    ///
    /// Tests control these timers with Tokio's paused clock (see the `testing` module).
    pub fn periodically(&mut self, name: &'static str, every: Duration) {
        let every = every.max(Duration::from_millis(1));
        let index = self.timers.len();
        let pending = Arc::new(AtomicBool::new(false));
        let outbox = self.connection.outbox().clone();
        let identifier = self.identifier.shared_str();
        let subscription = self.subscription;
        let flag = pending.clone();
        let task = tokio::spawn(async move {
            let start = tokio::time::Instant::now() + every;
            let mut ticker = tokio::time::interval_at(start, every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                ticker.tick().await;
                if flag.swap(true, Ordering::AcqRel) {
                    continue;
                }
                let tick = Control::Tick {
                    identifier: identifier.clone(),
                    subscription,
                    timer: index,
                };
                if !outbox.push_control(tick) {
                    return;
                }
            }
        });
        self.timers.push(Timer {
            name,
            stopped: false,
            task: task.abort_handle(),
            pending,
        });
    }

    /// Stops the timer started as `name`.
    pub fn stop_periodic(&mut self, name: &str) {
        for timer in self.timers.iter_mut().filter(|t| t.name == name) {
            timer.stopped = true;
            timer.task.abort();
        }
    }

    /// The names of this subscription's running timers.
    pub fn timers(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.timers.iter().filter(|t| !t.stopped).map(|t| t.name)
    }

    fn stop_timers(&mut self) {
        for timer in &mut self.timers {
            timer.stopped = true;
            timer.task.abort();
        }
    }

    /// Starts streaming `stream` to this subscription (Rails' `stream_from`). Returns once the
    /// stream is live in the pub/sub adapter; calling it twice for one stream is harmless.
    ///
    /// # Errors
    /// When the pub/sub adapter cannot subscribe (the subscription is then rejected if this
    /// happens in `subscribed`).
    pub async fn stream_from(&mut self, stream: impl Into<String>) -> Result<(), ChannelError> {
        self.add_stream(stream.into(), None, StreamOptions::default())
            .await
    }

    /// Streams `stream` to this subscription with `options` (see [`StreamOptions`]).
    ///
    /// # Errors
    /// As [`stream_from`](Self::stream_from).
    pub async fn stream_from_with_options(
        &mut self,
        stream: impl Into<String>,
        options: StreamOptions,
    ) -> Result<(), ChannelError> {
        self.add_stream(stream.into(), None, options).await
    }

    async fn add_stream(
        &mut self,
        stream: String,
        filter: Option<StreamFilter>,
        options: StreamOptions,
    ) -> Result<(), ChannelError> {
        if self.streams.iter().any(|s| **s == *stream) {
            return Ok(());
        }
        if options.presence {
            if self.handle.hub().presence().is_none() {
                return Err(ChannelError::msg(
                    "this cable's pub/sub adapter keeps no presence",
                ));
            }
            if self.presence.is_some() {
                return Err(ChannelError::msg("a subscription has one presence stream"));
            }
        }
        if options.whisper && self.whisper.is_some() {
            return Err(ChannelError::msg("a subscription whispers on one stream"));
        }
        let id = self.identifier.shared_str();
        let positions = self.positions && options.history;
        let listen = Listen {
            filter,
            positions,
            hold: positions && self.holding,
            presence: options.presence && self.ext,
        };
        // The hub's own copy of the name, shared by every subscriber of the stream.
        let stream = self
            .handle
            .hub()
            .add(&stream, &id, &self.connection, listen)
            .await?;
        if positions {
            self.positioned.push(stream.clone());
        }
        if options.presence {
            self.presence = Some(Box::new(PresenceStream {
                stream: stream.clone(),
                joined: None,
                pending: None,
                leaving: None,
            }));
        }
        if options.whisper {
            self.whisper = Some(stream.clone());
        }
        // Most subscriptions have a stream or two: grow one slot at a time at first, not four.
        if self.streams.len() < 4 {
            self.streams.reserve_exact(1);
        }
        self.streams.push(stream);
        Ok(())
    }

    /// Streams `stream` to this subscription through `filter` (Rails' `stream_from` with a
    /// block): for each message `filter` returns what this subscriber gets instead, or `None`
    /// to skip it. It runs on the broadcasting task for every message, so keep it quick; a
    /// filtered stream costs one JSON parse per message and one encoding per subscriber, where
    /// plain streams share one encoding.
    ///
    /// Calling it for a stream already streamed does nothing; stop it first to change filters.
    ///
    /// ```
    /// # use actioncable::{ChannelContext, ChannelError};
    /// # use serde_json::json;
    /// # async fn demo(ctx: &mut ChannelContext) -> Result<(), ChannelError> {
    /// let me = ctx.identity().get("current_user").unwrap_or_default().to_owned();
    /// // Skip your own messages and tag the others.
    /// ctx.stream_from_with("chat:lobby", move |msg| {
    ///     (msg["user"] != me.as_str()).then(|| json!({ "from_other": msg }))
    /// }).await
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`stream_from`](Self::stream_from).
    pub async fn stream_from_with<F>(
        &mut self,
        stream: impl Into<String>,
        filter: F,
    ) -> Result<(), ChannelError>
    where
        F: Fn(&Value) -> Option<Value> + Send + Sync + 'static,
    {
        self.add_stream(
            stream.into(),
            Some(Arc::new(filter)),
            StreamOptions::default(),
        )
        .await
    }

    /// Streams the stream of `model` in this channel (Rails' `stream_for`), named by
    /// [`stream::stream_for`].
    ///
    /// # Errors
    /// As [`stream_from`](Self::stream_from).
    pub async fn stream_for<M: ToStreamParam + ?Sized>(
        &mut self,
        model: &M,
    ) -> Result<(), ChannelError> {
        self.stream_from(stream::stream_for(self.class, model))
            .await
    }

    /// Stops streaming `stream` (Rails' `stop_stream_from`).
    pub async fn stop_stream_from(&mut self, stream: &str) {
        if let Some(i) = self.streams.iter().position(|s| &**s == stream) {
            let stream = self.streams.swap_remove(i);
            self.positioned.retain(|s| *s != stream);
            self.forget_stream(&stream).await;
            self.handle
                .hub()
                .remove(&stream, self.identifier.as_str(), self.connection.id())
                .await;
        }
    }

    /// Stops streaming the stream of `model` (Rails' `stop_stream_for`).
    pub async fn stop_stream_for<M: ToStreamParam + ?Sized>(&mut self, model: &M) {
        self.stop_stream_from(&stream::stream_for(self.class, model))
            .await;
    }

    /// Stops every stream of this subscription (Rails' `stop_all_streams`).
    pub async fn stop_all_streams(&mut self) {
        for stream in std::mem::take(&mut self.streams) {
            self.forget_stream(&stream).await;
            self.handle
                .hub()
                .remove(&stream, self.identifier.as_str(), self.connection.id())
                .await;
        }
    }

    /// The streams this subscription currently streams from.
    pub fn streams(&self) -> impl Iterator<Item = &str> {
        self.streams.iter().map(|s| &**s)
    }

    /// A stream stops: presence there ends now (an explicit stop is no disconnect), and
    /// whispering there stops.
    async fn forget_stream(&mut self, stream: &Arc<str>) {
        if self.presence.as_ref().is_some_and(|p| p.stream == *stream) {
            if let Err(e) = self.end_presence(None).await {
                tracing::warn!(stream = %untrusted(stream), error = %untrusted(&e), "presence leave failed");
            }
            self.presence = None;
        }
        if self.whisper.as_ref() == Some(stream) {
            self.whisper = None;
        }
    }

    /// Joins this subscription's presence stream (the one opened with
    /// [`StreamOptions::presence`]) as member `id`, with `info` shown to the others (AnyCable's
    /// `join_presence(id:, info:)`): on behalf of the connection's user, whatever the client
    /// does. Everyone in the stream gets a `join` event if `id` was not there yet. Called from
    /// `subscribed`, it joins right after the confirmation. Joining again as the same `id`
    /// changes nothing.
    ///
    /// ```
    /// # use actioncable::{ChannelContext, ChannelError, StreamOptions};
    /// # use serde_json::json;
    /// # async fn demo(ctx: &mut ChannelContext) -> Result<(), ChannelError> {
    /// ctx.stream_from_with_options("chat:lobby", StreamOptions::new().presence(true)).await?;
    /// let user = ctx.identity().get("current_user").unwrap_or("guest").to_owned();
    /// ctx.join_presence(user.clone(), &json!({ "name": user })).await
    /// # }
    /// ```
    ///
    /// # Errors
    /// No presence stream, already joined as another id, an `info` that does not serialize,
    /// or the adapter failing.
    pub async fn join_presence<T: Serialize + ?Sized>(
        &mut self,
        id: impl Into<String>,
        info: &T,
    ) -> Result<(), ChannelError> {
        let info = serde_json::to_string(info)?;
        let info = (info != "null").then_some(info);
        self.join_presence_json(id.into(), info).await
    }

    /// Leaves this subscription's presence stream at once (AnyCable's `leave_presence`); the
    /// others get `leave` if this was the member's last connection. Nothing when not joined.
    ///
    /// # Errors
    /// When the adapter fails.
    pub async fn leave_presence(&mut self) -> Result<(), ChannelError> {
        self.end_presence(None).await
    }

    /// The member this subscription is present as, if it joined.
    pub fn presence_id(&self) -> Option<&str> {
        Some(self.presence.as_ref()?.joined.as_ref()?.id.as_str())
    }

    /// Joins as `id` with `info` (JSON text); deferred while `subscribed` runs.
    pub(crate) async fn join_presence_json(
        &mut self,
        id: String,
        info: Option<String>,
    ) -> Result<(), ChannelError> {
        let deferring = lock(&self.deferred).is_some();
        let key = self.presence_key();
        let store = self.handle.hub().presence().cloned();
        let Some(presence) = self.presence.as_mut() else {
            return Err(ChannelError::msg("no presence stream on this subscription"));
        };
        match &presence.joined {
            Some(joined) if joined.id == id => return Ok(()),
            Some(joined) => {
                return Err(ChannelError::msg(format!(
                    "already present as {:?}; leave first",
                    joined.id
                )));
            }
            None => {}
        }
        let member = Member { id, info };
        if deferring {
            presence.pending = Some(member);
            return Ok(());
        }
        let store = store.ok_or_else(|| ChannelError::msg("no presence on this cable"))?;
        // Back before the grace ran out: the record stays, no leave, no second join. As
        // another member, the old record goes first.
        if let Some((before, cancel)) = presence.leaving.take() {
            cancel.store(true, Ordering::Release);
            if before.id != member.id {
                store.leave(&presence.stream, &key).await?;
            }
        }
        store
            .join(&presence.stream, &key, &member.id, member.info.as_deref())
            .await?;
        presence.joined = Some(member);
        Ok(())
    }

    /// Makes the join asked for during `subscribed`, now that the subscription is confirmed.
    pub(crate) async fn join_pending_presence(&mut self) -> Result<(), ChannelError> {
        match self.presence.as_mut().and_then(|p| p.pending.take()) {
            Some(m) => self.join_presence_json(m.id, m.info).await,
            None => Ok(()),
        }
    }

    /// Ends this subscription's presence: at once (`None`), or `grace` from now on a task of
    /// its own (the connection is gone; coming back in time keeps the member present, see
    /// [`resume_presence`](Self::resume_presence)).
    pub(crate) async fn end_presence(
        &mut self,
        grace: Option<Duration>,
    ) -> Result<(), ChannelError> {
        let key = self.presence_key();
        let Some(presence) = self.presence.as_mut() else {
            return Ok(());
        };
        presence.pending = None;
        let Some(member) = presence.joined.take() else {
            return Ok(());
        };
        let Some(store) = self.handle.hub().presence().cloned() else {
            return Ok(());
        };
        let stream = presence.stream.clone();
        match grace.filter(|g| !g.is_zero()) {
            None => {
                store.leave(&stream, &key).await?;
            }
            Some(grace) => {
                let cancel = Arc::new(AtomicBool::new(false));
                presence.leaving = Some((member, cancel.clone()));
                tokio::spawn(async move {
                    tokio::time::sleep(grace).await;
                    if cancel.load(Ordering::Acquire) {
                        return;
                    }
                    if let Err(e) = store.leave(&stream, &key).await {
                        tracing::warn!(stream = %untrusted(&stream), error = %e,
                            "presence leave failed (the adapter's TTL will end it)");
                    }
                });
            }
        }
        Ok(())
    }

    /// Its session is resumed: present again as before the socket dropped, the pending leave
    /// cancelled (or, when the grace already ran out, joined anew).
    pub(crate) async fn resume_presence(&mut self) -> Result<(), ChannelError> {
        let Some((member, _)) = self.presence.as_ref().and_then(|p| p.leaving.as_ref()) else {
            return Ok(());
        };
        let (id, info) = (member.id.clone(), member.info.clone());
        self.join_presence_json(id, info).await
    }

    /// This subscription's record in its presence stream: unique on this node (connection
    /// and subscription numbers); the adapter makes it unique among nodes.
    fn presence_key(&self) -> String {
        format!("{}.{}", self.connection.id(), self.subscription)
    }

    /// The presence stream, if the channel opened one.
    pub(crate) fn presence_stream(&self) -> Option<&Arc<str>> {
        self.presence.as_ref().map(|p| &p.stream)
    }

    /// The whisper stream, if the channel opened one.
    pub(crate) fn whisper_stream(&self) -> Option<&Arc<str>> {
        self.whisper.as_ref()
    }

    /// Whether a refused whisper should be logged: the first time only.
    pub(crate) fn first_whisper_refusal(&mut self) -> bool {
        !std::mem::replace(&mut self.whisper_refusal_logged, true)
    }

    /// Broadcasts `message` to every subscriber of `stream`, on every node
    /// (Rails' `ActionCable.server.broadcast`).
    ///
    /// Called from `subscribed`, the broadcast is published right after the client's
    /// `confirm_subscription` (or rejection) is queued, so the new subscriber receives its own
    /// announcement after `connected()`; a failure to publish it then is logged.
    ///
    /// # Errors
    /// When the message does not serialize or the pub/sub adapter does not accept it.
    pub async fn broadcast<T: Serialize + ?Sized>(
        &self,
        stream: impl AsRef<str>,
        message: &T,
    ) -> Result<(), BroadcastError> {
        self.broadcast_inner(stream.as_ref(), message, None).await
    }

    /// Broadcasts `message` to every subscriber of `stream` except this connection, so the
    /// sender does not get its own message back (opt-in; see
    /// [`CableHandle::broadcast_except`]).
    ///
    /// # Errors
    /// As [`broadcast`](Self::broadcast).
    pub async fn broadcast_except_self<T: Serialize + ?Sized>(
        &self,
        stream: impl AsRef<str>,
        message: &T,
    ) -> Result<(), BroadcastError> {
        let me = self.connection.id();
        self.broadcast_inner(stream.as_ref(), message, Some(me))
            .await
    }

    async fn broadcast_inner<T: Serialize + ?Sized>(
        &self,
        stream: &str,
        message: &T,
        except: Option<ConnectionId>,
    ) -> Result<(), BroadcastError> {
        let json = serde_json::to_string(message)?;
        if let Some(pending) = lock(&self.deferred).as_mut() {
            pending.push(Deferred {
                stream: stream.to_owned(),
                json,
                except,
            });
            return Ok(());
        }
        self.handle.publish(stream, &json, except).await
    }

    /// Broadcasts to the stream of `model` in this channel (Rails' `broadcast_to`).
    ///
    /// # Errors
    /// As [`broadcast`](Self::broadcast).
    pub async fn broadcast_to<M: ToStreamParam + ?Sized, T: Serialize + ?Sized>(
        &self,
        model: &M,
        message: &T,
    ) -> Result<(), BroadcastError> {
        self.broadcast(stream::stream_for(self.class, model), message)
            .await
    }
}

impl<S> fmt::Debug for ChannelContext<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelContext")
            .field("identifier", &self.identifier)
            .field("identity", self.connection.identity())
            .field("streams", &self.streams)
            .finish_non_exhaustive()
    }
}

impl<S> Drop for ChannelContext<S> {
    fn drop(&mut self) {
        for timer in &self.timers {
            timer.task.abort();
        }
    }
}
