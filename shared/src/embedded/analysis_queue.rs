//! The embedded [`AnalysisQueue`]: a durable SQLite queue with SQS's delivery rules.
//!
//! - `analysis_enqueued` remembers the newest version enqueued of each document, so a
//!   redelivered change (or an older one) does not enqueue its job again, even after the
//!   job is done; it holds a row per document, not per change;
//! - `analysis_jobs` holds the waiting jobs; taking one hides it until its visibility
//!   timeout (measured on the [`Clock`]) and gives it a fresh receipt, so a worker that
//!   dies mid-job only delays it;
//! - a document's job that no worker has taken yet is one row, moved to the newest
//!   version as changes come: the worker analyses the document as it is then, so the
//!   versions in between would only be superseded (a taken job stays as it is: its
//!   receipt's holder acknowledges that row);
//! - a dead job moves to the `dead_letters` table in the transaction that removes it.
//!
//! Enqueuing signals a [`Notify`] so an in-process worker wakes at once instead of
//! polling.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};
use tokio::sync::Notify;

use super::dead_letter;
use super::group_commit::GroupCommit;
use super::sqlite::{Db, Durability};
use super::sqlite_error::map_sqlite_error;
use crate::Result;
use crate::clock::Clock;
use crate::domain::DocumentId;
use crate::ports::{
    AnalysisJob, AnalysisQueue, DeadLetter, DeadLetterSource, ReceivedJob, WriteOutcome,
};

/// Analysis jobs in the SQLite database.
#[derive(Clone)]
pub struct SqliteAnalysisQueue {
    db: Db,
    writer: Arc<GroupCommit>,
    clock: Arc<dyn Clock>,
    enqueued: Arc<Notify>,
}

impl std::fmt::Debug for SqliteAnalysisQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteAnalysisQueue")
            .field("db", &self.db)
            .finish()
    }
}

impl SqliteAnalysisQueue {
    /// Opens the queue in the database file at `path` (migrating it to the current
    /// schema).
    pub fn open(path: &Path, clock: Arc<dyn Clock>) -> Result<Self> {
        let db = Db::open_with(path, Durability::Ordered)?;
        Ok(Self {
            db,
            writer: Arc::new(GroupCommit::open_with(
                path,
                "analysis-queue",
                Durability::Ordered,
            )?),
            clock,
            enqueued: Arc::new(Notify::new()),
        })
    }

    /// Notified whenever a job is enqueued, for a worker waiting for work.
    pub fn enqueued(&self) -> Arc<Notify> {
        Arc::clone(&self.enqueued)
    }

    fn now_ms(&self) -> i64 {
        self.clock.now().timestamp_millis()
    }
}

fn insert_job(conn: &rusqlite::Connection, job: &AnalysisJob, now_ms: i64) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO analysis_jobs (document_id, version, visible_at_ms) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![
        job.document_id.to_string(),
        job.version as i64,
        now_ms
    ])?;
    Ok(())
}

/// Enqueues the job unless its document enqueued this version or a newer one before:
/// into the document's job that no worker has taken yet when there is one, as a new job
/// otherwise.
fn insert_fresh_job(
    tx: &rusqlite::Connection,
    job: &AnalysisJob,
    now_ms: i64,
) -> Result<WriteOutcome> {
    let id = job.document_id.to_string();
    let version = job.version as i64;
    let newer = tx
        .prepare_cached(
            "INSERT INTO analysis_enqueued (document_id, version) VALUES (?1, ?2)
             ON CONFLICT (document_id) DO UPDATE SET version = excluded.version
             WHERE excluded.version > analysis_enqueued.version",
        )
        .and_then(|mut s| s.execute(params![id, version]))
        .map_err(map_sqlite_error)?;
    if newer == 0 {
        return Ok(WriteOutcome::AlreadyApplied);
    }
    let moved = tx
        .prepare_cached(
            "UPDATE analysis_jobs SET version = ?2
             WHERE document_id = ?1 AND receipt IS NULL AND version < ?2",
        )
        .and_then(|mut s| s.execute(params![id, version]))
        .map_err(map_sqlite_error)?;
    if moved == 0 {
        insert_job(tx, job, now_ms).map_err(map_sqlite_error)?;
    }
    Ok(WriteOutcome::Applied)
}

#[async_trait]
impl AnalysisQueue for SqliteAnalysisQueue {
    async fn enqueue(&self, job: &AnalysisJob) -> Result<WriteOutcome> {
        let job = job.clone();
        let now = self.now_ms();
        let outcome = self
            .writer
            .write(move |tx| insert_fresh_job(tx, &job, now))
            .await?;
        if outcome == WriteOutcome::Applied {
            self.enqueued.notify_one();
        }
        Ok(outcome)
    }

    async fn enqueue_all(&self, jobs: &[AnalysisJob]) -> Result<()> {
        if jobs.is_empty() {
            return Ok(());
        }
        let jobs = jobs.to_vec();
        let now = self.now_ms();
        let applied = self
            .writer
            .write(move |tx| {
                let mut applied = false;
                for job in &jobs {
                    applied |= insert_fresh_job(tx, job, now)? == WriteOutcome::Applied;
                }
                Ok(applied)
            })
            .await?;
        if applied {
            self.enqueued.notify_one();
        }
        Ok(())
    }

    async fn requeue(&self, job: &AnalysisJob) -> Result<()> {
        let job = job.clone();
        let now = self.now_ms();
        self.writer
            .write(move |conn| insert_job(conn, &job, now).map_err(map_sqlite_error))
            .await?;
        self.enqueued.notify_one();
        Ok(())
    }

    async fn receive(&self, max: usize, visibility: Duration) -> Result<Vec<ReceivedJob>> {
        let now = self.now_ms();
        let hidden_until = now.saturating_add(visibility.as_millis().min(i64::MAX as u128) as i64);
        self.writer
            .write(move |tx| {
                let visible: Vec<(i64, String, i64, u32)> = {
                    let mut stmt = tx
                        .prepare_cached(
                            "SELECT id, document_id, version, attempts FROM analysis_jobs
                             WHERE visible_at_ms <= ?1 ORDER BY visible_at_ms, id LIMIT ?2",
                        )
                        .map_err(map_sqlite_error)?;
                    let rows = stmt
                        .query_map(params![now, max as i64], |row| {
                            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
                        })
                        .map_err(map_sqlite_error)?;
                    rows.collect::<rusqlite::Result<_>>()
                        .map_err(map_sqlite_error)?
                };
                let mut received = Vec::with_capacity(visible.len());
                for (id, document_id, version, attempts) in visible {
                    let receipt = format!("{id}:{}", uuid::Uuid::new_v4().simple());
                    tx.prepare_cached(
                        "UPDATE analysis_jobs SET visible_at_ms = ?2, attempts = ?3, receipt = ?4
                         WHERE id = ?1",
                    )
                    .and_then(|mut s| s.execute(params![id, hidden_until, attempts + 1, receipt]))
                    .map_err(map_sqlite_error)?;
                    let Ok(document_id) = DocumentId::parse(&document_id) else {
                        // Not a job this code could have written: drop the row, loudly.
                        tracing::error!(
                            id,
                            document_id,
                            "analysis job with an invalid document id"
                        );
                        tx.execute("DELETE FROM analysis_jobs WHERE id = ?1", [id])
                            .map_err(map_sqlite_error)?;
                        continue;
                    };
                    received.push(ReceivedJob {
                        job: AnalysisJob {
                            document_id,
                            version: version as u64,
                        },
                        receipt,
                        attempts: attempts + 1,
                    });
                }
                Ok(received)
            })
            .await
    }

    async fn ack(&self, receipt: &str) -> Result<()> {
        let receipt = receipt.to_owned();
        self.writer
            .write(move |conn| {
                conn.prepare_cached("DELETE FROM analysis_jobs WHERE receipt = ?1")
                    .and_then(|mut s| s.execute([receipt]))
                    .map_err(map_sqlite_error)?;
                Ok(())
            })
            .await
    }

    async fn ack_all(&self, receipts: &[String]) -> Result<()> {
        if receipts.is_empty() {
            return Ok(());
        }
        let receipts = receipts.to_vec();
        self.writer
            .write(move |tx| {
                let mut delete = tx
                    .prepare_cached("DELETE FROM analysis_jobs WHERE receipt = ?1")
                    .map_err(map_sqlite_error)?;
                for receipt in &receipts {
                    delete.execute([receipt]).map_err(map_sqlite_error)?;
                }
                Ok(())
            })
            .await
    }

    async fn dead_letter(&self, receipt: &str, reason: &str) -> Result<()> {
        let receipt = receipt.to_owned();
        let reason = reason.to_owned();
        let failed_at = self.clock.now();
        self.writer
            .write(move |tx| {
                let job: Option<(i64, String, i64, u32)> = tx
                    .prepare_cached(
                        "SELECT id, document_id, version, attempts FROM analysis_jobs
                         WHERE receipt = ?1",
                    )
                    .and_then(|mut s| {
                        s.query_row([&receipt], |row| {
                            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
                        })
                        .optional()
                    })
                    .map_err(map_sqlite_error)?;
                // A stale receipt: someone else holds the job now.
                let Some((id, document_id, version, attempts)) = job else {
                    return Ok(());
                };
                let letter = DeadLetter {
                    id: String::new(),
                    source: DeadLetterSource::Analysis,
                    payload: serde_json::json!({"documentId": document_id, "version": version}),
                    reason,
                    attempts,
                    failed_at,
                };
                dead_letter::insert(tx, &letter).map_err(map_sqlite_error)?;
                tx.execute("DELETE FROM analysis_jobs WHERE id = ?1", [id])
                    .map_err(map_sqlite_error)?;
                Ok(())
            })
            .await
    }

    async fn depth(&self) -> Result<u64> {
        self.db
            .call(|conn| {
                conn.query_row("SELECT COUNT(*) FROM analysis_jobs", [], |row| {
                    row.get::<_, i64>(0)
                })
                .map(|n| n as u64)
                .map_err(map_sqlite_error)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::embedded::SqliteDeadLetterQueue;
    use crate::ports::DeadLetterQueue;
    use chrono::{TimeDelta, Utc};

    #[tokio::test]
    async fn a_batch_of_jobs_is_enqueued_together_each_once_and_wakes_the_worker() {
        let dir = tempfile::tempdir().unwrap();
        let queue = SqliteAnalysisQueue::open(
            &dir.path().join("db"),
            Arc::new(ManualClock::new(Utc::now())),
        )
        .unwrap();
        let doc = DocumentId::generate();
        let job = |version| AnalysisJob {
            document_id: doc,
            version,
        };
        queue.enqueue(&job(1)).await.unwrap();
        let woken = queue.enqueued();
        // The permit that enqueue left.
        woken.notified().await;
        let notified = woken.notified();
        queue.enqueue_all(&[job(1), job(2), job(3)]).await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), notified)
            .await
            .expect("the worker is woken");
        queue.enqueue_all(&[job(2), job(3)]).await.unwrap();
        assert_eq!(
            queue.depth().await.unwrap(),
            1,
            "one job for the document, which no worker took"
        );
        let taken = queue.receive(10, Duration::from_secs(30)).await.unwrap();
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].job, job(3), "at its newest version");
    }

    #[tokio::test]
    async fn a_waiting_job_moves_to_the_newest_version_and_a_taken_one_stays() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(Utc::now()));
        let queue = SqliteAnalysisQueue::open(&dir.path().join("db"), clock.clone()).unwrap();
        let (doc, other) = (DocumentId::generate(), DocumentId::generate());
        let job = |document_id, version| AnalysisJob {
            document_id,
            version,
        };
        let visibility = Duration::from_secs(30);
        queue.enqueue(&job(doc, 1)).await.unwrap();
        let taken = queue.receive(10, visibility).await.unwrap();
        assert_eq!(taken.len(), 1);

        // The taken job keeps its version: its holder acknowledges that row.
        for version in 2..=4 {
            assert_eq!(
                queue.enqueue(&job(doc, version)).await.unwrap(),
                WriteOutcome::Applied
            );
        }
        queue.enqueue(&job(other, 7)).await.unwrap();
        assert_eq!(queue.depth().await.unwrap(), 3);
        // Older than what the document enqueued: not again.
        assert_eq!(
            queue.enqueue(&job(doc, 3)).await.unwrap(),
            WriteOutcome::AlreadyApplied
        );
        let waiting = queue.receive(10, visibility).await.unwrap();
        let mut jobs: Vec<AnalysisJob> = waiting.iter().map(|r| r.job.clone()).collect();
        jobs.sort_by_key(|j| j.version);
        assert_eq!(jobs, [job(doc, 4), job(other, 7)]);

        queue.ack(&taken[0].receipt).await.unwrap();
        assert_eq!(
            queue.depth().await.unwrap(),
            2,
            "the newer job is still there"
        );
        // Its visibility over, the version-1 job's receipt is stale; it comes back as
        // it was, beside the later ones.
        clock.advance(TimeDelta::seconds(31));
        queue.enqueue(&job(doc, 5)).await.unwrap();
        let again = queue.receive(10, visibility).await.unwrap();
        let mut versions: Vec<u64> = again.iter().map(|r| r.job.version).collect();
        versions.sort();
        assert_eq!(versions, [4, 5, 7], "a job taken before is not moved");
    }

    #[tokio::test]
    async fn jobs_are_acknowledged_together_and_a_stale_receipt_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(Utc::now()));
        let queue = SqliteAnalysisQueue::open(&dir.path().join("db"), clock.clone()).unwrap();
        let jobs: Vec<AnalysisJob> = (1..=4)
            .map(|version| AnalysisJob {
                document_id: DocumentId::generate(),
                version,
            })
            .collect();
        queue.enqueue_all(&jobs).await.unwrap();
        let visibility = Duration::from_secs(30);
        let taken = queue.receive(3, visibility).await.unwrap();
        assert_eq!(taken.len(), 3);
        let receipts: Vec<String> = taken.iter().map(|j| j.receipt.clone()).collect();

        queue.ack_all(&[]).await.unwrap();
        queue.ack_all(&receipts[..2]).await.unwrap();
        assert_eq!(queue.depth().await.unwrap(), 2, "two of four acknowledged");

        // The third's visibility ends and someone else takes it: its old receipt is
        // stale, so acknowledging with it (and the two already gone) removes nothing.
        clock.advance(TimeDelta::seconds(31));
        let again = queue.receive(10, visibility).await.unwrap();
        assert_eq!(again.len(), 2);
        queue.ack_all(&receipts).await.unwrap();
        assert_eq!(queue.depth().await.unwrap(), 2);
        let again: Vec<String> = again.into_iter().map(|j| j.receipt).collect();
        queue.ack_all(&again).await.unwrap();
        assert_eq!(queue.depth().await.unwrap(), 0);
    }

    #[tokio::test]
    async fn jobs_are_deduplicated_hidden_while_taken_and_dead_lettered() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let clock = Arc::new(ManualClock::new(Utc::now()));
        let queue = SqliteAnalysisQueue::open(&path, clock.clone()).unwrap();
        let job = AnalysisJob {
            document_id: DocumentId::generate(),
            version: 2,
        };
        assert_eq!(queue.enqueue(&job).await.unwrap(), WriteOutcome::Applied);
        assert_eq!(
            queue.enqueue(&job).await.unwrap(),
            WriteOutcome::AlreadyApplied
        );
        assert_eq!(queue.depth().await.unwrap(), 1);

        let visibility = Duration::from_secs(30);
        let first = queue.receive(10, visibility).await.unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].job, job);
        assert_eq!(first[0].attempts, 1);
        assert!(queue.receive(10, visibility).await.unwrap().is_empty());

        clock.advance(TimeDelta::seconds(31));
        let second = queue.receive(10, visibility).await.unwrap();
        assert_eq!(second[0].attempts, 2);
        // The first receipt is stale now: acking with it changes nothing.
        queue.ack(&first[0].receipt).await.unwrap();
        assert_eq!(queue.depth().await.unwrap(), 1);

        queue.dead_letter(&second[0].receipt, "boom").await.unwrap();
        assert_eq!(queue.depth().await.unwrap(), 0);
        let dlq = SqliteDeadLetterQueue::open(&path).unwrap();
        let letters = dlq.list(10).await.unwrap();
        assert_eq!(letters.len(), 1);
        assert_eq!(letters[0].source, DeadLetterSource::Analysis);
        assert_eq!(letters[0].reason, "boom");
        assert_eq!(letters[0].attempts, 2);
        let back: AnalysisJob = serde_json::from_value(letters[0].payload.clone()).unwrap();
        assert_eq!(back, job);

        // Still deduplicated after it left the queue; a redrive brings it back.
        assert_eq!(
            queue.enqueue(&job).await.unwrap(),
            WriteOutcome::AlreadyApplied
        );
        queue.requeue(&job).await.unwrap();
        let third = queue.receive(10, visibility).await.unwrap();
        assert_eq!(third[0].job, job);
        queue.ack(&third[0].receipt).await.unwrap();
        assert_eq!(queue.depth().await.unwrap(), 0);
    }
}
