//! The node's live connections: who is connected, how many may be, and whether the node is
//! shutting down.
//!
//! Every connection is admitted here before its upgrade ([`Registry::admit`], the
//! `max_connections` limit), counted against its identity once it is identified
//! ([`Registry::reserve`], `max_connections_per_identity`), registered (so the beat can ping it and
//! [`CableHandle`](crate::CableHandle) can list, find, disconnect and shut it down), and
//! unregistered when its session ends. The registry also owns the shutdown signal and the
//! tracker of session tasks that shutdown waits on. It holds [`ConnectionRef`]s only: it can
//! reach a connection's outbox, never its socket.

use crate::connection::{ConnectionId, ConnectionRef, Identity};
use crate::protocol::DisconnectReason;
use crate::sync::lock;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub(crate) struct Registry {
    connections: Mutex<HashMap<ConnectionId, ConnectionRef>>,
    /// Open connections per connection identifier (identified ones only).
    per_identity: Mutex<HashMap<String, usize>>,
    max_per_identity: usize,
    next_id: AtomicU64,
    /// Connections admitted and not yet finished, upgrades in flight included.
    admitted: AtomicUsize,
    max_connections: usize,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

/// One admitted connection; dropping it (when the session ends, or the upgrade fails) frees
/// its place.
pub(crate) struct Admission(Arc<Registry>);

impl Drop for Admission {
    fn drop(&mut self) {
        self.0.admitted.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One of an identity's places among `max_connections_per_identity`; dropping it frees it.
pub(crate) struct Reservation {
    registry: Arc<Registry>,
    /// `None` for an anonymous connection, which no identity limit applies to.
    key: Option<String>,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let Some(key) = self.key.take() else { return };
        let mut counts = lock(&self.registry.per_identity);
        if let Some(n) = counts.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&key);
            }
        }
    }
}

impl Registry {
    pub(crate) fn new(max_connections: usize, max_per_identity: usize) -> Registry {
        Registry {
            connections: Mutex::new(HashMap::new()),
            per_identity: Mutex::new(HashMap::new()),
            max_per_identity,
            next_id: AtomicU64::new(1),
            admitted: AtomicUsize::new(0),
            max_connections,
            shutdown: CancellationToken::new(),
            tracker: TaskTracker::new(),
        }
    }

    /// Admits one more connection unless `max_connections` are already open or opening.
    pub(crate) fn admit(self: &Arc<Self>) -> Option<Admission> {
        let max = self.max_connections;
        self.admitted
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Admission(self.clone()))
    }

    /// Counts one more connection of `identity` unless it already has
    /// `max_connections_per_identity` open here. Anonymous connections are not counted.
    pub(crate) fn reserve(self: &Arc<Self>, identity: &Identity) -> Option<Reservation> {
        if identity.is_anonymous() {
            return Some(Reservation {
                registry: self.clone(),
                key: None,
            });
        }
        let key = identity.connection_identifier();
        let mut counts = lock(&self.per_identity);
        let n = counts.entry(key.clone()).or_insert(0);
        if *n >= self.max_per_identity {
            return None;
        }
        *n += 1;
        drop(counts);
        Some(Reservation {
            registry: self.clone(),
            key: Some(key),
        })
    }

    pub(crate) fn max_per_identity(&self) -> usize {
        self.max_per_identity
    }

    /// The most connections this node admits.
    pub(crate) fn max_connections(&self) -> usize {
        self.max_connections
    }

    /// A fresh id for a new connection.
    pub(crate) fn next_id(&self) -> ConnectionId {
        ConnectionId(self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    /// Lists a connection. A shutdown that began while it was authenticating did not see it,
    /// so it is asked to close at once; registering first means one of the two always sees
    /// the other.
    pub(crate) fn register(&self, connection: &ConnectionRef) {
        lock(&self.connections).insert(connection.id(), connection.clone());
        if self.shutdown.is_cancelled() {
            connection
                .outbox()
                .close(DisconnectReason::ServerRestart, true);
        }
    }

    pub(crate) fn unregister(&self, id: ConnectionId) {
        lock(&self.connections).remove(&id);
    }

    pub(crate) fn get(&self, id: ConnectionId) -> Option<ConnectionRef> {
        lock(&self.connections).get(&id).cloned()
    }

    pub(crate) fn count(&self) -> usize {
        lock(&self.connections).len()
    }

    /// Every open connection, cloned out so that callers (user hooks among them) run without
    /// the registry's lock.
    pub(crate) fn all(&self) -> Vec<ConnectionRef> {
        lock(&self.connections).values().cloned().collect()
    }

    /// Whether [`begin_shutdown`](Self::begin_shutdown) was called.
    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutdown.is_cancelled()
    }

    /// Resolves when the node begins shutting down; it does not keep the registry alive.
    pub(crate) fn shutting_down(&self) -> impl Future<Output = ()> + Send + 'static {
        self.shutdown.clone().cancelled_owned()
    }

    /// Refuses new connections and asks every open one to close with `server_restart`.
    pub(crate) fn begin_shutdown(&self) {
        self.shutdown.cancel();
        for connection in lock(&self.connections).values() {
            connection
                .outbox()
                .close(DisconnectReason::ServerRestart, true);
        }
        self.tracker.close();
    }

    /// The session tasks, which shutdown waits for.
    pub(crate) fn tracker(&self) -> &TaskTracker {
        &self.tracker
    }
}
