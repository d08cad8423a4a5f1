use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::WriteOutcome;
use crate::Result;
use crate::domain::{Analysis, DocumentId};

/// A request to analyse one version of a document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisJob {
    pub document_id: DocumentId,
    pub version: u64,
}

/// A job taken from the queue, invisible to other takers until its visibility timeout.
#[derive(Debug, Clone)]
pub struct ReceivedJob {
    pub job: AnalysisJob,
    /// Identifies this receipt for `ack` and `dead_letter`; a job not acked reappears
    /// when its visibility timeout ends.
    pub receipt: String,
    /// How many times the job has been received, this time included.
    pub attempts: u32,
}

/// The durable queue of analysis jobs. The embedded queue refuses a job no newer than
/// one its document enqueued before, and keeps one waiting job per document, at the
/// newest version; an SQS standard queue cannot, and relies on its consumer being
/// idempotent instead (the worker skips versions already superseded or analysed, and the
/// result store only takes newer versions).
#[async_trait]
pub trait AnalysisQueue: Send + Sync + 'static {
    /// Enqueues the job; a queue that can deduplicate returns `AlreadyApplied` when its
    /// document enqueued this version or a newer one before.
    /// Errors: [`Error::Unavailable`](crate::Error::Unavailable).
    async fn enqueue(&self, job: &AnalysisJob) -> Result<WriteOutcome>;

    /// Enqueues every job as [`AnalysisQueue::enqueue`] enqueues one; a queue that can
    /// commit them together does (the embedded one: one transaction). Errors:
    /// `Unavailable`, after which some of them may have been enqueued.
    async fn enqueue_all(&self, jobs: &[AnalysisJob]) -> Result<()> {
        for job in jobs {
            self.enqueue(job).await?;
        }
        Ok(())
    }

    /// Enqueues the job again even though it was enqueued before: an operator's redrive
    /// of a dead job. Errors: `Unavailable`.
    async fn requeue(&self, job: &AnalysisJob) -> Result<()>;

    /// Takes up to `max` visible jobs, hiding them for `visibility`. Errors: `Unavailable`.
    async fn receive(&self, max: usize, visibility: Duration) -> Result<Vec<ReceivedJob>>;

    /// The job is done: remove it. Errors: `Unavailable`.
    async fn ack(&self, receipt: &str) -> Result<()>;

    /// Every job is done, as [`AnalysisQueue::ack`] says of one; a queue that can remove
    /// them together does (the embedded one: one transaction). Errors: `Unavailable`,
    /// after which some of them may have been removed.
    async fn ack_all(&self, receipts: &[String]) -> Result<()> {
        for receipt in receipts {
            self.ack(receipt).await?;
        }
        Ok(())
    }

    /// Moves the job to the queue's dead-letter store with the reason. Errors: `Unavailable`.
    async fn dead_letter(&self, receipt: &str, reason: &str) -> Result<()>;

    /// Jobs waiting (visible or in flight), for metrics. Errors: `Unavailable`.
    async fn depth(&self) -> Result<u64>;
}

/// Where analysis results live: outside the change stream, so storing one never causes
/// another fan-out.
#[async_trait]
pub trait AnalysisStore: Send + Sync + 'static {
    /// Stores the analysis unless one for this version or a newer one is there.
    /// Errors: [`Error::Unavailable`](crate::Error::Unavailable).
    async fn put(&self, analysis: &Analysis) -> Result<WriteOutcome>;

    /// The latest analysis of the document. Errors: `Unavailable`.
    async fn get(&self, document: &DocumentId) -> Result<Option<Analysis>>;
}
