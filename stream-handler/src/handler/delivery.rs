//! Delivering a batch's documents, each in order, and one record: its bodies read back
//! when they are paged out, then the change to every sink concurrently, each with its
//! own in-process retries.

use std::borrow::Cow;

use futures_util::StreamExt;
use futures_util::future::join_all;
use shared::domain::{ChangeEvent, ChangeKind};
use shared::metrics::DeliveryOutcome;
use tracing::Instrument;

use super::Fanout;
use super::outcome::{Outcome, Retry, SinkFailure};
use super::plan::{Pending, Plan};
use crate::bodies::BodyError;
use crate::decode::{RecordMeta, Unfinished};
use crate::sinks::Sink;

impl Fanout {
    /// Delivers each document's records in order, documents concurrently (at most
    /// `document_concurrency` at once); a record that is to be retried holds back the
    /// later records of its document. The outcome of each delivered record, by index.
    pub(super) async fn deliver_documents(&self, plan: &Plan) -> Vec<(usize, Outcome)> {
        // By index: a closure over `&DocumentRecords` would be generic over its
        // lifetime, and its future not `Send` for every one.
        let delivered: Vec<Vec<(usize, Outcome)>> =
            futures_util::stream::iter(0..plan.documents.len())
                .map(|d| async move {
                    let document = &plan.documents[d];
                    let mut results = Vec::with_capacity(document.records.len());
                    let mut blocked: Option<String> = None;
                    for &i in &document.records {
                        if let Some(seq) = &blocked {
                            results.push((
                                i,
                                Retry::held(format!(
                                    "an earlier record ({seq}) of the document failed"
                                )),
                            ));
                            continue;
                        }
                        let meta = &plan.metas[i];
                        let outcome = match self.ready(plan.change(i)).await {
                            Ok(Some(change)) => self.process(&change, meta).await,
                            Ok(None) => Outcome::Skipped,
                            Err(outcome) => outcome,
                        };
                        if matches!(outcome, Outcome::Retry(_)) {
                            blocked = Some(meta.sequence_number.clone().unwrap_or_default());
                        }
                        results.push((i, outcome));
                    }
                    results
                })
                .buffer_unordered(self.config.document_concurrency.max(1))
                .collect()
                .await;
        delivered.into_iter().flatten().collect()
    }

    /// The change a record makes, its bodies read back when they are paged out; `None`
    /// when there is nothing left to deliver (the document's deletion has been fanned
    /// out since, and its versions forgotten); `Err` with the record's outcome when the
    /// bodies cannot be read.
    pub(super) async fn ready<'p>(
        &self,
        pending: &'p Pending,
    ) -> Result<Option<Cow<'p, ChangeEvent>>, Outcome> {
        let unfinished = match pending {
            Pending::Ready(change) => return Ok(Some(Cow::Borrowed(change))),
            Pending::Unfinished(unfinished) => unfinished,
        };
        let Some(bodies) = &self.bodies else {
            // A deployment error (the handler is not given the versions table), not a
            // bad record: it blocks until it is fixed.
            return Err(Retry::held(
                "the record's body is paged out, and this fan-out has no body archive to read it from",
            ));
        };
        match bodies.finish(Unfinished::clone(unfinished)).await {
            Ok(Some(change)) => Ok(Some(Cow::Owned(change))),
            Ok(None) => {
                tracing::warn!(
                    document_id = %unfinished.document_id(),
                    "the versions of this change are no longer kept (the document's deletion was fanned out since): nothing to deliver"
                );
                Ok(None)
            }
            Err(BodyError::Archive(e)) => {
                let blocked = matches!(e, shared::Error::Blocked(_));
                Err(Retry::of(e.to_string(), blocked))
            }
            Err(e @ BodyError::Corrupt(_)) => Err(Outcome::Dead {
                reason: e.to_string(),
                attempts: 1,
                sink: None,
            }),
        }
    }

    pub(super) async fn process(&self, change: &ChangeEvent, meta: &RecordMeta) -> Outcome {
        let span = tracing::info_span!(
            "record",
            document_id = %change.document_id,
            version = change.version,
            sequence_number = %change.sequence_number,
            kind = change.kind.as_str(),
        );
        async {
            let results = join_all(self.sinks.iter().map(|sink| {
                let span = tracing::info_span!("sink", sink = sink.name());
                self.deliver(sink.as_ref(), change, meta).instrument(span)
            }))
            .await;
            let mut permanent = None;
            for result in results {
                match result {
                    Ok(()) => {}
                    Err(SinkFailure::Transient {
                        reason,
                        blocked,
                        sink,
                    }) => {
                        return Retry::of(reason, blocked).blaming(sink);
                    }
                    Err(SinkFailure::Permanent {
                        reason,
                        attempts,
                        sink,
                    }) => {
                        permanent.get_or_insert((reason, attempts, sink));
                    }
                }
            }
            if let Some((reason, attempts, sink)) = permanent {
                return Outcome::Dead {
                    reason,
                    attempts,
                    sink: Some(sink),
                };
            }
            if let (ChangeKind::Deleted, Some(bodies), true) =
                (change.kind, &self.bodies, self.forgets_versions)
                && let Err(e) = bodies.forget(&change.document_id).await
            {
                return Retry::of(
                    format!(
                        "the deletion was delivered, but forgetting the document's versions failed: {e}"
                    ),
                    matches!(e, shared::Error::Blocked(_)),
                );
            }
            Outcome::Done
        }
        .instrument(span)
        .await
    }

    async fn deliver(
        &self,
        sink: &dyn Sink,
        change: &ChangeEvent,
        meta: &RecordMeta,
    ) -> Result<(), SinkFailure> {
        let policy = &self.config.retry;
        let mut attempt = 1;
        loop {
            let started = tokio::time::Instant::now();
            let result = sink.deliver(change, meta).await;
            let elapsed = started.elapsed();
            match result {
                Ok(()) => {
                    self.metrics
                        .record_delivery(sink.name(), elapsed, DeliveryOutcome::Ok);
                    return Ok(());
                }
                Err(e) if sink.is_retriable(&e) && policy.allows_another(attempt) => {
                    self.metrics
                        .record_delivery(sink.name(), elapsed, DeliveryOutcome::Retried);
                    let pause = policy.backoff(attempt);
                    tracing::warn!(error = %e, attempt, ?pause, "sink failed transiently; retrying");
                    tokio::time::sleep(pause).await;
                    attempt += 1;
                }
                Err(e) if sink.is_retriable(&e) => {
                    self.metrics
                        .record_delivery(sink.name(), elapsed, DeliveryOutcome::Failed);
                    tracing::warn!(error = %e, attempt, "sink still failing; reporting the record");
                    return Err(SinkFailure::Transient {
                        reason: format!("{}: {e} (after {attempt} attempts)", sink.name()),
                        blocked: matches!(e, shared::Error::Blocked(_)),
                        sink: sink.name(),
                    });
                }
                Err(e) => {
                    self.metrics
                        .record_delivery(sink.name(), elapsed, DeliveryOutcome::Failed);
                    tracing::error!(error = %e, "sink failed permanently; dead-lettering the record");
                    return Err(SinkFailure::Permanent {
                        reason: format!("{}: {e}", sink.name()),
                        attempts: attempt,
                        sink: sink.name(),
                    });
                }
            }
        }
    }
}
