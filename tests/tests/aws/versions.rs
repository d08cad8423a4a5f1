//! The versions table behind the DynamoDB document store, read and written directly:
//! what each write leaves there, the transaction that keeps a version and its document
//! together, versions older than the kept ones, the clean-up after a deletion, and
//! what a keystroke costs in write units.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use shared::Error;
use shared::aws::AwsClients;
use shared::codec;
use shared::domain::SNAPSHOT_EVERY;
use shared::domain::{Body, Document, DocumentId, TextOperation, Title};
use shared::ports::{BodyArchive, DocumentStore};
use tests::port_suites::{new_document, next_version, unique_user};

use crate::emulators::{self, Wants};

type Item = HashMap<String, AttributeValue>;

fn ops(old: &Document, new: &Document) -> TextOperation {
    TextOperation::diff(old.body.as_str(), new.body.as_str())
}

/// Every version item of `id`, oldest first.
async fn version_items(clients: &AwsClients, id: &DocumentId) -> Vec<Item> {
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let out = clients
            .dynamodb
            .query()
            .table_name(&clients.config.tables.versions)
            .key_condition_expression("documentId = :id")
            .expression_attribute_values(":id", AttributeValue::S(id.to_string()))
            .consistent_read(true)
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .unwrap();
        items.extend(out.items.unwrap_or_default());
        start = out.last_evaluated_key;
        if start.is_none() {
            return items;
        }
    }
}

/// The document item of `id` as stored (strongly consistent).
async fn document_item(clients: &AwsClients, id: &DocumentId) -> Item {
    clients
        .dynamodb
        .get_item()
        .table_name(&clients.config.tables.documents)
        .set_key(Some(codec::document_key(id).into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .expect("the document item")
}

fn text<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    match item.get(name) {
        Some(AttributeValue::S(s)) => Some(s),
        _ => None,
    }
}

async fn delete_version_item(clients: &AwsClients, id: &DocumentId, version: u64) {
    clients
        .dynamodb
        .delete_item()
        .table_name(&clients.config.tables.versions)
        .key("documentId", AttributeValue::S(id.to_string()))
        .key("version", AttributeValue::N(version.to_string()))
        .send()
        .await
        .unwrap();
}

/// `count` versions of a new document, each typing a little more.
async fn typed(store: &dyn DocumentStore, count: u64) -> Vec<Document> {
    let ann = unique_user("ann");
    let mut history = vec![new_document(&ann, "Typed", "", &[])];
    store.create(&history[0]).await.unwrap();
    for n in 2..=count {
        let previous = history.last().unwrap();
        let next = next_version(previous, &ann, |d| {
            d.body = Body::parse(format!("{}{n} ", d.body.as_str())).unwrap()
        });
        store.update(&next, &ops(previous, &next)).await.unwrap();
        history.push(next);
    }
    history
}

#[tokio::test]
#[ignore = "needs moto and OpenSearch: run tests/run"]
async fn the_document_item_and_the_version_item_carry_the_operation() {
    let clients = emulators::aws(Wants::default()).await;
    let store = clients.document_store();
    let ann = unique_user("ann");
    let v1 = new_document(&ann, "Notes", "hello world", &[]);
    store.create(&v1).await.unwrap();
    let v2 = next_version(&v1, &ann, |d| {
        d.body = Body::parse("hello, wide world").unwrap()
    });
    let op = ops(&v1, &v2);
    store.update(&v2, &op).await.unwrap();
    let v3 = next_version(&v2, &ann, |d| d.title = Title::parse("Renamed").unwrap());
    store.update(&v3, &TextOperation::new()).await.unwrap();

    // Version 1 is a snapshot; version 2 has the operation, and so has the document
    // item that made it (so its stream record's NewImage does); version 3 left the body
    // alone, so neither has one.
    let items = version_items(&clients, &v1.id).await;
    assert_eq!(items.len(), 3);
    assert_eq!(text(&items[0], "snapshot"), Some("hello world"));
    assert_eq!(text(&items[0], "ops"), None);
    assert_eq!(text(&items[1], "snapshot"), None);
    let kept: TextOperation = serde_json::from_str(text(&items[1], "ops").unwrap()).unwrap();
    assert_eq!(kept, op);
    assert_eq!(text(&items[1], "actor"), Some(ann.as_str()));
    assert_eq!(text(&items[2], "title"), Some("Renamed"));
    assert_eq!(text(&items[2], "ops"), None);

    // The document item as it is now, decoded as its stream image would be.
    let document_image = || async {
        codec::item_to_document(&document_item(&clients, &v1.id).await.into()).unwrap()
    };
    let image = document_image().await;
    assert_eq!(image.document, v3);
    assert_eq!(image.ops, None, "a title change carries no operation");
    store
        .update(
            &next_version(&v3, &ann, |d| d.body = Body::parse("bye").unwrap()),
            &TextOperation::diff(v3.body.as_str(), "bye"),
        )
        .await
        .unwrap();
    let image = document_image().await;
    assert_eq!(
        image
            .ops
            .map(|o| o.apply(v3.body.as_str()).unwrap())
            .as_deref(),
        Some("bye")
    );
}

#[tokio::test]
#[ignore = "needs moto and OpenSearch: run tests/run"]
async fn a_version_already_kept_cancels_the_whole_write() {
    let clients = emulators::aws(Wants::default()).await;
    let store = clients.document_store();
    let history = typed(&store, 2).await;
    let v3 = next_version(&history[1], &history[1].owner, |d| {
        d.body = Body::parse("overwritten?").unwrap()
    });
    // A version item 3 that no write of the store made: the document's own condition
    // holds (it is at version 2), the version's does not.
    clients
        .dynamodb
        .put_item()
        .table_name(&clients.config.tables.versions)
        .item("documentId", AttributeValue::S(v3.id.to_string()))
        .item("version", AttributeValue::N("3".into()))
        .item("title", AttributeValue::S("Stray".into()))
        .send()
        .await
        .unwrap();
    let refused = store.update(&v3, &ops(&history[1], &v3)).await;
    assert!(
        matches!(refused, Err(Error::Unknown(_))),
        "a kept version is never rewritten: {refused:?}"
    );
    // Nothing of the write happened: the document is still at version 2.
    assert_eq!(store.get(&v3.id).await.unwrap().as_ref(), Some(&history[1]));
    let items = version_items(&clients, &v3.id).await;
    assert_eq!(text(&items[2], "title"), Some("Stray"));
}

#[tokio::test]
#[ignore = "needs moto and OpenSearch: run tests/run"]
async fn a_document_write_refused_inside_the_transaction_keeps_no_version() {
    let clients = emulators::aws(Wants::default()).await;
    let store = clients.document_store();
    let history = typed(&store, 2).await;
    // The store reads the document before it writes, so a stale write is usually
    // refused before any transaction. To reach the transaction's own condition, the
    // item is given `deleted = false`: the read takes it for a live document at
    // version 2, the transaction's guard (no `deleted` attribute) refuses it.
    clients
        .dynamodb
        .update_item()
        .table_name(&clients.config.tables.documents)
        .set_key(Some(codec::document_key(&history[1].id).into()))
        .update_expression("SET deleted = :no")
        .expression_attribute_values(":no", AttributeValue::Bool(false))
        .send()
        .await
        .unwrap();
    let v3 = next_version(&history[1], &history[1].owner, |d| {
        d.body = Body::parse("never kept").unwrap()
    });
    let refused = store.update(&v3, &ops(&history[1], &v3)).await;
    assert!(
        matches!(refused, Err(Error::VersionMismatch { current: 2 })),
        "the transaction's refusal is a typed version mismatch: {refused:?}"
    );
    assert_eq!(version_items(&clients, &v3.id).await.len(), 2);
    assert_eq!(store.version(&v3.id, 3).await.unwrap(), None);
    assert_eq!(store.get(&v3.id).await.unwrap().as_ref(), Some(&history[1]));
}

#[tokio::test]
#[ignore = "needs moto and OpenSearch: run tests/run"]
async fn versions_before_the_kept_ones_are_gone() {
    let clients = emulators::aws(Wants::default()).await;
    let store = clients.document_store();
    let history = typed(&store, SNAPSHOT_EVERY + 6).await;
    let id = history[0].id;
    // As if versions 1..=10 had been trimmed.
    for version in 1..=10 {
        delete_version_item(&clients, &id, version).await;
    }
    for base in [1, 5, 10] {
        assert!(
            matches!(
                store.operations_since(&id, base).await,
                Err(Error::BaseVersionGone { oldest: 11 })
            ),
            "base {base}"
        );
    }
    let since = store.operations_since(&id, 11).await.unwrap();
    assert_eq!(since.len() as u64, SNAPSHOT_EVERY + 6 - 11);
    // Without version 1's snapshot, the versions before the next one cannot be rebuilt;
    // from the snapshot at SNAPSHOT_EVERY on they can.
    for version in [5, 11, SNAPSHOT_EVERY - 1] {
        assert_eq!(
            store.version(&id, version).await.unwrap(),
            None,
            "{version}"
        );
    }
    for version in SNAPSHOT_EVERY..=SNAPSHOT_EVERY + 6 {
        let rebuilt = store.version(&id, version).await.unwrap().unwrap();
        assert_eq!(rebuilt.body, history[version as usize - 1].body);
    }
}

#[tokio::test]
#[ignore = "needs moto and OpenSearch: run tests/run"]
async fn a_deleted_documents_version_items_are_forgotten_when_asked() {
    let clients = emulators::aws(Wants::default()).await;
    let store = clients.document_store();
    // More items than one BatchWriteItem deletes.
    let history = typed(&store, 60).await;
    let kept = typed(&store, 3).await;
    let last = history.last().unwrap();
    assert_eq!(version_items(&clients, &last.id).await.len(), 60);
    store
        .delete(&next_version(last, &last.owner, |_| {}))
        .await
        .unwrap();
    // Gone for readers at once; the items stay until the fan-out, having delivered
    // the deletion, forgets them (the records before it may need their bodies).
    assert_eq!(store.version(&last.id, 1).await.unwrap(), None);
    assert_eq!(version_items(&clients, &last.id).await.len(), 60);
    store.forget(&last.id).await.unwrap();
    assert!(version_items(&clients, &last.id).await.is_empty());
    store.forget(&last.id).await.unwrap();
    // Another document's versions stay.
    assert_eq!(version_items(&clients, &kept[0].id).await.len(), 3);
}

/// The size DynamoDB bills an item at: attribute names and values, in bytes (numbers
/// at one byte per two significant digits and one more; maps and lists with 3 bytes of
/// their own and 1 per element).
fn billed_size(item: &Item) -> usize {
    fn value(v: &AttributeValue) -> usize {
        match v {
            AttributeValue::S(s) => s.len(),
            AttributeValue::N(n) => n.trim_start_matches(['-', '0']).len().div_ceil(2) + 1,
            AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
            AttributeValue::M(m) => {
                3 + m.iter().map(|(k, v)| k.len() + value(v) + 1).sum::<usize>()
            }
            AttributeValue::L(l) => 3 + l.iter().map(|v| value(v) + 1).sum::<usize>(),
            other => panic!("an attribute the store never writes: {other:?}"),
        }
    }
    item.iter().map(|(k, v)| k.len() + value(v)).sum()
}

/// Write units of a transactional write of `item`: 2 per started KB.
fn transaction_units(item: &Item) -> usize {
    2 * billed_size(item).div_ceil(1024)
}

/// One keystroke (a word typed at the start) in a document of `size` bytes: the write
/// units of its transaction (the document item and the version item).
async fn keystroke_units(clients: &AwsClients, store: &dyn DocumentStore, size: usize) -> usize {
    let ann = unique_user("ann");
    let line = "lorem ipsum dolor sit amet, consectetur adipiscing\n";
    let body = line.repeat(size / line.len() + 1)[..size].to_owned();
    let first = new_document(&ann, "Costs", &body, &[]);
    store.create(&first).await.unwrap();
    let typed = next_version(&first, &ann, |d| {
        d.body = Body::parse(format!("hello {}", d.body.as_str())).unwrap()
    });
    store.update(&typed, &ops(&first, &typed)).await.unwrap();
    let head = document_item(clients, &first.id).await;
    let version = version_items(clients, &first.id).await.pop().unwrap();
    assert_eq!(text(&version, "ops"), Some(r#"["hello "]"#));
    assert_eq!(
        store.get(&first.id).await.unwrap().unwrap().body,
        typed.body
    );
    transaction_units(&head) + transaction_units(&version)
}

#[tokio::test]
#[ignore = "needs moto and OpenSearch: run tests/run"]
async fn a_keystroke_costs_the_same_write_units_whatever_the_document_size() {
    let clients = emulators::aws(Wants::default()).await;
    let store = clients.document_store();
    let small = keystroke_units(&clients, &store, 1_000).await;
    let large = keystroke_units(&clients, &store, 100_000).await;
    let largest = keystroke_units(&clients, &store, shared::domain::MAX_BODY_BYTES - 8).await;
    println!(
        "write units of one keystroke: 1 KB document {small}, 100 KB {large}, 128 KB {largest}"
    );
    assert!(small <= 6, "{small}");
    assert!(large <= small, "{large} > {small}");
    assert_eq!(large, largest);
    // Without paging out, the document item alone would be 2 units per KB.
    assert!(large < 2 * 100);
}
