//! The poller's failure handling on a real change log: retries running out, records
//! growing too old, and a handler that fails a whole batch (bisect).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use shared::Error;
use shared::clock::{Clock, ManualClock, SystemClock};
use shared::domain::{Body, ChangeEvent, Document, Title, UserId};
use shared::embedded::{DATABASE_FILE, SqliteDeadLetterQueue, SqliteDocumentStore};
use shared::ports::DeadLetterQueue;
use shared::service::{DocumentService, NewDocument, Replacement};
use stream_handler::handler::{Fanout, RetryPolicy};
use stream_handler::poller::{
    Backlog, Poller, PollerConfig, backlog, handled_through, partition_of,
};
use stream_handler::sinks::Sink;
use tokio::sync::oneshot;

use crate::common::{FailurePlan, RecordingSink, quick_retries};

struct Log {
    _dir: tempfile::TempDir,
    store: Arc<SqliteDocumentStore>,
    docs: DocumentService,
    dlq: Arc<SqliteDeadLetterQueue>,
}

fn log() -> Log {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join(DATABASE_FILE);
    let store = Arc::new(SqliteDocumentStore::open(&db).unwrap());
    Log {
        docs: DocumentService::new(store.clone(), Arc::new(SystemClock)),
        dlq: Arc::new(SqliteDeadLetterQueue::open(&db).unwrap()),
        _dir: dir,
        store,
    }
}

impl Log {
    async fn create(&self, title: &str) -> Document {
        self.docs
            .create(
                &UserId::parse("ann").unwrap(),
                NewDocument {
                    title: Title::parse(title).unwrap(),
                    body: Body::parse("v1").unwrap(),
                    collaborators: Default::default(),
                },
            )
            .await
            .unwrap()
    }

    async fn edit(&self, doc: &Document) -> Document {
        self.docs
            .replace(
                &UserId::parse("ann").unwrap(),
                &doc.id,
                Some(doc.version),
                Replacement {
                    title: doc.title.clone(),
                    body: Body::parse(format!("v{}", doc.version + 1)).unwrap(),
                },
            )
            .await
            .unwrap()
    }

    /// Runs the poller until everything committed is handled, then stops it.
    async fn drain(&self, sink: Arc<RecordingSink>, config: PollerConfig, clock: Arc<dyn Clock>) {
        let fanout = Arc::new(Fanout::new(
            vec![sink as Arc<dyn Sink>],
            self.dlq.clone(),
            Arc::new(SystemClock),
            quick_retries(),
        ));
        let (stop, stopped) = oneshot::channel::<()>();
        let (task, mut progress) = Poller::spawn_observed(
            config,
            self.store.change_feed(),
            fanout,
            clock,
            async move {
                let _ = stopped.await;
            },
        );
        let latest = self.store.change_feed().latest_seq().await.unwrap();
        tokio::time::timeout(
            Duration::from_secs(60),
            progress
                .wait_for(|p: &BTreeMap<u32, u64>| !p.is_empty() && handled_through(p) >= latest),
        )
        .await
        .expect("drained in time")
        .unwrap();
        let _ = stop.send(());
        task.await.unwrap().unwrap();
    }
}

fn config(max_retries: Option<u32>, max_age: Option<Duration>) -> PollerConfig {
    PollerConfig {
        batch_size: 10,
        parallelization_factor: 1,
        maximum_retry_attempts: max_retries,
        maximum_record_age: max_age,
        retry_backoff: RetryPolicy {
            max_attempts: u32::MAX,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
        },
        ..PollerConfig::default()
    }
}

fn fails_on(doc: Document, version: u64, fail: fn() -> Option<Error>) -> FailurePlan {
    Box::new(move |change: &ChangeEvent, _| {
        if change.document_id == doc.id && change.version == version {
            fail()
        } else {
            None
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_out_of_retries_is_dead_lettered_and_its_document_moves_on() {
    let log = log();
    let x = log.create("X").await;
    let x2 = log.edit(&x).await;
    log.edit(&x2).await;
    let y = log.create("Y").await;
    let sink = RecordingSink::failing(
        "down",
        fails_on(x.clone(), 2, || Some(Error::Unavailable("down".into()))),
    );
    log.drain(sink.clone(), config(Some(2), None), Arc::new(SystemClock))
        .await;

    // Handler retries (3 per delivery) times poller attempts (the first and 2 retries).
    assert_eq!(sink.calls(x.id, 2), 9);
    // Records after the failed one are redelivered with each retry (the mapping
    // resumes from the lowest failure); the failed document's order holds.
    let delivered = sink.versions();
    let of_x: Vec<u64> = delivered
        .iter()
        .filter(|(d, _)| *d == x.id)
        .map(|(_, v)| *v)
        .collect();
    assert_eq!(of_x, [1, 3]);
    assert!(delivered.contains(&(y.id, 1)));
    let letters = log.dlq.list(10).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert!(
        letters[0]
            .reason
            .starts_with("retries exhausted after 3 attempts: down: temporarily unavailable: down"),
        "{}",
        letters[0].reason
    );
    assert_eq!(
        letters[0].payload["dynamodb"]["NewImage"]["version"]["N"],
        "2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_past_the_maximum_age_are_dead_lettered() {
    let log = log();
    let x = log.create("X").await;
    log.edit(&x).await;
    // The poller's clock is two hours ahead: every record is older than an hour.
    let clock = Arc::new(ManualClock::new(
        chrono::Utc::now() + chrono::TimeDelta::hours(2),
    ));
    let sink = RecordingSink::new("steady");
    log.drain(
        sink.clone(),
        config(None, Some(Duration::from_secs(3600))),
        clock,
    )
    .await;
    assert!(sink.versions().is_empty());
    let letters = log.dlq.list(10).await.unwrap();
    assert_eq!(letters.len(), 2);
    assert!(
        letters[0]
            .reason
            .starts_with("record older than the maximum age"),
        "{}",
        letters[0].reason
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_fails_whole_is_bisected_down_to_the_poison_record() {
    let log = log();
    let mut docs = Vec::new();
    for i in 0..6 {
        docs.push(log.create(&format!("D{i}")).await);
    }
    // The handler itself dies on the fourth record: the whole batch fails each time.
    let poison = docs[3].clone();
    let sink = RecordingSink::failing(
        "crashing",
        Box::new(move |change: &ChangeEvent, _| {
            if change.document_id == poison.id {
                panic!("the sink crashed");
            }
            None
        }),
    );
    log.drain(sink.clone(), config(Some(1), None), Arc::new(SystemClock))
        .await;

    let handled: Vec<_> = sink.versions().into_iter().map(|(d, _)| d).collect();
    for (i, doc) in docs.iter().enumerate() {
        assert_eq!(handled.contains(&doc.id), i != 3, "document {i}");
    }
    let letters = log.dlq.list(10).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(
        letters[0].payload["dynamodb"]["Keys"]["id"]["S"],
        docs[3].id.to_string()
    );
    assert!(
        letters[0].reason.contains("the handler failed"),
        "{}",
        letters[0].reason
    );
}

#[tokio::test]
async fn only_handled_records_past_the_retention_are_trimmed() {
    let log = log();
    let x = log.create("X").await;
    let x2 = log.edit(&x).await;
    log.edit(&x2).await;
    let feed = log.store.change_feed();
    let hour = Duration::from_secs(3600);
    // Partition 1 has handled everything, partition 0 only the first two records.
    let checkpoints = BTreeMap::from([(0, 2), (1, 3)]);

    let now = ManualClock::new(chrono::Utc::now());
    let trimmed = stream_handler::poller::trim_once(&feed, &checkpoints, &now, hour).await;
    assert_eq!(
        trimmed.unwrap(),
        0,
        "nothing is older than the retention yet"
    );

    let later = ManualClock::new(chrono::Utc::now() + chrono::TimeDelta::hours(2));
    let trimmed = stream_handler::poller::trim_once(&feed, &checkpoints, &later, hour).await;
    assert_eq!(trimmed.unwrap(), 2);
    let left: Vec<u64> = feed
        .read_after(0, 10)
        .await
        .unwrap()
        .iter()
        .map(|r| r.seq)
        .collect();
    assert_eq!(left, [3], "a record not handled everywhere stays");
}

#[tokio::test]
async fn the_backlog_is_what_lies_above_each_partitions_checkpoint() {
    let log = log();
    let feed = log.store.change_feed();
    let empty = backlog(&feed).await.unwrap();
    assert_eq!(empty, Backlog::default());

    // Ids are random: create documents until both partitions hold some.
    let mut docs: Vec<Document> = Vec::new();
    while docs.len() < 6
        || docs
            .iter()
            .map(|d| partition_of(&d.id.to_string(), 2))
            .collect::<std::collections::HashSet<_>>()
            .len()
            < 2
    {
        let i = docs.len();
        assert!(i < 64, "64 random ids all fell in one partition");
        docs.push(log.create(&format!("doc {i}")).await);
    }
    let all = backlog(&feed).await.unwrap();
    assert_eq!(
        all.records,
        docs.len() as u64,
        "no checkpoint yet: everything waits"
    );
    let first = feed.read_after(0, 1).await.unwrap().remove(0);
    assert_eq!(all.oldest, Some(first.committed_at));

    // Partition 0 has handled everything, partition 1 nothing.
    let latest = feed.latest_seq().await.unwrap();
    feed.save_checkpoint(0, latest).await.unwrap();
    feed.save_checkpoint(1, 0).await.unwrap();
    let in_one = docs
        .iter()
        .filter(|d| partition_of(&d.id.to_string(), 2) == 1)
        .count() as u64;
    assert!(
        in_one > 0 && in_one < docs.len() as u64,
        "the ids spread over both"
    );
    assert_eq!(backlog(&feed).await.unwrap().records, in_one);

    feed.save_checkpoint(1, latest).await.unwrap();
    assert_eq!(backlog(&feed).await.unwrap(), Backlog::default());
}
