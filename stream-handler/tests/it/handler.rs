//! The handler on real DynamoDB stream event fixtures, with recording sinks.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;
use shared::Error;
use shared::domain::{ChangeKind, DocumentId, Field, Role, UserId};
use shared::ports::{DeadLetterQueue, DeadLetterSource};
use stream_handler::sinks::Sink;

use crate::common::{MemoryDeadLetters, RecordingSink, fanout_with, records};

const INSERT: &str = include_str!("../fixtures/insert.json");
const MODIFY: &str = include_str!("../fixtures/modify.json");
const REMOVE: &str = include_str!("../fixtures/remove.json");
const TTL_REMOVE: &str = include_str!("../fixtures/ttl_remove.json");
const UNKNOWN_ATTRIBUTES: &str = include_str!("../fixtures/unknown_attributes.json");
const UNDECODABLE: &str = include_str!("../fixtures/undecodable.json");
const MODIFY_MARKS_DELETED: &str = include_str!("../fixtures/modify_marks_deleted.json");

const DOC: &str = "0190a5c4-7b2e-7c3d-8e4f-1a2b3c4d5e6f";

fn doc_id() -> DocumentId {
    DocumentId::parse(DOC).unwrap()
}

fn user(name: &str) -> UserId {
    UserId::parse(name).unwrap()
}

fn at(rfc3339: &str) -> DateTime<Utc> {
    rfc3339.parse().unwrap()
}

struct Setup {
    sinks: Vec<Arc<RecordingSink>>,
    dlq: Arc<MemoryDeadLetters>,
    fanout: stream_handler::Fanout,
}

fn setup_with(sinks: Vec<Arc<RecordingSink>>) -> Setup {
    let dlq = Arc::new(MemoryDeadLetters::default());
    let fanout = fanout_with(
        sinks.iter().map(|s| s.clone() as Arc<dyn Sink>).collect(),
        dlq.clone(),
    );
    Setup { sinks, dlq, fanout }
}

fn setup() -> Setup {
    setup_with(vec![RecordingSink::new("one"), RecordingSink::new("two")])
}

fn failed(response: &aws_lambda_events::event::streams::DynamoDbEventResponse) -> Vec<String> {
    response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone().unwrap_or_default())
        .collect()
}

#[tokio::test]
async fn an_insert_is_a_creation_delivered_to_every_sink() {
    let s = setup();
    let response = s
        .fanout
        .handle_event(&serde_json::from_str(INSERT).unwrap())
        .await;
    assert!(failed(&response).is_empty());
    for sink in &s.sinks {
        let delivered = sink.delivered();
        assert_eq!(delivered.len(), 1);
        let change = &delivered[0];
        assert_eq!(change.kind, ChangeKind::Created);
        assert_eq!(change.document_id, doc_id());
        assert_eq!(change.version, 1);
        assert_eq!(change.actor, user("ann"));
        assert_eq!(change.at, at("2024-06-10T06:13:20.123Z"));
        assert_eq!(
            change.changed_fields,
            [Field::Title, Field::Body, Field::Collaborators]
        );
        assert_eq!(change.sequence_number, "111100000000000000001");
        let new = change.new.as_ref().unwrap();
        assert_eq!(new.title.as_str(), "Quarterly plan");
        assert_eq!(new.collaborators.get(&user("cat")), Some(&Role::Viewer));
        assert!(change.old.is_none());
        assert_eq!(
            sink.metas.lock().unwrap()[0].event_id,
            "c4ca4238a0b923820dcc509a6f75849b"
        );
    }
    assert!(s.dlq.letters.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_modify_is_an_update_with_both_images() {
    let s = setup();
    let response = s.fanout.handle(&records(MODIFY)).await;
    assert!(failed(&response).is_empty());
    let change = &s.sinks[0].delivered()[0];
    assert_eq!(change.kind, ChangeKind::Updated);
    assert_eq!(change.version, 2);
    assert_eq!(change.actor, user("bob"));
    assert_eq!(
        change.changed_fields,
        [Field::Title, Field::Body, Field::Collaborators]
    );
    assert_eq!(change.old.as_ref().unwrap().version, 1);
    assert_eq!(change.new.as_ref().unwrap().title.as_str(), "Q3 plan");
}

#[tokio::test]
async fn a_marked_remove_is_a_deletion_stamped_by_its_image() {
    let s = setup();
    let response = s.fanout.handle(&records(REMOVE)).await;
    assert!(failed(&response).is_empty());
    let change = &s.sinks[0].delivered()[0];
    assert_eq!(change.kind, ChangeKind::Deleted);
    assert_eq!(change.version, 3);
    assert_eq!(change.actor, user("ann"));
    assert_eq!(change.at, at("2024-06-10T06:15:20.500Z"));
    assert!(change.new.is_none());
    assert!(change.changed_fields.is_empty());
}

#[tokio::test]
async fn a_ttl_remove_is_a_deletion_by_dynamodb_one_version_on() {
    let s = setup();
    let response = s.fanout.handle(&records(TTL_REMOVE)).await;
    assert!(failed(&response).is_empty());
    let change = &s.sinks[0].delivered()[0];
    assert_eq!(change.kind, ChangeKind::Deleted);
    assert_eq!(change.version, 3);
    assert_eq!(change.actor, user("dynamodb.amazonaws.com"));
    // The fractional ApproximateCreationDateTime, read as seconds.
    assert_eq!(change.at.timestamp_millis(), 1_718_003_600_500);
}

#[tokio::test]
async fn an_unmarked_remove_by_someone_else_is_by_unknown() {
    let s = setup();
    let mut record = records(TTL_REMOVE).remove(0);
    record.as_object_mut().unwrap().remove("userIdentity");
    let response = s.fanout.handle(&[record]).await;
    assert!(failed(&response).is_empty());
    assert_eq!(s.sinks[0].delivered()[0].actor, user("unknown"));
}

#[tokio::test]
async fn unknown_attributes_are_ignored() {
    let s = setup();
    let response = s.fanout.handle(&records(UNKNOWN_ATTRIBUTES)).await;
    assert!(failed(&response).is_empty());
    let change = &s.sinks[0].delivered()[0];
    assert_eq!(change.kind, ChangeKind::Created);
    assert_eq!(
        change.new.as_ref().unwrap().title.as_str(),
        "From a newer writer"
    );
    assert!(change.new.as_ref().unwrap().collaborators.is_empty());
}

#[tokio::test]
async fn undecodable_records_are_dead_lettered_whole_and_the_rest_goes_on() {
    let s = setup();
    let batch = records(UNDECODABLE);
    let response = s.fanout.handle(&batch).await;
    assert!(
        failed(&response).is_empty(),
        "dead letters are not batch failures"
    );
    let letters = s.dlq.list(10).await.unwrap();
    assert_eq!(letters.len(), 2);
    assert_eq!(letters[0].payload, batch[0]);
    assert_eq!(letters[1].payload, batch[1]);
    assert!(letters.iter().all(|l| l.source == DeadLetterSource::Stream));
    assert!(
        letters[0].reason.contains("NewImage"),
        "{}",
        letters[0].reason
    );
    assert!(
        letters[1].reason.contains("UPSERT"),
        "{}",
        letters[1].reason
    );
    let delivered = s.sinks[0].delivered();
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].new.as_ref().unwrap().title.as_str(), "Fine");
}

#[tokio::test]
async fn the_modify_that_marks_a_deletion_is_skipped() {
    let s = setup();
    let response = s.fanout.handle(&records(MODIFY_MARKS_DELETED)).await;
    assert!(failed(&response).is_empty());
    assert!(s.sinks[0].delivered().is_empty());
    assert!(s.dlq.letters.lock().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn transient_failures_are_retried_in_process() {
    let flaky = RecordingSink::failing(
        "flaky",
        Box::new(|_, call| (call <= 2).then(|| Error::Unavailable("busy".into()))),
    );
    let s = setup_with(vec![flaky.clone(), RecordingSink::new("steady")]);
    let response = s.fanout.handle(&records(INSERT)).await;
    assert!(failed(&response).is_empty());
    assert_eq!(flaky.calls(doc_id(), 1), 3);
    assert_eq!(flaky.delivered().len(), 1);
    // The steady sink was called once: retries are per sink.
    assert_eq!(s.sinks[1].calls(doc_id(), 1), 1);
}

fn three_records() -> Vec<Value> {
    // Two changes of one document, then a change of another.
    let mut batch = records(INSERT);
    batch.extend(records(MODIFY));
    batch.extend(records(UNKNOWN_ATTRIBUTES));
    batch
}

#[tokio::test(start_paused = true)]
async fn a_record_out_of_retries_holds_back_the_rest_of_its_document_only() {
    let down = RecordingSink::failing(
        "down",
        Box::new(|change, _| {
            (change.document_id.to_string() == DOC && change.version == 1)
                .then(|| Error::Unavailable("down".into()))
        }),
    );
    let s = setup_with(vec![down.clone()]);
    let response = s.fanout.handle(&three_records()).await;
    assert_eq!(
        failed(&response),
        ["111100000000000000001", "111200000000000000002"]
    );
    assert_eq!(down.calls(doc_id(), 1), 3, "bounded retries");
    assert_eq!(
        down.calls(doc_id(), 2),
        0,
        "nothing overtakes the failed record"
    );
    assert_eq!(down.delivered().len(), 1, "the other document went through");
    assert!(s.dlq.letters.lock().unwrap().is_empty());
    let json = serde_json::to_value(&response).unwrap();
    assert_eq!(
        json["batchItemFailures"][0]["itemIdentifier"],
        "111100000000000000001"
    );
}

#[tokio::test]
async fn a_permanent_failure_is_dead_lettered_and_the_document_moves_on() {
    let broken = RecordingSink::failing(
        "broken",
        Box::new(|change, _| {
            (change.version == 1 && change.document_id.to_string() == DOC)
                .then(|| Error::Unknown(anyhow::anyhow!("cannot index this")))
        }),
    );
    let s = setup_with(vec![broken.clone(), RecordingSink::new("fine")]);
    let batch = three_records();
    let response = s.fanout.handle(&batch).await;
    assert!(failed(&response).is_empty());
    assert_eq!(
        broken.calls(doc_id(), 1),
        1,
        "permanent errors are not retried"
    );
    let letters = s.dlq.list(10).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].payload, batch[0]);
    assert!(
        letters[0].reason.contains("broken: cannot index this"),
        "{}",
        letters[0].reason
    );
    assert_eq!(broken.versions().len(), 2);

    // Once the cause is gone, the redrive goes through every sink again.
    let fixed = setup();
    assert_eq!(fixed.fanout.redrive(&letters[0].payload).await, Ok(()));
    assert_eq!(fixed.sinks[0].versions(), [(doc_id(), 1)]);
}

/// The MODIFY fixture as the AWS store writes it for a long document: both bodies
/// paged out.
fn paged_modify() -> Vec<Value> {
    let mut records = records(MODIFY);
    for image in ["OldImage", "NewImage"] {
        let item = records[0]["dynamodb"][image].as_object_mut().unwrap();
        item.remove("body");
        item.insert("bodyPaged".into(), serde_json::json!({"BOOL": true}));
    }
    records
}

#[tokio::test]
async fn a_paged_out_body_without_an_archive_blocks_the_record_and_loses_nothing() {
    let s = setup();
    let response = s.fanout.handle(&paged_modify()).await;
    assert_eq!(failed(&response).len(), 1, "reported for a retry");
    assert!(
        s.sinks[0].delivered().is_empty(),
        "no sink saw an empty body"
    );
    assert_eq!(
        s.dlq.depth().await.unwrap(),
        0,
        "a deployment error, not a poison record"
    );
}
