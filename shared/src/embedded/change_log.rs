//! The change log: the embedded twin of the documents table's DynamoDB stream.
//!
//! Each row is one stream record, exactly as Lambda would receive it, written by the
//! document store in the transaction of the mutation it describes. Sequence numbers grow
//! strictly (AUTOINCREMENT never reuses one, even after old rows are trimmed). The
//! stream poller reads it through a [`ChangeFeed`], which also wakes it on every commit,
//! keeps its per-partition checkpoints, and answers a reader that keeps up from the
//! log's [tail](super::change_tail) in memory.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use aws_lambda_events::dynamodb::EventRecord;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::watch;

use super::change_tail::{Logged, Tail};
use super::sqlite::{ConnectionPool, Durability, open_database};
use super::sqlite_error::map_sqlite_error;
use crate::Result;
use crate::codec;
use crate::domain::DocumentId;

/// `awsRegion` of embedded records.
pub const REGION: &str = "local";
/// `eventSourceARN` of embedded records.
pub const EVENT_SOURCE_ARN: &str =
    "arn:aws:dynamodb:local:000000000000:table/documents/stream/embedded";

/// Shards of the change log: the least common multiple of the parallelization factors
/// 1..=10, so the shard modulo any of them is the document's partition for it.
const SHARDS: u64 = 2520;

/// FNV-1a of a document id: stable across processes and builds, so partitions and
/// checkpoints keep their meaning after a restart.
fn fnv1a(document_id: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in document_id.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// The shard of a document's records (stored with each of them).
fn shard_of(document_id: &str) -> u64 {
    fnv1a(document_id) % SHARDS
}

/// The partition of a document among `factor` (1..=10; 0 counts as 1) partitions.
pub fn partition_of(document_id: &str, factor: u32) -> u32 {
    (shard_of(document_id) % u64::from(factor.clamp(1, 10))) as u32
}

/// Appends `record` about `document` as the next row; returns the row as a reader of
/// the log gets it.
pub(crate) fn append(
    conn: &Connection,
    document: &DocumentId,
    mut record: EventRecord,
    committed_at: DateTime<Utc>,
) -> rusqlite::Result<ChangeRecord> {
    let seq = next_seq(conn)?;
    record.change.sequence_number = Some(codec::format_sequence_number(seq));
    let json = codec::record_to_json(&record).to_string();
    let document_id = document.to_string();
    let committed_at_ms = committed_at.timestamp_millis();
    conn.prepare_cached(
        "INSERT INTO change_log (seq, document_id, record, committed_at_ms, shard)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        seq as i64,
        document_id,
        json,
        committed_at_ms,
        shard_of(&document_id) as i64
    ])?;
    Ok(ChangeRecord {
        seq,
        document_id,
        record: Arc::from(json),
        committed_at: DateTime::from_timestamp_millis(committed_at_ms).unwrap_or_default(),
    })
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
    /// The DynamoDB stream record, as JSON (shared by every reader of it).
    pub record: Arc<str>,
    /// When the mutation was committed.
    pub committed_at: DateTime<Utc>,
}

impl Logged for ChangeRecord {
    fn seq(&self) -> u64 {
        self.seq
    }

    fn size(&self) -> usize {
        self.record.len()
    }
}

fn record_of(row: &rusqlite::Row<'_>) -> rusqlite::Result<ChangeRecord> {
    Ok(ChangeRecord {
        seq: row.get::<_, i64>(0)? as u64,
        document_id: row.get(1)?,
        record: Arc::from(row.get::<_, String>(2)?),
        committed_at: DateTime::from_timestamp_millis(row.get(3)?).unwrap_or_default(),
    })
}

/// A reader of the change log, with its commit wake-ups and checkpoints.
#[derive(Clone)]
pub struct ChangeFeed {
    pool: Arc<ConnectionPool>,
    wake: watch::Receiver<u64>,
    /// The newest records, kept by the document store of this process as it commits
    /// them (none in a process that does not write documents).
    tail: Option<Arc<Mutex<Tail<ChangeRecord>>>>,
}

impl ChangeFeed {
    /// A feed whose records come from the database only.
    pub(crate) fn new(pool: Arc<ConnectionPool>, wake: watch::Receiver<u64>) -> Self {
        Self {
            pool,
            wake,
            tail: None,
        }
    }

    /// A feed that also keeps the newest records [`remember`](Self::remember)ed:
    /// the feed of the process's document store, whose commits `wake` announces.
    pub(crate) fn with_tail(pool: Arc<ConnectionPool>, wake: watch::Receiver<u64>) -> Self {
        Self {
            tail: Some(Arc::default()),
            ..Self::new(pool, wake)
        }
    }

    /// Keeps a record just committed, for the readers that keep up (before its commit is
    /// announced, so a reader woken by it finds it here).
    pub(crate) fn remember(&self, record: ChangeRecord) {
        if let Some(tail) = &self.tail {
            tail.lock().unwrap_or_else(|p| p.into_inner()).push(record);
        }
    }

    /// A feed on the database at `path` for a process that does not write documents
    /// (operator commands): it never wakes; poll it.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = open_database(path)?;
        let latest = latest_seq(&conn).map_err(map_sqlite_error)?;
        let (_, wake) = watch::channel(latest);
        Ok(Self::new(
            Arc::new(ConnectionPool::with_durability(path, Durability::Ordered)),
            wake,
        ))
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
                    .query_map(params![after as i64, limit as i64], record_of)
                    .map_err(map_sqlite_error)?;
                rows.map(|r| r.map_err(map_sqlite_error)).collect()
            })
            .await
    }

    /// Up to `limit` records of partition `partition` of `factor` with a sequence number
    /// above `after`, in order, and the sequence number up to which the log was read
    /// for them: the last record's when `limit` came back, else the latest committed
    /// (nothing of the partition lies between). The other partitions' records are
    /// never read out of the database. A reader that keeps up is answered from the
    /// tail in memory, up to the latest commit announced; the database answers the
    /// rest.
    pub async fn read_partition_after(
        &self,
        after: u64,
        partition: u32,
        factor: u32,
        limit: usize,
    ) -> Result<(Vec<ChangeRecord>, u64)> {
        let factor = factor.clamp(1, 10);
        if let Some(tail) = &self.tail {
            // Up to the latest commit announced: what a reader woken by it was told.
            let through = *self.wake.borrow();
            let kept =
                tail.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .read(after, through, limit, |r| {
                        partition_of(&r.document_id, factor) == partition
                    });
            if let Some(read) = kept {
                return Ok(read);
            }
        }
        self.pool
            .call(move |conn| {
                // One snapshot for both reads: nothing committed between them is missed.
                let tx = conn.unchecked_transaction().map_err(map_sqlite_error)?;
                let latest = latest_seq(&tx).map_err(map_sqlite_error)?;
                let mut stmt = tx
                    .prepare_cached(
                        "SELECT seq, document_id, record, committed_at_ms FROM change_log
                         WHERE seq > ?1 AND seq <= ?2 AND (shard IS NULL OR shard % ?3 = ?4)
                         ORDER BY seq",
                    )
                    .map_err(map_sqlite_error)?;
                let rows = stmt
                    .query_map(
                        params![after as i64, latest as i64, factor, partition],
                        record_of,
                    )
                    .map_err(map_sqlite_error)?;
                let mut own = Vec::new();
                for row in rows {
                    let row = row.map_err(map_sqlite_error)?;
                    // Rows from before shards were stored are sorted out here.
                    if partition_of(&row.document_id, factor) != partition {
                        continue;
                    }
                    own.push(row);
                    if own.len() == limit.max(1) {
                        let last = own.last().map_or(after, |r| r.seq);
                        return Ok((own, last));
                    }
                }
                Ok((own, latest.max(after)))
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

#[cfg(test)]
mod tests {
    use aws_lambda_events::dynamodb::EventRecord;

    use super::*;

    fn feed_with(ids: &[DocumentId], unsharded: &[DocumentId]) -> (tempfile::TempDir, ChangeFeed) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.db");
        let conn = open_database(&path).unwrap();
        for id in ids {
            append(&conn, id, EventRecord::default(), Utc::now()).unwrap();
        }
        for id in unsharded {
            // A row as docfan wrote it before shards were stored.
            let seq = append(&conn, id, EventRecord::default(), Utc::now())
                .unwrap()
                .seq;
            conn.execute(
                "UPDATE change_log SET shard = NULL WHERE seq = ?1",
                [seq as i64],
            )
            .unwrap();
        }
        (dir, ChangeFeed::open(&path).unwrap())
    }

    #[tokio::test]
    async fn each_partition_reads_its_own_records_and_how_far_the_log_was_read() {
        let ids: Vec<DocumentId> = (0..40).map(|_| DocumentId::generate()).collect();
        let (_dir, feed) = feed_with(&ids[..30], &ids[30..]);
        for factor in [1, 3, 4] {
            let mut seen = Vec::new();
            for partition in 0..factor {
                let (own, read_to) = feed
                    .read_partition_after(0, partition, factor, 1000)
                    .await
                    .unwrap();
                assert_eq!(read_to, 40, "nothing of the partition is left unread");
                for record in &own {
                    assert_eq!(partition_of(&record.document_id, factor), partition);
                }
                assert!(own.windows(2).all(|w| w[0].seq < w[1].seq), "in order");
                seen.extend(own.into_iter().map(|r| r.seq));
            }
            seen.sort_unstable();
            assert_eq!(seen, (1..=40).collect::<Vec<u64>>(), "factor {factor}");
        }
    }

    #[tokio::test]
    async fn a_full_page_says_it_was_read_up_to_its_last_record() {
        let ids: Vec<DocumentId> = (0..20).map(|_| DocumentId::generate()).collect();
        let (_dir, feed) = feed_with(&ids, &[]);
        let (all, _) = feed.read_partition_after(0, 0, 1, 1000).await.unwrap();
        let (page, read_to) = feed.read_partition_after(0, 0, 1, 5).await.unwrap();
        assert_eq!(page.len(), 5);
        assert_eq!(read_to, all[4].seq);
        let (rest, read_to) = feed
            .read_partition_after(read_to, 0, 1, 1000)
            .await
            .unwrap();
        assert_eq!(rest.len(), 15);
        assert_eq!(read_to, 20);
        let (none, read_to) = feed.read_partition_after(20, 0, 1, 1000).await.unwrap();
        assert!(none.is_empty());
        assert_eq!(read_to, 20);
    }

    #[test]
    fn a_partition_is_the_same_whether_taken_from_the_shard_or_the_whole_hash() {
        for i in 0..500 {
            let id = format!("document-{i}");
            for factor in 1..=10u32 {
                let whole = (fnv1a(&id) % u64::from(factor)) as u32;
                assert_eq!(partition_of(&id, factor), whole, "{id} / {factor}");
            }
        }
    }
}
