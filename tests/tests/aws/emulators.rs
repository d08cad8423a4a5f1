//! The emulators' endpoints and per-test resources: every test makes its own tables,
//! queues and index (named with a random suffix), so tests run in parallel against one
//! moto and one OpenSearch.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_eventbridge::types::Target;
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::Value;
use shared::aws::tables::create_tables;
use shared::aws::{AwsClients, AwsConfig, OpenSearchConfig, TableNames};

/// moto's endpoint, from `tests/emulators/moto.start`.
pub fn moto_endpoint() -> String {
    std::env::var("DOCFAN_TEST_AWS_ENDPOINT").unwrap_or_else(|_| {
        panic!(
            "DOCFAN_TEST_AWS_ENDPOINT is not set: start moto with `bash tests/emulators/moto.start ENV_FILE` \
             and source ENV_FILE (tests/run does both)"
        )
    })
}

/// OpenSearch's URL, from `tests/emulators/opensearch.start`.
pub fn opensearch_url() -> String {
    std::env::var("DOCFAN_TEST_OPENSEARCH_URL").unwrap_or_else(|_| {
        panic!(
            "DOCFAN_TEST_OPENSEARCH_URL is not set: start OpenSearch with \
             `bash tests/emulators/opensearch.start ENV_FILE` and source ENV_FILE (tests/run does both)"
        )
    })
}

/// `prefix-` and 12 random hex digits.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

pub const REGION: &str = "us-east-1";

/// The SDK configuration for moto: static credentials, a fixed region, moto's endpoint.
pub async fn sdk_config(endpoint: &str) -> SdkConfig {
    sdk_config_as(endpoint, "testing", "testing").await
}

/// The SDK configuration for `endpoint` with these static credentials.
pub async fn sdk_config_as(endpoint: &str, access_key: &str, secret_key: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            access_key,
            secret_key,
            None,
            None,
            "docfan-tests",
        ))
        .load()
        .await
}

/// What a test wants made.
#[derive(Debug, Clone, Copy, Default)]
pub struct Wants {
    pub search: bool,
    /// A Management API endpoint (a recording server) instead of moto's.
    pub websocket_endpoint: Option<&'static str>,
}

/// Every AWS client over fresh tables, queues and (if wanted) a fresh index.
pub async fn aws(wants: Wants) -> AwsClients {
    aws_with_endpoint(wants, None).await
}

pub async fn aws_with_endpoint(wants: Wants, websocket_endpoint: Option<String>) -> AwsClients {
    let search = wants.search.then(opensearch_url);
    aws_on(wants, websocket_endpoint, search).await
}

/// Every AWS client over fresh tables and queues, searching a fresh index on the
/// OpenSearch node at `url` (a node of the test's own).
pub async fn aws_on_opensearch(url: &str) -> AwsClients {
    aws_on(Wants::default(), None, Some(url.to_owned())).await
}

async fn aws_on(
    wants: Wants,
    websocket_endpoint: Option<String>,
    opensearch: Option<String>,
) -> AwsClients {
    let endpoint = moto_endpoint();
    let sdk = sdk_config(&endpoint).await;
    aws_with_sdk(
        endpoint,
        sdk,
        websocket_endpoint.or(wants.websocket_endpoint.map(str::to_owned)),
        opensearch,
    )
    .await
}

/// Every AWS client over fresh tables and queues made through `sdk` on the moto server
/// at `endpoint`, searching a fresh index on the OpenSearch node at `opensearch`.
pub async fn aws_with_sdk(
    endpoint: String,
    sdk: SdkConfig,
    websocket_endpoint: Option<String>,
    opensearch: Option<String>,
) -> AwsClients {
    let tables = TableNames::with_prefix(&unique("t"));
    create_tables(&aws_sdk_dynamodb::Client::new(&sdk), &tables)
        .await
        .expect("creating the tables in moto");
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let mut config = AwsConfig {
        region: Some(REGION.into()),
        endpoint_url: Some(endpoint),
        tables,
        analysis_queue_url: Some(create_queue(&sqs, &unique("analysis")).await),
        dead_letter_queue_url: Some(create_queue(&sqs, &unique("dead-letters")).await),
        websocket_endpoint,
        ..AwsConfig::default()
    };
    if let Some(url) = opensearch {
        config.opensearch = Some(OpenSearchConfig {
            url,
            index: unique("documents"),
            sign: false,
            service: "es".into(),
            // Searched right after a flush.
            wait_for_refresh: true,
        });
    }
    AwsClients::from_sdk_config(config, sdk).expect("the clients build")
}

pub async fn create_queue(sqs: &aws_sdk_sqs::Client, name: &str) -> String {
    sqs.create_queue()
        .queue_name(name)
        .send()
        .await
        .expect("creating a queue in moto")
        .queue_url
        .expect("a queue URL")
}

/// A bus of the test's own.
pub async fn create_bus(eventbridge: &aws_sdk_eventbridge::Client) -> String {
    let bus = unique("docfan-events");
    eventbridge
        .create_event_bus()
        .name(&bus)
        .send()
        .await
        .expect("creating the bus");
    bus
}

/// A rule on `bus` with `pattern`, targeting a fresh queue; returns the queue's URL.
pub async fn rule_to_queue(
    eventbridge: &aws_sdk_eventbridge::Client,
    sqs: &aws_sdk_sqs::Client,
    bus: &str,
    name: &str,
    pattern: Value,
) -> String {
    let queue_url = create_queue(sqs, &unique(name)).await;
    let queue_arn = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .expect("a queue ARN");
    eventbridge
        .put_rule()
        .name(name)
        .event_bus_name(bus)
        .event_pattern(pattern.to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("moto refused the pattern {pattern}: {e:?}"));
    eventbridge
        .put_targets()
        .rule(name)
        .event_bus_name(bus)
        .targets(
            Target::builder()
                .id("queue")
                .arn(queue_arn)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("targeting the queue");
    queue_url
}

/// Every message on the queue, as JSON, deleted once read.
pub async fn drain(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> Vec<Value> {
    let mut bodies = Vec::new();
    loop {
        let messages = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(0)
            .send()
            .await
            .unwrap()
            .messages
            .unwrap_or_default();
        if messages.is_empty() {
            return bodies;
        }
        for message in messages {
            bodies.push(serde_json::from_str(message.body().unwrap()).unwrap());
            sqs.delete_message()
                .queue_url(queue_url)
                .receipt_handle(message.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
}

/// A loopback address with nothing listening on it: a service that is down.
pub fn closed_endpoint() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

/// How many audit entries the document has.
pub async fn audit_count(clients: &AwsClients, document: &shared::domain::DocumentId) -> usize {
    use shared::ports::AuditLog;
    clients
        .audit_log()
        .list(document, None, 100)
        .await
        .unwrap()
        .len()
}
