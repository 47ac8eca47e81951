use super::history::{History, HistorySettings, Kept, MemoryHistory, Position};
use super::presence::{MemoryPresence, Presence, PresenceSettings};
use super::{Inbound, PubSub};
use crate::error::PubSubError;
use async_trait::async_trait;
use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;
use tokio::sync::mpsc;

/// Messages published and not yet fanned out; a publisher waits while this many are queued.
const QUEUE: usize = 1024;

/// A queued message: stream, payload, its position when it was kept, and when it was sent
/// when its latency is sampled.
type Item = (Box<str>, Box<str>, Option<Position>, Option<SystemTime>);
type Queue = Arc<OnceLock<mpsc::Sender<Item>>>;

/// The in-process adapter (Rails' `async`), the default: a broadcast reaches this process's
/// subscribers only.
///
/// Like Rails' async adapter, it delivers on a task of its own, in the order messages were
/// published: `publish` returns once the message is queued, so a publisher (an HTTP handler,
/// an action) never runs the fan-out itself, however many subscribers or identifiers the
/// stream has. The queue holds 1,024 messages; beyond that a publisher waits for room, which is
/// the backpressure a busy node needs.
///
/// It keeps stream history in memory when the cable asks for it ([`PubSub::history`]): one
/// node, positions numbered in this process, a new epoch per process start. It keeps presence
/// in memory too ([`PubSub::presence`]), its events delivered to this process's subscribers.
#[derive(Debug, Default)]
pub struct MemoryPubSub {
    queue: Queue,
    /// Where presence events go, once started.
    inbound: Arc<OnceLock<Inbound>>,
}

impl MemoryPubSub {
    /// A new in-memory adapter.
    pub fn new() -> MemoryPubSub {
        MemoryPubSub::default()
    }
}

#[async_trait]
impl PubSub for MemoryPubSub {
    fn start(&self, inbound: Inbound) -> Result<(), PubSubError> {
        let (tx, mut rx) = mpsc::channel::<Item>(QUEUE);
        self.queue
            .set(tx)
            .map_err(|_| PubSubError::Backend("MemoryPubSub started twice".into()))?;
        let _ = self.inbound.set(inbound.clone());
        // Ends when the adapter (the only sender) is dropped with its cable.
        tokio::spawn(async move {
            while let Some((stream, payload, position, sent)) = rx.recv().await {
                match sent {
                    None => inbound.deliver_at(&stream, &payload, position.as_ref()),
                    Some(sent) => {
                        inbound.deliver_traced(&stream, &payload, position.as_ref(), sent)
                    }
                };
            }
        });
        Ok(())
    }

    async fn subscribe(&self, _stream: &str) -> Result<(), PubSubError> {
        Ok(())
    }

    async fn unsubscribe(&self, _stream: &str) -> Result<(), PubSubError> {
        Ok(())
    }

    async fn publish(&self, stream: &str, payload: &str) -> Result<(), PubSubError> {
        let queue = self.queue.get().ok_or(PubSubError::Closed)?;
        queue
            .send((stream.into(), payload.into(), None, None))
            .await
            .map_err(|_| PubSubError::Closed)
    }

    /// In one process the time travels with the queued message.
    async fn publish_traced(
        &self,
        stream: &str,
        payload: &str,
        sent: SystemTime,
    ) -> Result<(), PubSubError> {
        let queue = self.queue.get().ok_or(PubSubError::Closed)?;
        queue
            .send((stream.into(), payload.into(), None, Some(sent)))
            .await
            .map_err(|_| PubSubError::Closed)
    }

    fn history(&self, settings: &HistorySettings) -> Result<Arc<dyn History>, PubSubError> {
        Ok(Arc::new(MemoryKept {
            store: MemoryHistory::new(*settings),
            queue: self.queue.clone(),
        }))
    }

    fn presence(&self, _settings: &PresenceSettings) -> Result<Arc<dyn Presence>, PubSubError> {
        Ok(Arc::new(MemoryPresence::new(self.inbound.clone())))
    }
}

/// `MemoryPubSub`'s history: the in-process store in front of the adapter's queue.
struct MemoryKept {
    store: MemoryHistory,
    queue: Queue,
}

impl MemoryKept {
    async fn keep(
        &self,
        stream: &str,
        payload: &str,
        sent: Option<SystemTime>,
    ) -> Result<Position, PubSubError> {
        let queue = self.queue.get().ok_or(PubSubError::Closed)?;
        // Room first, then number and queue under the store's lock: the queue stays in
        // position order whatever other publishers do meanwhile.
        let permit = queue.reserve().await.map_err(|_| PubSubError::Closed)?;
        let (position, ()) = self.store.append(stream, payload, |position| {
            permit.send((stream.into(), payload.into(), Some(position.clone()), sent));
        });
        Ok(position)
    }
}

#[async_trait]
impl History for MemoryKept {
    async fn publish(&self, stream: &str, payload: &str) -> Result<Position, PubSubError> {
        self.keep(stream, payload, None).await
    }

    /// In one process the time travels with the queued message.
    async fn publish_traced(
        &self,
        stream: &str,
        payload: &str,
        sent: SystemTime,
    ) -> Result<Position, PubSubError> {
        self.keep(stream, payload, Some(sent)).await
    }

    async fn after(
        &self,
        stream: &str,
        epoch: &str,
        offset: u64,
    ) -> Result<Option<Vec<Kept>>, PubSubError> {
        Ok(self.store.after(stream, epoch, offset))
    }

    async fn since(&self, stream: &str, unix_secs: u64) -> Result<Vec<Kept>, PubSubError> {
        Ok(self.store.since(stream, unix_secs))
    }
}

impl fmt::Debug for MemoryKept {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryPubSub history")
            .field("store", &self.store)
            .finish()
    }
}
