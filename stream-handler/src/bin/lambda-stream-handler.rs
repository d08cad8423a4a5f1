//! The Lambda `stream-handler` function: the documents table's DynamoDB stream event
//! into the same handler as the embedded poller, returning `batchItemFailures`, with
//! every sink on its AWS adapter (OpenSearch, the DynamoDB audit table, the SQS
//! analysis queue, and notifications through the DynamoDB connection registry and
//! `post_to_connection`), and poison records sent whole to the SQS dead-letter queue.
//!
//! Environment: the AWS adapters' variables (see `shared::aws::config`: the connections,
//! subscriptions and audit tables, `DOCFAN_ANALYSIS_QUEUE_URL`,
//! `DOCFAN_DEAD_LETTER_QUEUE_URL`, `DOCFAN_OPENSEARCH_URL`, `DOCFAN_OPENSEARCH_INDEX`,
//! `DOCFAN_WEBSOCKET_ENDPOINT`); logs follow `RUST_LOG` and `DOCFAN_LOG_FORMAT`.

// A binary sees all of its package's dependencies; the library is where unused ones are caught.
#![allow(unused_crate_dependencies)]

use std::sync::Arc;

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;
use shared::aws::{AwsClients, AwsConfig};
use shared::clock::{Clock, SystemClock};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init(shared::aws::config::log_format());
    let clients = AwsClients::load(AwsConfig::from_env()?).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let notifier = Arc::new(websocket::apigateway::live_notifier(
        &clients,
        Arc::clone(&clock),
    )?);
    let fanout = stream_handler::aws::fanout(&clients, notifier, clock)?;
    let fanout = &fanout;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        Ok::<_, Error>(fanout.handle_event(&event.payload).await)
    }))
    .await
}
