//! The stream-record decoder (`stream_handler::decode`) on hostile records.
//!
//! Input: the JSON text of a record (or of an event, `{"Records":[…]}`). Bytes that are
//! not JSON pick a fixture record instead and mutate it — values replaced by arbitrary
//! JSON, members removed — so structure-aware mutations reach the decoder too.
//!
//! Checks: decoding never panics, is deterministic and classifies every record: a change,
//! a skip (only the MODIFY that marks a document deleted), or undecodable with a reason.
//! A change agrees with its record (key, sequence number, event name, versions), carries
//! only documents that satisfy the domain rules and that the item codec re-encodes to
//! themselves, and every consumer of a change takes it: the audit entry, the analysis and
//! the WebSocket notification.

#![no_main]

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use shared::codec;
use shared::domain::{
    Body, ChangeEvent, ChangeKind, Document, DocumentId, Field, Title, check_collaborators,
};
use stream_handler::decode::{DecodeError, Decoded, RecordMeta, TTL_PRINCIPAL, decode};
use stream_handler::sinks::audit::{MAX_BODY_DIFF_BYTES, entry_for};
use websocket::frames::MAX_FRAME_BYTES;

/// Member names of a stream record, for generated replacements.
const NAMES: &[&str] = &[
    "eventID",
    "eventName",
    "dynamodb",
    "Keys",
    "NewImage",
    "OldImage",
    "SequenceNumber",
    "ApproximateCreationDateTime",
    "userIdentity",
    "type",
    "principalId",
    "id",
    "title",
    "body",
    "owner",
    "collaborators",
    "version",
    "createdAt",
    "updatedAt",
    "updatedBy",
    "deleted",
    "S",
    "N",
    "M",
    "BOOL",
    "NULL",
    "L",
    "SS",
    "B",
];

fuzz_target!(|data: &[u8]| {
    let input = match serde_json::from_slice::<Value>(data) {
        Ok(input) => input,
        Err(_) => match mutated_fixture(&mut Unstructured::new(data)) {
            Ok(record) => record,
            Err(_) => return,
        },
    };
    match input.get("Records").and_then(Value::as_array) {
        Some(records) => records.iter().for_each(check_record),
        None => check_record(&input),
    }
});

fn mutated_fixture(u: &mut Unstructured) -> arbitrary::Result<Value> {
    let mut record =
        docfan_fuzz::fixture_record(u.choose_index(docfan_fuzz::STREAM_FIXTURES.len())?);
    for _ in 0..u.int_in_range(1..=3)? {
        let paths = docfan_fuzz::value_paths(&record);
        let path = &paths[u.choose_index(paths.len())?];
        let replacement = if u.ratio(1, 4)? {
            None
        } else {
            Some(docfan_fuzz::json_value(u, NAMES, 3)?)
        };
        docfan_fuzz::replace_at(&mut record, path, replacement);
    }
    Ok(record)
}

fn check_record(record: &Value) {
    let meta = RecordMeta::of(record);
    let outcome = decode(record);
    // The same meaning every time (a refusal's wording may name another of several bad
    // attributes: an item is a hash map).
    match (&outcome, decode(record)) {
        (Ok(first), Ok(again)) => assert_eq!(first, &again, "decoding is deterministic"),
        (Err(_), Err(_)) => {}
        (first, again) => panic!("decoding is not deterministic: {first:?}, then {again:?}"),
    }
    match outcome {
        Err(DecodeError(reason)) => assert!(!reason.trim().is_empty(), "a refusal says why"),
        Ok(Decoded::Skip) => {
            assert_eq!(record["eventName"], "MODIFY", "only a MODIFY is skipped");
            assert_eq!(
                record["dynamodb"]["NewImage"][codec::DELETED_ATTRIBUTE]["BOOL"],
                true,
                "only the MODIFY that marks a document deleted is skipped"
            );
        }
        Ok(Decoded::Change(change)) => check_change(record, &meta, &change),
        Ok(Decoded::Unfinished(unfinished)) => {
            assert_ne!(
                record["eventName"], "REMOVE",
                "a deletion never waits for bodies"
            );
            assert_eq!(meta.document_id, Some(unfinished.document_id()));
            assert!(
                unfinished.new_body_version().is_some()
                    || unfinished.old_body_version().is_some()
                    || record["dynamodb"]["OldImage"][codec::BODY_PAGED_ATTRIBUTE]["BOOL"] == true,
                "only a record with a paged-out body is unfinished"
            );
            // Finishing it with bodies that do not match what it asks for is refused,
            // never a panic.
            let _ = unfinished.finish(None, None);
        }
    }
}

fn check_change(record: &Value, meta: &RecordMeta, change: &ChangeEvent) {
    let dynamodb = &record["dynamodb"];
    assert_eq!(
        Some(change.sequence_number.as_str()),
        dynamodb["SequenceNumber"].as_str(),
        "a change keeps its record's sequence number"
    );
    let key = dynamodb["Keys"][codec::KEY_ATTRIBUTE]["S"].as_str();
    assert_eq!(
        key.map(DocumentId::parse).and_then(Result::ok),
        Some(change.document_id),
        "a change is about the document of its key"
    );
    assert_eq!(meta.document_id, Some(change.document_id));
    assert!(change.version >= 1, "versions start at 1");
    for doc in change.old.iter().chain(&change.new) {
        check_document(doc);
        assert_eq!(
            doc.id, change.document_id,
            "images are of the keyed document"
        );
    }

    match record["eventName"].as_str() {
        Some("INSERT") => {
            assert_eq!(change.kind, ChangeKind::Created);
            assert!(change.old.is_none());
            let new = change.new.as_ref().expect("a creation has a new image");
            assert_eq!(change.version, new.version);
            assert_eq!(change.actor, new.updated_by);
            assert_eq!(
                change.changed_fields,
                [Field::Title, Field::Body, Field::Collaborators]
            );
        }
        Some("MODIFY") => {
            assert_eq!(change.kind, ChangeKind::Updated);
            let old = change.old.as_ref().expect("an update has an old image");
            let new = change.new.as_ref().expect("an update has a new image");
            assert!(
                new.version > old.version,
                "an update moves the version forward"
            );
            assert_eq!(change.version, new.version);
        }
        Some("REMOVE") => {
            assert_eq!(change.kind, ChangeKind::Deleted);
            assert!(change.new.is_none(), "a deletion has no new image");
            let old = change.old.as_ref().expect("a deletion has the last image");
            let marked = dynamodb["OldImage"][codec::DELETED_ATTRIBUTE]["BOOL"] == true;
            if marked {
                assert_eq!(change.version, old.version);
                assert_eq!(change.actor, old.updated_by);
            } else {
                assert_eq!(Some(change.version), old.version.checked_add(1));
                let by_ttl = record["userIdentity"]["principalId"] == TTL_PRINCIPAL
                    && record["userIdentity"]["type"] == "Service";
                assert_eq!(by_ttl, change.actor.as_str() == TTL_PRINCIPAL);
            }
        }
        other => panic!("decoded a record with eventName {other:?}"),
    }

    // Every consumer takes what the decoder lets through.
    let entry = entry_for(change, &meta.event_id, MAX_BODY_DIFF_BYTES);
    assert_eq!(
        (entry.document_id, entry.version, entry.action),
        (change.document_id, change.version, change.kind)
    );
    if let Some(diff) = &entry.detail.body_diff {
        assert!(
            diff.len() <= MAX_BODY_DIFF_BYTES + 128,
            "body diffs are bounded"
        );
    }
    let analysis = stream_handler::analysis::text::analyze(change.latest(), change.at);
    assert_eq!(analysis.version, change.latest().version);
    let frame = websocket::frames::change(change, true);
    let json = frame.to_json();
    assert_eq!(json["version"], change.version);
    assert_eq!(json["documentId"], change.document_id.to_string());
    assert!(
        frame.len() < MAX_FRAME_BYTES || json.get("document").is_none(),
        "a notification carries the document only when it fits"
    );
}

/// A decoded document satisfies every rule a document written through the API does, and
/// the item codec writes it back as itself.
fn check_document(doc: &Document) {
    assert_eq!(Title::parse(doc.title.as_str()).as_ref(), Ok(&doc.title));
    assert_eq!(Body::parse(doc.body.as_str()).as_ref(), Ok(&doc.body));
    if let Err(e) = check_collaborators(&doc.owner, &doc.collaborators) {
        panic!("decoded a document that breaks the collaborator rules: {e}");
    }
    let image = codec::item_to_document(&codec::document_to_item(doc))
        .expect("an encoded document decodes");
    assert_eq!(
        &image.document, doc,
        "the item codec round-trips a decoded document"
    );
    assert!(!image.deleted);
}
