//! The embedded [`SearchIndex`]: a tantivy index in the data directory.
//!
//! Each document is one tantivy document holding its id, version, title, body and the
//! users who may read it (`reader`, one term each). A deletion replaces it with a
//! tombstone: the id and the deletion's version, no text and no readers, so it can
//! never match a search yet still stops a late older write.
//!
//! Writes are version-guarded against the newest state known for the id: the versions
//! written since the last commit (kept in memory, since tantivy cannot read its own
//! uncommitted writes), else the committed index. [`SearchIndex::flush`] commits, which
//! is the expensive part, so the stream handler calls it once per batch.
//!
//! Every search is a conjunction of the caller's query with `reader:<caller>`, so a
//! document is only ever a candidate for the users it names.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tantivy::collector::TopDocs;
use tantivy::directory::MmapDirectory;
use tantivy::query::{BooleanQuery, Occur, Query, QueryParser, TermQuery};
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TEXT, TantivyDocument, Value,
};
use tantivy::snippet::SnippetGenerator;
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, Term, doc};

use crate::domain::DocumentId;
use crate::ports::{SearchDocument, SearchHit, SearchIndex, SearchPage, SearchQuery, WriteOutcome};
use crate::{Error, Result};

/// The index's folder in the data directory.
pub const SEARCH_INDEX_DIR: &str = "search-index";

/// Memory the writer may buffer before it flushes a segment on its own.
const WRITER_MEMORY: usize = 32 * 1024 * 1024;
/// Characters of body around the matches in a snippet.
const SNIPPET_CHARS: usize = 160;

#[derive(Clone, Copy)]
struct Fields {
    id: Field,
    version: Field,
    deleted: Field,
    title: Field,
    body: Field,
    reader: Field,
}

fn schema() -> (Schema, Fields) {
    let mut builder = Schema::builder();
    let fields = Fields {
        id: builder.add_text_field("id", STRING | STORED),
        version: builder.add_u64_field("version", INDEXED | STORED | FAST),
        deleted: builder.add_u64_field("deleted", INDEXED | STORED),
        title: builder.add_text_field("title", TEXT | STORED),
        body: builder.add_text_field("body", TEXT | STORED),
        reader: builder.add_text_field("reader", STRING),
    };
    (builder.build(), fields)
}

/// The newest state the index knows for a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexedVersion {
    pub version: u64,
    /// Whether that state is a tombstone.
    pub deleted: bool,
}

struct Writer {
    writer: IndexWriter,
    /// States written since the last successful commit, with the documents that carry
    /// them. They reach tantivy at the commit and stay here until one succeeds: a
    /// failed commit (a full disk) is rolled back whole, and the next flush, whoever
    /// calls it, writes them all again. So a successful flush means that every write
    /// made before it is committed, whichever partition made it.
    pending: HashMap<DocumentId, (IndexedVersion, TantivyDocument)>,
}

struct Inner {
    index: Index,
    reader: IndexReader,
    fields: Fields,
    writer: Mutex<Writer>,
}

/// The search index on tantivy. Cheap to clone.
#[derive(Clone)]
pub struct TantivySearchIndex {
    inner: Arc<Inner>,
}

fn unavailable(context: &str) -> impl FnOnce(tantivy::TantivyError) -> Error + '_ {
    move |e| match e {
        tantivy::TantivyError::LockFailure(..) => Error::Unavailable(format!(
            "{context}: the search index is in use by another process"
        )),
        tantivy::TantivyError::IoError(_) => Error::Unavailable(format!("{context}: {e}")),
        other => Error::Unknown(anyhow::anyhow!("{context}: {other}")),
    }
}

impl TantivySearchIndex {
    /// Opens (creating if needed) the index in the folder `dir`. Only one process may
    /// hold an index open: a second one gets `Unavailable`.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Unavailable(format!("search index folder: {e}")))?;
        let directory = MmapDirectory::open(dir)
            .map_err(|e| Error::Unavailable(format!("search index folder: {e}")))?;
        let (schema, fields) = schema();
        let index =
            Index::open_or_create(directory, schema).map_err(unavailable("opening the index"))?;
        let writer = index
            .writer_with_num_threads(1, WRITER_MEMORY)
            .map_err(unavailable("opening the index writer"))?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(unavailable("opening the index reader"))?;
        Ok(Self {
            inner: Arc::new(Inner {
                index,
                reader,
                fields,
                writer: Mutex::new(Writer {
                    writer,
                    pending: HashMap::new(),
                }),
            }),
        })
    }

    async fn blocking<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&Inner) -> Result<R> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| Error::Unknown(anyhow::anyhow!("search index task failed: {e}")))?
    }

    /// The newest state of the document in the index, written or committed.
    pub async fn indexed_version(&self, id: &DocumentId) -> Result<Option<IndexedVersion>> {
        let id = *id;
        self.blocking(move |inner| {
            let writer = inner.lock_writer();
            inner.current(&writer, &id)
        })
        .await
    }

    /// Removes everything, tombstones included, and commits (before a rebuild from the
    /// documents).
    pub async fn clear(&self) -> Result<()> {
        self.blocking(|inner| {
            let mut writer = inner.lock_writer();
            writer
                .writer
                .delete_all_documents()
                .map_err(unavailable("clearing the index"))?;
            // Committed at once: the version guard reads the committed index.
            writer
                .writer
                .commit()
                .map_err(unavailable("clearing the index"))?;
            inner.reader.reload().map_err(unavailable("reloading"))?;
            writer.pending.clear();
            Ok(())
        })
        .await
    }

    /// How many live (not deleted) documents are committed, for checks and metrics.
    pub async fn live_documents(&self) -> Result<u64> {
        self.blocking(|inner| {
            let searcher = inner.reader.searcher();
            let live = TermQuery::new(
                Term::from_field_u64(inner.fields.deleted, 0),
                IndexRecordOption::Basic,
            );
            searcher
                .search(&live, &tantivy::collector::Count)
                .map(|n| n as u64)
                .map_err(unavailable("counting"))
        })
        .await
    }
}

impl Inner {
    fn lock_writer(&self) -> std::sync::MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn id_term(&self, id: &DocumentId) -> Term {
        Term::from_field_text(self.fields.id, &id.to_string())
    }

    fn current(&self, writer: &Writer, id: &DocumentId) -> Result<Option<IndexedVersion>> {
        if let Some((pending, _)) = writer.pending.get(id) {
            return Ok(Some(*pending));
        }
        let searcher = self.reader.searcher();
        let query = TermQuery::new(self.id_term(id), IndexRecordOption::Basic);
        let top = searcher
            .search(&query, &TopDocs::with_limit(1))
            .map_err(unavailable("reading a version"))?;
        let Some((_, address)) = top.first() else {
            return Ok(None);
        };
        let stored: TantivyDocument = searcher
            .doc(*address)
            .map_err(unavailable("reading a version"))?;
        let version = stored
            .get_first(self.fields.version)
            .and_then(|v| v.as_u64())
            .unwrap_or(0);
        let deleted = stored
            .get_first(self.fields.deleted)
            .and_then(|v| v.as_u64())
            .unwrap_or(0)
            == 1;
        Ok(Some(IndexedVersion { version, deleted }))
    }

    fn write(
        &self,
        id: DocumentId,
        state: IndexedVersion,
        replacement: TantivyDocument,
    ) -> Result<WriteOutcome> {
        let mut writer = self.lock_writer();
        if let Some(current) = self.current(&writer, &id)? {
            // A tombstone at the same version as a write means the write lost: the
            // deletion is the later event of the two.
            if current.version >= state.version {
                return Ok(WriteOutcome::AlreadyApplied);
            }
        }
        writer.pending.insert(id, (state, replacement));
        Ok(WriteOutcome::Applied)
    }
}

fn invalid_query(message: impl Into<String>) -> Error {
    Error::invalid("q", message)
}

#[async_trait]
impl SearchIndex for TantivySearchIndex {
    async fn upsert(&self, doc: &SearchDocument) -> Result<WriteOutcome> {
        let doc = doc.clone();
        self.blocking(move |inner| {
            let f = inner.fields;
            let mut indexed = doc!(
                f.id => doc.id.to_string(),
                f.version => doc.version,
                f.deleted => 0u64,
                f.title => doc.title,
                f.body => doc.body,
            );
            for reader in &doc.readers {
                indexed.add_text(f.reader, reader.as_str());
            }
            inner.write(
                doc.id,
                IndexedVersion {
                    version: doc.version,
                    deleted: false,
                },
                indexed,
            )
        })
        .await
    }

    async fn delete(&self, id: &DocumentId, version: u64) -> Result<WriteOutcome> {
        let id = *id;
        self.blocking(move |inner| {
            let f = inner.fields;
            let tombstone = doc!(
                f.id => id.to_string(),
                f.version => version,
                f.deleted => 1u64,
            );
            inner.write(
                id,
                IndexedVersion {
                    version,
                    deleted: true,
                },
                tombstone,
            )
        })
        .await
    }

    async fn flush(&self) -> Result<()> {
        self.blocking(|inner| {
            let mut writer = inner.lock_writer();
            if writer.pending.is_empty() {
                return Ok(());
            }
            let Writer { writer, pending } = &mut *writer;
            let committed = pending
                .iter()
                .try_for_each(|(id, (_, replacement))| {
                    writer.delete_term(inner.id_term(id));
                    writer.add_document(replacement.clone()).map(drop)
                })
                .and_then(|()| writer.commit().map(drop));
            if let Err(e) = committed {
                // Nothing of this commit is kept; the pending states are written again
                // by the next flush.
                if let Err(rollback) = writer.rollback() {
                    tracing::warn!(error = %rollback, "rolling back a failed index commit");
                }
                return Err(unavailable("committing")(e));
            }
            // Visible before the pending versions are forgotten, so a guard never reads
            // an older committed state than the one it just wrote.
            inner.reader.reload().map_err(unavailable("reloading"))?;
            pending.clear();
            Ok(())
        })
        .await
    }

    async fn search(&self, query: &SearchQuery) -> Result<SearchPage> {
        let query = query.clone();
        self.blocking(move |inner| {
            let f = inner.fields;
            let text = query.text.trim();
            if text.is_empty() {
                return Err(invalid_query("must not be empty"));
            }
            let mut parser = QueryParser::for_index(&inner.index, vec![f.title, f.body]);
            parser.set_conjunction_by_default();
            parser.set_field_boost(f.title, 2.0);
            let parsed = parser
                .parse_query(text)
                .map_err(|e| invalid_query(format!("does not parse: {e}")))?;
            let for_reader: Box<dyn Query> = Box::new(TermQuery::new(
                Term::from_field_text(f.reader, query.reader.as_str()),
                IndexRecordOption::Basic,
            ));
            let filtered = BooleanQuery::new(vec![
                (Occur::Must, parsed.box_clone()),
                (Occur::Must, for_reader),
            ]);
            let searcher = inner.reader.searcher();
            let limit = query.limit.max(1);
            let top = searcher
                .search(
                    &filtered,
                    &TopDocs::with_limit(limit + 1).and_offset(query.offset),
                )
                .map_err(unavailable("searching"))?;
            let more = top.len() > limit;
            let mut snippets = SnippetGenerator::create(&searcher, &*parsed, f.body)
                .map_err(unavailable("snippets"))?;
            snippets.set_max_num_chars(SNIPPET_CHARS);
            let mut hits = Vec::with_capacity(limit);
            for (score, address) in top.into_iter().take(limit) {
                let stored: TantivyDocument = searcher
                    .doc(address)
                    .map_err(unavailable("reading a hit"))?;
                let text_of = |field| {
                    stored
                        .get_first(field)
                        .and_then(|v| v.as_str())
                        .unwrap_or_default()
                        .to_owned()
                };
                let Ok(id) = DocumentId::parse(&text_of(f.id)) else {
                    continue;
                };
                let body = text_of(f.body);
                let mut snippet = snippets.snippet(&body);
                snippet.set_snippet_prefix_postfix("<mark>", "</mark>");
                let snippet = if snippet.is_empty() {
                    // The match was in the title: show the start of the body.
                    escape_html(&body.chars().take(SNIPPET_CHARS).collect::<String>())
                } else {
                    snippet.to_html()
                };
                hits.push(SearchHit {
                    id,
                    title: text_of(f.title),
                    snippet,
                    score,
                    version: stored
                        .get_first(f.version)
                        .and_then(|v| v.as_u64())
                        .unwrap_or(0),
                });
            }
            Ok(SearchPage { hits, more })
        })
        .await
    }

    async fn health(&self) -> Result<()> {
        self.blocking(|inner| {
            inner.reader.searcher();
            Ok(())
        })
        .await
    }
}

fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::UserId;

    fn user(name: &str) -> UserId {
        UserId::parse(name).unwrap()
    }

    fn doc(id: DocumentId, version: u64, body: &str, readers: &[&str]) -> SearchDocument {
        SearchDocument {
            id,
            version,
            title: format!("Title v{version}"),
            body: body.into(),
            readers: readers.iter().map(|r| user(r)).collect(),
        }
    }

    fn query(text: &str, reader: &str) -> SearchQuery {
        SearchQuery {
            text: text.into(),
            reader: user(reader),
            limit: 10,
            offset: 0,
        }
    }

    #[tokio::test]
    async fn versions_guard_writes_and_tombstones_stop_late_ones() {
        let dir = tempfile::tempdir().unwrap();
        let index = TantivySearchIndex::open(dir.path()).unwrap();
        let id = DocumentId::generate();
        assert_eq!(
            index
                .upsert(&doc(id, 2, "zebra <b>", &["ann"]))
                .await
                .unwrap(),
            WriteOutcome::Applied
        );
        // Older and equal versions lose, before and after a commit.
        assert_eq!(
            index
                .upsert(&doc(id, 1, "giraffe", &["ann"]))
                .await
                .unwrap(),
            WriteOutcome::AlreadyApplied
        );
        index.flush().await.unwrap();
        assert_eq!(
            index
                .upsert(&doc(id, 2, "giraffe", &["ann"]))
                .await
                .unwrap(),
            WriteOutcome::AlreadyApplied
        );
        let page = index.search(&query("zebra", "ann")).await.unwrap();
        assert_eq!(page.hits.len(), 1);
        assert_eq!(page.hits[0].version, 2);
        assert!(
            page.hits[0].snippet.starts_with("<mark>zebra</mark> &lt;b"),
            "{}",
            page.hits[0].snippet
        );
        assert!(
            index
                .search(&query("giraffe", "ann"))
                .await
                .unwrap()
                .hits
                .is_empty()
        );
        // Someone who is not a reader finds nothing.
        assert!(
            index
                .search(&query("zebra", "bob"))
                .await
                .unwrap()
                .hits
                .is_empty()
        );

        assert_eq!(index.delete(&id, 3).await.unwrap(), WriteOutcome::Applied);
        index.flush().await.unwrap();
        assert!(
            index
                .search(&query("zebra", "ann"))
                .await
                .unwrap()
                .hits
                .is_empty()
        );
        assert_eq!(
            index.upsert(&doc(id, 2, "zebra", &["ann"])).await.unwrap(),
            WriteOutcome::AlreadyApplied
        );
        assert_eq!(
            index.indexed_version(&id).await.unwrap(),
            Some(IndexedVersion {
                version: 3,
                deleted: true
            })
        );
        assert_eq!(index.live_documents().await.unwrap(), 0);
    }

    #[tokio::test]
    async fn bad_queries_are_invalid_and_pages_report_more() {
        let dir = tempfile::tempdir().unwrap();
        let index = TantivySearchIndex::open(dir.path()).unwrap();
        for _ in 0..3 {
            index
                .upsert(&doc(DocumentId::generate(), 1, "apple pie", &["ann"]))
                .await
                .unwrap();
        }
        index.flush().await.unwrap();
        assert!(matches!(
            index.search(&query("title:(", "ann")).await,
            Err(Error::Invalid(_))
        ));
        assert!(matches!(
            index.search(&query("  ", "ann")).await,
            Err(Error::Invalid(_))
        ));
        let mut q = query("apple", "ann");
        q.limit = 2;
        let first = index.search(&q).await.unwrap();
        assert_eq!(first.hits.len(), 2);
        assert!(first.more);
        q.offset = 2;
        let second = index.search(&q).await.unwrap();
        assert_eq!(second.hits.len(), 1);
        assert!(!second.more);
    }
}
