//! Rebuilding the embedded search index from the documents themselves: for an index
//! that was lost, damaged, or built by an older schema.
//!
//! The documents are read a page at a time from the document store (in id order, so
//! memory stays bounded), indexed, and committed every [`COMMIT_EVERY`] documents and
//! at the end. Tombstones are not rebuilt: deleted documents are simply absent, and the
//! search's access check against the store keeps them out of results in any case.
//!
//! It runs beside the fan-out on the same index (a running server's, through its one
//! writer): every write is version-guarded, so a document the fan-out indexes meanwhile
//! keeps its newer version, and a fan-out write the clear drops was made from a version
//! the store already holds, which the rebuild then reads. Searches meanwhile answer from
//! what has been rebuilt so far.

use shared::Result;
use shared::embedded::{SqliteDocumentStore, TantivySearchIndex};
use shared::ports::{SearchDocument, SearchIndex};

/// Documents read per page.
const PAGE: usize = 500;
/// Documents indexed between two commits, so a long rebuild becomes searchable as it
/// goes and the writes held in memory stay bounded.
pub const COMMIT_EVERY: u64 = 5_000;

/// Clears `index` and indexes every document of `documents`, calling
/// `progress(done, total)` as it goes; returns how many were indexed.
pub async fn reindex(
    index: &TantivySearchIndex,
    documents: &SqliteDocumentStore,
    progress: impl Fn(u64, u64),
) -> Result<u64> {
    let total = documents.count().await?;
    index.clear().await?;
    progress(0, total);
    let mut done = 0;
    let mut after = None;
    loop {
        let docs = documents.documents_after(after.as_ref(), PAGE).await?;
        let Some(last) = docs.last() else {
            break;
        };
        after = Some(last.id);
        for doc in &docs {
            index.upsert(&SearchDocument::from(doc)).await?;
            done += 1;
            progress(done, total.max(done));
            if done % COMMIT_EVERY == 0 {
                index.flush().await?;
            }
        }
    }
    index.flush().await?;
    Ok(done)
}
