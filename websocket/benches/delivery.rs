//! Edit-to-notification latency of the live path: a document commit acknowledged by the
//! SQLite store → the change's frame read by every subscribed WebSocket client, at 1,
//! 100 and 1,000 subscribers over loopback. The fan-out is called directly (audit entry,
//! then the notifier), so the figures leave out the stream poller's pickup; edits are
//! sequential, each one measured once all subscribers have the previous one.
//!
//! Prints the figures and appends them to `bench/results.md`.
//! Run: `cargo bench -p websocket --bench delivery`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use chrono::Utc;
use common::{Server, World};
use futures_util::StreamExt;
use serde_json::{Value, json};
use shared::domain::Role;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use websocket::LocalConfig;

const SUBSCRIBERS: [(usize, usize); 3] = [(1, 300), (100, 100), (1000, 30)];

struct Figures {
    subscribers: usize,
    edits: usize,
    /// Every (edit, subscriber) latency, in milliseconds.
    each_ms: Vec<f64>,
    /// Per edit, the latency of the last subscriber to get it.
    last_ms: Vec<f64>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

impl Figures {
    fn line(&mut self) -> String {
        self.each_ms.sort_by(f64::total_cmp);
        self.last_ms.sort_by(f64::total_cmp);
        format!(
            "| {} | {} | {:.2} | {:.2} | {:.2} | {:.2} |",
            self.subscribers,
            self.edits,
            percentile(&self.each_ms, 50.0),
            percentile(&self.each_ms, 99.0),
            percentile(&self.last_ms, 50.0),
            percentile(&self.last_ms, 99.0),
        )
    }
}

async fn run(subscribers: usize, edits: usize) -> Figures {
    let world = World::new();
    let server = Server::start(&world, LocalConfig::default()).await;
    let notifier = server.ws.notifier();
    let created = world.create("ann", &[("bob", Role::Viewer)]).await;
    let id = created.document_id;

    let (tx, mut received) = mpsc::unbounded_channel::<(u64, Instant)>();
    let mut clients = Vec::new();
    for _ in 0..subscribers {
        let mut client = server.connect(&world.token("bob")).await;
        client
            .send(json!({"action": "subscribe", "documentId": id}))
            .await;
        clients.push(client);
    }
    for mut client in clients {
        client.expect("subscribed").await;
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(Ok(message)) = client.socket.next().await {
                if let Message::Text(text) = message {
                    let at = Instant::now();
                    let frame: Value = serde_json::from_str(text.as_str()).unwrap();
                    if let Some(version) = frame["version"].as_u64() {
                        let _ = tx.send((version, at));
                    }
                }
            }
        });
    }
    drop(tx);

    let mut figures = Figures {
        subscribers,
        edits,
        each_ms: Vec::with_capacity(subscribers * edits),
        last_ms: Vec::with_capacity(edits),
    };
    for n in 0..edits {
        let change = world
            .edit("ann", &id, &format!("edit {n}: a short paragraph of text"))
            .await;
        let acknowledged = Instant::now();
        world.fan_out(&notifier, &change).await;
        let mut last = 0.0f64;
        for _ in 0..subscribers {
            let (version, at) = tokio::time::timeout(Duration::from_secs(30), received.recv())
                .await
                .expect("every subscriber gets the edit")
                .expect("readers are running");
            assert_eq!(version, change.version);
            let ms = at.saturating_duration_since(acknowledged).as_secs_f64() * 1000.0;
            figures.each_ms.push(ms);
            last = last.max(ms);
        }
        figures.last_ms.push(last);
    }
    figures
}

fn describe_machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("MemTotal"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    format!("{cores} cores, {cpu}, {mem_gib:.0} GiB RAM, Linux {kernel}")
}

#[tokio::main]
async fn main() {
    // `cargo test --benches` runs bench targets with `--test`: stay quick then.
    if std::env::args().any(|a| a == "--test") {
        return;
    }
    let machine = describe_machine();
    println!("machine: {machine}");
    let mut lines = vec![
        format!(
            "\n## Live delivery: commit acknowledged → frame received — {}\n",
            Utc::now().format("%Y-%m-%d %H:%M UTC")
        ),
        format!(
            "Machine: {machine}. `cargo bench -p websocket --bench delivery`: the fan-out is \
             called directly after the SQLite commit (no stream poller); sequential edits; \
             real WebSocket clients over loopback in the same process.\n"
        ),
        "| subscribers | edits | p50 ms (each) | p99 ms (each) | p50 ms (last subscriber) | p99 ms (last subscriber) |".into(),
        "|---|---|---|---|---|---|".into(),
    ];
    for (subscribers, edits) in SUBSCRIBERS {
        let line = run(subscribers, edits).await.line();
        println!("{line}");
        lines.push(line);
    }
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/results.md");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .expect("bench/results.md opens");
    writeln!(file, "{}", lines.join("\n")).expect("results written");
    println!("(appended to {})", path.display());
}
