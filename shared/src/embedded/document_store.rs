//! The embedded [`DocumentStore`]: documents, their membership index and the change log
//! in one SQLite file.
//!
//! Writes go through a [`GroupCommit`] writer: every mutation that arrives while a commit
//! is in flight joins the next transaction, each inside its own savepoint (so one
//! rejected write does not undo its neighbours), and every caller is answered only after
//! the transaction holding its write is durable. A mutation and its change record are
//! written in the same savepoint, so the change log holds exactly one record per
//! acknowledged mutation and none for a rejected one.
//!
//! Every version also gets a row in `document_versions`, in the same savepoint: who made
//! it and when, its title, the body operation from the version before (the edits
//! endpoint transforms against these), and every [`SNAPSHOT_EVERY`](crate::domain::SNAPSHOT_EVERY) versions the whole
//! body, so any version is rebuilt from the snapshot before it and at most
//! `SNAPSHOT_EVERY - 1` operations.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::watch;

use super::change_log::{self, ChangeFeed, ChangeRecord};
use super::checkpointer::{CHECKPOINT_EVERY, Checkpointer};
use super::group_commit::GroupCommit;
use super::sqlite::{ConnectionPool, Durability, open_database};
use super::sqlite_error::map_sqlite_error;
use crate::codec::{self, EventName, RecordBuilder};
use crate::domain::{
    Body, Document, DocumentId, DocumentVersion, TextOperation, Title, UserId, keeps_snapshot,
};
use crate::ports::{DocumentPage, DocumentStore};
use crate::{Error, Result};

enum Mutation {
    Create(Document),
    Update(Document, TextOperation),
    Delete(Document),
}

/// Documents on SQLite, with the change log as their stream.
pub struct SqliteDocumentStore {
    writer: GroupCommit,
    /// The latest committed sequence number, for the poller's wake-ups.
    committed: watch::Sender<u64>,
    reads: Arc<ConnectionPool>,
    feed: ChangeFeed,
    /// Copies the log the writer appends to into the database, off the writer's path.
    _checkpointer: Checkpointer,
}

impl SqliteDocumentStore {
    /// Opens the store in the database file at `path`, migrating it to the current
    /// schema first ([`schema`](super::schema)).
    pub fn open(path: &Path) -> Result<Self> {
        let conn = open_database(path)?;
        let latest = change_log::latest_seq(&conn).map_err(map_sqlite_error)?;
        drop(conn);
        let writer = GroupCommit::open(path, "documents")?;
        let (committed, wake) = watch::channel(latest);
        let reads = Arc::new(ConnectionPool::new(path));
        // The feed writes the consumers' checkpoints: the fan-out's state.
        let feed = ChangeFeed::with_tail(
            Arc::new(ConnectionPool::with_durability(path, Durability::Ordered)),
            wake,
        );
        Ok(Self {
            writer,
            committed,
            reads,
            feed,
            _checkpointer: Checkpointer::start(path, CHECKPOINT_EVERY)?,
        })
    }

    /// The change log, for the in-process stream poller; it wakes on every commit.
    pub fn change_feed(&self) -> ChangeFeed {
        self.feed.clone()
    }

    /// How many documents the store holds (a deleted document's row is gone).
    pub async fn count(&self) -> Result<u64> {
        self.reads
            .call(|conn| {
                conn.prepare_cached("SELECT COUNT(*) FROM documents")
                    .and_then(|mut s| s.query_row([], |row| row.get::<_, i64>(0)))
                    .map(|n| n as u64)
                    .map_err(map_sqlite_error)
            })
            .await
    }

    /// Up to `limit` documents in id order, starting after `after` (from the first
    /// without it): every document, a page at a time in bounded memory, for rebuilding
    /// the search index. A document that does not decode is `Unknown`, naming it.
    pub async fn documents_after(
        &self,
        after: Option<&DocumentId>,
        limit: usize,
    ) -> Result<Vec<Document>> {
        // Every id sorts above the empty string.
        let after = after.map(ToString::to_string).unwrap_or_default();
        let limit = limit.max(1) as i64;
        self.reads
            .call(move |conn| {
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT id, doc FROM documents WHERE id > ?1 ORDER BY id LIMIT ?2",
                    )
                    .map_err(map_sqlite_error)?;
                let rows = stmt
                    .query_map(params![after, limit], |row| {
                        Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
                    })
                    .map_err(map_sqlite_error)?;
                let mut docs = Vec::new();
                for row in rows {
                    let (id, json) = row.map_err(map_sqlite_error)?;
                    docs.push(serde_json::from_str(&json).map_err(|e| {
                        Error::Unknown(anyhow::anyhow!("stored document {id} does not decode: {e}"))
                    })?);
                }
                Ok(docs)
            })
            .await
    }

    async fn write(&self, mutation: Mutation) -> Result<()> {
        let record = self
            .writer
            .write(move |conn| {
                let builder = RecordBuilder {
                    region: change_log::REGION,
                    event_source_arn: change_log::EVENT_SOURCE_ARN,
                };
                apply(conn, &builder, &mutation)
            })
            .await?;
        // Durable now: keep the record for the readers that keep up, then wake them.
        // Groups may answer out of order; keep the highest.
        let seq = record.seq;
        self.feed.remember(record);
        self.committed.send_if_modified(|latest| {
            let newer = seq > *latest;
            if newer {
                *latest = seq;
            }
            newer
        });
        Ok(())
    }
}

#[async_trait]
impl DocumentStore for SqliteDocumentStore {
    async fn create(&self, doc: &Document) -> Result<()> {
        self.write(Mutation::Create(doc.clone())).await
    }

    async fn get(&self, id: &DocumentId) -> Result<Option<Document>> {
        let id = id.to_string();
        self.reads
            .call(move |conn| {
                read_document(conn, &id)
                    .map_err(map_sqlite_error)?
                    .map(|(_, d)| d)
                    .map(Ok)
                    .transpose()
            })
            .await
    }

    async fn update(&self, doc: &Document, body_ops: &TextOperation) -> Result<()> {
        self.write(Mutation::Update(doc.clone(), body_ops.clone()))
            .await
    }

    async fn operations_since(&self, id: &DocumentId, base: u64) -> Result<Vec<TextOperation>> {
        let id = id.to_string();
        self.reads
            .call(move |conn| {
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT version, ops FROM document_versions
                         WHERE document_id = ?1 AND version >= ?2 ORDER BY version",
                    )
                    .map_err(map_sqlite_error)?;
                let rows = stmt
                    .query_map(params![id, base as i64], |row| {
                        Ok((row.get::<_, i64>(0)?, row.get::<_, Option<String>>(1)?))
                    })
                    .map_err(map_sqlite_error)?;
                let mut ops = Vec::new();
                let mut expected = base;
                for row in rows {
                    let (version, json) = row.map_err(map_sqlite_error)?;
                    let version = version as u64;
                    if version != expected {
                        // The kept versions start after the base (or the document is
                        // being deleted): the base cannot be transformed from.
                        return Err(Error::BaseVersionGone { oldest: version });
                    }
                    if version > base {
                        ops.push(decode_ops(json.as_deref())?);
                    }
                    expected = version + 1;
                }
                if expected == base {
                    // Not even the base version is kept.
                    return Err(oldest_kept(conn, &id)?);
                }
                Ok(ops)
            })
            .await
    }

    async fn version(&self, id: &DocumentId, version: u64) -> Result<Option<DocumentVersion>> {
        let key = id.to_string();
        let id = *id;
        self.reads
            .call(move |conn| read_version(conn, &key, id, version))
            .await
    }

    async fn delete(&self, last: &Document) -> Result<()> {
        self.write(Mutation::Delete(last.clone())).await
    }

    async fn list_for_member(
        &self,
        member: &UserId,
        limit: usize,
        after: Option<&DocumentId>,
    ) -> Result<DocumentPage> {
        let member = member.as_str().to_owned();
        // Every id sorts below this one, so "after nothing" starts at the newest.
        let after = after.map_or_else(|| "~".to_owned(), |id| id.to_string());
        let limit = limit.max(1);
        self.reads
            .call(move |conn| {
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT d.doc FROM document_members m
                         JOIN documents d ON d.id = m.document_id
                         WHERE m.user_id = ?1 AND m.document_id < ?2
                         ORDER BY m.document_id DESC LIMIT ?3",
                    )
                    .map_err(map_sqlite_error)?;
                let rows = stmt
                    .query_map(params![member, after, (limit + 1) as i64], |row| {
                        row.get::<_, String>(0)
                    })
                    .map_err(map_sqlite_error)?;
                let mut items = Vec::with_capacity(limit + 1);
                for row in rows {
                    items.push(decode_document(&row.map_err(map_sqlite_error)?)?);
                }
                let next = if items.len() > limit {
                    items.truncate(limit);
                    items.last().map(|d| d.id)
                } else {
                    None
                };
                Ok(DocumentPage { items, next })
            })
            .await
    }
}

fn decode_ops(json: Option<&str>) -> Result<TextOperation> {
    match json {
        None => Ok(TextOperation::new()),
        Some(json) => serde_json::from_str(json)
            .map_err(|e| Error::Unknown(anyhow::anyhow!("stored operation does not decode: {e}"))),
    }
}

/// `BaseVersionGone` naming the oldest version kept, or `NotFound` when none is.
fn oldest_kept(conn: &Connection, id: &str) -> Result<Error> {
    let oldest: Option<i64> = conn
        .prepare_cached("SELECT MIN(version) FROM document_versions WHERE document_id = ?1")
        .and_then(|mut s| s.query_row([id], |row| row.get(0)))
        .map_err(map_sqlite_error)?;
    Ok(match oldest {
        Some(v) => Error::BaseVersionGone { oldest: v as u64 },
        None => Error::NotFound,
    })
}

/// Rebuilds `version` from the snapshot at or before it and the operations after that.
fn read_version(
    conn: &Connection,
    key: &str,
    id: DocumentId,
    version: u64,
) -> Result<Option<DocumentVersion>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT version, actor, at, title, ops, snapshot FROM document_versions
             WHERE document_id = ?1 AND version <= ?2 AND version >= (
                 SELECT MAX(version) FROM document_versions
                 WHERE document_id = ?1 AND version <= ?2 AND snapshot IS NOT NULL)
             ORDER BY version",
        )
        .map_err(map_sqlite_error)?;
    type Row = (i64, String, String, String, Option<String>, Option<String>);
    let rows = stmt
        .query_map(params![key, version as i64], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
                row.get(5)?,
            ))
        })
        .map_err(map_sqlite_error)?;
    let corrupt = |what: &str| Error::Unknown(anyhow::anyhow!("version row of {key}: {what}"));
    let mut body: Option<String> = None;
    let mut last: Option<Row> = None;
    for row in rows {
        let row: Row = row.map_err(map_sqlite_error)?;
        body = match (&row.5, body) {
            (Some(snapshot), _) => Some(snapshot.clone()),
            (None, Some(text)) => Some(
                decode_ops(row.4.as_deref())?
                    .apply(&text)
                    .map_err(|e| corrupt(&e.to_string()))?,
            ),
            (None, None) => return Err(corrupt("no snapshot before it")),
        };
        last = Some(row);
    }
    let Some((found, actor, at, title, _, _)) = last else {
        return Ok(None);
    };
    if found as u64 != version {
        return Ok(None);
    }
    Ok(Some(DocumentVersion {
        id,
        version,
        title: Title::parse(title).map_err(|e| corrupt(&e.to_string()))?,
        body: Body::parse(body.unwrap_or_default()).map_err(|e| corrupt(&e.to_string()))?,
        actor: UserId::parse(actor).map_err(|e| corrupt(&e.to_string()))?,
        at: at
            .parse::<DateTime<Utc>>()
            .map_err(|e| corrupt(&e.to_string()))?,
    }))
}

/// Records `doc`'s version: its title, who made it and when, the body operation from
/// the version before, and the whole body every [`SNAPSHOT_EVERY`](crate::domain::SNAPSHOT_EVERY) versions.
fn record_version(tx: &Connection, doc: &Document, ops: Option<&TextOperation>) -> Result<()> {
    let snapshot = keeps_snapshot(doc.version, ops).then(|| doc.body.as_str());
    let ops = ops
        .filter(|o| !o.is_noop())
        .map(|o| serde_json::to_string(o).expect("operations encode"));
    tx.prepare_cached(
        "INSERT INTO document_versions (document_id, version, actor, at, title, ops, snapshot)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (document_id, version) DO UPDATE SET
             actor = excluded.actor, at = excluded.at, title = excluded.title,
             ops = excluded.ops, snapshot = excluded.snapshot",
    )
    .and_then(|mut s| {
        s.execute(params![
            doc.id.to_string(),
            doc.version as i64,
            doc.updated_by.as_str(),
            doc.updated_at
                .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            doc.title.as_str(),
            ops,
            snapshot,
        ])
    })
    .map_err(map_sqlite_error)?;
    Ok(())
}

fn decode_document(json: &str) -> Result<Document> {
    serde_json::from_str(json)
        .map_err(|e| Error::Unknown(anyhow::anyhow!("stored document does not decode: {e}")))
}

fn read_document(conn: &Connection, id: &str) -> rusqlite::Result<Option<(u64, Document)>> {
    let row: Option<(i64, String)> = conn
        .prepare_cached("SELECT version, doc FROM documents WHERE id = ?1")?
        .query_row([id], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    Ok(row.and_then(|(version, json)| {
        // A row that does not decode is reported by the caller as corruption.
        serde_json::from_str(&json)
            .ok()
            .map(|doc| (version as u64, doc))
    }))
}

fn apply(
    tx: &Connection,
    builder: &RecordBuilder<'_>,
    mutation: &Mutation,
) -> Result<ChangeRecord> {
    let now = Utc::now();
    match mutation {
        Mutation::Create(doc) => {
            let id = doc.id.to_string();
            let inserted = tx
                .prepare_cached(
                    "INSERT INTO documents (id, version, doc) VALUES (?1, ?2, ?3)
                     ON CONFLICT (id) DO NOTHING",
                )
                .and_then(|mut s| s.execute(params![id, doc.version as i64, encode(doc)]))
                .map_err(map_sqlite_error)?;
            if inserted == 0 {
                return Err(Error::AlreadyExists);
            }
            add_members(tx, &id, doc.readers())?;
            record_version(tx, doc, None)?;
            let record = builder.record(
                EventName::Insert,
                &doc.id,
                None,
                Some(codec::document_to_item(doc)),
                0,
                doc.updated_at,
            );
            change_log::append(tx, &doc.id, record, now).map_err(map_sqlite_error)
        }
        Mutation::Update(doc, ops) => {
            let id = doc.id.to_string();
            let old = current(tx, &id, doc.version)?;
            tx.prepare_cached("UPDATE documents SET version = ?2, doc = ?3 WHERE id = ?1")
                .and_then(|mut s| s.execute(params![id, doc.version as i64, encode(doc)]))
                .map_err(map_sqlite_error)?;
            if old.readers().ne(doc.readers()) {
                tx.prepare_cached("DELETE FROM document_members WHERE document_id = ?1")
                    .and_then(|mut s| s.execute([&id]))
                    .map_err(map_sqlite_error)?;
                add_members(tx, &id, doc.readers())?;
            }
            record_version(tx, doc, Some(ops))?;
            let record = builder.record(
                EventName::Modify,
                &doc.id,
                Some(codec::document_to_item(&old)),
                Some(codec::document_to_item_with_ops(doc, Some(ops))),
                0,
                doc.updated_at,
            );
            change_log::append(tx, &doc.id, record, now).map_err(map_sqlite_error)
        }
        Mutation::Delete(last) => {
            let id = last.id.to_string();
            current(tx, &id, last.version)?;
            tx.prepare_cached("DELETE FROM documents WHERE id = ?1")
                .and_then(|mut s| s.execute([&id]))
                .map_err(map_sqlite_error)?;
            tx.prepare_cached("DELETE FROM document_members WHERE document_id = ?1")
                .and_then(|mut s| s.execute([&id]))
                .map_err(map_sqlite_error)?;
            tx.prepare_cached("DELETE FROM document_versions WHERE document_id = ?1")
                .and_then(|mut s| s.execute([&id]))
                .map_err(map_sqlite_error)?;
            let record = builder.record(
                EventName::Remove,
                &last.id,
                Some(codec::tombstone_to_item(last)),
                None,
                0,
                last.updated_at,
            );
            change_log::append(tx, &last.id, record, now).map_err(map_sqlite_error)
        }
    }
}

/// The stored document, if it is at `next_version - 1`.
fn current(tx: &Connection, id: &str, next_version: u64) -> Result<Document> {
    let row: Option<(i64, String)> = tx
        .prepare_cached("SELECT version, doc FROM documents WHERE id = ?1")
        .and_then(|mut s| {
            s.query_row([id], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()
        })
        .map_err(map_sqlite_error)?;
    let (version, json) = row.ok_or(Error::NotFound)?;
    let version = version as u64;
    if version + 1 != next_version {
        return Err(Error::VersionMismatch { current: version });
    }
    decode_document(&json)
}

fn add_members<'a>(
    tx: &Connection,
    id: &str,
    members: impl Iterator<Item = &'a UserId>,
) -> Result<()> {
    let mut stmt = tx
        .prepare_cached(
            "INSERT INTO document_members (user_id, document_id) VALUES (?1, ?2)
             ON CONFLICT DO NOTHING",
        )
        .map_err(map_sqlite_error)?;
    for member in members {
        stmt.execute(params![member.as_str(), id])
            .map_err(map_sqlite_error)?;
    }
    Ok(())
}

fn encode(doc: &Document) -> String {
    serde_json::to_string(doc).expect("a document always encodes")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::clock::SystemClock;
    use crate::service::{DocumentService, NewDocument};

    #[tokio::test]
    async fn every_live_document_is_read_in_id_order_a_page_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteDocumentStore::open(&dir.path().join("docfan.db")).unwrap());
        let docs = DocumentService::new(store.clone(), Arc::new(SystemClock));
        let ann = UserId::parse("ann").unwrap();
        let mut ids = Vec::new();
        for i in 0..4 {
            let doc = docs
                .create(
                    &ann,
                    NewDocument {
                        title: Title::parse(format!("Note {i}")).unwrap(),
                        body: Body::parse("text").unwrap(),
                        collaborators: Default::default(),
                    },
                )
                .await
                .unwrap();
            ids.push(doc.id);
        }
        docs.delete(&ann, &ids[1], Some(1)).await.unwrap();
        assert_eq!(store.count().await.unwrap(), 3);

        let mut read = Vec::new();
        let mut after = None;
        loop {
            let page = store.documents_after(after.as_ref(), 2).await.unwrap();
            assert!(page.len() <= 2);
            let Some(last) = page.last() else { break };
            after = Some(last.id);
            read.extend(page.into_iter().map(|d| d.id.to_string()));
        }
        let mut live: Vec<String> = ids
            .iter()
            .filter(|id| **id != ids[1])
            .map(ToString::to_string)
            .collect();
        live.sort();
        assert_eq!(read, live);
    }

    /// A store with one document written `edits` times after its creation, then
    /// deleted.
    async fn written(path: &Path, edits: usize) -> Arc<SqliteDocumentStore> {
        let store = Arc::new(SqliteDocumentStore::open(path).unwrap());
        let docs = DocumentService::new(store.clone(), Arc::new(SystemClock));
        let ann = UserId::parse("ann").unwrap();
        let mut doc = docs
            .create(
                &ann,
                NewDocument {
                    title: Title::parse("Note").unwrap(),
                    body: Body::parse("v1").unwrap(),
                    collaborators: Default::default(),
                },
            )
            .await
            .unwrap();
        for i in 0..edits {
            let replacement = crate::service::Replacement {
                title: doc.title.clone(),
                body: Body::parse(format!("v{}", i + 2)).unwrap(),
            };
            doc = docs
                .replace(&ann, &doc.id, Some(doc.version), replacement)
                .await
                .unwrap();
        }
        docs.delete(&ann, &doc.id, Some(doc.version)).await.unwrap();
        store
    }

    fn as_read(records: &[ChangeRecord]) -> Vec<(u64, String, String, i64)> {
        records
            .iter()
            .map(|r| {
                let at = r.committed_at.timestamp_millis();
                (r.seq, r.document_id.clone(), r.record.to_string(), at)
            })
            .collect()
    }

    #[tokio::test]
    async fn a_reader_that_keeps_up_gets_the_commits_from_memory_as_the_database_has_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docfan.db");
        let store = written(&path, 3).await;
        let feed = store.change_feed();
        let database = ChangeFeed::open(&path).unwrap();

        let (kept, read_to) = feed.read_partition_after(0, 0, 1, 100).await.unwrap();
        let (stored, stored_to) = database.read_partition_after(0, 0, 1, 100).await.unwrap();
        assert_eq!(kept.len(), 5, "create, three updates, delete");
        assert_eq!(as_read(&kept), as_read(&stored));
        assert_eq!(read_to, stored_to);
        let (page, page_to) = feed.read_partition_after(1, 0, 1, 2).await.unwrap();
        assert_eq!(as_read(&page), as_read(&stored[1..3]));
        assert_eq!(page_to, stored[2].seq);

        // Gone from the database, the records are still answered: from memory.
        open_database(&path)
            .unwrap()
            .execute("DELETE FROM change_log", [])
            .unwrap();
        let (kept, _) = feed.read_partition_after(2, 0, 1, 100).await.unwrap();
        assert_eq!(as_read(&kept), as_read(&stored[2..]));
        let (stored, _) = database.read_partition_after(2, 0, 1, 100).await.unwrap();
        assert!(stored.is_empty());
    }

    #[tokio::test]
    async fn a_reader_behind_what_this_process_committed_reads_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docfan.db");
        drop(written(&path, 2).await);
        // A new process: nothing in memory, four records in the database.
        let store = written(&path, 1).await;
        let (all, read_to) = store
            .change_feed()
            .read_partition_after(0, 0, 1, 100)
            .await
            .unwrap();
        assert_eq!(
            all.iter().map(|r| r.seq).collect::<Vec<_>>(),
            (1..=7).collect::<Vec<_>>()
        );
        assert_eq!(read_to, 7);
    }
}
