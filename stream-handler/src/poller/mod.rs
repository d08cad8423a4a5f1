//! The embedded event source mapping: reads the change log and feeds the stream
//! handler the way Lambda's DynamoDB event source mapping feeds the Lambda.
//!
//! - Records are split into `parallelization_factor` partitions by a stable hash of the
//!   document id; each partition is one task that handles its batches in order, so the
//!   changes of one document are handled in order while documents spread out.
//! - A partition reads up to `batch_size` of its records, waiting up to
//!   `maximum_batching_window` for a batch to fill; it sleeps on the change feed's
//!   commit signal when caught up (no polling delay).
//! - A partition reads only its own records (the change log stores each record's shard).
//! - After a batch, the partition's checkpoint (the sequence number up to which all of
//!   its records are handled) is saved in SQLite, so a restart resumes there — unless a
//!   sink holds some of the batch for a later commit ([`Flushed::Deferred`], the search
//!   index committing by time and size): then the checkpoint waits for that commit,
//!   which the partition makes when it is due if no later batch has, and before it
//!   stops.
//! - A failed batch resumes from the lowest reported failure, after a backoff; with
//!   `bisect_batch_on_error`, a batch that failed as a whole is split in two (this does
//!   not count as a retry). A record that fails more than `maximum_retry_attempts`
//!   times, or grows older than `maximum_record_age`, goes to the dead-letter queue and
//!   the partition moves on.
//! - Records every partition has handled are trimmed from the log once older than
//!   `retention`.
//! - Several consumers may read one change log, each with its own sinks, knobs and
//!   checkpoints (as DynamoDB Streams serves two event source mappings per shard): a
//!   consumer's checkpoints are [durable](Checkpoints::Durable), or
//!   [held in memory from the latest record](Checkpoints::FromLatest) for a consumer
//!   whose effects do not outlive the process (live notifications to in-process
//!   WebSocket connections).

mod batch;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use shared::Result;
use shared::clock::Clock;
use shared::embedded::{ChangeFeed, ChangeRecord};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::handler::{Fanout, RetryPolicy};
use crate::sinks::{Flush, Flushed};
use batch::{BatchOutcome, BatchState, Item, Next, Rules};

/// Where a consumer's checkpoints live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checkpoints {
    /// Saved in the change log's database after every batch: a restart resumes there.
    Durable,
    /// Kept in memory, starting at the latest record when the poller starts: records
    /// committed while it was not running are not its business.
    FromLatest,
}

/// The knobs of the event source mapping.
#[derive(Debug, Clone)]
pub struct PollerConfig {
    /// The consumer's name, for logs and metrics (`index`, `live`).
    pub consumer: &'static str,
    pub checkpoints: Checkpoints,
    /// Records per handler call (1..=10000).
    pub batch_size: usize,
    /// How long to wait for a batch to fill before handling a smaller one.
    pub maximum_batching_window: Duration,
    /// Partitions handled concurrently (1..=10), each in document order.
    pub parallelization_factor: u32,
    /// Split a batch that failed as a whole and retry the halves.
    pub bisect_batch_on_error: bool,
    /// Retries of a failing record before it is dead-lettered; `None`: until it expires.
    pub maximum_retry_attempts: Option<u32>,
    /// Age after which an unprocessed record is dead-lettered; `None`: never.
    pub maximum_record_age: Option<Duration>,
    /// Pause between retries of a failed batch.
    pub retry_backoff: RetryPolicy,
    /// How long handled records stay in the change log (DynamoDB Streams keeps 24
    /// hours); `None` keeps them for ever.
    pub retention: Option<Duration>,
}

impl Default for PollerConfig {
    fn default() -> Self {
        Self {
            consumer: "index",
            checkpoints: Checkpoints::Durable,
            batch_size: 100,
            maximum_batching_window: Duration::ZERO,
            parallelization_factor: 2,
            bisect_batch_on_error: true,
            maximum_retry_attempts: Some(10),
            maximum_record_age: Some(Duration::from_secs(24 * 3600)),
            retry_backoff: RetryPolicy {
                max_attempts: u32::MAX,
                initial_backoff: Duration::from_millis(200),
                max_backoff: Duration::from_secs(30),
            },
            retention: Some(Duration::from_secs(24 * 3600)),
        }
    }
}

impl PollerConfig {
    /// The live consumer: notifications only, so its batches are handled as soon as
    /// they are read (no batching window) and a failure is retried briefly, then
    /// dead-lettered; checkpoints in memory from the latest record, since the
    /// connections it notifies live in this process; no trimming (the durable
    /// consumer's retention rules the log).
    pub fn live() -> Self {
        Self {
            consumer: "live",
            checkpoints: Checkpoints::FromLatest,
            batch_size: 100,
            maximum_batching_window: Duration::ZERO,
            parallelization_factor: 2,
            bisect_batch_on_error: true,
            maximum_retry_attempts: Some(3),
            maximum_record_age: Some(Duration::from_secs(300)),
            retry_backoff: RetryPolicy {
                max_attempts: u32::MAX,
                initial_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_secs(2),
            },
            retention: None,
        }
    }
}

pub use shared::embedded::change_log::partition_of;

/// The embedded event source mapping.
pub struct Poller;

impl Poller {
    /// Starts the poller; it runs until `shutdown` completes, then finishes the batch
    /// in hand (without starting retries) and returns.
    pub fn spawn(
        config: PollerConfig,
        feed: ChangeFeed,
        fanout: Arc<Fanout>,
        clock: Arc<dyn Clock>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> JoinHandle<Result<()>> {
        Self::spawn_observed(config, feed, fanout, clock, shutdown).0
    }

    /// [`Poller::spawn`], also returning each partition's checkpoint as it advances:
    /// every record at or below [`handled_through`] of it is handled by every sink.
    pub fn spawn_observed(
        config: PollerConfig,
        feed: ChangeFeed,
        fanout: Arc<Fanout>,
        clock: Arc<dyn Clock>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> (JoinHandle<Result<()>>, watch::Receiver<BTreeMap<u32, u64>>) {
        let (progress_tx, progress) = watch::channel(BTreeMap::new());
        let progress_tx = Arc::new(progress_tx);
        let (stop_tx, stop) = watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        let handle = tokio::spawn(async move {
            let factor = config.parallelization_factor.clamp(1, 10);
            let checkpoints = match config.checkpoints {
                Checkpoints::Durable => align_checkpoints(&feed, factor).await?,
                Checkpoints::FromLatest => {
                    let latest = feed.latest_seq().await?;
                    (0..factor).map(|p| (p, latest)).collect()
                }
            };
            progress_tx.send_replace(checkpoints.clone());
            let mut tasks = Vec::new();
            for (partition, checkpoint) in checkpoints {
                let partition = Partition {
                    id: partition,
                    factor,
                    config: config.clone(),
                    feed: feed.clone(),
                    fanout: Arc::clone(&fanout),
                    clock: Arc::clone(&clock),
                    stop: stop.clone(),
                    progress: Arc::clone(&progress_tx),
                };
                let span = tracing::info_span!(
                    "stream_partition",
                    consumer = config.consumer,
                    partition = partition.id
                );
                tasks.push(tokio::spawn(partition.run(checkpoint).instrument(span)));
            }
            if let (Some(retention), Checkpoints::Durable) = (config.retention, config.checkpoints)
            {
                tokio::spawn(trim_handled(
                    feed.clone(),
                    progress_tx.subscribe(),
                    Arc::clone(&clock),
                    retention,
                    stop.clone(),
                ));
            }
            let mut result = Ok(());
            for task in tasks {
                match task.await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => result = Err(e),
                    Err(e) => {
                        result = Err(shared::Error::Unknown(anyhow::anyhow!(
                            "stream partition task failed: {e}"
                        )))
                    }
                }
            }
            tracing::info!(consumer = config.consumer, "stream poller stopped");
            result
        });
        (handle, progress)
    }
}

/// How often handled records past the retention are trimmed from the change log.
const TRIM_EVERY: Duration = Duration::from_secs(60);

/// Trims records that every partition has handled and that are older than the
/// retention, until stopped.
async fn trim_handled(
    feed: ChangeFeed,
    progress: watch::Receiver<BTreeMap<u32, u64>>,
    clock: Arc<dyn Clock>,
    retention: Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(TRIM_EVERY) => {}
        }
        let checkpoints = progress.borrow().clone();
        match trim_once(&feed, &checkpoints, clock.as_ref(), retention).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(trimmed = n, "trimmed the change log"),
            Err(e) => tracing::warn!(error = %e, "trimming the change log failed"),
        }
    }
}

/// Deletes the records every partition has handled (per `checkpoints`) that were
/// committed more than `retention` ago; returns how many went.
pub async fn trim_once(
    feed: &ChangeFeed,
    checkpoints: &BTreeMap<u32, u64>,
    clock: &dyn Clock,
    retention: Duration,
) -> Result<u64> {
    let Ok(retention) = chrono::TimeDelta::from_std(retention) else {
        return Ok(0);
    };
    feed.trim(handled_through(checkpoints), clock.now() - retention)
        .await
}

/// The checkpoints for `factor` partitions. When the factor changed since they were
/// saved, every partition restarts from the lowest saved one: records are handled again
/// (the sinks are idempotent) rather than skipped.
async fn align_checkpoints(feed: &ChangeFeed, factor: u32) -> Result<BTreeMap<u32, u64>> {
    let saved = feed.checkpoints().await?;
    if saved.len() == factor as usize && saved.keys().copied().eq(0..factor) {
        return Ok(saved);
    }
    let start = saved.values().copied().min().unwrap_or(0);
    let aligned: BTreeMap<u32, u64> = (0..factor).map(|p| (p, start)).collect();
    feed.reset_checkpoints(aligned.clone()).await?;
    Ok(aligned)
}

struct Partition {
    id: u32,
    factor: u32,
    config: PollerConfig,
    feed: ChangeFeed,
    fanout: Arc<Fanout>,
    clock: Arc<dyn Clock>,
    stop: watch::Receiver<bool>,
    progress: Arc<watch::Sender<BTreeMap<u32, u64>>>,
}

/// The sequence number through which every partition has handled its records.
pub fn handled_through(checkpoints: &BTreeMap<u32, u64>) -> u64 {
    checkpoints.values().copied().min().unwrap_or(0)
}

/// The records the poller has not handled yet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    pub records: u64,
    /// When the oldest of them was committed.
    pub oldest: Option<chrono::DateTime<chrono::Utc>>,
}

/// The records of `feed` above their partition's saved checkpoint: what the next poller
/// on this change log hands to the handler. Checkpoints saved for another number of
/// partitions count from the lowest, as the poller then restarts from it.
pub async fn backlog(feed: &ChangeFeed) -> Result<Backlog> {
    const PAGE: usize = 1000;
    let checkpoints = feed.checkpoints().await?;
    let factor = checkpoints.len() as u32;
    let aligned = factor > 0 && checkpoints.keys().copied().eq(0..factor);
    let mut after = handled_through(&checkpoints);
    let mut backlog = Backlog::default();
    loop {
        let page = feed.read_after(after, PAGE).await?;
        let Some(last) = page.last() else {
            return Ok(backlog);
        };
        after = last.seq;
        for record in &page {
            let handled = aligned
                && checkpoints
                    .get(&partition_of(&record.document_id, factor))
                    .is_some_and(|&through| record.seq <= through);
            if !handled {
                backlog.records += 1;
                backlog.oldest = Some(
                    backlog
                        .oldest
                        .map_or(record.committed_at, |o| o.min(record.committed_at)),
                );
            }
        }
    }
}

impl Partition {
    async fn save(&self, checkpoint: u64) -> Result<()> {
        if self.config.checkpoints == Checkpoints::Durable {
            self.feed.save_checkpoint(self.id, checkpoint).await?;
        }
        self.progress.send_modify(|p| {
            p.insert(self.id, checkpoint);
        });
        Ok(())
    }

    fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    /// Sleeps for `pause` unless stopped first; returns whether it was stopped.
    async fn pause(&self, pause: Duration) -> bool {
        let mut stop = self.stop.clone();
        tokio::select! {
            _ = stop.wait_for(|s| *s) => true,
            _ = tokio::time::sleep(pause) => self.stopped(),
        }
    }

    async fn run(self, checkpoint: u64) -> Result<()> {
        let mut wake = self.feed.wake();
        let mut errors = 0;
        let mut cursor = Cursor {
            read_to: checkpoint,
            commit_due: None,
            commit_failures: 0,
        };
        while !self.stopped() {
            match self.step(&mut cursor, &mut wake).await {
                Ok(Step::Continue) => errors = 0,
                Ok(Step::Stop) => break,
                Err(e) => {
                    // The change log or the dead-letter queue failed us: try again from
                    // the last checkpoint (the sinks take redelivery in their stride).
                    errors += 1;
                    let pause = self.config.retry_backoff.backoff(errors);
                    tracing::warn!(partition = self.id, error = %e, ?pause, "stream partition failed; retrying");
                    if self.pause(pause).await {
                        break;
                    }
                }
            }
        }
        if cursor.commit_due.is_some() {
            // What was handled but not yet committed: commit it and checkpoint, or
            // leave the checkpoint where it is and let the next start redeliver.
            match self.fanout.commit().await {
                Ok(()) => self.save(cursor.read_to).await?,
                Err(e) => tracing::warn!(
                    partition = self.id,
                    error = %e,
                    "the last commit before stopping failed; what it held is delivered again at the next start"
                ),
            }
        }
        Ok(())
    }

    /// Moves the cursor past what was handled, up to `to`: the checkpoint follows when
    /// the sinks say their deliveries are durable (`flushed`; `None` when nothing was
    /// flushed, so the state of the earlier batches rules).
    async fn advance(&self, cursor: &mut Cursor, to: u64, flushed: Option<Flushed>) -> Result<()> {
        cursor.read_to = to;
        match flushed {
            Some(Flushed::Deferred(due_in)) => {
                let due = tokio::time::Instant::now() + due_in;
                cursor.commit_due = Some(cursor.commit_due.map_or(due, |d| d.min(due)));
                Ok(())
            }
            Some(Flushed::Durable) => {
                cursor.commit_due = None;
                self.save(to).await
            }
            None if cursor.commit_due.is_none() => self.save(to).await,
            None => Ok(()),
        }
    }

    /// Commits what the sinks hold and checkpoints it; on failure the commit is tried
    /// again after a backoff (the sinks keep what they hold).
    async fn commit(&self, cursor: &mut Cursor) -> Result<()> {
        match self.fanout.commit().await {
            Ok(()) => {
                cursor.commit_failures = 0;
                cursor.commit_due = None;
                self.save(cursor.read_to).await
            }
            Err(e) => {
                cursor.commit_failures += 1;
                let pause = self.config.retry_backoff.backoff(cursor.commit_failures);
                tracing::warn!(partition = self.id, error = %e, ?pause, "a deferred commit failed; retrying");
                cursor.commit_due = Some(tokio::time::Instant::now() + pause);
                Ok(())
            }
        }
    }

    /// Reads and handles one batch, or waits for one (or for a deferred commit).
    async fn step(&self, cursor: &mut Cursor, wake: &mut watch::Receiver<u64>) -> Result<Step> {
        let (mut records, mut scanned_to) = self.collect(cursor.read_to).await?;
        if records.is_empty() {
            self.fanout
                .metrics()
                .set_oldest_unprocessed(self.config.consumer, self.id, None);
            if scanned_to > cursor.read_to {
                self.advance(cursor, scanned_to, None).await?;
                return Ok(Step::Continue);
            }
            let read_to = cursor.read_to;
            let mut stop = self.stop.clone();
            let commit_due = cursor.commit_due;
            let due = async move {
                match commit_due {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let commit_now = tokio::select! {
                _ = stop.wait_for(|s| *s) => return Ok(Step::Stop),
                () = due => true,
                woke = wake.wait_for(|latest| *latest > read_to) => {
                    if woke.is_err() {
                        // The store is gone: nothing more will be committed.
                        return Ok(Step::Stop);
                    }
                    false
                }
            };
            if commit_now {
                self.commit(cursor).await?;
            }
            return Ok(Step::Continue);
        }
        self.fanout.metrics().set_oldest_unprocessed(
            self.config.consumer,
            self.id,
            Some(records[0].committed_at),
        );
        let window = self.config.maximum_batching_window;
        if records.len() < self.config.batch_size && !window.is_zero() {
            let waited = (self.clock.now() - records[0].committed_at)
                .to_std()
                .unwrap_or_default();
            if waited < window {
                if self.pause(window - waited).await {
                    return Ok(Step::Stop);
                }
                (records, scanned_to) = self.collect(cursor.read_to).await?;
            }
        }
        let (handled_to, flushed) = self.handle(records, cursor.read_to).await?;
        let to = match handled_to {
            Handled::All => scanned_to,
            Handled::UpTo(seq) => seq,
        };
        self.advance(cursor, to, flushed).await?;
        Ok(Step::Continue)
    }

    /// Up to `batch_size` records of this partition after `after`, and the sequence
    /// number up to which the log was read for them.
    async fn collect(&self, after: u64) -> Result<(Vec<ChangeRecord>, u64)> {
        self.feed
            .read_partition_after(after, self.id, self.factor, self.config.batch_size)
            .await
    }

    /// Handles a batch until every record is handled or dead-lettered ([`BatchState`]
    /// decides what comes next); stops early (without losing anything: the checkpoint
    /// says where) when shut down. Also says whether the last flush left the sinks'
    /// deliveries durable.
    async fn handle(
        &self,
        records: Vec<ChangeRecord>,
        checkpoint: u64,
    ) -> Result<(Handled, Option<Flushed>)> {
        let items = records
            .into_iter()
            .map(|r| Item {
                seq: r.seq,
                committed_at: r.committed_at,
                record: serde_json::from_str(&r.record)
                    .unwrap_or_else(|_| Value::String(r.record.to_string())),
            })
            .collect();
        let rules = Rules {
            bisect_batch_on_error: self.config.bisect_batch_on_error,
            maximum_retry_attempts: self.config.maximum_retry_attempts,
            maximum_record_age: self.config.maximum_record_age,
        };
        let mut state = BatchState::new(items, checkpoint, rules);
        let mut flushed = None;
        loop {
            let batch = match state.next(self.clock.now()) {
                Next::Done => return Ok((Handled::All, flushed)),
                Next::DeadLetter {
                    record,
                    reason,
                    attempts,
                } => {
                    self.fanout
                        .dead_letter_record(record, &reason, attempts)
                        .await?;
                    state.dead_lettered();
                    continue;
                }
                Next::Attempt(records) => records,
            };
            let attempted = batch.len();
            let fanout = Arc::clone(&self.fanout);
            let (outcome, report_flushed) =
                match tokio::spawn(
                    async move { fanout.handle_detailed(&batch, Flush::IfDue).await },
                )
                .await
                {
                    Ok(report) => (report.outcome(), report.flushed),
                    Err(e) => (
                        BatchOutcome::WholeBatchFailed {
                            reason: format!("the handler failed: {e}"),
                        },
                        // What the sinks took before it failed is not known durable.
                        Flushed::Deferred(Duration::ZERO),
                    ),
                };
            flushed = Some(report_flushed);
            let reason = match &outcome {
                BatchOutcome::Succeeded => None,
                BatchOutcome::FailedFrom { reason, .. }
                | BatchOutcome::WholeBatchFailed { reason } => Some(reason.clone()),
            };
            let whole = matches!(outcome, BatchOutcome::WholeBatchFailed { .. });
            let after = state.attempted(attempted, outcome);
            let Some(reason) = reason else { continue };
            if after.progressed && report_flushed == Flushed::Durable {
                // The records before the failure are done and durable.
                self.save(state.done_to()).await?;
            }
            match after.backoff_after {
                None if whole => {
                    tracing::warn!(partition = self.id, %reason, "batch failed; bisecting");
                }
                None => {}
                Some(failures) => {
                    let pause = self.config.retry_backoff.backoff(failures);
                    tracing::warn!(
                        partition = self.id,
                        failures,
                        ?pause,
                        %reason,
                        "batch failed; retrying from the lowest failed record"
                    );
                    if self.pause(pause).await {
                        return Ok((Handled::UpTo(state.done_to()), flushed));
                    }
                }
            }
        }
    }
}

/// Where a partition is: read and handled up to `read_to`; its saved checkpoint is
/// there too unless a sink holds some of it for a commit due at `commit_due`.
struct Cursor {
    read_to: u64,
    commit_due: Option<tokio::time::Instant>,
    /// Deferred commits failed in a row.
    commit_failures: u32,
}

enum Step {
    Continue,
    Stop,
}

enum Handled {
    /// Everything collected is handled.
    All,
    /// Handled up to this sequence number (stopped early).
    UpTo(u64),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_stable_and_spread() {
        let ids: Vec<String> = (0..200).map(|i| format!("doc-{i}")).collect();
        let mut counts = [0; 4];
        for id in &ids {
            let p = partition_of(id, 4);
            assert_eq!(p, partition_of(id, 4));
            counts[p as usize] += 1;
        }
        assert!(counts.iter().all(|&n| n > 20), "{counts:?}");
        assert_eq!(partition_of("anything", 1), 0);
        assert_eq!(partition_of("anything", 0), 0);
    }
}
