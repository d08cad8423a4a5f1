//! The [`AttemptLog`] on DynamoDB: one item per failing record in the attempts table
//! (`recordId`), its count raised with an atomic `ADD`, and `expiresAt` (epoch seconds)
//! for DynamoDB's TTL, two days on: longer than the stream keeps a record (24 hours),
//! so a count never expires while its record can still be delivered.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};

use super::errors::{decode_error, sdk_error};
use super::tables::EXPIRES_AT;
use crate::Result;
use crate::clock::Clock;
use crate::ports::AttemptLog;

const RECORD_ID: &str = "recordId";
const ATTEMPTS: &str = "attempts";
/// How long a count is kept after its last failure.
const KEEP: Duration = Duration::from_secs(2 * 24 * 3600);

/// Failed attempts of stream records, in DynamoDB.
#[derive(Clone)]
pub struct DynamoDbAttemptLog {
    client: Client,
    table: String,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for DynamoDbAttemptLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoDbAttemptLog")
            .field("table", &self.table)
            .finish()
    }
}

impl DynamoDbAttemptLog {
    pub fn new(client: Client, table: &str, clock: Arc<dyn Clock>) -> Self {
        Self {
            client,
            table: table.to_owned(),
            clock,
        }
    }
}

#[async_trait]
impl AttemptLog for DynamoDbAttemptLog {
    async fn failed(&self, record_id: &str) -> Result<u32> {
        let expires_at = self.clock.now().timestamp() + KEEP.as_secs() as i64;
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(RECORD_ID, AttributeValue::S(record_id.to_owned()))
            .update_expression("ADD #a :one SET #e = :e")
            .expression_attribute_names("#a", ATTEMPTS)
            .expression_attribute_names("#e", EXPIRES_AT)
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(":e", AttributeValue::N(expires_at.to_string()))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(|e| sdk_error("UpdateItem", e))?;
        match out.attributes().and_then(|a| a.get(ATTEMPTS)) {
            Some(AttributeValue::N(n)) => n.parse().map_err(|e| decode_error(ATTEMPTS, e)),
            other => Err(decode_error(ATTEMPTS, other)),
        }
    }
}
