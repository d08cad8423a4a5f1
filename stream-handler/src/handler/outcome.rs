//! What becomes of a record and of a batch: a record's [`Outcome`] (with the [`Retry`]
//! that reports it again and the [`SinkFailure`] it may come from), and the
//! [`BatchReport`] and [`BatchOutcome`] a consumer acts on.

use std::collections::BTreeMap;

use aws_lambda_events::event::streams::DynamoDbEventResponse;

use crate::sinks::Flushed;

/// What a handler call made of a batch, as a consumer acts on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchOutcome {
    Succeeded,
    /// The record with this sequence number failed, so did every later one of its
    /// document; the ones before it are done.
    FailedFrom {
        seq: u64,
        reason: String,
    },
    /// The call failed as a whole: no record is known to be done.
    WholeBatchFailed {
        reason: String,
    },
}

/// What became of a batch: the response, and why each reported record failed.
#[derive(Debug, Clone)]
pub struct BatchReport {
    pub response: DynamoDbEventResponse,
    /// The reason of each failure, by sequence number (`None`: a record without one).
    pub reasons: BTreeMap<Option<String>, String>,
    /// Whether what the sinks took is durable, or partly held for a later commit
    /// ([`Fanout::commit`](super::Fanout::commit)).
    pub flushed: Flushed,
}

impl Default for BatchReport {
    fn default() -> Self {
        Self {
            response: DynamoDbEventResponse::default(),
            reasons: BTreeMap::new(),
            flushed: Flushed::Durable,
        }
    }
}

impl BatchReport {
    pub fn failed(&self) -> bool {
        !self.response.batch_item_failures.is_empty()
    }

    /// What the batch came to, as the poller acts on it: a failure is reported from
    /// the lowest failed sequence number; one without a sequence number (a record that
    /// carried none) cannot say where to resume, so the whole batch failed.
    pub fn outcome(&self) -> BatchOutcome {
        let failures = &self.response.batch_item_failures;
        if failures.is_empty() {
            return BatchOutcome::Succeeded;
        }
        let reason_of = |key: &Option<String>| {
            self.reasons
                .get(key)
                .cloned()
                .unwrap_or_else(|| "failed".to_owned())
        };
        let lowest = failures
            .iter()
            .map(|f| f.item_identifier.as_deref().filter(|id| !id.is_empty()))
            .map(|id| id.and_then(|id| id.parse::<u64>().ok().map(|seq| (seq, id))))
            .collect::<Option<Vec<_>>>()
            .and_then(|seqs| seqs.into_iter().min());
        match lowest {
            Some((seq, id)) => BatchOutcome::FailedFrom {
                seq,
                reason: reason_of(&Some(id.to_owned())),
            },
            None => BatchOutcome::WholeBatchFailed {
                reason: self
                    .reasons
                    .values()
                    .next()
                    .cloned()
                    .unwrap_or_else(|| "failed".to_owned()),
            },
        }
    }
}

#[derive(Debug)]
pub(super) enum Outcome {
    Done,
    Skipped,
    /// Failed transiently: report it.
    Retry(Retry),
    /// Can never succeed: dead-letter it.
    Dead {
        reason: String,
        attempts: u32,
        /// The sink that failed it, if one did (not an undecodable record).
        sink: Option<&'static str>,
    },
}

impl Outcome {
    /// The same outcome, blamed on `sink` for the per-sink dead-letter count.
    pub(super) fn blaming(mut self, failed: &'static str) -> Self {
        match &mut self {
            Outcome::Retry(Retry { sink, .. }) | Outcome::Dead { sink, .. } => {
                *sink = Some(failed);
            }
            Outcome::Done | Outcome::Skipped => {}
        }
        self
    }

    /// What the outcome comes to once the sinks are flushed: a record is only done
    /// when what the sinks took of it is durable, so a failed flush reports a done
    /// one for another try (one giving it up would not cure when the deployment blocks
    /// the flush). Any other outcome stands.
    pub(super) fn after_flush(self, failure: Option<&FlushFailure>) -> Outcome {
        match (self, failure) {
            (Outcome::Done, Some(flush)) => Retry::of(flush.reason.clone(), flush.blocked),
            (outcome, _) => outcome,
        }
    }
}

/// Why a record is reported for another try.
#[derive(Debug)]
pub(super) struct Retry {
    pub(super) reason: String,
    /// Whether its own failure may end in giving it up ([`crate::give_up`]): not when
    /// the deployment blocks it, nor when it only waits behind an earlier record.
    pub(super) countable: bool,
    /// The sink whose failure it is, if one's.
    pub(super) sink: Option<&'static str>,
}

impl Retry {
    /// The record's own failure, which may pass or end in giving it up.
    pub(super) fn failed(reason: impl Into<String>) -> Outcome {
        Outcome::Retry(Retry {
            reason: reason.into(),
            countable: true,
            sink: None,
        })
    }

    /// Held back by something giving it up would not cure.
    pub(super) fn held(reason: impl Into<String>) -> Outcome {
        Outcome::Retry(Retry {
            reason: reason.into(),
            countable: false,
            sink: None,
        })
    }

    /// As `failed` or, for a blocked deployment, `held`.
    pub(super) fn of(reason: impl Into<String>, blocked: bool) -> Outcome {
        if blocked {
            Self::held(reason)
        } else {
            Self::failed(reason)
        }
    }
}

pub(super) enum SinkFailure {
    Transient {
        reason: String,
        blocked: bool,
        sink: &'static str,
    },
    Permanent {
        reason: String,
        attempts: u32,
        sink: &'static str,
    },
}

/// A failed flush of the sinks.
pub(super) struct FlushFailure {
    pub(super) reason: String,
    /// Every failing sink is blocked by the deployment.
    pub(super) blocked: bool,
}

#[cfg(test)]
mod tests {
    use aws_lambda_events::event::streams::DynamoDbBatchItemFailure;

    use super::*;

    fn flush_failed(blocked: bool) -> FlushFailure {
        FlushFailure {
            reason: "search: flush failed: unavailable".to_owned(),
            blocked,
        }
    }

    fn dead() -> Outcome {
        Outcome::Dead {
            reason: "audit: refused".to_owned(),
            attempts: 2,
            sink: Some("audit"),
        }
    }

    #[test]
    fn a_failed_flush_reports_a_done_record_for_another_try() {
        match Outcome::Done.after_flush(Some(&flush_failed(false))) {
            Outcome::Retry(Retry {
                reason,
                countable,
                sink,
            }) => {
                assert_eq!(reason, "search: flush failed: unavailable");
                assert!(countable, "its own failure may end in giving it up");
                assert_eq!(sink, None);
            }
            other => panic!("not a retry: {other:?}"),
        }
    }

    #[test]
    fn a_blocked_flush_holds_a_done_record_without_counting_it() {
        assert!(matches!(
            Outcome::Done.after_flush(Some(&flush_failed(true))),
            Outcome::Retry(Retry {
                countable: false,
                ..
            })
        ));
    }

    #[test]
    fn a_flush_changes_nothing_but_done_records() {
        let failure = flush_failed(false);
        assert!(matches!(
            Outcome::Skipped.after_flush(Some(&failure)),
            Outcome::Skipped
        ));
        match dead().after_flush(Some(&failure)) {
            Outcome::Dead {
                reason,
                attempts,
                sink,
            } => assert_eq!(
                (reason.as_str(), attempts, sink),
                ("audit: refused", 2, Some("audit"))
            ),
            other => panic!("not dead: {other:?}"),
        }
        match Retry::held("an earlier record (7) of the document failed")
            .after_flush(Some(&failure))
        {
            Outcome::Retry(Retry {
                reason, countable, ..
            }) => {
                assert_eq!(reason, "an earlier record (7) of the document failed");
                assert!(!countable);
            }
            other => panic!("not a retry: {other:?}"),
        }
    }

    #[test]
    fn a_successful_flush_leaves_every_outcome_as_it_was() {
        assert!(matches!(Outcome::Done.after_flush(None), Outcome::Done));
        assert!(matches!(
            Outcome::Skipped.after_flush(None),
            Outcome::Skipped
        ));
        assert!(matches!(dead().after_flush(None), Outcome::Dead { .. }));
    }

    /// A report of failures with these sequence numbers (`None`: a record without one)
    /// and reasons.
    fn failing(failures: &[(Option<&str>, &str)]) -> BatchReport {
        let mut report = BatchReport::default();
        for (seq, reason) in failures {
            let mut failure = DynamoDbBatchItemFailure::default();
            failure.item_identifier = seq.map(str::to_owned);
            report.response.batch_item_failures.push(failure);
            report
                .reasons
                .insert(seq.map(str::to_owned), (*reason).to_owned());
        }
        report
    }

    #[test]
    fn a_report_without_failures_succeeded() {
        let report = failing(&[]);
        assert!(!report.failed());
        assert_eq!(report.outcome(), BatchOutcome::Succeeded);
    }

    #[test]
    fn a_batch_fails_from_its_lowest_failed_sequence_number_compared_as_numbers() {
        let report = failing(&[
            (Some("300"), "search: unavailable"),
            (Some("99"), "audit: throttled"),
            (
                Some("1000"),
                "an earlier record (300) of the document failed",
            ),
        ]);
        assert!(report.failed());
        assert_eq!(
            report.outcome(),
            BatchOutcome::FailedFrom {
                seq: 99,
                reason: "audit: throttled".to_owned(),
            }
        );
    }

    #[test]
    fn a_failure_without_a_sequence_number_fails_the_whole_batch() {
        let report = failing(&[
            (Some("5"), "search: unavailable"),
            (None, "no sequence number"),
        ]);
        assert_eq!(
            report.outcome(),
            BatchOutcome::WholeBatchFailed {
                reason: "no sequence number".to_owned(),
            }
        );
        let unparsable = failing(&[(Some("shard-1/5"), "search: unavailable")]);
        assert_eq!(
            unparsable.outcome(),
            BatchOutcome::WholeBatchFailed {
                reason: "search: unavailable".to_owned(),
            }
        );
    }
}
