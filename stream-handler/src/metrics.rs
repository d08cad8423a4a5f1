//! The fan-out's metrics, kept in a small process-wide registry and rendered as
//! Prometheus text for `/metrics`:
//!
//! - `docfan_stream_lag_seconds`: the age of the oldest record not yet processed;
//! - `docfan_sink_deliveries_total{sink,outcome}` and
//!   `docfan_sink_delivery_duration_seconds{sink}` (a histogram);
//! - `docfan_sink_flushes_total{sink,outcome}` and `docfan_sink_flush_seconds_total{sink}`;
//! - `docfan_stream_records_total{outcome}`: records processed, skipped, reported
//!   failed and dead-lettered;
//! - `docfan_analysis_jobs_total{outcome}`;
//! - per webhook rule (the label is the rule's name, at most [`MAX_RULE_LABEL`]
//!   characters of it): `docfan_webhook_deliveries_total{rule,outcome}` (`delivered`,
//!   `failed` attempts, `dead_lettered`), `docfan_webhook_retrying{rule}` (rows waiting)
//!   and `docfan_webhook_lag_seconds{rule}` (the age of the oldest waiting row).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// Latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Default)]
struct SinkStats {
    ok: u64,
    retried: u64,
    failed: u64,
    sum: f64,
    buckets: [u64; BUCKETS.len()],
    flushes: u64,
    flush_failures: u64,
    flush_sum: f64,
}

#[derive(Default)]
struct Registry {
    sinks: BTreeMap<&'static str, SinkStats>,
    records: BTreeMap<&'static str, u64>,
    analysis: BTreeMap<&'static str, u64>,
    /// Per consumer and partition: when the oldest unprocessed record was committed.
    oldest_unprocessed: BTreeMap<(&'static str, u32), Option<DateTime<Utc>>>,
    webhooks: BTreeMap<String, WebhookStats>,
}

#[derive(Default)]
struct WebhookStats {
    delivered: u64,
    failed: u64,
    dead_lettered: u64,
    waiting: u64,
    oldest_waiting: Option<DateTime<Utc>>,
}

/// The longest rule name used as a label; longer ones are cut (rule names are already
/// at most 64 characters of `A-Za-z0-9._-`, so this bounds any other caller).
pub const MAX_RULE_LABEL: usize = 64;

/// A rule name as a label: at most [`MAX_RULE_LABEL`] characters, none that would need
/// escaping in Prometheus text.
fn rule_label(rule: &str) -> String {
    rule.chars()
        .take(MAX_RULE_LABEL)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// How one webhook delivery attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookOutcome {
    /// A 2xx answer.
    Delivered,
    /// Any other end; the row stays or is dead-lettered.
    Failed,
    /// The retry budget is spent: the row moved to the dead letters.
    DeadLettered,
}

/// Counts one webhook delivery attempt (or dead-lettering) of `rule`.
pub fn record_webhook(rule: &str, outcome: WebhookOutcome) {
    with(|r| {
        let s = r.webhooks.entry(rule_label(rule)).or_default();
        match outcome {
            WebhookOutcome::Delivered => s.delivered += 1,
            WebhookOutcome::Failed => s.failed += 1,
            WebhookOutcome::DeadLettered => s.dead_lettered += 1,
        }
    });
}

/// Sets how many rows wait for `rule` and when the oldest was enqueued.
pub fn set_webhook_backlog(rule: &str, waiting: u64, oldest: Option<DateTime<Utc>>) {
    with(|r| {
        let s = r.webhooks.entry(rule_label(rule)).or_default();
        s.waiting = waiting;
        s.oldest_waiting = oldest;
    });
}

static REGISTRY: Mutex<Option<Registry>> = Mutex::new(None);

fn with<R>(f: impl FnOnce(&mut Registry) -> R) -> R {
    let mut guard = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    f(guard.get_or_insert_with(Registry::default))
}

/// How one attempt to deliver to a sink ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryOutcome {
    Ok,
    /// Failed transiently; it will be tried again.
    Retried,
    /// Failed for good, or out of in-process retries.
    Failed,
}

pub fn record_delivery(sink: &'static str, elapsed: Duration, outcome: DeliveryOutcome) {
    let seconds = elapsed.as_secs_f64();
    with(|r| {
        let s = r.sinks.entry(sink).or_default();
        match outcome {
            DeliveryOutcome::Ok => s.ok += 1,
            DeliveryOutcome::Retried => s.retried += 1,
            DeliveryOutcome::Failed => s.failed += 1,
        }
        s.sum += seconds;
        for (bound, n) in BUCKETS.iter().zip(s.buckets.iter_mut()) {
            if seconds <= *bound {
                *n += 1;
            }
        }
    });
}

/// Records one end-of-batch flush of a sink.
pub fn record_flush(sink: &'static str, elapsed: Duration, ok: bool) {
    with(|r| {
        let s = r.sinks.entry(sink).or_default();
        s.flushes += 1;
        if !ok {
            s.flush_failures += 1;
        }
        s.flush_sum += elapsed.as_secs_f64();
    });
}

/// Counts records by what became of them: `processed`, `skipped`, `failed` (reported
/// for a retry), `dead_lettered`.
pub fn record_records(outcome: &'static str, n: u64) {
    if n > 0 {
        with(|r| *r.records.entry(outcome).or_default() += n);
    }
}

/// Counts analysis jobs by outcome: `completed`, `superseded`, `failed`, `dead_lettered`.
pub fn record_analysis(outcome: &'static str) {
    with(|r| *r.analysis.entry(outcome).or_default() += 1);
}

/// Sets when the oldest record a consumer's partition has yet to process was committed
/// (`None`: it is caught up).
pub fn set_oldest_unprocessed(
    consumer: &'static str,
    partition: u32,
    committed_at: Option<DateTime<Utc>>,
) {
    with(|r| {
        r.oldest_unprocessed
            .insert((consumer, partition), committed_at);
    });
}

/// Each consumer's lag at `now`: the age of its oldest unprocessed record.
pub fn consumer_lags(now: DateTime<Utc>) -> BTreeMap<&'static str, Duration> {
    with(|r| {
        let mut lags: BTreeMap<&'static str, Duration> = BTreeMap::new();
        for ((consumer, _), oldest) in &r.oldest_unprocessed {
            let lag = oldest.map_or(Duration::ZERO, |o| (now - o).to_std().unwrap_or_default());
            let entry = lags.entry(consumer).or_default();
            *entry = (*entry).max(lag);
        }
        lags
    })
}

/// The stream lag at `now`: the age of the oldest unprocessed record, zero when none.
pub fn stream_lag(now: DateTime<Utc>) -> Duration {
    with(|r| {
        r.oldest_unprocessed
            .values()
            .flatten()
            .min()
            .map_or(Duration::ZERO, |oldest| {
                (now - *oldest).to_std().unwrap_or(Duration::ZERO)
            })
    })
}

/// Writes the fan-out metrics in Prometheus text format.
pub fn render(out: &mut String) {
    let lag = stream_lag(Utc::now());
    let now = Utc::now();
    let lags = consumer_lags(now);
    with(|r| {
        let _ = writeln!(
            out,
            "# HELP docfan_stream_lag_seconds Age of the oldest change record not yet processed."
        );
        let _ = writeln!(out, "# TYPE docfan_stream_lag_seconds gauge");
        let _ = writeln!(out, "docfan_stream_lag_seconds {}", lag.as_secs_f64());
        let _ = writeln!(
            out,
            "# HELP docfan_consumer_lag_seconds Age of the oldest change record a consumer has not yet processed."
        );
        let _ = writeln!(out, "# TYPE docfan_consumer_lag_seconds gauge");
        for (consumer, lag) in &lags {
            let _ = writeln!(
                out,
                "docfan_consumer_lag_seconds{{consumer=\"{consumer}\"}} {}",
                lag.as_secs_f64()
            );
        }

        let _ = writeln!(
            out,
            "# HELP docfan_stream_records_total Change records by what became of them."
        );
        let _ = writeln!(out, "# TYPE docfan_stream_records_total counter");
        for (outcome, n) in &r.records {
            let _ = writeln!(
                out,
                "docfan_stream_records_total{{outcome=\"{outcome}\"}} {n}"
            );
        }

        let _ = writeln!(
            out,
            "# HELP docfan_sink_deliveries_total Delivery attempts by sink and outcome."
        );
        let _ = writeln!(out, "# TYPE docfan_sink_deliveries_total counter");
        for (sink, s) in &r.sinks {
            for (outcome, n) in [("ok", s.ok), ("retried", s.retried), ("failed", s.failed)] {
                let _ = writeln!(
                    out,
                    "docfan_sink_deliveries_total{{sink=\"{sink}\",outcome=\"{outcome}\"}} {n}"
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP docfan_sink_delivery_duration_seconds Latency of one delivery attempt."
        );
        let _ = writeln!(
            out,
            "# TYPE docfan_sink_delivery_duration_seconds histogram"
        );
        for (sink, s) in &r.sinks {
            for (bound, n) in BUCKETS.iter().zip(s.buckets) {
                let _ = writeln!(
                    out,
                    "docfan_sink_delivery_duration_seconds_bucket{{sink=\"{sink}\",le=\"{bound}\"}} {n}"
                );
            }
            let count = s.ok + s.retried + s.failed;
            let _ = writeln!(
                out,
                "docfan_sink_delivery_duration_seconds_bucket{{sink=\"{sink}\",le=\"+Inf\"}} {count}"
            );
            let _ = writeln!(
                out,
                "docfan_sink_delivery_duration_seconds_sum{{sink=\"{sink}\"}} {}",
                s.sum
            );
            let _ = writeln!(
                out,
                "docfan_sink_delivery_duration_seconds_count{{sink=\"{sink}\"}} {count}"
            );
        }

        let _ = writeln!(
            out,
            "# HELP docfan_sink_flushes_total End-of-batch flushes by sink and outcome."
        );
        let _ = writeln!(out, "# TYPE docfan_sink_flushes_total counter");
        for (sink, s) in &r.sinks {
            for (outcome, n) in [
                ("ok", s.flushes - s.flush_failures),
                ("failed", s.flush_failures),
            ] {
                let _ = writeln!(
                    out,
                    "docfan_sink_flushes_total{{sink=\"{sink}\",outcome=\"{outcome}\"}} {n}"
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP docfan_sink_flush_seconds_total Time spent in end-of-batch flushes."
        );
        let _ = writeln!(out, "# TYPE docfan_sink_flush_seconds_total counter");
        for (sink, s) in &r.sinks {
            let _ = writeln!(
                out,
                "docfan_sink_flush_seconds_total{{sink=\"{sink}\"}} {}",
                s.flush_sum
            );
        }

        let _ = writeln!(
            out,
            "# HELP docfan_analysis_jobs_total Analysis jobs by outcome."
        );
        let _ = writeln!(out, "# TYPE docfan_analysis_jobs_total counter");
        for (outcome, n) in &r.analysis {
            let _ = writeln!(
                out,
                "docfan_analysis_jobs_total{{outcome=\"{outcome}\"}} {n}"
            );
        }

        if r.webhooks.is_empty() {
            return;
        }
        let _ = writeln!(
            out,
            "# HELP docfan_webhook_deliveries_total Webhook delivery attempts by rule and outcome."
        );
        let _ = writeln!(out, "# TYPE docfan_webhook_deliveries_total counter");
        for (rule, s) in &r.webhooks {
            for (outcome, n) in [
                ("delivered", s.delivered),
                ("failed", s.failed),
                ("dead_lettered", s.dead_lettered),
            ] {
                let _ = writeln!(
                    out,
                    "docfan_webhook_deliveries_total{{rule=\"{rule}\",outcome=\"{outcome}\"}} {n}"
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP docfan_webhook_retrying Webhook deliveries waiting (first attempts and retries) by rule."
        );
        let _ = writeln!(out, "# TYPE docfan_webhook_retrying gauge");
        for (rule, s) in &r.webhooks {
            let _ = writeln!(
                out,
                "docfan_webhook_retrying{{rule=\"{rule}\"}} {}",
                s.waiting
            );
        }
        let _ = writeln!(
            out,
            "# HELP docfan_webhook_lag_seconds Age of the oldest webhook delivery waiting, by rule."
        );
        let _ = writeln!(out, "# TYPE docfan_webhook_lag_seconds gauge");
        for (rule, s) in &r.webhooks {
            let lag = s.oldest_waiting.map_or(0.0, |o| {
                (now - o).to_std().unwrap_or_default().as_secs_f64()
            });
            let _ = writeln!(out, "docfan_webhook_lag_seconds{{rule=\"{rule}\"}} {lag}");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_latencies_and_lag() {
        record_delivery(
            "metrics-test",
            Duration::from_millis(3),
            DeliveryOutcome::Ok,
        );
        record_delivery(
            "metrics-test",
            Duration::from_millis(30),
            DeliveryOutcome::Failed,
        );
        let mut out = String::new();
        render(&mut out);
        assert!(
            out.contains("docfan_sink_deliveries_total{sink=\"metrics-test\",outcome=\"ok\"} 1")
        );
        assert!(
            out.contains(
                "docfan_sink_deliveries_total{sink=\"metrics-test\",outcome=\"failed\"} 1"
            )
        );
        assert!(out.contains(
            "docfan_sink_delivery_duration_seconds_bucket{sink=\"metrics-test\",le=\"0.005\"} 1"
        ));
        assert!(
            out.contains("docfan_sink_delivery_duration_seconds_count{sink=\"metrics-test\"} 2")
        );
        assert!(out.contains("docfan_stream_lag_seconds "));

        let now = Utc::now();
        set_oldest_unprocessed("test", 9_000, Some(now - chrono::TimeDelta::seconds(90)));
        assert!(stream_lag(now) >= Duration::from_secs(90));
        set_oldest_unprocessed("test", 9_000, None);
    }

    #[test]
    fn webhook_metrics_are_per_rule_with_a_bounded_label() {
        record_webhook("metrics-rule", WebhookOutcome::Delivered);
        record_webhook("metrics-rule", WebhookOutcome::Failed);
        record_webhook("metrics-rule", WebhookOutcome::Failed);
        record_webhook("metrics-rule", WebhookOutcome::DeadLettered);
        let oldest = Utc::now() - chrono::TimeDelta::seconds(120);
        set_webhook_backlog("metrics-rule", 3, Some(oldest));
        let hostile = format!("a\"b}}{}", "x".repeat(500));
        record_webhook(&hostile, WebhookOutcome::Delivered);
        let mut out = String::new();
        render(&mut out);
        for line in [
            "docfan_webhook_deliveries_total{rule=\"metrics-rule\",outcome=\"delivered\"} 1",
            "docfan_webhook_deliveries_total{rule=\"metrics-rule\",outcome=\"failed\"} 2",
            "docfan_webhook_deliveries_total{rule=\"metrics-rule\",outcome=\"dead_lettered\"} 1",
            "docfan_webhook_retrying{rule=\"metrics-rule\"} 3",
        ] {
            assert!(out.contains(line), "{line} in\n{out}");
        }
        let lag: f64 = out
            .lines()
            .find_map(|l| l.strip_prefix("docfan_webhook_lag_seconds{rule=\"metrics-rule\"} "))
            .unwrap()
            .parse()
            .unwrap();
        assert!((120.0..200.0).contains(&lag), "{lag}");
        let label = format!("a_b_{}", "x".repeat(MAX_RULE_LABEL - 4));
        assert!(
            out.contains(&format!(
                "docfan_webhook_deliveries_total{{rule=\"{label}\",outcome=\"delivered\"}} 1"
            )),
            "{out}"
        );
    }
}
