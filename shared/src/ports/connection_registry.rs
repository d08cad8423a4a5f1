use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::Result;
use crate::domain::{DocumentId, UserId};

/// A connection's id: API Gateway's `connectionId`, or one the local driver makes.
///
/// Shared, not copied: the outbox, the registry and the replay cursors all key on it, and
/// a broadcast names every subscriber's.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(pub Arc<str>);

impl ConnectionId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Serialize for ConnectionId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ConnectionId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        String::deserialize(d).map(|id| Self(id.into()))
    }
}

impl std::fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// An authenticated connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Connection {
    pub id: ConnectionId,
    pub user: UserId,
    /// When the connection's token expires; it is closed then unless refreshed.
    pub expires_at: DateTime<Utc>,
    pub connected_at: DateTime<Utc>,
}

/// A subscriber's caret or selection in the body, in characters (code points) from the
/// start: `anchor` where the selection began, `head` where it ends (equal for a caret).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PresenceCursor {
    pub anchor: u64,
    pub head: u64,
}

/// How a connection follows a document.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscribeOptions {
    /// Whether change frames carry the whole document (`"include":"document"`).
    #[serde(default)]
    pub include_document: bool,
}

/// A connection subscribed to a document.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subscriber {
    pub connection: ConnectionId,
    pub user: UserId,
    #[serde(default)]
    pub options: SubscribeOptions,
    /// The last caret or selection the connection shared in this document (ephemeral:
    /// never in the change stream or the audit trail).
    #[serde(default)]
    pub cursor: Option<PresenceCursor>,
    /// When the connection's token expires (kept with the subscription, so a push can
    /// skip a connection whose token has expired without another read); `None` for a
    /// subscription recorded before it was kept.
    #[serde(default)]
    pub token_expires_at: Option<DateTime<Utc>>,
}

impl Subscriber {
    /// Whether the connection's token has expired by `now`: nothing more may be pushed
    /// to it, and it is to be closed.
    pub fn expired(&self, now: DateTime<Utc>) -> bool {
        self.token_expires_at.is_some_and(|at| at <= now)
    }
}

/// Connections and their subscriptions.
///
/// Finding a document's subscribers costs in proportion to them, not to all connections:
/// the DynamoDB adapter keeps one item per subscription keyed by (document, connection)
/// and carrying the user, read with a strongly consistent `Query` on the document; what
/// `remove` and `subscriptions` need by connection comes from the connection's item or
/// an index by connection. Never a scan, and never an eventually consistent index on the
/// notification path.
///
/// Consistency: a subscription acknowledged by `subscribe` is seen by every later
/// `subscribers` call, so a change committed after a subscribe returns reaches it.
#[async_trait]
pub trait ConnectionRegistry: Send + Sync + 'static {
    /// Registers a new connection (replacing one with the same id).
    /// Errors: [`Error::Unavailable`](crate::Error::Unavailable).
    async fn register(&self, connection: &Connection) -> Result<()>;

    /// The connection, if registered. Errors: `Unavailable`.
    async fn get(&self, id: &ConnectionId) -> Result<Option<Connection>>;

    /// Replaces the connection's token expiry after an in-band `auth`, on the connection
    /// and on each of its subscriptions.
    /// Errors: [`Error::NotFound`](crate::Error::NotFound) for an unknown connection; `Unavailable`.
    async fn refresh(&self, id: &ConnectionId, expires_at: DateTime<Utc>) -> Result<()>;

    /// Forgets the connection and all its subscriptions; unknown ids are fine.
    /// Errors: `Unavailable`.
    async fn remove(&self, id: &ConnectionId) -> Result<()>;

    /// Subscribes the connection to the document (idempotent; a repeated subscribe
    /// replaces the options and clears the cursor).
    /// Errors: `NotFound` for an unknown connection; `Unavailable`.
    async fn subscribe(
        &self,
        id: &ConnectionId,
        document: &DocumentId,
        options: SubscribeOptions,
    ) -> Result<()>;

    /// Records the connection's caret or selection in a document it is subscribed to
    /// (`None`: it shares none).
    /// Errors: `NotFound` when the connection is not subscribed to the document;
    /// `Unavailable`.
    async fn set_cursor(
        &self,
        id: &ConnectionId,
        document: &DocumentId,
        cursor: Option<PresenceCursor>,
    ) -> Result<()>;

    /// Ends one subscription (idempotent: unknown connections and documents are fine).
    /// Errors: `Unavailable`.
    async fn unsubscribe(&self, id: &ConnectionId, document: &DocumentId) -> Result<()>;

    /// The document's subscribers, each connection once, in no particular order.
    /// Errors: `Unavailable`.
    async fn subscribers(&self, document: &DocumentId) -> Result<Vec<Subscriber>>;

    /// The cursors shared in the document: `(user, cursor)` for each subscription
    /// that shares one. What a new subscriber is shown; a registry that can answer
    /// without listing every subscriber should. Errors: `Unavailable`.
    async fn cursors(&self, document: &DocumentId) -> Result<Vec<(UserId, PresenceCursor)>> {
        Ok(self
            .subscribers(document)
            .await?
            .into_iter()
            .filter_map(|s| Some((s.user, s.cursor?)))
            .collect())
    }

    /// Whether any connection of `user` follows the document. Errors: `Unavailable`.
    async fn follows(&self, document: &DocumentId, user: &UserId) -> Result<bool> {
        Ok(self
            .subscribers(document)
            .await?
            .iter()
            .any(|s| &s.user == user))
    }

    /// Up to `limit` connections whose token had expired by `now`: what a scheduled
    /// sweep closes. Not on any request path: the DynamoDB adapter scans the connections
    /// table (its items are few and small). Errors: `Unavailable`.
    async fn expired(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<ConnectionId>>;

    /// How many live connections `user` has, counting no further than `at_most` (what a
    /// per-user cap needs to know). Not on the notification path: the DynamoDB adapter
    /// answers from an eventually consistent index by user, so two connections opened
    /// in the same instant may both be let in. Errors: `Unavailable`.
    async fn user_connections(&self, user: &UserId, at_most: usize) -> Result<usize>;

    /// The documents the connection is subscribed to (empty for an unknown connection).
    /// Errors: `Unavailable`.
    async fn subscriptions(&self, id: &ConnectionId) -> Result<Vec<DocumentId>>;
}
