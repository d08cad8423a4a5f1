//! The [`DocumentStore`] contract: versioned writes, their typed conflicts, deletion
//! stamped with its version, and members' listings newest first.

use std::sync::Arc;

use shared::Error;
use shared::domain::{Body, Role, Title};
use shared::ports::DocumentStore;

use super::{new_document, next_version, unique_user};

pub async fn run(store: Arc<dyn DocumentStore>) {
    let ann = unique_user("ann");
    let bob = unique_user("bob");
    let cat = unique_user("cat");

    // Create, read back, refuse a second create of the same id.
    let doc = new_document(&ann, "Plan", "first draft", &[(&bob, Role::Editor)]);
    store.create(&doc).await.expect("create");
    assert_eq!(store.get(&doc.id).await.unwrap().as_ref(), Some(&doc));
    assert!(matches!(
        store.create(&doc).await,
        Err(Error::AlreadyExists)
    ));

    // Updates replace exactly the previous version.
    let v2 = next_version(&doc, &bob, |d| {
        d.body = Body::parse("second draft").unwrap()
    });
    store.update(&v2).await.expect("update to v2");
    assert_eq!(store.get(&doc.id).await.unwrap().as_ref(), Some(&v2));
    let stale = next_version(&doc, &bob, |d| d.title = Title::parse("Stale").unwrap());
    match store.update(&stale).await {
        Err(Error::VersionMismatch { current }) => assert_eq!(current, 2),
        other => panic!("a stale update must be a version mismatch, got {other:?}"),
    }
    let ahead = next_version(&v2, &ann, |_| {}).clone();
    let ahead = next_version(&ahead, &ann, |_| {});
    assert!(matches!(
        store.update(&ahead).await,
        Err(Error::VersionMismatch { current: 2 })
    ));
    let missing = next_version(&new_document(&ann, "Nothing", "", &[]), &ann, |_| {});
    assert!(matches!(store.update(&missing).await, Err(Error::NotFound)));
    assert_eq!(store.get(&missing.id).await.unwrap(), None);

    // Collaborator changes move the document in and out of members' listings.
    let v3 = next_version(&v2, &ann, |d| {
        d.collaborators.remove(&bob);
        d.collaborators.insert(cat.clone(), Role::Viewer);
    });
    store.update(&v3).await.expect("update to v3");
    let ids = |page: shared::ports::DocumentPage| {
        page.items.into_iter().map(|d| d.id).collect::<Vec<_>>()
    };
    assert_eq!(
        ids(store.list_for_member(&cat, 10, None).await.unwrap()),
        vec![doc.id]
    );
    assert!(ids(store.list_for_member(&bob, 10, None).await.unwrap()).is_empty());

    // Listings: newest first, paged by cursor, only the member's documents.
    let mut created = vec![doc.id];
    for n in 0..4 {
        let more = new_document(&ann, &format!("Doc {n}"), "text", &[]);
        store.create(&more).await.unwrap();
        created.push(more.id);
    }
    let others = new_document(&bob, "Bob's", "not ann's", &[]);
    store.create(&others).await.unwrap();
    let newest_first: Vec<_> = created.iter().rev().copied().collect();
    let first = store.list_for_member(&ann, 2, None).await.unwrap();
    assert_eq!(first.next, Some(newest_first[1]));
    let second = store
        .list_for_member(&ann, 2, first.next.as_ref())
        .await
        .unwrap();
    let third = store
        .list_for_member(&ann, 2, second.next.as_ref())
        .await
        .unwrap();
    assert_eq!(third.next, None, "the last page has no cursor");
    let all: Vec<_> = [first, second, third].into_iter().flat_map(ids).collect();
    assert_eq!(all, newest_first);
    let whole = store.list_for_member(&ann, 100, None).await.unwrap();
    assert_eq!(whole.next, None);
    assert_eq!(whole.items.len(), 5);

    // Deletion: only from the previous version; the document then reads as missing,
    // leaves every listing, and refuses further writes.
    let stamped = next_version(&v3, &ann, |_| {});
    let early = next_version(&v2, &ann, |_| {});
    assert!(matches!(
        store.delete(&early).await,
        Err(Error::VersionMismatch { current: 3 })
    ));
    store.delete(&stamped).await.expect("delete");
    assert_eq!(store.get(&doc.id).await.unwrap(), None);
    assert!(!ids(store.list_for_member(&ann, 100, None).await.unwrap()).contains(&doc.id));
    assert!(ids(store.list_for_member(&cat, 10, None).await.unwrap()).is_empty());
    let after = next_version(&stamped, &ann, |_| {});
    assert!(matches!(store.update(&after).await, Err(Error::NotFound)));
    assert!(matches!(store.delete(&after).await, Err(Error::NotFound)));
}
