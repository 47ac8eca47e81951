use super::{Inbound, PubSub};
use crate::error::PubSubError;
use async_trait::async_trait;
use std::sync::OnceLock;

/// The in-process adapter (Rails' `async`): a broadcast is delivered straight to this
/// process's subscribers. The default.
#[derive(Debug, Default)]
pub struct MemoryPubSub {
    inbound: OnceLock<Inbound>,
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
        self.inbound
            .set(inbound)
            .map_err(|_| PubSubError::Backend("MemoryPubSub started twice".into()))
    }

    async fn subscribe(&self, _stream: &str) -> Result<(), PubSubError> {
        Ok(())
    }

    async fn unsubscribe(&self, _stream: &str) -> Result<(), PubSubError> {
        Ok(())
    }

    async fn publish(&self, stream: &str, payload: &str) -> Result<(), PubSubError> {
        let inbound = self.inbound.get().ok_or(PubSubError::Closed)?;
        inbound.deliver(stream, payload);
        Ok(())
    }
}
