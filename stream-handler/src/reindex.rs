//! Rebuilding the embedded search index from the documents themselves: for an index
//! that was lost, damaged, or built by an older schema.
//!
//! The documents are read in pages straight from the embedded store's `documents` table
//! (in id order, so memory stays bounded), indexed, and committed once at the end.
//! Tombstones are not rebuilt: deleted documents are simply absent, and the search's
//! access check against the store keeps them out of results in any case.

use std::path::Path;

use rusqlite::params;
use shared::domain::Document;
use shared::embedded::TantivySearchIndex;
use shared::embedded::sqlite::{Db, map_sqlite_error};
use shared::ports::{SearchDocument, SearchIndex};
use shared::{Error, Result};

/// Documents read per page.
const PAGE: usize = 500;

/// How many documents the store at `db` holds.
pub async fn count_documents(db: &Db) -> Result<u64> {
    db.call(|conn| {
        conn.query_row("SELECT COUNT(*) FROM documents", [], |row| {
            row.get::<_, i64>(0)
        })
        .map(|n| n as u64)
        .map_err(map_sqlite_error)
    })
    .await
}

async fn page_after(db: &Db, after: String) -> Result<Vec<Document>> {
    db.call(move |conn| {
        let mut stmt = conn
            .prepare_cached("SELECT id, doc FROM documents WHERE id > ?1 ORDER BY id LIMIT ?2")
            .map_err(map_sqlite_error)?;
        let rows = stmt
            .query_map(params![after, PAGE as i64], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
            })
            .map_err(map_sqlite_error)?;
        let mut docs = Vec::new();
        for row in rows {
            let (id, json) = row.map_err(map_sqlite_error)?;
            let doc = serde_json::from_str(&json).map_err(|e| {
                Error::Unknown(anyhow::anyhow!("stored document {id} does not decode: {e}"))
            })?;
            docs.push(doc);
        }
        Ok(docs)
    })
    .await
}

/// Clears `index` and indexes every document of the database at `db_path`, calling
/// `progress(done, total)` as it goes; returns how many were indexed.
pub async fn reindex(
    index: &TantivySearchIndex,
    db_path: &Path,
    progress: impl Fn(u64, u64),
) -> Result<u64> {
    let db = Db::open(db_path)?;
    let total = count_documents(&db).await?;
    index.clear().await?;
    let mut done = 0;
    let mut after = String::new();
    loop {
        let docs = page_after(&db, after.clone()).await?;
        let Some(last) = docs.last() else {
            break;
        };
        after = last.id.to_string();
        for doc in &docs {
            index.upsert(&SearchDocument::from(doc)).await?;
            done += 1;
            progress(done, total.max(done));
        }
    }
    index.flush().await?;
    Ok(done)
}
