//! The [`DocumentStore`] on DynamoDB. The documents table's stream (NEW_AND_OLD_IMAGES)
//! is the change stream: every write here is one stream record, so the store writes
//! nothing else to announce a change.
//!
//! - A document is one item in the documents table, encoded with [`crate::codec`] (the
//!   codec the stream decoder reads), keyed by `id`. Writes are conditional on the
//!   stored `version`; a failed condition returns the stored item
//!   (`ReturnValuesOnConditionCheckFailure = ALL_OLD`), which says whether it is a
//!   version mismatch or a missing document.
//! - A body over [`codec::INLINE_BODY_BYTES`] is paged out of the document item: the
//!   item is then a head (title, owner, collaborators, version, the last operation) of
//!   well under 1 KB, and the body is read back from the versions table (below). A
//!   write's cost is what it writes, rounded up to 1 KB per item and doubled in a
//!   transaction, so a keystroke in a 100 KB document would otherwise cost over 200
//!   write units; paged out it costs the head and the version item (about 4), plus a
//!   snapshot every [`SNAPSHOT_EVERY`] versions. Reading such a document costs one
//!   `Query` of at most `SNAPSHOT_EVERY` version items more than a `GetItem`.
//! - Who may list a document is kept as membership items in the members table
//!   (`userId`, `documentId`), one per reader, written in the same `TransactWriteItems`
//!   as the document. Document ids are UUIDv7, so "my documents, newest first" is a
//!   `Query` on `userId` with `ScanIndexForward = false`, paged by `documentId` — never
//!   a scan. Listing reads the documents back (strongly consistent `BatchGetItem`) and
//!   keeps only those the member may still read, so a membership item that outlives
//!   its access (see below) is never shown.
//! - A transaction holds at most 100 writes. A document with more readers than fit
//!   beside it writes the extra new memberships before the transaction and deletes the
//!   extra old ones after it; both orders are safe because listing re-checks access.
//! - Deletion takes two conditional writes, so that the REMOVE record's OldImage is
//!   the document stamped with the deletion: first the item is overwritten with the
//!   stamped image marked `deleted = true` (conditional on the previous version), then
//!   it is deleted (conditional on the stamped version) together with its membership
//!   items. The stream carries a MODIFY whose NewImage is marked deleted (the stream
//!   handler skips it, and the event source mapping filters it out) and then the
//!   REMOVE. An item left stamped by a crash between the two steps reads as missing,
//!   and the same delete, retried, completes it.
//! - Every version also gets an item in the versions table (`documentId`, `version`),
//!   put in the same `TransactWriteItems` as the document (conditional on not being
//!   there yet), so a version and its record exist together or not at all: who made it
//!   (`actor`) and when (`at`), its `title`, the body operation from the version before
//!   (`ops`, the OPS JSON; absent when the body did not change), and at version 1 and
//!   every [`SNAPSHOT_EVERY`] versions the whole body (`snapshot`). The edits endpoint
//!   transforms against `ops` (a `Query` from the base on); a version is rebuilt from
//!   the snapshot at or before it and at most `SNAPSHOT_EVERY - 1` operations (one
//!   `Query` backwards, at most `SNAPSHOT_EVERY` items). The document item carries the
//!   same operation as `ops`, so the stream record's NewImage has it.
//! - A deleted document's version items are what the stream handler reads the bodies
//!   of its last changes from, so they are deleted by the fan-out once it has delivered
//!   the deletion ([`BodyArchive::forget`]: a `Query` and `BatchWriteItem`s), not by the
//!   deletion itself; [`DocumentStore::version`] checks the document first, so they
//!   never read back in between. Deleting them, rather than stamping a TTL on them,
//!   costs the same writes (a TTL needs an update per item).

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, CancellationReason, Delete, DeleteRequest, KeysAndAttributes, Put, PutRequest,
    ReturnValuesOnConditionCheckFailure, TransactWriteItem, WriteRequest,
};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_dynamo::Item;

use super::errors::{build_error, decode_error, sdk_error};
use crate::codec::{self, DocumentImage};
use crate::domain::{
    Body, Document, DocumentHead, DocumentId, DocumentVersion, SNAPSHOT_EVERY, TextOperation,
    Title, UserId, keeps_snapshot,
};
use crate::ports::{BodyArchive, DocumentPage, DocumentStore};
use crate::retry::RetryPolicy;
use crate::{Error, Result};

type Attributes = HashMap<String, AttributeValue>;

/// The most writes one `TransactWriteItems` may hold.
const TRANSACTION_LIMIT: usize = 100;
/// The most writes one `BatchWriteItem` may hold.
const BATCH_WRITE_LIMIT: usize = 25;
/// The most keys one `BatchGetItem` may hold.
const BATCH_GET_LIMIT: usize = 100;

/// Attribute names of membership items.
const MEMBER_USER: &str = "userId";
const MEMBER_DOCUMENT: &str = "documentId";

/// Attribute names of version items.
const VERSION_DOCUMENT: &str = "documentId";
const VERSION_NUMBER: &str = "version";
const VERSION_ACTOR: &str = "actor";
const VERSION_AT: &str = "at";
const VERSION_TITLE: &str = "title";
const VERSION_OPS: &str = "ops";
const VERSION_SNAPSHOT: &str = "snapshot";

/// Documents in DynamoDB.
#[derive(Debug, Clone)]
pub struct DynamoDbDocumentStore {
    client: Client,
    documents: String,
    members: String,
    versions: String,
}

/// Why a transaction did not commit.
enum TransactionFailure {
    /// The condition on its first write (the document) failed; the stored item, if the
    /// service returned it.
    Condition(Option<Attributes>),
    Other(Error),
}

impl DynamoDbDocumentStore {
    pub fn new(
        client: Client,
        documents_table: &str,
        members_table: &str,
        versions_table: &str,
    ) -> Self {
        Self {
            client,
            documents: documents_table.to_owned(),
            members: members_table.to_owned(),
            versions: versions_table.to_owned(),
        }
    }

    /// The stored item, stamped tombstones included (strongly consistent), its body
    /// possibly paged out.
    async fn read(&self, id: &DocumentId) -> Result<Option<DocumentImage>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.documents)
            .set_key(Some(document_key(id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", e))?;
        out.item.map(decode).transpose()
    }

    /// Whether `id` is a document that is not deleted (one strongly consistent read of
    /// its item, the body left out).
    async fn live(&self, id: &DocumentId) -> Result<bool> {
        let out = self
            .client
            .get_item()
            .table_name(&self.documents)
            .set_key(Some(document_key(id)))
            .projection_expression("#deleted, #v")
            .expression_attribute_names("#deleted", codec::DELETED_ATTRIBUTE)
            .expression_attribute_names("#v", "version")
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", e))?;
        Ok(out.item.is_some_and(|item| {
            !matches!(
                item.get(codec::DELETED_ATTRIBUTE),
                Some(AttributeValue::Bool(true))
            )
        }))
    }

    /// The live document of `image` with its body: read back from the versions table
    /// when the item has it paged out.
    async fn with_body(&self, image: DocumentImage) -> Result<Document> {
        let mut doc = image.document;
        if image.body_paged {
            doc.body = self.body_at(&doc.id, doc.version).await?.ok_or_else(|| {
                decode_error(
                    "a document item",
                    format!(
                        "the body of {} is paged out, but version {} is not kept",
                        doc.id, doc.version
                    ),
                )
            })?;
        }
        Ok(doc)
    }

    /// The error a failed condition on the document means, from the stored item.
    async fn conflict(&self, id: &DocumentId, stored: Option<Attributes>) -> Error {
        let image = match stored {
            Some(item) => decode(item).map(Some),
            None => self.read(id).await,
        };
        match image {
            Err(e) => e,
            Ok(None) => Error::NotFound,
            Ok(Some(image)) if image.deleted => Error::NotFound,
            Ok(Some(image)) => Error::VersionMismatch {
                current: image.document.version,
            },
        }
    }

    fn member_key(&self, user: &UserId, id: &DocumentId) -> Attributes {
        HashMap::from([
            (
                MEMBER_USER.to_owned(),
                AttributeValue::S(user.as_str().to_owned()),
            ),
            (
                MEMBER_DOCUMENT.to_owned(),
                AttributeValue::S(id.to_string()),
            ),
        ])
    }

    /// Runs `writes` (the document's first, then its version's) and as many
    /// memberships as fit beside them in one transaction; the rest go in batches,
    /// additions before and removals after.
    async fn commit(
        &self,
        writes: Vec<TransactWriteItem>,
        added: Vec<UserId>,
        removed: Vec<UserId>,
        id: &DocumentId,
    ) -> Result<(), TransactionFailure> {
        let room = TRANSACTION_LIMIT - writes.len();
        let (added_now, added_before) = split(added, room);
        let (removed_now, removed_after) = split(removed, room - added_now.len());
        self.batch_members(&added_before, id, true)
            .await
            .map_err(TransactionFailure::Other)?;
        let mut items = writes;
        for user in &added_now {
            items.push(
                TransactWriteItem::builder()
                    .put(
                        Put::builder()
                            .table_name(&self.members)
                            .set_item(Some(self.member_key(user, id)))
                            .build()
                            .map_err(|e| {
                                TransactionFailure::Other(build_error("a membership put", e))
                            })?,
                    )
                    .build(),
            );
        }
        for user in &removed_now {
            items.push(
                TransactWriteItem::builder()
                    .delete(
                        Delete::builder()
                            .table_name(&self.members)
                            .set_key(Some(self.member_key(user, id)))
                            .build()
                            .map_err(|e| {
                                TransactionFailure::Other(build_error("a membership delete", e))
                            })?,
                    )
                    .build(),
            );
        }
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => {}
            Err(err) => {
                if let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) =
                    err.as_service_error()
                {
                    // One reason per write, in order: the document's condition first.
                    let reasons = cancelled.cancellation_reasons();
                    if let Some(first) = reasons.first().filter(|r| condition_failed(r)) {
                        return Err(TransactionFailure::Condition(first.item().cloned()));
                    }
                    // Only the version write has a condition besides the document's:
                    // its version is kept already although the document is not at it.
                    if let Some(at) = reasons.iter().position(condition_failed) {
                        return Err(TransactionFailure::Other(Error::Unknown(anyhow::anyhow!(
                            "TransactWriteItems: the document {id} may take the version, but \
                             a version item is already kept for it (write {at} of the transaction)"
                        ))));
                    }
                    let transient = cancelled.cancellation_reasons().iter().any(|r| {
                        matches!(
                            r.code(),
                            Some(
                                "TransactionConflict"
                                    | "ThrottlingError"
                                    | "ProvisionedThroughputExceeded"
                            )
                        )
                    });
                    if transient {
                        return Err(TransactionFailure::Other(Error::Unavailable(format!(
                            "TransactWriteItems cancelled: {:?}",
                            cancelled
                                .cancellation_reasons()
                                .iter()
                                .map(|r| r.code().unwrap_or("None"))
                                .collect::<Vec<_>>()
                        ))));
                    }
                }
                return Err(TransactionFailure::Other(sdk_error(
                    "TransactWriteItems",
                    err,
                )));
            }
        }
        self.batch_members(&removed_after, id, false)
            .await
            .map_err(TransactionFailure::Other)?;
        Ok(())
    }

    /// Puts (or deletes) membership items in batches, retrying unprocessed ones.
    async fn batch_members(&self, users: &[UserId], id: &DocumentId, put: bool) -> Result<()> {
        for chunk in users.chunks(BATCH_WRITE_LIMIT) {
            let mut requests = chunk
                .iter()
                .map(|user| {
                    let key = self.member_key(user, id);
                    if put {
                        PutRequest::builder()
                            .set_item(Some(key))
                            .build()
                            .map(|p| WriteRequest::builder().put_request(p).build())
                    } else {
                        DeleteRequest::builder()
                            .set_key(Some(key))
                            .build()
                            .map(|d| WriteRequest::builder().delete_request(d).build())
                    }
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| build_error("a membership write", e))?;
            batch_write(&self.client, &self.members, &mut requests).await?;
        }
        Ok(())
    }

    /// Reads documents by id (strongly consistent), skipping missing and stamped ones.
    async fn batch_get(&self, ids: &[DocumentId]) -> Result<HashMap<DocumentId, Document>> {
        let mut found = HashMap::new();
        for chunk in ids.chunks(BATCH_GET_LIMIT) {
            let mut keys: Vec<Attributes> = chunk.iter().map(document_key).collect();
            for attempt in 0.. {
                if keys.is_empty() {
                    break;
                }
                if attempt > 0 {
                    backoff(attempt).await?;
                }
                let request = KeysAndAttributes::builder()
                    .set_keys(Some(std::mem::take(&mut keys)))
                    .consistent_read(true)
                    .build()
                    .map_err(|e| build_error("a BatchGetItem request", e))?;
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.documents, request)
                    .send()
                    .await
                    .map_err(|e| sdk_error("BatchGetItem", e))?;
                let mut paged = tokio::task::JoinSet::new();
                for item in out
                    .responses
                    .and_then(|mut r| r.remove(&self.documents))
                    .unwrap_or_default()
                {
                    let image = decode(item)?;
                    if image.deleted {
                        continue;
                    }
                    if image.body_paged {
                        let store = self.clone();
                        paged.spawn(async move { store.with_body(image).await });
                    } else {
                        found.insert(image.document.id, image.document);
                    }
                }
                while let Some(doc) = paged.join_next().await {
                    let doc = doc.map_err(|e| Error::Unknown(e.into()))??;
                    found.insert(doc.id, doc);
                }
                keys = out
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(&self.documents))
                    .map(|k| k.keys)
                    .unwrap_or_default();
            }
        }
        Ok(found)
    }
}

impl DynamoDbDocumentStore {
    /// The put of `doc`'s version item, made by `ops` from the version before (`None`
    /// for version 1). It must not exist yet: a kept version is never rewritten.
    fn version_write(
        &self,
        doc: &Document,
        ops: Option<&TextOperation>,
    ) -> Result<TransactWriteItem> {
        let put = Put::builder()
            .table_name(&self.versions)
            .set_item(Some(version_item(doc, ops)))
            .condition_expression("attribute_not_exists(#v)")
            .expression_attribute_names("#v", VERSION_NUMBER)
            .build()
            .map_err(|e| build_error("a version put", e))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// A `Query` of `id`'s version items (strongly consistent), keyed on `condition`
    /// over `#d` (the document) and `#v` (the version).
    fn versions_query(
        &self,
        id: &DocumentId,
        condition: &str,
    ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        self.client
            .query()
            .table_name(&self.versions)
            .key_condition_expression(condition)
            .expression_attribute_names("#d", VERSION_DOCUMENT)
            .expression_attribute_names("#v", VERSION_NUMBER)
            .expression_attribute_values(":id", AttributeValue::S(id.to_string()))
            .consistent_read(true)
    }

    /// `BaseVersionGone` naming the oldest version kept, or `NotFound` when none is.
    async fn oldest_kept(&self, id: &DocumentId) -> Result<Error> {
        let out = self
            .versions_query(id, "#d = :id")
            .projection_expression("#v")
            .limit(1)
            .send()
            .await
            .map_err(|e| sdk_error("Query", e))?;
        Ok(match out.items().first() {
            Some(item) => Error::BaseVersionGone {
                oldest: version_number(item)?,
            },
            None => Error::NotFound,
        })
    }

    /// Version `version` of `id` rebuilt from its version items, whether or not the
    /// document is still there: `None` when it is not kept.
    async fn kept_version(&self, id: &DocumentId, version: u64) -> Result<Option<DocumentVersion>> {
        // Newest first from `version` down to the first snapshot: at most
        // SNAPSHOT_EVERY items, since version 1 and every multiple of it has one.
        let mut chain: Vec<Attributes> = Vec::new();
        let mut start = None;
        'pages: loop {
            let out = self
                .versions_query(id, "#d = :id AND #v <= :version")
                .expression_attribute_values(":version", number(version))
                .scan_index_forward(false)
                .limit((SNAPSHOT_EVERY as usize - chain.len()) as i32)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk_error("Query", e))?;
            for item in out.items.unwrap_or_default() {
                let snapshot = item.contains_key(VERSION_SNAPSHOT);
                chain.push(item);
                if snapshot {
                    break 'pages;
                }
            }
            start = out.last_evaluated_key;
            if start.is_none() || chain.len() >= SNAPSHOT_EVERY as usize {
                break;
            }
        }
        match chain.first() {
            Some(newest) if version_number(newest)? == version => {}
            // That version is not kept (or never was).
            _ => return Ok(None),
        }
        if !chain
            .last()
            .is_some_and(|i| i.contains_key(VERSION_SNAPSHOT))
        {
            // No snapshot within reach: the versions before it are not kept.
            return Ok(None);
        }
        rebuild(*id, &chain).map(Some)
    }

    /// Deletes every version item of `id`.
    async fn forget_versions(&self, id: &DocumentId) -> Result<()> {
        let mut start = None;
        loop {
            let out = self
                .versions_query(id, "#d = :id")
                .projection_expression("#d, #v")
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk_error("Query", e))?;
            batch_delete(
                &self.client,
                &self.versions,
                out.items(),
                "a version delete",
            )
            .await?;
            start = out.last_evaluated_key;
            if start.is_none() {
                return Ok(());
            }
        }
    }
}

/// Deletes the items with `keys` from `table`, [`BATCH_WRITE_LIMIT`] at a time.
pub(crate) async fn batch_delete(
    client: &Client,
    table: &str,
    keys: &[Attributes],
    what: &str,
) -> Result<()> {
    for chunk in keys.chunks(BATCH_WRITE_LIMIT) {
        let mut requests = chunk
            .iter()
            .map(|key| {
                DeleteRequest::builder()
                    .set_key(Some(key.clone()))
                    .build()
                    .map(|d| WriteRequest::builder().delete_request(d).build())
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| build_error(what, e))?;
        batch_write(client, table, &mut requests).await?;
    }
    Ok(())
}

/// Writes a batch, retrying its unprocessed requests with backoff.
pub(crate) async fn batch_write(
    client: &Client,
    table: &str,
    requests: &mut Vec<WriteRequest>,
) -> Result<()> {
    for attempt in 0.. {
        if requests.is_empty() {
            return Ok(());
        }
        if attempt > 0 {
            backoff(attempt).await?;
        }
        let out = client
            .batch_write_item()
            .request_items(table, std::mem::take(requests))
            .send()
            .await
            .map_err(|e| sdk_error("BatchWriteItem", e))?;
        *requests = out
            .unprocessed_items
            .and_then(|mut u| u.remove(table))
            .unwrap_or_default();
    }
    Ok(())
}

/// How unprocessed batch requests are retried.
const UNPROCESSED_RETRIES: RetryPolicy = RetryPolicy {
    max_attempts: 9,
    initial_backoff: std::time::Duration::from_millis(50),
    max_backoff: std::time::Duration::from_millis(1600),
};

/// Waits before retrying unprocessed batch requests (`attempt` of them failed so far);
/// gives up after a few attempts.
async fn backoff(attempt: u32) -> Result<()> {
    if !UNPROCESSED_RETRIES.allows_another(attempt) {
        return Err(Error::Unavailable(format!(
            "DynamoDB left batch requests unprocessed after {attempt} attempts"
        )));
    }
    tokio::time::sleep(UNPROCESSED_RETRIES.backoff(attempt)).await;
    Ok(())
}

fn split(users: Vec<UserId>, room: usize) -> (Vec<UserId>, Vec<UserId>) {
    let mut now = users;
    let later = if now.len() > room {
        now.split_off(room)
    } else {
        Vec::new()
    };
    (now, later)
}

fn document_key(id: &DocumentId) -> Attributes {
    codec::document_key(id).into()
}

fn decode(item: Attributes) -> Result<DocumentImage> {
    codec::item_to_document(&Item::from(item)).map_err(|e| decode_error("a document item", e))
}

fn number(n: u64) -> AttributeValue {
    AttributeValue::N(n.to_string())
}

fn condition_failed(reason: &CancellationReason) -> bool {
    reason.code() == Some("ConditionalCheckFailed")
}

/// The version item of `doc`: who made it and when, its title, the body operation
/// from the version before (absent when the body did not change), and the whole body
/// at version 1 (`ops` is `None`) and every [`SNAPSHOT_EVERY`] versions.
fn version_item(doc: &Document, ops: Option<&TextOperation>) -> Attributes {
    let text = |s: &str| AttributeValue::S(s.to_owned());
    let mut item = HashMap::from([
        (VERSION_DOCUMENT.to_owned(), text(&doc.id.to_string())),
        (VERSION_NUMBER.to_owned(), number(doc.version)),
        (VERSION_ACTOR.to_owned(), text(doc.updated_by.as_str())),
        (
            VERSION_AT.to_owned(),
            text(&doc.updated_at.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
        ),
        (VERSION_TITLE.to_owned(), text(doc.title.as_str())),
    ]);
    if let Some(ops) = ops.filter(|o| !o.is_noop()) {
        item.insert(
            VERSION_OPS.to_owned(),
            text(&serde_json::to_string(ops).expect("operations encode")),
        );
    }
    if keeps_snapshot(doc.version, ops) {
        item.insert(VERSION_SNAPSHOT.to_owned(), text(doc.body.as_str()));
    }
    item
}

fn corrupt_version(what: impl std::fmt::Display) -> Error {
    decode_error("a version item", what.to_string())
}

fn text_attribute<'a>(item: &'a Attributes, name: &str) -> Result<&'a str> {
    match item.get(name) {
        Some(AttributeValue::S(s)) => Ok(s),
        _ => Err(corrupt_version(format!("no string `{name}`"))),
    }
}

fn version_number(item: &Attributes) -> Result<u64> {
    match item.get(VERSION_NUMBER) {
        Some(AttributeValue::N(n)) => n
            .parse()
            .map_err(|_| corrupt_version(format!("`{VERSION_NUMBER}` is {n:?}"))),
        _ => Err(corrupt_version(format!("no number `{VERSION_NUMBER}`"))),
    }
}

/// The item's body operation: the no-op when it has none.
fn version_ops(item: &Attributes) -> Result<TextOperation> {
    match item.get(VERSION_OPS) {
        None => Ok(TextOperation::new()),
        Some(AttributeValue::S(json)) => serde_json::from_str(json)
            .map_err(|e| corrupt_version(format!("`{VERSION_OPS}` does not decode: {e}"))),
        Some(_) => Err(corrupt_version(format!("`{VERSION_OPS}` is not a string"))),
    }
}

/// Rebuilds the version of `chain[0]` from `chain`: contiguous version items, newest
/// first, the last one holding a snapshot.
fn rebuild(id: DocumentId, chain: &[Attributes]) -> Result<DocumentVersion> {
    let (newest, oldest) = match chain {
        [newest, .., oldest] => (newest, oldest),
        [only] => (only, only),
        [] => return Err(corrupt_version("nothing to rebuild from")),
    };
    let version = version_number(newest)?;
    let mut body = text_attribute(oldest, VERSION_SNAPSHOT)?.to_owned();
    for (back, item) in chain.iter().enumerate().rev() {
        let found = version_number(item)?;
        if found + back as u64 != version {
            return Err(corrupt_version(format!(
                "version {found} of {id} follows a gap on the way back from {version}"
            )));
        }
        if back + 1 < chain.len() {
            body = version_ops(item)?
                .apply(&body)
                .map_err(|e| corrupt_version(format!("version {found} of {id}: {e}")))?;
        }
    }
    Ok(DocumentVersion {
        id,
        version,
        title: Title::parse(text_attribute(newest, VERSION_TITLE)?).map_err(corrupt_version)?,
        body: Body::parse(body).map_err(corrupt_version)?,
        actor: UserId::parse(text_attribute(newest, VERSION_ACTOR)?).map_err(corrupt_version)?,
        at: text_attribute(newest, VERSION_AT)?
            .parse::<DateTime<Utc>>()
            .map_err(corrupt_version)?,
    })
}

/// The condition of a write that replaces version `:previous` of a live document.
const GUARD: &str = "attribute_exists(#id) AND #v = :previous AND attribute_not_exists(#deleted)";

/// A put of `item` that requires the stored version to be `previous` and the item not
/// to be a stamped deletion (or, for `previous == 0`, no item at all).
fn guarded_put(table: &str, item: Item, previous: u64) -> Result<Put> {
    let builder = Put::builder()
        .table_name(table)
        .set_item(Some(item.into()))
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
        .expression_attribute_names("#id", codec::KEY_ATTRIBUTE);
    let builder = if previous == 0 {
        builder.condition_expression("attribute_not_exists(#id)")
    } else {
        builder
            .condition_expression(GUARD)
            .expression_attribute_names("#v", "version")
            .expression_attribute_names("#deleted", codec::DELETED_ATTRIBUTE)
            .expression_attribute_values(":previous", number(previous))
    };
    builder
        .build()
        .map_err(|e| build_error("a document put", e))
}

fn readers(doc: &Document) -> HashSet<UserId> {
    doc.readers().cloned().collect()
}

#[async_trait]
impl DocumentStore for DynamoDbDocumentStore {
    async fn create(&self, doc: &Document) -> Result<()> {
        let item = codec::page_out_body(codec::document_to_item(doc));
        let put = guarded_put(&self.documents, item, 0)?;
        let writes = vec![
            TransactWriteItem::builder().put(put).build(),
            self.version_write(doc, None)?,
        ];
        let members: Vec<UserId> = doc.readers().cloned().collect();
        match self.commit(writes, members, Vec::new(), &doc.id).await {
            Ok(()) => Ok(()),
            Err(TransactionFailure::Condition(_)) => Err(Error::AlreadyExists),
            Err(TransactionFailure::Other(e)) => Err(e),
        }
    }

    async fn get(&self, id: &DocumentId) -> Result<Option<Document>> {
        match self.read(id).await? {
            Some(image) if !image.deleted => self.with_body(image).await.map(Some),
            _ => Ok(None),
        }
    }

    async fn head(&self, id: &DocumentId) -> Result<Option<DocumentHead>> {
        // The item alone: a paged-out body is not read back for an access check.
        Ok(match self.read(id).await? {
            Some(image) if !image.deleted => Some(image.document.into()),
            _ => None,
        })
    }

    async fn update(&self, doc: &Document, body_ops: &TextOperation) -> Result<()> {
        let previous = doc.version.saturating_sub(1);
        if previous == 0 {
            return Err(Error::invalid(
                "version",
                "an update makes version 2 or later",
            ));
        }
        // The readers of the stored version: the condition below guarantees that the
        // version replaced is the one read here, so the membership diff is exact.
        let (stored, paged) = match self.read(&doc.id).await? {
            None => return Err(Error::NotFound),
            Some(image) if image.deleted => return Err(Error::NotFound),
            Some(image) if image.document.version != previous => {
                return Err(Error::VersionMismatch {
                    current: image.document.version,
                });
            }
            Some(image) => (image.document, image.body_paged),
        };
        // The kept operations are what versions are rebuilt from: one that does not
        // replay would corrupt every later version, so it is refused here. A paged-out
        // body is not read back for this (that would cost a `Query` per keystroke):
        // the body the operation was made on must at least be long enough for it.
        let replays = if paged {
            let made_on = doc.body.as_str().chars().count() as i64 - body_ops.len_delta();
            made_on >= body_ops.base_len() as i64
        } else {
            body_ops.apply(stored.body.as_str()).as_deref().ok() == Some(doc.body.as_str())
        };
        if !replays {
            return Err(Error::Unknown(anyhow::anyhow!(
                "the body operation of version {} of {} does not turn version {previous}'s body into it",
                doc.version,
                doc.id
            )));
        }
        let (before, after) = (readers(&stored), readers(doc));
        let added = after.difference(&before).cloned().collect();
        let removed = before.difference(&after).cloned().collect();
        let item = codec::page_out_body(codec::document_to_item_with_ops(doc, Some(body_ops)));
        let put = guarded_put(&self.documents, item, previous)?;
        let writes = vec![
            TransactWriteItem::builder().put(put).build(),
            self.version_write(doc, Some(body_ops))?,
        ];
        match self.commit(writes, added, removed, &doc.id).await {
            Ok(()) => Ok(()),
            Err(TransactionFailure::Condition(stored)) => Err(self.conflict(&doc.id, stored).await),
            Err(TransactionFailure::Other(e)) => Err(e),
        }
    }

    async fn delete(&self, last: &Document) -> Result<()> {
        let previous = last.version.saturating_sub(1);
        if previous == 0 {
            return Err(Error::invalid(
                "version",
                "a deletion makes version 2 or later",
            ));
        }
        // Step 1: stamp the item with the deletion.
        let stamped = self
            .client
            .put_item()
            .table_name(&self.documents)
            .set_item(Some(
                codec::page_out_body(codec::tombstone_to_item(last)).into(),
            ))
            .condition_expression(GUARD)
            .expression_attribute_names("#id", codec::KEY_ATTRIBUTE)
            .expression_attribute_names("#v", "version")
            .expression_attribute_names("#deleted", codec::DELETED_ATTRIBUTE)
            .expression_attribute_values(":previous", number(previous))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        if let Err(err) = stamped {
            let Some(failed) = err
                .as_service_error()
                .filter(|e| e.is_conditional_check_failed_exception())
            else {
                return Err(sdk_error("PutItem", err));
            };
            let stored = match failed {
                aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(e) => {
                    e.item().cloned()
                }
                _ => None,
            };
            let image = match stored {
                Some(item) => decode(item)?,
                None => match self.read(&last.id).await? {
                    Some(image) => image,
                    None => return Err(Error::NotFound),
                },
            };
            // A stamp at this version is this deletion, interrupted: complete it.
            let interrupted = image.deleted && image.document.version == last.version;
            if !interrupted {
                return Err(self.conflict(&last.id, Some(codec_item(&image))).await);
            }
        }
        // Step 2: delete the stamped item and the memberships.
        let delete = Delete::builder()
            .table_name(&self.documents)
            .set_key(Some(document_key(&last.id)))
            .condition_expression("#v = :version AND #deleted = :true")
            .expression_attribute_names("#v", "version")
            .expression_attribute_names("#deleted", codec::DELETED_ATTRIBUTE)
            .expression_attribute_values(":version", number(last.version))
            .expression_attribute_values(":true", AttributeValue::Bool(true))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(|e| build_error("a document delete", e))?;
        let write = TransactWriteItem::builder().delete(delete).build();
        let members = last.readers().cloned().collect();
        match self
            .commit(vec![write], Vec::new(), members, &last.id)
            .await
        {
            Ok(()) => {}
            // Gone already: a concurrent retry of this deletion finished it.
            Err(TransactionFailure::Condition(None)) => {}
            Err(TransactionFailure::Condition(Some(stored))) => {
                return Err(self.conflict(&last.id, Some(stored)).await);
            }
            Err(TransactionFailure::Other(e)) => return Err(e),
        }
        // The version items stay until the fan-out has delivered the deletion
        // (`BodyArchive::forget`): the records before it may need their bodies.
        Ok(())
    }

    async fn operations_since(&self, id: &DocumentId, base: u64) -> Result<Vec<TextOperation>> {
        // A deleted document's version items outlive it until the fan-out forgets them.
        if !self.live(id).await? {
            return Err(Error::NotFound);
        }
        let mut ops = Vec::new();
        let mut expected = base;
        let mut start = None;
        loop {
            let out = self
                .versions_query(id, "#d = :id AND #v >= :base")
                .expression_attribute_values(":base", number(base))
                .projection_expression("#v, #ops")
                .expression_attribute_names("#ops", VERSION_OPS)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk_error("Query", e))?;
            for item in out.items() {
                let version = version_number(item)?;
                if version != expected {
                    // The kept versions start after the base: it cannot be transformed
                    // from.
                    return Err(Error::BaseVersionGone { oldest: version });
                }
                if version > base {
                    ops.push(version_ops(item)?);
                }
                expected = version + 1;
            }
            start = out.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
        if expected == base {
            // Not even the base version is kept.
            return Err(self.oldest_kept(id).await?);
        }
        Ok(ops)
    }

    async fn version(&self, id: &DocumentId, version: u64) -> Result<Option<DocumentVersion>> {
        // A deleted document's version items outlive it until the fan-out forgets them.
        if !self.live(id).await? {
            return Ok(None);
        }
        self.kept_version(id, version).await
    }

    async fn list_for_member(
        &self,
        member: &UserId,
        limit: usize,
        after: Option<&DocumentId>,
    ) -> Result<DocumentPage> {
        let limit = limit.max(1);
        let mut items: Vec<Document> = Vec::with_capacity(limit + 1);
        let mut start = after.map(|id| self.member_key(member, id));
        loop {
            let want = (limit + 1 - items.len()).max(1) as i32;
            let out = self
                .client
                .query()
                .table_name(&self.members)
                .key_condition_expression("#user = :user")
                .expression_attribute_names("#user", MEMBER_USER)
                .expression_attribute_values(":user", AttributeValue::S(member.as_str().to_owned()))
                .scan_index_forward(false)
                .consistent_read(true)
                .limit(want)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk_error("Query", e))?;
            let ids: Vec<DocumentId> = out
                .items()
                .iter()
                .filter_map(|item| match item.get(MEMBER_DOCUMENT) {
                    Some(AttributeValue::S(id)) => DocumentId::parse(id).ok(),
                    _ => None,
                })
                .collect();
            let mut found = self.batch_get(&ids).await?;
            for id in ids {
                if let Some(doc) = found.remove(&id)
                    && doc.access_for(member).is_some()
                {
                    items.push(doc);
                }
            }
            start = out.last_evaluated_key;
            if items.len() > limit || start.is_none() {
                break;
            }
        }
        let more = items.len() > limit;
        items.truncate(limit);
        let next = if more {
            items.last().map(|d| d.id)
        } else {
            None
        };
        Ok(DocumentPage { items, next })
    }
}

fn codec_item(image: &DocumentImage) -> Attributes {
    let item = if image.deleted {
        codec::tombstone_to_item(&image.document)
    } else {
        codec::document_to_item(&image.document)
    };
    item.into()
}

#[async_trait]
impl BodyArchive for DynamoDbDocumentStore {
    async fn body_at(&self, id: &DocumentId, version: u64) -> Result<Option<Body>> {
        Ok(self.kept_version(id, version).await?.map(|v| v.body))
    }

    async fn forget(&self, id: &DocumentId) -> Result<()> {
        self.forget_versions(id).await
    }
}
