//! The [`DocumentStore`] contract: versioned writes, their typed conflicts, deletion
//! stamped with its version, members' listings newest first, and the kept versions:
//! each body operation stored with its version (atomically), read back in order from a
//! base, and every version rebuilt exactly.

use std::sync::Arc;

use shared::Error;
use shared::domain::{Body, Document, DocumentVersion, Role, TextOperation, Title};
use shared::ports::DocumentStore;

use super::{new_document, next_version, unique_user};

/// The operation from `old`'s body to `new`'s, as the service computes it for a save.
fn ops(old: &Document, new: &Document) -> TextOperation {
    TextOperation::diff(old.body.as_str(), new.body.as_str())
}

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
    store
        .update(&v2, &ops(&doc, &v2))
        .await
        .expect("update to v2");
    assert_eq!(store.get(&doc.id).await.unwrap().as_ref(), Some(&v2));
    let stale = next_version(&doc, &bob, |d| d.title = Title::parse("Stale").unwrap());
    match store.update(&stale, &ops(&doc, &stale)).await {
        Err(Error::VersionMismatch { current }) => assert_eq!(current, 2),
        other => panic!("a stale update must be a version mismatch, got {other:?}"),
    }
    let ahead = next_version(&v2, &ann, |_| {}).clone();
    let ahead = next_version(&ahead, &ann, |_| {});
    assert!(matches!(
        store.update(&ahead, &ops(&v2, &ahead)).await,
        Err(Error::VersionMismatch { current: 2 })
    ));
    let missing = next_version(&new_document(&ann, "Nothing", "", &[]), &ann, |_| {});
    assert!(matches!(
        store.update(&missing, &TextOperation::new()).await,
        Err(Error::NotFound)
    ));
    assert_eq!(store.get(&missing.id).await.unwrap(), None);

    // Collaborator changes move the document in and out of members' listings.
    let v3 = next_version(&v2, &ann, |d| {
        d.collaborators.remove(&bob);
        d.collaborators.insert(cat.clone(), Role::Viewer);
    });
    store
        .update(&v3, &ops(&v2, &v3))
        .await
        .expect("update to v3");
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
    assert!(matches!(
        store.update(&after, &TextOperation::new()).await,
        Err(Error::NotFound)
    ));
    assert!(matches!(store.delete(&after).await, Err(Error::NotFound)));

    versions(&store).await;
    long_documents(&store).await;
}

/// A document longer than a store may keep inline in its item (the AWS store pages
/// bodies over 4 KB out to the versions): it reads back whole everywhere, and its head
/// (what access checks read) matches it.
async fn long_documents(store: &Arc<dyn DocumentStore>) {
    let ann = unique_user("ann");
    let bob = unique_user("bob");
    let long = "a line of a long document, typed into\n".repeat(300);
    let doc = new_document(&ann, "Long", &long, &[(&bob, Role::Viewer)]);
    store.create(&doc).await.expect("create");
    let mut history = vec![doc.clone()];
    for n in 2..=70 {
        let previous = history.last().unwrap();
        let next = next_version(previous, &ann, |d| {
            d.body = Body::parse(typing(d.body.as_str(), n)).unwrap()
        });
        store
            .update(&next, &ops(previous, &next))
            .await
            .expect("update");
        history.push(next);
    }
    let latest = history.last().unwrap().clone();
    assert_eq!(store.get(&doc.id).await.unwrap().as_ref(), Some(&latest));
    assert_eq!(
        store.head(&doc.id).await.unwrap(),
        Some(latest.clone().into())
    );
    let listed = store.list_for_member(&bob, 10, None).await.unwrap();
    assert_eq!(listed.items, vec![latest.clone()]);
    for v in [1, 2, 63, 64, 65, 70] {
        assert_eq!(
            store.version(&doc.id, v).await.unwrap(),
            Some(as_version(&history[v as usize - 1])),
            "version {v}"
        );
    }
    let stamped = next_version(&latest, &ann, |_| {});
    store.delete(&stamped).await.expect("delete");
    assert_eq!(store.head(&doc.id).await.unwrap(), None);
    assert_eq!(store.get(&doc.id).await.unwrap(), None);
    assert_eq!(store.version(&doc.id, 70).await.unwrap(), None);
}

/// More versions than two snapshot intervals (the stores keep a whole body every 64
/// versions), so rebuilding crosses snapshots and starts from each of them.
const VERSIONS: u64 = 150;

/// The `n`th edit of a body: inserts some multi-byte text at a place that moves, and
/// every third time deletes a character there first.
fn typing(body: &str, n: u64) -> String {
    let mut chars: Vec<char> = body.chars().collect();
    let at = (n as usize * 7) % (chars.len() + 1);
    if n.is_multiple_of(3) && at < chars.len() {
        chars.remove(at);
    }
    chars.splice(at..at, format!("{n}é🙂 ").chars());
    chars.into_iter().collect()
}

/// What `version` of `doc` must read back as.
fn as_version(doc: &Document) -> DocumentVersion {
    DocumentVersion {
        id: doc.id,
        version: doc.version,
        title: doc.title.clone(),
        body: doc.body.clone(),
        actor: doc.updated_by.clone(),
        at: doc.updated_at,
    }
}

/// Applies `ops` in order to `body`.
fn replay(body: &str, ops: &[TextOperation]) -> String {
    ops.iter().fold(body.to_owned(), |text, op| {
        op.apply(&text)
            .expect("a kept operation fits the body before it")
    })
}

async fn versions(store: &Arc<dyn DocumentStore>) {
    let ann = unique_user("ann");
    let bob = unique_user("bob");
    let doc = new_document(&ann, "Diary", "day 0", &[(&bob, Role::Editor)]);
    store.create(&doc).await.expect("create");
    assert_eq!(
        store.version(&doc.id, 1).await.unwrap(),
        Some(as_version(&doc))
    );
    assert_eq!(store.operations_since(&doc.id, 1).await.unwrap(), vec![]);

    // Many small edits, by two people; every tenth one changes only the title, so its
    // operation is the no-op.
    let mut history = vec![doc.clone()];
    let mut sent = Vec::new();
    for n in 2..=VERSIONS {
        let previous = history.last().unwrap();
        let by = if n.is_multiple_of(2) { &ann } else { &bob };
        let next = next_version(previous, by, |d| {
            if n.is_multiple_of(10) {
                d.title = Title::parse(format!("Diary, part {n}")).unwrap();
            } else {
                d.body = Body::parse(typing(d.body.as_str(), n)).unwrap();
            }
        });
        let op = ops(previous, &next);
        store
            .update(&next, &op)
            .await
            .unwrap_or_else(|e| panic!("update to version {n}: {e:?}"));
        sent.push(op);
        history.push(next);
    }
    let latest = history.last().unwrap().clone();
    assert_eq!(store.get(&doc.id).await.unwrap().as_ref(), Some(&latest));

    // The operations come back in version order, as sent, and replay to every body.
    let kept = store.operations_since(&doc.id, 1).await.unwrap();
    assert_eq!(kept.len(), sent.len());
    for (n, (kept, sent)) in kept.iter().zip(&sent).enumerate() {
        assert!(
            kept == sent || (kept.is_noop() && sent.is_noop()),
            "the operation of version {}: kept {kept:?}, sent {sent:?}",
            n + 2
        );
    }
    assert_eq!(replay(doc.body.as_str(), &kept), latest.body.as_str());
    for base in [63, 64, 65, 100, VERSIONS - 1] {
        let since = store.operations_since(&doc.id, base).await.unwrap();
        assert_eq!(since.len() as u64, VERSIONS - base, "since {base}");
        assert_eq!(
            replay(history[base as usize - 1].body.as_str(), &since),
            latest.body.as_str(),
            "since {base}"
        );
    }
    assert_eq!(
        store.operations_since(&doc.id, VERSIONS).await.unwrap(),
        vec![]
    );

    // A base that is not kept cannot be transformed from: it names the oldest one kept.
    assert!(matches!(
        store.operations_since(&doc.id, 0).await,
        Err(Error::BaseVersionGone { oldest: 1 })
    ));
    let never = new_document(&ann, "Never stored", "", &[]);
    assert!(matches!(
        store.operations_since(&never.id, 1).await,
        Err(Error::NotFound)
    ));
    assert_eq!(store.version(&never.id, 1).await.unwrap(), None);

    // Every version reads back exactly as it was, across the snapshots.
    for old in &history {
        assert_eq!(
            store.version(&doc.id, old.version).await.unwrap(),
            Some(as_version(old)),
            "version {}",
            old.version
        );
    }
    assert_eq!(store.version(&doc.id, 0).await.unwrap(), None);
    assert_eq!(store.version(&doc.id, VERSIONS + 1).await.unwrap(), None);

    // A refused update keeps nothing: not a version from the future...
    let ahead = next_version(&next_version(&latest, &ann, |_| {}), &ann, |d| {
        d.body = Body::parse("from the future").unwrap()
    });
    assert!(matches!(
        store
            .update(&ahead, &TextOperation::diff(latest.body.as_str(), "from the future"))
            .await,
        Err(Error::VersionMismatch { current }) if current == VERSIONS
    ));
    assert_eq!(store.version(&doc.id, VERSIONS + 2).await.unwrap(), None);
    // ...nor the operations of writers that lost one version to another: the version
    // kept is the first writer's, with its operation. (They write one after the other:
    // moto, which the DynamoDB adapter is tested on, does not isolate concurrent
    // transactions from each other, as DynamoDB does.)
    let writers: Vec<Document> = (0..4)
        .map(|i| {
            next_version(&latest, &bob, |d| {
                d.body = Body::parse(format!("{} writer {i}", d.body.as_str())).unwrap();
                d.title = Title::parse(format!("Writer {i}")).unwrap();
            })
        })
        .collect();
    for (i, writer) in writers.iter().enumerate() {
        let outcome = store.update(writer, &ops(&latest, writer)).await;
        match (i, outcome) {
            (0, Ok(())) => {}
            (0, other) => panic!("the first writer of a version wins, got {other:?}"),
            (_, Err(Error::VersionMismatch { current })) => assert_eq!(current, VERSIONS + 1),
            (_, other) => panic!("a writer that lost must be a version mismatch, got {other:?}"),
        }
    }
    let winner = &writers[0];
    assert_eq!(
        store.version(&doc.id, VERSIONS + 1).await.unwrap(),
        Some(as_version(winner))
    );
    let last_op = store.operations_since(&doc.id, VERSIONS).await.unwrap();
    assert_eq!(last_op.len(), 1);
    assert_eq!(replay(latest.body.as_str(), &last_op), winner.body.as_str());

    // A deleted document keeps no versions.
    store
        .delete(&next_version(winner, &ann, |_| {}))
        .await
        .expect("delete");
    for version in [1, SNAPSHOT_INTERVAL, VERSIONS, VERSIONS + 1] {
        assert_eq!(
            store.version(&doc.id, version).await.unwrap(),
            None,
            "version {version} of a deleted document"
        );
    }
    assert!(matches!(
        store.operations_since(&doc.id, VERSIONS).await,
        Err(Error::NotFound)
    ));
}

/// A version both stores keep a snapshot at.
const SNAPSHOT_INTERVAL: u64 = 64;
