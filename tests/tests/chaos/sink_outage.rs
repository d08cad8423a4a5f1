//! A sink of the embedded fan-out failing for a while under concurrent edits: the real
//! stack (SQLite store and change log, the poller, the four sinks on tantivy and SQLite,
//! the analysis worker, the REST router), with one sink wrapped so that it fails while
//! the test says it is down.
//!
//! An outage shorter than the retry budget delays delivery and loses nothing; a longer
//! one dead-letters the records with the reason, and a redrive applies them once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use api::AppState;
use async_trait::async_trait;
use serde_json::{Value, json};
use shared::Error;
use shared::auth::TokenAuthority;
use shared::clock::{Clock, SystemClock};
use shared::domain::ChangeEvent;
use shared::embedded::{DATABASE_FILE, SqliteDocumentStore};
use shared::ports::DocumentStore;
use shared::service::DocumentService;
use stream_handler::decode::RecordMeta;
use stream_handler::handler::{Fanout, RetryPolicy};
use stream_handler::sinks::Sink;
use stream_handler::sinks::notifications::NoSubscribers;
use stream_handler::{EmbeddedFanout, FanoutConfig};
use tests::data_dir::dead_letters;
use tests::read_side::{Expected, wait_until_converged};
use tests::{TEST_SECRET, token_for};
use tokio::sync::oneshot;

/// The switch of an injected outage, and how many deliveries it failed.
#[derive(Default)]
struct Outage {
    down: AtomicBool,
    failed: AtomicUsize,
}

impl Outage {
    fn check(&self) -> shared::Result<()> {
        if self.down.load(Ordering::SeqCst) {
            self.failed.fetch_add(1, Ordering::SeqCst);
            return Err(Error::Unavailable("injected outage".into()));
        }
        Ok(())
    }
}

/// A real sink that fails while its outage is on.
struct FailingWhileDown {
    inner: Arc<dyn Sink>,
    outage: Arc<Outage>,
}

#[async_trait]
impl Sink for FailingWhileDown {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    async fn deliver(&self, change: &ChangeEvent, record: &RecordMeta) -> shared::Result<()> {
        self.outage.check()?;
        self.inner.deliver(change, record).await
    }

    async fn flush(
        &self,
        when: stream_handler::sinks::Flush,
    ) -> shared::Result<stream_handler::sinks::Flushed> {
        self.outage.check()?;
        self.inner.flush(when).await
    }

    async fn health(&self) -> shared::Result<()> {
        self.outage.check()?;
        self.inner.health().await
    }
}

/// The embedded stack serving on a loopback port, with `failing` wrapped.
struct Stack {
    base: String,
    client: reqwest::Client,
    fanout: EmbeddedFanout,
    outage: Arc<Outage>,
    dir: tempfile::TempDir,
    stop: oneshot::Sender<()>,
    /// The server, and the fan-out behind it, until both have stopped.
    running: tokio::task::JoinHandle<()>,
}

impl Stack {
    async fn start(failing: &str, config: FanoutConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let store = Arc::new(SqliteDocumentStore::open(&dir.path().join(DATABASE_FILE)).unwrap());
        let feed = store.change_feed();
        let store: Arc<dyn DocumentStore> = store;
        let mut fanout = EmbeddedFanout::open(
            dir.path(),
            Arc::clone(&store),
            Arc::new(NoSubscribers),
            Arc::clone(&clock),
            config.clone(),
        )
        .unwrap();
        let outage = Arc::new(Outage::default());
        let sinks: Vec<Arc<dyn Sink>> = fanout
            .fanout
            .sinks()
            .iter()
            .map(|sink| -> Arc<dyn Sink> {
                if sink.name() == failing {
                    Arc::new(FailingWhileDown {
                        inner: Arc::clone(sink),
                        outage: Arc::clone(&outage),
                    })
                } else {
                    Arc::clone(sink)
                }
            })
            .collect();
        assert!(
            sinks.len() == 4 && fanout.fanout.sinks().iter().any(|s| s.name() == failing),
            "no sink named {failing}"
        );
        fanout.fanout = Arc::new(Fanout::new(
            sinks,
            Arc::clone(
                fanout
                    .fanout
                    .dead_letters()
                    .expect("the embedded fan-out keeps dead letters"),
            ),
            Arc::clone(&clock),
            config.handler.clone(),
        ));

        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (fanout_stop_tx, fanout_stop_rx) = oneshot::channel::<()>();
        let background = fanout.start(feed, async {
            let _ = fanout_stop_rx.await;
        });
        let state = AppState {
            documents: DocumentService::new(store, Arc::clone(&clock)),
            tokens: Arc::new(TokenAuthority::new(TEST_SECRET).unwrap()),
            clock,
            metrics: shared::metrics::Metrics::new(),
            reads: fanout.reads(),
            rate_limit: Default::default(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let _ = api::server::serve(listener, api::router(state), async {
                let _ = stop_rx.await;
            })
            .await;
            let _ = fanout_stop_tx.send(());
            let _ = background.await;
        });
        Self {
            base,
            client: reqwest::Client::new(),
            fanout,
            outage,
            dir,
            stop: stop_tx,
            running: server,
        }
    }

    fn set_down(&self, down: bool) {
        self.outage.down.store(down, Ordering::SeqCst);
    }

    /// Edits one document per writer, `edits` times each, `pause` apart; returns what
    /// every consumer must end up holding.
    async fn edit(&self, writers: usize, edits: u64, pause: Duration) -> Vec<Expected> {
        let mut handles = Vec::new();
        for w in 0..writers {
            let base = self.base.clone();
            let client = self.client.clone();
            handles.push(tokio::spawn(async move {
                let owner = format!("outage-w{w}");
                let word = format!("outage{w}");
                let title = format!("sink {word}");
                let created: Value = client
                    .post(format!("{base}/documents"))
                    .bearer_auth(token_for(&owner))
                    .json(&json!({"title": title, "body": "version 1"}))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                let id = created["id"].as_str().unwrap().to_owned();
                for version in 1..edits {
                    let r = client
                        .put(format!("{base}/documents/{id}"))
                        .bearer_auth(token_for(&owner))
                        .header("If-Match", format!("\"{version}\""))
                        .json(&json!({"title": title, "body": format!("version {}", version + 1)}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 200, "writes do not depend on the sinks");
                    tokio::time::sleep(pause).await;
                }
                Expected {
                    id,
                    owner,
                    title_word: word,
                    version: edits,
                }
            }));
        }
        let mut expected = Vec::new();
        for h in handles {
            expected.push(h.await.unwrap());
        }
        expected
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.running.await;
    }
}

#[tokio::test]
async fn a_search_outage_within_the_retry_budget_delays_delivery_and_loses_nothing() {
    let stack = Stack::start("search", FanoutConfig::default()).await;
    let editing = {
        let stack = &stack;
        async move { stack.edit(6, 40, Duration::from_millis(100)).await }
    };
    let outage = async {
        tokio::time::sleep(Duration::from_millis(800)).await;
        stack.set_down(true);
        tokio::time::sleep(Duration::from_secs(3)).await;
        stack.set_down(false);
    };
    let (expected, ()) = tokio::join!(editing, outage);
    let failed = stack.outage.failed.load(Ordering::SeqCst);
    assert!(failed > 0, "the outage failed no delivery");

    wait_until_converged(
        &stack.client,
        &stack.base,
        &expected,
        Duration::from_secs(90),
    )
    .await;
    let letters = dead_letters(stack.dir.path());
    assert!(
        letters.is_empty(),
        "an outage within the retry budget dead-lettered {} records: {}",
        letters.len(),
        letters[0].reason
    );
    eprintln!(
        "sink outage (search, 3 s): {} edits, {failed} deliveries failed during the outage, \
         0 dead-lettered, 0 lost",
        expected.iter().map(|e| e.version).sum::<u64>()
    );
    stack.stop().await;
}

#[tokio::test]
async fn an_audit_outage_past_the_retry_budget_dead_letters_and_a_redrive_applies_each_once() {
    let mut config = FanoutConfig::default();
    // A small retry budget, so that the outage outlasts it.
    config.handler.retry = RetryPolicy {
        max_attempts: 2,
        initial_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(10),
    };
    config.poller.maximum_retry_attempts = Some(1);
    config.poller.retry_backoff = RetryPolicy {
        max_attempts: u32::MAX,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
    };
    let stack = Stack::start("audit", config).await;
    stack.set_down(true);
    let expected = stack.edit(4, 15, Duration::from_millis(20)).await;
    let edits: u64 = expected.iter().map(|e| e.version).sum();

    // Every record the audit trail could not take is dead-lettered, with the reason.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let letters = loop {
        let letters = dead_letters(stack.dir.path());
        if letters.len() as u64 >= edits {
            break letters;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {edits} records dead-lettered",
            letters.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(letters.len() as u64, edits);
    for letter in &letters {
        assert!(
            letter.reason.contains("audit") && letter.reason.contains("injected outage"),
            "the reason names the sink and its error: {}",
            letter.reason
        );
    }

    // The audit trail is back: a redrive applies every letter, and empties the queue.
    stack.set_down(false);
    let outcomes = stack.fanout.redrive(None).await.unwrap();
    assert_eq!(outcomes.len() as u64, edits);
    assert!(outcomes.iter().all(|o| o.result.is_ok()), "{outcomes:?}");
    assert!(dead_letters(stack.dir.path()).is_empty());
    wait_until_converged(
        &stack.client,
        &stack.base,
        &expected,
        Duration::from_secs(60),
    )
    .await;

    // The same records once more (as after a crash in the middle of a redrive):
    // nothing changes, no version is applied twice.
    for letter in &letters {
        let record: Value = serde_json::from_str(&letter.payload).unwrap();
        stack.fanout.fanout.redrive(&record).await.unwrap();
    }
    wait_until_converged(
        &stack.client,
        &stack.base,
        &expected,
        Duration::from_secs(10),
    )
    .await;
    eprintln!(
        "sink outage (audit, past the retry budget): {edits} edits, {} dead-lettered with the reason, \
         {} redriven, 0 lost",
        letters.len(),
        outcomes.len()
    );
    stack.stop().await;
}
