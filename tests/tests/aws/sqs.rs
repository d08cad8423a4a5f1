//! What only the SQS dead-letter queue has to get right: SQS's message size limit.

use std::sync::Arc;

use serde_json::json;
use shared::aws::SqsDeadLetterQueue;
use shared::aws::dead_letter::MAX_MESSAGE_BYTES;
use shared::clock::SystemClock;
use shared::ports::{DeadLetter, DeadLetterQueue, DeadLetterSource};

use crate::emulators::{self, Wants};

#[tokio::test]
#[ignore = "needs moto and OpenSearch: run tests/run"]
async fn a_record_over_the_message_limit_keeps_its_keys_and_says_what_was_cut() {
    let clients = emulators::aws(Wants::default()).await;
    let url = clients.config.dead_letter_queue_url.as_deref().unwrap();
    let dlq = SqsDeadLetterQueue::new(clients.sqs.clone(), url, Arc::new(SystemClock))
        .with_wait_seconds(0);
    let big = "x".repeat(MAX_MESSAGE_BYTES / 2 + 1);
    let record = json!({
        "eventID": "e1",
        "eventName": "MODIFY",
        "dynamodb": {
            "Keys": { "id": { "S": "0190a5f0-0000-7000-8000-000000000000" } },
            "SequenceNumber": "000000000000000000007",
            "OldImage": { "body": { "S": big } },
            "NewImage": { "body": { "S": big } }
        }
    });
    let letter = DeadLetter {
        id: String::new(),
        source: DeadLetterSource::Stream,
        payload: record,
        reason: "the search sink refused it".into(),
        attempts: 4,
        failed_at: chrono::Utc::now(),
    };
    dlq.put(&letter).await.unwrap();
    let listed = dlq.list(10).await.unwrap();
    assert_eq!(listed.len(), 1);
    let kept = &listed[0];
    assert!(
        kept.reason
            .starts_with("the search sink refused it [the letter was "),
        "{}",
        kept.reason
    );
    assert!(kept.reason.contains("images were dropped"));
    assert_eq!(
        kept.payload["dynamodb"]["SequenceNumber"],
        "000000000000000000007"
    );
    assert_eq!(
        kept.payload["dynamodb"]["Keys"],
        letter.payload["dynamodb"]["Keys"]
    );
    assert!(kept.payload["dynamodb"].get("NewImage").is_none());
}
