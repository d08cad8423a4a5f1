//! `docfan dlq` on AWS: the SQS dead-letter queue listed, and its letters redriven
//! through the AWS sinks (`api::commands::aws`).

use std::sync::Arc;

use api::commands::aws::{list_dead_letters, redrive_dead_letters};
use serde_json::json;
use shared::clock::SystemClock;
use shared::ports::{
    AnalysisQueue, AuditLog, DeadLetter, DeadLetterQueue, DeadLetterSource, DocumentStore,
};
use tests::port_suites::{new_document, now_millis, unique_user};

use crate::emulators::{self, Wants};

#[tokio::test]
#[ignore = "needs moto and OpenSearch: run tests/run"]
async fn dead_letters_are_listed_and_redriven_through_the_aws_sinks() {
    let clients = emulators::aws(Wants {
        search: true,
        ..Wants::default()
    })
    .await;
    let ann = unique_user("ann");
    let doc = new_document(&ann, "Poisoned once", "then fine", &[]);
    clients.document_store().create(&doc).await.unwrap();
    let record = crate::stream::read_stream(&clients).await.remove(0);
    let dlq = clients.dead_letter_queue(Arc::new(SystemClock)).unwrap();
    let stream_letter = dlq
        .put(&DeadLetter {
            id: String::new(),
            source: DeadLetterSource::Stream,
            payload: record,
            reason: "search: temporarily unavailable".into(),
            attempts: 4,
            failed_at: now_millis(),
        })
        .await
        .unwrap();
    dlq.put(&DeadLetter {
        id: String::new(),
        source: DeadLetterSource::Analysis,
        payload: json!({"documentId": doc.id, "version": 1}),
        reason: "after 5 attempts: boom".into(),
        attempts: 5,
        failed_at: now_millis(),
    })
    .await
    .unwrap();

    let listed = list_dead_letters(&clients, 10).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].id, stream_letter);

    let outcomes = redrive_dead_letters(&clients, None).await.unwrap();
    assert_eq!(outcomes.len(), 2);
    assert!(outcomes.iter().all(|o| o.result.is_ok()), "{outcomes:?}");
    assert!(list_dead_letters(&clients, 10).await.unwrap().is_empty());
    assert_eq!(crate::emulators::audit_count(&clients, &doc.id).await, 1);
    assert_eq!(
        clients
            .search_index()
            .unwrap()
            .indexed(&doc.id)
            .await
            .unwrap(),
        Some((1, false))
    );
    // The requeued job and the redriven creation's own job.
    let queue = clients.analysis_queue(Arc::new(SystemClock)).unwrap();
    assert_eq!(queue.depth().await.unwrap(), 2);
    assert!(matches!(
        redrive_dead_letters(&clients, Some(&stream_letter)).await,
        Err(e) if e.to_string().contains("not found")
    ));
}

/// `docfan dlq replay`: a batch the stream mapping gave up on leaves only its metadata
/// in the on-failure queue; the replay reads its records back from the stream
/// (`AT_SEQUENCE_NUMBER`) and hands them to the sinks, and the message leaves the queue.
/// A message about records the stream no longer holds stays, with the reason.
#[tokio::test]
#[ignore = "needs moto and OpenSearch: run tests/run"]
async fn batches_the_mapping_gave_up_on_are_replayed_from_the_stream() {
    use api::commands::aws::replay_failed_batches;

    let mut clients = emulators::aws(Wants {
        search: true,
        ..Wants::default()
    })
    .await;
    let failures =
        emulators::create_queue(&clients.sqs, &crate::emulators::unique("stream-failures")).await;
    clients.config.stream_failure_queue_url = Some(failures.clone());
    let ann = unique_user("ann");
    let docs: Vec<_> = (0..3)
        .map(|i| new_document(&ann, &format!("Given up {i}"), "then replayed", &[]))
        .collect();
    for doc in &docs {
        clients.document_store().create(doc).await.unwrap();
    }
    let records = crate::stream::read_stream(&clients).await;
    assert_eq!(records.len(), 3);
    let seq = |r: &serde_json::Value| r["dynamodb"]["SequenceNumber"].as_str().unwrap().to_owned();
    let arn = records[0]["eventSourceARN"].as_str().unwrap().to_owned();
    let streams = &clients.streams;
    let shard = streams
        .describe_stream()
        .stream_arn(&arn)
        .send()
        .await
        .unwrap()
        .stream_description
        .unwrap()
        .shards
        .unwrap()
        .remove(0)
        .shard_id
        .unwrap();
    // What Lambda writes to the on-failure destination: the last two records' batch,
    // and one about sequence numbers the stream never held.
    let message = |start: &str, end: &str| {
        json!({
            "requestContext": {"condition": "RetryAttemptsExhausted", "approximateInvokeCount": 11},
            "version": "1.0",
            "DDBStreamBatchInfo": {
                "shardId": shard,
                "startSequenceNumber": start,
                "endSequenceNumber": end,
                "batchSize": 2,
                "streamArn": arn,
            }
        })
        .to_string()
    };
    for body in [
        message(&seq(&records[1]), &seq(&records[2])),
        "not a batch".to_owned(),
    ] {
        clients
            .sqs
            .send_message()
            .queue_url(&failures)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }

    let outcomes = replay_failed_batches(&clients).await.unwrap();
    let replayed: Vec<_> = outcomes
        .iter()
        .filter_map(|o| o.result.as_ref().ok())
        .collect();
    assert_eq!(replayed, [&2], "{outcomes:?}");
    let waiting: Vec<_> = outcomes
        .iter()
        .filter_map(|o| o.result.as_ref().err())
        .collect();
    assert_eq!(waiting.len(), 1, "{outcomes:?}");
    assert!(
        waiting[0].contains("not an on-failure message"),
        "{waiting:?}"
    );

    // The batch's two documents went through every sink; the first was not in it.
    let audit = clients.audit_log();
    let index = clients.search_index().unwrap();
    for (doc, replayed) in docs.iter().zip([false, true, true]) {
        assert_eq!(
            audit.list(&doc.id, None, 10).await.unwrap().len(),
            usize::from(replayed),
            "{}",
            doc.title.as_str()
        );
        assert_eq!(
            index.indexed(&doc.id).await.unwrap(),
            replayed.then_some((1, false))
        );
    }
    // The replayed message left the queue; the other stays (invisible for a while).
    let left = clients
        .sqs
        .get_queue_attributes()
        .queue_url(&failures)
        .attribute_names(
            aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        left.attributes.unwrap()
            [&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible],
        "1"
    );
}
