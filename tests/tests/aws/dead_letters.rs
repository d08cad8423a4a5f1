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
    assert_eq!(
        clients
            .audit_log()
            .list(&doc.id, None, 10)
            .await
            .unwrap()
            .len(),
        1
    );
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
