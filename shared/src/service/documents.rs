//! The document rules: who may do what, versions and preconditions, merge patches.
//! The REST handlers (locally and in Lambda) are thin shells around this.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::merge_patch;
use crate::clock::Clock;
use crate::domain::{
    Access, Body, Collaborators, Document, DocumentId, Title, UserId, check_collaborators,
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
        let mut next = current;
        next.title = replacement.title;
        next.body = replacement.body;
        self.commit(actor, next, expected).await
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
        self.commit(actor, next, expected).await
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

    async fn commit(&self, actor: &UserId, mut next: Document, expected: u64) -> Result<Document> {
        next.version = expected + 1;
        next.updated_at = self.clock.now();
        next.updated_by = actor.clone();
        match self.store.update(&next).await {
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
