//! Moving broadcasts between server nodes: the [`PubSub`] adapter trait.
//!
//! A broadcast goes to the adapter (`publish`), and the adapter hands every message of a
//! subscribed stream to the local fan-out through [`Inbound`]. With [`MemoryPubSub`] that is a
//! direct call inside one process; the Redis adapter (crate `actioncable-redis`) publishes to
//! Redis and delivers what its one subscriber connection receives, which connects many nodes.
//!
//! The adapter only hears about streams, never about subscribers: the server calls
//! [`subscribe`](PubSub::subscribe) when a stream's first local subscriber appears and
//! [`unsubscribe`](PubSub::unsubscribe) when its last one leaves. For one stream these two
//! calls never overlap and always alternate, so an adapter needs no reference counting of its
//! own. A subscription is confirmed to the client only once `subscribe` has returned `Ok`,
//! which is how "a broadcast made right after `confirm_subscription` is never missed" holds
//! across nodes.
//!
//! Stream history (the extended protocol's replay) is an optional part of the contract: an
//! adapter that keeps it answers [`PubSub::history`] with a [`History`], which stores each
//! broadcast at a [`Position`] and delivers it with that position through
//! [`Inbound::deliver_at`]. Adapters that keep none leave the default, and deliver through
//! [`Inbound::deliver`] as before (see `history.rs`).
//!
//! Presence (who is in a stream) is optional too: an adapter that keeps it answers
//! [`PubSub::presence`] with a [`Presence`], which sends each join and leave to every node
//! through [`Inbound::presence_event`] (see `presence.rs`).
//!
//! Two optional parts serve the cable's metrics. A sampled broadcast comes with the time it was
//! made ([`PubSub::publish_traced`]); an adapter that can carry that time to the other nodes
//! delivers it there with [`Inbound::deliver_traced`], and one that cannot leaves the default,
//! which publishes the message as usual (the broadcast is then simply not measured). A backend
//! without message headers carries it as a [`TraceNote`] (see `trace.rs`). And an
//! adapter tells the cable about trouble with its backend through [`Inbound::report`] (an
//! [`AdapterEvent`]): the cable counts it, and the adapter needs nothing but this contract.

mod backoff;
pub(crate) mod history;
mod memory;
pub(crate) mod presence;
mod trace;

pub use backoff::Backoff;
pub use history::{History, HistorySettings, Kept, Position};
pub use memory::MemoryPubSub;
pub use presence::{Presence, PresenceEvent, PresenceMember, PresenceSettings};
pub use trace::{PendingTrace, TRACE_CHANNEL, TraceNote};

use crate::error::PubSubError;
use crate::metrics::Trace;
use async_trait::async_trait;
use std::fmt;
use std::sync::{Arc, Weak};
use std::time::SystemTime;

/// Carries broadcasts between server nodes. The server owns one, as `Arc<dyn PubSub>`.
///
/// See the [module docs](self) for the contract.
#[async_trait]
pub trait PubSub: Send + Sync + fmt::Debug + 'static {
    /// Called once when the server is built, inside the Tokio runtime. Messages for subscribed
    /// streams go to `inbound`. An adapter that needs a background task spawns it here.
    ///
    /// # Errors
    /// A configuration the adapter cannot work with.
    fn start(&self, inbound: Inbound) -> Result<(), PubSubError>;

    /// The first local subscriber of `stream` appeared; return once messages published to it
    /// from now on will reach `inbound`.
    async fn subscribe(&self, stream: &str) -> Result<(), PubSubError>;

    /// The last local subscriber of `stream` left.
    async fn unsubscribe(&self, stream: &str) -> Result<(), PubSubError>;

    /// Sends `payload` (one JSON document) to every node subscribed to `stream`, this one
    /// included. An `Err` means the message was not accepted and reached no one.
    async fn publish(&self, stream: &str, payload: &str) -> Result<(), PubSubError>;

    /// Publishes like [`publish`](Self::publish) a broadcast whose delivery latency the cable
    /// samples, made at `sent` (wall clock, the publishing node's). An adapter that can carry
    /// `sent` to every node delivers the message there with [`Inbound::deliver_traced`]; what
    /// other nodes and clients receive must not change. The default drops `sent`.
    ///
    /// # Errors
    /// As [`publish`](Self::publish).
    async fn publish_traced(
        &self,
        stream: &str,
        payload: &str,
        sent: SystemTime,
    ) -> Result<(), PubSubError> {
        let _ = sent;
        self.publish(stream, payload).await
    }

    /// Stops the adapter's background work.
    async fn shutdown(&self) -> Result<(), PubSubError> {
        Ok(())
    }

    /// Whether the adapter can publish and receive right now: an adapter with a connection
    /// to a server reports its state (down while it reconnects); an in-process one is always
    /// connected, the default. The node's readiness ([`CableHandle::readiness`]) follows it,
    /// so a load balancer sends new clients elsewhere while broadcasts cannot get through.
    ///
    /// [`CableHandle::readiness`]: crate::CableHandle::readiness
    fn is_connected(&self) -> bool {
        true
    }

    /// Keeps stream history with `settings` and returns it; called once, before
    /// [`start`](Self::start), when the cable is built with history on. The default keeps none:
    /// the build then fails with this error.
    ///
    /// # Errors
    /// [`PubSubError::Unsupported`] when the adapter keeps no history.
    fn history(&self, settings: &HistorySettings) -> Result<Arc<dyn History>, PubSubError> {
        let _ = settings;
        Err(PubSubError::Unsupported(format!(
            "{self:?} keeps no stream history"
        )))
    }

    /// Keeps presence with `settings` and returns it; called once, before
    /// [`start`](Self::start), when the cable is built. The default keeps none: channels then
    /// cannot open a stream with presence.
    ///
    /// # Errors
    /// [`PubSubError::Unsupported`] when the adapter keeps no presence.
    fn presence(&self, settings: &PresenceSettings) -> Result<Arc<dyn Presence>, PubSubError> {
        let _ = settings;
        Err(PubSubError::Unsupported(format!(
            "{self:?} keeps no presence"
        )))
    }
}

/// A shared adapter is an adapter: the builder takes an `Arc<dyn PubSub>` (chosen by
/// configuration at runtime) as readily as a concrete one.
#[async_trait]
impl<P: PubSub + ?Sized> PubSub for Arc<P> {
    fn start(&self, inbound: Inbound) -> Result<(), PubSubError> {
        (**self).start(inbound)
    }

    async fn subscribe(&self, stream: &str) -> Result<(), PubSubError> {
        (**self).subscribe(stream).await
    }

    async fn unsubscribe(&self, stream: &str) -> Result<(), PubSubError> {
        (**self).unsubscribe(stream).await
    }

    async fn publish(&self, stream: &str, payload: &str) -> Result<(), PubSubError> {
        (**self).publish(stream, payload).await
    }

    async fn publish_traced(
        &self,
        stream: &str,
        payload: &str,
        sent: SystemTime,
    ) -> Result<(), PubSubError> {
        (**self).publish_traced(stream, payload, sent).await
    }

    async fn shutdown(&self) -> Result<(), PubSubError> {
        (**self).shutdown().await
    }

    fn is_connected(&self) -> bool {
        (**self).is_connected()
    }

    fn history(&self, settings: &HistorySettings) -> Result<Arc<dyn History>, PubSubError> {
        (**self).history(settings)
    }

    fn presence(&self, settings: &PresenceSettings) -> Result<Arc<dyn Presence>, PubSubError> {
        (**self).presence(settings)
    }
}

/// What an [`Inbound`] delivers to: the server's local fan-out implements it. The adapter
/// contract names only this, so adapters (and this module) need nothing from the rest of the
/// server.
pub(crate) trait Deliver: Send + Sync {
    /// Fans `payload` out to the local subscribers of `stream`, at `position` in its history
    /// when it was kept, followed for latency when it has a `trace`; how many it reached.
    fn deliver(
        &self,
        stream: &str,
        payload: &str,
        position: Option<&Position>,
        trace: Option<Trace>,
    ) -> usize;

    /// The adapter reported `event`.
    fn adapter_event(&self, event: AdapterEvent);

    /// Hands a presence change of `stream` to its local presence subscribers; how many.
    fn presence_event(&self, stream: &str, event: PresenceEvent<'_>) -> usize;
}

/// Where an adapter delivers the messages of subscribed streams.
///
/// It holds the fan-out weakly: the fan-out owns the adapter, and the adapter must not keep
/// it alive once the cable is gone.
#[derive(Clone)]
pub struct Inbound {
    target: Weak<dyn Deliver>,
}

impl Inbound {
    pub(crate) fn new<D: Deliver + 'static>(target: &Arc<D>) -> Inbound {
        let target: Weak<D> = Arc::downgrade(target);
        Inbound {
            target: target as Weak<dyn Deliver>,
        }
    }

    /// Delivers `payload` to every local subscriber of `stream` and returns how many
    /// subscriptions it reached. A payload that is not JSON is dropped with an error log, as
    /// Rails does.
    pub fn deliver(&self, stream: &str, payload: &str) -> usize {
        self.deliver_at(stream, payload, None)
    }

    /// Delivers `payload` as [`deliver`](Self::deliver) does, with its `position` in the
    /// stream's history (`None`: not kept, delivered live only). A [`History`] calls this for
    /// what it stored, on every node, in position order per stream.
    pub fn deliver_at(&self, stream: &str, payload: &str, position: Option<&Position>) -> usize {
        match self.target.upgrade() {
            Some(target) => target.deliver(stream, payload, position, None),
            None => 0,
        }
    }

    /// Delivers `payload` as [`deliver_at`](Self::deliver_at) does, for a broadcast made at
    /// `sent` (what [`PubSub::publish_traced`] was given, carried here by the adapter): with
    /// metrics on, the time from `sent` to the write of some of its frames is measured.
    pub fn deliver_traced(
        &self,
        stream: &str,
        payload: &str,
        position: Option<&Position>,
        sent: SystemTime,
    ) -> usize {
        match self.target.upgrade() {
            Some(target) => target.deliver(stream, payload, position, Some(Trace::at(sent))),
            None => 0,
        }
    }

    /// Tells the cable about the adapter's backend: an error, or a connection made again after
    /// one was lost. With metrics on, the cable counts them
    /// (`actioncable_adapter_errors_total`, `actioncable_adapter_reconnects_total`); the
    /// adapter still logs what happened itself.
    ///
    /// ```
    /// use actioncable::pubsub::{AdapterEvent, Inbound};
    ///
    /// fn connection_lost(inbound: &Inbound) {
    ///     inbound.report(AdapterEvent::Error);
    /// }
    /// ```
    pub fn report(&self, event: AdapterEvent) {
        if let Some(target) = self.target.upgrade() {
            target.adapter_event(event);
        }
    }

    /// Tells the local presence subscribers of `stream` that a member joined or left; returns
    /// how many it reached. A [`Presence`] calls this on every node for each join and leave.
    pub fn presence_event(&self, stream: &str, event: PresenceEvent<'_>) -> usize {
        match self.target.upgrade() {
            Some(target) => target.presence_event(stream, event),
            None => 0,
        }
    }
}

/// What an adapter tells the cable about its backend, through [`Inbound::report`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AdapterEvent {
    /// Something failed: a lost connection, a command refused or timed out.
    Error,
    /// The adapter is connected again after losing its backend (and resubscribed).
    Reconnected,
}

impl fmt::Debug for Inbound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inbound").finish_non_exhaustive()
    }
}
