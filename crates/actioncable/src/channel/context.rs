use crate::connection::Identity;
use crate::error::{BroadcastError, ChannelError};
use crate::hub::Outbox;
use crate::protocol::{self, Identifier};
use crate::server::{CableHandle, Shared};
use crate::stream::{self, ToStreamParam};
use axum::extract::ws::Utf8Bytes;
use serde::Serialize;
use serde_json::{Map, Value};
use std::fmt;
use std::sync::{Arc, Mutex};

/// What a channel can do and see for its subscription: transmit to its subscriber, manage
/// its streams, broadcast, and read the identity, params and app state.
pub struct ChannelContext<S = ()> {
    shared: Arc<Shared<S>>,
    identifier: Identifier,
    class: &'static str,
    outbox: Outbox,
    identity: Arc<Identity>,
    streams: Vec<Arc<str>>,
    /// `Some` while `subscribed` runs: broadcasts wait there until the confirmation is queued.
    deferred: Mutex<Option<Vec<(String, String)>>>,
}

impl<S: Send + Sync + 'static> ChannelContext<S> {
    pub(crate) fn new(
        shared: Arc<Shared<S>>,
        identifier: Identifier,
        class: &'static str,
        outbox: Outbox,
        identity: Arc<Identity>,
    ) -> ChannelContext<S> {
        ChannelContext {
            shared,
            identifier,
            class,
            outbox,
            identity,
            streams: Vec::new(),
            deferred: Mutex::new(Some(Vec::new())),
        }
    }

    /// Ends the `subscribed` phase and returns the broadcasts it deferred.
    pub(crate) fn take_deferred_broadcasts(&mut self) -> Vec<(String, String)> {
        self.deferred
            .get_mut()
            .ok()
            .and_then(Option::take)
            .unwrap_or_default()
    }

    /// The subscription's identifier, exactly as the client sent it.
    pub fn identifier(&self) -> &str {
        self.identifier.as_str()
    }

    /// The identifier's params, untyped (the `channel` key included).
    pub fn params(&self) -> &Map<String, Value> {
        self.identifier.params()
    }

    /// The channel's class name (`Channel::NAME`).
    pub fn channel_name(&self) -> &'static str {
        self.class
    }

    /// Who the connection belongs to, as `Connection::connect` decided.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The app state the cable was built with.
    pub fn state(&self) -> &S {
        &self.shared.state
    }

    /// A handle to the server, to broadcast from a spawned task, say.
    pub fn cable(&self) -> CableHandle {
        CableHandle::new(self.shared.core.clone())
    }

    /// Sends `message` to this subscription's client only (Rails' `transmit`), as
    /// `{"identifier":…,"message":…}`.
    ///
    /// # Errors
    /// When `message` does not serialize to JSON.
    pub fn transmit<T: Serialize + ?Sized>(&self, message: &T) -> Result<(), ChannelError> {
        let json = serde_json::to_string(message)?;
        self.transmit_json(&json)
    }

    /// Sends an already-encoded JSON message to this subscription's client.
    ///
    /// # Errors
    /// When `json` is not JSON.
    pub fn transmit_json(&self, json: &str) -> Result<(), ChannelError> {
        let raw = protocol::raw_json(json)?;
        let frame = protocol::encode_data(self.identifier.as_str(), raw);
        self.outbox.push(Utf8Bytes::from(frame));
        Ok(())
    }

    /// Starts streaming `stream` to this subscription (Rails' `stream_from`). Returns once the
    /// stream is live in the pub/sub adapter; calling it twice for one stream is harmless.
    ///
    /// # Errors
    /// When the pub/sub adapter cannot subscribe (the subscription is then rejected if this
    /// happens in `subscribed`).
    pub async fn stream_from(&mut self, stream: impl Into<String>) -> Result<(), ChannelError> {
        let stream: Arc<str> = Arc::from(stream.into());
        if self.streams.contains(&stream) {
            return Ok(());
        }
        let id = self.identifier.shared_str();
        self.shared.core.hub.add(&stream, &id, &self.outbox).await?;
        self.streams.push(stream);
        Ok(())
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
            self.shared
                .core
                .hub
                .remove(&stream, self.identifier.as_str(), self.outbox.id())
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
            self.shared
                .core
                .hub
                .remove(&stream, self.identifier.as_str(), self.outbox.id())
                .await;
        }
    }

    /// The streams this subscription currently streams from.
    pub fn streams(&self) -> impl Iterator<Item = &str> {
        self.streams.iter().map(|s| &**s)
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
        let json = serde_json::to_string(message)?;
        if let Ok(mut deferred) = self.deferred.lock()
            && let Some(pending) = deferred.as_mut()
        {
            pending.push((stream.as_ref().to_owned(), json));
            return Ok(());
        }
        self.cable().broadcast_json(stream.as_ref(), &json).await
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
            .field("identity", &self.identity)
            .field("streams", &self.streams)
            .finish_non_exhaustive()
    }
}
