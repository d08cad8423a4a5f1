use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::WriteOutcome;
use crate::Result;
use crate::domain::search_query::Query;
use crate::domain::{Document, DocumentId, UserId};

/// What the index holds of a document: its text and who may read it.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchDocument {
    pub id: DocumentId,
    pub version: u64,
    pub title: String,
    pub body: String,
    pub readers: Vec<UserId>,
}

impl From<&Document> for SearchDocument {
    fn from(doc: &Document) -> Self {
        Self {
            id: doc.id,
            version: doc.version,
            title: doc.title.as_str().to_owned(),
            body: doc.body.as_str().to_owned(),
            readers: doc.readers().cloned().collect(),
        }
    }
}

/// A search on behalf of `reader`: only documents they may read are candidates.
#[derive(Debug, Clone)]
pub struct SearchQuery {
    /// The parsed query: adapters map it to their backend's query objects, never to
    /// its query syntax.
    pub query: Query,
    pub reader: UserId,
    pub limit: usize,
    pub offset: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SearchHit {
    #[schema(value_type = String, format = Uuid)]
    pub id: DocumentId,
    pub title: String,
    /// An excerpt of this document's body with the matched terms wrapped in
    /// `<mark>`…`</mark>`; the rest is HTML-escaped. Which excerpt is chosen depends
    /// only on this document and the query.
    pub snippet: String,
    pub version: u64,
}

#[derive(Debug, Clone)]
pub struct SearchPage {
    pub hits: Vec<SearchHit>,
    /// Whether more hits follow this page.
    pub more: bool,
}

/// The full-text index. Writes are guarded by the document version: an older version
/// never replaces a newer one, and a deletion leaves a tombstone at its version so a
/// late older write cannot bring the document back.
#[async_trait]
pub trait SearchIndex: Send + Sync + 'static {
    /// Indexes `doc` unless the index holds this version or a newer one (or a newer
    /// tombstone), in which case it returns `AlreadyApplied`. An adapter that holds
    /// writes until [`flush`](SearchIndex::flush) (OpenSearch's `_bulk`) may learn only
    /// there that a newer version is indexed; the write then changes nothing. What the
    /// index holds after a flush is the guarantee, the outcome only a hint.
    ///
    /// Errors: [`Error::Unavailable`](crate::Error::Unavailable) when the index cannot be
    /// written now.
    async fn upsert(&self, doc: &SearchDocument) -> Result<WriteOutcome>;

    /// Removes the document, leaving a tombstone at `version`, unless a newer version is
    /// there. Errors: `Unavailable`.
    async fn delete(&self, id: &DocumentId, version: u64) -> Result<WriteOutcome>;

    /// Makes the writes so far durable and visible to searches (writes may be batched):
    /// at once, or within the index's refresh interval where the adapter says so (the
    /// OpenSearch adapter unless it waits for the refresh). A failed flush keeps every
    /// write for the next one. Errors: `Unavailable`, `Blocked`.
    async fn flush(&self) -> Result<()>;

    /// The hits for a query, best first, only among documents the reader may read. Hits
    /// carry no relevance score: it is computed from statistics of the whole index,
    /// documents the reader cannot see included.
    ///
    /// The search stops at the adapter's time budget and when the returned future is
    /// dropped; no work outlives it for long.
    ///
    /// Errors: `Unavailable` when the index cannot serve or the search ran out of time.
    async fn search(&self, query: &SearchQuery) -> Result<SearchPage>;

    /// Whether nobody has searched the index for a while (OpenSearch calls such a shard
    /// "search idle"). An index that says so makes a search that finds it idle see
    /// every write made before it, flushing them first; so its writer may flush less
    /// often meanwhile, since nobody is looking. By default never idle.
    fn is_search_idle(&self) -> bool {
        false
    }

    /// Errors: `Unavailable` when the index cannot serve.
    async fn health(&self) -> Result<()>;
}
