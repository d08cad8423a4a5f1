//! The embedded [`AuditLog`]: one SQLite row per (document, version), inserted once and
//! never updated, so a redelivered change finds its entry already there.
//!
//! Appends go through a [`GroupCommit`] writer: the stream handler appends for many
//! documents at once, and each durable commit (an fsync) then carries all of them.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::group_commit::GroupCommit;
use super::sqlite::{Db, Durability};
use super::sqlite_error::map_sqlite_error;
use crate::domain::{AuditEntry, DocumentId};
use crate::ports::{AuditLog, WriteOutcome};
use crate::{Error, Result};

/// The audit trail in the SQLite database.
#[derive(Debug, Clone)]
pub struct SqliteAuditLog {
    db: Db,
    writer: Arc<GroupCommit>,
}

impl SqliteAuditLog {
    /// Opens the trail in the database file at `path` (migrating it to the current
    /// schema).
    pub fn open(path: &Path) -> Result<Self> {
        Ok(Self {
            db: Db::open(path)?,
            writer: Arc::new(GroupCommit::open_with(path, "audit", Durability::Ordered)?),
        })
    }
}

/// An entry as it is stored.
struct Row {
    document_id: String,
    version: i64,
    json: String,
}

impl Row {
    fn of(entry: &AuditEntry) -> Result<Self> {
        Ok(Self {
            document_id: entry.document_id.to_string(),
            version: entry.version as i64,
            json: serde_json::to_string(entry).map_err(|e| Error::Unknown(e.into()))?,
        })
    }

    /// Inserts the row unless its (document, version) has one.
    fn insert(&self, conn: &rusqlite::Connection) -> Result<WriteOutcome> {
        let inserted = conn
            .prepare_cached(
                "INSERT INTO audit_log (document_id, version, entry) VALUES (?1, ?2, ?3)
                 ON CONFLICT DO NOTHING",
            )
            .and_then(|mut s| s.execute(params![self.document_id, self.version, self.json]))
            .map_err(map_sqlite_error)?;
        Ok(if inserted == 0 {
            WriteOutcome::AlreadyApplied
        } else {
            WriteOutcome::Applied
        })
    }
}

fn decode(json: &str) -> Result<AuditEntry> {
    serde_json::from_str(json)
        .map_err(|e| Error::Unknown(anyhow::anyhow!("stored audit entry does not decode: {e}")))
}

#[async_trait]
impl AuditLog for SqliteAuditLog {
    async fn append(&self, entry: &AuditEntry) -> Result<WriteOutcome> {
        let row = Row::of(entry)?;
        self.writer.write(move |conn| row.insert(conn)).await
    }

    async fn append_all(&self, entries: &[AuditEntry]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let rows = entries.iter().map(Row::of).collect::<Result<Vec<_>>>()?;
        self.writer
            .write(move |conn| {
                for row in rows {
                    row.insert(conn)?;
                }
                Ok(())
            })
            .await
    }

    async fn list(
        &self,
        document: &DocumentId,
        after_version: Option<u64>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>> {
        let id = document.to_string();
        // Past the largest stored version nothing follows (no wrap to -1).
        let after = after_version.map_or(-1, |v| i64::try_from(v).unwrap_or(i64::MAX));
        self.db
            .call(move |conn| {
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT entry FROM audit_log WHERE document_id = ?1 AND version > ?2
                         ORDER BY version LIMIT ?3",
                    )
                    .map_err(map_sqlite_error)?;
                let rows = stmt
                    .query_map(params![id, after, limit as i64], |row| {
                        row.get::<_, String>(0)
                    })
                    .map_err(map_sqlite_error)?;
                rows.map(|row| decode(&row.map_err(map_sqlite_error)?))
                    .collect()
            })
            .await
    }

    async fn get(&self, document: &DocumentId, version: u64) -> Result<Option<AuditEntry>> {
        let id = document.to_string();
        self.db
            .call(move |conn| {
                let json: Option<String> = conn
                    .prepare_cached(
                        "SELECT entry FROM audit_log WHERE document_id = ?1 AND version = ?2",
                    )
                    .and_then(|mut s| {
                        s.query_row(params![id, version as i64], |row| row.get(0))
                            .optional()
                    })
                    .map_err(map_sqlite_error)?;
                json.as_deref().map(decode).transpose()
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AuditDetail, ChangeKind, UserId};
    use chrono::Utc;

    fn entry(doc: DocumentId, version: u64, event: &str) -> AuditEntry {
        AuditEntry {
            event_id: event.into(),
            document_id: doc,
            version,
            action: ChangeKind::Updated,
            actor: UserId::parse("ann").unwrap(),
            at: Utc::now(),
            changed_fields: vec![],
            detail: AuditDetail::default(),
        }
    }

    #[tokio::test]
    async fn entries_are_written_once_per_version() {
        let dir = tempfile::tempdir().unwrap();
        let log = SqliteAuditLog::open(&dir.path().join("db")).unwrap();
        let doc = DocumentId::generate();
        assert_eq!(
            log.append(&entry(doc, 2, "a")).await.unwrap(),
            WriteOutcome::Applied
        );
        assert_eq!(
            log.append(&entry(doc, 1, "b")).await.unwrap(),
            WriteOutcome::Applied
        );
        assert_eq!(
            log.append(&entry(doc, 2, "c")).await.unwrap(),
            WriteOutcome::AlreadyApplied
        );
        let all = log.list(&doc, None, 10).await.unwrap();
        assert_eq!(all.iter().map(|e| e.version).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(all[1].event_id, "a");
        assert_eq!(log.list(&doc, Some(1), 10).await.unwrap().len(), 1);
        assert_eq!(log.get(&doc, 1).await.unwrap().unwrap().event_id, "b");
        assert!(log.get(&doc, 3).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_batch_of_entries_is_appended_together_and_again_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let log = SqliteAuditLog::open(&dir.path().join("db")).unwrap();
        let doc = DocumentId::generate();
        log.append(&entry(doc, 2, "first")).await.unwrap();
        let batch = [entry(doc, 1, "a"), entry(doc, 2, "b"), entry(doc, 3, "c")];
        log.append_all(&batch).await.unwrap();
        log.append_all(&batch).await.unwrap();
        log.append_all(&[]).await.unwrap();
        let all = log.list(&doc, None, 10).await.unwrap();
        let kept: Vec<_> = all
            .iter()
            .map(|e| (e.version, e.event_id.as_str()))
            .collect();
        assert_eq!(kept, [(1, "a"), (2, "first"), (3, "c")]);
    }
}
