//! Durable writes: the raw SQLite floor (one durable insert per transaction, what the
//! disk allows without batching), the document store alone, and REST writes over
//! loopback HTTP, at 1, 16 and 64 concurrent writers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use api::http::rate_limit::RateLimit;
use chrono::Utc;
use serde_json::json;
use shared::domain::{Body, Document, DocumentId, Title, UserId};
use shared::embedded::SqliteDocumentStore;
use shared::ports::DocumentStore;
use tests::{TestApp, token_for};

use super::{Mode, count};
use crate::report::{Case, Kind, Scenario};
use crate::stats::Latency;

const CONCURRENCY: [usize; 3] = [1, 16, 64];
pub const FLOOR: &str = "floor-sqlite";

/// How long each figure runs.
fn run_for(mode: Mode) -> Duration {
    mode.pick(Duration::from_secs(3), Duration::from_millis(250))
}

struct Figures {
    elapsed: Duration,
    latencies_ms: Vec<f64>,
}

impl Figures {
    fn case(self, label: &str, concurrency: usize) -> Case {
        let rate = self.latencies_ms.len() as f64 / self.elapsed.as_secs_f64();
        let case = Case::new(format!("{label}, {}", count(concurrency, "writer")))
            .param("concurrency", concurrency)
            .param("seconds", self.elapsed.as_secs_f64())
            .throughput(rate, "writes/s")
            .latency(Latency::of(self.latencies_ms));
        println!(
            "  {:<50} {:>8.0} writes/s  p50 {:.2} ms  p99 {:.2} ms",
            case.label,
            rate,
            case.latency_ms.map_or(0.0, |l| l.p50),
            case.latency_ms.map_or(0.0, |l| l.p99)
        );
        case
    }
}

/// The floor: one durable insert per transaction, WAL + synchronous=FULL, from one
/// thread.
pub async fn floor(mode: Mode) -> anyhow::Result<Scenario> {
    let run = run_for(mode);
    let figures = tokio::task::spawn_blocking(move || raw_sqlite(run)).await??;
    Ok(Scenario {
        name: FLOOR.into(),
        kind: Kind::Floor,
        title: "Floor: raw durable SQLite inserts".into(),
        method: format!(
            "One 300-byte row per transaction into a WAL database with synchronous=FULL, \
             from one thread, for {:.2} s: what the disk allows without batching.",
            run.as_secs_f64()
        ),
        floor: None,
        load_average: 0.0,
        seconds: 0.0,
        cases: vec![figures.case("raw SQLite insert, 1 per durable transaction", 1)],
        notes: vec![],
    })
}

fn raw_sqlite(run: Duration) -> anyhow::Result<Figures> {
    let dir = tempfile::tempdir()?;
    let conn = rusqlite::Connection::open(dir.path().join("floor.db"))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, doc TEXT NOT NULL)")?;
    let payload = "x".repeat(300);
    let mut latencies_ms = Vec::new();
    let started = Instant::now();
    while started.elapsed() < run {
        let t = Instant::now();
        conn.execute("INSERT INTO t (doc) VALUES (?1)", [&payload])?;
        latencies_ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(Figures {
        elapsed: started.elapsed(),
        latencies_ms,
    })
}

/// The document store and REST, each compared with the floor.
pub async fn run(mode: Mode, floor: &Scenario) -> anyhow::Result<Scenario> {
    let run = run_for(mode);
    let floor_case = &floor.cases[0];
    let mut cases = Vec::new();
    for c in CONCURRENCY {
        cases.push(
            store_alone(c, run)
                .await?
                .case("document store (create + change record)", c),
        );
    }
    for c in CONCURRENCY {
        cases.push(
            http_writes(c, run)
                .await?
                .case("REST POST /documents over loopback", c),
        );
    }
    for case in &mut cases {
        case.compare_with(floor_case);
    }
    Ok(Scenario {
        name: "writes".into(),
        kind: Kind::Docfan,
        title: "Durable writes".into(),
        method: format!(
            "Creates from N concurrent writers for {:.2} s each: the SQLite document store \
             alone (document row and change record in one group-committed transaction), \
             and `POST /documents` over loopback HTTP to the whole app (its fan-out \
             running). Latency is per write.",
            run.as_secs_f64()
        ),
        floor: Some(FLOOR.into()),
        load_average: 0.0,
        seconds: 0.0,
        cases,
        notes: vec![],
    })
}

fn doc(owner: &UserId, i: usize) -> anyhow::Result<Document> {
    let now = Utc::now();
    Ok(Document {
        id: DocumentId::generate(),
        title: Title::parse(format!("doc {i}"))?,
        body: Body::parse("a short body of text for the benchmark")?,
        owner: owner.clone(),
        collaborators: Default::default(),
        version: 1,
        created_at: now,
        updated_at: now,
        updated_by: owner.clone(),
    })
}

async fn store_alone(concurrency: usize, run: Duration) -> anyhow::Result<Figures> {
    let dir = tempfile::tempdir()?;
    let store = Arc::new(SqliteDocumentStore::open(&dir.path().join("docfan.db"))?);
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|w| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let owner = UserId::parse(format!("user{w}"))?;
                let mut latencies = Vec::new();
                let mut i = 0;
                while started.elapsed() < run {
                    let document = doc(&owner, i)?;
                    let t = Instant::now();
                    store.create(&document).await?;
                    latencies.push(t.elapsed().as_secs_f64() * 1000.0);
                    i += 1;
                }
                anyhow::Ok(latencies)
            })
        })
        .collect();
    let mut latencies_ms = Vec::new();
    for t in tasks {
        latencies_ms.extend(t.await??);
    }
    Ok(Figures {
        elapsed: started.elapsed(),
        latencies_ms,
    })
}

async fn http_writes(concurrency: usize, run: Duration) -> anyhow::Result<Figures> {
    // Each writer is one user writing as fast as the server answers: past the per-user
    // request budget of a real server, which is not what this measures.
    let app = Arc::new(
        TestApp::spawn_with(|config| {
            config.rate_limit = RateLimit {
                per_second: 1e6,
                burst: 1_000_000,
            }
        })
        .await,
    );
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
                while started.elapsed() < run {
                    let t = Instant::now();
                    let r = client
                        .post(&url)
                        .bearer_auth(&token)
                        .json(&json!({"title": format!("doc {i}"), "body": "a short body of text for the benchmark"}))
                        .send()
                        .await?;
                    anyhow::ensure!(r.status() == 201, "POST /documents: {}", r.status());
                    latencies.push(t.elapsed().as_secs_f64() * 1000.0);
                    i += 1;
                }
                anyhow::Ok(latencies)
            })
        })
        .collect();
    let mut latencies_ms = Vec::new();
    for t in tasks {
        latencies_ms.extend(t.await??);
    }
    let elapsed = started.elapsed();
    if let Ok(app) = Arc::try_unwrap(app) {
        app.stop().await;
    }
    Ok(Figures {
        elapsed,
        latencies_ms,
    })
}
