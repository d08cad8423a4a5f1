use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::Result;

/// Which consumer gave up on the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeadLetterSource {
    /// A change-stream record the stream handler could not process.
    Stream,
    /// An analysis job the worker could not complete.
    Analysis,
    /// A webhook delivery that ran out of its retry budget (payload: `{"rule", "event"}`).
    Webhook,
}

/// A message that could not be processed, kept whole with the reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    /// Assigned by the queue on `put`.
    pub id: String,
    pub source: DeadLetterSource,
    /// The full original message (for the stream: the DynamoDB stream record JSON).
    pub payload: serde_json::Value,
    pub reason: String,
    pub attempts: u32,
    pub failed_at: DateTime<Utc>,
}

/// The dead-letter queue: nothing is dropped silently, and an operator can redrive.
#[async_trait]
pub trait DeadLetterQueue: Send + Sync + 'static {
    /// Stores the letter and returns its id. Errors: [`Error::Unavailable`](crate::Error::Unavailable).
    async fn put(&self, letter: &DeadLetter) -> Result<String>;

    /// Up to `limit` letters, oldest first. Errors: `Unavailable`.
    async fn list(&self, limit: usize) -> Result<Vec<DeadLetter>>;

    /// Removes a letter after a successful redrive.
    /// Errors: [`Error::NotFound`](crate::Error::NotFound) when there is no such letter; `Unavailable`.
    async fn remove(&self, id: &str) -> Result<()>;

    /// How many letters are waiting, for metrics. Errors: `Unavailable`.
    async fn depth(&self) -> Result<u64>;
}
