//! Point-in-time versions of a document and the outcome of an edit.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::{Body, DocumentId, TextOperation, Title, UserId};

/// How many versions back an edit's base may be: the server transforms an edit against
/// at most this many committed operations (it keeps them all, but this bounds the work
/// one edit can cause). Older bases are refused with
/// [`Error::BaseVersionGone`](crate::Error::BaseVersionGone).
pub const KEPT_OPERATIONS: u64 = 1_000;

/// A document exactly as it was at one version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DocumentVersion {
    #[schema(value_type = String, format = Uuid)]
    pub id: DocumentId,
    pub version: u64,
    pub title: Title,
    pub body: Body,
    /// Who made this version.
    #[schema(value_type = String)]
    pub actor: UserId,
    /// When this version was committed.
    pub at: DateTime<Utc>,
}

/// A committed edit: the operation as applied to `version - 1` after it was transformed
/// against everything committed since the client's base.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EditOutcome {
    pub version: u64,
    pub base_version: u64,
    pub ops: TextOperation,
}
