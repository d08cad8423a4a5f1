//! The whole embedded fan-out: documents written through the document service into a
//! real SQLite change log, fanned out to the real sinks (tantivy, SQLite audit, queue,
//! dead letters) by the handler or the poller.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use shared::Error;
use shared::clock::{ManualClock, SystemClock};
use shared::domain::{Body, ChangeEvent, Collaborators, Document, DocumentId, Role, Title, UserId};
use shared::embedded::SqliteDocumentStore;
use shared::ports::{
    AnalysisQueue, AnalysisStore, AuditLog, DeadLetterQueue, DeadLetterSource, SearchIndex,
    SearchQuery,
};
use shared::service::{DocumentService, NewDocument, Replacement};
use stream_handler::analysis::{AnalysisWorker, AnalysisWorkerConfig, JobOutcome};
use stream_handler::decode::RecordMeta;
use stream_handler::handler::{Fanout, RetryPolicy};
use stream_handler::poller::{Poller, PollerConfig, handled_through};
use stream_handler::sinks::Sink;
use stream_handler::sinks::analysis::AnalysisSink;
use stream_handler::sinks::audit::{AuditSink, AuditSinkConfig};
use stream_handler::sinks::notifications::NotificationSink;
use stream_handler::sinks::search::SearchSink;
use stream_handler::{EmbeddedFanout, FanoutConfig};
use tokio::sync::oneshot;

use crate::common::{RecordingNotifier, ScriptedAuditLog, quick_retries};

fn user(name: &str) -> UserId {
    UserId::parse(name).unwrap()
}

/// `doc` with its body replaced by `actor`, on its current version.
async fn rewrite(docs: &DocumentService, actor: &str, doc: &Document, body: &str) -> Document {
    docs.replace(
        &user(actor),
        &doc.id,
        Some(doc.version),
        Replacement {
            title: doc.title.clone(),
            body: Body::parse(body).unwrap(),
        },
    )
    .await
    .unwrap()
}

struct Env {
    _dir: tempfile::TempDir,
    store: Arc<SqliteDocumentStore>,
    docs: DocumentService,
    notifier: Arc<RecordingNotifier>,
    embedded: EmbeddedFanout,
}

fn env() -> Env {
    env_with(FanoutConfig {
        handler: quick_retries(),
        ..FanoutConfig::default()
    })
}

fn env_with(config: FanoutConfig) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        SqliteDocumentStore::open(&dir.path().join(shared::embedded::DATABASE_FILE)).unwrap(),
    );
    let notifier = RecordingNotifier::new();
    let embedded = EmbeddedFanout::open(
        dir.path(),
        store.clone(),
        notifier.clone(),
        Arc::new(SystemClock),
        config,
    )
    .unwrap();
    Env {
        docs: DocumentService::new(store.clone(), Arc::new(SystemClock)),
        _dir: dir,
        store,
        notifier,
        embedded,
    }
}

impl Env {
    /// A fan-out over the embedded ports, with `audit` in front of the audit trail.
    fn fanout_with_audit(&self, audit: Arc<dyn AuditLog>) -> Arc<Fanout> {
        self.fanout_with_audit_as(audit, AuditSinkConfig::default())
    }

    /// [`Env::fanout_with_audit`], its audit sink configured by `config`.
    fn fanout_with_audit_as(
        &self,
        audit: Arc<dyn AuditLog>,
        config: AuditSinkConfig,
    ) -> Arc<Fanout> {
        let e = &self.embedded;
        let sinks: Vec<Arc<dyn Sink>> = vec![
            Arc::new(SearchSink::new(e.search.clone(), Default::default())),
            Arc::new(NotificationSink::new(
                self.notifier.clone(),
                Default::default(),
            )),
            Arc::new(AuditSink::new(audit, config)),
            Arc::new(AnalysisSink::new(
                e.analysis_queue.clone(),
                Default::default(),
            )),
        ];
        Arc::new(Fanout::new(
            sinks,
            e.dead_letters.clone(),
            Arc::new(SystemClock),
            quick_retries(),
        ))
    }

    async fn create(
        &self,
        owner: &str,
        title: &str,
        body: &str,
        collaborators: &[(&str, Role)],
    ) -> Document {
        let collaborators: Collaborators =
            collaborators.iter().map(|(u, r)| (user(u), *r)).collect();
        self.docs
            .create(
                &user(owner),
                NewDocument {
                    title: Title::parse(title).unwrap(),
                    body: Body::parse(body).unwrap(),
                    collaborators,
                },
            )
            .await
            .unwrap()
    }

    async fn edit(&self, actor: &str, doc: &Document, body: &str) -> Document {
        rewrite(&self.docs, actor, doc, body).await
    }

    /// Every record of the change log, as the handler receives them.
    async fn log(&self) -> Vec<Value> {
        self.store
            .change_feed()
            .read_after(0, 100_000)
            .await
            .unwrap()
            .into_iter()
            .map(|r| serde_json::from_str(&r.record).unwrap())
            .collect()
    }

    async fn latest_seq(&self) -> u64 {
        self.store.change_feed().latest_seq().await.unwrap()
    }

    async fn audit_versions(&self, doc: &DocumentId) -> Vec<u64> {
        self.embedded
            .audit
            .list(doc, None, 1000)
            .await
            .unwrap()
            .iter()
            .map(|e| e.version)
            .collect()
    }

    async fn search(&self, text: &str, reader: &str) -> Vec<(DocumentId, u64)> {
        self.embedded
            .search
            .search(&query(text, reader))
            .await
            .unwrap()
            .hits
            .iter()
            .map(|h| (h.id, h.version))
            .collect()
    }
}

fn query(text: &str, reader: &str) -> SearchQuery {
    SearchQuery {
        query: text.parse().unwrap(),
        reader: user(reader),
        limit: 100,
        offset: 0,
    }
}

/// A running poller and the way to stop it.
struct Running {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<shared::Result<()>>,
    progress: tokio::sync::watch::Receiver<BTreeMap<u32, u64>>,
}

impl Running {
    fn start(env: &Env, fanout: Arc<Fanout>, config: PollerConfig) -> Self {
        let (stop, stopped) = oneshot::channel::<()>();
        let (task, progress) = Poller::spawn_observed(
            config,
            env.store.change_feed(),
            fanout,
            Arc::new(SystemClock),
            async move {
                let _ = stopped.await;
            },
        );
        Self {
            stop: Some(stop),
            task,
            progress,
        }
    }

    /// Waits until every partition has handled everything up to `seq`.
    async fn wait_through(&mut self, seq: u64) {
        tokio::time::timeout(
            Duration::from_secs(60),
            self.progress
                .wait_for(|p| !p.is_empty() && handled_through(p) >= seq),
        )
        .await
        .expect("the poller caught up in time")
        .expect("the poller is running");
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap().unwrap();
    }
}

fn fast_poller(factor: u32, batch_size: usize) -> PollerConfig {
    PollerConfig {
        batch_size,
        parallelization_factor: factor,
        maximum_retry_attempts: None,
        retry_backoff: RetryPolicy {
            max_attempts: u32::MAX,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(5),
        },
        ..PollerConfig::default()
    }
}

/// What a client sees of each version, deduplicated the way clients do it: drop a
/// version not above the last one seen.
fn as_client_sees(changes: &[(DocumentId, u64)], doc: DocumentId) -> Vec<u64> {
    let mut seen = Vec::new();
    for (d, v) in changes {
        if *d == doc && seen.last().is_none_or(|last| v > last) {
            seen.push(*v);
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_document_is_handled_in_order_across_four_partitions() {
    let env = env();
    let mut running = Running::start(&env, env.embedded.fanout.clone(), fast_poller(4, 7));
    let mut docs = Vec::new();
    for i in 0..12 {
        docs.push(env.create("ann", &format!("Doc {i}"), "v1", &[]).await);
    }
    for round in 2..=6 {
        for doc in docs.iter_mut() {
            *doc = env.edit("ann", doc, &format!("body v{round}")).await;
        }
    }
    running.wait_through(env.latest_seq().await).await;
    let partitions = running.progress.borrow().len();
    running.stop().await;

    assert_eq!(partitions, 4);
    let changes = env.notifier.changes();
    for doc in &docs {
        let versions: Vec<u64> = changes
            .iter()
            .filter(|(d, _)| *d == doc.id)
            .map(|(_, v)| *v)
            .collect();
        assert_eq!(
            versions,
            [1, 2, 3, 4, 5, 6],
            "notification order of {}",
            doc.id
        );
        assert_eq!(env.audit_versions(&doc.id).await, [1, 2, 3, 4, 5, 6]);
        let indexed = env.embedded.search.indexed_version(&doc.id).await.unwrap();
        assert_eq!(indexed.map(|i| i.version), Some(6));
    }
    // The checkpoints are saved: a restart resumes after everything.
    let saved = env.store.change_feed().checkpoints().await.unwrap();
    assert_eq!(saved.len(), 4);
    let latest = env.latest_seq().await;
    assert!(saved.values().all(|&s| s == latest));
}

/// Everything the sinks hold, to compare before and after a redelivery.
async fn snapshot(env: &Env, docs: &[DocumentId]) -> Value {
    let mut out = serde_json::Map::new();
    for doc in docs {
        let audit = env.embedded.audit.list(doc, None, 1000).await.unwrap();
        let indexed = env.embedded.search.indexed_version(doc).await.unwrap();
        out.insert(
            doc.to_string(),
            json!({
                "audit": audit,
                "indexed": indexed.map(|i| (i.version, i.deleted)),
            }),
        );
    }
    for reader in ["ann", "bob", "cat"] {
        out.insert(
            format!("search:{reader}"),
            json!(env.search("plan OR notes OR draft", reader).await),
        );
    }
    out.insert(
        "queue".into(),
        json!(env.embedded.analysis_queue.depth().await.unwrap()),
    );
    out.insert(
        "dead letters".into(),
        json!(env.embedded.dead_letters.depth().await.unwrap()),
    );
    Value::Object(out)
}

#[tokio::test]
async fn a_batch_delivered_twice_changes_nothing() {
    let env = env();
    let a = env
        .create("ann", "Plan", "first draft", &[("bob", Role::Editor)])
        .await;
    let a2 = env.edit("bob", &a, "second draft").await;
    let b = env
        .create("bob", "Notes", "plan notes", &[("cat", Role::Viewer)])
        .await;
    let c = env.create("cat", "Scratch", "draft to delete", &[]).await;
    env.docs.delete(&user("cat"), &c.id, None).await.unwrap();
    env.docs
        .patch(
            &user("ann"),
            &a.id,
            Some(a2.version),
            &json!({"collaborators": {"cat": "viewer"}}),
        )
        .await
        .unwrap();

    let batch = env.log().await;
    assert_eq!(batch.len(), 6);
    let first = env.embedded.fanout.handle(&batch).await;
    assert!(first.batch_item_failures.is_empty());
    let docs = [a.id, b.id, c.id];
    let before = snapshot(&env, &docs).await;
    assert_eq!(
        before[a.id.to_string()]["audit"].as_array().unwrap().len(),
        3
    );
    assert_eq!(before[c.id.to_string()]["indexed"], json!([2, true]));
    assert_eq!(
        before["queue"],
        json!(2),
        "one analysis per document whose latest body in the batch still stands: \
         not the first draft the edit replaced, not the deleted scratch, not the sharing"
    );

    let again = env.embedded.fanout.handle(&batch).await;
    assert!(again.batch_item_failures.is_empty());
    assert_eq!(snapshot(&env, &docs).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_failing_for_a_while_loses_nothing_and_nothing_overtakes() {
    a_trail_failing_for_a_while_loses_nothing(AuditSinkConfig::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trail_failing_while_it_appends_a_batch_at_its_flush_loses_nothing() {
    a_trail_failing_for_a_while_loses_nothing(AuditSinkConfig {
        append_at_flush: true,
        ..AuditSinkConfig::default()
    })
    .await;
}

#[tokio::test]
async fn a_trail_that_appends_at_the_flush_appends_a_deletion_at_once_after_what_it_held() {
    let env = env();
    let sink = AuditSink::new(
        env.embedded.audit.clone(),
        AuditSinkConfig {
            append_at_flush: true,
            ..AuditSinkConfig::default()
        },
    );
    let v1 = env.create("ann", "Doc", "v1", &[]).await;
    let v2 = env.edit("ann", &v1, "v2").await;
    let meta = |seq: u64| RecordMeta {
        sequence_number: Some(seq.to_string()),
        event_id: format!("event-{seq}"),
        document_id: Some(v1.id),
        superseded: false,
        body_superseded: false,
    };
    let changes = [
        ChangeEvent::written(None, v1.clone(), "1".into()),
        ChangeEvent::written(Some(v1.clone()), v2.clone(), "2".into()),
    ];
    for (seq, change) in (1..).zip(&changes) {
        sink.deliver(change, &meta(seq)).await.unwrap();
    }
    assert!(
        env.audit_versions(&v1.id).await.is_empty(),
        "held until the batch's flush"
    );
    let deletion = ChangeEvent::deleted(v2.clone(), 3, user("ann"), v2.updated_at, "3".into());
    sink.deliver(&deletion, &meta(3)).await.unwrap();
    assert_eq!(
        env.audit_versions(&v1.id).await,
        [1, 2, 3],
        "the deletion is appended at once, after the entries held before it"
    );
}

async fn a_trail_failing_for_a_while_loses_nothing(config: AuditSinkConfig) {
    let env = env();
    // The audit trail is down for appends 2 to 12: longer than the handler's
    // in-process retries, so the poller has to retry batches too.
    let audit = ScriptedAuditLog::new(
        env.embedded.audit.clone(),
        Box::new(|_, n| {
            (2..=12)
                .contains(&n)
                .then(|| Error::Unavailable("audit down".into()))
        }),
    );
    let fanout = env.fanout_with_audit_as(audit.clone(), config);
    let mut running = Running::start(&env, fanout, fast_poller(2, 4));
    let mut docs = Vec::new();
    for i in 0..3 {
        docs.push(env.create("ann", &format!("Doc {i}"), "v1", &[]).await);
    }
    for round in 2..=5 {
        for doc in docs.iter_mut() {
            *doc = env.edit("ann", doc, &format!("v{round}")).await;
        }
    }
    running.wait_through(env.latest_seq().await).await;
    running.stop().await;

    assert!(
        audit.appends.load(Ordering::SeqCst) > 12,
        "the failures happened"
    );
    let accepted = audit.accepted.lock().unwrap().clone();
    let changes = env.notifier.changes();
    for doc in &docs {
        assert_eq!(env.audit_versions(&doc.id).await, [1, 2, 3, 4, 5]);
        let order: Vec<u64> = accepted
            .iter()
            .filter(|(d, _)| *d == doc.id)
            .map(|(_, v)| *v)
            .collect();
        assert_eq!(
            order,
            [1, 2, 3, 4, 5],
            "audit entries landed in version order"
        );
        assert_eq!(as_client_sees(&changes, doc.id), [1, 2, 3, 4, 5]);
    }
    assert_eq!(env.embedded.dead_letters.depth().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_record_is_dead_lettered_the_rest_goes_on_and_redrive_fixes_it() {
    let env = env();
    let poisoned = Arc::new(AtomicBool::new(true));
    let poison_doc = Arc::new(std::sync::Mutex::new(None::<DocumentId>));
    let audit = {
        let poisoned = poisoned.clone();
        let poison_doc = poison_doc.clone();
        ScriptedAuditLog::new(
            env.embedded.audit.clone(),
            Box::new(move |entry, _| {
                let target = *poison_doc.lock().unwrap();
                (poisoned.load(Ordering::SeqCst)
                    && Some(entry.document_id) == target
                    && entry.version == 2)
                    .then(|| Error::Unknown(anyhow::anyhow!("entry rejected")))
            }),
        )
    };
    let fanout = env.fanout_with_audit(audit);
    let x = env.create("ann", "X", "x1", &[]).await;
    *poison_doc.lock().unwrap() = Some(x.id);
    let mut running = Running::start(&env, fanout.clone(), fast_poller(2, 10));
    let x2 = env.edit("ann", &x, "x2").await;
    env.edit("ann", &x2, "x3").await;
    let y = env.create("bob", "Y", "y1", &[]).await;
    running.wait_through(env.latest_seq().await).await;
    running.stop().await;

    assert_eq!(env.audit_versions(&x.id).await, [1, 3]);
    assert_eq!(env.audit_versions(&y.id).await, [1]);
    let letters = env.embedded.dead_letters.list(10).await.unwrap();
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(letter.source, DeadLetterSource::Stream);
    assert!(
        letter.reason.contains("audit: entry rejected"),
        "{}",
        letter.reason
    );
    let record_of_x2 = env
        .log()
        .await
        .into_iter()
        .find(|r| r["dynamodb"]["NewImage"]["version"]["N"] == "2")
        .unwrap();
    assert_eq!(letter.payload, record_of_x2, "the whole record is kept");

    // Still broken: the redrive fails and the letter stays.
    let outcomes = stream_handler::redrive::redrive(
        &fanout,
        env.embedded.analysis_queue.as_ref(),
        env.embedded.dead_letters.as_ref(),
        None,
    )
    .await
    .unwrap();
    assert!(outcomes[0].result.is_err());
    assert_eq!(env.embedded.dead_letters.depth().await.unwrap(), 1);

    poisoned.store(false, Ordering::SeqCst);
    let outcomes = stream_handler::redrive::redrive(
        &fanout,
        env.embedded.analysis_queue.as_ref(),
        env.embedded.dead_letters.as_ref(),
        Some(&letter.id),
    )
    .await
    .unwrap();
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0].result, Ok(()));
    assert_eq!(env.audit_versions(&x.id).await, [1, 2, 3]);
    assert_eq!(env.embedded.dead_letters.depth().await.unwrap(), 0);
    // The late record did not bring back an older state in the index.
    let indexed = env.embedded.search.indexed_version(&x.id).await.unwrap();
    assert_eq!(indexed.map(|i| i.version), Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_analysis_result_produces_no_change_record() {
    let env = env();
    let (stop, stopped) = oneshot::channel::<()>();
    let tasks = env.embedded.start(env.store.change_feed(), async move {
        let _ = stopped.await;
    });
    let body = "The fan-out delivers every change to the search index, the audit trail \
                and the analysis queue. The analysis worker reads the document, counts \
                its words and finds the language of the document.";
    let doc = env.create("ann", "Fan-out notes", body, &[]).await;
    env.notifier.wait_for_analyses(1).await;
    assert_eq!(env.latest_seq().await, 1);

    let analysis = env.embedded.analyses.get(&doc.id).await.unwrap().unwrap();
    assert_eq!(analysis.version, 1);
    assert_eq!(analysis.word_count, 33);
    assert_eq!(analysis.reading_time_seconds, 10);
    assert_eq!(analysis.language, "eng");
    assert!(analysis.top_terms.iter().any(|t| t.term == "analysis"));
    assert!(!analysis.top_terms.iter().any(|t| t.term == "the"));

    let doc2 = env.edit("ann", &doc, "Short now.").await;
    env.notifier.wait_for_analyses(2).await;
    let _ = stop.send(());
    tasks.await.unwrap().unwrap();
    assert_eq!(
        env.latest_seq().await,
        2,
        "two edits, two records: results add none"
    );
    let analysis = env.embedded.analyses.get(&doc.id).await.unwrap().unwrap();
    assert_eq!(analysis.version, doc2.version);
    assert_eq!(analysis.word_count, 2);
}

/// What the analysis worker's tests work over: the document store, the analysis queue
/// and results of one data directory, a recording notifier, and ann's document "T".
struct AnalysisRig {
    _dir: tempfile::TempDir,
    db: std::path::PathBuf,
    store: Arc<SqliteDocumentStore>,
    clock: Arc<ManualClock>,
    queue: Arc<shared::embedded::SqliteAnalysisQueue>,
    analyses: Arc<shared::embedded::SqliteAnalysisStore>,
    notifier: Arc<RecordingNotifier>,
    docs: DocumentService,
    doc: Document,
}

async fn analysis_rig(body: &str) -> AnalysisRig {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join(shared::embedded::DATABASE_FILE);
    let store = Arc::new(SqliteDocumentStore::open(&db).unwrap());
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let queue = Arc::new(shared::embedded::SqliteAnalysisQueue::open(&db, clock.clone()).unwrap());
    let analyses = Arc::new(shared::embedded::SqliteAnalysisStore::open(&db).unwrap());
    let docs = DocumentService::new(store.clone(), clock.clone());
    let doc = docs
        .create(
            &user("ann"),
            NewDocument {
                title: Title::parse("T").unwrap(),
                body: Body::parse(body).unwrap(),
                collaborators: Default::default(),
            },
        )
        .await
        .unwrap();
    AnalysisRig {
        _dir: dir,
        db,
        store,
        clock,
        queue,
        analyses,
        notifier: RecordingNotifier::new(),
        docs,
        doc,
    }
}

impl AnalysisRig {
    /// The job for `version` of the rig's document.
    fn job(&self, version: u64) -> shared::ports::AnalysisJob {
        shared::ports::AnalysisJob {
            document_id: self.doc.id,
            version,
        }
    }

    /// Someone typed: `doc`'s body is now `text`, and the new version's job is queued.
    async fn typed(&self, doc: &Document, text: &str) -> Document {
        let doc = rewrite(&self.docs, "ann", doc, text).await;
        self.queue.enqueue(&self.job(doc.version)).await.unwrap();
        doc
    }
}

/// An analysis worker running over `rig` until its sender is dropped or sent to.
struct RunningWorker {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningWorker {
    fn start(rig: &AnalysisRig, config: AnalysisWorkerConfig) -> Self {
        Self::start_over(rig, rig.queue.clone(), config)
    }

    /// A worker taking its jobs through `queue` (the rig's queue, seen through another
    /// adapter), woken by the rig's queue.
    fn start_over(
        rig: &AnalysisRig,
        queue: Arc<dyn AnalysisQueue>,
        config: AnalysisWorkerConfig,
    ) -> Self {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = AnalysisWorker::new(
            queue,
            rig.analyses.clone(),
            rig.store.clone(),
            rig.notifier.clone(),
            rig.clock.clone(),
            config,
        )
        .with_wake(rig.queue.enqueued())
        .spawn(async move {
            let _ = stopped.await;
        });
        Self { stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap();
    }
}

#[tokio::test]
async fn the_worker_skips_superseded_versions_and_dead_letters_after_max_attempts() {
    let AnalysisRig {
        _dir,
        db,
        store,
        clock,
        queue,
        analyses,
        notifier,
        docs,
        doc,
    } = analysis_rig("one").await;
    let config = AnalysisWorkerConfig {
        max_attempts: 2,
        ..AnalysisWorkerConfig::default()
    };

    let doc2 = rewrite(&docs, "ann", &doc, "two words").await;
    let worker = AnalysisWorker::new(
        queue.clone(),
        analyses.clone(),
        store.clone(),
        notifier.clone(),
        clock.clone(),
        config.clone(),
    );
    let job = |version| shared::ports::AnalysisJob {
        document_id: doc.id,
        version,
    };
    // A job for a version that is no longer current analyses the current one when
    // nothing as new has been analysed (the change after it may have queued no job: a
    // collaborator change), and is done without work once something has. (Results go
    // to a store of their own here, so that the redrive below starts from none.)
    let elsewhere = tempfile::tempdir().unwrap();
    let other_results = Arc::new(
        shared::embedded::SqliteAnalysisStore::open(
            &elsewhere.path().join(shared::embedded::DATABASE_FILE),
        )
        .unwrap(),
    );
    let catching_up = AnalysisWorker::new(
        queue.clone(),
        other_results.clone(),
        store.clone(),
        RecordingNotifier::new(),
        clock.clone(),
        config.clone(),
    );
    queue.enqueue(&job(1)).await.unwrap();
    assert_eq!(
        catching_up.run_once().await.unwrap(),
        [JobOutcome::Completed]
    );
    let caught_up = other_results.get(&doc.id).await.unwrap().unwrap();
    assert_eq!(
        (caught_up.version, caught_up.word_count),
        (2, 2),
        "the current body"
    );
    let old_job = shared::ports::AnalysisJob {
        document_id: doc.id,
        version: 1,
    };
    queue.requeue(&old_job).await.unwrap();
    assert_eq!(
        catching_up.run_once().await.unwrap(),
        [JobOutcome::Superseded]
    );

    // A job whose result cannot be stored comes back after its visibility timeout,
    // then goes to the dead-letter table.
    struct Refusing;
    #[async_trait::async_trait]
    impl AnalysisStore for Refusing {
        async fn put(
            &self,
            _: &shared::domain::Analysis,
        ) -> shared::Result<shared::ports::WriteOutcome> {
            Err(Error::Unavailable("full".into()))
        }
        async fn get(&self, _: &DocumentId) -> shared::Result<Option<shared::domain::Analysis>> {
            Ok(None)
        }
    }
    let refusing = AnalysisWorker::new(
        queue.clone(),
        Arc::new(Refusing),
        store.clone(),
        notifier.clone(),
        clock.clone(),
        config.clone(),
    );
    queue.enqueue(&job(doc2.version)).await.unwrap();
    assert!(matches!(
        refusing.run_once().await.unwrap()[..],
        [JobOutcome::Failed(_)]
    ));
    assert!(
        refusing.run_once().await.unwrap().is_empty(),
        "hidden while in flight"
    );
    clock.advance(chrono::TimeDelta::seconds(31));
    assert!(matches!(
        refusing.run_once().await.unwrap()[..],
        [JobOutcome::DeadLettered(_)]
    ));
    let dlq = shared::embedded::SqliteDeadLetterQueue::open(&db).unwrap();
    let letters = dlq.list(10).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].source, DeadLetterSource::Analysis);

    // Redriven, the job is analysed by a healthy worker.
    queue
        .requeue(&serde_json::from_value(letters[0].payload.clone()).unwrap())
        .await
        .unwrap();
    assert_eq!(worker.run_once().await.unwrap(), [JobOutcome::Completed]);
    let analysis = analyses.get(&doc.id).await.unwrap().unwrap();
    assert_eq!((analysis.version, analysis.word_count), (2, 2));
    assert_eq!(notifier.analyses.lock().unwrap().clone(), [(doc.id, 2)]);
}

#[tokio::test]
async fn search_never_shows_a_document_to_someone_who_cannot_read_it() {
    let env = env();
    let doc = env
        .create(
            "ann",
            "Secret plan",
            "the zebra migration",
            &[("bob", Role::Viewer)],
        )
        .await;
    let handled = env.embedded.fanout.handle(&env.log().await).await;
    assert!(handled.batch_item_failures.is_empty());
    assert_eq!(env.search("zebra", "ann").await, [(doc.id, 1)]);
    assert_eq!(env.search("zebra", "bob").await, [(doc.id, 1)]);
    assert!(env.search("zebra", "cat").await.is_empty());
    assert!(env.search("reader:bob", "cat").await.is_empty());

    // Bob loses access. Before the change reaches the index, the index alone would
    // still list him, but the search checks the document's current access.
    env.docs
        .patch(
            &user("ann"),
            &doc.id,
            Some(1),
            &json!({"collaborators": {"bob": null}}),
        )
        .await
        .unwrap();
    assert_eq!(env.search("zebra", "bob").await, [(doc.id, 1)]);
    let readable = env
        .embedded
        .reads()
        .search(&query("zebra", "bob"))
        .await
        .unwrap();
    assert!(readable.hits.is_empty());

    // Once fanned out, the index itself forgets him.
    let log = env.log().await;
    assert!(
        env.embedded
            .fanout
            .handle(&log[1..])
            .await
            .batch_item_failures
            .is_empty()
    );
    assert!(env.search("zebra", "bob").await.is_empty());
    assert_eq!(env.search("zebra", "ann").await, [(doc.id, 2)]);
}

/// A search sink that never answers until released.
struct Stuck {
    inner: Arc<dyn Sink>,
    released: tokio::sync::watch::Receiver<bool>,
}

#[async_trait::async_trait]
impl Sink for Stuck {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    async fn deliver(
        &self,
        change: &shared::domain::ChangeEvent,
        record: &stream_handler::decode::RecordMeta,
    ) -> shared::Result<()> {
        let mut released = self.released.clone();
        let _ = released.wait_for(|r| *r).await;
        self.inner.deliver(change, record).await
    }

    async fn flush(
        &self,
        when: stream_handler::sinks::Flush,
    ) -> shared::Result<stream_handler::sinks::Flushed> {
        self.inner.flush(when).await
    }

    async fn health(&self) -> shared::Result<()> {
        self.inner.health().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_notifications_do_not_wait_for_a_stuck_index_sink() {
    let mut env = env();
    let (release, released) = tokio::sync::watch::channel(false);
    let sinks: Vec<Arc<dyn Sink>> = env
        .embedded
        .fanout
        .sinks()
        .iter()
        .map(|sink| -> Arc<dyn Sink> {
            if sink.name() == "search" {
                Arc::new(Stuck {
                    inner: Arc::clone(sink),
                    released: released.clone(),
                })
            } else {
                Arc::clone(sink)
            }
        })
        .collect();
    env.embedded.fanout = Arc::new(Fanout::new(
        sinks,
        env.embedded.dead_letters.clone(),
        Arc::new(SystemClock),
        quick_retries(),
    ));
    let (stop, stopped) = oneshot::channel::<()>();
    let tasks = env.embedded.start(env.store.change_feed(), async move {
        let _ = stopped.await;
    });
    let doc = env.create("ann", "Live", "first", &[]).await;
    let doc = env.edit("ann", &doc, "second").await;

    // Both frames go out while the index consumer is held on the first record.
    env.notifier.wait_for_changes(2).await;
    assert_eq!(env.notifier.changes(), [(doc.id, 1), (doc.id, 2)]);
    assert!(
        env.embedded
            .audit
            .list(&doc.id, None, 10)
            .await
            .unwrap()
            .len()
            <= 1,
        "the index consumer is still held on version 1"
    );
    assert_eq!(
        env.embedded.search.indexed_version(&doc.id).await.unwrap(),
        None
    );

    // Released, the index consumer catches up: search, then the audit trail.
    release.send_replace(true);
    for _ in 0..600 {
        if env
            .embedded
            .audit
            .list(&doc.id, None, 10)
            .await
            .unwrap()
            .len()
            == 2
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        env.embedded
            .audit
            .list(&doc.id, None, 10)
            .await
            .unwrap()
            .len(),
        2
    );
    let _ = stop.send(());
    tasks.await.unwrap().unwrap();
    assert_eq!(env.notifier.changes().len(), 2, "each change notified once");
}

/// Someone typing queues a job per keystroke: the worker holds them until the document
/// has been quiet for its `settle` time, then answers them all with one analysis of the
/// document as it is.
#[tokio::test]
async fn keystrokes_in_a_burst_are_answered_by_one_analysis() {
    let rig = analysis_rig("t").await;
    let worker = RunningWorker::start(
        &rig,
        AnalysisWorkerConfig {
            settle: Duration::from_secs(2),
            ..AnalysisWorkerConfig::default()
        },
    );
    let AnalysisRig {
        queue,
        analyses,
        notifier,
        ..
    } = &rig;
    // The worker has found nothing to do and waits.
    tokio::time::sleep(Duration::from_millis(100)).await;
    queue.enqueue(&rig.job(1)).await.unwrap();
    let mut doc = rig.doc.clone();
    for typed in ["ty", "typ", "typi", "typin", "typing"] {
        doc = rig.typed(&doc, typed).await;
    }
    notifier.wait_for_analyses(1).await;
    // Long enough for any further analysis to have been published.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(notifier.analyses.lock().unwrap().clone(), [(doc.id, 6)]);
    assert_eq!(analyses.get(&doc.id).await.unwrap().unwrap().word_count, 1);
    worker.stop().await;
}

/// Someone typing without pause still sees the analysis refreshed (every `max_wait`),
/// with far fewer analyses than keystrokes, and the last one is of what they typed last.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_without_pause_is_analysed_every_longest_wait_and_once_it_stops() {
    let rig = analysis_rig("t").await;
    let worker = RunningWorker::start(
        &rig,
        AnalysisWorkerConfig {
            settle: Duration::from_millis(500),
            max_wait: Duration::from_millis(800),
            ..AnalysisWorkerConfig::default()
        },
    );
    let notifier = &rig.notifier;
    let mut doc = rig.doc.clone();
    let started = tokio::time::Instant::now();
    let mut keystrokes = 0;
    let mut text = String::from("t");
    // Typing for at least twice the longest wait, a keystroke every 100 ms.
    while started.elapsed() < Duration::from_millis(2000) {
        text.push('y');
        doc = rig.typed(&doc, &text).await;
        keystrokes += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let while_typing = notifier.analyses.lock().unwrap().len();
    assert!(while_typing >= 1, "analysed while the typing went on");
    // Once the typing stops, the last text is analysed (by the longest wait, if it came
    // just then, or once the document is quiet).
    loop {
        let analysed = notifier.analyses.lock().unwrap().clone();
        if analysed.last() == Some(&(doc.id, doc.version)) {
            break;
        }
        notifier.wait_for_analyses(analysed.len() + 1).await;
    }
    let analysed = notifier.analyses.lock().unwrap().clone();
    assert!(
        analysed.len() * 3 <= keystrokes,
        "{} analyses for {keystrokes} keystrokes",
        analysed.len()
    );
    worker.stop().await;
}

/// The rig's queue, counting what the worker asks of it.
struct CountingQueue {
    inner: Arc<shared::embedded::SqliteAnalysisQueue>,
    receives: std::sync::atomic::AtomicUsize,
    /// Jobs the receives returned.
    received: std::sync::atomic::AtomicUsize,
    acks: std::sync::atomic::AtomicUsize,
    /// How many jobs each `ack_all` acknowledged.
    acked_together: std::sync::Mutex<Vec<usize>>,
}

#[async_trait::async_trait]
impl AnalysisQueue for CountingQueue {
    async fn enqueue(
        &self,
        job: &shared::ports::AnalysisJob,
    ) -> shared::Result<shared::ports::WriteOutcome> {
        self.inner.enqueue(job).await
    }

    async fn requeue(&self, job: &shared::ports::AnalysisJob) -> shared::Result<()> {
        self.inner.requeue(job).await
    }

    async fn receive(
        &self,
        max: usize,
        visibility: Duration,
    ) -> shared::Result<Vec<shared::ports::ReceivedJob>> {
        self.receives.fetch_add(1, Ordering::SeqCst);
        let jobs = self.inner.receive(max, visibility).await?;
        self.received.fetch_add(jobs.len(), Ordering::SeqCst);
        Ok(jobs)
    }

    async fn ack(&self, receipt: &str) -> shared::Result<()> {
        self.acks.fetch_add(1, Ordering::SeqCst);
        self.inner.ack(receipt).await
    }

    async fn ack_all(&self, receipts: &[String]) -> shared::Result<()> {
        self.acked_together.lock().unwrap().push(receipts.len());
        self.inner.ack_all(receipts).await
    }

    async fn dead_letter(&self, receipt: &str, reason: &str) -> shared::Result<()> {
        self.inner.dead_letter(receipt, reason).await
    }

    async fn depth(&self) -> shared::Result<u64> {
        self.inner.depth().await
    }
}

/// A burst of keystrokes is taken by a few receives (at most one per receive window),
/// and the jobs that one analysis answers are acknowledged together, not one by one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_is_taken_by_few_receives_and_its_jobs_acknowledged_together() {
    let rig = analysis_rig("t").await;
    let queue = Arc::new(CountingQueue {
        inner: rig.queue.clone(),
        receives: Default::default(),
        received: Default::default(),
        acks: Default::default(),
        acked_together: Default::default(),
    });
    let window = Duration::from_millis(200);
    let worker = RunningWorker::start_over(
        &rig,
        queue.clone(),
        AnalysisWorkerConfig {
            settle: Duration::from_millis(300),
            max_wait: Duration::from_secs(30),
            receive_window: window,
            // Room for a window's jobs: a full batch is followed by a receive at once.
            batch_size: 100,
            ..AnalysisWorkerConfig::default()
        },
    );
    // The worker has found nothing to do and waits.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let receives_before = queue.receives.load(Ordering::SeqCst);
    let started = tokio::time::Instant::now();
    let mut doc = rig.doc.clone();
    let mut text = String::from("t");
    let keystrokes = 30;
    for _ in 0..keystrokes {
        text.push('y');
        doc = rig.typed(&doc, &text).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    loop {
        let analysed = rig.notifier.analyses.lock().unwrap().clone();
        if analysed.last() == Some(&(doc.id, doc.version)) {
            break;
        }
        rig.notifier.wait_for_analyses(analysed.len() + 1).await;
    }
    let elapsed = started.elapsed();
    let receives = queue.receives.load(Ordering::SeqCst) - receives_before;
    assert!(
        receives as u128 <= elapsed.as_millis() / window.as_millis() + 2,
        "{receives} receives in {elapsed:?} for {keystrokes} keystrokes"
    );
    // The analysis is announced before its jobs are acknowledged.
    tokio::time::timeout(Duration::from_secs(30), async {
        while rig.queue.depth().await.unwrap() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("every job acknowledged");
    worker.stop().await;

    let acks = queue.acks.load(Ordering::SeqCst);
    let together = queue.acked_together.lock().unwrap().clone();
    let received = queue.received.load(Ordering::SeqCst);
    // The queue folds a document's waiting jobs into one: fewer jobs than keystrokes.
    assert!(
        received < keystrokes,
        "{received} jobs received for {keystrokes} keystrokes"
    );
    assert_eq!(
        acks + together.iter().sum::<usize>(),
        received,
        "every job acknowledged once"
    );
    assert!(
        together.iter().any(|n| *n > 1),
        "superseded jobs acknowledged together: {together:?}"
    );
    assert!(
        acks * 3 <= keystrokes,
        "{acks} jobs acknowledged one by one of {keystrokes}"
    );
}
