//! The [`AnalysisStore`] on DynamoDB: the latest analysis per document in the analysis
//! table (`documentId`), which has no stream, so storing a result never causes another
//! fan-out. A put is conditional on the stored version being older, so a late or
//! duplicate result for an older version changes nothing (`AlreadyApplied`).

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;

use super::errors::{conditional_put_outcome, decode_error, sdk_error};
use crate::Result;
use crate::domain::{Analysis, DocumentId};
use crate::ports::{AnalysisStore, WriteOutcome};

/// Analysis results in DynamoDB.
#[derive(Debug, Clone)]
pub struct DynamoDbAnalysisStore {
    client: Client,
    table: String,
}

impl DynamoDbAnalysisStore {
    pub fn new(client: Client, table: &str) -> Self {
        Self {
            client,
            table: table.to_owned(),
        }
    }
}

#[async_trait]
impl AnalysisStore for DynamoDbAnalysisStore {
    async fn put(&self, analysis: &Analysis) -> Result<WriteOutcome> {
        let item = serde_dynamo::aws_sdk_dynamodb_1::to_item(analysis)
            .map_err(|e| decode_error("an analysis", e))?;
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#d) OR #v < :v")
            .expression_attribute_names("#d", "documentId")
            .expression_attribute_names("#v", "version")
            .expression_attribute_values(":v", AttributeValue::N(analysis.version.to_string()))
            .send()
            .await;
        conditional_put_outcome(result)
    }

    async fn get(&self, document: &DocumentId) -> Result<Option<Analysis>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("documentId", AttributeValue::S(document.to_string()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", e))?;
        out.item
            .map(|item| {
                serde_dynamo::aws_sdk_dynamodb_1::from_item(item)
                    .map_err(|e| decode_error("an analysis", e))
            })
            .transpose()
    }
}
