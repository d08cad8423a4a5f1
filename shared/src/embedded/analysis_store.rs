//! The embedded [`AnalysisStore`]: the latest analysis of each document, in a SQLite
//! table the change log knows nothing of, so storing a result never produces a change
//! record (and never another fan-out).

use std::path::Path;

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::sqlite::{Db, Durability};
use super::sqlite_error::map_sqlite_error;
use crate::domain::{Analysis, DocumentId};
use crate::ports::{AnalysisStore, WriteOutcome};
use crate::{Error, Result};

/// Analyses in the SQLite database.
#[derive(Debug, Clone)]
pub struct SqliteAnalysisStore {
    db: Db,
}

impl SqliteAnalysisStore {
    /// Opens the store in the database file at `path` (migrating it to the current
    /// schema).
    pub fn open(path: &Path) -> Result<Self> {
        Ok(Self {
            db: Db::open_with(path, Durability::Ordered)?,
        })
    }
}

#[async_trait]
impl AnalysisStore for SqliteAnalysisStore {
    async fn put(&self, analysis: &Analysis) -> Result<WriteOutcome> {
        let id = analysis.document_id.to_string();
        let version = analysis.version as i64;
        let json = serde_json::to_string(analysis).map_err(|e| Error::Unknown(e.into()))?;
        self.db
            .call(move |conn| {
                let written = conn
                    .prepare_cached(
                        "INSERT INTO analyses (document_id, version, analysis) VALUES (?1, ?2, ?3)
                         ON CONFLICT (document_id) DO UPDATE
                         SET version = excluded.version, analysis = excluded.analysis
                         WHERE excluded.version > analyses.version",
                    )
                    .and_then(|mut s| s.execute(params![id, version, json]))
                    .map_err(map_sqlite_error)?;
                Ok(if written == 0 {
                    WriteOutcome::AlreadyApplied
                } else {
                    WriteOutcome::Applied
                })
            })
            .await
    }

    async fn get(&self, document: &DocumentId) -> Result<Option<Analysis>> {
        let id = document.to_string();
        self.db
            .call(move |conn| {
                let json: Option<String> = conn
                    .prepare_cached("SELECT analysis FROM analyses WHERE document_id = ?1")
                    .and_then(|mut s| s.query_row([id], |row| row.get(0)).optional())
                    .map_err(map_sqlite_error)?;
                json.map(|j| {
                    serde_json::from_str(&j).map_err(|e| {
                        Error::Unknown(anyhow::anyhow!("stored analysis does not decode: {e}"))
                    })
                })
                .transpose()
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn analysis(doc: DocumentId, version: u64) -> Analysis {
        Analysis {
            document_id: doc,
            version,
            word_count: version,
            reading_time_seconds: 1,
            language: "eng".into(),
            top_terms: vec![],
            analyzed_at: Utc::now(),
        }
    }

    #[tokio::test]
    async fn an_older_analysis_never_replaces_a_newer_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteAnalysisStore::open(&dir.path().join("db")).unwrap();
        let doc = DocumentId::generate();
        assert!(store.get(&doc).await.unwrap().is_none());
        assert_eq!(
            store.put(&analysis(doc, 2)).await.unwrap(),
            WriteOutcome::Applied
        );
        assert_eq!(
            store.put(&analysis(doc, 1)).await.unwrap(),
            WriteOutcome::AlreadyApplied
        );
        assert_eq!(
            store.put(&analysis(doc, 2)).await.unwrap(),
            WriteOutcome::AlreadyApplied
        );
        assert_eq!(store.get(&doc).await.unwrap().unwrap().version, 2);
        assert_eq!(
            store.put(&analysis(doc, 3)).await.unwrap(),
            WriteOutcome::Applied
        );
        assert_eq!(store.get(&doc).await.unwrap().unwrap().word_count, 3);
    }
}
