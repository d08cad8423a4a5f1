//! Fan-out benchmarks over the embedded adapters:
//!
//! - throughput: a backlog of document changes already in the SQLite change log, drained
//!   by the poller through all four sinks (tantivy search, notifications to no
//!   subscribers, SQLite audit trail, SQLite analysis queue), at several
//!   parallelization factors; the analysis worker runs beside it;
//! - write-to-searchable latency: from an edit's commit being acknowledged to the
//!   poller's checkpoint passing it (the checkpoint is saved after the batch's index
//!   commit, so the edit is searchable by then), one writer at a time and with 16
//!   concurrent writers.
//!
//! Prints the figures and appends them to `bench/results.md` with the machine.
//! Run: `cargo bench -p stream-handler --bench fanout` (release build; about a minute).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shared::clock::SystemClock;
use shared::domain::{Body, Document, Title, UserId};
use shared::embedded::{DATABASE_FILE, SqliteDocumentStore};
use shared::ports::{DocumentStore, SearchIndex, SearchQuery};
use shared::service::{DocumentService, NewDocument, Replacement};
use stream_handler::poller::{Poller, PollerConfig, handled_through};
use stream_handler::sinks::notifications::NoSubscribers;
use stream_handler::{EmbeddedFanout, FanoutConfig};
use tokio::sync::{oneshot, watch};

const DOCS: usize = 200;
const VERSIONS: usize = 10;
const LATENCY_WRITES: usize = 200;

struct Env {
    _dir: tempfile::TempDir,
    store: Arc<SqliteDocumentStore>,
    docs: DocumentService,
    fanout: EmbeddedFanout,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteDocumentStore::open(&dir.path().join(DATABASE_FILE)).unwrap());
    let fanout = EmbeddedFanout::open(
        dir.path(),
        store.clone(),
        Arc::new(NoSubscribers),
        Arc::new(SystemClock),
        FanoutConfig::default(),
    )
    .unwrap();
    Env {
        docs: DocumentService::new(store.clone(), Arc::new(SystemClock)),
        _dir: dir,
        store,
        fanout,
    }
}

fn body(doc: usize, version: usize) -> String {
    format!(
        "Document {doc} at version {version}. The quarterly plan covers the search index, \
         the audit trail and the analysis queue; every change fans out to each of them. \
         Marker word{doc}x{version} closes the paragraph."
    )
}

/// Writes `DOCS` documents with `VERSIONS` versions each, 16 writers at a time.
async fn write_backlog(env: &Env) -> usize {
    let owner = UserId::parse("bench").unwrap();
    let mut tasks = Vec::new();
    for writer in 0..16 {
        let docs = env.docs.clone();
        let owner = owner.clone();
        tasks.push(tokio::spawn(async move {
            for d in (writer..DOCS).step_by(16) {
                let mut doc = docs
                    .create(
                        &owner,
                        NewDocument {
                            title: Title::parse(format!("Doc {d}")).unwrap(),
                            body: Body::parse(body(d, 1)).unwrap(),
                            collaborators: Default::default(),
                        },
                    )
                    .await
                    .unwrap();
                for v in 2..=VERSIONS {
                    doc = edit(&docs, &owner, &doc, body(d, v)).await;
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    DOCS * VERSIONS
}

async fn edit(docs: &DocumentService, owner: &UserId, doc: &Document, text: String) -> Document {
    docs.replace(
        owner,
        &doc.id,
        Some(doc.version),
        Replacement {
            title: doc.title.clone(),
            body: Body::parse(text).unwrap(),
        },
    )
    .await
    .unwrap()
}

struct Running {
    stop: oneshot::Sender<()>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    progress: watch::Receiver<BTreeMap<u32, u64>>,
}

fn start(env: &Env, factor: u32) -> Running {
    let (stop, stopped) = oneshot::channel::<()>();
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        let _ = stopped.await;
        let _ = stop_tx.send(true);
    });
    let wait = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let config = PollerConfig {
        parallelization_factor: factor,
        ..PollerConfig::default()
    };
    let (poller, progress) = Poller::spawn_observed(
        config,
        env.store.change_feed(),
        env.fanout.fanout.clone(),
        Arc::new(SystemClock),
        wait(stop_rx.clone()),
    );
    let worker = env.fanout.analysis_worker().spawn(wait(stop_rx));
    Running {
        stop,
        tasks: vec![
            tokio::spawn(async move {
                poller.await.unwrap().unwrap();
            }),
            worker,
        ],
        progress,
    }
}

impl Running {
    async fn wait_through(&mut self, seq: u64) {
        self.progress
            .wait_for(|p| !p.is_empty() && handled_through(p) >= seq)
            .await
            .unwrap();
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        for task in self.tasks {
            task.await.unwrap();
        }
    }
}

async fn throughput(factor: u32) -> (usize, Duration) {
    let env = env();
    let changes = write_backlog(&env).await;
    let latest = env.store.change_feed().latest_seq().await.unwrap();
    let started = Instant::now();
    let mut running = start(&env, factor);
    running.wait_through(latest).await;
    let elapsed = started.elapsed();
    running.stop().await;
    // Everything arrived: the last version of a document is searchable.
    let hits = env
        .fanout
        .search
        .search(&SearchQuery {
            text: format!("word7x{VERSIONS}"),
            reader: UserId::parse("bench").unwrap(),
            limit: 10,
            offset: 0,
        })
        .await
        .unwrap();
    assert_eq!(hits.hits.len(), 1);
    (changes, elapsed)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Write-to-searchable latencies (ms) with `writers` concurrent writers.
async fn latency(writers: usize) -> Vec<f64> {
    let env = Arc::new(env());
    let owner = UserId::parse("bench").unwrap();
    let running = start(&env, 2);
    let progress = running.progress.clone();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let env = Arc::clone(&env);
        let owner = owner.clone();
        let mut progress = progress.clone();
        tasks.push(tokio::spawn(async move {
            let mut doc = env
                .docs
                .create(
                    &owner,
                    NewDocument {
                        title: Title::parse(format!("Writer {w}")).unwrap(),
                        body: Body::parse(body(w, 1)).unwrap(),
                        collaborators: Default::default(),
                    },
                )
                .await
                .unwrap();
            let mut latencies = Vec::new();
            for i in 0..LATENCY_WRITES / writers.max(1) {
                doc = edit(&env.docs, &owner, &doc, body(w, i + 2)).await;
                let committed = Instant::now();
                // At or past this edit's own sequence number.
                let seq = env.store.change_feed().latest_seq().await.unwrap();
                progress
                    .wait_for(|p| !p.is_empty() && handled_through(p) >= seq)
                    .await
                    .unwrap();
                latencies.push(committed.elapsed().as_secs_f64() * 1000.0);
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    running.stop().await;
    // The last edit of writer 0 is searchable.
    let found = env
        .fanout
        .search
        .search(&SearchQuery {
            text: format!("word0x{}", LATENCY_WRITES / writers.max(1) + 1),
            reader: owner,
            limit: 1,
            offset: 0,
        })
        .await
        .unwrap();
    assert_eq!(found.hits.len(), 1);
    let _ = env.store.get(&found.hits[0].id).await.unwrap();
    all.sort_by(|a, b| a.total_cmp(b));
    all
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or_else(
            || "unknown memory".into(),
            |kb| format!("{} GiB", kb / 1024 / 1024),
        );
    format!("{cores} cores, {cpu}, {memory}")
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let mut report = String::new();
    let now = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC");
    let _ = writeln!(report, "## Fan-out: change log → four sinks — {now}\n");
    let _ = writeln!(
        report,
        "Machine: {}. `cargo bench -p stream-handler --bench fanout`: embedded poller \
         (batch 100, no batching window) draining the SQLite change log into tantivy, the \
         SQLite audit trail and analysis queue, and a notifier without subscribers; the \
         analysis worker runs beside it. Latency is from an edit's commit being \
         acknowledged to the checkpoint that follows the index commit of its batch.\n",
        machine()
    );
    let _ = writeln!(
        report,
        "| parallelization factor | changes | seconds | changes/s |"
    );
    let _ = writeln!(report, "|---|---|---|---|");
    for factor in [1, 2, 4] {
        let (changes, elapsed) = throughput(factor).await;
        let rate = changes as f64 / elapsed.as_secs_f64();
        println!(
            "throughput, factor {factor}: {changes} changes in {elapsed:.2?} = {rate:.0} changes/s"
        );
        let _ = writeln!(
            report,
            "| {factor} | {changes} | {:.2} | {rate:.0} |",
            elapsed.as_secs_f64()
        );
    }
    let _ = writeln!(report);
    let _ = writeln!(
        report,
        "| concurrent writers | edits | p50 ms | p99 ms | max ms |"
    );
    let _ = writeln!(report, "|---|---|---|---|---|");
    for writers in [1, 16] {
        let l = latency(writers).await;
        let (p50, p99, max) = (
            percentile(&l, 50.0),
            percentile(&l, 99.0),
            l.last().copied().unwrap_or(0.0),
        );
        println!(
            "write-to-searchable, {writers} writers: {} edits, p50 {p50:.2} ms, p99 {p99:.2} ms",
            l.len()
        );
        let _ = writeln!(
            report,
            "| {writers} | {} | {p50:.2} | {p99:.2} | {max:.2} |",
            l.len()
        );
    }
    let _ = writeln!(report);
    let mut metrics = String::new();
    stream_handler::metrics::render(&mut metrics);
    let value = |prefix: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    let per = |total: &str, count: &str| value(total) / value(count).max(1.0) * 1000.0;
    let _ = writeln!(
        report,
        "Where the time goes (means over the whole run, from `/metrics`): index commit per \
         batch {:.1} ms; audit append {:.1} ms, analysis enqueue {:.1} ms and index write \
         {:.1} ms per record (SQLite writes are group-committed but share one write lock \
         with the document store, the checkpoints and the analysis worker).\n",
        per(
            "docfan_sink_flush_seconds_total{sink=\"search\"}",
            "docfan_sink_flushes_total{sink=\"search\",outcome=\"ok\"}"
        ),
        per(
            "docfan_sink_delivery_duration_seconds_sum{sink=\"audit\"}",
            "docfan_sink_delivery_duration_seconds_count{sink=\"audit\"}"
        ),
        per(
            "docfan_sink_delivery_duration_seconds_sum{sink=\"analysis\"}",
            "docfan_sink_delivery_duration_seconds_count{sink=\"analysis\"}"
        ),
        per(
            "docfan_sink_delivery_duration_seconds_sum{sink=\"search\"}",
            "docfan_sink_delivery_duration_seconds_count{sink=\"search\"}"
        ),
    );
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/results.md");
    let mut existing =
        std::fs::read_to_string(&path).unwrap_or_else(|_| "# Benchmark results\n\n".into());
    if !existing.ends_with("\n\n") {
        existing.push('\n');
    }
    existing.push_str(&report);
    std::fs::write(&path, existing).expect("bench/results.md is writable");
    println!("appended to {}", path.display());
}
