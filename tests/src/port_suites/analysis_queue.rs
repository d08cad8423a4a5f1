//! The [`AnalysisQueue`] contract: jobs are received with a visibility timeout, acked
//! (one or several at once), or dead-lettered whole with their reason.
//!
//! Deduplication of `enqueue` differs by design: the embedded queue remembers the newest
//! version enqueued of each document and keeps one waiting job per document, while the
//! SQS queue is a standard queue whose consumer is idempotent (see
//! `shared::aws::analysis_queue`). The suite checks those only where the adapter claims
//! them.

use std::sync::Arc;
use std::time::Duration;

use shared::domain::DocumentId;
use shared::ports::{AnalysisJob, AnalysisQueue, DeadLetterQueue, DeadLetterSource, WriteOutcome};

/// What an adapter promises beyond the common contract.
#[derive(Debug, Clone, Copy)]
pub struct QueueTraits {
    /// `enqueue` of a version no newer than one its document enqueued before is
    /// `AlreadyApplied`, even once that job is done.
    pub deduplicates: bool,
    /// A document's job that no receiver has taken yet is one job, at the newest
    /// version enqueued.
    pub coalesces: bool,
}

/// Runs the suite on a queue that starts empty; dead jobs must land in `dead_letters`.
pub async fn run(
    queue: Arc<dyn AnalysisQueue>,
    dead_letters: Arc<dyn DeadLetterQueue>,
    traits: QueueTraits,
) {
    let hide = Duration::from_secs(60);
    let jobs: Vec<_> = (1..=3)
        .map(|version| AnalysisJob {
            document_id: DocumentId::generate(),
            version,
        })
        .collect();
    for job in &jobs {
        assert_eq!(queue.enqueue(job).await.unwrap(), WriteOutcome::Applied);
    }
    if traits.deduplicates {
        assert_eq!(
            queue.enqueue(&jobs[0]).await.unwrap(),
            WriteOutcome::AlreadyApplied
        );
    }
    assert_eq!(queue.depth().await.unwrap(), 3);

    // Received jobs are hidden from other receivers until acked.
    let mut received = Vec::new();
    for _ in 0..10 {
        received.extend(queue.receive(10, hide).await.unwrap());
        if received.len() >= 3 {
            break;
        }
    }
    let mut versions: Vec<_> = received.iter().map(|r| r.job.version).collect();
    versions.sort();
    assert_eq!(versions, [1, 2, 3]);
    assert!(
        received
            .iter()
            .all(|r| r.attempts == 1 && jobs.contains(&r.job))
    );
    assert!(
        queue.receive(10, hide).await.unwrap().is_empty(),
        "received jobs are hidden"
    );
    assert_eq!(queue.depth().await.unwrap(), 3, "hidden jobs still count");

    // Ack removes (several at once too); dead-lettering moves the job, with its reason,
    // to the dead letters.
    let by_version = |v: u64| received.iter().find(|r| r.job.version == v).unwrap();
    queue.ack_all(&[]).await.unwrap();
    queue
        .ack_all(&[by_version(1).receipt.clone(), by_version(2).receipt.clone()])
        .await
        .unwrap();
    assert_eq!(queue.depth().await.unwrap(), 1, "two acked together");
    queue
        .dead_letter(&by_version(3).receipt, "the text would not analyse")
        .await
        .unwrap();
    assert_eq!(queue.depth().await.unwrap(), 0);
    let letters = dead_letters.list(10).await.unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].source, DeadLetterSource::Analysis);
    assert_eq!(letters[0].reason, "the text would not analyse");
    let dead: AnalysisJob = serde_json::from_value(letters[0].payload.clone()).unwrap();
    assert_eq!(dead, jobs[2]);

    // A redrive puts the job back even though it was enqueued before.
    queue.requeue(&jobs[2]).await.unwrap();
    let again = queue.receive(10, hide).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].job, jobs[2]);
    queue.ack(&again[0].receipt).await.unwrap();
    assert_eq!(queue.depth().await.unwrap(), 0);

    more_than_a_batch_call_takes(queue.as_ref(), hide).await;
    if traits.coalesces {
        coalesces(queue.as_ref(), hide).await;
    }
}

/// Three versions of a document enqueued while none is taken are one job, at the
/// newest; once that job is taken, a newer version is a job of its own.
async fn coalesces(queue: &dyn AnalysisQueue, hide: Duration) {
    let document = DocumentId::generate();
    let job = |version| AnalysisJob {
        document_id: document,
        version,
    };
    for version in 1..=3 {
        assert_eq!(
            queue.enqueue(&job(version)).await.unwrap(),
            WriteOutcome::Applied
        );
    }
    assert_eq!(queue.depth().await.unwrap(), 1);
    let taken = queue.receive(10, hide).await.unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].job, job(3));
    queue.enqueue(&job(4)).await.unwrap();
    assert_eq!(
        queue.depth().await.unwrap(),
        2,
        "the taken job is not moved"
    );
    let next = queue.receive(10, hide).await.unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].job, job(4));
    queue
        .ack_all(&[taken[0].receipt.clone(), next[0].receipt.clone()])
        .await
        .unwrap();
    assert_eq!(queue.depth().await.unwrap(), 0);
}

/// More jobs than one batch call of a queue service carries (SQS takes ten), enqueued
/// together, then acknowledged together: each once.
async fn more_than_a_batch_call_takes(queue: &dyn AnalysisQueue, hide: Duration) {
    let jobs: Vec<_> = (0..23)
        .map(|_| AnalysisJob {
            document_id: DocumentId::generate(),
            version: 1,
        })
        .collect();
    queue.enqueue_all(&jobs).await.unwrap();
    assert_eq!(queue.depth().await.unwrap(), 23);
    let mut taken = Vec::new();
    for _ in 0..20 {
        taken.extend(queue.receive(10, hide).await.unwrap());
        if taken.len() >= jobs.len() {
            break;
        }
    }
    let ids = |jobs: &mut dyn Iterator<Item = &AnalysisJob>| {
        let mut ids: Vec<String> = jobs.map(|j| j.document_id.to_string()).collect();
        ids.sort();
        ids
    };
    assert_eq!(
        ids(&mut taken.iter().map(|r| &r.job)),
        ids(&mut jobs.iter()),
        "every job received once"
    );
    let receipts: Vec<String> = taken.iter().map(|r| r.receipt.clone()).collect();
    queue.ack_all(&receipts).await.unwrap();
    assert_eq!(queue.depth().await.unwrap(), 0, "every one acknowledged");
}
