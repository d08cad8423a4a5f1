//! The [`SearchIndex`] contract: version-guarded writes, tombstones that stop late
//! writes, the reader filter, `<mark>` snippets over escaped text, every construct of
//! the search language and paging.

use std::sync::Arc;

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
        query: text.parse().expect("a query of the search language"),
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
    // Older and equal versions lose, before and after a flush. Before it the adapter
    // knows; after it, one that holds writes until a flush (OpenSearch's `_bulk`) may
    // learn only at the next flush that the index has a newer version: what the index
    // holds then is the guarantee.
    assert_eq!(
        index.upsert(&doc(id, 1, &other, &[&ann])).await.unwrap(),
        WriteOutcome::AlreadyApplied
    );
    index.flush().await.unwrap();
    index.upsert(&doc(id, 2, &other, &[&ann])).await.unwrap();
    index.upsert(&doc(id, 1, &other, &[&ann])).await.unwrap();
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
    // (Refused at once, or at the next flush by an adapter that holds writes.)
    index.upsert(&doc(id, 2, &word, &[&ann])).await.unwrap();
    index.flush().await.unwrap();
    assert!(
        index
            .search(&query(&word, &ann))
            .await
            .unwrap()
            .hits
            .is_empty()
    );

    // Every construct of the search language, the same in every adapter.
    let north = format!("north{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let zoo = DocumentId::generate();
    let farm = DocumentId::generate();
    let mut zoo_doc = doc(
        zoo,
        1,
        &format!("the zebra moves to the {north} wind"),
        &[&ann],
    );
    zoo_doc.title = format!("Zoo plan {north}");
    let mut farm_doc = doc(
        farm,
        1,
        &format!("a cow faces the wind from the {north}"),
        &[&ann],
    );
    farm_doc.title = format!("Farm {north}");
    index.upsert(&zoo_doc).await.unwrap();
    index.upsert(&farm_doc).await.unwrap();
    index.flush().await.unwrap();
    let mut both = vec![zoo, farm];
    both.sort_by_key(|id| id.to_string());
    for (text, expected) in [
        (format!("{north} zebra"), vec![zoo]),
        (format!("\"{north} wind\""), vec![zoo]),
        (format!("{north}-wind"), vec![zoo]),
        (format!("\"wind {north}\""), vec![]),
        (format!("{north} (zebra OR cow)"), both.clone()),
        (format!("{north} zebra AND cow"), vec![]),
        (format!("{north} -zebra"), vec![farm]),
        (format!("{north} NOT (zebra OR giraffe)"), vec![farm]),
        (format!("{}* zebra", &north[..7]), vec![zoo]),
        (format!("{north} title:plan"), vec![zoo]),
        (format!("{north} body:plan"), vec![]),
        (format!("title:\"zoo plan\" {north}"), vec![zoo]),
        (format!("{north} (title:fa* OR title:zo*)"), both.clone()),
    ] {
        let mut found: Vec<DocumentId> = index
            .search(&query(&text, &ann))
            .await
            .unwrap()
            .hits
            .iter()
            .map(|h| h.id)
            .collect();
        found.sort_by_key(|id| id.to_string());
        assert_eq!(found, expected, "{text}");
    }

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
