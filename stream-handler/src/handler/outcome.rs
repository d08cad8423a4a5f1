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
