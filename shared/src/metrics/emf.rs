//! CloudWatch Embedded Metric Format: the Lambda functions' metrics, written as JSON
//! lines to stdout, which CloudWatch Logs turns into metrics in namespace
//! `DOCFAN_METRICS_NAMESPACE` (default `docfan`).
//!
//! A Lambda entry point calls [`Emf::flush`] at the end of each invocation with the
//! metric parts it counted into ([`EmfSource`]s). Counters are written as deltas since
//! the previous flush of the same [`Emf`] (a container's first flush counts from its
//! start), gauges as they are at the flush, and means (latencies) over the attempts
//! since the previous flush. One flush writes one record for the function's own
//! metrics (dimension `Function`) and one per sink that has metrics (dimensions
//! `Function`, `Sink`): EMF takes a dimension's value from the record's root, so one
//! record holds one sink. `Function` is the Lambda function's name
//! (`AWS_LAMBDA_FUNCTION_NAME`), `Sink` one of the fan-out's sink names: both bounded.
//!
//! ```text
//! {"_aws":{"Timestamp":1767225600000,"CloudWatchMetrics":[{"Namespace":"docfan",
//!   "Dimensions":[["Function","Sink"]],"Metrics":[{"Name":"Delivered","Unit":"Count"},…]}]},
//!  "Function":"docfan-dev-StreamHandlerFunction-…","Sink":"search","Delivered":12,…}
//! ```

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::io::Write;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

/// The variable naming the namespace.
pub const NAMESPACE_VAR: &str = "DOCFAN_METRICS_NAMESPACE";
/// The namespace when [`NAMESPACE_VAR`] is unset or empty.
pub const DEFAULT_NAMESPACE: &str = "docfan";

/// A metric's CloudWatch unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Seconds,
    Milliseconds,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Seconds => "Seconds",
            Unit::Milliseconds => "Milliseconds",
        }
    }
}

/// A part of the metrics that can be read into an EMF flush.
pub trait EmfSource {
    /// Reads this part's current values into `sample`.
    fn sample(&self, sample: &mut Sample);
}

#[derive(Debug, Clone)]
enum Reading {
    /// A running total; written as its increase since the previous flush.
    Counter {
        total: f64,
    },
    Gauge {
        value: f64,
        unit: Unit,
    },
    /// Running totals of a sum and a count; written as the mean of what was added since
    /// the previous flush (nothing when nothing was).
    Mean {
        sum: f64,
        count: f64,
        unit: Unit,
    },
}

/// The readings of one flush, grouped by sink (`None`: the function's own).
#[derive(Debug)]
pub struct Sample {
    now: DateTime<Utc>,
    groups: BTreeMap<Option<String>, Vec<(&'static str, Reading)>>,
}

impl Sample {
    fn new(now: DateTime<Utc>) -> Self {
        Self {
            now,
            groups: BTreeMap::new(),
        }
    }

    /// When the flush happens (for gauges computed from timestamps).
    pub fn now(&self) -> DateTime<Utc> {
        self.now
    }

    fn push(&mut self, sink: Option<&str>, name: &'static str, reading: Reading) {
        self.groups
            .entry(sink.map(str::to_owned))
            .or_default()
            .push((name, reading));
    }

    /// A counter's running total, of the function (`sink` `None`) or of a sink.
    pub fn counter(&mut self, sink: Option<&str>, name: &'static str, total: u64) {
        self.push(
            sink,
            name,
            Reading::Counter {
                total: total as f64,
            },
        );
    }

    /// A gauge's current value.
    pub fn gauge(&mut self, sink: Option<&str>, name: &'static str, value: f64, unit: Unit) {
        self.push(sink, name, Reading::Gauge { value, unit });
    }

    /// Running totals whose ratio since the previous flush is written (a mean latency).
    pub fn mean(
        &mut self,
        sink: Option<&str>,
        name: &'static str,
        sum: f64,
        count: u64,
        unit: Unit,
    ) {
        self.push(
            sink,
            name,
            Reading::Mean {
                sum,
                count: count as f64,
                unit,
            },
        );
    }
}

/// One function's EMF writer: its namespace and name, and the totals of its previous
/// flush.
#[derive(Debug)]
pub struct Emf {
    namespace: String,
    function: String,
    previous: Mutex<HashMap<String, f64>>,
}

impl Emf {
    pub fn new(namespace: impl Into<String>, function: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            function: function.into(),
            previous: Mutex::new(HashMap::new()),
        }
    }

    /// The namespace from `DOCFAN_METRICS_NAMESPACE` (default `docfan`), the function's
    /// name from `AWS_LAMBDA_FUNCTION_NAME` (`fallback` outside Lambda).
    pub fn from_env(fallback: &str) -> Self {
        Self::from_vars(fallback, |name| std::env::var(name).ok())
    }

    pub fn from_vars(fallback: &str, var: impl Fn(&str) -> Option<String>) -> Self {
        let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        Self::new(
            set(NAMESPACE_VAR).unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned()),
            set("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|| fallback.to_owned()),
        )
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn function(&self) -> &str {
        &self.function
    }

    /// The records of a flush at `now`, counters as deltas since the previous one
    /// (which this call then becomes).
    pub fn records(&self, sources: &[&dyn EmfSource], now: DateTime<Utc>) -> Vec<Value> {
        let mut sample = Sample::new(now);
        for source in sources {
            source.sample(&mut sample);
        }
        let mut previous = self.previous.lock().unwrap_or_else(|p| p.into_inner());
        let mut delta = |key: String, total: f64| {
            let before = previous.insert(key, total).unwrap_or(0.0);
            // A total below the previous one was reset: count from zero.
            if total >= before {
                total - before
            } else {
                total
            }
        };
        let mut records = Vec::new();
        for (sink, readings) in sample.groups {
            let group = sink.as_deref().unwrap_or("");
            let mut root = Map::new();
            let mut definitions = Vec::new();
            for (name, reading) in readings {
                let key = |part: &str| format!("{group}\u{0}{name}\u{0}{part}");
                let (value, unit) = match reading {
                    Reading::Counter { total } => (Some(delta(key("total"), total)), Unit::Count),
                    Reading::Gauge { value, unit } => (Some(value), unit),
                    Reading::Mean { sum, count, unit } => {
                        let sum = delta(key("sum"), sum);
                        let count = delta(key("count"), count);
                        ((count > 0.0).then(|| sum / count), unit)
                    }
                };
                let Some(value) = value.filter(|v| v.is_finite()) else {
                    continue;
                };
                definitions.push(json!({ "Name": name, "Unit": unit.as_str() }));
                root.insert(name.to_owned(), json!(value));
            }
            if definitions.is_empty() {
                continue;
            }
            let dimensions = match &sink {
                Some(sink) => {
                    root.insert("Sink".to_owned(), json!(sink));
                    json!([["Function", "Sink"]])
                }
                None => json!([["Function"]]),
            };
            root.insert("Function".to_owned(), json!(self.function));
            root.insert(
                "_aws".to_owned(),
                json!({
                    "Timestamp": now.timestamp_millis(),
                    "CloudWatchMetrics": [{
                        "Namespace": self.namespace,
                        "Dimensions": dimensions,
                        "Metrics": definitions,
                    }],
                }),
            );
            records.push(Value::Object(root));
        }
        records
    }

    /// Writes a flush's records to `out`, one JSON object per line.
    pub fn flush(&self, sources: &[&dyn EmfSource], out: &mut impl Write) -> std::io::Result<()> {
        let mut lines = Vec::new();
        for record in self.records(sources, Utc::now()) {
            serde_json::to_writer(&mut lines, &record)?;
            lines.push(b'\n');
        }
        out.write_all(&lines)?;
        out.flush()
    }

    /// Runs one invocation, then flushes what `source` counted to stdout, whatever the
    /// invocation returned.
    pub async fn after<T>(
        &self,
        source: &(dyn EmfSource + Sync),
        invocation: impl Future<Output = T>,
    ) -> T {
        let output = invocation.await;
        self.flush_to_stdout(&[source]);
        output
    }

    /// [`Emf::flush`] to stdout, where Lambda hands it to CloudWatch Logs; a failure is
    /// logged (metrics never fail an invocation).
    pub fn flush_to_stdout(&self, sources: &[&dyn EmfSource]) {
        if let Err(e) = self.flush(sources, &mut std::io::stdout().lock()) {
            tracing::warn!(error = %e, "writing the invocation's metrics failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    #[derive(Default)]
    struct Counts {
        delivered: AtomicU64,
        latency_ms: AtomicU64,
    }

    impl EmfSource for Counts {
        fn sample(&self, sample: &mut Sample) {
            let delivered = self.delivered.load(Ordering::Relaxed);
            sample.counter(Some("search"), "Delivered", delivered);
            sample.mean(
                Some("search"),
                "DeliveryLatency",
                self.latency_ms.load(Ordering::Relaxed) as f64,
                delivered,
                Unit::Milliseconds,
            );
            sample.counter(None, "RecordsProcessed", delivered);
            sample.gauge(None, "StreamLag", 1.5, Unit::Seconds);
        }
    }

    fn lines(emf: &Emf, source: &Counts) -> Vec<Value> {
        let mut out = Vec::new();
        emf.flush(&[source], &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with('\n'));
        text.lines()
            .map(|line| serde_json::from_str(line).expect("each line is one JSON object"))
            .collect()
    }

    /// Checks a record against the EMF specification: the `_aws` member, its
    /// millisecond timestamp and one directive whose every dimension and metric has a
    /// value at the root.
    fn check_spec(record: &Value, namespace: &str) {
        let aws = &record["_aws"];
        assert!(aws["Timestamp"].as_i64().unwrap() > 1_600_000_000_000);
        let directives = aws["CloudWatchMetrics"].as_array().unwrap();
        assert_eq!(directives.len(), 1);
        let directive = &directives[0];
        assert_eq!(directive["Namespace"], namespace);
        for set in directive["Dimensions"].as_array().unwrap() {
            let set = set.as_array().unwrap();
            assert!(!set.is_empty() && set.len() <= 30);
            for dimension in set {
                assert!(record[dimension.as_str().unwrap()].is_string(), "{record}");
            }
        }
        for metric in directive["Metrics"].as_array().unwrap() {
            let name = metric["Name"].as_str().unwrap();
            assert!(record[name].is_number(), "{name} in {record}");
            assert!(
                ["Count", "Seconds", "Milliseconds"].contains(&metric["Unit"].as_str().unwrap())
            );
        }
    }

    fn by_sink<'a>(records: &'a [Value], sink: Option<&str>) -> &'a Value {
        records
            .iter()
            .find(|r| r["Sink"].as_str() == sink)
            .unwrap_or_else(|| panic!("no record of {sink:?} in {records:?}"))
    }

    #[test]
    fn records_follow_the_spec_with_bounded_dimensions() {
        let emf = Emf::new("docfan", "stream-handler-fn");
        let counts = Counts::default();
        counts.delivered.store(4, Ordering::Relaxed);
        counts.latency_ms.store(20, Ordering::Relaxed);
        let records = lines(&emf, &counts);
        assert_eq!(records.len(), 2);
        for record in &records {
            check_spec(record, "docfan");
            assert_eq!(record["Function"], "stream-handler-fn");
        }
        let sink = by_sink(&records, Some("search"));
        assert_eq!(
            sink["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Function", "Sink"]])
        );
        assert_eq!(sink["Delivered"], 4.0);
        assert_eq!(sink["DeliveryLatency"], 5.0);
        let function = by_sink(&records, None);
        assert_eq!(
            function["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Function"]])
        );
        assert_eq!(function["RecordsProcessed"], 4.0);
        assert_eq!(function["StreamLag"], 1.5);
    }

    #[test]
    fn counters_are_deltas_since_the_previous_flush() {
        let emf = Emf::new("docfan", "f");
        let counts = Counts::default();
        counts.delivered.store(3, Ordering::Relaxed);
        counts.latency_ms.store(30, Ordering::Relaxed);
        let first = lines(&emf, &counts);
        assert_eq!(by_sink(&first, Some("search"))["Delivered"], 3.0);

        let again = lines(&emf, &counts);
        let sink = by_sink(&again, Some("search"));
        assert_eq!(sink["Delivered"], 0.0, "{sink}");
        // No attempt since: no latency to report.
        assert!(sink.get("DeliveryLatency").is_none(), "{sink}");
        assert_eq!(
            by_sink(&again, None)["StreamLag"],
            1.5,
            "gauges are as they are"
        );

        counts.delivered.store(5, Ordering::Relaxed);
        counts.latency_ms.store(130, Ordering::Relaxed);
        let third = lines(&emf, &counts);
        let sink = by_sink(&third, Some("search"));
        assert_eq!(sink["Delivered"], 2.0);
        assert_eq!(sink["DeliveryLatency"], 50.0);
    }

    #[test]
    fn the_namespace_and_function_come_from_the_environment() {
        let emf = Emf::from_vars("stream-handler", |_| None);
        assert_eq!(
            (emf.namespace(), emf.function()),
            ("docfan", "stream-handler")
        );
        let emf = Emf::from_vars("stream-handler", |name| match name {
            NAMESPACE_VAR => Some("docfan-staging".into()),
            "AWS_LAMBDA_FUNCTION_NAME" => Some("docfan-dev-Stream".into()),
            _ => None,
        });
        assert_eq!(
            (emf.namespace(), emf.function()),
            ("docfan-staging", "docfan-dev-Stream")
        );
        let empty = Emf::from_vars("x", |name| (name == NAMESPACE_VAR).then(String::new));
        assert_eq!(empty.namespace(), "docfan");
    }
}
