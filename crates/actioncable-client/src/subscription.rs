//! A subscription: its typed events, and the commands it sends (`subscription.js`).
//!
//! The connection task hands each subscription its events with the message still as JSON
//! text; the subscription deserializes it into its own type when it is read. So the task needs
//! to know no type, and a message that does not fit the type is one event
//! ([`Event::Undecodable`]), not a failure of the connection.

use crate::connection::{Command, RawEvent};
use crate::consumer::DisconnectReason;
use crate::error::Error;
use crate::socket::Writer;
use crate::wire;
use futures_util::Stream;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::{mpsc, oneshot};

/// What happens to a subscription, in order.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<T> {
    /// The server confirmed the subscription (`connected()`). `reconnected` is `false` the
    /// first time, `true` on every confirmation after a reconnection (or when a resumed
    /// session kept the subscription, on the extended protocol).
    Connected {
        /// Confirmed before, on an earlier connection.
        reconnected: bool,
    },
    /// A message for the subscription (`received(data)`), a `transmit` or a stream
    /// broadcast, deserialized.
    Received(T),
    /// A message that does not deserialize into `T`: [`Error::Decode`] with the message's JSON
    /// text. The subscription goes on.
    Undecodable(Error),
    /// The server rejected the subscription (`rejected()`), or ended it. It is forgotten: no
    /// more events follow.
    Rejected,
    /// The connection ended (`disconnected({willAttemptReconnect})`). With `reconnect: true`
    /// the consumer will reconnect and resubscribe (a [`Connected`](Event::Connected) with
    /// `reconnected: true` follows); with `false` it has stopped and no more events follow.
    Disconnected {
        /// Why.
        reason: DisconnectReason,
        /// Whether the consumer will reconnect.
        reconnect: bool,
    },
    /// Extended protocol: the messages the subscription missed were all sent (the ones before
    /// this event).
    HistoryConfirmed,
    /// Extended protocol: what the subscription missed cannot be sent (too old, or the
    /// server's history was lost): a gap the application may want to fill another way.
    HistoryRejected,
}

/// A subscription to one channel: a [`Stream`] of [`Event`]s (or [`recv`](Self::recv) them
/// one by one), and the channel's actions ([`perform`](Self::perform)).
///
/// Dropping it unsubscribes. Its events end after [`Event::Rejected`], after an
/// [`Event::Disconnected`] with `reconnect: false`, and once it is unsubscribed.
pub struct Subscription<T = serde_json::Value> {
    id: u64,
    handle: SubscriptionHandle,
    events: mpsc::UnboundedReceiver<RawEvent>,
    commands: Option<mpsc::UnboundedSender<Command>>,
    kind: PhantomData<fn() -> T>,
}

impl<T> fmt::Debug for Subscription<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("identifier", &self.handle.identifier())
            .finish_non_exhaustive()
    }
}

impl<T> Subscription<T> {
    pub(crate) fn new(
        id: u64,
        handle: SubscriptionHandle,
        events: mpsc::UnboundedReceiver<RawEvent>,
        commands: mpsc::UnboundedSender<Command>,
    ) -> Subscription<T> {
        Subscription {
            id,
            handle,
            events,
            commands: Some(commands),
            kind: PhantomData,
        }
    }

    /// The identifier, as sent to the server: the params' JSON text.
    pub fn identifier(&self) -> &str {
        self.handle.identifier()
    }

    /// A cloneable handle that performs actions on this subscription from elsewhere (another
    /// task), while this one reads the events.
    pub fn handle(&self) -> SubscriptionHandle {
        self.handle.clone()
    }

    /// Performs `action` on the channel (`perform(action, data)`): `data`, a JSON object (or
    /// `()`/`null` for none), with `action` set, is sent as the `message` command's data.
    ///
    /// # Errors
    /// As [`SubscriptionHandle::perform`].
    pub async fn perform(&self, action: &str, data: impl Serialize) -> Result<(), Error> {
        self.handle.perform(action, data).await
    }

    /// Sends `data` as the `message` command's data, without an action (`send(data)`; the
    /// channel's `receive` gets it).
    ///
    /// # Errors
    /// As [`SubscriptionHandle::send`].
    pub async fn send(&self, data: impl Serialize) -> Result<(), Error> {
        self.handle.send(data).await
    }

    /// Unsubscribes (`unsubscribe()`): the subscription is forgotten, and `unsubscribe` is
    /// sent if the cable is connected and no other subscription of the consumer has the same
    /// identifier. Returns once that is done.
    pub async fn unsubscribe(mut self) {
        if let Some(commands) = self.commands.take() {
            let (done, finished) = oneshot::channel();
            let sent = commands.send(Command::Unsubscribe {
                id: self.id,
                done: Some(done),
            });
            if sent.is_ok() {
                let _ = finished.await;
            }
        }
    }
}

impl<T: DeserializeOwned> Subscription<T> {
    /// The next event; `None` once there will be no more.
    pub async fn recv(&mut self) -> Option<Event<T>> {
        self.events.recv().await.map(typed)
    }
}

impl<T: DeserializeOwned> Stream for Subscription<T> {
    type Item = Event<T>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event<T>>> {
        self.events.poll_recv(cx).map(|event| event.map(typed))
    }
}

impl<T> Drop for Subscription<T> {
    fn drop(&mut self) {
        if let Some(commands) = self.commands.take() {
            let _ = commands.send(Command::Unsubscribe {
                id: self.id,
                done: None,
            });
        }
    }
}

fn typed<T: DeserializeOwned>(event: RawEvent) -> Event<T> {
    match event {
        RawEvent::Connected { reconnected } => Event::Connected { reconnected },
        RawEvent::Message(message) => match serde_json::from_str(message.get()) {
            Ok(value) => Event::Received(value),
            Err(source) => Event::Undecodable(Error::Decode {
                message: String::from(Box::<str>::from(message)),
                source,
            }),
        },
        RawEvent::Rejected => Event::Rejected,
        RawEvent::Disconnected { reason, reconnect } => Event::Disconnected { reason, reconnect },
        RawEvent::HistoryConfirmed => Event::HistoryConfirmed,
        RawEvent::HistoryRejected => Event::HistoryRejected,
    }
}

/// Performs actions on a subscription; cloneable, usable from any task. It does not keep the
/// subscription or the connection alive.
#[derive(Clone)]
pub struct SubscriptionHandle {
    identifier: Arc<str>,
    writer: Arc<Writer>,
}

impl fmt::Debug for SubscriptionHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubscriptionHandle")
            .field("identifier", &self.identifier)
            .finish_non_exhaustive()
    }
}

impl SubscriptionHandle {
    pub(crate) fn new(identifier: Arc<str>, writer: Arc<Writer>) -> SubscriptionHandle {
        SubscriptionHandle { identifier, writer }
    }

    /// The subscription's identifier.
    pub fn identifier(&self) -> &str {
        &self.identifier
    }

    /// [`Subscription::perform`].
    ///
    /// Returns once the command is written to the socket. As with the stock consumer, nothing
    /// is queued while the cable is not connected: the command is dropped and
    /// [`Error::NotConnected`] says so (wait for the next [`Event::Connected`] to try again).
    ///
    /// # Errors
    /// [`Error::NotAnObject`] or [`Error::Serialize`] for `data` that is not a JSON object;
    /// [`Error::NotConnected`], [`Error::Closed`], or [`Error::Transport`] when the write
    /// fails.
    pub async fn perform(&self, action: &str, data: impl Serialize) -> Result<(), Error> {
        let data = serde_json::to_value(data).map_err(|source| Error::Serialize {
            what: "data",
            source,
        })?;
        let data = wire::perform_data(action, data).map_err(|e| Error::NotAnObject {
            what: "data",
            found: e.0,
        })?;
        self.writer
            .send(wire::message(&self.identifier, &data))
            .await
    }

    /// [`Subscription::send`].
    ///
    /// # Errors
    /// As [`perform`](Self::perform).
    pub async fn send(&self, data: impl Serialize) -> Result<(), Error> {
        let data = serde_json::to_value(data).map_err(|source| Error::Serialize {
            what: "data",
            source,
        })?;
        if !data.is_object() {
            return Err(Error::NotAnObject {
                what: "data",
                found: wire::kind_of(&data),
            });
        }
        self.writer
            .send(wire::message(&self.identifier, &wire::json_text(&data)))
            .await
    }
}
