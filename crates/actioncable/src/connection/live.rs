//! A live connection as the rest of the server refers to it: its [`ConnectionId`], the
//! cloneable [`ConnectionRef`] handle, and the [`ConnectionInfo`] snapshot for statistics.
//!
//! A `ConnectionRef` pairs the connection's fixed facts (id, identity, start time), the list of
//! its confirmed subscriptions, and its [`Outbox`]. Everything that reaches a connection from
//! outside its session task — a transmit from an HTTP handler, a server-side unsubscribe, a
//! remote disconnect — goes through the outbox, so a handle never touches the socket and stays
//! valid (and harmless) after the connection has closed.

use super::Identity;
use crate::error::ChannelError;
use crate::outbox::{Control, Outbox};
use crate::protocol::DisconnectReason;
use crate::sync::lock;
use serde::Serialize;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// Identifies one connection on this node, for as long as the process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(pub(crate) u64);

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A live connection: its id and identity, its subscriptions, and a way to send it frames.
/// Cheap to clone; sending to a connection that has closed does nothing.
#[derive(Clone)]
pub struct ConnectionRef {
    inner: Arc<Inner>,
    outbox: Outbox,
}

struct Inner {
    id: ConnectionId,
    identity: Arc<Identity>,
    started_at: SystemTime,
    /// Identifiers of the confirmed subscriptions, oldest first.
    subscriptions: Mutex<Vec<Arc<str>>>,
}

impl ConnectionRef {
    pub(crate) fn new(id: ConnectionId, identity: Arc<Identity>, outbox: Outbox) -> ConnectionRef {
        let inner = Inner {
            id,
            identity,
            started_at: SystemTime::now(),
            subscriptions: Mutex::new(Vec::new()),
        };
        ConnectionRef {
            inner: Arc::new(inner),
            outbox,
        }
    }

    /// The connection's id on this node.
    pub fn id(&self) -> ConnectionId {
        self.inner.id
    }

    /// Who the connection belongs to.
    pub fn identity(&self) -> &Identity {
        &self.inner.identity
    }

    pub(crate) fn shared_identity(&self) -> &Arc<Identity> {
        &self.inner.identity
    }

    /// When the connection was accepted.
    pub fn started_at(&self) -> SystemTime {
        self.inner.started_at
    }

    /// The identifiers of its confirmed subscriptions, oldest first.
    pub fn subscriptions(&self) -> Vec<String> {
        lock(&self.inner.subscriptions)
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    pub(crate) fn add_subscription(&self, identifier: &Arc<str>) {
        let mut subscriptions = lock(&self.inner.subscriptions);
        // Most connections have a few subscriptions: one slot at a time at first, not four.
        if subscriptions.len() < 4 {
            subscriptions.reserve_exact(1);
        }
        subscriptions.push(identifier.clone());
    }

    pub(crate) fn remove_subscription(&self, identifier: &str) {
        lock(&self.inner.subscriptions).retain(|s| &**s != identifier);
    }

    pub(crate) fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// Sends `message` as a frame of its own, outside any subscription (Rails'
    /// `connection.transmit`): the stock consumer ignores frames it has no use for; custom
    /// clients can read them.
    ///
    /// # Errors
    /// When `message` does not serialize to JSON.
    pub fn transmit<T: Serialize + ?Sized>(&self, message: &T) -> Result<(), ChannelError> {
        let json = crate::protocol::to_exact_string(message)?;
        self.outbox.push(json.into());
        Ok(())
    }

    /// Asks the connection to close after sending `disconnect` with reason `remote`.
    pub fn disconnect(&self, reconnect: bool) {
        self.outbox.close(DisconnectReason::Remote, reconnect);
    }

    /// Ends one subscription from the server side: its `unsubscribed` callbacks run and the
    /// client is sent `reject_subscription` for it (the stock consumer forgets it and calls
    /// its `rejected()`). Returns whether the connection was still open to be asked.
    pub fn unsubscribe(&self, identifier: &str) -> bool {
        self.outbox.push_control(Control::Unsubscribe {
            identifier: Arc::from(identifier),
            subscription: None,
        })
    }

    /// A snapshot for statistics.
    pub fn info(&self) -> ConnectionInfo {
        ConnectionInfo {
            id: self.id(),
            identity: self.identity().clone(),
            started_at: self.started_at(),
            subscriptions: self.subscriptions(),
            queued_frames: self.outbox.queued(),
        }
    }
}

impl fmt::Debug for ConnectionRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionRef")
            .field("id", &self.inner.id)
            .field("identity", &self.inner.identity)
            .finish_non_exhaustive()
    }
}

/// A snapshot of one open connection, from [`CableHandle::connections`](crate::CableHandle::connections).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConnectionInfo {
    /// The connection's id on this node.
    pub id: ConnectionId,
    /// Who it belongs to.
    pub identity: Identity,
    /// When it was accepted.
    pub started_at: SystemTime,
    /// Identifiers of its confirmed subscriptions.
    pub subscriptions: Vec<String>,
    /// Frames waiting to be written to it.
    pub queued_frames: usize,
}
