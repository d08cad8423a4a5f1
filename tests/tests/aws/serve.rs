//! `docfan serve --backend aws`: the same binary an operator runs, pointed by
//! environment variables at DynamoDB, SQS and OpenSearch (here moto and the test node),
//! serves the REST contract on them.

use reqwest::StatusCode;
use serde_json::{Value, json};
use shared::aws::TableNames;
use shared::aws::tables::create_tables;
use tests::child::ChildServer;
use tests::token_for;

use crate::emulators::{REGION, create_queue, moto_endpoint, opensearch_url, sdk_config, unique};

#[tokio::test]
#[ignore = "needs moto and OpenSearch: run tests/run"]
async fn the_binary_serves_the_rest_api_on_the_aws_adapters() {
    let endpoint = moto_endpoint();
    let sdk = sdk_config(&endpoint).await;
    let tables = TableNames::with_prefix(&unique("serve"));
    create_tables(&aws_sdk_dynamodb::Client::new(&sdk), &tables)
        .await
        .expect("creating the tables in moto");
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let analysis_queue = create_queue(&sqs, &unique("analysis")).await;
    let dead_letters = create_queue(&sqs, &unique("dead-letters")).await;
    let index = unique("documents");
    let opensearch = opensearch_url();
    let env = [
        ("DOCFAN_BACKEND", "aws"),
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_REGION", REGION),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("DOCFAN_DOCUMENTS_TABLE", tables.documents.as_str()),
        ("DOCFAN_MEMBERS_TABLE", tables.members.as_str()),
        ("DOCFAN_VERSIONS_TABLE", tables.versions.as_str()),
        ("DOCFAN_CONNECTIONS_TABLE", tables.connections.as_str()),
        ("DOCFAN_SUBSCRIPTIONS_TABLE", tables.subscriptions.as_str()),
        ("DOCFAN_AUDIT_TABLE", tables.audit.as_str()),
        ("DOCFAN_ANALYSIS_TABLE", tables.analysis.as_str()),
        ("DOCFAN_ANALYSIS_QUEUE_URL", analysis_queue.as_str()),
        ("DOCFAN_DEAD_LETTER_QUEUE_URL", dead_letters.as_str()),
        ("DOCFAN_OPENSEARCH_URL", opensearch.as_str()),
        ("DOCFAN_OPENSEARCH_INDEX", index.as_str()),
    ];
    let dir = tempfile::tempdir().unwrap();
    let server = ChildServer::start_with_env(dir.path(), &env).await;

    let client = reqwest::Client::new();
    let ann = unique("ann");
    let created = client
        .post(format!("{}/documents", server.base))
        .bearer_auth(token_for(&ann))
        .json(&json!({"title": "On DynamoDB", "body": "served by docfan"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let doc: Value = created.json().await.unwrap();
    let id = doc["id"].as_str().unwrap();

    let listed: Value = client
        .get(format!("{}/documents", server.base))
        .bearer_auth(token_for(&ann))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"][0]["id"], id);
    let stale = client
        .put(format!("{}/documents/{id}", server.base))
        .bearer_auth(token_for(&ann))
        .header("If-Match", "\"7\"")
        .json(&json!({"title": "t", "body": "b"}))
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), StatusCode::PRECONDITION_FAILED);
    // Nothing was written to the data directory: the data lives in the tables.
    assert!(!dir.path().join(shared::embedded::DATABASE_FILE).exists());
    server.kill().await;
}
