//! The fan-out's metrics:
//!
//! - `docfan_stream_lag_seconds`: the age of the oldest record not yet processed, and
//!   `docfan_consumer_lag_seconds{consumer}`, the same per consumer of the stream;
//! - `docfan_sink_deliveries_total{sink,outcome}` (`ok`, `retried`, `failed` attempts)
//!   and the latency histogram `docfan_sink_delivery_duration_seconds{sink}`;
//! - `docfan_sink_dead_lettered_total{sink}`: records dead-lettered (or, by a consumer
//!   that keeps no dead letters, dropped) because of that sink's failure;
//! - `docfan_sink_flushes_total{sink,outcome}` and `docfan_sink_flush_seconds_total{sink}`;
//! - `docfan_stream_records_total{outcome}`: records `processed`, `skipped`, reported
//!   `failed`, `dead_lettered` or `dropped`;
//! - `docfan_analysis_jobs_total{outcome}`: `completed`, `superseded`, `failed`,
//!   `dead_lettered`.
//!
//! Sinks and consumers are named by the code (`search`, `audit`…; `index`, `live`),
//! so the label sets are bounded.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::emf::{EmfSource, Sample, Unit};

/// Latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// How one attempt to deliver to a sink ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryOutcome {
    Ok,
    /// Failed transiently; it will be tried again.
    Retried,
    /// Failed for good, or out of in-process retries.
    Failed,
}

impl DeliveryOutcome {
    const ALL: [DeliveryOutcome; 3] = [Self::Ok, Self::Retried, Self::Failed];

    fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Retried => "retried",
            Self::Failed => "failed",
        }
    }

    fn emf_name(self) -> &'static str {
        match self {
            Self::Ok => "Delivered",
            Self::Retried => "Retried",
            Self::Failed => "Failed",
        }
    }
}

/// Record outcomes, with their EMF names.
const RECORD_OUTCOMES: [(&str, &str); 5] = [
    ("processed", "RecordsProcessed"),
    ("skipped", "RecordsSkipped"),
    ("failed", "RecordsFailed"),
    ("dead_lettered", "RecordsDeadLettered"),
    ("dropped", "RecordsDropped"),
];

/// Analysis job outcomes, with their EMF names.
const ANALYSIS_OUTCOMES: [(&str, &str); 4] = [
    ("completed", "AnalysisCompleted"),
    ("superseded", "AnalysisSuperseded"),
    ("failed", "AnalysisFailed"),
    ("dead_lettered", "AnalysisDeadLettered"),
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkLabels {
    sink: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkOutcomeLabels {
    sink: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConsumerLabels {
    consumer: &'static str,
}

type Seconds = Counter<f64, AtomicU64>;
type GaugeSeconds = Gauge<f64, AtomicU64>;

fn latency_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// Per consumer and partition: when the oldest unprocessed record was committed.
type Oldest = BTreeMap<(&'static str, u32), Option<DateTime<Utc>>>;

/// What the stream handler, its consumers and the analysis worker count.
#[derive(Clone, Debug)]
pub struct FanoutMetrics {
    deliveries: Family<SinkOutcomeLabels, Counter>,
    delivery_duration: Family<SinkLabels, Histogram, fn() -> Histogram>,
    /// The histogram's sum, readable for EMF means.
    delivery_seconds: Family<SinkLabels, Seconds>,
    dead_lettered: Family<SinkLabels, Counter>,
    flushes: Family<SinkOutcomeLabels, Counter>,
    flush_seconds: Family<SinkLabels, Seconds>,
    records: Family<OutcomeLabels, Counter>,
    analysis_jobs: Family<OutcomeLabels, Counter>,
    stream_lag: GaugeSeconds,
    consumer_lag: Family<ConsumerLabels, GaugeSeconds>,
    oldest: Arc<Mutex<Oldest>>,
    sinks: Arc<Mutex<BTreeSet<&'static str>>>,
}

impl Default for FanoutMetrics {
    fn default() -> Self {
        Self {
            deliveries: Family::default(),
            delivery_duration: Family::new_with_constructor(latency_histogram),
            delivery_seconds: Family::default(),
            dead_lettered: Family::default(),
            flushes: Family::default(),
            flush_seconds: Family::default(),
            records: Family::default(),
            analysis_jobs: Family::default(),
            stream_lag: GaugeSeconds::default(),
            consumer_lag: Family::default(),
            oldest: Arc::default(),
            sinks: Arc::default(),
        }
    }
}

impl FanoutMetrics {
    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "docfan_stream_lag_seconds",
            "Age of the oldest change record not yet processed",
            self.stream_lag.clone(),
        );
        registry.register(
            "docfan_consumer_lag_seconds",
            "Age of the oldest change record a consumer has not yet processed",
            self.consumer_lag.clone(),
        );
        registry.register(
            "docfan_stream_records",
            "Change records by what became of them",
            self.records.clone(),
        );
        registry.register(
            "docfan_sink_deliveries",
            "Delivery attempts by sink and outcome",
            self.deliveries.clone(),
        );
        registry.register(
            "docfan_sink_delivery_duration_seconds",
            "Latency of one delivery attempt",
            self.delivery_duration.clone(),
        );
        registry.register(
            "docfan_sink_dead_lettered",
            "Change records dead-lettered (or dropped) for a sink's failure",
            self.dead_lettered.clone(),
        );
        registry.register(
            "docfan_sink_flushes",
            "End-of-batch flushes by sink and outcome",
            self.flushes.clone(),
        );
        registry.register(
            "docfan_sink_flush_seconds",
            "Time spent in end-of-batch flushes",
            self.flush_seconds.clone(),
        );
        registry.register(
            "docfan_analysis_jobs",
            "Analysis jobs by outcome",
            self.analysis_jobs.clone(),
        );
    }

    fn seen(&self, sink: &'static str) {
        self.sinks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(sink);
    }

    /// Counts one delivery attempt to `sink`, and its latency.
    pub fn record_delivery(&self, sink: &'static str, elapsed: Duration, outcome: DeliveryOutcome) {
        self.seen(sink);
        let seconds = elapsed.as_secs_f64();
        self.deliveries
            .get_or_create(&SinkOutcomeLabels {
                sink,
                outcome: outcome.label(),
            })
            .inc();
        let labels = SinkLabels { sink };
        self.delivery_duration
            .get_or_create(&labels)
            .observe(seconds);
        self.delivery_seconds.get_or_create(&labels).inc_by(seconds);
    }

    /// Counts a record dead-lettered (or dropped) because `sink` failed it.
    pub fn record_dead_lettered(&self, sink: &'static str) {
        self.seen(sink);
        self.dead_lettered.get_or_create(&SinkLabels { sink }).inc();
    }

    /// Records one end-of-batch flush of a sink.
    pub fn record_flush(&self, sink: &'static str, elapsed: Duration, ok: bool) {
        self.seen(sink);
        let outcome = if ok { "ok" } else { "failed" };
        self.flushes
            .get_or_create(&SinkOutcomeLabels { sink, outcome })
            .inc();
        self.flush_seconds
            .get_or_create(&SinkLabels { sink })
            .inc_by(elapsed.as_secs_f64());
    }

    /// Counts records by what became of them: `processed`, `skipped`, `failed`
    /// (reported for a retry), `dead_lettered`, `dropped`.
    pub fn record_records(&self, outcome: &'static str, n: u64) {
        if n > 0 {
            self.records
                .get_or_create(&OutcomeLabels { outcome })
                .inc_by(n);
        }
    }

    /// Counts analysis jobs by outcome: `completed`, `superseded`, `failed`,
    /// `dead_lettered`.
    pub fn record_analysis(&self, outcome: &'static str) {
        self.analysis_jobs
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// Sets when the oldest record a consumer's partition has yet to process was
    /// committed (`None`: it is caught up).
    pub fn set_oldest_unprocessed(
        &self,
        consumer: &'static str,
        partition: u32,
        committed_at: Option<DateTime<Utc>>,
    ) {
        self.oldest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((consumer, partition), committed_at);
    }

    /// Each consumer's lag at `now`: the age of its oldest unprocessed record.
    pub fn consumer_lags(&self, now: DateTime<Utc>) -> BTreeMap<&'static str, Duration> {
        let oldest = self.oldest.lock().unwrap_or_else(|p| p.into_inner());
        let mut lags: BTreeMap<&'static str, Duration> = BTreeMap::new();
        for ((consumer, _), oldest) in oldest.iter() {
            let lag = oldest.map_or(Duration::ZERO, |o| age(now, o));
            let entry = lags.entry(consumer).or_default();
            *entry = (*entry).max(lag);
        }
        lags
    }

    /// The stream lag at `now`: the age of the oldest unprocessed record, zero when none.
    pub fn stream_lag(&self, now: DateTime<Utc>) -> Duration {
        let oldest = self.oldest.lock().unwrap_or_else(|p| p.into_inner());
        oldest
            .values()
            .flatten()
            .min()
            .map_or(Duration::ZERO, |o| age(now, *o))
    }

    /// Sets the lag gauges as of `now`.
    pub(crate) fn refresh(&self, now: DateTime<Utc>) {
        self.stream_lag.set(self.stream_lag(now).as_secs_f64());
        for (consumer, lag) in self.consumer_lags(now) {
            self.consumer_lag
                .get_or_create(&ConsumerLabels { consumer })
                .set(lag.as_secs_f64());
        }
    }
}

fn age(now: DateTime<Utc>, then: DateTime<Utc>) -> Duration {
    (now - then).to_std().unwrap_or_default()
}

impl EmfSource for FanoutMetrics {
    /// Per sink: `Delivered`, `Retried`, `Failed` attempts, `DeadLettered` records,
    /// `DeliveryLatency` (mean, ms), `FlushFailed`; for the function: `Records…` by
    /// outcome, `StreamLag` (s), `Analysis…` by outcome. A series appears once it has
    /// counted something in this container.
    fn sample(&self, sample: &mut Sample) {
        let sinks = self.sinks.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for sink in sinks {
            for outcome in DeliveryOutcome::ALL {
                let labels = SinkOutcomeLabels {
                    sink,
                    outcome: outcome.label(),
                };
                let total = self.deliveries.get(&labels).map_or(0, |c| c.get());
                sample.counter(Some(sink), outcome.emf_name(), total);
            }
            let labels = SinkLabels { sink };
            let total = self.dead_lettered.get(&labels).map_or(0, |c| c.get());
            sample.counter(Some(sink), "DeadLettered", total);
            let attempts: u64 = DeliveryOutcome::ALL
                .into_iter()
                .filter_map(|outcome| {
                    self.deliveries.get(&SinkOutcomeLabels {
                        sink,
                        outcome: outcome.label(),
                    })
                })
                .map(|c| c.get())
                .sum();
            let seconds = self.delivery_seconds.get(&labels).map_or(0.0, |c| c.get());
            sample.mean(
                Some(sink),
                "DeliveryLatency",
                seconds * 1000.0,
                attempts,
                Unit::Milliseconds,
            );
            let failed = SinkOutcomeLabels {
                sink,
                outcome: "failed",
            };
            let total = self.flushes.get(&failed).map_or(0, |c| c.get());
            sample.counter(Some(sink), "FlushFailed", total);
        }
        for (family, outcomes) in [
            (&self.records, &RECORD_OUTCOMES[..]),
            (&self.analysis_jobs, &ANALYSIS_OUTCOMES[..]),
        ] {
            let seen = outcomes
                .iter()
                .any(|(outcome, _)| family.get(&OutcomeLabels { outcome }).is_some());
            if !seen {
                continue;
            }
            for (outcome, name) in outcomes {
                let total = family
                    .get(&OutcomeLabels { outcome })
                    .map_or(0, |c| c.get());
                sample.counter(None, name, total);
            }
        }
        let tracked = !self
            .oldest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty();
        if tracked {
            let lag = self.stream_lag(sample.now());
            sample.gauge(None, "StreamLag", lag.as_secs_f64(), Unit::Seconds);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    #[test]
    fn renders_counts_latencies_and_lag() {
        let metrics = Metrics::new();
        let fanout = &metrics.fanout;
        fanout.record_delivery("search", Duration::from_millis(3), DeliveryOutcome::Ok);
        fanout.record_delivery("search", Duration::from_millis(30), DeliveryOutcome::Failed);
        fanout.record_dead_lettered("search");
        fanout.record_flush("search", Duration::from_millis(5), true);
        fanout.record_records("processed", 2);
        fanout.record_analysis("completed");
        let now = Utc::now();
        fanout.set_oldest_unprocessed("index", 0, Some(now - chrono::TimeDelta::seconds(90)));
        fanout.set_oldest_unprocessed("live", 0, None);
        let out = metrics.render();
        for line in [
            "docfan_sink_deliveries_total{sink=\"search\",outcome=\"ok\"} 1\n",
            "docfan_sink_deliveries_total{sink=\"search\",outcome=\"failed\"} 1\n",
            "docfan_sink_delivery_duration_seconds_bucket{sink=\"search\",le=\"0.005\"} 1\n",
            "docfan_sink_delivery_duration_seconds_count{sink=\"search\"} 2\n",
            "docfan_sink_dead_lettered_total{sink=\"search\"} 1\n",
            "docfan_sink_flushes_total{sink=\"search\",outcome=\"ok\"} 1\n",
            "docfan_stream_records_total{outcome=\"processed\"} 2\n",
            "docfan_analysis_jobs_total{outcome=\"completed\"} 1\n",
            "docfan_consumer_lag_seconds{consumer=\"live\"} 0.0\n",
        ] {
            assert!(out.contains(line), "{line} in\n{out}");
        }
        let value = |prefix: &str| -> f64 {
            out.lines()
                .find_map(|l| l.strip_prefix(prefix))
                .unwrap_or_else(|| panic!("{prefix} in\n{out}"))
                .parse()
                .unwrap()
        };
        assert!((90.0..120.0).contains(&value("docfan_stream_lag_seconds ")));
        assert!((90.0..120.0).contains(&value("docfan_consumer_lag_seconds{consumer=\"index\"} ")));
        assert!(fanout.stream_lag(now) >= Duration::from_secs(90));
        fanout.set_oldest_unprocessed("index", 0, None);
        assert_eq!(fanout.stream_lag(now), Duration::ZERO);
    }

    #[test]
    fn emf_has_per_sink_counts_and_the_function_s_records() {
        let fanout = FanoutMetrics::default();
        fanout.record_delivery("audit", Duration::from_millis(4), DeliveryOutcome::Retried);
        fanout.record_delivery("audit", Duration::from_millis(6), DeliveryOutcome::Ok);
        fanout.record_dead_lettered("audit");
        fanout.record_records("processed", 3);
        fanout.record_records("dead_lettered", 1);
        fanout.set_oldest_unprocessed(
            "lambda",
            0,
            Some(Utc::now() - chrono::TimeDelta::seconds(7)),
        );
        let emf = crate::metrics::Emf::new("docfan", "f");
        let records = emf.records(&[&fanout], Utc::now());
        let audit = records.iter().find(|r| r["Sink"] == "audit").unwrap();
        assert_eq!(audit["Delivered"], 1.0);
        assert_eq!(audit["Retried"], 1.0);
        assert_eq!(audit["Failed"], 0.0);
        assert_eq!(audit["DeadLettered"], 1.0);
        let latency = audit["DeliveryLatency"].as_f64().unwrap();
        assert!((4.9..5.1).contains(&latency), "{latency}");
        let function = records.iter().find(|r| r.get("Sink").is_none()).unwrap();
        assert_eq!(function["RecordsProcessed"], 3.0);
        assert_eq!(function["RecordsDeadLettered"], 1.0);
        assert!(function["StreamLag"].as_f64().unwrap() >= 7.0);
        assert!(
            function.get("AnalysisCompleted").is_none(),
            "no analysis here: {function}"
        );
    }
}
