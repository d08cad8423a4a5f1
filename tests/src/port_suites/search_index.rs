//! The [`SearchIndex`] contract: version-guarded writes, tombstones that stop late
//! writes, the reader filter, `<mark>` snippets over escaped text, invalid queries and
//! paging.

use std::sync::Arc;

use shared::Error;
use shared::domain::{DocumentId, UserId};
use shared::ports::{SearchDocument, SearchIndex, SearchQuery, WriteOutcome};

use super::unique_user;

fn doc(id: DocumentId, version: u64, body: &str, readers: &[&UserId]) -> SearchDocument {
    SearchDocument {
        id,
        version,
        title: format!("Title v{version}"),
        body: body.into(),
        readers: readers.iter().map(|r| (*r).clone()).collect(),
    }
}

fn query(text: &str, reader: &UserId) -> SearchQuery {
    SearchQuery {
        text: text.into(),
        reader: reader.clone(),
        limit: 10,
        offset: 0,
    }
}

pub async fn run(index: Arc<dyn SearchIndex>) {
    index.health().await.expect("healthy");
    let (ann, bob) = (unique_user("ann"), unique_user("bob"));
    // A word no other test indexes, so the suite may share an index.
    let word = format!("zebra{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let other = format!("giraffe{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);

    let id = DocumentId::generate();
    assert_eq!(
        index
            .upsert(&doc(id, 2, &format!("{word} <b>"), &[&ann]))
            .await
            .unwrap(),
        WriteOutcome::Applied
    );
    // Older and equal versions lose, before and after a flush.
    assert_eq!(
        index.upsert(&doc(id, 1, &other, &[&ann])).await.unwrap(),
        WriteOutcome::AlreadyApplied
    );
    index.flush().await.unwrap();
    assert_eq!(
        index.upsert(&doc(id, 2, &other, &[&ann])).await.unwrap(),
        WriteOutcome::AlreadyApplied
    );
    index.flush().await.unwrap();

    let page = index.search(&query(&word, &ann)).await.unwrap();
    assert_eq!(page.hits.len(), 1, "{page:?}");
    assert_eq!(page.hits[0].id, id);
    assert_eq!(page.hits[0].version, 2);
    assert_eq!(page.hits[0].title, "Title v2");
    assert!(
        page.hits[0]
            .snippet
            .starts_with(&format!("<mark>{word}</mark> &lt;b")),
        "{}",
        page.hits[0].snippet
    );
    assert!(
        index
            .search(&query(&other, &ann))
            .await
            .unwrap()
            .hits
            .is_empty()
    );
    assert!(
        index
            .search(&query(&word, &bob))
            .await
            .unwrap()
            .hits
            .is_empty(),
        "not a reader"
    );

    // A match in the title only shows the start of the body, escaped.
    let titled = DocumentId::generate();
    let mut title_only = doc(titled, 1, "a < b & c", &[&bob]);
    title_only.title = format!("About {other}");
    index.upsert(&title_only).await.unwrap();
    index.flush().await.unwrap();
    let hits = index.search(&query(&other, &bob)).await.unwrap().hits;
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].snippet, "a &lt; b &amp; c");

    // A deletion leaves a tombstone that a late older write cannot pass.
    assert_eq!(index.delete(&id, 3).await.unwrap(), WriteOutcome::Applied);
    assert_eq!(
        index.delete(&id, 3).await.unwrap(),
        WriteOutcome::AlreadyApplied
    );
    index.flush().await.unwrap();
    assert!(
        index
            .search(&query(&word, &ann))
            .await
            .unwrap()
            .hits
            .is_empty()
    );
    assert_eq!(
        index.upsert(&doc(id, 2, &word, &[&ann])).await.unwrap(),
        WriteOutcome::AlreadyApplied
    );
    index.flush().await.unwrap();
    assert!(
        index
            .search(&query(&word, &ann))
            .await
            .unwrap()
            .hits
            .is_empty()
    );

    // Queries that do not parse are invalid, not failures.
    assert!(matches!(
        index.search(&query("title:(", &ann)).await,
        Err(Error::Invalid(_))
    ));
    assert!(matches!(
        index.search(&query("   ", &ann)).await,
        Err(Error::Invalid(_))
    ));

    // Paging.
    let common = format!("apple{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    for _ in 0..3 {
        index
            .upsert(&doc(
                DocumentId::generate(),
                1,
                &format!("{common} pie"),
                &[&ann],
            ))
            .await
            .unwrap();
    }
    index.flush().await.unwrap();
    let mut q = query(&common, &ann);
    q.limit = 2;
    let first = index.search(&q).await.unwrap();
    assert_eq!(first.hits.len(), 2);
    assert!(first.more);
    q.offset = 2;
    let second = index.search(&q).await.unwrap();
    assert_eq!(second.hits.len(), 1);
    assert!(!second.more);
}
