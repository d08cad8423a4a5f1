//! A change to a document as the fan-out sees it: decoded once from a stream record,
//! then handed to every sink.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Document, DocumentId, TextOperation, UserId};

/// What happened to the document. Also the `action` of an audit entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Created,
    Updated,
    Deleted,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Created => "created",
            ChangeKind::Updated => "updated",
            ChangeKind::Deleted => "deleted",
        }
    }

    /// The WebSocket frame type that announces a change of this kind.
    pub fn frame_type(self) -> &'static str {
        match self {
            ChangeKind::Created => "document.created",
            ChangeKind::Updated => "document.updated",
            ChangeKind::Deleted => "document.deleted",
        }
    }
}

/// A part of a document that a change can touch.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Field {
    Title,
    Body,
    Collaborators,
}

impl Field {
    pub fn as_str(self) -> &'static str {
        match self {
            Field::Title => "title",
            Field::Body => "body",
            Field::Collaborators => "collaborators",
        }
    }
}

/// One committed change, with the document before and after it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeEvent {
    pub kind: ChangeKind,
    pub document_id: DocumentId,
    /// The version this change produced (a deletion is a version of its own).
    pub version: u64,
    pub actor: UserId,
    pub at: DateTime<Utc>,
    pub changed_fields: Vec<Field>,
    /// The document before the change; `None` for a creation.
    pub old: Option<Document>,
    /// The document after the change; `None` for a deletion.
    pub new: Option<Document>,
    /// The stream record's sequence number, for logs and partial batch responses.
    pub sequence_number: String,
    /// The operation that turned the body of `version - 1` into this version's, when
    /// the body changed (an update only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ops: Option<TextOperation>,
}

impl ChangeEvent {
    /// A creation or an update: `new` is the document as committed, `old` what it replaced.
    pub fn written(old: Option<Document>, new: Document, sequence_number: String) -> Self {
        let changed_fields = match &old {
            None => vec![Field::Title, Field::Body, Field::Collaborators],
            Some(old) => changed_fields(old, &new),
        };
        Self {
            kind: if old.is_some() {
                ChangeKind::Updated
            } else {
                ChangeKind::Created
            },
            document_id: new.id,
            version: new.version,
            actor: new.updated_by.clone(),
            at: new.updated_at,
            changed_fields,
            old,
            new: Some(new),
            sequence_number,
            ops: None,
        }
    }

    /// The same change carrying the body operation it made.
    pub fn with_ops(mut self, ops: Option<TextOperation>) -> Self {
        self.ops = ops;
        self
    }

    /// A deletion. `last` is the document as it stood when deleted; `version`, `actor` and
    /// `at` describe the deletion itself.
    pub fn deleted(
        last: Document,
        version: u64,
        actor: UserId,
        at: DateTime<Utc>,
        sequence_number: String,
    ) -> Self {
        Self {
            kind: ChangeKind::Deleted,
            document_id: last.id,
            version,
            actor,
            at,
            changed_fields: Vec::new(),
            old: Some(last),
            new: None,
            sequence_number,
            ops: None,
        }
    }

    /// The document as of this change: the new state, or for a deletion the last one.
    pub fn latest(&self) -> &Document {
        self.new
            .as_ref()
            .or(self.old.as_ref())
            .expect("a change has at least one image")
    }

    pub fn touches(&self, field: Field) -> bool {
        self.changed_fields.contains(&field)
    }
}

/// The fields whose values differ between two states of a document.
pub fn changed_fields(old: &Document, new: &Document) -> Vec<Field> {
    let mut fields = Vec::new();
    if old.title != new.title {
        fields.push(Field::Title);
    }
    if old.body != new.body {
        fields.push(Field::Body);
    }
    if old.collaborators != new.collaborators {
        fields.push(Field::Collaborators);
    }
    fields
}
