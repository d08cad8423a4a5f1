use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::Result;
use crate::domain::{DocumentId, UserId};

/// A connection's id: API Gateway's `connectionId`, or one the local driver makes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ConnectionId(pub String);

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

/// A connection subscribed to a document.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subscriber {
    pub connection: ConnectionId,
    pub user: UserId,
}

/// Connections and their subscriptions. Finding a document's subscribers costs in
/// proportion to them, not to all connections (an index or item collection by document
/// in the AWS adapter, never a scan).
#[async_trait]
pub trait ConnectionRegistry: Send + Sync + 'static {
    /// Registers a new connection. Errors: [`Error::Unavailable`](crate::Error::Unavailable).
    async fn register(&self, connection: &Connection) -> Result<()>;

    /// The connection, if registered. Errors: `Unavailable`.
    async fn get(&self, id: &ConnectionId) -> Result<Option<Connection>>;

    /// Replaces the connection's token expiry after an in-band `auth`.
    /// Errors: [`Error::NotFound`](crate::Error::NotFound) for an unknown connection; `Unavailable`.
    async fn refresh(&self, id: &ConnectionId, expires_at: DateTime<Utc>) -> Result<()>;

    /// Forgets the connection and all its subscriptions; unknown ids are fine.
    /// Errors: `Unavailable`.
    async fn remove(&self, id: &ConnectionId) -> Result<()>;

    /// Subscribes the connection to the document (idempotent).
    /// Errors: `NotFound` for an unknown connection; `Unavailable`.
    async fn subscribe(&self, id: &ConnectionId, document: &DocumentId) -> Result<()>;

    /// Ends one subscription (idempotent). Errors: `Unavailable`.
    async fn unsubscribe(&self, id: &ConnectionId, document: &DocumentId) -> Result<()>;

    /// The document's subscribers. Errors: `Unavailable`.
    async fn subscribers(&self, document: &DocumentId) -> Result<Vec<Subscriber>>;
}
