//! The events sink: every change, as an EventBridge-shaped [`DocumentEvent`] (no body),
//! to the [`EventBus`] — an EventBridge bus on AWS, webhook rules on one machine — for
//! consumers outside docfan. The event's id is derived from the change, so a redelivery
//! publishes the same id again.
//!
//! With [`EventsSinkConfig::publish_at_flush`] the events of a batch are held until its
//! flush and published together ([`super::held`]).

use std::sync::Arc;

use async_trait::async_trait;
use shared::domain::{ChangeEvent, ChangeKind};
use shared::events::DocumentEvent;
use shared::ports::EventBus;
use shared::{Error, Result};

use self::batcher::Batcher;
use super::held::Held;
use super::{Flush, Flushed, Sink};
use crate::decode::RecordMeta;

mod batcher;

/// How the events sink behaves.
#[derive(Debug, Clone)]
pub struct EventsSinkConfig {
    /// The most events in one publish (10: a `PutEvents` request's limit).
    pub max_batch: usize,
    /// The most publishes in flight at once.
    pub in_flight: usize,
    /// Whether a batch's events are held until its flush and published together (one
    /// commit per batch into the webhook outbox), rather than each as its change is
    /// delivered. Right for a bus whose failures are its own, never one event's (the
    /// embedded outbox); a bus that may refuse one event (EventBridge) takes each on its
    /// own, so that change alone is dead-lettered. A deletion's event is published at
    /// once, with the events held before it: a delivered deletion may forget the bodies
    /// a retry of it would need.
    pub publish_at_flush: bool,
}

impl Default for EventsSinkConfig {
    fn default() -> Self {
        Self {
            max_batch: 10,
            in_flight: 4,
            publish_at_flush: false,
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
    held: Held<DocumentEvent>,
}

impl EventsSink {
    /// The sink over `bus`.
    pub fn new(bus: Arc<dyn EventBus>, config: EventsSinkConfig) -> Self {
        Self {
            bus,
            batcher: Batcher::new(config.max_batch, config.in_flight),
            config,
            held: Held::default(),
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
        let event = DocumentEvent::from_change(change);
        if !self.config.publish_at_flush {
            return self.batcher.publish(self.bus.as_ref(), event).await;
        }
        self.held.push(event);
        if change.kind == ChangeKind::Deleted {
            // A delivered deletion may forget the bodies a retry of it would need: its
            // event is published now, after those held before it.
            self.flush(Flush::Now).await?;
        }
        Ok(())
    }

    async fn flush(&self, _when: Flush) -> Result<Flushed> {
        let taken = self.held.take().await;
        let published = match taken.items() {
            [] => Ok(()),
            events => self.bus.publish(events).await,
        };
        taken.settle(published).map(|()| Flushed::Durable)
    }

    fn is_retriable(&self, err: &Error) -> bool {
        err.is_transient()
    }

    async fn health(&self) -> Result<()> {
        self.bus.health().await
    }
}
