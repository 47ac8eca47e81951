//! Local fan-out: which sessions listen to which stream, under which identifier.
//!
//! This is the hot path of every broadcast. A message for a stream is encoded once per
//! identifier listening to it (every subscriber of `{"channel":"ChatChannel","room":"lobby"}`
//! gets the same bytes) and handed to each session's bounded [`Outbox`] without waiting:
//! a full outbox marks its session as too slow instead of stalling the others. The map lock is
//! a plain `RwLock` that is never held across an `.await`.
//!
//! The hub also tells the pub/sub adapter when a stream's first local subscriber appears and
//! its last leaves. Each stream has a *gate* (an async mutex around "is the adapter subscribed")
//! so that these calls never overlap for one stream, and a subscriber returns from
//! [`Hub::add`] only once the adapter confirmed the stream is live.

use crate::protocol::{self, DisconnectReason};
use crate::pubsub::PubSub;
use axum::extract::ws::Utf8Bytes;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::{Notify, mpsc};

/// A session's outbound queue plus its "please close" signal.
#[derive(Clone)]
pub(crate) struct Outbox(Arc<Link>);

struct Link {
    id: u64,
    tx: mpsc::Sender<Utf8Bytes>,
    close: Mutex<Option<(DisconnectReason, bool)>>,
    notify: Notify,
    dropped: AtomicU64,
}

impl Outbox {
    pub(crate) fn new(id: u64, capacity: usize) -> (Outbox, mpsc::Receiver<Utf8Bytes>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let link = Link {
            id,
            tx,
            close: Mutex::new(None),
            notify: Notify::new(),
            dropped: AtomicU64::new(0),
        };
        (Outbox(Arc::new(link)), rx)
    }

    pub(crate) fn id(&self) -> u64 {
        self.0.id
    }

    /// Queues a frame without waiting. A full queue means the client reads too slowly: the
    /// session is asked to close (reason `too_slow`) rather than letting memory grow or
    /// making the broadcaster wait.
    pub(crate) fn push(&self, frame: Utf8Bytes) -> bool {
        match self.0.tx.try_send(frame) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.0.dropped.fetch_add(1, Ordering::Relaxed);
                self.close(DisconnectReason::TooSlow, true);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Asks the session to send `disconnect` with `reason` and close. The first reason wins.
    pub(crate) fn close(&self, reason: DisconnectReason, reconnect: bool) {
        if let Ok(mut slot) = self.0.close.lock() {
            slot.get_or_insert((reason, reconnect));
        }
        self.0.notify.notify_one();
    }

    /// Resolves when [`close`](Self::close) was called, with the reason.
    pub(crate) async fn closed(&self) -> (DisconnectReason, bool) {
        loop {
            if let Some(r) = self.0.close.lock().ok().and_then(|s| s.clone()) {
                return r;
            }
            self.0.notify.notified().await;
        }
    }

    pub(crate) fn dropped(&self) -> u64 {
        self.0.dropped.load(Ordering::Relaxed)
    }
}

struct StreamEntry {
    groups: HashMap<Arc<str>, Vec<Outbox>>,
    gate: Arc<tokio::sync::Mutex<bool>>,
}

/// The identifier under which a session listens to its own internal stream. No subscription
/// can have it: an empty string is not a JSON object.
pub(crate) const INTERNAL: &str = "";

pub(crate) struct Hub {
    streams: RwLock<HashMap<Arc<str>, StreamEntry>>,
    pubsub: Arc<dyn PubSub>,
}

impl Hub {
    pub(crate) fn new(pubsub: Arc<dyn PubSub>) -> Hub {
        Hub {
            streams: RwLock::new(HashMap::new()),
            pubsub,
        }
    }

    pub(crate) fn pubsub(&self) -> &Arc<dyn PubSub> {
        &self.pubsub
    }

    /// Adds a subscriber and returns once the stream is live in the adapter.
    pub(crate) async fn add(
        &self,
        stream: &str,
        identifier: &Arc<str>,
        outbox: &Outbox,
    ) -> Result<(), crate::PubSubError> {
        let gate = {
            let mut streams = self.write();
            let entry = streams
                .entry(Arc::from(stream))
                .or_insert_with(|| StreamEntry {
                    groups: HashMap::new(),
                    gate: Arc::new(tokio::sync::Mutex::new(false)),
                });
            entry
                .groups
                .entry(identifier.clone())
                .or_default()
                .push(outbox.clone());
            entry.gate.clone()
        };
        let mut live = gate.lock().await;
        if !*live {
            if let Err(e) = self.pubsub.subscribe(stream).await {
                drop(live);
                self.remove(stream, identifier, outbox.id()).await;
                return Err(e);
            }
            *live = true;
        }
        Ok(())
    }

    /// Removes a subscriber; unsubscribes the adapter when it was the stream's last.
    pub(crate) async fn remove(&self, stream: &str, identifier: &str, session: u64) {
        let gate = {
            let mut streams = self.write();
            let Some(entry) = streams.get_mut(stream) else {
                return;
            };
            if let Some(group) = entry.groups.get_mut(identifier) {
                if let Some(i) = group.iter().position(|o| o.id() == session) {
                    group.swap_remove(i);
                }
                if group.is_empty() {
                    entry.groups.remove(identifier);
                }
            }
            if !entry.groups.is_empty() {
                return;
            }
            entry.gate.clone()
        };
        let mut live = gate.lock().await;
        // A new subscriber may have arrived while we waited for the gate.
        if !self.is_idle(stream, &gate) {
            return;
        }
        if *live {
            if let Err(e) = self.pubsub.unsubscribe(stream).await {
                tracing::warn!(stream, error = %e, "pub/sub unsubscribe failed");
            }
            *live = false;
        }
        let mut streams = self.write();
        if streams
            .get(stream)
            .is_some_and(|e| e.groups.is_empty() && Arc::ptr_eq(&e.gate, &gate))
        {
            streams.remove(stream);
        }
    }

    fn is_idle(&self, stream: &str, gate: &Arc<tokio::sync::Mutex<bool>>) -> bool {
        self.read()
            .get(stream)
            .is_some_and(|e| e.groups.is_empty() && Arc::ptr_eq(&e.gate, gate))
    }

    /// Fans `payload` out to every local subscriber of `stream`; returns how many it reached.
    pub(crate) fn deliver(&self, stream: &str, payload: &str) -> usize {
        let message = match protocol::raw_json(payload) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(stream, error = %e, "dropping a broadcast that is not JSON");
                return 0;
            }
        };
        let streams = self.read();
        let Some(entry) = streams.get(stream) else {
            return 0;
        };
        let mut reached = 0;
        for (identifier, outboxes) in &entry.groups {
            if identifier.is_empty() {
                // A connection's internal stream: commands for the session, not data.
                if let Some(reconnect) = protocol::parse_internal_message(payload) {
                    for outbox in outboxes {
                        outbox.close(DisconnectReason::Remote, reconnect);
                        reached += 1;
                    }
                }
                continue;
            }
            let frame = Utf8Bytes::from(protocol::encode_data(identifier, message));
            for outbox in outboxes {
                if outbox.push(frame.clone()) {
                    reached += 1;
                }
            }
        }
        reached
    }

    /// Number of streams with local subscribers.
    pub(crate) fn stream_count(&self) -> usize {
        self.read().len()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Arc<str>, StreamEntry>> {
        // A panic while holding the lock cannot leave the map half-updated in a way that
        // matters (every update is a single insert/remove), so poisoning is ignored.
        self.streams.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Arc<str>, StreamEntry>> {
        self.streams.write().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pubsub::{Inbound, MemoryPubSub};

    fn hub() -> Arc<Hub> {
        let pubsub = Arc::new(MemoryPubSub::new());
        let hub = Arc::new(Hub::new(pubsub.clone()));
        pubsub.start(Inbound::new(hub.clone())).unwrap();
        hub
    }

    #[tokio::test]
    async fn encodes_once_per_identifier_and_reaches_everyone() {
        let hub = hub();
        let id_a: Arc<str> = Arc::from(r#"{"channel":"A"}"#);
        let id_b: Arc<str> = Arc::from(r#"{"channel":"B"}"#);
        let (o1, mut r1) = Outbox::new(1, 8);
        let (o2, mut r2) = Outbox::new(2, 8);
        let (o3, mut r3) = Outbox::new(3, 8);
        hub.add("s", &id_a, &o1).await.unwrap();
        hub.add("s", &id_a, &o2).await.unwrap();
        hub.add("s", &id_b, &o3).await.unwrap();
        assert_eq!(hub.deliver("s", r#"{"n":1}"#), 3);
        let f1 = r1.recv().await.unwrap();
        let f2 = r2.recv().await.unwrap();
        assert_eq!(
            f1.as_str(),
            r#"{"identifier":"{\"channel\":\"A\"}","message":{"n":1}}"#
        );
        // Same identifier: the very same buffer.
        assert_eq!(f1.as_str().as_ptr(), f2.as_str().as_ptr());
        assert_eq!(
            r3.recv().await.unwrap().as_str(),
            r#"{"identifier":"{\"channel\":\"B\"}","message":{"n":1}}"#
        );
    }

    #[tokio::test]
    async fn removing_the_last_subscriber_forgets_the_stream() {
        let hub = hub();
        let id: Arc<str> = Arc::from("i");
        let (o1, _r1) = Outbox::new(1, 8);
        hub.add("s", &id, &o1).await.unwrap();
        assert_eq!(hub.stream_count(), 1);
        hub.remove("s", &id, 1).await;
        assert_eq!(hub.stream_count(), 0);
        assert_eq!(hub.deliver("s", "1"), 0);
    }

    #[tokio::test]
    async fn a_full_outbox_asks_its_session_to_close() {
        let hub = hub();
        let id: Arc<str> = Arc::from("i");
        let (slow, _keep) = Outbox::new(1, 1);
        let (fast, mut fast_rx) = Outbox::new(2, 8);
        hub.add("s", &id, &slow).await.unwrap();
        hub.add("s", &id, &fast).await.unwrap();
        hub.deliver("s", "1");
        hub.deliver("s", "2");
        assert_eq!(slow.closed().await, (DisconnectReason::TooSlow, true));
        assert_eq!(slow.dropped(), 1);
        assert!(fast_rx.recv().await.is_some() && fast_rx.recv().await.is_some());
    }

    #[tokio::test]
    async fn non_json_payloads_are_dropped() {
        let hub = hub();
        let (o, _r) = Outbox::new(1, 8);
        hub.add("s", &Arc::from("i"), &o).await.unwrap();
        assert_eq!(hub.deliver("s", "not json"), 0);
    }
}
