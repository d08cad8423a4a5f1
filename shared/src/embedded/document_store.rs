//! The embedded [`DocumentStore`]: documents, their membership index and the change log
//! in one SQLite file.
//!
//! Writes go through a [`GroupCommit`] writer: every mutation that arrives while a commit
//! is in flight joins the next transaction, each inside its own savepoint (so one
//! rejected write does not undo its neighbours), and every caller is answered only after
//! the transaction holding its write is durable. A mutation and its change record are
//! written in the same savepoint, so the change log holds exactly one record per
//! acknowledged mutation and none for a rejected one.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::watch;

use super::change_log::{self, ChangeFeed};
use super::group_commit::GroupCommit;
use super::sqlite::{ConnectionPool, map_sqlite_error, open_connection};
use crate::codec::{self, EventName, RecordBuilder};
use crate::domain::{Document, DocumentId, UserId};
use crate::ports::{DocumentPage, DocumentStore};
use crate::{Error, Result};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS documents (
    id      TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    doc     TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS document_members (
    user_id     TEXT NOT NULL,
    document_id TEXT NOT NULL,
    PRIMARY KEY (user_id, document_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS document_members_by_document ON document_members (document_id);
";

enum Mutation {
    Create(Document),
    Update(Document),
    Delete(Document),
}

/// Documents on SQLite, with the change log as their stream.
pub struct SqliteDocumentStore {
    writer: GroupCommit,
    /// The latest committed sequence number, for the poller's wake-ups.
    committed: watch::Sender<u64>,
    reads: Arc<ConnectionPool>,
    feed: ChangeFeed,
}

impl SqliteDocumentStore {
    /// Opens the store in the database file at `path`, creating its tables.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = open_connection(path).map_err(map_sqlite_error)?;
        conn.execute_batch(change_log::SCHEMA)
            .map_err(map_sqlite_error)?;
        let latest = change_log::latest_seq(&conn).map_err(map_sqlite_error)?;
        drop(conn);
        let writer = GroupCommit::open(path, SCHEMA, "documents")?;
        let (committed, wake) = watch::channel(latest);
        let reads = Arc::new(ConnectionPool::new(path));
        let feed = ChangeFeed::new(Arc::clone(&reads), wake);
        Ok(Self {
            writer,
            committed,
            reads,
            feed,
        })
    }

    /// The change log, for the in-process stream poller; it wakes on every commit.
    pub fn change_feed(&self) -> ChangeFeed {
        self.feed.clone()
    }

    async fn write(&self, mutation: Mutation) -> Result<()> {
        let seq = self
            .writer
            .write(move |conn| {
                let builder = RecordBuilder {
                    region: change_log::REGION,
                    event_source_arn: change_log::EVENT_SOURCE_ARN,
                };
                apply(conn, &builder, &mutation)
            })
            .await?;
        // Durable now: wake the poller. Groups may answer out of order; keep the highest.
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

    async fn update(&self, doc: &Document) -> Result<()> {
        self.write(Mutation::Update(doc.clone())).await
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

fn apply(tx: &Connection, builder: &RecordBuilder<'_>, mutation: &Mutation) -> Result<u64> {
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
        Mutation::Update(doc) => {
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
            let record = builder.record(
                EventName::Modify,
                &doc.id,
                Some(codec::document_to_item(&old)),
                Some(codec::document_to_item(doc)),
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
