//! JSON Merge Patch (RFC 7396): `shared::service::merge_patch` and the document service's
//! PATCH on top of it.
//!
//! Input: JSON text holding a patch, or a target then a patch (`{"a":1} {"a":null}`).
//! Bytes that are not JSON text build both from fuzz bytes instead.
//!
//! Checks:
//! - `merge_patch::apply` agrees with a straightforward reading of RFC 7396 (and refuses
//!   exactly the patches nested deeper than `MAX_DEPTH`), and is idempotent: applying the
//!   same patch twice is the same as once;
//! - `DocumentService::patch` (over an in-memory store) never yields an invalid document:
//!   the result satisfies every domain rule, the codecs round-trip it, only title, body,
//!   collaborators, version and the update stamp change, and they change exactly as the
//!   merge says; a refusal is a validation error (or, for an editor touching
//!   collaborators, forbidden) and stores nothing; the same patch again changes nothing
//!   but the version.

#![no_main]

use std::sync::{Arc, Mutex};

use arbitrary::Unstructured;
use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value, json};
use shared::clock::{Clock, ManualClock};
use shared::domain::{
    Body, Collaborators, Document, DocumentId, DocumentVersion, Role, TextOperation, Title, UserId,
    check_collaborators,
};
use shared::ports::{DocumentPage, DocumentStore};
use shared::service::{DocumentService, merge_patch};
use shared::{Error, Result};

const NAMES: &[&str] = &[
    "title",
    "body",
    "collaborators",
    "bob",
    "cat",
    "ann",
    "a",
    "b",
];

fuzz_target!(|data: &[u8]| {
    let (target, patch) = match json_texts(data) {
        Some(pair) => pair,
        None => {
            let u = &mut Unstructured::new(data);
            let Ok(target) = docfan_fuzz::json_value(u, NAMES, 4) else {
                return;
            };
            let depth = if u.ratio(1, 16).unwrap_or(false) {
                40
            } else {
                5
            };
            let Ok(patch) = docfan_fuzz::json_value(u, NAMES, depth) else {
                return;
            };
            (target, patch)
        }
    };
    check_apply(&target, &patch);
    check_service(&target, &patch);
});

/// One JSON value (the patch, on a default document) or two (target, patch).
fn json_texts(data: &[u8]) -> Option<(Value, Value)> {
    let mut values = serde_json::Deserializer::from_slice(data).into_iter::<Value>();
    let first = values.next()?.ok()?;
    match values.next() {
        None => Some((default_target(), first)),
        Some(Ok(second)) if values.next().is_none() => Some((first, second)),
        Some(_) => None,
    }
}

fn default_target() -> Value {
    json!({"title": "Plan", "body": "First draft", "collaborators": {"bob": "editor", "cat": "viewer"}})
}

fn check_apply(target: &Value, patch: &Value) {
    let mut once = target.clone();
    let applied = merge_patch::apply(&mut once, patch);
    if deepest(patch, 0) > merge_patch::MAX_DEPTH {
        assert!(
            applied.is_err(),
            "a patch nested deeper than MAX_DEPTH is refused"
        );
        return;
    }
    applied.expect("a patch within MAX_DEPTH applies");
    assert_eq!(
        once,
        rfc7396(target.clone(), patch),
        "apply follows RFC 7396"
    );
    let mut twice = once.clone();
    merge_patch::apply(&mut twice, patch).expect("it applied once");
    assert_eq!(once, twice, "a merge patch is idempotent");
}

/// How deep `apply` walks into `patch`: a null member removes without descending.
fn deepest(patch: &Value, depth: usize) -> usize {
    match patch {
        Value::Object(members) => members
            .values()
            .filter(|v| !v.is_null())
            .map(|v| deepest(v, depth + 1))
            .max()
            .unwrap_or(depth)
            .max(depth),
        _ => depth,
    }
}

/// RFC 7396, section 2, as written.
fn rfc7396(target: Value, patch: &Value) -> Value {
    let Value::Object(members) = patch else {
        return patch.clone();
    };
    let mut target = match target {
        Value::Object(t) => t,
        _ => Map::new(),
    };
    for (name, value) in members {
        if value.is_null() {
            target.remove(name);
        } else {
            let current = target.remove(name).unwrap_or(Value::Null);
            target.insert(name.clone(), rfc7396(current, value));
        }
    }
    Value::Object(target)
}

fn check_service(target: &Value, patch: &Value) {
    let current = document_from(target);
    let editor = UserId::parse("bob").unwrap();
    for actor in [current.owner.clone(), editor] {
        let store = Arc::new(OneDocument(Mutex::new(current.clone())));
        let clock = Arc::new(ManualClock::new(current.updated_at + TimeDelta::seconds(5)));
        let service = DocumentService::new(store.clone(), clock.clone());
        let outcome =
            docfan_fuzz::ready(service.patch(&actor, &current.id, Some(current.version), patch));
        let next = match outcome {
            Err(e) => {
                let touches_collaborators = patch.get("collaborators").is_some();
                match e {
                    Error::Invalid(_) => {}
                    Error::Forbidden(_) if actor != current.owner && touches_collaborators => {}
                    other => panic!("a patch was refused with {other:?}, not a validation error"),
                }
                assert_eq!(store.stored(), current, "a refused patch stores nothing");
                continue;
            }
            Ok(next) => next,
        };
        assert!(
            actor == current.owner || patch.get("collaborators").is_none(),
            "only the owner changes collaborators"
        );
        check_valid(&next);
        assert_eq!(store.stored(), next, "the result is what was stored");
        assert_eq!(
            (&next.id, &next.owner, next.created_at),
            (&current.id, &current.owner, current.created_at)
        );
        assert_eq!(next.version, current.version + 1);
        assert_eq!((&next.updated_by, next.updated_at), (&actor, clock.now()));
        // The content is the merge of the patch into the current content.
        let merged = rfc7396(content(&current), patch);
        assert_eq!(
            content(&next),
            normalise(merged),
            "the document is the merge"
        );

        let again = docfan_fuzz::ready(service.patch(&actor, &next.id, Some(next.version), patch))
            .expect("a patch that applied once applies again");
        assert_eq!(content(&again), content(&next), "patching is idempotent");
        assert_eq!(again.version, next.version + 1);
    }
}

/// The patchable content, as the service presents it to the merge.
fn content(doc: &Document) -> Value {
    json!({"title": doc.title, "body": doc.body, "collaborators": doc.collaborators})
}

/// A merge without collaborators means none.
fn normalise(mut merged: Value) -> Value {
    if merged.get("collaborators").is_none() {
        merged["collaborators"] = json!({});
    }
    merged
}

/// A valid document whose content is taken from `target` where it is valid content.
fn document_from(target: &Value) -> Document {
    let owner = UserId::parse("ann").unwrap();
    let title = target["title"].as_str().and_then(|t| Title::parse(t).ok());
    let body = target["body"].as_str().and_then(|b| Body::parse(b).ok());
    let collaborators = serde_json::from_value::<Collaborators>(target["collaborators"].clone())
        .ok()
        .filter(|c| {
            check_collaborators(&owner, c).is_ok()
                && c.get(&UserId::parse("bob").unwrap()) == Some(&Role::Editor)
        });
    let at = DateTime::<Utc>::from_timestamp_millis(1_718_000_000_000).unwrap();
    Document {
        id: DocumentId::parse("0190a5c4-7b2e-7c3d-8e4f-1a2b3c4d5e6f").unwrap(),
        title: title.unwrap_or_else(|| Title::parse("Plan").unwrap()),
        body: body.unwrap_or_default(),
        owner: owner.clone(),
        collaborators: collaborators.unwrap_or_else(|| {
            serde_json::from_value(json!({"bob": "editor", "cat": "viewer"})).unwrap()
        }),
        version: 3,
        created_at: at,
        updated_at: at,
        updated_by: owner,
    }
}

/// Every rule a stored document keeps, and the round trips through JSON (the API, the
/// notifications) and the DynamoDB item codec (the stream).
fn check_valid(doc: &Document) {
    assert_eq!(Title::parse(doc.title.as_str()).as_ref(), Ok(&doc.title));
    assert_eq!(Body::parse(doc.body.as_str()).as_ref(), Ok(&doc.body));
    check_collaborators(&doc.owner, &doc.collaborators).expect("collaborator rules hold");
    let json = serde_json::to_value(doc).unwrap();
    assert_eq!(&serde_json::from_value::<Document>(json).unwrap(), doc);
    let image = shared::codec::item_to_document(&shared::codec::document_to_item(doc)).unwrap();
    assert_eq!(&image.document, doc);
}

/// A store holding one document, answering at once.
struct OneDocument(Mutex<Document>);

impl OneDocument {
    fn stored(&self) -> Document {
        self.0.lock().unwrap().clone()
    }
}

#[async_trait]
impl DocumentStore for OneDocument {
    async fn create(&self, _doc: &Document) -> Result<()> {
        Err(Error::AlreadyExists)
    }

    async fn get(&self, id: &DocumentId) -> Result<Option<Document>> {
        let doc = self.stored();
        Ok((doc.id == *id).then_some(doc))
    }

    async fn update(&self, doc: &Document, _body_ops: &TextOperation) -> Result<()> {
        let mut stored = self.0.lock().unwrap();
        if stored.id != doc.id {
            return Err(Error::NotFound);
        }
        if stored.version + 1 != doc.version {
            return Err(Error::VersionMismatch {
                current: stored.version,
            });
        }
        *stored = doc.clone();
        Ok(())
    }

    async fn delete(&self, _last: &Document) -> Result<()> {
        Err(Error::Unavailable("not part of a patch".into()))
    }

    async fn operations_since(&self, _id: &DocumentId, _base: u64) -> Result<Vec<TextOperation>> {
        Err(Error::Unavailable("not part of a patch".into()))
    }

    async fn version(&self, _id: &DocumentId, _version: u64) -> Result<Option<DocumentVersion>> {
        Err(Error::Unavailable("not part of a patch".into()))
    }

    async fn list_for_member(
        &self,
        _member: &UserId,
        _limit: usize,
        _after: Option<&DocumentId>,
    ) -> Result<DocumentPage> {
        Err(Error::Unavailable("not part of a patch".into()))
    }
}
