//! `docfan reindex`: rebuilds the search index from the documents, with a progress bar.
//! With no server on the data directory it works on the directory's files, holding its
//! lock meanwhile (so neither a server nor a restore starts under it); while `docfan
//! serve` runs, the server rebuilds its own index, asked through its admin socket
//! ([`crate::admin`]), and the bar follows the progress it reports.

use std::path::Path;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use shared::embedded::{DATABASE_FILE, SEARCH_INDEX_DIR, SqliteDocumentStore, TantivySearchIndex};

use crate::admin::client::{Reach, reach};

/// `docfan reindex`.
pub async fn run(data_dir: &Path) -> anyhow::Result<()> {
    let db = data_dir.join(DATABASE_FILE);
    anyhow::ensure!(
        db.exists(),
        "no docfan database in {} (set --data-dir)",
        data_dir.display()
    );
    let indexed = match reach(data_dir).await? {
        Reach::Here(_lock) => {
            let index = TantivySearchIndex::open(&data_dir.join(SEARCH_INDEX_DIR))
                .context("opening the search index")?;
            with_progress(&index, &db).await?
        }
        Reach::Server(server) => {
            let bar = progress_bar();
            let indexed = server
                .reindex(|done, total| {
                    bar.set_length(total);
                    bar.set_position(done);
                })
                .await;
            bar.finish_and_clear();
            indexed?
        }
    };
    println!("indexed {indexed} documents");
    Ok(())
}

/// The bar a rebuild shows on a terminal (nothing elsewhere).
fn progress_bar() -> ProgressBar {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} indexing [{bar:40}] {pos}/{len} documents ({per_sec}, {eta} left)",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    bar
}

/// Rebuilds `index` from the documents of the database at `db`, with a progress bar on
/// a terminal; returns how many were indexed.
pub async fn with_progress(index: &TantivySearchIndex, db: &Path) -> anyhow::Result<u64> {
    let documents = SqliteDocumentStore::open(db)
        .with_context(|| format!("opening the documents in {}", db.display()))?;
    let bar = progress_bar();
    let indexed = stream_handler::reindex::reindex(index, &documents, |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })
    .await?;
    bar.finish_and_clear();
    Ok(indexed)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use shared::clock::SystemClock;
    use shared::domain::{Body, Title, UserId};
    use shared::embedded::SqliteDocumentStore;
    use shared::ports::{SearchIndex, SearchQuery};
    use shared::service::{DocumentService, NewDocument};

    use super::*;

    #[tokio::test]
    async fn the_index_is_rebuilt_from_the_documents() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteDocumentStore::open(&dir.path().join(DATABASE_FILE)).unwrap());
        let docs = DocumentService::new(store, Arc::new(SystemClock));
        let ann = UserId::parse("ann").unwrap();
        for i in 0..3 {
            docs.create(
                &ann,
                NewDocument {
                    title: Title::parse(format!("Note {i}")).unwrap(),
                    body: Body::parse("walrus").unwrap(),
                    collaborators: Default::default(),
                },
            )
            .await
            .unwrap();
        }
        run(dir.path()).await.unwrap();
        let index = TantivySearchIndex::open(&dir.path().join(SEARCH_INDEX_DIR)).unwrap();
        let page = index
            .search(&SearchQuery {
                query: "walrus".parse().unwrap(),
                reader: ann,
                limit: 10,
                offset: 0,
            })
            .await
            .unwrap();
        assert_eq!(page.hits.len(), 3);
    }
}
