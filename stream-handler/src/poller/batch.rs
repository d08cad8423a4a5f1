//! What a partition does with one batch, as a pure state machine: which records the
//! next handler call gets, what a failure changes, when a record goes to the dead-letter
//! queue. No I/O and no clock of its own, so every rule is tested on its own
//! ([`Partition`](super) runs the calls, the pauses and the dead-lettering it asks for).
//!
//! The rules are those of Lambda's DynamoDB event source mapping:
//! - a batch that succeeds is done;
//! - a batch that fails from a record is retried from that record (the ones before it
//!   are done);
//! - a batch that failed as a whole is split in two and the first half retried, when
//!   bisecting is on (a split does not count as a retry);
//! - a record retried more than `maximum_retry_attempts` times, or older than
//!   `maximum_record_age`, is dead-lettered and the batch goes on without it.

use std::ops::{Deref, Range};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

pub use crate::handler::BatchOutcome;

/// A record of the batch.
#[derive(Debug, Clone)]
pub struct Item {
    pub seq: u64,
    pub committed_at: DateTime<Utc>,
    pub record: Value,
}

/// The batch rules of [`BatchState`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    pub bisect_batch_on_error: bool,
    pub maximum_retry_attempts: Option<u32>,
    pub maximum_record_age: Option<Duration>,
}

/// The records of an attempt: a run of the batch's pending records, shared with the
/// batch (not copied), so the handler can take them to a task of its own.
#[derive(Debug, Clone)]
pub struct Attempt {
    records: Arc<[Value]>,
    range: Range<usize>,
}

impl Deref for Attempt {
    type Target = [Value];

    fn deref(&self) -> &[Value] {
        &self.records[self.range.clone()]
    }
}

impl PartialEq for Attempt {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

/// What to do next.
#[derive(Debug, PartialEq)]
pub enum Next<'a> {
    /// Hand these records to the handler.
    Attempt(Attempt),
    /// Dead-letter the first pending record with this reason and attempt count, then
    /// call [`BatchState::dead_lettered`].
    DeadLetter {
        record: &'a Value,
        reason: String,
        attempts: u32,
    },
    /// Every record is handled or dead-lettered.
    Done,
}

/// What a recorded attempt leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AfterAttempt {
    /// Records before the failure were done: the checkpoint may move to
    /// [`BatchState::done_to`] before the retry.
    pub progressed: bool,
    /// Pause before the next attempt: the consecutive failures of the first pending
    /// record (`None`: go on at once).
    pub backoff_after: Option<u32>,
}

/// The state of one batch.
#[derive(Debug)]
pub struct BatchState {
    /// Each record's sequence number and commit time, by index.
    items: Vec<(u64, DateTime<Utc>)>,
    /// The records, by index.
    records: Arc<[Value]>,
    /// The index of the first pending record: those before it are done.
    first: usize,
    rules: Rules,
    /// How many pending records the next attempt covers (smaller after a bisect).
    limit: usize,
    /// Failed attempts of the first pending record in a row.
    failures: u32,
    last_reason: Option<String>,
    done_to: u64,
}

impl BatchState {
    /// A batch of `items` (in sequence order) read after `checkpoint`.
    pub fn new(items: Vec<Item>, checkpoint: u64, rules: Rules) -> Self {
        let (items, records): (Vec<_>, Vec<_>) = items
            .into_iter()
            .map(|i| ((i.seq, i.committed_at), i.record))
            .unzip();
        Self {
            limit: items.len(),
            items,
            records: records.into(),
            first: 0,
            rules,
            failures: 0,
            last_reason: None,
            done_to: checkpoint,
        }
    }

    /// The sequence number through which every record is handled or dead-lettered.
    pub fn done_to(&self) -> u64 {
        self.done_to
    }

    /// What to do next, at time `now`.
    pub fn next(&self, now: DateTime<Utc>) -> Next<'_> {
        let Some(&(_, committed_at)) = self.items.get(self.first) else {
            return Next::Done;
        };
        let record = &self.records[self.first];
        if let Some(max_age) = self.rules.maximum_record_age {
            let age = (now - committed_at).to_std().unwrap_or_default();
            if age > max_age {
                let reason = match &self.last_reason {
                    None => format!("record older than the maximum age ({max_age:?})"),
                    Some(last) => format!(
                        "record older than the maximum age ({max_age:?}); last failure: {last}"
                    ),
                };
                return Next::DeadLetter {
                    record,
                    reason,
                    attempts: self.failures,
                };
            }
        }
        if let Some(max) = self.rules.maximum_retry_attempts
            && self.failures > max
        {
            let last = self.last_reason.as_deref().unwrap_or("failed");
            return Next::DeadLetter {
                record,
                reason: format!("retries exhausted after {} attempts: {last}", self.failures),
                attempts: self.failures,
            };
        }
        let n = self.limit.clamp(1, self.pending());
        Next::Attempt(Attempt {
            records: Arc::clone(&self.records),
            range: self.first..self.first + n,
        })
    }

    /// How many records are neither handled nor dead-lettered.
    fn pending(&self) -> usize {
        self.items.len() - self.first
    }

    /// The first pending record was dead-lettered ([`Next::DeadLetter`]).
    pub fn dead_lettered(&mut self) {
        self.pop(1);
        self.failures = 0;
        self.last_reason = None;
        self.limit = self.pending();
    }

    /// Records what the handler made of the `attempted` first pending records.
    pub fn attempted(&mut self, attempted: usize, outcome: BatchOutcome) -> AfterAttempt {
        let attempted = attempted.min(self.pending());
        let (done, reason, whole) = match outcome {
            BatchOutcome::Succeeded => {
                self.pop(attempted);
                self.failures = 0;
                self.last_reason = None;
                self.limit = self.pending();
                return AfterAttempt {
                    progressed: attempted > 0,
                    backoff_after: None,
                };
            }
            BatchOutcome::FailedFrom { seq, reason } => {
                // A failure outside what was attempted says nothing of where to resume.
                let done = self.items[self.first..self.first + attempted]
                    .iter()
                    .position(|&(s, _)| s == seq)
                    .unwrap_or(0);
                (done, reason, false)
            }
            BatchOutcome::WholeBatchFailed { reason } => (0, reason, true),
        };
        self.pop(done);
        let remaining = attempted - done;
        self.last_reason = Some(reason);
        if done > 0 {
            // Progress: the failed record has not failed on its own yet.
            self.failures = 0;
        }
        if whole && self.rules.bisect_batch_on_error && remaining > 1 {
            self.limit = remaining.div_ceil(2);
            return AfterAttempt {
                progressed: false,
                backoff_after: None,
            };
        }
        self.failures += 1;
        self.limit = remaining.max(1);
        let exhausted = self
            .rules
            .maximum_retry_attempts
            .is_some_and(|max| self.failures > max);
        AfterAttempt {
            progressed: done > 0,
            backoff_after: (!exhausted).then_some(self.failures),
        }
    }

    fn pop(&mut self, n: usize) {
        let n = n.min(self.pending());
        if n > 0 {
            self.first += n;
            self.done_to = self.items[self.first - 1].0;
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn items(seqs: std::ops::RangeInclusive<u64>, at: DateTime<Utc>) -> Vec<Item> {
        seqs.map(|seq| Item {
            seq,
            committed_at: at,
            record: json!(seq),
        })
        .collect()
    }

    fn rules() -> Rules {
        Rules {
            bisect_batch_on_error: true,
            maximum_retry_attempts: Some(2),
            maximum_record_age: Some(Duration::from_secs(60)),
        }
    }

    fn attempt(state: &BatchState, now: DateTime<Utc>) -> Vec<u64> {
        match state.next(now) {
            Next::Attempt(records) => records.iter().map(|r| r.as_u64().unwrap()).collect(),
            other => panic!("expected an attempt, got {other:?}"),
        }
    }

    fn whole(reason: &str) -> BatchOutcome {
        BatchOutcome::WholeBatchFailed {
            reason: reason.into(),
        }
    }

    #[test]
    fn a_batch_that_succeeds_is_done_through_its_last_record() {
        let now = Utc::now();
        let mut state = BatchState::new(items(1..=3, now), 0, rules());
        assert_eq!(attempt(&state, now), [1, 2, 3]);
        let after = state.attempted(3, BatchOutcome::Succeeded);
        assert_eq!(
            after,
            AfterAttempt {
                progressed: true,
                backoff_after: None
            }
        );
        assert_eq!(state.next(now), Next::Done);
        assert_eq!(state.done_to(), 3);
    }

    #[test]
    fn a_failure_from_a_record_resumes_there_and_keeps_what_came_before() {
        let now = Utc::now();
        let mut state = BatchState::new(items(5..=9, now), 4, rules());
        let after = state.attempted(
            5,
            BatchOutcome::FailedFrom {
                seq: 7,
                reason: "search: down".into(),
            },
        );
        assert_eq!(
            after,
            AfterAttempt {
                progressed: true,
                backoff_after: Some(1)
            }
        );
        assert_eq!(state.done_to(), 6);
        assert_eq!(attempt(&state, now), [7, 8, 9]);
    }

    #[test]
    fn a_whole_batch_failure_is_bisected_down_to_one_record_without_counting_retries() {
        let now = Utc::now();
        let mut state = BatchState::new(items(1..=8, now), 0, rules());
        for expected in [vec![1, 2, 3, 4], vec![1, 2], vec![1]] {
            let n = attempt(&state, now).len();
            let after = state.attempted(n, whole("boom"));
            assert_eq!(after.backoff_after, None, "a split is not a retry");
            assert_eq!(attempt(&state, now), expected);
        }
        // One record failing as a whole batch: now it counts.
        let after = state.attempted(1, whole("boom"));
        assert_eq!(after.backoff_after, Some(1));
        assert_eq!(attempt(&state, now), [1]);
    }

    #[test]
    fn without_bisecting_a_whole_batch_failure_retries_the_whole_batch() {
        let now = Utc::now();
        let rules = Rules {
            bisect_batch_on_error: false,
            ..rules()
        };
        let mut state = BatchState::new(items(1..=4, now), 0, rules);
        assert_eq!(state.attempted(4, whole("boom")).backoff_after, Some(1));
        assert_eq!(attempt(&state, now), [1, 2, 3, 4]);
    }

    #[test]
    fn a_record_out_of_retries_is_dead_lettered_with_the_last_reason_and_the_rest_goes_on() {
        let now = Utc::now();
        let mut state = BatchState::new(items(1..=3, now), 0, rules());
        let fail = || BatchOutcome::FailedFrom {
            seq: 1,
            reason: "audit: locked".into(),
        };
        assert_eq!(state.attempted(3, fail()).backoff_after, Some(1));
        assert_eq!(state.attempted(3, fail()).backoff_after, Some(2));
        assert_eq!(
            state.attempted(3, fail()).backoff_after,
            None,
            "out of retries: no pause"
        );
        match state.next(now) {
            Next::DeadLetter {
                record,
                reason,
                attempts,
            } => {
                assert_eq!(record, &json!(1));
                assert_eq!(attempts, 3);
                assert_eq!(reason, "retries exhausted after 3 attempts: audit: locked");
            }
            other => panic!("expected a dead letter, got {other:?}"),
        }
        state.dead_lettered();
        assert_eq!(state.done_to(), 1);
        assert_eq!(attempt(&state, now), [2, 3], "the failures start again");
    }

    #[test]
    fn a_record_past_the_maximum_age_is_dead_lettered_before_any_attempt() {
        let now = Utc::now();
        let old = now - chrono::TimeDelta::minutes(5);
        let mut batch = items(1..=1, old);
        batch.extend(items(2..=2, now));
        let mut state = BatchState::new(batch, 0, rules());
        let Next::DeadLetter { reason, .. } = state.next(now) else {
            panic!("the old record goes first");
        };
        assert!(
            reason.starts_with("record older than the maximum age"),
            "{reason}"
        );
        state.dead_lettered();
        assert_eq!(attempt(&state, now), [2]);
    }

    #[test]
    fn an_old_record_that_failed_says_why_it_last_failed() {
        let now = Utc::now();
        let mut state = BatchState::new(items(1..=1, now), 0, rules());
        state.attempted(1, whole("opensearch: 503"));
        let later = now + chrono::TimeDelta::minutes(2);
        let Next::DeadLetter { reason, .. } = state.next(later) else {
            panic!("too old by now");
        };
        assert!(
            reason.ends_with("last failure: opensearch: 503"),
            "{reason}"
        );
    }

    #[test]
    fn a_failure_naming_a_record_outside_the_attempt_retries_from_the_start() {
        let now = Utc::now();
        let mut state = BatchState::new(items(1..=3, now), 0, rules());
        let after = state.attempted(
            3,
            BatchOutcome::FailedFrom {
                seq: 42,
                reason: "?".into(),
            },
        );
        assert!(!after.progressed);
        assert_eq!(state.done_to(), 0);
        assert_eq!(attempt(&state, now), [1, 2, 3]);
    }

    #[test]
    fn without_a_retry_limit_a_record_is_retried_until_it_expires() {
        let now = Utc::now();
        let rules = Rules {
            maximum_retry_attempts: None,
            ..rules()
        };
        let mut state = BatchState::new(items(1..=1, now), 0, rules);
        for n in 1..=50 {
            assert_eq!(state.attempted(1, whole("down")).backoff_after, Some(n));
        }
        assert_eq!(attempt(&state, now), [1]);
    }
}
