//! The fan-out over the embedded adapters:
//!
//! - throughput: a backlog of document changes already in the SQLite change log, drained
//!   by the poller through the four built-in sinks (tantivy search, notifications to no
//!   subscribers, SQLite audit trail, SQLite analysis queue), at parallelization factors
//!   1, 2 and 4; the analysis worker runs beside it;
//! - write-to-searchable latency: from an edit's commit being acknowledged to a search
//!   for the word only that edit wrote finding it (each writer searches every
//!   [`SEARCH_EVERY`]), one writer at a time and with 16 concurrent writers;
//! - webhooks: the same drain with one webhook rule matching every change, POSTing to a
//!   receiver on loopback: the drain's rate beside it, and the events delivered a second;
//! - one writer beside a drain: its commits through the document service with the store
//!   alone (the floor) and beside the poller draining a backlog; then `PUT`s over HTTP to
//!   the whole app (both consumers running), with nothing else to fan out and while the
//!   app drains a backlog it found at its start.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use api::http::rate_limit::RateLimit;
use serde_json::{Value, json};
use shared::clock::SystemClock;
use shared::domain::{Body, Document, Title, UserId};
use shared::embedded::{DATABASE_FILE, SqliteDocumentStore};
use shared::ports::{DocumentStore, SearchIndex, SearchQuery};
use shared::service::{DocumentService, NewDocument, Replacement};
use stream_handler::poller::{Poller, PollerConfig, handled_through};
use stream_handler::sinks::notifications::NoSubscribers;
use stream_handler::webhooks::{EventsConfig, WebhookDeliveryConfig};
use stream_handler::{EmbeddedFanout, FanoutConfig};
use tests::{TestApp, token_for};
use tokio::sync::{oneshot, watch};

use super::{Mode, consumer_lags, count};
use crate::report::{Case, Kind, REST_WRITER_BESIDE_A_DRAIN, Scenario};
use crate::stats::Latency;

struct Sizes {
    docs: usize,
    versions: usize,
    latency_writes: usize,
}

fn sizes(mode: Mode) -> Sizes {
    mode.pick(
        Sizes {
            docs: 2000,
            versions: 10,
            latency_writes: 200,
        },
        Sizes {
            docs: 16,
            versions: 3,
            latency_writes: 16,
        },
    )
}

pub async fn run(mode: Mode) -> anyhow::Result<Scenario> {
    let sizes = sizes(mode);
    let metrics = shared::metrics::Metrics::new();
    let before = Readings::of(&metrics);
    let mut cases = Vec::new();
    for factor in [1, 2, 4] {
        let (changes, elapsed) = throughput(factor, &sizes, &metrics).await?;
        let rate = changes as f64 / elapsed.as_secs_f64();
        println!("  drain, parallelization {factor}: {changes} changes, {rate:.0} changes/s");
        cases.push(
            Case::new(format!("drain a backlog, parallelization {factor}"))
                .param("parallelization", factor)
                .param("changes", changes)
                .param("seconds", elapsed.as_secs_f64())
                .throughput(rate, "changes/s"),
        );
    }
    let (changes, drained, delivered) = throughput_with_webhooks(2, &sizes, &metrics).await?;
    let drain_rate = changes as f64 / drained.as_secs_f64();
    let event_rate = changes as f64 / delivered.as_secs_f64();
    println!(
        "  drain with a webhook rule, parallelization 2: {changes} changes, {drain_rate:.0} changes/s; \
         {event_rate:.0} events/s delivered to a local receiver"
    );
    cases.push(
        Case::new("drain a backlog beside a webhook rule, parallelization 2")
            .param("parallelization", 2)
            .param("changes", changes)
            .param("seconds", drained.as_secs_f64())
            .throughput(drain_rate, "changes/s"),
    );
    cases.push(
        Case::new("webhook events delivered to a local receiver (same run)")
            .param("events", changes)
            .param("seconds", delivered.as_secs_f64())
            .throughput(event_rate, "events/s"),
    );
    let (alone, during) = writer_beside_a_drain(&sizes, &metrics).await?;
    let rate = |(latencies, elapsed): &(Vec<f64>, Duration)| {
        latencies.len() as f64 / elapsed.as_secs_f64()
    };
    let (alone_rate, during_rate) = (rate(&alone), rate(&during));
    let (alone, during) = (Latency::of(alone.0), Latency::of(during.0));
    println!(
        "  one writer: store alone p50 {:.2} / p99 {:.2} ms; while the fan-out drains a backlog p50 {:.2} / p99 {:.2} ms ({:.2}× the p99)",
        alone.p50,
        alone.p99,
        during.p50,
        during.p99,
        during.p99 / alone.p99.max(f64::EPSILON)
    );
    let floor = Case::new("one writer, store alone (floor)")
        .param("writers", 1)
        .throughput(alone_rate, "edits/s")
        .latency(alone);
    let mut beside = Case::new("one writer while the fan-out drains a backlog (parallelization 4)")
        .param("writers", 1)
        .throughput(during_rate, "edits/s")
        .latency(during);
    beside.compare_with(&floor);
    let (rest_alone, rest_during, draining) = rest_writer_beside_a_drain(&sizes).await?;
    let (rest_alone_rate, rest_during_rate) = (rate(&rest_alone), rate(&rest_during));
    let (rest_alone, rest_during) = (Latency::of(rest_alone.0), Latency::of(rest_during.0));
    println!(
        "  one REST writer: PUT with nothing else to fan out p50 {:.2} / p99 {:.2} ms; while the app drains a backlog p50 {:.2} / p99 {:.2} ms ({:.2}× the store alone's p99)",
        rest_alone.p50,
        rest_alone.p99,
        rest_during.p50,
        rest_during.p99,
        rest_during.p99
            / floor
                .latency_ms
                .as_ref()
                .map_or(f64::EPSILON, |l| l.p99.max(f64::EPSILON))
    );
    if !draining {
        println!(
            "  (the app's backlog drained before the REST writer finished: part of its PUTs ran beside no drain)"
        );
    }
    let mut rest_idle = Case::new(REST_WRITER_ALONE)
        .param("writers", 1)
        .throughput(rest_alone_rate, "edits/s")
        .latency(rest_alone);
    rest_idle.compare_with(&floor);
    let mut rest_beside = Case::new(REST_WRITER_BESIDE_A_DRAIN)
        .param("writers", 1)
        .param("backlog still draining when it finished", draining)
        .throughput(rest_during_rate, "edits/s")
        .latency(rest_during);
    rest_beside.compare_with(&floor);
    cases.extend([floor, beside, rest_idle, rest_beside]);
    for writers in [1, 16] {
        let (samples, elapsed) = latency(writers, sizes.latency_writes, &metrics).await?;
        let edits = samples.len();
        let latency = Latency::of(samples);
        println!(
            "  write→searchable, {}: {edits} edits, p50 {:.2} ms, p99 {:.2} ms",
            count(writers, "writer"),
            latency.p50,
            latency.p99
        );
        cases.push(
            Case::new(format!("write → searchable, {}", count(writers, "writer")))
                .param("writers", writers)
                .param("edits", edits)
                .throughput(edits as f64 / elapsed.as_secs_f64(), "edits/s")
                .latency(latency),
        );
    }
    let spent = Readings::of(&metrics).since(&before);
    Ok(Scenario {
        name: "fanout".into(),
        kind: Kind::Docfan,
        title: "Fan-out: change log → the built-in sinks".into(),
        method: format!(
            "The embedded poller (batch 100, no batching window) drains {} changes ({} \
             documents × {} versions, written beforehand by 16 writers) from the SQLite \
             change log into tantivy, the SQLite audit trail and analysis queue, and a \
             notifier without subscribers; the analysis worker runs beside it. Write → \
             searchable: from an edit's commit being acknowledged to a search for the word \
             only that edit wrote finding it, each writer searching every {} ms (the index \
             commits every 200 ms or 5,000 writes while people search; parallelization 2). \
             One writer: 1,000 sequential edits of one \
             document through the document service (the REST handler's path, without \
             HTTP), first with the store alone (the floor), then while the fan-out drains \
             a backlog of the same size at parallelization 4. One REST writer: 1,000 \
             sequential `PUT`s of one document over loopback to the whole app (both \
             consumers of the change log running, the index consumer at parallelization \
             4), each answer read, first with nothing else to fan out, then on a data \
             directory holding a backlog of the same size, which the app drains from its \
             start; its ratio is to the store alone's p99.",
            sizes.docs * sizes.versions,
            sizes.docs,
            sizes.versions,
            SEARCH_EVERY.as_millis()
        ),
        floor: None,
        load_average: 0.0,
        seconds: 0.0,
        cases,
        notes: vec![format!(
            "Where the time goes (means over this scenario, from the fan-out's metrics): \
             index commit {:.1} ms; a batch's audit entries {:.1} ms and analysis jobs \
             {:.1} ms (each one commit at the batch's flush, beside the users' writes in the \
             same database file); \
             index write {:.1} ms per record.",
            spent.per(
                "docfan_sink_flush_seconds_total{sink=\"search\"}",
                "docfan_sink_flushes_total{sink=\"search\",outcome=\"ok\"}"
            ),
            spent.per(
                "docfan_sink_flush_seconds_total{sink=\"audit\"}",
                "docfan_sink_flushes_total{sink=\"audit\",outcome=\"ok\"}"
            ),
            spent.per(
                "docfan_sink_flush_seconds_total{sink=\"analysis\"}",
                "docfan_sink_flushes_total{sink=\"analysis\",outcome=\"ok\"}"
            ),
            spent.per(
                "docfan_sink_delivery_duration_seconds_sum{sink=\"search\"}",
                "docfan_sink_delivery_duration_seconds_count{sink=\"search\"}"
            ),
        )],
    })
}

/// The fan-out's counters (every case's, counted into one registry), to subtract one
/// reading from another.
struct Readings(BTreeMap<String, f64>);

impl Readings {
    fn of(metrics: &shared::metrics::Metrics) -> Self {
        let text = metrics.render();
        Self(
            text.lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| {
                    let (name, value) = l.rsplit_once(' ')?;
                    Some((name.to_owned(), value.trim().parse().ok()?))
                })
                .collect(),
        )
    }

    fn since(&self, earlier: &Self) -> Self {
        Self(
            self.0
                .iter()
                .map(|(k, v)| (k.clone(), v - earlier.0.get(k).copied().unwrap_or(0.0)))
                .collect(),
        )
    }

    /// `total` ÷ `count`, in milliseconds.
    fn per(&self, total: &str, count: &str) -> f64 {
        let value = |k: &str| self.0.get(k).copied().unwrap_or(0.0);
        value(total) / value(count).max(1.0) * 1000.0
    }
}

struct Env {
    _dir: tempfile::TempDir,
    store: Arc<SqliteDocumentStore>,
    docs: DocumentService,
    fanout: EmbeddedFanout,
}

fn env(metrics: &shared::metrics::Metrics) -> anyhow::Result<Env> {
    env_with(FanoutConfig::default(), metrics)
}

fn env_with(config: FanoutConfig, metrics: &shared::metrics::Metrics) -> anyhow::Result<Env> {
    let dir = tempfile::tempdir()?;
    let store = Arc::new(SqliteDocumentStore::open(&dir.path().join(DATABASE_FILE))?);
    let fanout = EmbeddedFanout::open_counting(
        dir.path(),
        store.clone(),
        Arc::new(NoSubscribers),
        Arc::new(SystemClock),
        config,
        metrics,
    )?;
    Ok(Env {
        docs: DocumentService::new(store.clone(), Arc::new(SystemClock)),
        _dir: dir,
        store,
        fanout,
    })
}

fn body(doc: usize, version: usize) -> String {
    format!(
        "Document {doc} at version {version}. The quarterly plan covers the search index, \
         the audit trail and the analysis queue; every change fans out to each of them. \
         Marker word{doc}x{version} closes the paragraph."
    )
}

/// Writes `docs` documents with `versions` versions each, 16 writers at a time.
async fn write_backlog(docs: &DocumentService, sizes: &Sizes) -> anyhow::Result<usize> {
    let owner = UserId::parse("bench")?;
    let mut tasks = Vec::new();
    for writer in 0..16 {
        let docs = docs.clone();
        let owner = owner.clone();
        let (count, versions) = (sizes.docs, sizes.versions);
        tasks.push(tokio::spawn(async move {
            for d in (writer..count).step_by(16) {
                let mut doc = docs
                    .create(
                        &owner,
                        NewDocument {
                            title: Title::parse(format!("Doc {d}"))?,
                            body: Body::parse(body(d, 1))?,
                            collaborators: Default::default(),
                        },
                    )
                    .await?;
                for v in 2..=versions {
                    doc = edit(&docs, &owner, &doc, body(d, v)).await?;
                }
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(sizes.docs * sizes.versions)
}

async fn edit(
    docs: &DocumentService,
    owner: &UserId,
    doc: &Document,
    text: String,
) -> anyhow::Result<Document> {
    Ok(docs
        .replace(
            owner,
            &doc.id,
            Some(doc.version),
            Replacement {
                title: doc.title.clone(),
                body: Body::parse(text)?,
            },
        )
        .await?)
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
    // The index consumer as the app configures it, at `factor`.
    let config = PollerConfig {
        parallelization_factor: factor,
        ..FanoutConfig::default().poller
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
                if let Ok(Err(e)) = poller.await {
                    eprintln!("the poller stopped with an error: {e}");
                }
            }),
            worker,
        ],
        progress,
    }
}

impl Running {
    async fn wait_through(&mut self, seq: u64) -> anyhow::Result<()> {
        self.progress
            .wait_for(|p| !p.is_empty() && handled_through(p) >= seq)
            .await?;
        Ok(())
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

async fn throughput(
    factor: u32,
    sizes: &Sizes,
    metrics: &shared::metrics::Metrics,
) -> anyhow::Result<(usize, Duration)> {
    let env = env(metrics)?;
    let changes = write_backlog(&env.docs, sizes).await?;
    let latest = env.store.change_feed().latest_seq().await?;
    let started = Instant::now();
    let mut running = start(&env, factor);
    running.wait_through(latest).await?;
    let elapsed = started.elapsed();
    running.stop().await;
    // Everything arrived: the last version of a document is searchable.
    let hits = env
        .fanout
        .search
        .search(&SearchQuery {
            query: format!("word7x{}", sizes.versions).parse()?,
            reader: UserId::parse("bench")?,
            limit: 10,
            offset: 0,
        })
        .await?;
    ensure!(hits.hits.len() == 1, "the last version is searchable");
    Ok((changes, elapsed))
}

/// Latencies (ms) and how long they all took.
type Timed = (Vec<f64>, Duration);

/// A receiver on loopback that answers 204 to every POST and counts them.
async fn counting_receiver() -> anyhow::Result<(String, watch::Receiver<usize>)> {
    let (count, counted) = watch::channel(0usize);
    let count = Arc::new(count);
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let count = Arc::clone(&count);
            async move {
                count.send_modify(|n| *n += 1);
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((url, counted))
}

/// Drains a backlog with one webhook rule matching every change: how long the drain
/// took, and how long until the receiver had every event (both from the start).
async fn throughput_with_webhooks(
    factor: u32,
    sizes: &Sizes,
    metrics: &shared::metrics::Metrics,
) -> anyhow::Result<(usize, Duration, Duration)> {
    let (url, mut counted) = counting_receiver().await?;
    let rules = shared::events::EventRules::parse(&format!(
        r#"{{"rules":[{{"name":"bench","pattern":{{"source":["docfan"]}},
            "target":{{"url":"{url}","secret":"{}"}}}}]}}"#,
        shared::events::WebhookSecret::generate().expose()
    ))?;
    let env = env_with(
        FanoutConfig {
            events: Some(EventsConfig {
                rules,
                delivery: WebhookDeliveryConfig {
                    allow_private_targets: true,
                    ..WebhookDeliveryConfig::default()
                },
            }),
            ..FanoutConfig::default()
        },
        metrics,
    )?;
    let changes = write_backlog(&env.docs, sizes).await?;
    let latest = env.store.change_feed().latest_seq().await?;
    let (stop_workers, workers_stopped) = watch::channel(false);
    let started = Instant::now();
    let mut running = start(&env, factor);
    let workers: Vec<_> = env
        .fanout
        .webhook_workers()?
        .into_iter()
        .map(|worker| {
            let mut stopped = workers_stopped.clone();
            worker.spawn(async move {
                let _ = stopped.wait_for(|s| *s).await;
            })
        })
        .collect();
    running.wait_through(latest).await?;
    let drained = started.elapsed();
    counted.wait_for(|n| *n >= changes).await?;
    let delivered = started.elapsed();
    running.stop().await;
    let _ = stop_workers.send(true);
    for worker in workers {
        let _ = worker.await;
    }
    ensure!(*counted.borrow() == changes, "each event delivered once");
    Ok((changes, drained, delivered))
}

/// One writer's commit latencies (ms): with the store alone, then while the fan-out
/// (parallelization 4) drains a backlog of `sizes` changes.
async fn writer_beside_a_drain(
    sizes: &Sizes,
    metrics: &shared::metrics::Metrics,
) -> anyhow::Result<(Timed, Timed)> {
    let env = env(metrics)?;
    write_backlog(&env.docs, sizes).await?;
    let latest = env.store.change_feed().latest_seq().await?;
    let owner = UserId::parse("bench")?;
    let mut doc = env
        .docs
        .create(
            &owner,
            NewDocument {
                title: Title::parse("The lone writer")?,
                body: Body::parse(body(0, 1))?,
                collaborators: Default::default(),
            },
        )
        .await?;
    let edits = |doc: Document, n: usize| {
        let env = &env;
        let owner = &owner;
        async move {
            let mut doc = doc;
            let mut latencies = Vec::with_capacity(n);
            let all = Instant::now();
            for i in 0..n {
                let started = Instant::now();
                doc = edit(&env.docs, owner, &doc, body(0, i + 2)).await?;
                latencies.push(started.elapsed().as_secs_f64() * 1000.0);
            }
            anyhow::Ok((doc, (latencies, all.elapsed())))
        }
    };
    let (next, alone) = edits(doc, WRITER_EDITS).await?;
    doc = next;
    let mut running = start(&env, 4);
    let (_, during) = edits(doc, WRITER_EDITS).await?;
    let drained = running
        .progress
        .borrow()
        .values()
        .copied()
        .min()
        .unwrap_or(0)
        >= latest;
    running.wait_through(latest).await?;
    running.stop().await;
    if drained {
        println!(
            "  (the backlog drained before the writer finished: part of its edits ran beside no drain)"
        );
    }
    Ok((alone, during))
}

/// The REST writer's case with nothing else to fan out (the one beside a drain is
/// [`REST_WRITER_BESIDE_A_DRAIN`], which the report's headline finds).
const REST_WRITER_ALONE: &str = "one REST writer, PUT answered, nothing else to fan out";

/// Sequential edits one writer makes in each half of a comparison.
const WRITER_EDITS: usize = 1000;

/// One REST writer's `PUT` latencies (ms), answer read, against the whole app (HTTP, the
/// documents writer, both consumers of the change log): first on a data directory with
/// nothing to fan out but its own edits; then on one holding a backlog of `sizes`
/// changes, which the app's index consumer starts draining as the app starts. Also
/// whether that backlog was still draining when the writer finished.
async fn rest_writer_beside_a_drain(sizes: &Sizes) -> anyhow::Result<(Timed, Timed, bool)> {
    let app = writer_app(Arc::new(tempfile::tempdir()?)).await;
    let alone = rest_edits(&app, WRITER_EDITS).await;
    app.stop().await;
    let dir = Arc::new(tempfile::tempdir()?);
    {
        let store = Arc::new(SqliteDocumentStore::open(&dir.path().join(DATABASE_FILE))?);
        write_backlog(&DocumentService::new(store, Arc::new(SystemClock)), sizes).await?;
    }
    let app = writer_app(dir).await;
    let started = Instant::now();
    let during = rest_edits(&app, WRITER_EDITS).await;
    let draining = still_draining(&app, started.elapsed()).await;
    app.stop().await;
    Ok((alone?, during?, draining?))
}

/// The app as the REST writer meets it: the index consumer at parallelization 4, and no
/// per-user request budget (one user writing as fast as the server answers is what is
/// measured, not the budget).
async fn writer_app(dir: Arc<tempfile::TempDir>) -> TestApp {
    TestApp::spawn_in_with(dir, |config| {
        config.fanout.poller.parallelization_factor = 4;
        config.rate_limit = RateLimit {
            per_second: 1e6,
            burst: 1_000_000,
        };
    })
    .await
}

/// `edits` sequential `PUT`s of a new document, each from the version the previous one
/// made.
async fn rest_edits(app: &TestApp, edits: usize) -> anyhow::Result<Timed> {
    let http = reqwest::Client::new();
    let token = token_for("bench");
    let title = "The lone writer";
    let created: Value = http
        .post(app.url("/documents"))
        .bearer_auth(&token)
        .json(&json!({"title": title, "body": body(0, 1)}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let id = created["id"].as_str().context("the document's id")?;
    let url = app.url(&format!("/documents/{id}"));
    let mut latencies = Vec::with_capacity(edits);
    let all = Instant::now();
    for i in 0..edits {
        let started = Instant::now();
        let response = http
            .put(&url)
            .bearer_auth(&token)
            .header("If-Match", format!("\"{}\"", i + 1))
            .json(&json!({"title": title, "body": body(0, i + 2)}))
            .send()
            .await?;
        ensure!(response.status() == 200, "PUT: {}", response.status());
        response.bytes().await?;
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    Ok((latencies, all.elapsed()))
}

/// Whether the app's index consumer is still behind the backlog it found when it
/// started `since` ago: its oldest unprocessed change is older than that.
async fn still_draining(app: &TestApp, since: Duration) -> anyhow::Result<bool> {
    let lags = consumer_lags(&reqwest::Client::new(), &app.base).await?;
    let (_, index) = lags
        .iter()
        .find(|(consumer, _)| consumer == "index")
        .context("the index consumer's lag in /metrics")?;
    Ok(*index >= since.as_secs_f64())
}

/// How often a writer searches for its edit until it is found.
const SEARCH_EVERY: Duration = Duration::from_millis(10);

/// Write-to-searchable latencies (ms) with `writers` concurrent writers, and how long
/// the edits took.
async fn latency(
    writers: usize,
    total: usize,
    metrics: &shared::metrics::Metrics,
) -> anyhow::Result<(Vec<f64>, Duration)> {
    let env = Arc::new(env(metrics)?);
    let owner = UserId::parse("bench")?;
    let running = start(&env, 2);
    let per_writer = total / writers.max(1);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let env = Arc::clone(&env);
        let owner = owner.clone();
        tasks.push(tokio::spawn(async move {
            let mut doc = env
                .docs
                .create(
                    &owner,
                    NewDocument {
                        title: Title::parse(format!("Writer {w}"))?,
                        body: Body::parse(body(w, 1))?,
                        collaborators: Default::default(),
                    },
                )
                .await?;
            let mut latencies = Vec::new();
            for i in 0..per_writer {
                doc = edit(&env.docs, &owner, &doc, body(w, i + 2)).await?;
                let committed = Instant::now();
                let this_edit = SearchQuery {
                    query: format!("word{w}x{}", i + 2).parse()?,
                    reader: owner.clone(),
                    limit: 1,
                    offset: 0,
                };
                let deadline = committed + Duration::from_secs(60);
                while env.fanout.search.search(&this_edit).await?.hits.is_empty() {
                    ensure!(Instant::now() < deadline, "the edit became searchable");
                    tokio::time::sleep(SEARCH_EVERY).await;
                }
                latencies.push(committed.elapsed().as_secs_f64() * 1000.0);
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    let elapsed = started.elapsed();
    running.stop().await;
    // The last edit of writer 0 is searchable.
    let found = env
        .fanout
        .search
        .search(&SearchQuery {
            query: format!("word0x{}", per_writer + 1).parse()?,
            reader: owner,
            limit: 1,
            offset: 0,
        })
        .await?;
    ensure!(found.hits.len() == 1, "the last edit is searchable");
    let _ = env.store.get(&found.hits[0].id).await?;
    Ok((all, elapsed))
}
