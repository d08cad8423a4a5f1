//! The embedded [`DeadLetterQueue`]: a SQLite table of messages the stream handler or
//! the analysis worker gave up on, kept whole with the reason until an operator
//! redrives them.
//!
//! Letters are numbered in arrival order (AUTOINCREMENT), so "oldest first" is a key
//! order and an id is never reused. The analysis queue moves its dead jobs into this
//! same table, in the transaction that removes them from the queue.

use std::path::Path;

use async_trait::async_trait;
use chrono::DateTime;
use rusqlite::{Connection, params};

use super::sqlite::{Db, Durability};
use super::sqlite_error::map_sqlite_error;
use crate::ports::{DeadLetter, DeadLetterQueue, DeadLetterSource};
use crate::{Error, Result};

/// Dead letters in the SQLite database.
#[derive(Debug, Clone)]
pub struct SqliteDeadLetterQueue {
    db: Db,
}

impl SqliteDeadLetterQueue {
    /// Opens the queue in the database file at `path` (migrating it to the current
    /// schema).
    pub fn open(path: &Path) -> Result<Self> {
        Ok(Self {
            db: Db::open_with(path, Durability::Ordered)?,
        })
    }
}

fn source_name(source: DeadLetterSource) -> &'static str {
    match source {
        DeadLetterSource::Stream => "stream",
        DeadLetterSource::Analysis => "analysis",
        DeadLetterSource::Webhook => "webhook",
    }
}

fn parse_source(raw: &str) -> Option<DeadLetterSource> {
    match raw {
        "stream" => Some(DeadLetterSource::Stream),
        "analysis" => Some(DeadLetterSource::Analysis),
        "webhook" => Some(DeadLetterSource::Webhook),
        _ => None,
    }
}

/// Inserts a letter on `conn` (inside the caller's transaction, if any); returns its id.
pub(crate) fn insert(conn: &Connection, letter: &DeadLetter) -> rusqlite::Result<String> {
    conn.prepare_cached(
        "INSERT INTO dead_letters (source, payload, reason, attempts, failed_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        source_name(letter.source),
        letter.payload.to_string(),
        letter.reason,
        letter.attempts,
        letter.failed_at.timestamp_millis()
    ])?;
    Ok(conn.last_insert_rowid().to_string())
}

#[async_trait]
impl DeadLetterQueue for SqliteDeadLetterQueue {
    async fn put(&self, letter: &DeadLetter) -> Result<String> {
        let letter = letter.clone();
        self.db
            .call(move |conn| insert(conn, &letter).map_err(map_sqlite_error))
            .await
    }

    async fn list(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        self.db
            .call(move |conn| {
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT id, source, payload, reason, attempts, failed_at_ms
                         FROM dead_letters ORDER BY id LIMIT ?1",
                    )
                    .map_err(map_sqlite_error)?;
                let rows = stmt
                    .query_map([limit.min(i64::MAX as usize) as i64], |row| {
                        Ok((
                            row.get::<_, i64>(0)?,
                            row.get::<_, String>(1)?,
                            row.get::<_, String>(2)?,
                            row.get::<_, String>(3)?,
                            row.get::<_, u32>(4)?,
                            row.get::<_, i64>(5)?,
                        ))
                    })
                    .map_err(map_sqlite_error)?;
                let mut letters = Vec::new();
                for row in rows {
                    let (id, source, payload, reason, attempts, failed_at) =
                        row.map_err(map_sqlite_error)?;
                    let source = parse_source(&source).ok_or_else(|| {
                        Error::Unknown(anyhow::anyhow!("dead letter {id}: unknown source {source}"))
                    })?;
                    // A payload that was stored as text is returned as a JSON string.
                    let payload = serde_json::from_str(&payload)
                        .unwrap_or(serde_json::Value::String(payload));
                    letters.push(DeadLetter {
                        id: id.to_string(),
                        source,
                        payload,
                        reason,
                        attempts,
                        failed_at: DateTime::from_timestamp_millis(failed_at).unwrap_or_default(),
                    });
                }
                Ok(letters)
            })
            .await
    }

    async fn remove(&self, id: &str) -> Result<()> {
        let id: i64 = id.parse().map_err(|_| Error::NotFound)?;
        self.db
            .call(move |conn| {
                let n = conn
                    .prepare_cached("DELETE FROM dead_letters WHERE id = ?1")
                    .and_then(|mut s| s.execute([id]))
                    .map_err(map_sqlite_error)?;
                if n == 0 {
                    return Err(Error::NotFound);
                }
                Ok(())
            })
            .await
    }

    async fn depth(&self) -> Result<u64> {
        self.db
            .call(|conn| {
                conn.query_row("SELECT COUNT(*) FROM dead_letters", [], |row| {
                    row.get::<_, i64>(0)
                })
                .map(|n| n as u64)
                .map_err(map_sqlite_error)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    #[tokio::test]
    async fn letters_keep_their_payload_in_arrival_order() {
        let dir = tempfile::tempdir().unwrap();
        let dlq = SqliteDeadLetterQueue::open(&dir.path().join("db")).unwrap();
        let letter = |n: u32| DeadLetter {
            id: String::new(),
            source: DeadLetterSource::Stream,
            payload: serde_json::json!({"n": n}),
            reason: format!("reason {n}"),
            attempts: n,
            failed_at: Utc::now(),
        };
        let first = dlq.put(&letter(1)).await.unwrap();
        let second = dlq.put(&letter(2)).await.unwrap();
        assert_ne!(first, second);
        let listed = dlq.list(10).await.unwrap();
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0].id, first);
        assert_eq!(listed[0].payload, serde_json::json!({"n": 1}));
        assert_eq!(listed[1].reason, "reason 2");
        assert_eq!(dlq.depth().await.unwrap(), 2);
        dlq.remove(&first).await.unwrap();
        assert!(matches!(dlq.remove(&first).await, Err(Error::NotFound)));
        assert_eq!(dlq.depth().await.unwrap(), 1);
    }
}
