//! The change log: the embedded twin of the documents table's DynamoDB stream.
//!
//! Each row is one stream record, exactly as Lambda would receive it, written by the
//! document store in the transaction of the mutation it describes. Sequence numbers grow
//! strictly (AUTOINCREMENT never reuses one, even after old rows are trimmed). The
//! stream poller reads it through a [`ChangeFeed`], which also wakes it on every commit
//! and keeps its per-partition checkpoints.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use aws_lambda_events::dynamodb::EventRecord;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::watch;

use super::sqlite::{ConnectionPool, map_sqlite_error, open_database};
use crate::Result;
use crate::codec;
use crate::domain::DocumentId;

/// `awsRegion` of embedded records.
pub const REGION: &str = "local";
/// `eventSourceARN` of embedded records.
pub const EVENT_SOURCE_ARN: &str =
    "arn:aws:dynamodb:local:000000000000:table/documents/stream/embedded";

/// Appends `record` with the next sequence number; returns that number.
pub(crate) fn append(
    conn: &Connection,
    document: &DocumentId,
    mut record: EventRecord,
    committed_at: DateTime<Utc>,
) -> rusqlite::Result<u64> {
    let seq = next_seq(conn)?;
    record.change.sequence_number = Some(codec::format_sequence_number(seq));
    let json = codec::record_to_json(&record).to_string();
    conn.prepare_cached(
        "INSERT INTO change_log (seq, document_id, record, committed_at_ms) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![
        seq as i64,
        document.to_string(),
        json,
        committed_at.timestamp_millis()
    ])?;
    Ok(seq)
}

fn next_seq(conn: &Connection) -> rusqlite::Result<u64> {
    let last: Option<i64> = conn
        .prepare_cached("SELECT seq FROM sqlite_sequence WHERE name = 'change_log'")?
        .query_row([], |row| row.get(0))
        .optional()?;
    Ok(last.unwrap_or(0) as u64 + 1)
}

/// The highest sequence number ever written (0 when none).
pub(crate) fn latest_seq(conn: &Connection) -> rusqlite::Result<u64> {
    Ok(next_seq(conn)? - 1)
}

/// One change-log row.
#[derive(Debug, Clone)]
pub struct ChangeRecord {
    pub seq: u64,
    /// The document the record is about (its partition key).
    pub document_id: String,
    /// The DynamoDB stream record, as JSON.
    pub record: String,
    /// When the mutation was committed.
    pub committed_at: DateTime<Utc>,
}

/// A reader of the change log, with its commit wake-ups and checkpoints.
#[derive(Clone)]
pub struct ChangeFeed {
    pool: Arc<ConnectionPool>,
    wake: watch::Receiver<u64>,
}

impl ChangeFeed {
    pub(crate) fn new(pool: Arc<ConnectionPool>, wake: watch::Receiver<u64>) -> Self {
        Self { pool, wake }
    }

    /// A feed on the database at `path` for a process that does not write documents
    /// (operator commands): it never wakes; poll it.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = open_database(path)?;
        let latest = latest_seq(&conn).map_err(map_sqlite_error)?;
        let (_, wake) = watch::channel(latest);
        Ok(Self::new(Arc::new(ConnectionPool::new(path)), wake))
    }

    /// Changes to the latest committed sequence number: wait on it instead of polling.
    pub fn wake(&self) -> watch::Receiver<u64> {
        self.wake.clone()
    }

    /// Up to `limit` records with a sequence number above `after`, in order.
    pub async fn read_after(&self, after: u64, limit: usize) -> Result<Vec<ChangeRecord>> {
        self.pool
            .call(move |conn| {
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT seq, document_id, record, committed_at_ms FROM change_log
                         WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                    )
                    .map_err(map_sqlite_error)?;
                let rows = stmt
                    .query_map(params![after as i64, limit as i64], |row| {
                        Ok(ChangeRecord {
                            seq: row.get::<_, i64>(0)? as u64,
                            document_id: row.get(1)?,
                            record: row.get(2)?,
                            committed_at: DateTime::from_timestamp_millis(row.get(3)?)
                                .unwrap_or_default(),
                        })
                    })
                    .map_err(map_sqlite_error)?;
                rows.map(|r| r.map_err(map_sqlite_error)).collect()
            })
            .await
    }

    /// The highest sequence number committed so far.
    pub async fn latest_seq(&self) -> Result<u64> {
        self.pool
            .call(|conn| latest_seq(conn).map_err(map_sqlite_error))
            .await
    }

    /// The saved checkpoint of every partition: the sequence number up to which all of
    /// that partition's records are processed.
    pub async fn checkpoints(&self) -> Result<BTreeMap<u32, u64>> {
        self.pool
            .call(|conn| {
                let mut stmt = conn
                    .prepare_cached("SELECT partition, seq FROM stream_checkpoints")
                    .map_err(map_sqlite_error)?;
                let rows = stmt
                    .query_map([], |row| {
                        Ok((row.get::<_, i64>(0)? as u32, row.get::<_, i64>(1)? as u64))
                    })
                    .map_err(map_sqlite_error)?;
                rows.map(|r| r.map_err(map_sqlite_error)).collect()
            })
            .await
    }

    /// Saves a partition's checkpoint (durably, before returning).
    pub async fn save_checkpoint(&self, partition: u32, seq: u64) -> Result<()> {
        self.pool
            .call(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO stream_checkpoints (partition, seq) VALUES (?1, ?2)
                     ON CONFLICT (partition) DO UPDATE SET seq = excluded.seq",
                )
                .and_then(|mut s| s.execute(params![partition as i64, seq as i64]))
                .map_err(map_sqlite_error)?;
                Ok(())
            })
            .await
    }

    /// Replaces all checkpoints at once (when the number of partitions changes).
    pub async fn reset_checkpoints(&self, checkpoints: BTreeMap<u32, u64>) -> Result<()> {
        self.pool
            .call(move |conn| {
                let tx = conn.unchecked_transaction().map_err(map_sqlite_error)?;
                tx.execute("DELETE FROM stream_checkpoints", [])
                    .map_err(map_sqlite_error)?;
                for (partition, seq) in checkpoints {
                    tx.execute(
                        "INSERT INTO stream_checkpoints (partition, seq) VALUES (?1, ?2)",
                        params![partition as i64, seq as i64],
                    )
                    .map_err(map_sqlite_error)?;
                }
                tx.commit().map_err(map_sqlite_error)
            })
            .await
    }

    /// Deletes records at or below `seq` committed before `before` (the stream's
    /// retention); returns how many went.
    pub async fn trim(&self, seq: u64, before: DateTime<Utc>) -> Result<u64> {
        self.pool
            .call(move |conn| {
                conn.execute(
                    "DELETE FROM change_log WHERE seq <= ?1 AND committed_at_ms < ?2",
                    params![seq as i64, before.timestamp_millis()],
                )
                .map(|n| n as u64)
                .map_err(map_sqlite_error)
            })
            .await
    }
}
