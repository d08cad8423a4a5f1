//! The document rules: who may do what, versions and preconditions, merge patches.
//! The REST handlers (locally and in Lambda) are thin shells around this.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::merge_patch;
use crate::clock::Clock;
use crate::domain::{
    Access, Body, Collaborators, Document, DocumentHead, DocumentId, DocumentVersion, EditOutcome,
    KEPT_OPERATIONS, MAX_BODY_BYTES, TextOperation, Title, UserId, check_collaborators,
};
use crate::ports::{DocumentPage, DocumentStore};
use crate::{Error, Result};

/// What a client supplies to create a document.
#[derive(Debug, Clone)]
pub struct NewDocument {
    pub title: Title,
    pub body: Body,
    pub collaborators: Collaborators,
}

/// What a client supplies to replace a document's content (PUT).
#[derive(Debug, Clone)]
pub struct Replacement {
    pub title: Title,
    pub body: Body,
}

/// How many times a delete without `If-Match` retries when it races another write.
const DELETE_RACE_RETRIES: usize = 3;

/// How many times an edit is transformed again when another write commits first. Each
/// round transforms only against what committed since the last one.
const EDIT_RACE_RETRIES: usize = 32;

#[derive(Clone)]
pub struct DocumentService {
    store: Arc<dyn DocumentStore>,
    clock: Arc<dyn Clock>,
}

impl DocumentService {
    pub fn new(store: Arc<dyn DocumentStore>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    pub fn store(&self) -> &Arc<dyn DocumentStore> {
        &self.store
    }

    /// Creates a document owned by `actor`, at version 1.
    pub fn new_document(&self, actor: &UserId, input: NewDocument) -> Result<Document> {
        check_collaborators(actor, &input.collaborators)?;
        let now = self.clock.now();
        Ok(Document {
            id: DocumentId::generate(),
            title: input.title,
            body: input.body,
            owner: actor.clone(),
            collaborators: input.collaborators,
            version: 1,
            created_at: now,
            updated_at: now,
            updated_by: actor.clone(),
        })
    }

    /// Creates and stores a document owned by `actor`.
    pub async fn create(&self, actor: &UserId, input: NewDocument) -> Result<Document> {
        let doc = self.new_document(actor, input)?;
        self.store.create(&doc).await?;
        Ok(doc)
    }

    /// The document and what `actor` may do with it. `NotFound` when it does not exist
    /// for them.
    pub async fn get(&self, actor: &UserId, id: &DocumentId) -> Result<(Document, Access)> {
        let doc = self.store.get(id).await?.ok_or(Error::NotFound)?;
        let access = doc.access_for(actor).ok_or(Error::NotFound)?;
        Ok((doc, access))
    }

    /// The document's head and what `actor` may do with it, without reading its body:
    /// the access check of every read that is not the document itself. `NotFound` when
    /// it does not exist for them.
    pub async fn access(&self, actor: &UserId, id: &DocumentId) -> Result<(DocumentHead, Access)> {
        super::readable(self.store.as_ref(), actor, id).await
    }

    /// The documents `actor` owns or collaborates on, newest first.
    pub async fn list(
        &self,
        actor: &UserId,
        limit: usize,
        after: Option<&DocumentId>,
    ) -> Result<DocumentPage> {
        self.store.list_for_member(actor, limit, after).await
    }

    /// Replaces title and body (PUT). Needs `If-Match`; editors and the owner only.
    pub async fn replace(
        &self,
        actor: &UserId,
        id: &DocumentId,
        if_match: Option<u64>,
        replacement: Replacement,
    ) -> Result<Document> {
        let (current, access) = self.get(actor, id).await?;
        if !access.can_edit() {
            return Err(Error::Forbidden("viewers cannot edit"));
        }
        let expected = check_precondition(if_match, &current)?;
        let ops = TextOperation::diff(current.body.as_str(), replacement.body.as_str());
        let mut next = current;
        next.title = replacement.title;
        next.body = replacement.body;
        self.commit(actor, next, expected, &ops).await
    }

    /// Applies a text operation made on `base` to the body: transforms it against every
    /// version committed since (those go first where both insert at one place) and
    /// commits the result as the next version. Never refused as stale; a base older than
    /// the kept operations is [`Error::BaseVersionGone`].
    pub async fn edit(
        &self,
        actor: &UserId,
        id: &DocumentId,
        base: u64,
        ops: TextOperation,
    ) -> Result<EditOutcome> {
        let (mut base, mut ops) = (base, ops);
        for _ in 0..EDIT_RACE_RETRIES {
            let (current, access) = self.get(actor, id).await?;
            if !access.can_edit() {
                return Err(Error::Forbidden("viewers cannot edit"));
            }
            if base == 0 || base > current.version {
                return Err(Error::InvalidOperation(format!(
                    "baseVersion {base} is not a version of this document (its version is {})",
                    current.version
                )));
            }
            if current.version - base > KEPT_OPERATIONS {
                return Err(Error::BaseVersionGone {
                    oldest: current.version - KEPT_OPERATIONS,
                });
            }
            let committed = if current.version > base {
                let mut committed = self.store.operations_since(id, base).await?;
                let behind = (current.version - base) as usize;
                if committed.len() < behind {
                    // A version row is missing: the kept operations do not reach back.
                    return Err(Error::BaseVersionGone {
                        oldest: current.version,
                    });
                }
                // A commit may have landed after `current` was read.
                committed.truncate(behind);
                committed
            } else {
                Vec::new()
            };
            // The operation must fit the body it was made on, not just the current one:
            // the base's length is the current one less what came since.
            let base_chars = current.body.as_str().chars().count() as i64
                - committed.iter().map(TextOperation::len_delta).sum::<i64>();
            if ops.reach() as i64 > base_chars {
                return Err(Error::InvalidOperation(format!(
                    "the operation reaches {} characters but the body at version {base} has {base_chars}",
                    ops.reach()
                )));
            }
            for done in &committed {
                ops = TextOperation::transform(done, &ops).1;
            }
            base = current.version;
            let body = ops
                .apply(current.body.as_str())
                .map_err(|e| Error::InvalidOperation(e.to_string()))?;
            if body.len() > MAX_BODY_BYTES {
                return Err(Error::TooLarge(format!(
                    "the edited body would be {} bytes of UTF-8; the limit is {MAX_BODY_BYTES}",
                    body.len()
                )));
            }
            let mut next = current;
            next.body = Body::parse(body).map_err(Error::Invalid)?;
            match self.commit(actor, next, base, &ops).await {
                Ok(doc) => {
                    return Ok(EditOutcome {
                        version: doc.version,
                        base_version: base,
                        ops,
                    });
                }
                // Another write got in first: transform against it and try again.
                Err(Error::VersionMismatch { .. }) => continue,
                Err(other) => return Err(other),
            }
        }
        Err(Error::Unavailable(
            "the document kept changing while the edit was applied".into(),
        ))
    }

    /// The document as it was at `version`, for a reader with access to it now.
    pub async fn version(
        &self,
        actor: &UserId,
        id: &DocumentId,
        version: u64,
    ) -> Result<DocumentVersion> {
        let (current, _) = self.access(actor, id).await?;
        if version == 0 || version > current.version {
            return Err(Error::NotFound);
        }
        self.store
            .version(id, version)
            .await?
            .ok_or(Error::NotFound)
    }

    /// Applies a JSON Merge Patch (RFC 7396) of `title`, `body` and `collaborators`.
    /// Changing collaborators is for the owner only; other members are refused.
    pub async fn patch(
        &self,
        actor: &UserId,
        id: &DocumentId,
        if_match: Option<u64>,
        patch: &Value,
    ) -> Result<Document> {
        let Value::Object(members) = patch else {
            return Err(Error::invalid("patch", "must be a JSON object"));
        };
        if let Some(unknown) = members
            .keys()
            .find(|k| !matches!(k.as_str(), "title" | "body" | "collaborators"))
        {
            return Err(Error::invalid(
                "patch",
                format!(
                    "unknown or read-only field `{unknown}`: only title, body and collaborators can be patched"
                ),
            ));
        }
        let (current, access) = self.get(actor, id).await?;
        if !access.can_edit() {
            return Err(Error::Forbidden("viewers cannot edit"));
        }
        if members.contains_key("collaborators") && !access.is_owner() {
            return Err(Error::Forbidden("only the owner can change collaborators"));
        }
        let expected = check_precondition(if_match, &current)?;

        let mut target = json!({
            "title": current.title,
            "body": current.body,
            "collaborators": current.collaborators,
        });
        merge_patch::apply(&mut target, patch).map_err(|m| Error::invalid("patch", m))?;
        let Value::Object(mut merged) = target else {
            unreachable!("an object patch keeps the target an object")
        };
        let before = current.body.clone();
        let mut next = current;
        next.title = take(&mut merged, "title", "title cannot be removed")?;
        next.body = take(
            &mut merged,
            "body",
            "body cannot be removed: set it to \"\"",
        )?;
        next.collaborators = match merged.remove("collaborators") {
            None => Collaborators::new(),
            Some(value) => serde_json::from_value(value).map_err(|e| {
                Error::invalid(
                    "collaborators",
                    format!("must map user ids to \"editor\" or \"viewer\": {e}"),
                )
            })?,
        };
        check_collaborators(&next.owner, &next.collaborators)?;
        let ops = TextOperation::diff(before.as_str(), next.body.as_str());
        self.commit(actor, next, expected, &ops).await
    }

    /// Deletes the document (owner only). With `If-Match`, only that version.
    pub async fn delete(
        &self,
        actor: &UserId,
        id: &DocumentId,
        if_match: Option<u64>,
    ) -> Result<()> {
        for _ in 0..DELETE_RACE_RETRIES {
            let (current, access) = self.get(actor, id).await?;
            if !access.is_owner() {
                return Err(Error::Forbidden("only the owner can delete a document"));
            }
            let expected = match if_match {
                Some(v) if v != current.version => {
                    return Err(Error::VersionMismatch {
                        current: current.version,
                    });
                }
                _ => current.version,
            };
            let mut last = current;
            last.version = expected + 1;
            last.updated_at = self.clock.now();
            last.updated_by = actor.clone();
            match self.store.delete(&last).await {
                Err(Error::VersionMismatch { .. }) if if_match.is_none() => continue,
                other => return other,
            }
        }
        Err(Error::Unavailable(
            "the document kept changing while being deleted".into(),
        ))
    }

    async fn commit(
        &self,
        actor: &UserId,
        mut next: Document,
        expected: u64,
        body_ops: &TextOperation,
    ) -> Result<Document> {
        next.version = expected + 1;
        next.updated_at = self.clock.now();
        next.updated_by = actor.clone();
        match self.store.update(&next, body_ops).await {
            Ok(()) => Ok(next),
            Err(Error::VersionMismatch { current }) => Err(Error::VersionMismatch { current }),
            Err(other) => Err(other),
        }
    }
}

fn check_precondition(if_match: Option<u64>, current: &Document) -> Result<u64> {
    match if_match {
        None => Err(Error::PreconditionRequired),
        Some(v) if v != current.version => Err(Error::VersionMismatch {
            current: current.version,
        }),
        Some(v) => Ok(v),
    }
}

fn take<T: serde::de::DeserializeOwned>(
    merged: &mut Map<String, Value>,
    field: &'static str,
    missing: &'static str,
) -> Result<T> {
    let value = merged
        .remove(field)
        .ok_or_else(|| Error::invalid(field, missing))?;
    serde_json::from_value(value).map_err(|e| Error::invalid(field, e.to_string()))
}
