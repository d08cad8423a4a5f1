//! Reading paged-out bodies back for the fan-out.
//!
//! A record whose images have their bodies paged out ([`Decoded::Unfinished`]) names
//! the versions it needs; [`BodyReader`] fetches them from the [`BodyArchive`] (the AWS
//! store's versions table: a snapshot and the operations after it, one `Query`).
//!
//! Records of one document arrive in version order, and each carries the operation
//! that made it, so the reader keeps the latest body it produced per document: the next
//! record's old body is that one, and its new body is the old one with the record's
//! operation applied. People typing cost no read at all after the first record; only a
//! gap (a document seen for the first time, a cold container, an evicted entry) reads
//! the archive.
//!
//! [`Decoded::Unfinished`]: crate::decode::Decoded::Unfinished

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use shared::domain::{Body, ChangeEvent, DocumentId};
use shared::ports::BodyArchive;

use crate::decode::{DecodeError, Unfinished};

/// How many documents' latest bodies are kept (each at most the body limit, 128 KB).
pub const RECENT_BODIES: usize = 64;

/// Why a record's bodies could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The archive failed: retry the record.
    #[error("reading the record's body back failed: {0}")]
    Archive(shared::Error),
    /// The record and the bodies kept for it do not fit together: it can never finish.
    #[error(transparent)]
    Corrupt(#[from] DecodeError),
}

/// Reads the bodies a record left out, remembering the latest per document.
pub struct BodyReader {
    archive: Arc<dyn BodyArchive>,
    recent: Mutex<HashMap<DocumentId, (u64, Body)>>,
}

impl BodyReader {
    pub fn new(archive: Arc<dyn BodyArchive>) -> Self {
        Self {
            archive,
            recent: Mutex::new(HashMap::new()),
        }
    }

    pub fn archive(&self) -> &Arc<dyn BodyArchive> {
        &self.archive
    }

    /// The change of `unfinished` with its bodies in place; `Ok(None)` when the
    /// versions it needs are no longer kept (the document's deletion has been fanned
    /// out since, which supersedes it).
    pub async fn finish(&self, unfinished: Unfinished) -> Result<Option<ChangeEvent>, BodyError> {
        let id = unfinished.document_id();
        let old = match unfinished.old_body_version() {
            None => None,
            Some(version) => match self.body_at(&id, version).await? {
                Some(body) => Some(body),
                None => return Ok(None),
            },
        };
        let new = match unfinished.new_body_version() {
            None => None,
            Some(version) => {
                // The new body from the old one and the record's operation, when both
                // are at hand; else from the archive.
                let base = old.as_ref().or(unfinished.old_body());
                let applied = match (base, unfinished.ops()) {
                    (Some(base), Some(ops)) => ops
                        .apply(base.as_str())
                        .ok()
                        .and_then(|b| Body::parse(b).ok()),
                    _ => None,
                };
                match applied {
                    Some(body) => Some(body),
                    None => match self.body_at(&id, version).await? {
                        Some(body) => Some(body),
                        None => return Ok(None),
                    },
                }
            }
        };
        if let (Some(version), Some(body)) = (unfinished.new_body_version(), &new) {
            self.remember(id, version, body.clone());
        }
        Ok(Some(unfinished.finish(old, new)?))
    }

    /// Forgets the versions of a deleted document, once its deletion is delivered.
    pub async fn forget(&self, id: &DocumentId) -> shared::Result<()> {
        self.recent.lock().expect("not poisoned").remove(id);
        self.archive.forget(id).await
    }

    async fn body_at(&self, id: &DocumentId, version: u64) -> Result<Option<Body>, BodyError> {
        let remembered = self
            .recent
            .lock()
            .expect("not poisoned")
            .get(id)
            .filter(|(v, _)| *v == version)
            .map(|(_, body)| body.clone());
        if remembered.is_some() {
            return Ok(remembered);
        }
        self.archive
            .body_at(id, version)
            .await
            .map_err(BodyError::Archive)
    }

    fn remember(&self, id: DocumentId, version: u64, body: Body) {
        let mut recent = self.recent.lock().expect("not poisoned");
        if recent.len() >= RECENT_BODIES && !recent.contains_key(&id) {
            // Any entry will do: a miss costs one read.
            if let Some(evicted) = recent.keys().next().copied() {
                recent.remove(&evicted);
            }
        }
        match recent.get(&id) {
            Some((kept, _)) if *kept > version => {}
            _ => {
                recent.insert(id, (version, body));
            }
        }
    }

    #[cfg(test)]
    fn remembered(&self) -> usize {
        self.recent.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;
    use chrono::Utc;
    use shared::codec::{self, EventName, INLINE_BODY_BYTES, RecordBuilder};
    use shared::domain::{Document, TextOperation, Title, UserId};

    use super::*;
    use crate::decode::{Decoded, decode};

    /// Versions in memory, counting the reads.
    #[derive(Default)]
    struct Versions {
        bodies: Mutex<HashMap<(DocumentId, u64), Body>>,
        reads: AtomicUsize,
    }

    #[async_trait]
    impl BodyArchive for Versions {
        async fn body_at(&self, id: &DocumentId, version: u64) -> shared::Result<Option<Body>> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            Ok(self.bodies.lock().unwrap().get(&(*id, version)).cloned())
        }

        async fn forget(&self, id: &DocumentId) -> shared::Result<()> {
            self.bodies.lock().unwrap().retain(|(d, _), _| d != id);
            Ok(())
        }
    }

    fn document(body: &str, version: u64) -> Document {
        let ann = UserId::parse("ann").unwrap();
        Document {
            id: DocumentId::generate(),
            title: Title::parse("Long").unwrap(),
            body: Body::parse(body).unwrap(),
            owner: ann.clone(),
            collaborators: Default::default(),
            version,
            created_at: Utc::now(),
            updated_at: Utc::now(),
            updated_by: ann,
        }
    }

    /// The MODIFY record the AWS store writes from `old` to `new` by `ops`.
    fn modify(old: &Document, new: &Document, ops: Option<&TextOperation>) -> Unfinished {
        let builder = RecordBuilder {
            region: "local",
            event_source_arn: "arn:aws:dynamodb:local:000000000000:table/documents/stream/x",
        };
        let record = builder.record(
            EventName::Modify,
            &new.id,
            Some(codec::page_out_body(codec::document_to_item(old))),
            Some(codec::page_out_body(codec::document_to_item_with_ops(
                new, ops,
            ))),
            new.version,
            Utc::now(),
        );
        match decode(&codec::record_to_json(&record)).unwrap() {
            Decoded::Unfinished(unfinished) => *unfinished,
            other => panic!("not paged out: {other:?}"),
        }
    }

    #[tokio::test]
    async fn typing_reads_the_archive_once_then_applies_each_operation() {
        let versions = Arc::new(Versions::default());
        let reader = BodyReader::new(versions.clone());
        let mut doc = document(&"a".repeat(INLINE_BODY_BYTES + 10), 2);
        versions
            .bodies
            .lock()
            .unwrap()
            .insert((doc.id, 2), doc.body.clone());
        for n in 0..5 {
            let ops = TextOperation::new().retain(n).insert("x");
            let mut next = doc.clone();
            next.version += 1;
            next.body = Body::parse(ops.apply(doc.body.as_str()).unwrap()).unwrap();
            let change = reader
                .finish(modify(&doc, &next, Some(&ops)))
                .await
                .unwrap()
                .expect("kept");
            assert_eq!(change.old.as_ref().unwrap().body, doc.body);
            assert_eq!(change.new.as_ref().unwrap().body, next.body);
            assert_eq!(change.ops, Some(ops));
            doc = next;
        }
        assert_eq!(
            versions.reads.load(Ordering::SeqCst),
            1,
            "only the first record reads back"
        );
        assert_eq!(reader.remembered(), 1);
    }

    #[tokio::test]
    async fn a_title_change_reads_one_body_for_both_images() {
        let versions = Arc::new(Versions::default());
        let reader = BodyReader::new(versions.clone());
        let doc = document(&"b".repeat(INLINE_BODY_BYTES + 1), 7);
        let mut renamed = doc.clone();
        renamed.version = 8;
        renamed.title = Title::parse("Renamed").unwrap();
        versions
            .bodies
            .lock()
            .unwrap()
            .insert((doc.id, 8), doc.body.clone());
        let change = reader
            .finish(modify(&doc, &renamed, None))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(change.old.unwrap().body, doc.body);
        assert_eq!(change.new.unwrap().body, doc.body);
        assert_eq!(
            change.changed_fields,
            vec![shared::domain::Field::Title],
            "the body did not change"
        );
        assert_eq!(versions.reads.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn forgotten_versions_leave_nothing_to_deliver() {
        let versions = Arc::new(Versions::default());
        let reader = BodyReader::new(versions.clone());
        let doc = document(&"c".repeat(INLINE_BODY_BYTES + 1), 3);
        let ops = TextOperation::new().insert("x");
        let mut next = doc.clone();
        next.version = 4;
        next.body = Body::parse(ops.apply(doc.body.as_str()).unwrap()).unwrap();
        versions
            .bodies
            .lock()
            .unwrap()
            .insert((doc.id, 3), doc.body.clone());
        reader.forget(&doc.id).await.unwrap();
        assert!(
            reader
                .finish(modify(&doc, &next, Some(&ops)))
                .await
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn an_operation_that_does_not_fit_the_kept_body_is_read_back_not_trusted() {
        let versions = Arc::new(Versions::default());
        let reader = BodyReader::new(versions.clone());
        let doc = document(&"d".repeat(INLINE_BODY_BYTES + 1), 3);
        let mut next = doc.clone();
        next.version = 4;
        next.body = Body::parse(format!("{}e", doc.body.as_str())).unwrap();
        // The kept body of version 3 is shorter than the operation reaches.
        let ops = TextOperation::new()
            .retain(INLINE_BODY_BYTES + 1)
            .insert("e");
        let store = &versions.bodies;
        store
            .lock()
            .unwrap()
            .insert((doc.id, 3), Body::parse("short").unwrap());
        store.lock().unwrap().insert((doc.id, 4), next.body.clone());
        let change = reader
            .finish(modify(&doc, &next, Some(&ops)))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(change.new.unwrap().body, next.body);
        assert_eq!(versions.reads.load(Ordering::SeqCst), 2);
    }
}
