//! Reading back the records of a batch an event source mapping gave up on.
//!
//! When the mapping gives up (retries or age run out), its on-failure destination gets
//! only the batch's metadata: the stream, the shard and the first and last sequence
//! numbers (`DDBStreamBatchInfo`). While the stream still holds those records (24
//! hours), [`StreamReader::records`] reads them again (`GetShardIterator`
//! `AT_SEQUENCE_NUMBER`, then `GetRecords` until past the last one), in the JSON shape
//! the mapping hands to the function, so the same handler can take them.

use serde_json::{Value, json};

use super::errors::sdk_error;
use crate::{Error, Result};

/// What the on-failure destination says about a batch the mapping gave up on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedBatch {
    pub stream_arn: String,
    pub shard_id: String,
    pub start_sequence_number: String,
    pub end_sequence_number: String,
    /// Why the mapping gave up (`RetryAttemptsExhausted`, `RecordAgeExceeded`…).
    pub condition: Option<String>,
}

impl FailedBatch {
    /// Parses an on-failure message (Lambda's invocation record for a DynamoDB stream).
    pub fn parse(message: &str) -> Result<Self> {
        let value: Value = serde_json::from_str(message)
            .map_err(|e| Error::invalid("message", format!("not JSON: {e}")))?;
        let info = &value["DDBStreamBatchInfo"];
        let field = |name: &'static str| {
            info[name].as_str().map(str::to_owned).ok_or_else(|| {
                Error::invalid("message", format!("DDBStreamBatchInfo.{name} is missing"))
            })
        };
        Ok(Self {
            stream_arn: field("streamArn")?,
            shard_id: field("shardId")?,
            start_sequence_number: field("startSequenceNumber")?,
            end_sequence_number: field("endSequenceNumber")?,
            condition: value["requestContext"]["condition"]
                .as_str()
                .map(str::to_owned),
        })
    }
}

/// Sequence numbers are decimal strings of up to 40 digits: shorter is smaller.
fn sequence_after(a: &str, b: &str) -> bool {
    (a.len(), a) > (b.len(), b)
}

/// Reads a stream's records.
#[derive(Debug, Clone)]
pub struct StreamReader {
    client: aws_sdk_dynamodbstreams::Client,
}

impl StreamReader {
    pub fn new(client: aws_sdk_dynamodbstreams::Client) -> Self {
        Self { client }
    }

    /// The records of `batch`, oldest first, as the mapping delivers them. Errors:
    /// `NotFound` when the stream no longer holds them (past its 24 hours, or the shard
    /// is gone); `Unavailable`, `Blocked`.
    pub async fn records(&self, batch: &FailedBatch) -> Result<Vec<Value>> {
        use aws_sdk_dynamodbstreams::operation::get_records::GetRecordsError;
        use aws_sdk_dynamodbstreams::operation::get_shard_iterator::GetShardIteratorError;
        use aws_sdk_dynamodbstreams::types::ShardIteratorType;

        let iterator = self
            .client
            .get_shard_iterator()
            .stream_arn(&batch.stream_arn)
            .shard_id(&batch.shard_id)
            .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
            .sequence_number(&batch.start_sequence_number)
            .send()
            .await
            .map_err(|e| match e.as_service_error() {
                Some(
                    GetShardIteratorError::TrimmedDataAccessException(_)
                    | GetShardIteratorError::ResourceNotFoundException(_),
                ) => Error::NotFound,
                _ => sdk_error("GetShardIterator", e),
            })?;
        let mut iterator = iterator.shard_iterator;
        let mut records = Vec::new();
        while let Some(current) = iterator {
            let page = self
                .client
                .get_records()
                .shard_iterator(current)
                .send()
                .await
                .map_err(|e| match e.as_service_error() {
                    Some(GetRecordsError::TrimmedDataAccessException(_)) => Error::NotFound,
                    _ => sdk_error("GetRecords", e),
                })?;
            let batch_records = page.records.unwrap_or_default();
            if batch_records.is_empty() {
                break;
            }
            for record in batch_records {
                let seq = record
                    .dynamodb
                    .as_ref()
                    .and_then(|d| d.sequence_number.clone())
                    .unwrap_or_default();
                if sequence_after(&seq, &batch.end_sequence_number) {
                    return Ok(records);
                }
                records.push(lambda_record(record, &batch.stream_arn));
            }
            iterator = page.next_shard_iterator;
        }
        Ok(records)
    }
}

fn image(
    map: Option<std::collections::HashMap<String, aws_sdk_dynamodbstreams::types::AttributeValue>>,
) -> Option<Value> {
    map.and_then(|m| serde_json::to_value(serde_dynamo::Item::from(m)).ok())
}

/// A DynamoDB Streams record as the Lambda event source mapping hands it over (the
/// shape of `aws_lambda_events`' DynamoDB event record).
pub fn lambda_record(record: aws_sdk_dynamodbstreams::types::Record, stream_arn: &str) -> Value {
    let change = record
        .dynamodb
        .unwrap_or_else(|| aws_sdk_dynamodbstreams::types::StreamRecord::builder().build());
    let mut dynamodb = json!({
        "ApproximateCreationDateTime": change.approximate_creation_date_time.map(|t| t.as_secs_f64()),
        "Keys": image(change.keys),
        "SequenceNumber": change.sequence_number,
        "SizeBytes": change.size_bytes,
        "StreamViewType": change.stream_view_type.map(|v| v.as_str().to_owned()),
    });
    if let Some(new) = image(change.new_image) {
        dynamodb["NewImage"] = new;
    }
    if let Some(old) = image(change.old_image) {
        dynamodb["OldImage"] = old;
    }
    json!({
        "eventID": record.event_id,
        "eventName": record.event_name.map(|n| n.as_str().to_owned()),
        "eventVersion": record.event_version,
        "eventSource": record.event_source,
        "awsRegion": record.aws_region,
        "dynamodb": dynamodb,
        "eventSourceARN": stream_arn,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_on_failure_message_names_its_batch() {
        let message = json!({
            "requestContext": {
                "requestId": "316aa6d0-8154-xmpl-9af7-85d5f4a6bc81",
                "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:docfan-stream",
                "condition": "RetryAttemptsExhausted",
                "approximateInvokeCount": 11
            },
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
            "version": "1.0",
            "timestamp": "2026-12-03T12:00:00.000Z",
            "DDBStreamBatchInfo": {
                "shardId": "shardId-00000001",
                "startSequenceNumber": "800000000003126276362",
                "endSequenceNumber": "800000000003126276380",
                "approximateArrivalOfFirstRecord": "2026-12-03T11:00:00Z",
                "approximateArrivalOfLastRecord": "2026-12-03T11:00:01Z",
                "batchSize": 3,
                "streamArn": "arn:aws:dynamodb:us-east-1:123456789012:table/docfan-documents/stream/2026-12-01T00:00:00.000"
            }
        });
        let batch = FailedBatch::parse(&message.to_string()).unwrap();
        assert_eq!(batch.shard_id, "shardId-00000001");
        assert_eq!(batch.start_sequence_number, "800000000003126276362");
        assert_eq!(batch.end_sequence_number, "800000000003126276380");
        assert_eq!(batch.condition.as_deref(), Some("RetryAttemptsExhausted"));
        assert!(
            batch
                .stream_arn
                .ends_with("/stream/2026-12-01T00:00:00.000")
        );

        for bad in ["", "[]", "{}", r#"{"DDBStreamBatchInfo":{"shardId":"s"}}"#] {
            assert!(FailedBatch::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sequence_numbers_compare_as_numbers() {
        assert!(sequence_after("100", "99"));
        assert!(sequence_after(
            "1000000000000000000001",
            "999999999999999999999"
        ));
        assert!(!sequence_after("99", "100"));
        assert!(!sequence_after("100", "100"));
    }
}
