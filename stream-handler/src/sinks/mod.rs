//! The consumers of every change, shaped alike: each folder holds a sink with its
//! config, the port it writes to, its `is_retriable` classification and a health check.
//!
//! - [`search`]: the full-text index (version-guarded upserts and tombstones);
//! - [`notifications`]: live frames to the subscribers of the document;
//! - [`audit`]: the append-only trail, one entry per (document, version);
//! - [`analysis`]: a job on the analysis queue when the text changed;
//! - [`events`]: an EventBridge-shaped event for consumers outside docfan (an
//!   EventBridge bus, or webhooks on one machine), where one is configured.

pub mod analysis;
pub mod audit;
pub mod events;
mod held;
pub mod notifications;
pub mod search;

use std::time::Duration;

use async_trait::async_trait;
use shared::Error;
use shared::domain::ChangeEvent;

use crate::decode::RecordMeta;

/// When a flush makes a sink's deliveries durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    /// When the sink's own policy says it is time (its commit interval or size); the
    /// end of every batch asks this.
    IfDue,
    /// Now: at shutdown, for an operator's redrive, and once a deferred commit is due.
    Now,
}

/// What a flush left: whether every delivery the sink took so far is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flushed {
    Durable,
    /// Some are still held for a commit, due within this time: the consumer must not
    /// checkpoint past them until a later flush says [`Flushed::Durable`].
    Deferred(Duration),
}

impl Flushed {
    /// Both flushes together: deferred when either is, due at the sooner time.
    pub fn and(self, other: Flushed) -> Flushed {
        match (self, other) {
            (Flushed::Durable, other) | (other, Flushed::Durable) => other,
            (Flushed::Deferred(a), Flushed::Deferred(b)) => Flushed::Deferred(a.min(b)),
        }
    }
}

/// One consumer of the change stream. Delivery must be idempotent: a change may come
/// again (redelivery, redrive) and must then change nothing.
#[async_trait]
pub trait Sink: Send + Sync + 'static {
    /// A short name for spans, metrics and dead-letter reasons.
    fn name(&self) -> &'static str;

    /// Delivers one change.
    async fn deliver(&self, change: &ChangeEvent, record: &RecordMeta) -> shared::Result<()>;

    /// Makes the deliveries so far durable, at the end of every batch ([`Flush::IfDue`])
    /// or at once ([`Flush::Now`]); a sink that commits by time or size may hold them
    /// for later ([`Flushed::Deferred`]). Most sinks write through.
    async fn flush(&self, _when: Flush) -> shared::Result<Flushed> {
        Ok(Flushed::Durable)
    }

    /// Whether trying the same delivery again may succeed.
    fn is_retriable(&self, err: &Error) -> bool {
        err.is_transient()
    }

    /// Whether the sink's backend can take deliveries now.
    async fn health(&self) -> shared::Result<()>;
}
