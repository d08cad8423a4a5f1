//! The OpenSearch node killed and restarted in the middle of a run, on the AWS sinks:
//! writers keep editing, the search sink fails and its records are retried (or, past
//! the retry budget, dead-lettered and redriven), and once the node is back the index
//! holds every document at its final version, and the audit table every version once.
//!
//! The node is one of the test's own (the shared one serves the other tests), started
//! by `tests/emulators/opensearch.start` with a fixed port and data directory so that
//! it comes back as the same node with its data. The embedded poller over the SQLite
//! change log stands in for the event source mapping, which cannot run here; its
//! records have the DynamoDB Streams shape (see `stream.rs`).

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use shared::clock::{Clock, SystemClock};
use shared::domain::{Body, DocumentId, Title, UserId};
use shared::embedded::{DATABASE_FILE, SqliteDocumentStore};
use shared::ports::{AuditLog, DeadLetterQueue, DocumentStore, SearchIndex, SearchQuery};
use shared::service::{DocumentService, NewDocument, Replacement};
use stream_handler::Fanout;
use stream_handler::poller::{Poller, PollerConfig};
use stream_handler::sinks::notifications::NoSubscribers;
use tests::child::free_port;

use crate::emulators::aws_on_opensearch;

/// A single-node OpenSearch of this test's own.
struct Node {
    port: u16,
    work: tempfile::TempDir,
    pid: Option<u32>,
}

impl Node {
    fn start() -> Self {
        let mut node = Self {
            port: free_port(),
            work: tempfile::tempdir().unwrap(),
            pid: None,
        };
        node.run();
        node
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts the node on its port and directory and waits until it answers.
    fn run(&mut self) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/emulators/opensearch.start");
        let env_file = self.work.path().join("node.env");
        let status = Command::new("bash")
            .arg(script)
            .arg(&env_file)
            .env("DOCFAN_OPENSEARCH_PORT", self.port.to_string())
            .env("DOCFAN_OPENSEARCH_WORK", self.work.path().join("node"))
            .status()
            .expect("the start script runs");
        assert!(status.success(), "the OpenSearch node did not start");
        let written = std::fs::read_to_string(&env_file).unwrap();
        let pid = written
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("EMULATOR_PID="))
            .expect("the script names the pid");
        self.pid = Some(pid.parse().unwrap());
        std::fs::remove_file(env_file).unwrap();
    }

    /// SIGKILL, and waits until the process is gone.
    fn kill(&mut self) {
        let Some(pid) = self.pid.take() else { return };
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Command::new("kill")
            .args(["-0", &pid.to_string()])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
        {
            assert!(Instant::now() < deadline, "the node did not die");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

const WRITERS: usize = 4;

#[tokio::test]
#[ignore = "needs moto and OpenSearch: run tests/run"]
async fn the_opensearch_node_killed_and_restarted_mid_run_loses_nothing() {
    let mut node = tokio::task::spawn_blocking(Node::start).await.unwrap();
    let clients = aws_on_opensearch(&node.url()).await;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteDocumentStore::open(&dir.path().join(DATABASE_FILE)).unwrap());
    let feed = store.change_feed();
    let service = DocumentService::new(store.clone() as Arc<dyn DocumentStore>, clock.clone());
    let fanout: Arc<Fanout> = Arc::new(
        stream_handler::aws::fanout(&clients, Arc::new(NoSubscribers), clock.clone()).unwrap(),
    );
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let poller = Poller::spawn(
        PollerConfig::default(),
        feed,
        Arc::clone(&fanout),
        clock.clone(),
        async {
            let _ = stop_rx.await;
        },
    );

    // Writers edit their document until told to stop.
    let stop_writing = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let service = service.clone();
        let stop_writing = Arc::clone(&stop_writing);
        writers.push(tokio::spawn(async move {
            let user = UserId::parse(format!("outage-w{w}")).unwrap();
            let word = format!("nodeoutage{w}");
            let doc = service
                .create(
                    &user,
                    NewDocument {
                        title: Title::parse(format!("search {word}")).unwrap(),
                        body: Body::parse("version 1").unwrap(),
                        collaborators: Default::default(),
                    },
                )
                .await
                .unwrap();
            let mut version = 1;
            while !stop_writing.load(Ordering::SeqCst) {
                let replacement = Replacement {
                    title: Title::parse(format!("search {word}")).unwrap(),
                    body: Body::parse(format!("version {}", version + 1)).unwrap(),
                };
                service
                    .replace(&user, &doc.id, Some(version), replacement)
                    .await
                    .expect("writes do not depend on search");
                version += 1;
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
            (doc.id, user, word, version)
        }));
    }

    // The node dies while the writers write, stays down a while, and comes back.
    let search = clients.search_index().unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let outage = Instant::now();
    node = tokio::task::spawn_blocking(move || {
        node.kill();
        node
    })
    .await
    .unwrap();
    assert!(search.health().await.is_err(), "the node is down");
    tokio::time::sleep(Duration::from_secs(3)).await;
    node = tokio::task::spawn_blocking(move || {
        node.run();
        node
    })
    .await
    .unwrap();
    assert!(search.health().await.is_ok(), "the node is back");
    let down_for = outage.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop_writing.store(true, Ordering::SeqCst);
    let mut finals: Vec<(DocumentId, UserId, String, u64)> = Vec::new();
    for w in writers {
        finals.push(w.await.unwrap());
    }
    let edits: u64 = finals.iter().map(|f| f.3).sum();

    // Records past the retry budget sit in the dead-letter queue: redrive them.
    let audit = clients.audit_log();
    let dead_letters = clients.dead_letter_queue(clock.clone()).unwrap();
    let queue = clients.analysis_queue(clock.clone()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut redriven = 0;
    for (id, user, word, version) in &finals {
        loop {
            if dead_letters.depth().await.unwrap() > 0 {
                let outcomes =
                    stream_handler::redrive::redrive(&fanout, &queue, &dead_letters, None)
                        .await
                        .unwrap();
                redriven += outcomes.iter().filter(|o| o.result.is_ok()).count();
            }
            let found = search
                .search(&SearchQuery {
                    query: word.parse().unwrap(),
                    reader: user.clone(),
                    limit: 10,
                    offset: 0,
                })
                .await
                .ok()
                .and_then(|page| page.hits.into_iter().find(|h| h.id == *id))
                .map(|hit| hit.version);
            let audited: Vec<u64> = audit
                .list(id, None, 10_000)
                .await
                .unwrap()
                .iter()
                .map(|e| e.version)
                .collect();
            if found == Some(*version) && audited == (1..=*version).collect::<Vec<_>>() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{id}: search holds {found:?}, the audit {} versions, of {version}",
                audited.len()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    assert_eq!(dead_letters.depth().await.unwrap(), 0);
    let _ = stop_tx.send(());
    poller.await.unwrap().unwrap();
    eprintln!(
        "OpenSearch killed and restarted (down {:.1}s): {edits} edits, {redriven} records \
         dead-lettered and redriven, 0 lost; search holds every final version",
        down_for.as_secs_f64()
    );
    drop(node);
}
