//! The analysis worker: takes jobs from the [`AnalysisQueue`], analyses the document
//! version they name, stores the result in the [`AnalysisStore`] (outside the change
//! stream, so a result never causes another fan-out) and announces it through the
//! [`Notifier`].
//!
//! A job whose version is no longer the document's current one (a newer version or a
//! deletion came since) is acknowledged without work: the newer version has its own
//! job. A job that fails is left to reappear after its visibility timeout, and moves to
//! the dead-letter store once it has been received `max_attempts` times.

mod gathering;
pub mod text;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use shared::clock::Clock;
use shared::ports::{AnalysisQueue, AnalysisStore, DocumentStore, Notifier, ReceivedJob};
use shared::{Error, Result};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument;

use shared::metrics::FanoutMetrics;

/// How the worker behaves (the embedded twin of the SQS queue and its redrive policy).
#[derive(Debug, Clone)]
pub struct AnalysisWorkerConfig {
    /// Jobs taken per receive.
    pub batch_size: usize,
    /// How long a taken job stays hidden from other takers.
    pub visibility_timeout: Duration,
    /// Receives after which a failing job is dead-lettered.
    pub max_attempts: u32,
    /// How often an idle worker looks for jobs whose visibility timeout ended (new jobs
    /// wake it at once).
    pub idle_poll: Duration,
    /// How long a document must have been quiet (no newer job for it) before the
    /// running worker ([`AnalysisWorker::spawn`]) analyses it. Someone typing queues a
    /// job per keystroke; the jobs that gather meanwhile are answered by one analysis
    /// (and one `analysis.completed` frame to every subscriber) instead of one per
    /// keystroke ([`gathering`]).
    pub settle: Duration,
    /// The longest a taken job waits for its document to be quiet: a document edited
    /// without pause is still analysed this often. Keep it well below
    /// `visibility_timeout`.
    pub max_wait: Duration,
    /// The least time between two receives of the running worker while jobs keep
    /// coming (an SQS event source mapping's batching window): a burst of keystrokes is
    /// taken by a few receives, not one each. A full batch is followed by the next
    /// receive at once.
    pub receive_window: Duration,
}

impl Default for AnalysisWorkerConfig {
    fn default() -> Self {
        Self {
            batch_size: 10,
            visibility_timeout: Duration::from_secs(30),
            max_attempts: 5,
            idle_poll: Duration::from_secs(5),
            settle: Duration::from_millis(250),
            max_wait: Duration::from_secs(2),
            receive_window: Duration::from_millis(100),
        }
    }
}

/// What the worker did with one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    Completed,
    /// The version was not current any more, and it or a later one was analysed.
    Superseded,
    /// Failed; it will come back after its visibility timeout.
    Failed(String),
    DeadLettered(String),
}

#[derive(Clone)]
pub struct AnalysisWorker {
    queue: Arc<dyn AnalysisQueue>,
    store: Arc<dyn AnalysisStore>,
    documents: Arc<dyn DocumentStore>,
    notifier: Arc<dyn Notifier>,
    clock: Arc<dyn Clock>,
    config: AnalysisWorkerConfig,
    wake: Option<Arc<Notify>>,
    metrics: FanoutMetrics,
}

impl AnalysisWorker {
    pub fn new(
        queue: Arc<dyn AnalysisQueue>,
        store: Arc<dyn AnalysisStore>,
        documents: Arc<dyn DocumentStore>,
        notifier: Arc<dyn Notifier>,
        clock: Arc<dyn Clock>,
        config: AnalysisWorkerConfig,
    ) -> Self {
        Self {
            queue,
            store,
            documents,
            notifier,
            clock,
            config,
            wake: None,
            metrics: FanoutMetrics::default(),
        }
    }

    /// The same worker counting its jobs into `metrics` (by default into its own).
    pub fn with_metrics(mut self, metrics: FanoutMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// What this worker counts into.
    pub fn metrics(&self) -> &FanoutMetrics {
        &self.metrics
    }

    /// Wakes the idle worker when notified (the queue's enqueue signal).
    pub fn with_wake(mut self, wake: Arc<Notify>) -> Self {
        self.wake = Some(wake);
        self
    }

    /// Takes one batch of visible jobs and works through it; returns what became of
    /// each.
    pub async fn run_once(&self) -> Result<Vec<JobOutcome>> {
        let jobs = self
            .queue
            .receive(self.config.batch_size, self.config.visibility_timeout)
            .await?;
        let mut outcomes = Vec::with_capacity(jobs.len());
        for job in jobs {
            outcomes.push(self.work(job).await);
        }
        Ok(outcomes)
    }

    async fn work(&self, received: ReceivedJob) -> JobOutcome {
        let span = tracing::info_span!(
            "analysis",
            document_id = %received.job.document_id,
            version = received.job.version,
            attempt = received.attempts,
        );
        let outcome = match self.analyse(&received).instrument(span).await {
            Ok(outcome) => outcome,
            Err(e) if received.attempts >= self.config.max_attempts => {
                let reason = format!("after {} attempts: {e}", received.attempts);
                match self.queue.dead_letter(&received.receipt, &reason).await {
                    Ok(()) => {
                        tracing::error!(%reason, "analysis job dead-lettered");
                        JobOutcome::DeadLettered(reason)
                    }
                    Err(dlq) => {
                        JobOutcome::Failed(format!("{reason}; dead-lettering failed: {dlq}"))
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "analysis failed; the job will come back");
                JobOutcome::Failed(e.to_string())
            }
        };
        self.metrics.record_analysis(match outcome {
            JobOutcome::Completed => "completed",
            JobOutcome::Superseded => "superseded",
            JobOutcome::Failed(_) => "failed",
            JobOutcome::DeadLettered(_) => "dead_lettered",
        });
        outcome
    }

    async fn analyse(&self, received: &ReceivedJob) -> Result<JobOutcome> {
        let job = &received.job;
        let current = self.documents.get(&job.document_id).await?;
        let doc = match current {
            None => {
                self.queue.ack(&received.receipt).await?;
                return Ok(JobOutcome::Superseded);
            }
            Some(doc) if doc.version < job.version => {
                return Err(Error::Unavailable(format!(
                    "the store has version {} of a document whose version {} was changed",
                    doc.version, job.version
                )));
            }
            // The job's version, or a later one: when a later version changed the body
            // or the title its own job analyses it, but one that did not (a collaborator
            // change) queues none. So the current document is analysed (its body is at
            // least as new as the job's) unless this version or a later one already is.
            Some(doc) => doc,
        };
        let analysed = self
            .store
            .get(&job.document_id)
            .await?
            .is_some_and(|a| a.version >= job.version);
        if analysed {
            self.queue.ack(&received.receipt).await?;
            return Ok(JobOutcome::Superseded);
        }
        let analysed_doc = doc.clone();
        let at = self.clock.now();
        // Language detection and tokenizing are CPU work: keep them off the reactor.
        let analysis = tokio::task::spawn_blocking(move || text::analyze(&analysed_doc, at))
            .await
            .map_err(|e| Error::Unknown(anyhow::anyhow!("analysis task failed: {e}")))?;
        self.store.put(&analysis).await?;
        self.notifier.publish_analysis(&doc, &analysis).await?;
        self.queue.ack(&received.receipt).await?;
        Ok(JobOutcome::Completed)
    }

    /// Works one document's held jobs, newest first: the newest is worked; when the
    /// document is then analysed at its version or later (or gone), the older ones are
    /// superseded and acknowledged together, without looking at the document again.
    async fn work_held(&self, jobs: Vec<ReceivedJob>) {
        let mut jobs = jobs.into_iter();
        let Some(newest) = jobs.next() else {
            return;
        };
        let outcome = self.work(newest).await;
        if !matches!(outcome, JobOutcome::Completed | JobOutcome::Superseded) {
            // Each older job is tried on its own (and fails or is dead-lettered alike).
            for job in jobs {
                self.work(job).await;
            }
            return;
        }
        let receipts: Vec<String> = jobs.map(|job| job.receipt).collect();
        if receipts.is_empty() {
            return;
        }
        match self.queue.ack_all(&receipts).await {
            Ok(()) => {
                for _ in &receipts {
                    self.metrics.record_analysis("superseded");
                }
            }
            // They reappear after their visibility timeout and are found analysed then.
            Err(e) => tracing::warn!(
                error = %e,
                jobs = receipts.len(),
                "acknowledging superseded analysis jobs failed"
            ),
        }
    }

    /// Runs the worker until `shutdown` completes: takes jobs as they are enqueued (at
    /// most one receive per [`AnalysisWorkerConfig::receive_window`] while they keep
    /// coming), holds each document's until it is quiet
    /// ([`AnalysisWorkerConfig::settle`]), then works them. Jobs held when it stops
    /// reappear after their visibility timeout.
    pub fn spawn(self, shutdown: impl Future<Output = ()> + Send + 'static) -> JoinHandle<()> {
        let (stop_tx, mut stop) = watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        tokio::spawn(async move {
            let mut gathering = gathering::Gathering::new(self.config.settle, self.config.max_wait);
            let mut next_receive = Instant::now();
            'run: loop {
                if *stop.borrow() {
                    break;
                }
                if next_receive > Instant::now() {
                    tokio::select! {
                        _ = stop.changed() => break,
                        _ = tokio::time::sleep_until(next_receive) => {}
                    }
                }
                let taken = tokio::select! {
                    _ = stop.changed() => break,
                    taken = self.queue.receive(self.config.batch_size, self.config.visibility_timeout) => taken,
                };
                next_receive = Instant::now() + self.config.receive_window;
                let full = match taken {
                    Ok(jobs) => {
                        let full = jobs.len() >= self.config.batch_size;
                        let now = Instant::now();
                        for job in jobs {
                            gathering.add(job, now);
                        }
                        full
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "analysis queue unavailable");
                        false
                    }
                };
                for held in gathering.take_due(Instant::now()) {
                    tokio::select! {
                        _ = stop.changed() => break 'run,
                        _ = self.work_held(held) => {}
                    }
                }
                if full {
                    // More may be visible already.
                    next_receive = Instant::now();
                    continue;
                }
                let idle_until = Instant::now() + self.config.idle_poll;
                let wait_until = gathering
                    .next_due()
                    .map_or(idle_until, |due| due.min(idle_until));
                let wake = self.wake.clone();
                tokio::select! {
                    _ = stop.changed() => break,
                    _ = async move {
                        match wake {
                            Some(n) => n.notified().await,
                            None => std::future::pending().await,
                        }
                    } => {}
                    _ = tokio::time::sleep_until(wait_until) => {}
                }
            }
            tracing::info!("analysis worker stopped");
        })
    }
}
