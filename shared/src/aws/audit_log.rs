//! The [`AuditLog`] on DynamoDB: one item per (document, version) in the audit table
//! (`documentId`, `version`), the entry encoded with serde_dynamo. `append` is a put
//! conditional on the key not existing, so a redelivered change adds nothing
//! (`AlreadyApplied`); reads are strongly consistent so a replay sees every entry that
//! was acknowledged.

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;

use super::errors::{conditional_put_outcome, decode_error, sdk_error};
use crate::Result;
use crate::domain::{AuditEntry, DocumentId};
use crate::ports::{AuditLog, WriteOutcome};

/// The audit trail in DynamoDB.
#[derive(Debug, Clone)]
pub struct DynamoDbAuditLog {
    client: Client,
    table: String,
}

impl DynamoDbAuditLog {
    pub fn new(client: Client, table: &str) -> Self {
        Self {
            client,
            table: table.to_owned(),
        }
    }
}

#[async_trait]
impl AuditLog for DynamoDbAuditLog {
    async fn append(&self, entry: &AuditEntry) -> Result<WriteOutcome> {
        let item = serde_dynamo::aws_sdk_dynamodb_1::to_item(entry)
            .map_err(|e| decode_error("an audit entry", e))?;
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#d)")
            .expression_attribute_names("#d", "documentId")
            .send()
            .await;
        conditional_put_outcome(result)
    }

    async fn list(
        &self,
        document: &DocumentId,
        after_version: Option<u64>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>> {
        let limit = limit.max(1);
        let mut entries = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#d = :d AND #v > :after")
                .expression_attribute_names("#d", "documentId")
                .expression_attribute_names("#v", "version")
                .expression_attribute_values(":d", AttributeValue::S(document.to_string()))
                .expression_attribute_values(
                    ":after",
                    AttributeValue::N(after_version.unwrap_or(0).to_string()),
                )
                .scan_index_forward(true)
                .consistent_read(true)
                .limit((limit - entries.len()).min(i32::MAX as usize) as i32)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| sdk_error("Query", e))?;
            for item in out.items.unwrap_or_default() {
                entries.push(
                    serde_dynamo::aws_sdk_dynamodb_1::from_item(item)
                        .map_err(|e| decode_error("an audit entry", e))?,
                );
            }
            start = out.last_evaluated_key;
            if start.is_none() || entries.len() >= limit {
                return Ok(entries);
            }
        }
    }

    async fn get(&self, document: &DocumentId, version: u64) -> Result<Option<AuditEntry>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("documentId", AttributeValue::S(document.to_string()))
            .key("version", AttributeValue::N(version.to_string()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", e))?;
        out.item
            .map(|item| {
                serde_dynamo::aws_sdk_dynamodb_1::from_item(item)
                    .map_err(|e| decode_error("an audit entry", e))
            })
            .transpose()
    }
}
