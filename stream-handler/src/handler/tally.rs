//! Counting what became of each record of a batch into the [`BatchReport`] and the
//! per-outcome record counts (`processed`, `skipped`, `failed`, and `dead_lettered` or
//! `dropped`) the metrics take. No I/O.

use std::collections::BTreeMap;

use aws_lambda_events::event::streams::DynamoDbBatchItemFailure;

use super::outcome::{BatchReport, Outcome, Retry};
use crate::decode::RecordMeta;
use crate::sinks::Flushed;

/// The report of a batch, record by record.
#[derive(Debug)]
pub(super) struct Tally {
    report: BatchReport,
    counts: BTreeMap<&'static str, u64>,
    /// What a dead record is counted as: `dead_lettered`, or `dropped` by a consumer
    /// that keeps no dead letters.
    dead: &'static str,
}

impl Tally {
    pub(super) fn new(flushed: Flushed, dead: &'static str) -> Self {
        Self {
            report: BatchReport {
                flushed,
                ..BatchReport::default()
            },
            counts: BTreeMap::new(),
            dead,
        }
    }

    /// Counts a record's final outcome: a `Dead` one is one the dead-letter queue took
    /// (or that was dropped), a `Retry` a batch item failure with its reason.
    pub(super) fn add(&mut self, meta: &RecordMeta, outcome: Outcome) {
        let counted = match outcome {
            Outcome::Done => "processed",
            Outcome::Skipped => "skipped",
            Outcome::Dead { .. } => self.dead,
            Outcome::Retry(Retry { reason, .. }) => {
                let mut failure = DynamoDbBatchItemFailure::default();
                failure.item_identifier = meta.sequence_number.clone();
                self.report.response.batch_item_failures.push(failure);
                self.report
                    .reasons
                    .insert(meta.sequence_number.clone(), reason);
                "failed"
            }
        };
        *self.counts.entry(counted).or_default() += 1;
    }

    /// The batch's report, and how many records came to each outcome.
    pub(super) fn finish(self) -> (BatchReport, BTreeMap<&'static str, u64>) {
        (self.report, self.counts)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::handler::BatchOutcome;

    fn meta(seq: Option<&str>) -> RecordMeta {
        let mut change = json!({});
        if let Some(seq) = seq {
            change["SequenceNumber"] = json!(seq);
        }
        RecordMeta::of(&json!({ "eventID": "e", "dynamodb": change }))
    }

    fn dead() -> Outcome {
        Outcome::Dead {
            reason: "audit: refused".to_owned(),
            attempts: 1,
            sink: Some("audit"),
        }
    }

    fn failure_ids(report: &BatchReport) -> Vec<Option<&str>> {
        report
            .response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_deref())
            .collect()
    }

    #[test]
    fn each_retry_is_reported_with_its_sequence_number_and_reason() {
        let mut tally = Tally::new(Flushed::Durable, "dead_lettered");
        tally.add(&meta(Some("10")), Outcome::Done);
        tally.add(&meta(Some("11")), Retry::failed("search: unavailable"));
        tally.add(&meta(Some("12")), Outcome::Skipped);
        tally.add(
            &meta(Some("13")),
            Retry::held("an earlier record (11) of the document failed"),
        );

        let (report, _) = tally.finish();

        assert!(report.failed());
        assert_eq!(failure_ids(&report), [Some("11"), Some("13")]);
        assert_eq!(
            report.reasons,
            BTreeMap::from([
                (Some("11".to_owned()), "search: unavailable".to_owned()),
                (
                    Some("13".to_owned()),
                    "an earlier record (11) of the document failed".to_owned()
                ),
            ])
        );
        assert_eq!(
            report.outcome(),
            BatchOutcome::FailedFrom {
                seq: 11,
                reason: "search: unavailable".to_owned(),
            }
        );
    }

    #[test]
    fn every_record_is_counted_once_by_its_outcome() {
        let mut tally = Tally::new(Flushed::Durable, "dead_lettered");
        for (seq, outcome) in [
            ("1", Outcome::Done),
            ("2", Outcome::Done),
            ("3", Outcome::Skipped),
            ("4", dead()),
            ("5", Retry::failed("search: unavailable")),
            ("6", Outcome::Done),
        ] {
            tally.add(&meta(Some(seq)), outcome);
        }

        let (report, counts) = tally.finish();

        assert_eq!(
            counts,
            BTreeMap::from([
                ("dead_lettered", 1),
                ("failed", 1),
                ("processed", 3),
                ("skipped", 1),
            ])
        );
        assert_eq!(
            failure_ids(&report),
            [Some("5")],
            "a dead record is not retried"
        );
    }

    #[test]
    fn a_consumer_without_dead_letters_counts_dead_records_as_dropped() {
        let mut tally = Tally::new(Flushed::Durable, "dropped");
        tally.add(&meta(Some("1")), dead());

        let (report, counts) = tally.finish();

        assert_eq!(counts, BTreeMap::from([("dropped", 1)]));
        assert!(!report.failed());
        assert_eq!(report.outcome(), BatchOutcome::Succeeded);
    }

    #[test]
    fn a_retry_without_a_sequence_number_fails_the_whole_batch() {
        let mut tally = Tally::new(Flushed::Deferred(Duration::ZERO), "dead_lettered");
        tally.add(&meta(Some("7")), Retry::failed("search: unavailable"));
        tally.add(&meta(None), Retry::failed("events: throttled"));

        let (report, counts) = tally.finish();

        assert_eq!(failure_ids(&report), [Some("7"), None]);
        assert_eq!(counts, BTreeMap::from([("failed", 2)]));
        assert_eq!(report.flushed, Flushed::Deferred(Duration::ZERO));
        assert_eq!(
            report.outcome(),
            BatchOutcome::WholeBatchFailed {
                reason: "events: throttled".to_owned(),
            }
        );
    }
}
