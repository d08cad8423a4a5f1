//! Durable write throughput: the raw SQLite floor (one durable insert per transaction),
//! the document store alone, and REST writes over loopback HTTP, at several
//! concurrencies. Prints figures and appends them to `bench/results.md`.
//!
//! Run: `cargo bench -p tests --bench writes` (release build; about a minute).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::json;
use shared::domain::{Body, Document, DocumentId, Title, UserId};
use shared::embedded::SqliteDocumentStore;
use shared::ports::DocumentStore;
use tests::machine::{append_results, describe, percentile};
use tests::{TestApp, token_for};

const RUN: Duration = Duration::from_secs(3);
const CONCURRENCY: [usize; 3] = [1, 16, 64];

struct Figures {
    ops: usize,
    elapsed: Duration,
    latencies_ms: Vec<f64>,
}

impl Figures {
    fn rate(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }
    fn line(&self, name: &str, concurrency: usize, floor: Option<f64>) -> String {
        let mut l = self.latencies_ms.clone();
        l.sort_by(|a, b| a.total_cmp(b));
        let ratio = floor.map_or(String::new(), |f| format!(" | {:.2}", self.rate() / f));
        format!(
            "| {name} | {concurrency} | {:.0} | {:.2} | {:.2}{ratio} |",
            self.rate(),
            percentile(&l, 50.0),
            percentile(&l, 99.0)
        )
    }
}

/// One durable insert per transaction, WAL + synchronous=FULL, from one thread: what the
/// disk allows without batching.
fn raw_sqlite_floor() -> Figures {
    let dir = tempfile::tempdir().unwrap();
    let conn = rusqlite::Connection::open(dir.path().join("floor.db")).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "synchronous", "FULL").unwrap();
    conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, doc TEXT NOT NULL)")
        .unwrap();
    let payload = "x".repeat(300);
    let mut latencies_ms = Vec::new();
    let started = Instant::now();
    let mut ops = 0;
    while started.elapsed() < RUN {
        let t = Instant::now();
        conn.execute("INSERT INTO t (doc) VALUES (?1)", [&payload])
            .unwrap();
        latencies_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        ops += 1;
    }
    Figures {
        ops,
        elapsed: started.elapsed(),
        latencies_ms,
    }
}

fn doc(owner: &UserId, i: usize) -> Document {
    let now = Utc::now();
    Document {
        id: DocumentId::generate(),
        title: Title::parse(format!("doc {i}")).unwrap(),
        body: Body::parse("a short body of text for the benchmark").unwrap(),
        owner: owner.clone(),
        collaborators: Default::default(),
        version: 1,
        created_at: now,
        updated_at: now,
        updated_by: owner.clone(),
    }
}

async fn store_alone(concurrency: usize) -> Figures {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteDocumentStore::open(&dir.path().join("docfan.db")).unwrap());
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|w| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let owner = UserId::parse(format!("user{w}")).unwrap();
                let mut latencies = Vec::new();
                let mut i = 0;
                while started.elapsed() < RUN {
                    let t = Instant::now();
                    store.create(&doc(&owner, i)).await.unwrap();
                    latencies.push(t.elapsed().as_secs_f64() * 1000.0);
                    i += 1;
                }
                latencies
            })
        })
        .collect();
    let mut latencies_ms = Vec::new();
    for t in tasks {
        latencies_ms.extend(t.await.unwrap());
    }
    Figures {
        ops: latencies_ms.len(),
        elapsed: started.elapsed(),
        latencies_ms,
    }
}

async fn http_writes(concurrency: usize) -> Figures {
    let app = Arc::new(TestApp::spawn().await);
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|w| {
            let app = Arc::clone(&app);
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let token = token_for(&format!("user{w}"));
                let url = app.url("/documents");
                let mut latencies = Vec::new();
                let mut i = 0;
                while started.elapsed() < RUN {
                    let t = Instant::now();
                    let r = client
                        .post(&url)
                        .bearer_auth(&token)
                        .json(&json!({"title": format!("doc {i}"), "body": "a short body of text for the benchmark"}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 201);
                    latencies.push(t.elapsed().as_secs_f64() * 1000.0);
                    i += 1;
                }
                latencies
            })
        })
        .collect();
    let mut latencies_ms = Vec::new();
    for t in tasks {
        latencies_ms.extend(t.await.unwrap());
    }
    Figures {
        ops: latencies_ms.len(),
        elapsed: started.elapsed(),
        latencies_ms,
    }
}

#[tokio::main]
async fn main() {
    // `cargo test --benches` runs bench targets with `--bench`-less args; stay quick then.
    if std::env::args().any(|a| a == "--test") {
        return;
    }
    let machine = describe();
    println!("machine: {machine}");
    let floor = tokio::task::spawn_blocking(raw_sqlite_floor).await.unwrap();
    let floor_rate = floor.rate();
    let mut lines = vec![
        format!(
            "\n## Durable writes — {}\n",
            Utc::now().format("%Y-%m-%d %H:%M UTC")
        ),
        format!(
            "Machine: {machine}. Each figure is a {}-second run.\n",
            RUN.as_secs()
        ),
        "| what | concurrency | writes/s | p50 ms | p99 ms | ratio to floor |".into(),
        "|---|---|---|---|---|---|".into(),
        floor.line(
            "floor: raw SQLite insert, 1 per durable txn",
            1,
            Some(floor_rate),
        ),
    ];
    println!("{}", lines.last().unwrap());
    for c in CONCURRENCY {
        lines.push(store_alone(c).await.line(
            "document store (create + change record)",
            c,
            Some(floor_rate),
        ));
        println!("{}", lines.last().unwrap());
    }
    for c in CONCURRENCY {
        lines.push(http_writes(c).await.line(
            "REST POST /documents over loopback",
            c,
            Some(floor_rate),
        ));
        println!("{}", lines.last().unwrap());
    }
    append_results(&lines.join("\n"));
}
