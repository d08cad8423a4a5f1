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
//! is the expensive part, so the search sink calls it by time and size.
//!
//! An index nobody has searched for [`SEARCH_IDLE_AFTER`] is search idle (as an
//! OpenSearch shard is): the search sink then commits less often, and the first search
//! that finds it idle commits what is waiting before it runs, so it sees every write
//! made before it.
//!
//! Every search is a conjunction of the caller's query with `reader:<caller>`, so a
//! document is only ever a candidate for the users it names. The caller's query comes
//! parsed ([`search_query`]) and is mapped here to tantivy's query objects; tantivy's
//! own query parser never sees user text.
//!
//! A search runs under a time budget ([`SEARCH_TIME_BUDGET`] by default): the scorers
//! check it, and whether the caller is still waiting, once per segment and every
//! [`BUDGET_CHECK_EVERY`] documents, and stop when either is gone. A search that ran
//! out of time is `Unavailable`, never a partial page.
//!
//! Hits carry no score, and the snippet's excerpt is chosen with every query word
//! weighted alike, so nothing in an answer depends on other users' documents beyond
//! the order of the hits.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tantivy::collector::TopDocs;
use tantivy::directory::MmapDirectory;
use tantivy::query::{
    AllQuery, BooleanQuery, BoostQuery, EnableScoring, Explanation, Occur, PhrasePrefixQuery,
    PhraseQuery, Query, Scorer, TermQuery, Weight,
};
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TEXT, TantivyDocument, Value,
};
use tantivy::snippet::SnippetGenerator;
use tantivy::{
    DocId, DocSet, Index, IndexReader, IndexWriter, ReloadPolicy, Score, SegmentReader, TERMINATED,
    Term, doc,
};

use crate::domain::DocumentId;
use crate::domain::search_query::{self, Match, SearchField};
use crate::ports::{SearchDocument, SearchHit, SearchIndex, SearchPage, SearchQuery, WriteOutcome};
use crate::{Error, Result};

/// The index's folder in the data directory.
pub const SEARCH_INDEX_DIR: &str = "search-index";

/// Memory the writer may buffer before it flushes a segment on its own.
const WRITER_MEMORY: usize = 32 * 1024 * 1024;
/// Characters of body around the matches in a snippet.
const SNIPPET_CHARS: usize = 160;
/// How long one search may run, unless set with [`TantivySearchIndex::with_time_budget`].
pub const SEARCH_TIME_BUDGET: Duration = Duration::from_secs(2);
/// How long after the last search the index is search idle, unless set with
/// [`TantivySearchIndex::with_search_idle_after`] (OpenSearch's default too).
pub const SEARCH_IDLE_AFTER: Duration = Duration::from_secs(30);
/// How many documents a scorer visits between two looks at the clock.
pub const BUDGET_CHECK_EVERY: u32 = 4096;
/// How many indexed words a `prefix*` stands for at most (per segment).
const PREFIX_EXPANSIONS: u32 = 50;
/// A match in the title counts this much more than one in the body.
const TITLE_BOOST: Score = 2.0;

#[derive(Clone, Copy)]
struct Fields {
    id: Field,
    version: Field,
    deleted: Field,
    title: Field,
    body: Field,
    reader: Field,
}

impl Fields {
    /// The state an entry holds.
    fn state_of(&self, stored: &TantivyDocument) -> IndexedVersion {
        let number = |field: Field| stored.get_first(field).and_then(|v| v.as_u64());
        IndexedVersion {
            version: number(self.version).unwrap_or(0),
            deleted: number(self.deleted) == Some(1),
        }
    }
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

/// Which state already indexed for a document a write replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Replaces {
    /// Only an older one: the fan-out's writes, so a redelivered or late record never
    /// replaces what a later one wrote.
    Older,
    /// An older one or one at the same version: a rebuild's, which writes each entry
    /// again from the store.
    OlderOrSame,
}

/// Blocks of stored documents [`TantivySearchIndex::entries`] keeps decompressed per
/// segment (it reads them in order, so one would do).
const ENTRIES_CACHED_BLOCKS: usize = 4;

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
    /// When the last search started; `None` before the first.
    searched: Mutex<Option<Instant>>,
}

/// The search index on tantivy. Cheap to clone.
#[derive(Clone)]
pub struct TantivySearchIndex {
    inner: Arc<Inner>,
    time_budget: Duration,
    search_idle_after: Duration,
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
        let mut index =
            Index::open_or_create(directory, schema).map_err(unavailable("opening the index"))?;
        // tantivy starts a thread per segment to compress its stored documents; with a
        // commit every few hundred milliseconds that is several threads a second, each
        // with fresh memory. The indexing thread compresses them itself instead.
        index.settings_mut().docstore_compress_dedicated_thread = false;
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
                searched: Mutex::new(None),
            }),
            time_budget: SEARCH_TIME_BUDGET,
            search_idle_after: SEARCH_IDLE_AFTER,
        })
    }

    /// Sets how long one search may run before it is stopped.
    pub fn with_time_budget(mut self, budget: Duration) -> Self {
        self.time_budget = budget;
        self
    }

    /// Sets how long after the last search the index is search idle.
    pub fn with_search_idle_after(mut self, after: Duration) -> Self {
        self.search_idle_after = after;
        self
    }

    fn searched(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.inner
            .searched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn idle_since(&self, searched: Option<Instant>) -> bool {
        searched.is_none_or(|at| at.elapsed() >= self.search_idle_after)
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

    /// Rewrites a document's entry from the store's copy, as a rebuild does: it
    /// replaces a live entry at the same version as well as an older entry (so a
    /// damaged or stale entry is written again), never a newer one or a tombstone at
    /// its version (a write of a later version, made meanwhile by the fan-out, stands).
    pub async fn rewrite(&self, doc: &SearchDocument) -> Result<WriteOutcome> {
        self.write_live(doc, Replaces::OlderOrSame).await
    }

    /// Replaces a document's live entry at `version` with a tombstone at the same
    /// version: for a document a rebuild found in the index but not in the store. A
    /// later write of the document stands.
    pub async fn bury(&self, id: &DocumentId, version: u64) -> Result<WriteOutcome> {
        self.write_tombstone(id, version, Replaces::OlderOrSame)
            .await
    }

    /// Writes a document's entry, over the state that `replaces` allows.
    async fn write_live(&self, doc: &SearchDocument, replaces: Replaces) -> Result<WriteOutcome> {
        let doc = doc.clone();
        self.blocking(move |inner| {
            let state = IndexedVersion {
                version: doc.version,
                deleted: false,
            };
            inner.write(doc.id, state, inner.live_entry(&doc), replaces)
        })
        .await
    }

    /// Writes a deleted document's tombstone, over the state that `replaces` allows.
    async fn write_tombstone(
        &self,
        id: &DocumentId,
        version: u64,
        replaces: Replaces,
    ) -> Result<WriteOutcome> {
        let id = *id;
        self.blocking(move |inner| {
            let state = IndexedVersion {
                version,
                deleted: true,
            };
            inner.write(id, state, inner.tombstone(&id, version), replaces)
        })
        .await
    }

    /// Every committed entry: its document and the state it holds, read from the
    /// stored fields (a rebuild's look for entries the store no longer has).
    pub async fn entries(&self) -> Result<Vec<(DocumentId, IndexedVersion)>> {
        self.blocking(|inner| {
            let searcher = inner.reader.searcher();
            let mut entries = Vec::new();
            for segment in searcher.segment_readers() {
                let store = segment
                    .get_store_reader(ENTRIES_CACHED_BLOCKS)
                    .map_err(|e| Error::Unavailable(format!("reading the entries: {e}")))?;
                for address in segment.doc_ids_alive() {
                    let stored: TantivyDocument = store
                        .get(address)
                        .map_err(unavailable("reading an entry"))?;
                    let Some(id) = stored
                        .get_first(inner.fields.id)
                        .and_then(|v| v.as_str())
                        .and_then(|id| DocumentId::parse(id).ok())
                    else {
                        continue;
                    };
                    entries.push((id, inner.fields.state_of(&stored)));
                }
            }
            Ok(entries)
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
        Ok(Some(self.fields.state_of(&stored)))
    }

    /// A document's entry: its text and readers.
    fn live_entry(&self, doc: &SearchDocument) -> TantivyDocument {
        let f = self.fields;
        let mut entry = doc!(
            f.id => doc.id.to_string(),
            f.version => doc.version,
            f.deleted => 0u64,
            f.title => doc.title.clone(),
            f.body => doc.body.clone(),
        );
        for reader in &doc.readers {
            entry.add_text(f.reader, reader.as_str());
        }
        entry
    }

    /// A deleted document's entry: its id and the deletion's version, nothing to match.
    fn tombstone(&self, id: &DocumentId, version: u64) -> TantivyDocument {
        let f = self.fields;
        doc!(
            f.id => id.to_string(),
            f.version => version,
            f.deleted => 1u64,
        )
    }

    fn write(
        &self,
        id: DocumentId,
        state: IndexedVersion,
        replacement: TantivyDocument,
        replaces: Replaces,
    ) -> Result<WriteOutcome> {
        let mut writer = self.lock_writer();
        if let Some(current) = self.current(&writer, &id)? {
            // A tombstone at the same version as a write means the write lost: the
            // deletion is the later event of the two. A rebuild's write replaces the
            // entry at its version too, but a live state never replaces a tombstone.
            let stands = match replaces {
                Replaces::Older => current.version >= state.version,
                Replaces::OlderOrSame => {
                    current.version > state.version
                        || (current.version == state.version && current.deleted && !state.deleted)
                }
            };
            if stands {
                return Ok(WriteOutcome::AlreadyApplied);
            }
        }
        writer.pending.insert(id, (state, replacement));
        Ok(WriteOutcome::Applied)
    }
}

/// The tantivy query for a parsed query. The parser bounds the depth of the tree, so
/// this recursion is bounded too.
fn to_tantivy(f: Fields, query: &search_query::Query) -> Box<dyn Query> {
    use search_query::Query as Q;
    match query {
        Q::Match(m) => match_to_tantivy(f, m),
        Q::Or(alternatives) => Box::new(BooleanQuery::new(
            alternatives
                .iter()
                .map(|a| (Occur::Should, to_tantivy(f, a)))
                .collect(),
        )),
        Q::And(clauses) => Box::new(BooleanQuery::new(
            clauses
                .iter()
                .map(|clause| match clause {
                    Q::Not(excluded) => (Occur::MustNot, to_tantivy(f, excluded)),
                    other => (Occur::Must, to_tantivy(f, other)),
                })
                .collect(),
        )),
        // The parser only puts a `Not` in an `And`; alone it means "all but".
        Q::Not(excluded) => Box::new(BooleanQuery::new(vec![
            (Occur::Must, Box::new(AllQuery)),
            (Occur::MustNot, to_tantivy(f, excluded)),
        ])),
    }
}

fn match_to_tantivy(f: Fields, m: &Match) -> Box<dyn Query> {
    let on = |field: Field| -> Box<dyn Query> {
        let mut terms: Vec<Term> = m
            .words
            .iter()
            .map(|w| Term::from_field_text(field, w))
            .collect();
        if m.prefix {
            let mut prefix = PhrasePrefixQuery::new(terms);
            prefix.set_max_expansions(PREFIX_EXPANSIONS);
            Box::new(prefix)
        } else if terms.len() == 1 {
            Box::new(TermQuery::new(
                terms.remove(0),
                IndexRecordOption::WithFreqs,
            ))
        } else {
            Box::new(PhraseQuery::new(terms))
        }
    };
    let title = || -> Box<dyn Query> { Box::new(BoostQuery::new(on(f.title), TITLE_BOOST)) };
    match m.field {
        Some(SearchField::Title) => title(),
        Some(SearchField::Body) => on(f.body),
        None => Box::new(BooleanQuery::new(vec![
            (Occur::Should, title()),
            (Occur::Should, on(f.body)),
        ])),
    }
}

/// The end of a search's time: its deadline, or the caller leaving.
#[derive(Clone)]
struct Budget {
    deadline: Instant,
    /// Set when the caller stops waiting (its future was dropped).
    cancelled: Arc<AtomicBool>,
    /// Set when a scorer stopped because the budget was spent.
    spent: Arc<AtomicBool>,
}

impl Budget {
    fn is_spent(&self) -> bool {
        if self.spent.load(Ordering::Relaxed) {
            return true;
        }
        if self.cancelled.load(Ordering::Relaxed) || Instant::now() >= self.deadline {
            self.spent.store(true, Ordering::Relaxed);
            return true;
        }
        false
    }
}

/// Sets the flag when dropped: the search's future is gone.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn out_of_time() -> tantivy::TantivyError {
    tantivy::TantivyError::InternalError("the search ran out of time".into())
}

/// A query whose scorers stop when the budget is spent.
struct BudgetedQuery {
    inner: Box<dyn Query>,
    budget: Budget,
}

impl Clone for BudgetedQuery {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.box_clone(),
            budget: self.budget.clone(),
        }
    }
}

impl std::fmt::Debug for BudgetedQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BudgetedQuery")
            .field("inner", &self.inner)
            .finish()
    }
}

impl Query for BudgetedQuery {
    fn weight(&self, scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        if self.budget.is_spent() {
            return Err(out_of_time());
        }
        Ok(Box::new(BudgetedWeight {
            inner: self.inner.weight(scoring)?,
            budget: self.budget.clone(),
        }))
    }

    fn query_terms<'a>(&'a self, visitor: &mut dyn FnMut(&'a Term, bool)) {
        self.inner.query_terms(visitor)
    }
}

struct BudgetedWeight {
    inner: Box<dyn Weight>,
    budget: Budget,
}

impl Weight for BudgetedWeight {
    // Only `scorer` is provided: the default `for_each*` methods all go through it, so
    // every way of collecting meets the budget checks.
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        if self.budget.is_spent() {
            return Err(out_of_time());
        }
        Ok(Box::new(BudgetedScorer {
            inner: self.inner.scorer(reader, boost)?,
            budget: self.budget.clone(),
            until_check: BUDGET_CHECK_EVERY,
            stopped: false,
        }))
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        self.inner.explain(reader, doc)
    }
}

struct BudgetedScorer {
    inner: Box<dyn Scorer>,
    budget: Budget,
    until_check: u32,
    stopped: bool,
}

impl BudgetedScorer {
    /// Whether to stop now (looking at the clock every so often).
    fn stop(&mut self) -> bool {
        if self.stopped {
            return true;
        }
        self.until_check -= 1;
        if self.until_check == 0 {
            self.until_check = BUDGET_CHECK_EVERY;
            self.stopped = self.budget.is_spent();
        }
        self.stopped
    }
}

impl DocSet for BudgetedScorer {
    fn advance(&mut self) -> DocId {
        if self.stop() {
            return TERMINATED;
        }
        self.inner.advance()
    }

    fn seek(&mut self, target: DocId) -> DocId {
        if self.stop() {
            return TERMINATED;
        }
        self.inner.seek(target)
    }

    fn doc(&self) -> DocId {
        if self.stopped {
            TERMINATED
        } else {
            self.inner.doc()
        }
    }

    fn size_hint(&self) -> u32 {
        self.inner.size_hint()
    }
}

impl Scorer for BudgetedScorer {
    fn score(&mut self) -> Score {
        self.inner.score()
    }
}

/// The words of the query that a body snippet highlights, each weighted alike.
fn snippet_words(query: &search_query::Query) -> BTreeMap<String, Score> {
    query
        .positive_matches()
        .into_iter()
        .filter(|m| m.field != Some(SearchField::Title) && !m.prefix)
        .flat_map(|m| m.words.iter().map(|w| (w.clone(), 1.0)))
        .collect()
}

#[async_trait]
impl SearchIndex for TantivySearchIndex {
    async fn upsert(&self, doc: &SearchDocument) -> Result<WriteOutcome> {
        self.write_live(doc, Replaces::Older).await
    }

    async fn delete(&self, id: &DocumentId, version: u64) -> Result<WriteOutcome> {
        self.write_tombstone(id, version, Replaces::Older).await
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
        let was_idle = {
            let mut searched = self.searched();
            let idle = self.idle_since(*searched);
            *searched = Some(Instant::now());
            idle
        };
        if was_idle && let Err(e) = self.flush().await {
            // The search still answers, from what the last commit holds.
            tracing::warn!(error = %e, "committing the writes waiting in an idle index before a search");
        }
        let query = query.clone();
        let cancelled = Arc::new(AtomicBool::new(false));
        let _cancel_on_drop = CancelOnDrop(cancelled.clone());
        let budget = Budget {
            deadline: Instant::now() + self.time_budget,
            cancelled,
            spent: Arc::new(AtomicBool::new(false)),
        };
        self.blocking(move |inner| {
            let f = inner.fields;
            let for_reader: Box<dyn Query> = Box::new(TermQuery::new(
                Term::from_field_text(f.reader, query.reader.as_str()),
                IndexRecordOption::Basic,
            ));
            let filtered = BudgetedQuery {
                inner: Box::new(BooleanQuery::new(vec![
                    (Occur::Must, to_tantivy(f, &query.query)),
                    (Occur::Must, for_reader),
                ])),
                budget: budget.clone(),
            };
            let searcher = inner.reader.searcher();
            let limit = query.limit.max(1);
            let top = searcher.search(
                &filtered,
                &TopDocs::with_limit(limit + 1).and_offset(query.offset),
            );
            if budget.is_spent() {
                return Err(Error::Unavailable(
                    "the search ran out of time: try more specific words".into(),
                ));
            }
            let top = top.map_err(unavailable("searching"))?;
            let more = top.len() > limit;
            let tokenizer = inner
                .index
                .tokenizer_for_field(f.body)
                .map_err(unavailable("snippets"))?;
            let snippets = SnippetGenerator::new(
                snippet_words(&query.query),
                tokenizer,
                f.body,
                SNIPPET_CHARS,
            );
            let mut hits = Vec::with_capacity(limit);
            for (_score, address) in top.into_iter().take(limit) {
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

    fn is_search_idle(&self) -> bool {
        self.idle_since(*self.searched())
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
            query: search_query::parse(text).unwrap(),
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
    async fn a_rewrite_replaces_a_live_entry_at_its_version_but_no_tombstone_or_newer_entry() {
        let dir = tempfile::tempdir().unwrap();
        let index = TantivySearchIndex::open(dir.path()).unwrap();
        let (same, newer, deleted) = (
            DocumentId::generate(),
            DocumentId::generate(),
            DocumentId::generate(),
        );
        index
            .upsert(&doc(same, 2, "mangled", &["ann"]))
            .await
            .unwrap();
        index
            .upsert(&doc(newer, 3, "newer", &["ann"]))
            .await
            .unwrap();
        index.delete(&deleted, 2).await.unwrap();
        index.flush().await.unwrap();

        let rewrite = |id, version, body| {
            let index = index.clone();
            async move {
                index
                    .rewrite(&doc(id, version, body, &["ann"]))
                    .await
                    .unwrap()
            }
        };
        assert_eq!(rewrite(same, 2, "walrus").await, WriteOutcome::Applied);
        assert_eq!(
            rewrite(newer, 2, "older").await,
            WriteOutcome::AlreadyApplied
        );
        assert_eq!(
            rewrite(deleted, 2, "risen").await,
            WriteOutcome::AlreadyApplied
        );
        // A tombstone at the version of a live entry replaces it; a second changes nothing.
        assert_eq!(index.bury(&same, 2).await.unwrap(), WriteOutcome::Applied);
        assert_eq!(
            index.bury(&newer, 2).await.unwrap(),
            WriteOutcome::AlreadyApplied
        );
        index.flush().await.unwrap();

        let state = |version, deleted| Some(IndexedVersion { version, deleted });
        assert_eq!(index.indexed_version(&same).await.unwrap(), state(2, true));
        assert_eq!(
            index.indexed_version(&newer).await.unwrap(),
            state(3, false)
        );
        assert_eq!(
            index.indexed_version(&deleted).await.unwrap(),
            state(2, true)
        );
        let mut entries = index.entries().await.unwrap();
        entries.sort_by_key(|(id, _)| *id);
        let mut expected = vec![
            (
                same,
                IndexedVersion {
                    version: 2,
                    deleted: true,
                },
            ),
            (
                newer,
                IndexedVersion {
                    version: 3,
                    deleted: false,
                },
            ),
            (
                deleted,
                IndexedVersion {
                    version: 2,
                    deleted: true,
                },
            ),
        ];
        expected.sort_by_key(|(id, _)| *id);
        assert_eq!(entries, expected);
    }

    #[tokio::test]
    async fn a_search_that_finds_the_index_idle_commits_what_waits_first() {
        let dir = tempfile::tempdir().unwrap();
        let idle_after = Duration::from_secs(1);
        let index = TantivySearchIndex::open(dir.path())
            .unwrap()
            .with_search_idle_after(idle_after);
        let found = |page: SearchPage| page.hits.iter().map(|h| h.id).collect::<Vec<_>>();
        assert!(index.is_search_idle(), "never searched");

        let first = DocumentId::generate();
        index
            .upsert(&doc(first, 1, "alpha", &["ann"]))
            .await
            .unwrap();
        assert_eq!(
            found(index.search(&query("alpha", "ann")).await.unwrap()),
            [first],
            "the search that ended the quiet spell committed the write first"
        );
        assert!(!index.is_search_idle(), "just searched");

        let second = DocumentId::generate();
        index
            .upsert(&doc(second, 1, "beta", &["ann"]))
            .await
            .unwrap();
        assert_eq!(
            found(index.search(&query("beta", "ann")).await.unwrap()),
            Vec::<DocumentId>::new(),
            "while people search, a write waits for the writer's commit"
        );
        tokio::time::sleep(idle_after + Duration::from_millis(100)).await;
        assert!(
            index.is_search_idle(),
            "no search for longer than idle_after"
        );
        assert_eq!(
            found(index.search(&query("beta", "ann")).await.unwrap()),
            [second]
        );
        assert_eq!(index.live_documents().await.unwrap(), 2);
    }

    #[tokio::test]
    async fn pages_report_more() {
        let dir = tempfile::tempdir().unwrap();
        let index = TantivySearchIndex::open(dir.path()).unwrap();
        for _ in 0..3 {
            index
                .upsert(&doc(DocumentId::generate(), 1, "apple pie", &["ann"]))
                .await
                .unwrap();
        }
        index.flush().await.unwrap();
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

    #[tokio::test]
    async fn every_construct_of_the_language_maps() {
        let dir = tempfile::tempdir().unwrap();
        let index = TantivySearchIndex::open(dir.path()).unwrap();
        let zoo = DocumentId::generate();
        let farm = DocumentId::generate();
        let mut zoo_doc = doc(zoo, 1, "the zebra moves to the north wind", &["ann"]);
        zoo_doc.title = "Zoo plan".into();
        let mut farm_doc = doc(
            farm,
            1,
            "a cow and a zebu face the wind from the north",
            &["ann"],
        );
        farm_doc.title = "Farm".into();
        index.upsert(&zoo_doc).await.unwrap();
        index.upsert(&farm_doc).await.unwrap();
        index.flush().await.unwrap();
        let found = |text: &str| {
            let index = index.clone();
            let q = query(text, "ann");
            async move {
                let mut ids: Vec<DocumentId> = index
                    .search(&q)
                    .await
                    .unwrap()
                    .hits
                    .iter()
                    .map(|h| h.id)
                    .collect();
                ids.sort_by_key(|id| id.to_string());
                ids
            }
        };
        let both = {
            let mut both = vec![zoo, farm];
            both.sort_by_key(|id| id.to_string());
            both
        };
        for (text, expected) in [
            ("zebra", vec![zoo]),
            ("ZEBRA north", vec![zoo]),
            ("wind north", both.clone()),
            ("\"north wind\"", vec![zoo]),
            ("north-wind", vec![zoo]),
            ("\"wind north\"", vec![]),
            ("zebra OR cow", both.clone()),
            ("zebra AND cow", vec![]),
            ("wind -zebra", vec![farm]),
            ("wind NOT (zebra OR giraffe)", vec![farm]),
            ("zeb*", both.clone()),
            ("zebr*", vec![zoo]),
            ("title:plan", vec![zoo]),
            ("body:plan", vec![]),
            ("title:\"zoo plan\"", vec![zoo]),
            ("title:fa* OR title:zo*", both.clone()),
            ("((wind) (north OR south)) -cow", vec![zoo]),
        ] {
            assert_eq!(found(text).await, expected, "{text}");
        }
    }

    #[tokio::test]
    async fn hits_carry_no_score_and_snippets_weigh_words_alike() {
        let dir = tempfile::tempdir().unwrap();
        let index = TantivySearchIndex::open(dir.path()).unwrap();
        let id = DocumentId::generate();
        let filler = " filler".repeat(60);
        let body = format!("alpha{filler} beta{filler}");
        index.upsert(&doc(id, 1, &body, &["ann"])).await.unwrap();
        index.flush().await.unwrap();
        let snippet = || async {
            index
                .search(&query("alpha beta", "ann"))
                .await
                .unwrap()
                .hits[0]
                .snippet
                .clone()
        };
        let alone = snippet().await;
        // Someone else's documents make `beta` rarer than `alpha` in the index: the
        // excerpt chosen for ann's document must not change.
        for _ in 0..20 {
            index
                .upsert(&doc(DocumentId::generate(), 1, "alpha", &["bob"]))
                .await
                .unwrap();
        }
        index.flush().await.unwrap();
        assert_eq!(snippet().await, alone);
        let hit =
            serde_json::to_value(&index.search(&query("alpha", "ann")).await.unwrap().hits[0])
                .unwrap();
        assert_eq!(
            hit.as_object().unwrap().keys().cloned().collect::<Vec<_>>(),
            ["id", "snippet", "title", "version"]
        );
    }

    #[tokio::test]
    async fn a_spent_budget_stops_the_search() {
        let dir = tempfile::tempdir().unwrap();
        let index = TantivySearchIndex::open(dir.path())
            .unwrap()
            .with_time_budget(Duration::ZERO);
        index
            .upsert(&doc(DocumentId::generate(), 1, "apple", &["ann"]))
            .await
            .unwrap();
        index.flush().await.unwrap();
        assert!(matches!(
            index.search(&query("apple", "ann")).await,
            Err(Error::Unavailable(_))
        ));
    }

    #[test]
    fn scorers_stop_when_the_caller_leaves() {
        let dir = tempfile::tempdir().unwrap();
        let (schema, f) = schema();
        let index = Index::create_in_dir(dir.path(), schema).unwrap();
        let mut writer: IndexWriter = index.writer_with_num_threads(1, WRITER_MEMORY).unwrap();
        for _ in 0..(3 * BUDGET_CHECK_EVERY) {
            writer.add_document(doc!(f.body => "apple")).unwrap();
        }
        writer.commit().unwrap();
        let searcher = index.reader().unwrap().searcher();
        let cancelled = Arc::new(AtomicBool::new(false));
        let budget = Budget {
            deadline: Instant::now() + Duration::from_secs(60),
            cancelled: cancelled.clone(),
            spent: Arc::new(AtomicBool::new(false)),
        };
        let query = BudgetedQuery {
            inner: to_tantivy(f, &search_query::parse("apple").unwrap()),
            budget: budget.clone(),
        };
        let all = searcher.search(&query, &tantivy::collector::Count).unwrap();
        assert_eq!(all, 3 * BUDGET_CHECK_EVERY as usize);
        let weight = query
            .weight(EnableScoring::enabled_from_searcher(&searcher))
            .unwrap();
        let mut scorer = weight.scorer(searcher.segment_reader(0), 1.0).unwrap();
        drop(CancelOnDrop(cancelled));
        let mut visited = 0;
        while scorer.advance() != TERMINATED {
            visited += 1;
        }
        assert!(visited < BUDGET_CHECK_EVERY, "{visited}");
        assert!(budget.is_spent());
    }
}
