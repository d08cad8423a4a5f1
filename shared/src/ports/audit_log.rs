use async_trait::async_trait;

use super::WriteOutcome;
use crate::Result;
use crate::domain::{AuditEntry, DocumentId};

/// The append-only audit trail, keyed by (document, version).
#[async_trait]
pub trait AuditLog: Send + Sync + 'static {
    /// Appends the entry; if an entry for its (document, version) exists, changes nothing
    /// and returns `AlreadyApplied`.
    ///
    /// Errors: [`Error::Unavailable`](crate::Error::Unavailable) on a transient failure.
    async fn append(&self, entry: &AuditEntry) -> Result<WriteOutcome>;

    /// Appends every entry as [`AuditLog::append`] appends one; a log that can commit
    /// them together does (the embedded one: one transaction). Errors: `Unavailable`,
    /// after which some of them may have been appended (appending them again changes
    /// nothing).
    async fn append_all(&self, entries: &[AuditEntry]) -> Result<()> {
        for entry in entries {
            self.append(entry).await?;
        }
        Ok(())
    }

    /// Entries of a document with a version above `after_version`, oldest first, at most
    /// `limit` of them. Errors: `Unavailable`.
    async fn list(
        &self,
        document: &DocumentId,
        after_version: Option<u64>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>>;

    /// The entry for one version. Errors: `Unavailable`; a missing entry is `Ok(None)`.
    async fn get(&self, document: &DocumentId, version: u64) -> Result<Option<AuditEntry>>;
}
