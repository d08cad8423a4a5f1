//! A poller killed with SIGKILL mid-stream resumes from its saved checkpoints: after a
//! restart every change is in the audit trail exactly once and the index is current.
//!
//! The poller to kill runs in a child process: this test binary again, running only
//! [`child_poller`] with the data directory in `DOCFAN_CRASH_CHILD_DIR`. The child
//! prints `handled <seq>` each time its checkpoints advance; the parent kills it once
//! it is part way through.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use shared::clock::SystemClock;
use shared::domain::{Analysis, Body, ChangeEvent, Document, Title, UserId};
use shared::embedded::{ChangeFeed, DATABASE_FILE, SqliteDocumentStore};
use shared::ports::{AuditLog, Notifier};
use shared::service::{DocumentService, NewDocument, Replacement};
use stream_handler::poller::{Poller, PollerConfig, handled_through};
use stream_handler::sinks::search::{CommitPolicy, SearchSinkConfig};
use stream_handler::{EmbeddedFanout, FanoutConfig};

const CHILD_DIR: &str = "DOCFAN_CRASH_CHILD_DIR";
const DOCS: usize = 20;
const VERSIONS: u64 = 15;

/// Slows the fan-out down to a steady pace, so the kill lands mid-stream.
struct SlowNotifier;

#[async_trait]
impl Notifier for SlowNotifier {
    async fn publish_change(&self, _change: &ChangeEvent) -> shared::Result<()> {
        tokio::time::sleep(Duration::from_millis(3)).await;
        Ok(())
    }

    async fn publish_analysis(&self, _: &Document, _: &Analysis) -> shared::Result<()> {
        Ok(())
    }
}

fn poller_config() -> PollerConfig {
    PollerConfig {
        batch_size: 5,
        parallelization_factor: 2,
        ..PollerConfig::default()
    }
}

fn open(dir: &Path, notifier: Arc<dyn Notifier>) -> (Arc<SqliteDocumentStore>, EmbeddedFanout) {
    let store = Arc::new(SqliteDocumentStore::open(&dir.join(DATABASE_FILE)).unwrap());
    let fanout = EmbeddedFanout::open(
        dir,
        store.clone(),
        notifier,
        Arc::new(SystemClock),
        FanoutConfig {
            // Deferred commits, as served, but often enough that the checkpoints move in
            // small steps and the kill lands between two of them, mid-stream.
            search: SearchSinkConfig {
                commit: CommitPolicy::by_time_and_size(Duration::from_millis(20), 5_000),
            },
            ..FanoutConfig::default()
        },
    )
    .unwrap();
    (store, fanout)
}

/// The child: runs the poller on the parent's data directory until killed. Does
/// nothing when not started as a child.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_poller() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    let (store, fanout) = open(Path::new(&dir), Arc::new(SlowNotifier));
    let (_task, mut progress) = Poller::spawn_observed(
        poller_config(),
        store.change_feed(),
        fanout.fanout.clone(),
        Arc::new(SystemClock),
        std::future::pending(),
    );
    loop {
        let through = handled_through(&progress.borrow_and_update());
        println!("handled {through}");
        if progress.changed().await.is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_poller_resumes_from_its_checkpoints() {
    if std::env::var_os(CHILD_DIR).is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ann = UserId::parse("ann").unwrap();
    let mut docs = Vec::new();
    let latest = {
        let store = Arc::new(SqliteDocumentStore::open(&dir.path().join(DATABASE_FILE)).unwrap());
        let service = DocumentService::new(store.clone(), Arc::new(SystemClock));
        for i in 0..DOCS {
            docs.push(
                service
                    .create(
                        &ann,
                        NewDocument {
                            title: Title::parse(format!("Doc {i}")).unwrap(),
                            body: Body::parse("v1").unwrap(),
                            collaborators: Default::default(),
                        },
                    )
                    .await
                    .unwrap(),
            );
        }
        for v in 2..=VERSIONS {
            for doc in docs.iter_mut() {
                *doc = service
                    .replace(
                        &ann,
                        &doc.id,
                        Some(doc.version),
                        Replacement {
                            title: doc.title.clone(),
                            body: Body::parse(format!("v{v}")).unwrap(),
                        },
                    )
                    .await
                    .unwrap();
            }
        }
        store.change_feed().latest_seq().await.unwrap()
    };
    assert_eq!(latest, DOCS as u64 * VERSIONS);

    // Start the child and kill it once it is a third of the way through.
    let path = dir.path().to_owned();
    let killed_at = tokio::task::spawn_blocking(move || {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "crash::child_poller",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut seen = 0;
        for line in stdout.lines() {
            let line = line.unwrap();
            if let Some(n) = line.strip_prefix("handled ") {
                seen = n.parse::<u64>().unwrap();
                if seen >= latest / 3 {
                    break;
                }
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        seen
    })
    .await
    .unwrap();
    assert!(
        killed_at >= latest / 3,
        "the child made progress before the kill"
    );

    let feed = ChangeFeed::open(&dir.path().join(DATABASE_FILE)).unwrap();
    let saved = feed.checkpoints().await.unwrap();
    let resumed_from = handled_through(&saved);
    assert!(
        resumed_from >= killed_at,
        "checkpoints were saved as it went"
    );
    assert!(
        resumed_from < latest,
        "killed mid-stream (at {resumed_from} of {latest})"
    );

    // Restart in this process and run to the end.
    let (store, fanout) = open(
        dir.path(),
        Arc::new(stream_handler::sinks::notifications::NoSubscribers),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (task, mut progress) = Poller::spawn_observed(
        poller_config(),
        store.change_feed(),
        fanout.fanout.clone(),
        Arc::new(SystemClock),
        async move {
            let _ = stopped.await;
        },
    );
    tokio::time::timeout(
        Duration::from_secs(60),
        progress.wait_for(|p| !p.is_empty() && handled_through(p) >= latest),
    )
    .await
    .expect("caught up in time")
    .unwrap();
    let _ = stop.send(());
    task.await.unwrap().unwrap();

    for doc in &docs {
        let entries = fanout.audit.list(&doc.id, None, 100).await.unwrap();
        let versions: Vec<u64> = entries.iter().map(|e| e.version).collect();
        assert_eq!(
            versions,
            (1..=VERSIONS).collect::<Vec<_>>(),
            "audit of {}",
            doc.id
        );
        let indexed = fanout.search.indexed_version(&doc.id).await.unwrap();
        assert_eq!(indexed.map(|i| i.version), Some(VERSIONS));
    }
}
