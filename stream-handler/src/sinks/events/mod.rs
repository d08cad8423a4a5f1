//! The events sink: every change, as an EventBridge-shaped [`DocumentEvent`] (no body),
//! to the [`EventBus`] — an EventBridge bus on AWS, webhook rules on one machine — for
//! consumers outside docfan. The event's id is derived from the change, so a redelivery
//! publishes the same id again.

use std::sync::Arc;

use async_trait::async_trait;
use shared::domain::ChangeEvent;
use shared::events::DocumentEvent;
use shared::ports::EventBus;
use shared::{Error, Result};

use super::Sink;
use crate::decode::RecordMeta;

/// How the events sink behaves.
#[derive(Debug, Clone, Default)]
pub struct EventsSinkConfig {}

pub struct EventsSink {
    bus: Arc<dyn EventBus>,
    config: EventsSinkConfig,
}

impl EventsSink {
    pub fn new(bus: Arc<dyn EventBus>, config: EventsSinkConfig) -> Self {
        Self { bus, config }
    }

    pub fn config(&self) -> &EventsSinkConfig {
        &self.config
    }
}

#[async_trait]
impl Sink for EventsSink {
    fn name(&self) -> &'static str {
        "events"
    }

    async fn deliver(&self, change: &ChangeEvent, _record: &RecordMeta) -> Result<()> {
        self.bus
            .publish(&[DocumentEvent::from_change(change)])
            .await
    }

    fn is_retriable(&self, err: &Error) -> bool {
        err.is_transient()
    }

    async fn health(&self) -> Result<()> {
        self.bus.health().await
    }
}
