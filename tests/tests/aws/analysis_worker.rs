//! The analysis worker on an SQS event, as the Lambda `analysis-worker` function runs
//! it: the event's jobs through [`SqsEventBatch`], results into the DynamoDB analysis
//! table, dead jobs onto the SQS dead-letter queue, and the messages that failed
//! reported in the partial batch response.
//!
//! The event is the fixture `fixtures/sqs-analysis-event.json` (the shape Lambda
//! delivers), with each record's ids, receipt handle and body taken from a message
//! really received from moto.

use std::sync::Arc;

use aws_lambda_events::sqs::SqsEvent;
use serde_json::Value;
use shared::aws::SqsDeadLetterQueue;
use shared::aws::analysis_queue::SqsEventBatch;
use shared::clock::{Clock, SystemClock};
use shared::ports::{
    AnalysisJob, AnalysisQueue, AnalysisStore, DeadLetterQueue, DeadLetterSource, DocumentStore,
};
use stream_handler::analysis::{AnalysisWorker, AnalysisWorkerConfig, JobOutcome};
use stream_handler::sinks::notifications::NoSubscribers;
use tests::port_suites::{new_document, next_version, unique_user};

use crate::emulators::{self, Wants};

const FIXTURE: &str = include_str!("fixtures/sqs-analysis-event.json");

/// The position of a message in the fixture: jobs by version, then the rest.
fn order(body: &str) -> u64 {
    serde_json::from_str::<AnalysisJob>(body).map_or(u64::MAX, |job| job.version)
}

#[tokio::test]
#[ignore = "needs moto and OpenSearch: run tests/run"]
async fn the_worker_takes_an_sqs_event_and_reports_what_failed() {
    let clients = emulators::aws(Wants::default()).await;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = Arc::new(clients.document_store());
    let analyses = Arc::new(clients.analysis_store());
    let queue = clients.analysis_queue(Arc::clone(&clock)).unwrap();
    let dead_letters = Arc::new(
        SqsDeadLetterQueue::new(
            clients.sqs.clone(),
            clients.config.dead_letter_queue_url.as_deref().unwrap(),
            Arc::clone(&clock),
        )
        .with_wait_seconds(0),
    );
    let url = clients.config.analysis_queue_url.clone().unwrap();

    let ann = unique_user("ann");
    let v1 = new_document(&ann, "Notes", "one two three four", &[]);
    let v2 = next_version(&v1, &ann, |d| {
        d.body = shared::domain::Body::parse("one two three four five six").unwrap()
    });
    store.create(&v1).await.unwrap();
    store
        .update(
            &v2,
            &shared::domain::TextOperation::diff(v1.body.as_str(), v2.body.as_str()),
        )
        .await
        .unwrap();
    // Version 3 does not exist yet: its job fails, and on its fifth receive it is
    // dead-lettered.
    for version in [1, 2, 3] {
        queue
            .enqueue(&AnalysisJob {
                document_id: v1.id,
                version,
            })
            .await
            .unwrap();
    }
    clients
        .sqs
        .send_message()
        .queue_url(&url)
        .message_body("not an analysis job")
        .send()
        .await
        .unwrap();

    // The event Lambda would deliver for these four messages.
    let mut received = clients
        .sqs
        .receive_message()
        .queue_url(&url)
        .max_number_of_messages(10)
        .visibility_timeout(60)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap();
    assert_eq!(received.len(), 4);
    received.sort_by_key(|m| order(m.body.as_deref().unwrap()));
    let mut event: Value = serde_json::from_str(FIXTURE).unwrap();
    for (record, message) in event["Records"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .zip(&received)
    {
        record["messageId"] = message.message_id.clone().into();
        record["receiptHandle"] = message.receipt_handle.clone().into();
        record["body"] = message.body.clone().into();
    }
    let event: SqsEvent = serde_json::from_value(event).unwrap();
    let ids: Vec<String> = event
        .records
        .iter()
        .map(|r| r.message_id.clone().unwrap())
        .collect();

    let batch = Arc::new(SqsEventBatch::new(
        &event,
        Some(dead_letters.clone()),
        Arc::clone(&clock),
    ));
    let worker = AnalysisWorker::new(
        batch.clone(),
        analyses.clone(),
        store.clone() as Arc<dyn DocumentStore>,
        Arc::new(NoSubscribers),
        clock,
        AnalysisWorkerConfig::default(),
    );
    let mut outcomes = Vec::new();
    loop {
        let done = worker.run_once().await.unwrap();
        if done.is_empty() {
            break;
        }
        outcomes.extend(done);
    }
    assert_eq!(outcomes.len(), 3);
    // Job 1 analyses the current version 2 (nothing as new was analysed yet); job 2
    // then has nothing left to do.
    assert_eq!(outcomes[0], JobOutcome::Completed);
    assert_eq!(outcomes[1], JobOutcome::Superseded);
    assert!(
        matches!(outcomes[2], JobOutcome::DeadLettered(_)),
        "{outcomes:?}"
    );

    // Only the message that is not a job goes back to the queue.
    let response = batch.response();
    let failed: Vec<_> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    assert_eq!(failed, [ids[3].clone()]);
    let stored = analyses.get(&v1.id).await.unwrap().unwrap();
    assert_eq!((stored.version, stored.word_count), (2, 6));
    let letters = dead_letters.list(10).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].source, DeadLetterSource::Analysis);
    assert_eq!(letters[0].attempts, 5);
    assert_eq!(
        letters[0].payload,
        serde_json::json!({"documentId": v1.id, "version": 3})
    );
}
