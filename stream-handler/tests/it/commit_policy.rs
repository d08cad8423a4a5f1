//! The search sink's commit policy on a real change log and tantivy index: the index is
//! committed by time and size, not per batch, and a consumer's checkpoint never passes
//! a write the index has not committed, so a crash redelivers it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use shared::clock::SystemClock;
use shared::domain::{Body, Title, UserId};
use shared::embedded::{
    DATABASE_FILE, SEARCH_INDEX_DIR, SqliteDeadLetterQueue, SqliteDocumentStore, TantivySearchIndex,
};
use shared::ports::SearchIndex;
use shared::service::{DocumentService, NewDocument};
use stream_handler::handler::Fanout;
use stream_handler::poller::{Poller, PollerConfig, handled_through};
use stream_handler::sinks::search::{CommitPolicy, SearchSink, SearchSinkConfig};
use stream_handler::sinks::{Flush, Flushed, Sink};
use tokio::sync::{oneshot, watch};

use crate::common::quick_retries;

struct Env {
    dir: tempfile::TempDir,
    store: Arc<SqliteDocumentStore>,
    docs: DocumentService,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteDocumentStore::open(&dir.path().join(DATABASE_FILE)).unwrap());
    Env {
        docs: DocumentService::new(store.clone(), Arc::new(SystemClock)),
        store,
        dir,
    }
}

impl Env {
    async fn create(&self, n: usize) {
        for i in 0..n {
            self.docs
                .create(
                    &UserId::parse("ann").unwrap(),
                    NewDocument {
                        title: Title::parse(format!("note {i}")).unwrap(),
                        body: Body::parse("committed by policy").unwrap(),
                        collaborators: Default::default(),
                    },
                )
                .await
                .unwrap();
        }
    }

    /// The change log's records, as the handler takes them.
    async fn records(&self) -> Vec<serde_json::Value> {
        self.store
            .change_feed()
            .read_after(0, 100)
            .await
            .unwrap()
            .iter()
            .map(|r| serde_json::from_str(&r.record).unwrap())
            .collect()
    }

    fn index(&self) -> Arc<TantivySearchIndex> {
        Arc::new(TantivySearchIndex::open(&self.dir.path().join(SEARCH_INDEX_DIR)).unwrap())
    }

    fn fanout(&self, index: Arc<TantivySearchIndex>, commit: CommitPolicy) -> Arc<Fanout> {
        let sink = SearchSink::new(index, SearchSinkConfig { commit });
        let dlq = SqliteDeadLetterQueue::open(&self.dir.path().join(DATABASE_FILE)).unwrap();
        Arc::new(Fanout::new(
            vec![Arc::new(sink) as Arc<dyn Sink>],
            Arc::new(dlq),
            Arc::new(SystemClock),
            quick_retries(),
        ))
    }

    /// Starts a poller.
    fn poll(&self, fanout: Arc<Fanout>) -> Polling {
        let (stop, stopped) = oneshot::channel::<()>();
        let (task, progress) = Poller::spawn_observed(
            PollerConfig {
                batch_size: 10,
                parallelization_factor: 2,
                ..PollerConfig::default()
            },
            self.store.change_feed(),
            fanout,
            Arc::new(SystemClock),
            async move {
                let _ = stopped.await;
            },
        );
        (stop, task, progress)
    }

    async fn saved_through(&self) -> u64 {
        let saved = self.store.change_feed().checkpoints().await.unwrap();
        if saved.is_empty() {
            0
        } else {
            handled_through(&saved)
        }
    }
}

/// A running poller: stop it by sending on (or dropping) the sender.
type Polling = (
    oneshot::Sender<()>,
    tokio::task::JoinHandle<shared::Result<()>>,
    watch::Receiver<BTreeMap<u32, u64>>,
);

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test]
async fn a_flush_is_deferred_until_the_policy_says_commit() {
    let env = env();
    env.create(3).await;
    let index = env.index();
    let sink = SearchSink::new(
        index.clone(),
        SearchSinkConfig {
            commit: CommitPolicy::by_time_and_size(HOUR, 3),
        },
    );
    assert_eq!(
        sink.flush(Flush::IfDue).await.unwrap(),
        Flushed::Durable,
        "nothing held"
    );

    let fanout = env.fanout(index.clone(), CommitPolicy::by_time_and_size(HOUR, 3));
    let records = env.records().await;
    let report = fanout.handle_detailed(&records[..2], Flush::IfDue).await;
    assert!(!report.failed());
    let Flushed::Deferred(due_in) = report.flushed else {
        panic!(
            "two writes of three, an hour to go: held, got {:?}",
            report.flushed
        );
    };
    assert!(due_in > Duration::from_secs(3500), "{due_in:?}");
    assert_eq!(
        index.live_documents().await.unwrap(),
        0,
        "not committed yet"
    );

    let report = fanout.handle_detailed(&records[2..], Flush::IfDue).await;
    assert_eq!(report.flushed, Flushed::Durable, "three writes: committed");
    assert_eq!(index.live_documents().await.unwrap(), 3);
}

#[tokio::test]
async fn flush_now_commits_whatever_the_policy() {
    let env = env();
    env.create(1).await;
    let index = env.index();
    let fanout = env.fanout(index.clone(), CommitPolicy::by_time_and_size(HOUR, 1000));
    let records = env.records().await;
    // `handle` answers a Lambda invocation: durable when it returns.
    assert!(fanout.handle(&records).await.batch_item_failures.is_empty());
    assert_eq!(index.live_documents().await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checkpoint_waits_for_the_commit() {
    let env = env();
    env.create(30).await;

    // A commit an hour away: the poller handles everything and checkpoints nothing, so
    // a crash now (the uncommitted writes lost with the process) redelivers it all.
    // crash::a_killed_poller_resumes_from_its_checkpoints kills one for real.
    let index = env.index();
    let (stop, task, progress) =
        env.poll(env.fanout(index.clone(), CommitPolicy::by_time_and_size(HOUR, 1000)));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        env.saved_through().await,
        0,
        "no checkpoint past uncommitted writes"
    );
    assert_eq!(handled_through(&progress.borrow()), 0);
    assert_eq!(index.live_documents().await.unwrap(), 0, "not committed");
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_consumer_commits_when_due_and_checkpoints() {
    let env = env();
    env.create(30).await;
    let latest = env.store.change_feed().latest_seq().await.unwrap();
    let index = env.index();
    let (stop, task, mut progress) = env.poll(env.fanout(
        index.clone(),
        CommitPolicy::by_time_and_size(Duration::from_millis(300), 1000),
    ));
    tokio::time::timeout(
        Duration::from_secs(30),
        progress.wait_for(|p| !p.is_empty() && handled_through(p) >= latest),
    )
    .await
    .expect("checkpointed once the commit was due, with no new record")
    .unwrap();
    assert_eq!(index.live_documents().await.unwrap(), 30);
    assert_eq!(env.saved_through().await, latest);
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_commits_what_is_held_and_checkpoints_it() {
    let env = env();
    env.create(12).await;
    let latest = env.store.change_feed().latest_seq().await.unwrap();
    let index = env.index();
    let (stop, task, _progress) =
        env.poll(env.fanout(index.clone(), CommitPolicy::by_time_and_size(HOUR, 1000)));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(env.saved_through().await, 0);
    let _ = stop.send(());
    task.await.unwrap().unwrap();
    assert_eq!(index.live_documents().await.unwrap(), 12);
    assert_eq!(env.saved_through().await, latest);
}

#[tokio::test]
async fn writes_wait_longer_while_nobody_searches() {
    let env = env();
    env.create(1).await;
    let index = env.index();
    let policy =
        CommitPolicy::by_time_and_size(Duration::from_secs(60), 1000).when_search_idle(HOUR);
    let fanout = env.fanout(index.clone(), policy);
    let records = env.records().await;
    let due_in = |flushed| match flushed {
        Flushed::Deferred(due_in) => due_in,
        other => panic!("held for a later commit, got {other:?}"),
    };

    assert!(index.is_search_idle(), "nobody has searched");
    let report = fanout.handle_detailed(&records, Flush::IfDue).await;
    assert!(!report.failed());
    let idle = due_in(report.flushed);
    assert!(idle > Duration::from_secs(3500), "{idle:?}");

    // A search ends the quiet spell: the same write is now due within the interval.
    let page = index
        .search(&shared::ports::SearchQuery {
            query: shared::domain::search_query::parse("policy").unwrap(),
            reader: UserId::parse("ann").unwrap(),
            limit: 10,
            offset: 0,
        })
        .await
        .unwrap();
    assert_eq!(page.hits.len(), 1, "the search committed the write first");
    assert!(!index.is_search_idle());
    let report = fanout.handle_detailed(&records, Flush::IfDue).await;
    let searched = due_in(report.flushed);
    assert!(searched <= Duration::from_secs(60), "{searched:?}");
}
