//! The four consumers of every change, shaped alike: each folder holds a sink with its
//! config, the port it writes to, its `is_retriable` classification and a health check.
//!
//! - [`search`]: the full-text index (version-guarded upserts and tombstones);
//! - [`notifications`]: live frames to the subscribers of the document;
//! - [`audit`]: the append-only trail, one entry per (document, version);
//! - [`analysis`]: a job on the analysis queue when the text changed.

pub mod analysis;
pub mod audit;
pub mod notifications;
pub mod search;

use async_trait::async_trait;
use shared::Error;
use shared::domain::ChangeEvent;

use crate::decode::RecordMeta;

/// One consumer of the change stream. Delivery must be idempotent: a change may come
/// again (redelivery, redrive) and must then change nothing.
#[async_trait]
pub trait Sink: Send + Sync + 'static {
    /// A short name for spans, metrics and dead-letter reasons.
    fn name(&self) -> &'static str;

    /// Delivers one change.
    async fn deliver(&self, change: &ChangeEvent, record: &RecordMeta) -> shared::Result<()>;

    /// Makes the deliveries so far durable, once per batch. Most sinks write through.
    async fn flush(&self) -> shared::Result<()> {
        Ok(())
    }

    /// Whether trying the same delivery again may succeed.
    fn is_retriable(&self, err: &Error) -> bool {
        err.is_transient()
    }

    /// Whether the sink's backend can take deliveries now.
    async fn health(&self) -> shared::Result<()>;
}
