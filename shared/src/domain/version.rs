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

/// How often a stored version keeps the whole body besides its operation: any version
/// is then rebuilt from the nearest snapshot at or before it and at most
/// `SNAPSHOT_EVERY - 1` operations.
pub const SNAPSHOT_EVERY: u64 = 64;

/// Whether the stored version `version`, whose body operation from the version before
/// is `ops`, keeps the whole body: version 1, every [`SNAPSHOT_EVERY`]-th, and any whose
/// operation is not known.
pub fn keeps_snapshot(version: u64, ops: Option<&TextOperation>) -> bool {
    ops.is_none() || version == 1 || version.is_multiple_of(SNAPSHOT_EVERY)
}

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
