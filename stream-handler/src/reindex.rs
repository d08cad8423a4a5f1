//! Rebuilding the embedded search index from the documents themselves: for an index
//! that was lost, damaged or left stale.
//!
//! The index is rebuilt in place, never emptied first, so searches meanwhile answer
//! from the whole index as it was, each entry replaced as the rebuild reaches it:
//! - The documents are read a page at a time from the document store (in id order, so
//!   memory stays bounded) and each entry is written again from the store's copy
//!   ([`TantivySearchIndex::rewrite`]), committed every [`COMMIT_EVERY`] documents and
//!   at the end.
//! - Then every live entry of a document the rebuild did not visit and the store does
//!   not hold becomes a tombstone ([`TantivySearchIndex::bury`]). Tombstones already in
//!   the index stay: they stop late records of deleted documents.
//!
//! It runs beside the fan-out on the same index (a running server's, through its one
//! writer). Every write is version-guarded: a version the fan-out indexes meanwhile is
//! never replaced by the rebuild's older copy, and a document created meanwhile is in
//! the store when the rebuild looks, so it is kept.

use std::collections::HashSet;

use shared::Result;
use shared::embedded::{SqliteDocumentStore, TantivySearchIndex};
use shared::ports::{DocumentStore, SearchDocument, SearchIndex, WriteOutcome};

/// Documents read per page.
const PAGE: usize = 500;
/// Documents indexed between two commits, so a long rebuild becomes searchable as it
/// goes and the writes held in memory stay bounded.
pub const COMMIT_EVERY: u64 = 5_000;

/// Rebuilds `index` in place from every document of `documents`, calling
/// `progress(done, total)` as it goes; returns how many were indexed.
pub async fn reindex(
    index: &TantivySearchIndex,
    documents: &SqliteDocumentStore,
    progress: impl Fn(u64, u64),
) -> Result<u64> {
    let total = documents.count().await?;
    progress(0, total);
    let mut visited = HashSet::new();
    let mut done = 0;
    let mut after = None;
    loop {
        let docs = documents.documents_after(after.as_ref(), PAGE).await?;
        let Some(last) = docs.last() else {
            break;
        };
        after = Some(last.id);
        for doc in &docs {
            index.rewrite(&SearchDocument::from(doc)).await?;
            visited.insert(doc.id);
            done += 1;
            progress(done, total.max(done));
            if done % COMMIT_EVERY == 0 {
                index.flush().await?;
            }
        }
    }
    index.flush().await?;
    let mut buried = 0u64;
    for (id, state) in index.entries().await? {
        if state.deleted || visited.contains(&id) || documents.get(&id).await?.is_some() {
            continue;
        }
        if index.bury(&id, state.version).await? == WriteOutcome::Applied {
            buried += 1;
        }
    }
    index.flush().await?;
    if buried > 0 {
        tracing::info!(
            buried,
            "the rebuild found entries of documents the store no longer holds"
        );
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use shared::clock::SystemClock;
    use shared::domain::search_query;
    use shared::domain::{Body, Document, DocumentId, Title, UserId};
    use shared::embedded::IndexedVersion;
    use shared::ports::SearchQuery;
    use shared::service::{DocumentService, NewDocument};

    use super::*;

    struct Fixture {
        _dir: tempfile::TempDir,
        store: Arc<SqliteDocumentStore>,
        index: TantivySearchIndex,
    }

    impl Fixture {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let store = Arc::new(SqliteDocumentStore::open(&dir.path().join("d.db")).unwrap());
            let index = TantivySearchIndex::open(&dir.path().join("index")).unwrap();
            Self {
                _dir: dir,
                store,
                index,
            }
        }

        async fn create(&self, title: &str, body: &str) -> Document {
            DocumentService::new(self.store.clone(), Arc::new(SystemClock))
                .create(
                    &ann(),
                    NewDocument {
                        title: Title::parse(title).unwrap(),
                        body: Body::parse(body).unwrap(),
                        collaborators: Default::default(),
                    },
                )
                .await
                .unwrap()
        }

        async fn found(&self, text: &str) -> Vec<String> {
            let query = SearchQuery {
                query: search_query::parse(text).unwrap(),
                reader: ann(),
                limit: 10,
                offset: 0,
            };
            let page = self.index.search(&query).await.unwrap();
            let mut titles: Vec<String> = page.hits.into_iter().map(|h| h.title).collect();
            titles.sort();
            titles
        }

        async fn state(&self, id: &DocumentId) -> Option<IndexedVersion> {
            self.index.indexed_version(id).await.unwrap()
        }
    }

    fn ann() -> UserId {
        UserId::parse("ann").unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn searches_find_every_document_all_through_a_rebuild() {
        let f = Fixture::new();
        for i in 0..3 {
            f.create(&format!("Note {i}"), "walrus").await;
        }
        assert_eq!(reindex(&f.index, &f.store, |_, _| {}).await.unwrap(), 3);

        let seen = Mutex::new(Vec::new());
        let indexed = reindex(&f.index, &f.store, |done, _| {
            let live = tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(f.index.live_documents())
            })
            .unwrap();
            seen.lock().unwrap().push((done, live));
        })
        .await
        .unwrap();

        assert_eq!(indexed, 3);
        let seen = seen.into_inner().unwrap();
        assert_eq!(seen.len(), 4, "{seen:?}");
        assert!(seen.iter().all(|(_, live)| *live == 3), "{seen:?}");
        assert_eq!(f.found("walrus").await.len(), 3);
    }

    #[tokio::test]
    async fn a_stale_entry_is_written_again_an_orphan_buried_and_newer_writes_stand() {
        let f = Fixture::new();
        let damaged = f.create("Damaged", "walrus").await;
        let ahead = f.create("Ahead", "otter").await;
        let missing = f.create("Missing", "heron").await;
        // The index's view: one entry whose text is not the store's at its version, one
        // at a version the store does not have yet (the fan-out ran ahead of the
        // rebuild's read), an orphan, a tombstone, and no entry for `missing`.
        let mut wrong = SearchDocument::from(&damaged);
        wrong.body = "mangled".into();
        f.index.upsert(&wrong).await.unwrap();
        let mut later = SearchDocument::from(&ahead);
        later.version += 1;
        later.body = "otter seal".into();
        f.index.upsert(&later).await.unwrap();
        let orphan = SearchDocument {
            id: DocumentId::generate(),
            version: 3,
            title: "Orphan".into(),
            body: "walrus".into(),
            readers: vec![ann()],
        };
        f.index.upsert(&orphan).await.unwrap();
        let gone = DocumentId::generate();
        f.index.delete(&gone, 4).await.unwrap();
        f.index.flush().await.unwrap();
        assert_eq!(f.found("walrus").await, ["Orphan"]);

        assert_eq!(reindex(&f.index, &f.store, |_, _| {}).await.unwrap(), 3);

        assert_eq!(f.found("walrus").await, ["Damaged"]);
        assert!(f.found("mangled").await.is_empty());
        assert_eq!(f.found("heron").await, ["Missing"]);
        assert_eq!(f.found("seal").await, ["Ahead"], "the newer write stands");
        let tombstone = |version| {
            Some(IndexedVersion {
                version,
                deleted: true,
            })
        };
        assert_eq!(f.state(&orphan.id).await, tombstone(3));
        assert_eq!(f.state(&gone).await, tombstone(4), "a tombstone stays");
        assert_eq!(f.state(&missing.id).await.map(|s| s.deleted), Some(false));
    }
}
