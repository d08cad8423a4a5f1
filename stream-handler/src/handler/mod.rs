//! The stream handler: a batch of DynamoDB stream records in, the partial batch
//! response out. The embedded poller calls it for each batch it reads from the change
//! log; the Lambda entry point calls it with the event the mapping delivers.
//!
//! For each record, in order per document:
//! 1. decode it once into a [`ChangeEvent`](shared::domain::ChangeEvent) (an
//!    undecodable record goes to the dead-letter queue whole, with the reason, and
//!    counts as handled), reading back the bodies a record left out
//!    ([`crate::bodies`]);
//! 2. deliver it to every sink concurrently, each in its own span; a transient failure
//!    is retried in-process with bounded exponential backoff (on tokio's clock);
//! 3. a sink still failing transiently after that makes the record a batch item
//!    failure, and so every later record of the same document in the batch (the
//!    mapping retries from the lowest failed sequence number, so nothing overtakes);
//! 4. a permanent failure sends the record to the dead-letter queue and the stream
//!    moves on.
//!
//! Records of different documents are processed concurrently. The sinks are flushed
//! once at the end of the batch; a failed flush reports the whole batch for a retry.
//! With a body archive, a delivered deletion then forgets the document's kept versions.
//!
//! Laid out as: `plan`, the batch decoded, grouped and marked before any sink sees it;
//! `delivery`, each document's records to every sink; `outcome`, what becomes of a
//! record (and what a failed flush makes of it) and of a batch; `tally`, the batch's
//! report and record counts. `plan`, `outcome` and `tally` do no I/O; here the
//! [`Fanout`] runs them in turn with the deliveries, the flush, giving up and dead
//! letters.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::streams::DynamoDbEventResponse;
use futures_util::future::join_all;
use serde_json::Value;
use shared::clock::Clock;
use shared::metrics::FanoutMetrics;
use shared::ports::{BodyArchive, DeadLetter, DeadLetterQueue, DeadLetterSource};

use crate::bodies::BodyReader;
use crate::decode::{RecordMeta, decode};
use crate::give_up::GiveUp;
use crate::sinks::{Flush, Flushed, Sink};

mod delivery;
mod outcome;
mod plan;
mod tally;

pub use outcome::{BatchOutcome, BatchReport};
use outcome::{FlushFailure, Outcome, Retry};
use plan::{Pending, Plan};
use tally::Tally;

pub use shared::retry::RetryPolicy;

/// How the handler behaves.
#[derive(Debug, Clone)]
pub struct HandlerConfig {
    pub retry: RetryPolicy,
    /// How many documents of one batch are processed at once.
    pub document_concurrency: usize,
}

impl Default for HandlerConfig {
    fn default() -> Self {
        Self {
            retry: RetryPolicy::default(),
            document_concurrency: 16,
        }
    }
}

/// The handler with its sinks and dead-letter queue, built once per process.
pub struct Fanout {
    sinks: Vec<Arc<dyn Sink>>,
    /// Where what cannot be delivered goes; `None` for a consumer that logs and drops
    /// it (the live one).
    dlq: Option<Arc<dyn DeadLetterQueue>>,
    clock: Arc<dyn Clock>,
    config: HandlerConfig,
    bodies: Option<BodyReader>,
    /// Whether a delivered deletion forgets the document's kept versions.
    forgets_versions: bool,
    /// When a record that keeps failing is dead-lettered by the handler (a Lambda
    /// consumer); `None` leaves it to the caller (the embedded poller).
    give_up: Option<GiveUp>,
    metrics: FanoutMetrics,
}

/// The sink of the live consumer ([`Fanout::live`]); the index consumer
/// ([`Fanout::index`]) takes the others.
pub const LIVE_SINK: &str = "notifications";

/// Runs the handler on a batch: the function the Lambda entry point and the poller
/// share.
pub async fn handle(records: &[Value], fanout: &Fanout) -> DynamoDbEventResponse {
    fanout.handle(records).await
}

impl Fanout {
    pub fn new(
        sinks: Vec<Arc<dyn Sink>>,
        dlq: Arc<dyn DeadLetterQueue>,
        clock: Arc<dyn Clock>,
        config: HandlerConfig,
    ) -> Self {
        Self {
            dlq: Some(dlq),
            ..Self::without_dead_letters(sinks, clock, config)
        }
    }

    /// A fan-out that logs and drops what it cannot deliver: the live consumer's, beside
    /// an index consumer of the same stream that dead-letters every record it cannot
    /// decode, so a poison record is kept once.
    pub fn without_dead_letters(
        sinks: Vec<Arc<dyn Sink>>,
        clock: Arc<dyn Clock>,
        config: HandlerConfig,
    ) -> Self {
        Self {
            sinks,
            dlq: None,
            clock,
            config,
            bodies: None,
            forgets_versions: true,
            give_up: None,
            metrics: FanoutMetrics::default(),
        }
    }

    /// The same fan-out reading paged-out bodies back from `archive`, and forgetting a
    /// document's kept versions there once its deletion is delivered.
    pub fn with_body_archive(mut self, archive: Arc<dyn BodyArchive>) -> Self {
        self.bodies = Some(BodyReader::new(archive));
        self
    }

    /// The same fan-out counting into `metrics` (by default it counts into its own).
    pub fn with_metrics(mut self, metrics: FanoutMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// What this fan-out counts into.
    pub fn metrics(&self) -> &FanoutMetrics {
        &self.metrics
    }

    /// The same fan-out dead-letting a record that keeps failing itself, by `give_up`'s
    /// rules, before an event source mapping would give up on it ([`crate::give_up`]).
    pub fn giving_up(mut self, give_up: GiveUp) -> Self {
        self.give_up = Some(give_up);
        self
    }

    /// The live consumer of the same stream: notifications alone, dropping (and
    /// logging) what it cannot deliver rather than dead-lettering it, and reading
    /// paged-out bodies without ever forgetting them (the index consumer may still need
    /// them).
    pub fn live(&self) -> Fanout {
        let mut live = self.with_sinks(|s| s.name() == LIVE_SINK);
        live.dlq = None;
        live.forgets_versions = false;
        live
    }

    /// The index consumer of the same stream: every sink but notifications, with this
    /// fan-out's dead letters, and forgetting a deleted document's versions once its
    /// deletion is delivered.
    pub fn index(&self) -> Fanout {
        self.with_sinks(|s| s.name() != LIVE_SINK)
    }

    fn with_sinks(&self, keep: impl Fn(&dyn Sink) -> bool) -> Fanout {
        Fanout {
            sinks: self
                .sinks
                .iter()
                .filter(|s| keep(s.as_ref()))
                .cloned()
                .collect(),
            dlq: self.dlq.clone(),
            clock: Arc::clone(&self.clock),
            config: self.config.clone(),
            bodies: self
                .bodies
                .as_ref()
                .map(|b| BodyReader::new(Arc::clone(b.archive()))),
            forgets_versions: self.forgets_versions,
            give_up: self.give_up.clone(),
            metrics: self.metrics.clone(),
        }
    }

    pub fn sinks(&self) -> &[Arc<dyn Sink>] {
        &self.sinks
    }

    /// The dead-letter queue; `None` for a consumer that keeps none.
    pub fn dead_letters(&self) -> Option<&Arc<dyn DeadLetterQueue>> {
        self.dlq.as_ref()
    }

    /// Each sink's health, by name.
    pub async fn health(&self) -> Vec<(&'static str, shared::Result<()>)> {
        join_all(
            self.sinks
                .iter()
                .map(|s| async move { (s.name(), s.health().await) }),
        )
        .await
    }

    /// Handles a Lambda event (`{"Records": [...]}`).
    pub async fn handle_event(&self, event: &Value) -> DynamoDbEventResponse {
        let records = event["Records"].as_array().map_or(&[][..], Vec::as_slice);
        self.handle(records).await
    }

    /// Handles a batch of records, as JSON; what the sinks took is durable when it
    /// answers (a Lambda invocation ends there).
    pub async fn handle(&self, records: &[Value]) -> DynamoDbEventResponse {
        self.handle_detailed(records, Flush::Now).await.response
    }

    /// Handles a batch, flushing the sinks `when` asked (a long-running consumer lets
    /// them commit by their own policy, [`Flush::IfDue`]), and says why each reported
    /// record failed.
    pub async fn handle_detailed(&self, records: &[Value], when: Flush) -> BatchReport {
        let mut plan = Plan::of(records);
        let delivered = self.deliver_documents(&plan).await;
        let outcomes = plan.outcomes(delivered);

        let (flushed, flush_failure) = match self.flush(when).await {
            Ok(flushed) => (flushed, None),
            // Nothing held is durable until a later flush succeeds.
            Err(e) => (Flushed::Deferred(Duration::ZERO), Some(e)),
        };

        let mut outcomes: Vec<Outcome> = outcomes
            .into_iter()
            .map(|outcome| outcome.after_flush(flush_failure.as_ref()))
            .collect();
        if let Some(give_up) = &self.give_up {
            self.give_up_on_the_exhausted(give_up, records, &plan.metas, &mut outcomes)
                .await;
        }

        let mut tally = Tally::new(flushed, self.dead_letter_outcome());
        for ((record, meta), outcome) in records.iter().zip(&plan.metas).zip(outcomes) {
            tally.add(meta, self.dead_letter_the_dead(record, meta, outcome).await);
        }
        let (report, counts) = tally.finish();
        for (outcome, n) in counts {
            self.metrics.record_records(outcome, n);
        }
        report
    }

    /// Dead-letters a dead record: it stays dead once the dead-letter queue took it (or
    /// it was dropped), and is held for another try when the queue fails.
    async fn dead_letter_the_dead(
        &self,
        record: &Value,
        meta: &RecordMeta,
        outcome: Outcome,
    ) -> Outcome {
        let Outcome::Dead {
            reason,
            attempts,
            sink,
        } = &outcome
        else {
            return outcome;
        };
        match self.dead_letter(record, meta, reason, *attempts).await {
            Ok(()) => {
                if let Some(sink) = sink {
                    self.metrics.record_dead_lettered(sink);
                }
                outcome
            }
            Err(e) => Retry::held(format!("{reason}; and the dead-letter queue failed: {e}")),
        }
    }

    /// Counts a failure of every record that failed on its own, and turns those
    /// [`GiveUp`] gives up on into dead letters (their attempt counts in parallel).
    async fn give_up_on_the_exhausted(
        &self,
        give_up: &GiveUp,
        records: &[Value],
        metas: &[RecordMeta],
        outcomes: &mut [Outcome],
    ) {
        let now = self.clock.now();
        let judged = join_all(outcomes.iter().enumerate().filter_map(|(i, outcome)| {
            let Outcome::Retry(Retry {
                countable: true, ..
            }) = outcome
            else {
                return None;
            };
            let written_at = crate::decode::approximate_creation(&records[i]["dynamodb"]);
            let id = metas[i].event_id.as_str();
            Some(async move { (i, give_up.judge(id, written_at, now).await) })
        }))
        .await;
        for (i, (verdict, attempts)) in judged {
            if let (Some(why), Outcome::Retry(Retry { reason, sink, .. })) = (verdict, &outcomes[i])
            {
                outcomes[i] = Outcome::Dead {
                    reason: format!("{reason}; given up: {why}"),
                    attempts,
                    sink: *sink,
                };
            }
        }
    }

    /// Processes one record on its own, without dead-lettering it: an operator's
    /// redrive. `Err` carries why it still fails.
    pub async fn redrive(&self, record: &Value) -> Result<(), String> {
        let meta = RecordMeta::of(record);
        let Some(pending) = Pending::of(decode(record).map_err(|e| e.to_string())?) else {
            return Ok(());
        };
        let change = match self.ready(&pending).await {
            Ok(Some(change)) => change,
            Ok(None) => return Ok(()),
            Err(Outcome::Retry(Retry { reason, .. }) | Outcome::Dead { reason, .. }) => {
                return Err(reason);
            }
            Err(Outcome::Done | Outcome::Skipped) => return Ok(()),
        };
        match self.process(&change, &meta).await {
            Outcome::Done | Outcome::Skipped => {}
            Outcome::Retry(Retry { reason, .. }) | Outcome::Dead { reason, .. } => {
                return Err(reason);
            }
        }
        self.commit().await
    }

    /// Makes everything the sinks took so far durable now: what a consumer calls when a
    /// deferred commit is due, and before it stops.
    pub async fn commit(&self) -> Result<(), String> {
        self.flush(Flush::Now).await.map(drop).map_err(|f| f.reason)
    }

    async fn flush(&self, when: Flush) -> Result<Flushed, FlushFailure> {
        let flushed = join_all(self.sinks.iter().map(|sink| async move {
            let started = tokio::time::Instant::now();
            let flushed = sink.flush(when).await;
            if matches!(flushed, Ok(Flushed::Durable) | Err(_)) {
                self.metrics
                    .record_flush(sink.name(), started.elapsed(), flushed.is_ok());
            }
            flushed.map_err(|e| {
                (
                    format!("{}: flush failed: {e}", sink.name()),
                    matches!(e, shared::Error::Blocked(_)),
                )
            })
        }))
        .await;
        let mut failures = Vec::new();
        let mut blocked = true;
        let mut all = Flushed::Durable;
        for flushed in flushed {
            match flushed {
                Ok(flushed) => all = all.and(flushed),
                Err((e, is_blocked)) => {
                    failures.push(e);
                    blocked &= is_blocked;
                }
            }
        }
        if failures.is_empty() {
            Ok(all)
        } else {
            tracing::warn!(failures = ?failures, "sink flush failed; the batch will be retried");
            Err(FlushFailure {
                reason: failures.join("; "),
                blocked,
            })
        }
    }

    async fn dead_letter(
        &self,
        record: &Value,
        meta: &RecordMeta,
        reason: &str,
        attempts: u32,
    ) -> shared::Result<()> {
        let Some(dlq) = &self.dlq else {
            tracing::warn!(
                sequence_number = meta.sequence_number.as_deref().unwrap_or(""),
                reason,
                "stream record dropped by a consumer that keeps no dead letters"
            );
            return Ok(());
        };
        let letter = DeadLetter {
            id: String::new(),
            source: DeadLetterSource::Stream,
            payload: record.clone(),
            reason: reason.to_owned(),
            attempts,
            failed_at: self.clock.now(),
        };
        let id = dlq.put(&letter).await?;
        tracing::error!(
            dead_letter = %id,
            sequence_number = meta.sequence_number.as_deref().unwrap_or(""),
            reason,
            "stream record dead-lettered"
        );
        Ok(())
    }

    /// What became of a record that could not be delivered, for the record counts.
    fn dead_letter_outcome(&self) -> &'static str {
        if self.dlq.is_some() {
            "dead_lettered"
        } else {
            "dropped"
        }
    }

    /// Dead-letters a record on behalf of the caller (the poller, when a record runs out
    /// of retries or age).
    pub async fn dead_letter_record(
        &self,
        record: &Value,
        reason: &str,
        attempts: u32,
    ) -> shared::Result<()> {
        let meta = RecordMeta::of(record);
        self.dead_letter(record, &meta, reason, attempts).await?;
        self.metrics.record_records(self.dead_letter_outcome(), 1);
        Ok(())
    }
}
