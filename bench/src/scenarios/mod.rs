//! The benchmarks, each beside the floor it is compared with:
//!
//! | name | measures | floor |
//! |---|---|---|
//! | `writes` | durable writes: document store, REST | `floor-sqlite`: raw durable inserts |
//! | `fanout` | changes/s through the built-in sinks; write → searchable; one writer (the store, then REST) beside a drain | the store alone, for the writer |
//! | `delivery` | notifier → frame, 1/100/1000 subscribers | `floor-broadcast`: bare WebSocket broadcast |
//! | `notifications` | REST write → frame, 1/100/1000 subscribers | `floor-broadcast` |
//! | `sustained` | 20 edits/s for 10 s to 1,000 subscribers | `floor-sustained-broadcast` |
//! | `connections` | 10,000 held connections: memory, one edit to all | `floor-held-connections` |
//! | `cpu` | server CPU per edit, 1 and 1,000 subscribers | `floor-cpu`: the bare broadcast's CPU per frame |
//!
//! A floor runs when a scenario that needs it does.

pub mod connections;
pub mod cpu;
pub mod delivery;
pub mod edits;
pub mod fanout;
pub mod live;
pub mod notifications;
pub mod soak;
pub mod sustained;
pub mod writes;

use std::future::Future;
use std::time::Instant;

use tests::TestApp;

use crate::machine::load_average;
use crate::report::Scenario;

pub use crate::child::CROWD;

/// The real app for a scenario whose crowd of subscribers is one user's.
pub async fn crowd_app() -> TestApp {
    TestApp::spawn_with(|config| config.websocket.max_connections_per_user = CROWD).await
}

/// The scenarios `--only` accepts, in the order they run.
pub const NAMES: [&str; 9] = [
    "writes",
    "fanout",
    "delivery",
    "notifications",
    "edits",
    "sustained",
    "connections",
    "cpu",
    "soak",
];

/// Full sizes, or tiny ones that finish in seconds (`--quick`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Full,
    Quick,
}

impl Mode {
    pub fn pick<T>(self, full: T, quick: T) -> T {
        match self {
            Mode::Full => full,
            Mode::Quick => quick,
        }
    }
}

/// Runs the selected scenarios (all when `only` is empty) and their floors.
pub async fn run(mode: Mode, only: &[String]) -> anyhow::Result<Vec<Scenario>> {
    let selected = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
    let mut out = Vec::new();
    if selected("writes") {
        let floor = timed(writes::FLOOR, writes::floor(mode)).await?;
        out.push(timed("writes", writes::run(mode, &floor)).await?);
        out.insert(out.len() - 1, floor);
    }
    if selected("fanout") {
        out.push(timed("fanout", fanout::run(mode)).await?);
    }
    let live = [
        "delivery",
        "notifications",
        "edits",
        "sustained",
        "connections",
        "cpu",
    ];
    if live.iter().any(|name| selected(name)) {
        // Every live floor sends frames of the size docfan sends.
        let frame = delivery::sample_frame().await?;
        let frame_bytes = delivery::with_version(&frame, 2).len();
        if selected("delivery") || selected("notifications") || selected("edits") {
            let floor = timed(delivery::FLOOR, delivery::floor(mode, &frame)).await?;
            let mut docfan = Vec::new();
            if selected("delivery") {
                docfan.push(timed("delivery", delivery::run(mode, &floor)).await?);
            }
            if selected("notifications") {
                docfan.push(timed("notifications", notifications::run(mode, &floor)).await?);
            }
            if selected("edits") {
                docfan.push(timed("edits", edits::run(mode, &floor)).await?);
            }
            out.push(floor);
            out.extend(docfan);
        }
        if selected("sustained") {
            let floor = timed(sustained::FLOOR, sustained::floor(mode, &frame)).await?;
            let docfan = timed("sustained", sustained::run(mode, &floor)).await?;
            out.extend([floor, docfan]);
        }
        if selected("connections") {
            let floor = timed(connections::FLOOR, connections::floor(mode, frame_bytes)).await?;
            let docfan = timed("connections", connections::run(mode, &floor)).await?;
            out.extend([floor, docfan]);
        }
        if selected("cpu") {
            // The frame of one typed character, as docfan sends it.
            let (edit_frame, _) = edits::sample_frames().await?;
            let (floor, docfan) = timed_pair("cpu", cpu::run(mode, edit_frame.len())).await?;
            out.extend([floor, docfan]);
        }
    }
    if selected("soak") {
        out.push(timed("soak", soak::run(mode)).await?);
    }
    Ok(out)
}

/// `n` things, in the singular or the plural.
pub fn count(n: usize, thing: &str) -> String {
    if n == 1 {
        format!("1 {thing}")
    } else {
        format!("{n} {thing}s")
    }
}

/// Runs a scenario, noting how long it took and how busy the machine was.
/// [`timed`] for a floor and docfan measured together.
async fn timed_pair(
    name: &str,
    scenarios: impl Future<Output = anyhow::Result<(Scenario, Scenario)>>,
) -> anyhow::Result<(Scenario, Scenario)> {
    let load = load_average()[0];
    println!("{name} (load average {load:.2})");
    let started = Instant::now();
    let (mut floor, mut docfan) = scenarios.await?;
    let seconds = started.elapsed().as_secs_f64();
    for s in [&mut floor, &mut docfan] {
        s.load_average = load;
        s.seconds = seconds;
    }
    println!("  {seconds:.1} s");
    Ok((floor, docfan))
}

async fn timed(
    name: &str,
    scenario: impl Future<Output = anyhow::Result<Scenario>>,
) -> anyhow::Result<Scenario> {
    let load = load_average()[0];
    println!("{name} (load average {load:.2})");
    let started = Instant::now();
    let mut s = scenario.await?;
    s.load_average = load;
    s.seconds = started.elapsed().as_secs_f64();
    println!("  {:.1} s", s.seconds);
    Ok(s)
}

/// Each consumer's lag in seconds, from the server's `/metrics`.
pub async fn consumer_lags(
    http: &reqwest::Client,
    base: &str,
) -> anyhow::Result<Vec<(String, f64)>> {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("docfan_consumer_lag_seconds{consumer=\"")?;
            let (consumer, value) = rest.split_once("\"} ")?;
            Some((consumer.to_owned(), value.trim().parse().ok()?))
        })
        .collect())
}
