use super::{Inbound, PubSub};
use crate::error::PubSubError;
use async_trait::async_trait;
use std::sync::OnceLock;
use tokio::sync::mpsc;

/// Messages published and not yet fanned out; a publisher waits while this many are queued.
const QUEUE: usize = 1024;

/// The in-process adapter (Rails' `async`), the default: a broadcast reaches this process's
/// subscribers only.
///
/// Like Rails' async adapter, it delivers on a task of its own, in the order messages were
/// published: `publish` returns once the message is queued, so a publisher (an HTTP handler,
/// an action) never runs the fan-out itself, however many subscribers or identifiers the
/// stream has. The queue holds 1,024 messages; beyond that a publisher waits for room, which is
/// the backpressure a busy node needs.
#[derive(Debug, Default)]
pub struct MemoryPubSub {
    queue: OnceLock<mpsc::Sender<(Box<str>, Box<str>)>>,
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
        let (tx, mut rx) = mpsc::channel::<(Box<str>, Box<str>)>(QUEUE);
        self.queue
            .set(tx)
            .map_err(|_| PubSubError::Backend("MemoryPubSub started twice".into()))?;
        // Ends when the adapter (the only sender) is dropped with its cable.
        tokio::spawn(async move {
            while let Some((stream, payload)) = rx.recv().await {
                inbound.deliver(&stream, &payload);
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
            .send((stream.into(), payload.into()))
            .await
            .map_err(|_| PubSubError::Closed)
    }
}
