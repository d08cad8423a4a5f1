//! The [`ConnectionRegistry`] on DynamoDB, in the two tables of `infra/template.yaml`:
//!
//! - connections (`connectionId`): the user, the token's expiry (`tokenExpiresAt`),
//!   `connectedAt`, the string set `documents` the connection is subscribed to, and
//!   `expiresAt` (epoch seconds) for DynamoDB's TTL, because API Gateway does not always
//!   deliver `$disconnect`; the index `byUser` counts a user's connections for the
//!   per-user cap;
//! - subscriptions (`documentId`, `connectionId`): one item per subscription carrying
//!   the user, the same `expiresAt` and `tokenExpiresAt` (so a push skips an expired
//!   connection without reading its item; `refresh` updates both), the subscription's
//!   options (`includeDocument`, a BOOL) and, while the connection shares one, its
//!   presence `cursor` (a map of the numbers `anchor` and `head`). A missing
//!   `includeDocument` reads as false, a missing `cursor` and `tokenExpiresAt` as none,
//!   so items written before these attributes still read. A
//!   document's subscribers are one strongly consistent `Query` on its partition, so a
//!   subscription acknowledged by `subscribe` is seen by every later lookup (the
//!   notification path never reads an index).
//!
//! `subscribe` puts the whole subscription item (so a repeated subscribe replaces the
//! options and drops the cursor) and adds the document to the connection's set in one
//! transaction, conditional on the connection existing, so `remove` finds every
//! subscription from the connection item without a scan; it also sweeps the
//! `byConnection` index for subscriptions whose connection item is already gone
//! (expired by TTL). `unsubscribe` deletes the subscription item and then trims the
//! set; the set may therefore name more documents than are subscribed (when trimming
//! failed), never fewer, and `subscriptions` keeps only those whose subscription item
//! exists. `set_cursor` updates the `cursor` of an existing subscription item only (a
//! condition on the item, never an upsert, so it cannot resurrect a subscription that
//! `unsubscribe` or `remove` just deleted). Items whose `expiresAt` has passed but which
//! TTL has not deleted yet (TTL deletes within days, not at once) read as missing.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::{UpdateItemError, UpdateItemOutput};
use aws_sdk_dynamodb::types::{
    AttributeValue, Put, ReturnValue, Select, TransactWriteItem, Update,
};
use chrono::{DateTime, SecondsFormat, Utc};

use super::document_store::batch_delete;
use super::errors::{build_error, decode_error, sdk_error};
use super::tables::{BY_CONNECTION_INDEX, BY_USER_INDEX, EXPIRES_AT};
use crate::clock::Clock;
use crate::domain::{DocumentId, UserId};
use crate::ports::{
    Connection, ConnectionId, ConnectionRegistry, PresenceCursor, SubscribeOptions, Subscriber,
};
use crate::{Error, Result};

type Attributes = HashMap<String, AttributeValue>;

const CONNECTION_ID: &str = "connectionId";
const DOCUMENT_ID: &str = "documentId";
const USER_ID: &str = "userId";
const TOKEN_EXPIRES_AT: &str = "tokenExpiresAt";
const CONNECTED_AT: &str = "connectedAt";
const DOCUMENTS: &str = "documents";
const INCLUDE_DOCUMENT: &str = "includeDocument";
const CURSOR: &str = "cursor";
const ANCHOR: &str = "anchor";
const HEAD: &str = "head";

/// Connections and subscriptions in DynamoDB.
#[derive(Clone)]
pub struct DynamoDbConnectionRegistry {
    client: Client,
    connections: String,
    subscriptions: String,
    ttl: Duration,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for DynamoDbConnectionRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoDbConnectionRegistry")
            .field("connections", &self.connections)
            .field("subscriptions", &self.subscriptions)
            .finish()
    }
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn timestamp(at: DateTime<Utc>) -> AttributeValue {
    s(at.to_rfc3339_opts(SecondsFormat::Millis, true))
}

fn string<'a>(item: &'a Attributes, name: &str) -> Result<&'a str> {
    match item.get(name) {
        Some(AttributeValue::S(value)) => Ok(value),
        other => Err(decode_error(name, other)),
    }
}

fn time(item: &Attributes, name: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(string(item, name)?)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| decode_error(name, e))
}

fn epoch_seconds(item: &Attributes) -> Option<i64> {
    match item.get(EXPIRES_AT) {
        Some(AttributeValue::N(n)) => n.parse().ok(),
        _ => None,
    }
}

fn number(item: &Attributes, name: &str) -> Result<u64> {
    match item.get(name) {
        Some(AttributeValue::N(n)) => n.parse().map_err(|e| decode_error(name, e)),
        other => Err(decode_error(name, other)),
    }
}

/// The subscription's options; an item written before options existed has the defaults.
fn options_of(item: &Attributes) -> Result<SubscribeOptions> {
    let include_document = match item.get(INCLUDE_DOCUMENT) {
        None => false,
        Some(AttributeValue::Bool(include)) => *include,
        other => return Err(decode_error(INCLUDE_DOCUMENT, other)),
    };
    Ok(SubscribeOptions { include_document })
}

fn cursor_of(item: &Attributes) -> Result<Option<PresenceCursor>> {
    match item.get(CURSOR) {
        None => Ok(None),
        Some(AttributeValue::M(cursor)) => Ok(Some(PresenceCursor {
            anchor: number(cursor, ANCHOR)?,
            head: number(cursor, HEAD)?,
        })),
        other => Err(decode_error(CURSOR, other)),
    }
}

fn cursor_value(cursor: PresenceCursor) -> AttributeValue {
    AttributeValue::M(HashMap::from([
        (
            ANCHOR.to_owned(),
            AttributeValue::N(cursor.anchor.to_string()),
        ),
        (HEAD.to_owned(), AttributeValue::N(cursor.head.to_string())),
    ]))
}

/// A conditional `UpdateItem` whose condition is that the item exists (and is live):
/// a failed condition is [`Error::NotFound`], typed from the SDK's error, not its text.
fn update_of_existing(
    result: Result<UpdateItemOutput, SdkError<UpdateItemError, HttpResponse>>,
) -> Result<()> {
    match result {
        Ok(_) => Ok(()),
        Err(e)
            if matches!(
                e.as_service_error(),
                Some(UpdateItemError::ConditionalCheckFailedException(_))
            ) =>
        {
            Err(Error::NotFound)
        }
        Err(e) => Err(sdk_error("UpdateItem", e)),
    }
}

fn documents_of(item: &Attributes) -> BTreeSet<DocumentId> {
    match item.get(DOCUMENTS) {
        Some(AttributeValue::Ss(ids)) => ids
            .iter()
            .filter_map(|id| DocumentId::parse(id).ok())
            .collect(),
        _ => BTreeSet::new(),
    }
}

impl DynamoDbConnectionRegistry {
    pub fn new(
        client: Client,
        connections_table: &str,
        subscriptions_table: &str,
        ttl: Duration,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            client,
            connections: connections_table.to_owned(),
            subscriptions: subscriptions_table.to_owned(),
            ttl,
            clock,
        }
    }

    fn connection_key(id: &ConnectionId) -> Attributes {
        HashMap::from([(CONNECTION_ID.to_owned(), s(id.0.to_string()))])
    }

    fn subscription_key(id: &ConnectionId, document: &DocumentId) -> Attributes {
        HashMap::from([
            (DOCUMENT_ID.to_owned(), s(document.to_string())),
            (CONNECTION_ID.to_owned(), s(id.0.to_string())),
        ])
    }

    fn live(&self, item: &Attributes) -> bool {
        epoch_seconds(item).is_none_or(|at| at > self.clock.now().timestamp())
    }

    /// The connection's item, unless missing or expired (strongly consistent).
    async fn connection_item(&self, id: &ConnectionId) -> Result<Option<Attributes>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.connections)
            .set_key(Some(Self::connection_key(id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", e))?;
        Ok(out.item.filter(|item| self.live(item)))
    }

    async fn delete_subscriptions(
        &self,
        id: &ConnectionId,
        documents: &BTreeSet<DocumentId>,
    ) -> Result<()> {
        let keys: Vec<Attributes> = documents
            .iter()
            .map(|document| Self::subscription_key(id, document))
            .collect();
        batch_delete(
            &self.client,
            &self.subscriptions,
            &keys,
            "a subscription delete",
        )
        .await
    }

    /// The documents the `byConnection` index lists for the connection (eventually
    /// consistent: a sweep for leftovers, not the source of truth).
    async fn indexed_subscriptions(&self, id: &ConnectionId) -> Result<BTreeSet<DocumentId>> {
        let mut documents = BTreeSet::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.subscriptions)
                .index_name(BY_CONNECTION_INDEX)
                .key_condition_expression("#c = :c")
                .expression_attribute_names("#c", CONNECTION_ID)
                .expression_attribute_values(":c", s(id.0.to_string()))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| sdk_error("Query", e))?;
            for item in out.items() {
                if let Ok(document) = string(item, DOCUMENT_ID).map(DocumentId::parse)
                    && let Ok(document) = document
                {
                    documents.insert(document);
                }
            }
            start = out.last_evaluated_key;
            if start.is_none() {
                return Ok(documents);
            }
        }
    }
}

#[async_trait]
impl ConnectionRegistry for DynamoDbConnectionRegistry {
    async fn register(&self, connection: &Connection) -> Result<()> {
        let expires_at = self.clock.now().timestamp() + self.ttl.as_secs() as i64;
        let item = HashMap::from([
            (CONNECTION_ID.to_owned(), s(connection.id.0.to_string())),
            (USER_ID.to_owned(), s(connection.user.as_str())),
            (
                TOKEN_EXPIRES_AT.to_owned(),
                timestamp(connection.expires_at),
            ),
            (CONNECTED_AT.to_owned(), timestamp(connection.connected_at)),
            (
                EXPIRES_AT.to_owned(),
                AttributeValue::N(expires_at.to_string()),
            ),
        ]);
        let out = self
            .client
            .put_item()
            .table_name(&self.connections)
            .set_item(Some(item))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| sdk_error("PutItem", e))?;
        // A replaced connection starts without subscriptions.
        if let Some(old) = out.attributes {
            self.delete_subscriptions(&connection.id, &documents_of(&old))
                .await?;
        }
        Ok(())
    }

    async fn get(&self, id: &ConnectionId) -> Result<Option<Connection>> {
        let Some(item) = self.connection_item(id).await? else {
            return Ok(None);
        };
        Ok(Some(Connection {
            id: id.clone(),
            user: UserId::parse(string(&item, USER_ID)?).map_err(|e| decode_error(USER_ID, e))?,
            expires_at: time(&item, TOKEN_EXPIRES_AT)?,
            connected_at: time(&item, CONNECTED_AT)?,
        }))
    }

    async fn refresh(&self, id: &ConnectionId, expires_at: DateTime<Utc>) -> Result<()> {
        let result = self
            .client
            .update_item()
            .table_name(&self.connections)
            .set_key(Some(Self::connection_key(id)))
            .update_expression("SET #t = :t")
            .condition_expression("attribute_exists(#c) AND #e > :now")
            .expression_attribute_names("#t", TOKEN_EXPIRES_AT)
            .expression_attribute_names("#c", CONNECTION_ID)
            .expression_attribute_names("#e", EXPIRES_AT)
            .expression_attribute_values(":t", timestamp(expires_at))
            .expression_attribute_values(
                ":now",
                AttributeValue::N(self.clock.now().timestamp().to_string()),
            )
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        let documents = match &result {
            Ok(out) => out.attributes().map(documents_of).unwrap_or_default(),
            Err(_) => BTreeSet::new(),
        };
        update_of_existing(result)?;
        // Each subscription carries the expiry too; one that ended meanwhile stays ended
        // (the update is conditional on the item, never an upsert).
        let updates = documents.iter().map(|document| {
            self.client
                .update_item()
                .table_name(&self.subscriptions)
                .set_key(Some(Self::subscription_key(id, document)))
                .update_expression("SET #t = :t")
                .condition_expression("attribute_exists(#c)")
                .expression_attribute_names("#t", TOKEN_EXPIRES_AT)
                .expression_attribute_names("#c", CONNECTION_ID)
                .expression_attribute_values(":t", timestamp(expires_at))
                .send()
        });
        for result in futures_util::future::join_all(updates).await {
            match update_of_existing(result) {
                Ok(()) | Err(Error::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    async fn remove(&self, id: &ConnectionId) -> Result<()> {
        let mut documents = self
            .client
            .get_item()
            .table_name(&self.connections)
            .set_key(Some(Self::connection_key(id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", e))?
            .item
            .map(|item| documents_of(&item))
            .unwrap_or_default();
        documents.extend(self.indexed_subscriptions(id).await?);
        self.delete_subscriptions(id, &documents).await?;
        self.client
            .delete_item()
            .table_name(&self.connections)
            .set_key(Some(Self::connection_key(id)))
            .send()
            .await
            .map_err(|e| sdk_error("DeleteItem", e))?;
        Ok(())
    }

    async fn subscribe(
        &self,
        id: &ConnectionId,
        document: &DocumentId,
        options: SubscribeOptions,
    ) -> Result<()> {
        let Some(connection) = self.connection_item(id).await? else {
            return Err(Error::NotFound);
        };
        let mut subscription = Self::subscription_key(id, document);
        for name in [USER_ID, EXPIRES_AT, TOKEN_EXPIRES_AT] {
            if let Some(value) = connection.get(name) {
                subscription.insert(name.to_owned(), value.clone());
            }
        }
        subscription.insert(
            INCLUDE_DOCUMENT.to_owned(),
            AttributeValue::Bool(options.include_document),
        );
        let add = Update::builder()
            .table_name(&self.connections)
            .set_key(Some(Self::connection_key(id)))
            .update_expression("ADD #d :d")
            .condition_expression("attribute_exists(#c)")
            .expression_attribute_names("#d", DOCUMENTS)
            .expression_attribute_names("#c", CONNECTION_ID)
            .expression_attribute_values(":d", AttributeValue::Ss(vec![document.to_string()]))
            .build()
            .map_err(|e| build_error("a subscription update", e))?;
        let put = Put::builder()
            .table_name(&self.subscriptions)
            .set_item(Some(subscription))
            .build()
            .map_err(|e| build_error("a subscription put", e))?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(add).build())
            .transact_items(TransactWriteItem::builder().put(put).build())
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => {
                if let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) =
                    e.as_service_error()
                    && cancelled
                        .cancellation_reasons()
                        .first()
                        .and_then(|r| r.code())
                        == Some("ConditionalCheckFailed")
                {
                    return Err(Error::NotFound);
                }
                Err(sdk_error("TransactWriteItems", e))
            }
        }
    }

    async fn set_cursor(
        &self,
        id: &ConnectionId,
        document: &DocumentId,
        cursor: Option<PresenceCursor>,
    ) -> Result<()> {
        let update = self
            .client
            .update_item()
            .table_name(&self.subscriptions)
            .set_key(Some(Self::subscription_key(id, document)))
            // An expired subscription reads as missing, so it takes no cursor either.
            .condition_expression(
                "attribute_exists(#c) AND (attribute_not_exists(#e) OR #e > :now)",
            )
            .expression_attribute_names("#c", CONNECTION_ID)
            .expression_attribute_names("#e", EXPIRES_AT)
            .expression_attribute_names("#cursor", CURSOR)
            .expression_attribute_values(
                ":now",
                AttributeValue::N(self.clock.now().timestamp().to_string()),
            );
        let update = match cursor {
            Some(cursor) => update
                .update_expression("SET #cursor = :cursor")
                .expression_attribute_values(":cursor", cursor_value(cursor)),
            None => update.update_expression("REMOVE #cursor"),
        };
        update_of_existing(update.send().await)
    }

    async fn unsubscribe(&self, id: &ConnectionId, document: &DocumentId) -> Result<()> {
        self.client
            .delete_item()
            .table_name(&self.subscriptions)
            .set_key(Some(Self::subscription_key(id, document)))
            .send()
            .await
            .map_err(|e| sdk_error("DeleteItem", e))?;
        // The subscription is gone: that is what delivery reads. Trimming the
        // connection's set is housekeeping (`subscriptions` checks the set against the
        // subscription items), so its failure is logged, not returned — the stream
        // handler unsubscribes on revocations and deletions with a role that may only
        // read and delete here.
        let result = self
            .client
            .update_item()
            .table_name(&self.connections)
            .set_key(Some(Self::connection_key(id)))
            .update_expression("DELETE #d :d")
            .condition_expression("attribute_exists(#c)")
            .expression_attribute_names("#d", DOCUMENTS)
            .expression_attribute_names("#c", CONNECTION_ID)
            .expression_attribute_values(":d", AttributeValue::Ss(vec![document.to_string()]))
            .send()
            .await;
        match update_of_existing(result) {
            // An unknown connection has nothing to forget.
            Ok(()) | Err(Error::NotFound) => {}
            Err(err) => {
                tracing::warn!(connection = %id, %document, error = %err, "could not trim the connection's subscription set");
            }
        }
        Ok(())
    }

    async fn subscribers(&self, document: &DocumentId) -> Result<Vec<Subscriber>> {
        let mut subscribers = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.subscriptions)
                .key_condition_expression("#d = :d")
                .expression_attribute_names("#d", DOCUMENT_ID)
                .expression_attribute_values(":d", s(document.to_string()))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| sdk_error("Query", e))?;
            for item in out.items() {
                if !self.live(item) {
                    continue;
                }
                subscribers.push(Subscriber {
                    connection: ConnectionId(string(item, CONNECTION_ID)?.into()),
                    user: UserId::parse(string(item, USER_ID)?)
                        .map_err(|e| decode_error(USER_ID, e))?,
                    options: options_of(item)?,
                    cursor: cursor_of(item)?,
                    token_expires_at: match item.get(TOKEN_EXPIRES_AT) {
                        None => None,
                        Some(_) => Some(time(item, TOKEN_EXPIRES_AT)?),
                    },
                });
            }
            start = out.last_evaluated_key;
            if start.is_none() {
                return Ok(subscribers);
            }
        }
    }

    async fn expired(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<ConnectionId>> {
        // Token expiries are RFC 3339 UTC timestamps of one width, so they compare as
        // strings.
        let mut expired = Vec::new();
        let mut start = None;
        while expired.len() < limit {
            let out = self
                .client
                .scan()
                .table_name(&self.connections)
                .filter_expression("#t <= :now")
                .projection_expression("#c")
                .expression_attribute_names("#t", TOKEN_EXPIRES_AT)
                .expression_attribute_names("#c", CONNECTION_ID)
                .expression_attribute_values(":now", timestamp(now))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| sdk_error("Scan", e))?;
            for item in out.items() {
                expired.push(ConnectionId(string(item, CONNECTION_ID)?.into()));
            }
            start = out.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
        expired.truncate(limit);
        Ok(expired)
    }

    async fn user_connections(&self, user: &UserId, at_most: usize) -> Result<usize> {
        let mut count = 0;
        let mut start = None;
        while count < at_most {
            let out = self
                .client
                .query()
                .table_name(&self.connections)
                .index_name(BY_USER_INDEX)
                .key_condition_expression("#u = :u")
                .filter_expression("#e > :now")
                .expression_attribute_names("#u", USER_ID)
                .expression_attribute_names("#e", EXPIRES_AT)
                .expression_attribute_values(":u", s(user.as_str()))
                .expression_attribute_values(
                    ":now",
                    AttributeValue::N(self.clock.now().timestamp().to_string()),
                )
                .select(Select::Count)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| sdk_error("Query", e))?;
            count += usize::try_from(out.count).unwrap_or(0);
            start = out.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
        Ok(count.min(at_most))
    }

    async fn subscriptions(&self, id: &ConnectionId) -> Result<Vec<DocumentId>> {
        let Some(item) = self.connection_item(id).await? else {
            return Ok(Vec::new());
        };
        // The set may still name a subscription ended by a process that could not trim
        // it: keep the documents whose subscription item exists.
        let mut checks = tokio::task::JoinSet::new();
        for document in documents_of(&item) {
            let (client, table, key) = (
                self.client.clone(),
                self.subscriptions.clone(),
                Self::subscription_key(id, &document),
            );
            checks.spawn(async move {
                let out = client
                    .get_item()
                    .table_name(table)
                    .set_key(Some(key))
                    .consistent_read(true)
                    .projection_expression("#d")
                    .expression_attribute_names("#d", DOCUMENT_ID)
                    .send()
                    .await
                    .map_err(|e| sdk_error("GetItem", e))?;
                Ok::<_, Error>(out.item.is_some().then_some(document))
            });
        }
        let mut documents = Vec::new();
        while let Some(checked) = checks.join_next().await {
            let checked = checked
                .map_err(|e| Error::Unknown(anyhow::anyhow!("a subscription check failed: {e}")))?;
            documents.extend(checked?);
        }
        documents.sort();
        Ok(documents)
    }
}
