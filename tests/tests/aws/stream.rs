//! The change stream end to end on AWS: documents written through the DynamoDB store,
//! the table's stream read back from moto with aws-sdk-dynamodbstreams, wrapped as the
//! Lambda event, and handed to the stream handler's entry function with every sink on
//! its AWS adapter (OpenSearch, the DynamoDB audit table, the SQS analysis queue, and
//! notifications through the DynamoDB connection registry and `post_to_connection` to
//! a recording endpoint, see [`crate::push`]).

use std::sync::Arc;

use aws_sdk_dynamodbstreams::types::ShardIteratorType;
use serde_json::{Value, json};
use shared::auth::TokenAuthority;
use shared::aws::AwsClients;
use shared::aws::tables::stream_arn;
use shared::clock::{Clock, SystemClock};
use shared::codec::{self, DocumentImage};
use shared::domain::{Body, ChangeKind, Document, Role, TextOperation, Title, UserId};
use shared::embedded::{DATABASE_FILE, SqliteDocumentStore};
use shared::ports::{
    AnalysisQueue, AnalysisStore, AuditLog, ConnectionId, ConnectionRegistry, DocumentStore,
    SearchDocument, SearchIndex, SearchQuery,
};
use stream_handler::Fanout;
use stream_handler::analysis::{AnalysisWorker, AnalysisWorkerConfig, JobOutcome};
use stream_handler::decode::{Decoded, decode};
use stream_handler::sinks::Sink;
use stream_handler::sinks::analysis::AnalysisSink;
use stream_handler::sinks::audit::AuditSink;
use stream_handler::sinks::notifications::NotificationSink;
use stream_handler::sinks::search::SearchSink;
use tests::port_suites::{new_document, next_version, unique_user};
use tests::{TEST_SECRET, token_for};
use websocket::apigateway::ApiGatewayOutbox;
use websocket::{ConnectionService, ServiceConfig, ServicePorts};

use crate::emulators::{self, Wants};
use crate::push::Recorder;

/// Every record of the documents table's stream, oldest first, as the JSON record
/// Lambda delivers (the shape of `aws_lambda_events`' DynamoDB event record).
pub async fn read_stream(clients: &AwsClients) -> Vec<Value> {
    let arn = stream_arn(&clients.dynamodb, &clients.config.tables.documents)
        .await
        .unwrap()
        .expect("the documents table has a stream");
    let streams = aws_sdk_dynamodbstreams::Client::new(&clients.sdk);
    let described = streams
        .describe_stream()
        .stream_arn(&arn)
        .send()
        .await
        .unwrap();
    let shards = described
        .stream_description
        .unwrap()
        .shards
        .unwrap_or_default();
    let mut records = Vec::new();
    for shard in shards {
        let mut iterator = streams
            .get_shard_iterator()
            .stream_arn(&arn)
            .shard_id(shard.shard_id.unwrap())
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap()
            .shard_iterator;
        while let Some(current) = iterator {
            let page = streams
                .get_records()
                .shard_iterator(current)
                .send()
                .await
                .unwrap();
            let batch = page.records.unwrap_or_default();
            if batch.is_empty() {
                break;
            }
            records.extend(
                batch
                    .into_iter()
                    .map(|r| shared::aws::stream_replay::lambda_record(r, &arn)),
            );
            iterator = page.next_shard_iterator;
        }
    }
    records.sort_by(|a, b| {
        let seq = |r: &Value| r["dynamodb"]["SequenceNumber"].as_str().unwrap().to_owned();
        seq(a).len().cmp(&seq(b).len()).then(seq(a).cmp(&seq(b)))
    });
    records
}

/// The event name and the decoded images of a record.
fn shape(record: &Value) -> (String, Option<DocumentImage>, Option<DocumentImage>) {
    let decode_image = |name: &str| {
        record["dynamodb"].get(name).map(|raw| {
            let item: serde_dynamo::Item = serde_json::from_value(raw.clone()).unwrap();
            codec::item_to_document(&item).unwrap()
        })
    };
    (
        record["eventName"].as_str().unwrap().to_owned(),
        decode_image("OldImage"),
        decode_image("NewImage"),
    )
}

/// The change a record means, without its sequence number (which differs by mode).
fn meaning(record: &Value) -> Option<shared::domain::ChangeEvent> {
    match decode(record).expect("every record decodes") {
        Decoded::Skip => None,
        Decoded::Change(mut change) => {
            change.sequence_number.clear();
            Some(*change)
        }
        Decoded::Unfinished(u) => panic!("a short document's body is never paged out: {u:?}"),
    }
}

/// The writes of the scenario: a document's whole life, and a second one that stays.
fn scenario(ann: &UserId, bob: &UserId, cat: &UserId) -> (Vec<Document>, Document, Document) {
    let a1 = new_document(
        ann,
        "Zebra notes",
        "stripes and more stripes",
        &[(bob, Role::Viewer)],
    );
    let a2 = next_version(&a1, ann, |d| {
        d.body = Body::parse("zebra crossing ahead").unwrap()
    });
    let a3 = next_version(&a2, ann, |d| {
        d.collaborators.insert(cat.clone(), Role::Editor);
    });
    let a4 = next_version(&a3, ann, |_| {});
    let b1 = new_document(cat, "Giraffe", "tall stories", &[]);
    let b2 = next_version(&b1, cat, |d| d.title = Title::parse("Giraffes").unwrap());
    (vec![a1, a2, a3, a4], b1, b2)
}

/// The operation from `old`'s body to `new`'s.
fn ops(old: &Document, new: &Document) -> TextOperation {
    TextOperation::diff(old.body.as_str(), new.body.as_str())
}

async fn apply(store: &dyn DocumentStore, a: &[Document], b1: &Document, b2: &Document) {
    store.create(&a[0]).await.unwrap();
    store.update(&a[1], &ops(&a[0], &a[1])).await.unwrap();
    store.update(&a[2], &ops(&a[1], &a[2])).await.unwrap();
    store.delete(&a[3]).await.unwrap();
    store.create(b1).await.unwrap();
    store.update(b2, &ops(b1, b2)).await.unwrap();
}

#[tokio::test]
#[ignore = "needs moto and OpenSearch: run tests/run"]
async fn the_stream_carries_the_embedded_change_logs_records() {
    let clients = emulators::aws(Wants::default()).await;
    let (ann, bob, cat) = (unique_user("ann"), unique_user("bob"), unique_user("cat"));
    let (a, b1, b2) = scenario(&ann, &bob, &cat);
    apply(&clients.document_store(), &a, &b1, &b2).await;
    let dir = tempfile::tempdir().unwrap();
    let embedded = SqliteDocumentStore::open(&dir.path().join(DATABASE_FILE)).unwrap();
    apply(&embedded, &a, &b1, &b2).await;

    let aws = read_stream(&clients).await;
    let local: Vec<Value> = embedded
        .change_feed()
        .read_after(0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|r| serde_json::from_str(&r.record).unwrap())
        .collect();

    // The two-step delete: a MODIFY whose NewImage is the stamped, deleted document,
    // then the REMOVE carrying it as OldImage. The embedded log has only the REMOVE.
    let names = |records: &[Value]| records.iter().map(|r| shape(r).0).collect::<Vec<_>>();
    assert_eq!(
        names(&aws),
        [
            "INSERT", "MODIFY", "MODIFY", "MODIFY", "REMOVE", "INSERT", "MODIFY"
        ]
    );
    assert_eq!(
        names(&local),
        ["INSERT", "MODIFY", "MODIFY", "REMOVE", "INSERT", "MODIFY"]
    );
    let stamped = DocumentImage {
        document: a[3].clone(),
        deleted: true,
        ops: None,
        body_paged: false,
    };
    // An edit of the body carries its operation in the NewImage.
    let (_, _, edited) = shape(&aws[1]);
    let edited = edited
        .unwrap()
        .ops
        .expect("the body edit's NewImage has `ops`");
    assert_eq!(
        edited.apply(a[0].body.as_str()).unwrap(),
        a[1].body.as_str()
    );
    let (_, old, new) = shape(&aws[3]);
    assert_eq!(old.unwrap().document, a[2]);
    assert_eq!(new.as_ref(), Some(&stamped));
    assert_eq!(
        meaning(&aws[3]),
        None,
        "the stamping MODIFY means nothing on its own"
    );

    // Apart from it, record for record: the same images and the same changes.
    let aws_without_stamp: Vec<&Value> = aws
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3)
        .map(|(_, r)| r)
        .collect();
    // One difference: a DynamoDB OldImage is the item as it was stored, so it still
    // carries the `ops` that made the old version; the embedded log leaves it out. Only
    // the NewImage's `ops` means anything (the operation of this change).
    let without_old_ops = |(kind, old, new): (String, Option<DocumentImage>, _)| {
        (kind, old.map(|old| DocumentImage { ops: None, ..old }), new)
    };
    for (remote, local) in aws_without_stamp.iter().zip(&local) {
        assert_eq!(
            without_old_ops(shape(remote)),
            without_old_ops(shape(local))
        );
        assert_eq!(meaning(remote), meaning(local));
        assert_eq!(remote["eventSource"], "aws:dynamodb");
        assert_eq!(remote["dynamodb"]["StreamViewType"], "NEW_AND_OLD_IMAGES");
        assert_eq!(remote["dynamodb"]["Keys"], local["dynamodb"]["Keys"]);
    }
    let removal = meaning(&aws[4]).unwrap();
    assert_eq!(removal.kind, ChangeKind::Deleted);
    assert_eq!((removal.version, &removal.actor), (4, &ann));
}

/// The fan-out's ports on AWS, with the WebSocket service for subscriptions.
pub struct Fanned {
    pub fanout: Fanout,
    search: Arc<shared::aws::OpenSearchIndex>,
    audit: Arc<dyn AuditLog>,
    queue: Arc<shared::aws::SqsAnalysisQueue>,
    analyses: Arc<dyn AnalysisStore>,
    registry: Arc<dyn ConnectionRegistry>,
    service: ConnectionService,
    pub worker: AnalysisWorker,
}

impl Fanned {
    pub async fn queue_depth(&self) -> u64 {
        self.queue.depth().await.unwrap()
    }
}

pub fn fan_out(clients: &AwsClients) -> Fanned {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let documents: Arc<dyn DocumentStore> = Arc::new(clients.document_store());
    let search = Arc::new(clients.search_index().unwrap());
    let audit: Arc<dyn AuditLog> = Arc::new(clients.audit_log());
    let queue = Arc::new(clients.analysis_queue(Arc::clone(&clock)).unwrap());
    let analyses: Arc<dyn AnalysisStore> = Arc::new(clients.analysis_store());
    let registry: Arc<dyn ConnectionRegistry> =
        Arc::new(clients.connection_registry(Arc::clone(&clock)));
    let service = ConnectionService::new(
        ServicePorts {
            registry: Arc::clone(&registry),
            documents: Arc::clone(&documents),
            audit: Arc::clone(&audit),
            outbox: Arc::new(ApiGatewayOutbox::new(clients.pusher().unwrap())),
            tokens: TokenAuthority::new(TEST_SECRET).unwrap(),
            clock: Arc::clone(&clock),
        },
        ServiceConfig::default(),
    );
    let notifier = Arc::new(service.notifier());
    let sinks: Vec<Arc<dyn Sink>> = vec![
        Arc::new(SearchSink::new(search.clone(), Default::default())),
        Arc::new(NotificationSink::new(notifier.clone(), Default::default())),
        Arc::new(AuditSink::new(Arc::clone(&audit), Default::default())),
        Arc::new(AnalysisSink::new(queue.clone(), Default::default())),
    ];
    let dead_letters = Arc::new(clients.dead_letter_queue(Arc::clone(&clock)).unwrap());
    let fanout = Fanout::new(sinks, dead_letters, Arc::clone(&clock), Default::default())
        .with_body_archive(Arc::new(clients.document_store()));
    let worker = AnalysisWorker::new(
        queue.clone(),
        Arc::clone(&analyses),
        documents,
        notifier,
        clock,
        AnalysisWorkerConfig::default(),
    );
    Fanned {
        fanout,
        search,
        audit,
        queue,
        analyses,
        registry,
        service,
        worker,
    }
}

/// What the sinks hold, to compare before and after a redelivery.
async fn snapshot(f: &Fanned, a: &[Document], b: &Document) -> Value {
    let mut audit = Vec::new();
    for id in [a[0].id, b.id] {
        for entry in f.audit.list(&id, None, 100).await.unwrap() {
            audit.push(json!([
                entry.document_id,
                entry.version,
                entry.action,
                entry.actor
            ]));
        }
    }
    json!({
        "search": [f.search.indexed(&a[0].id).await.unwrap(), f.search.indexed(&b.id).await.unwrap()],
        "audit": audit,
        "analysis": f.analyses.get(&b.id).await.unwrap().map(|x| x.version),
    })
}

fn event(records: &[Value]) -> Value {
    json!({ "Records": records })
}

fn document_frames(frames: &[Value]) -> Vec<(String, u64)> {
    frames
        .iter()
        .filter(|f| {
            f["type"]
                .as_str()
                .is_some_and(|t| t.starts_with("document."))
        })
        .map(|f| {
            (
                f["type"].as_str().unwrap().to_owned(),
                f["version"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
#[ignore = "needs moto and OpenSearch: run tests/run"]
async fn the_stream_handler_fans_out_to_the_aws_sinks() {
    let recorder = Recorder::start().await;
    let clients = emulators::aws_with_endpoint(
        Wants {
            search: true,
            ..Wants::default()
        },
        Some(recorder.endpoint.clone()),
    )
    .await;
    let f = fan_out(&clients);
    let store = clients.document_store();
    let (ann, bob, cat) = (unique_user("ann"), unique_user("bob"), unique_user("cat"));
    let (a, b1, b2) = scenario(&ann, &bob, &cat);

    // bob watches document A from version 1; one of ann's connections is gone by the
    // time the changes come.
    store.create(&a[0]).await.unwrap();
    let (watching, leaving) = (
        ConnectionId("bob-tab=".into()),
        ConnectionId("ann-old-tab=".into()),
    );
    f.service
        .connect(watching.clone(), &token_for(bob.as_str()))
        .await
        .unwrap();
    f.service
        .connect(leaving.clone(), &token_for(ann.as_str()))
        .await
        .unwrap();
    let subscribe = json!({"action": "subscribe", "documentId": a[0].id}).to_string();
    f.service.handle_frame(&watching, &subscribe).await;
    f.service.handle_frame(&leaving, &subscribe).await;
    assert_eq!(recorder.posts_to("bob-tab=")[0]["type"], "subscribed");
    assert_eq!(f.registry.subscribers(&a[0].id).await.unwrap().len(), 2);
    recorder.mark_gone("ann-old-tab=");

    store.update(&a[1], &ops(&a[0], &a[1])).await.unwrap();
    store.update(&a[2], &ops(&a[1], &a[2])).await.unwrap();
    store.delete(&a[3]).await.unwrap();
    store.create(&b1).await.unwrap();
    store.update(&b2, &ops(&b1, &b2)).await.unwrap();
    let records = read_stream(&clients).await;
    assert_eq!(records.len(), 7);

    // First batch: document A up to version 3.
    let response = f.fanout.handle_event(&event(&records[..3])).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    let hits = |user: &UserId, text: &str| {
        let query = SearchQuery {
            query: text.parse().unwrap(),
            reader: user.clone(),
            limit: 10,
            offset: 0,
        };
        let search = Arc::clone(&f.search);
        async move { search.search(&query).await.unwrap().hits }
    };
    let found = hits(&cat, "zebra").await;
    assert_eq!(found.len(), 1);
    assert_eq!((found[0].id, found[0].version), (a[0].id, 3));
    assert!(
        found[0].snippet.contains("<mark>zebra</mark>"),
        "{}",
        found[0].snippet
    );
    assert!(hits(&unique_user("dan"), "zebra").await.is_empty());
    // The gone connection was forgotten on its 410.
    assert_eq!(f.registry.get(&leaving).await.unwrap(), None);
    assert_eq!(f.registry.subscribers(&a[0].id).await.unwrap().len(), 1);

    // The whole stream: the first three records come again with the rest.
    let response = f.fanout.handle_event(&event(&records)).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    assert!(
        hits(&ann, "zebra").await.is_empty(),
        "deleted documents are not found"
    );
    assert_eq!(f.search.indexed(&a[0].id).await.unwrap(), Some((4, true)));
    assert_eq!(hits(&cat, "giraffes").await[0].version, 2);

    let audit: Vec<_> = f
        .audit
        .list(&a[0].id, None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.version, e.action))
        .collect();
    assert_eq!(
        audit,
        [
            (1, ChangeKind::Created),
            (2, ChangeKind::Updated),
            (3, ChangeKind::Updated),
            (4, ChangeKind::Deleted)
        ]
    );
    assert_eq!(f.audit.get(&a[0].id, 4).await.unwrap().unwrap().actor, ann);

    // bob saw every change after his subscription once, in order, and then the end.
    assert_eq!(
        document_frames(&recorder.posts_to("bob-tab=")),
        [
            ("document.updated".to_owned(), 2),
            ("document.updated".to_owned(), 3),
            ("document.deleted".to_owned(), 4)
        ]
    );
    assert!(document_frames(&recorder.posts_to("ann-old-tab=")).is_empty());
    assert!(
        f.registry.subscribers(&a[0].id).await.unwrap().is_empty(),
        "a deletion ends subscriptions"
    );

    // The analysis jobs: title or body changes only, and within one batch none for a
    // body that a later record of the batch replaces or deletes: A1 and A2 from the
    // first batch; from the whole stream only B2 (A's are deleted, B1's body replaced).
    // The worker skips every job whose version is not current.
    assert_eq!(f.queue.depth().await.unwrap(), 3);
    let mut outcomes = Vec::new();
    while f.queue.depth().await.unwrap() > 0 {
        outcomes.extend(f.worker.run_once().await.unwrap());
    }
    let completed = outcomes
        .iter()
        .filter(|o| **o == JobOutcome::Completed)
        .count();
    assert_eq!((completed, outcomes.len()), (1, 3), "{outcomes:?}");
    assert_eq!(f.analyses.get(&b2.id).await.unwrap().unwrap().version, 2);
    assert_eq!(f.analyses.get(&a[0].id).await.unwrap(), None);
    assert_eq!(f.fanout.dead_letters().unwrap().depth().await.unwrap(), 0);

    // The same batch again changes nothing in the sinks.
    let before = snapshot(&f, &a, &b2).await;
    let posts_before = recorder.posts().len();
    let response = f.fanout.handle_event(&event(&records)).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    assert_eq!(snapshot(&f, &a, &b2).await, before);
    assert_eq!(
        recorder.posts().len(),
        posts_before,
        "nobody is notified twice"
    );
    // The duplicate jobs cost a redundant analysis at most; the stored result stays.
    let stored = f.analyses.get(&b2.id).await.unwrap();
    while f.queue.depth().await.unwrap() > 0 {
        f.worker.run_once().await.unwrap();
    }
    assert_eq!(f.analyses.get(&b2.id).await.unwrap(), stored);

    // A stale write reaches OpenSearch (in the next `_bulk`) and is a no-op there.
    let stale = SearchDocument::from(&a[1]);
    f.search.upsert(&stale).await.unwrap();
    f.search.flush().await.unwrap();
    assert_eq!(f.search.indexed(&a[0].id).await.unwrap(), Some((4, true)));
    let response = f.fanout.handle_event(&event(&records[1..2])).await;
    assert!(response.batch_item_failures.is_empty());
    f.search.flush().await.unwrap();
    assert_eq!(f.search.indexed(&a[0].id).await.unwrap(), Some((4, true)));
    assert!(hits(&ann, "crossing").await.is_empty());
}

/// A document over the inline limit: its items carry no body, its stream records stay
/// small, and the fan-out reads the bodies back from the kept versions (once, then
/// applies each record's operation), delivers every change whole, and forgets the
/// versions once the deletion is delivered.
#[tokio::test]
#[ignore = "needs moto and OpenSearch: run tests/run"]
async fn a_long_documents_changes_fan_out_from_its_kept_versions() {
    let clients = emulators::aws(Wants {
        search: true,
        ..Wants::default()
    })
    .await;
    let f = fan_out(&clients);
    let store = clients.document_store();
    let ann = unique_user("ann");
    let long = format!("okapi {}", "lorem ipsum dolor sit amet\n".repeat(4_000));
    assert!(long.len() > 100_000);
    let mut history = vec![new_document(&ann, "Long", &long, &[])];
    store.create(&history[0]).await.unwrap();
    // Keystrokes, then a rename.
    for word in ["quokka ", "wombat "] {
        let previous = history.last().unwrap();
        let next = next_version(previous, &ann, |d| {
            d.body = Body::parse(format!("{word}{}", d.body.as_str())).unwrap()
        });
        store.update(&next, &ops(previous, &next)).await.unwrap();
        history.push(next);
    }
    let renamed = next_version(history.last().unwrap(), &ann, |d| {
        d.title = Title::parse("Longer").unwrap()
    });
    store.update(&renamed, &TextOperation::new()).await.unwrap();
    history.push(renamed);
    assert_eq!(
        store.get(&history[0].id).await.unwrap().as_ref(),
        history.last(),
        "read back whole"
    );

    let records = read_stream(&clients).await;
    let ours: Vec<Value> = records
        .into_iter()
        .filter(|r| r["dynamodb"]["Keys"]["id"]["S"] == history[0].id.to_string())
        .collect();
    assert_eq!(ours.len(), 4);
    for record in &ours {
        let size = record["dynamodb"]["SizeBytes"].as_u64().unwrap();
        assert!(size < 2_048, "a record of {size} bytes");
        assert!(record["dynamodb"]["NewImage"].get("body").is_none());
        assert_eq!(record["dynamodb"]["NewImage"]["bodyPaged"]["BOOL"], true);
    }
    let response = f.fanout.handle_event(&event(&ours)).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");

    let id = history[0].id;
    let audit = f.audit.list(&id, None, 100).await.unwrap();
    assert_eq!(audit.len(), 4);
    let quokka = f.audit.get(&id, 2).await.unwrap().unwrap();
    let diff = quokka.detail.body_diff.unwrap();
    assert!(diff.contains("+quokka"), "{diff}");
    assert!(
        diff.len() < 4_096,
        "a keystroke's diff is small: {}",
        diff.len()
    );
    assert_eq!(quokka.detail.ops, Some(ops(&history[0], &history[1])));
    let rename = f.audit.get(&id, 4).await.unwrap().unwrap();
    assert!(
        rename.detail.body_diff.is_none(),
        "the rename left the body"
    );
    assert_eq!(f.search.indexed(&id).await.unwrap(), Some((4, false)));
    let query = SearchQuery {
        query: "wombat".parse().unwrap(),
        reader: ann.clone(),
        limit: 10,
        offset: 0,
    };
    assert_eq!(f.search.search(&query).await.unwrap().hits[0].id, id);

    // The deletion: the versions stay until the fan-out has delivered it.
    let deleted = next_version(history.last().unwrap(), &ann, |_| {});
    store.delete(&deleted).await.unwrap();
    assert_eq!(store.version(&id, 2).await.unwrap(), None);
    let kept = shared::ports::BodyArchive::body_at(&store, &id, 2)
        .await
        .unwrap();
    assert_eq!(kept.as_ref(), Some(&history[1].body));
    let removal: Vec<Value> = read_stream(&clients)
        .await
        .into_iter()
        .filter(|r| r["dynamodb"]["Keys"]["id"]["S"] == id.to_string())
        .skip(4)
        .collect();
    assert_eq!(removal.len(), 2, "the stamp and the removal");
    let response = f.fanout.handle_event(&event(&removal)).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    assert_eq!(
        shared::ports::BodyArchive::body_at(&store, &id, 2)
            .await
            .unwrap(),
        None,
        "forgotten once the deletion is delivered"
    );
    assert_eq!(f.search.indexed(&id).await.unwrap(), Some((5, true)));
    // A redelivery of the earlier records finds nothing to read back: it is skipped,
    // not dead-lettered or retried for ever.
    let response = f.fanout.handle_event(&event(&ours)).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    assert_eq!(f.fanout.dead_letters().unwrap().depth().await.unwrap(), 0);
}
