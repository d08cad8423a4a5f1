//! The report: what ran, on what machine, and every figure beside its floor.
//!
//! `report.json` holds everything ([`Report`]); `report.md` is the summary table a
//! person reads; the charts are drawn from the same values ([`crate::charts`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::machine::Machine;
use crate::stats::Latency;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub machine: Machine,
    pub run: Run,
    pub scenarios: Vec<Scenario>,
}

/// How the run was started and what else the machine was doing.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Run {
    pub command: String,
    pub quick: bool,
    pub only: Vec<String>,
    pub seconds: f64,
    /// `/proc/loadavg` (1, 5, 15 minutes) when the run started and when it ended.
    pub load_average_start: [f64; 3],
    pub load_average_end: [f64; 3],
}

/// Whether a scenario measures docfan or the floor it is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Docfan,
    Floor,
}

/// One benchmark: a few cases that differ by their parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Scenario {
    /// `writes`, `floor-sqlite`, …
    pub name: String,
    pub kind: Kind,
    pub title: String,
    /// What is measured, from where to where.
    pub method: String,
    /// The floor scenario its cases are compared with.
    pub floor: Option<String>,
    /// The 1-minute load average when the scenario started.
    pub load_average: f64,
    pub seconds: f64,
    pub cases: Vec<Case>,
    pub notes: Vec<String>,
}

/// The `fanout` case the headline gives for one REST writer beside a drain.
pub const REST_WRITER_BESIDE_A_DRAIN: &str = "one REST writer, PUT answered, while the app drains a backlog \
     (index consumer at parallelization 4)";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Case {
    pub label: String,
    pub params: BTreeMap<String, Value>,
    pub throughput: Option<Throughput>,
    /// Every sample (for live delivery: every subscriber of every edit).
    pub latency_ms: Option<Latency>,
    /// Live delivery only: per edit, the last subscriber to get it.
    pub last_subscriber_latency_ms: Option<Latency>,
    /// Figures that are neither a rate nor a latency (bytes per connection, frames
    /// missed, …).
    pub figures: BTreeMap<String, f64>,
    /// The floor case this one is compared with.
    pub compared_to: Option<String>,
    /// docfan ÷ floor, for every figure both have: `throughput` (above 1: faster than
    /// the floor), `latency_p50` … `latency_max`, `last_subscriber_latency_p50` …, and
    /// the shared `figures` (above 1: slower or bigger than the floor).
    pub ratio_to_floor: Option<BTreeMap<String, f64>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Throughput {
    pub value: f64,
    pub unit: String,
}

impl Case {
    pub fn new(label: impl Into<String>) -> Self {
        Self {
            label: label.into(),
            ..Self::default()
        }
    }

    pub fn param(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.params.insert(name.into(), value.into());
        self
    }

    pub fn throughput(mut self, value: f64, unit: &str) -> Self {
        self.throughput = Some(Throughput {
            value,
            unit: unit.into(),
        });
        self
    }

    pub fn latency(mut self, latency: Latency) -> Self {
        self.latency_ms = Some(latency);
        self
    }

    pub fn last_subscriber(mut self, latency: Latency) -> Self {
        self.last_subscriber_latency_ms = Some(latency);
        self
    }

    pub fn figure(mut self, name: &str, value: f64) -> Self {
        self.figures.insert(name.into(), value);
        self
    }

    /// A numeric parameter.
    pub fn number(&self, name: &str) -> Option<f64> {
        self.params.get(name).and_then(Value::as_f64)
    }

    /// Records docfan ÷ `floor` for every figure both cases have.
    pub fn compare_with(&mut self, floor: &Case) {
        let mut ratios = BTreeMap::new();
        let mut put = |name: String, ours: f64, theirs: f64| {
            if theirs > 0.0 && ours.is_finite() {
                ratios.insert(name, ours / theirs);
            }
        };
        if let (Some(ours), Some(theirs)) = (&self.throughput, &floor.throughput) {
            put("throughput".into(), ours.value, theirs.value);
        }
        for (prefix, ours, theirs) in [
            ("latency", &self.latency_ms, &floor.latency_ms),
            (
                "last_subscriber_latency",
                &self.last_subscriber_latency_ms,
                &floor.last_subscriber_latency_ms,
            ),
        ] {
            if let (Some(ours), Some(theirs)) = (ours, theirs) {
                for (p, a, b) in [
                    ("p50", ours.p50, theirs.p50),
                    ("p90", ours.p90, theirs.p90),
                    ("p99", ours.p99, theirs.p99),
                    ("max", ours.max, theirs.max),
                ] {
                    put(format!("{prefix}_{p}"), a, b);
                }
            }
        }
        for (name, ours) in &self.figures {
            if let Some(theirs) = floor.figures.get(name) {
                put(name.clone(), *ours, *theirs);
            }
        }
        self.compared_to = Some(floor.label.clone());
        self.ratio_to_floor = Some(ratios);
    }
}

impl Scenario {
    pub fn case(&self, label: &str) -> Option<&Case> {
        self.cases.iter().find(|c| c.label == label)
    }

    /// The case whose parameter `name` is `value` (a floor's case for the same size).
    pub fn case_where(&self, name: &str, value: f64) -> Option<&Case> {
        self.cases.iter().find(|c| c.number(name) == Some(value))
    }
}

impl Report {
    pub fn scenario(&self, name: &str) -> Option<&Scenario> {
        self.scenarios.iter().find(|s| s.name == name)
    }

    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        std::fs::write(path, serde_json::to_string_pretty(self)? + "\n")?;
        Ok(())
    }

    /// The Markdown summary: the machine, then one table per scenario.
    pub fn markdown(&self, charts: &[(&str, &str)]) -> String {
        let m = &self.machine;
        let r = &self.run;
        let mut out = String::new();
        let _ = writeln!(out, "# docfan benchmark report\n");
        let _ = writeln!(
            out,
            "{} · {} cores, {}, {:.0} GiB RAM, Linux {} · commit {}{} · `{}` · {:.0} s{}\n",
            m.date,
            m.cores,
            m.cpu,
            m.ram_gib,
            m.kernel,
            m.git_commit,
            if m.git_dirty {
                " with uncommitted changes"
            } else {
                ""
            },
            r.command,
            r.seconds,
            if r.quick {
                " · quick sizes: not for comparison"
            } else {
                ""
            },
        );
        let _ = writeln!(
            out,
            "Load average (1/5/15 min) {} at the start, {} at the end: the machine is shared, \
             so compare each figure with its floor from the same run rather than absolute \
             figures across runs. Ratios are docfan ÷ floor: above 1 is faster for a \
             throughput, slower for a latency, bigger for memory.\n",
            fmt_load(&r.load_average_start),
            fmt_load(&r.load_average_end),
        );
        let _ = writeln!(out, "## Headline\n");
        let _ = writeln!(out, "| benchmark | docfan | floor | docfan ÷ floor |");
        let _ = writeln!(out, "|---|---|---|---|");
        for line in self.headline() {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                line.what, line.docfan, line.floor, line.ratio
            );
        }
        let _ = writeln!(out);
        for (file, caption) in charts {
            let _ = writeln!(out, "![{caption}]({file})\n");
        }
        for s in &self.scenarios {
            let _ = writeln!(out, "## {} (`{}`)\n", s.title, s.name);
            let _ = writeln!(
                out,
                "{} Load average {:.2}; {:.1} s.\n",
                s.method, s.load_average, s.seconds
            );
            let _ = writeln!(out, "{}", table(s));
            for note in &s.notes {
                let _ = writeln!(out, "{note}\n");
            }
        }
        out
    }

    /// One line per benchmark: the figure that says the most, beside its floor.
    pub fn headline(&self) -> Vec<Headline> {
        let mut lines = Vec::new();
        // Durable writes: the store and REST at their best concurrency.
        for label in ["document store", "REST POST /documents"] {
            if let Some((case, floor)) = self.with_floor("writes", |s| {
                s.cases
                    .iter()
                    .filter(|c| c.label.starts_with(label))
                    .max_by(|a, b| rate(a).total_cmp(&rate(b)))
            }) {
                lines.push(Headline {
                    what: format!(
                        "durable writes/s, {label}, {} writers",
                        number(case.number("concurrency").unwrap_or(0.0))
                    ),
                    docfan: format!("{:.0}", rate(case)),
                    floor: format!(
                        "{:.0} (one SQLite insert per durable transaction)",
                        rate(floor)
                    ),
                    ratio: ratio(case, "throughput", 2),
                });
            }
        }
        if let Some(case) = self.scenario("fanout").and_then(|s| {
            s.cases
                .iter()
                .filter(|c| c.number("parallelization").is_some())
                .max_by(|a, b| rate(a).total_cmp(&rate(b)))
        }) {
            lines.push(Headline {
                what: format!(
                    "fan-out changes/s through four sinks, parallelization {}",
                    number(case.number("parallelization").unwrap_or(0.0))
                ),
                docfan: format!("{:.0}", rate(case)),
                floor: "—".into(),
                ratio: "—".into(),
            });
        }
        if let Some(s) = self.scenario("fanout")
            && let Some(case) = s
                .cases
                .iter()
                .find(|c| c.label == REST_WRITER_BESIDE_A_DRAIN)
            && let Some(floor) = case
                .compared_to
                .as_ref()
                .and_then(|label| s.cases.iter().find(|c| &c.label == label))
        {
            let p99 = |c: &Case| c.latency_ms.as_ref().map_or(0.0, |l| l.p99);
            lines.push(Headline {
                what: "one REST writer's `PUT` p99 ms while the fan-out drains a backlog".into(),
                docfan: format!("{:.2}", p99(case)),
                floor: format!("{:.2} (one writer, the store alone)", p99(floor)),
                ratio: ratio(case, "latency_p99", 1),
            });
        }
        for (scenario, what) in [
            ("delivery", "live delivery p50 / p99 ms, notifier → frame"),
            (
                "notifications",
                "live delivery p50 / p99 ms, PUT answered → frame",
            ),
            (
                "edits",
                "co-editing p50 / p99 ms, one-character edit answered → frame",
            ),
        ] {
            if let Some((case, floor)) = self.with_floor(scenario, |s| largest(s, "subscribers")) {
                lines.push(Headline {
                    what: format!(
                        "{what}, {} subscribers",
                        number(case.number("subscribers").unwrap_or(0.0))
                    ),
                    docfan: p50_p99(case),
                    floor: format!("{} (bare tokio-tungstenite broadcast)", p50_p99(floor)),
                    ratio: format!(
                        "{} / {}",
                        ratio(case, "latency_p50", 1),
                        ratio(case, "latency_p99", 1)
                    ),
                });
            }
        }
        if let Some((case, floor)) = self.with_floor("sustained", |s| largest(s, "subscribers")) {
            let missed = |c: &Case| number(c.figures.get("frames_missed").copied().unwrap_or(0.0));
            let p99 = |c: &Case| c.latency_ms.as_ref().map_or(0.0, |l| l.p99);
            lines.push(Headline {
                what: format!(
                    "sustained {} edits/s to {} subscribers: frames/s (missed), p99 ms",
                    number(case.number("edits_per_second").unwrap_or(0.0)),
                    number(case.number("subscribers").unwrap_or(0.0))
                ),
                docfan: format!("{:.0} ({}), {:.1}", rate(case), missed(case), p99(case)),
                floor: format!("{:.0} ({}), {:.1}", rate(floor), missed(floor), p99(floor)),
                ratio: format!(
                    "{}, {}",
                    ratio(case, "throughput", 2),
                    ratio(case, "latency_p99", 1)
                ),
            });
        }
        if let Some((case, floor)) = self.with_floor("connections", |s| largest(s, "connections")) {
            let bytes = |c: &Case| {
                c.figures
                    .get("bytes_per_connection")
                    .copied()
                    .unwrap_or(0.0)
            };
            lines.push(Headline {
                what: format!(
                    "{} held WebSocket connections: server bytes per connection",
                    number(case.number("connections").unwrap_or(0.0))
                ),
                docfan: format!("{:.0}", bytes(case)),
                floor: format!("{:.0} (bare tokio-tungstenite)", bytes(floor)),
                ratio: ratio(case, "bytes_per_connection", 1),
            });
        }
        lines
    }

    /// The case `pick` chooses in `scenario`, and the floor case it was compared with.
    fn with_floor<'a>(
        &'a self,
        scenario: &str,
        pick: impl Fn(&'a Scenario) -> Option<&'a Case>,
    ) -> Option<(&'a Case, &'a Case)> {
        let s = self.scenario(scenario)?;
        let case = pick(s)?;
        let floor = self
            .scenario(s.floor.as_deref()?)?
            .case(case.compared_to.as_deref()?)?;
        Some((case, floor))
    }
}

/// The case with the largest numeric parameter `key`.
fn largest<'a>(s: &'a Scenario, key: &str) -> Option<&'a Case> {
    s.cases.iter().max_by(|a, b| {
        let value = |c: &Case| c.number(key).unwrap_or(0.0);
        value(a).total_cmp(&value(b))
    })
}

/// A line of the headline table.
pub struct Headline {
    pub what: String,
    pub docfan: String,
    pub floor: String,
    pub ratio: String,
}

fn rate(case: &Case) -> f64 {
    case.throughput.as_ref().map_or(0.0, |t| t.value)
}

fn p50_p99(case: &Case) -> String {
    case.latency_ms
        .as_ref()
        .map_or("—".into(), |l| format!("{:.2} / {:.2}", l.p50, l.p99))
}

fn ratio(case: &Case, key: &str, decimals: usize) -> String {
    case.ratio_to_floor
        .as_ref()
        .and_then(|r| r.get(key))
        .map_or("—".into(), |r| format!("{r:.decimals$}×"))
}

fn fmt_load(load: &[f64; 3]) -> String {
    format!("{:.2} / {:.2} / {:.2}", load[0], load[1], load[2])
}

/// A scenario's cases as a Markdown table: parameters, throughput, latency
/// percentiles, other figures, and the main ratios.
fn table(s: &Scenario) -> String {
    let params: Vec<String> = collect_keys(s.cases.iter().map(|c| c.params.keys()));
    let figures: Vec<String> = collect_keys(s.cases.iter().map(|c| c.figures.keys()));
    let has_throughput = s.cases.iter().any(|c| c.throughput.is_some());
    let has_latency = s.cases.iter().any(|c| c.latency_ms.is_some());
    let has_last = s
        .cases
        .iter()
        .any(|c| c.last_subscriber_latency_ms.is_some());
    let ratio_keys: Vec<&str> = [
        "throughput",
        "latency_p50",
        "latency_p99",
        "last_subscriber_latency_p99",
        "bytes_per_connection",
    ]
    .into_iter()
    .filter(|k| {
        s.cases.iter().any(|c| {
            c.ratio_to_floor
                .as_ref()
                .is_some_and(|r| r.contains_key(*k))
        })
    })
    .collect();

    let mut header = vec!["case".to_owned()];
    header.extend(params.iter().cloned());
    if has_throughput {
        header.push("throughput".into());
    }
    if has_latency {
        header.extend(["p50 ms", "p90 ms", "p99 ms", "max ms"].map(String::from));
    }
    if has_last {
        header.extend(["last subscriber p50 ms", "last subscriber p99 ms"].map(String::from));
    }
    header.extend(figures.iter().map(|f| f.replace('_', " ")));
    header.extend(
        ratio_keys
            .iter()
            .map(|k| format!("÷ floor: {}", k.replace('_', " "))),
    );

    let mut out = String::new();
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(header.len()));
    for c in &s.cases {
        let mut row = vec![c.label.clone()];
        for p in &params {
            row.push(c.params.get(p).map_or(String::new(), value_text));
        }
        if has_throughput {
            row.push(
                c.throughput
                    .as_ref()
                    .map_or(String::new(), |t| format!("{} {}", number(t.value), t.unit)),
            );
        }
        if has_latency {
            match &c.latency_ms {
                Some(l) => row.extend([l.p50, l.p90, l.p99, l.max].map(|v| format!("{v:.2}"))),
                None => row.extend(std::iter::repeat_n(String::new(), 4)),
            }
        }
        if has_last {
            match &c.last_subscriber_latency_ms {
                Some(l) => row.extend([l.p50, l.p99].map(|v| format!("{v:.2}"))),
                None => row.extend(std::iter::repeat_n(String::new(), 2)),
            }
        }
        for f in &figures {
            row.push(c.figures.get(f).map_or(String::new(), |v| number(*v)));
        }
        for k in &ratio_keys {
            row.push(
                c.ratio_to_floor
                    .as_ref()
                    .and_then(|r| r.get(*k))
                    .map_or(String::new(), |r| number(*r)),
            );
        }
        let _ = writeln!(out, "| {} |", row.join(" | "));
    }
    out
}

fn collect_keys<'a>(keys: impl Iterator<Item = impl Iterator<Item = &'a String>>) -> Vec<String> {
    let mut all: Vec<String> = Vec::new();
    for ks in keys {
        for k in ks {
            if !all.contains(k) {
                all.push(k.clone());
            }
        }
    }
    all
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.as_f64().map_or(n.to_string(), number),
        other => other.to_string(),
    }
}

/// A figure with as many decimals as it deserves.
fn number(v: f64) -> String {
    if (v == v.trunc() && v.abs() < 1e15) || v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}
