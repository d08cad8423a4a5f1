//! The audit trail: one entry per (document, version), never rewritten.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ChangeKind, DocumentId, Field, Role, TextOperation, UserId};

/// One entry of a document's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    /// The stream record's `eventID`.
    pub event_id: String,
    #[schema(value_type = String, format = Uuid)]
    pub document_id: DocumentId,
    pub version: u64,
    pub action: ChangeKind,
    #[schema(value_type = String)]
    pub actor: UserId,
    pub at: DateTime<Utc>,
    pub changed_fields: Vec<Field>,
    pub detail: AuditDetail,
}

/// What it takes to review a change.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditDetail {
    /// The title before and after, when it changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<TextChange>,
    /// A unified diff of the body, when it changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_diff: Option<String>,
    /// The body operation from the version before (OPS), when the body changed: what a
    /// client holding that version applies to catch up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub ops: Option<TextOperation>,
    /// Collaborators added, removed or given another role.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub collaborators: Vec<CollaboratorChange>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TextChange {
    pub from: Option<String>,
    pub to: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CollaboratorChange {
    #[schema(value_type = String)]
    pub user: UserId,
    /// The role before the change; `None` when the user was added.
    pub from: Option<Role>,
    /// The role after the change; `None` when the user was removed.
    pub to: Option<Role>,
}
