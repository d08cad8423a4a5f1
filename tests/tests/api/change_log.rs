//! The change log: one record per committed mutation, none for rejected ones, in order,
//! with the right images, shaped as DynamoDB Streams Lambda records.

use reqwest::{Method, StatusCode};
use serde_json::json;
use tests::TestApp;
use tests::data_dir::change_log;

#[tokio::test]
async fn one_record_per_committed_mutation_none_for_rejected() {
    let app = TestApp::spawn().await;
    let doc = app.create("ann", "t", "b", json!({"cat": "viewer"})).await;
    let id = doc["id"].as_str().unwrap().to_owned();
    assert_eq!(
        app.put("ann", &id, 1, "t2", "b2").await.status,
        StatusCode::OK
    );

    // Rejected: stale, missing If-Match, viewer, stranger, invalid, too large.
    assert_eq!(
        app.put("ann", &id, 1, "t", "b").await.status,
        StatusCode::PRECONDITION_FAILED
    );
    let no_if_match = app
        .send(
            app.request(Method::PUT, &format!("/documents/{id}"), Some("ann"))
                .json(&json!({"title": "t", "body": "b"})),
        )
        .await;
    assert_eq!(no_if_match.status, StatusCode::PRECONDITION_REQUIRED);
    assert_eq!(
        app.put("cat", &id, 2, "t", "b").await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.put("eve", &id, 2, "t", "b").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.put("ann", &id, 2, "", "b").await.status,
        StatusCode::BAD_REQUEST
    );
    let r = app
        .send(app.request(Method::DELETE, &format!("/documents/{id}"), Some("cat")))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    let r = app
        .send(app.request(Method::DELETE, &format!("/documents/{id}"), Some("ann")))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);

    let log = change_log(app.data_path());
    let names: Vec<&str> = log
        .iter()
        .map(|(_, r)| r["eventName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["INSERT", "MODIFY", "REMOVE"]);
    let seqs: Vec<u64> = log.iter().map(|(s, _)| *s).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "strictly increasing: {seqs:?}"
    );

    let (_, insert) = &log[0];
    assert_eq!(insert["eventSource"], "aws:dynamodb");
    assert_eq!(insert["dynamodb"]["StreamViewType"], "NEW_AND_OLD_IMAGES");
    assert_eq!(insert["dynamodb"]["Keys"], json!({"id": {"S": id}}));
    assert_eq!(insert["dynamodb"]["NewImage"]["version"], json!({"N": "1"}));
    assert_eq!(
        insert["dynamodb"]["NewImage"]["collaborators"],
        json!({"M": {"cat": {"S": "viewer"}}})
    );
    assert!(insert["dynamodb"].get("OldImage").is_none());
    assert!(insert["dynamodb"]["SizeBytes"].as_i64().unwrap() > 0);
    assert!(insert["dynamodb"]["ApproximateCreationDateTime"].is_number());
    assert!(!insert["eventID"].as_str().unwrap().is_empty());
    let seq_text = insert["dynamodb"]["SequenceNumber"].as_str().unwrap();
    assert_eq!(seq_text.parse::<u64>().unwrap(), log[0].0);

    let (_, modify) = &log[1];
    assert_eq!(modify["dynamodb"]["OldImage"]["body"], json!({"S": "b"}));
    assert_eq!(modify["dynamodb"]["NewImage"]["body"], json!({"S": "b2"}));
    assert_eq!(modify["dynamodb"]["NewImage"]["version"], json!({"N": "2"}));

    let (_, remove) = &log[2];
    assert!(remove["dynamodb"].get("NewImage").is_none());
    let old = &remove["dynamodb"]["OldImage"];
    assert_eq!(
        old["version"],
        json!({"N": "3"}),
        "the deletion is a version of its own"
    );
    assert_eq!(old["updatedBy"], json!({"S": "ann"}));
    assert_eq!(old["deleted"], json!({"BOOL": true}));
    assert_eq!(old["body"], json!({"S": "b2"}));

    // Records decode as the Lambda event type.
    for (_, record) in &log {
        let _: aws_lambda_events_record::EventRecord =
            serde_json::from_value(record.clone()).unwrap();
    }
}

#[tokio::test]
async fn concurrent_writes_each_get_exactly_one_record_in_commit_order() {
    let app = TestApp::spawn().await;
    let creates = (0..40).map(|i| {
        let app = &app;
        async move {
            app.create(
                &format!("user{}", i % 4),
                &format!("doc {i}"),
                "",
                json!({}),
            )
            .await
        }
    });
    let docs = futures_util::future::join_all(creates).await;
    let log = change_log(app.data_path());
    assert_eq!(log.len(), docs.len());
    let mut ids: Vec<&str> = log
        .iter()
        .map(|(_, r)| r["dynamodb"]["Keys"]["id"]["S"].as_str().unwrap())
        .collect();
    ids.sort();
    let mut created: Vec<&str> = docs.iter().map(|d| d["id"].as_str().unwrap()).collect();
    created.sort();
    assert_eq!(ids, created);
}

/// The stream record type the handler consumes.
mod aws_lambda_events_record {
    pub use shared::codec::StreamEventRecord as EventRecord;
}
