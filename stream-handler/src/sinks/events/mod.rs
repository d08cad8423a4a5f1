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

use self::batcher::Batcher;
use super::Sink;
use crate::decode::RecordMeta;

mod batcher;

/// How the events sink behaves.
#[derive(Debug, Clone)]
pub struct EventsSinkConfig {
    /// The most events in one publish (10: a `PutEvents` request's limit).
    pub max_batch: usize,
    /// The most publishes in flight at once.
    pub in_flight: usize,
}

impl Default for EventsSinkConfig {
    fn default() -> Self {
        Self {
            max_batch: 10,
            in_flight: 4,
        }
    }
}

/// Publishes every change to an [`EventBus`]. Each delivery waits for its own event's
/// verdict, and deliveries that wait at the same moment (changes of different
/// documents in one batch) leave together, up to `max_batch` per publish; one
/// document's events leave in version order.
pub struct EventsSink {
    bus: Arc<dyn EventBus>,
    batcher: Batcher,
    config: EventsSinkConfig,
}

impl EventsSink {
    /// The sink over `bus`.
    pub fn new(bus: Arc<dyn EventBus>, config: EventsSinkConfig) -> Self {
        Self {
            bus,
            batcher: Batcher::new(config.max_batch, config.in_flight),
            config,
        }
    }

    /// How the sink behaves.
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
        self.batcher
            .publish(self.bus.as_ref(), DocumentEvent::from_change(change))
            .await
    }

    fn is_retriable(&self, err: &Error) -> bool {
        err.is_transient()
    }

    async fn health(&self) -> Result<()> {
        self.bus.health().await
    }
}
