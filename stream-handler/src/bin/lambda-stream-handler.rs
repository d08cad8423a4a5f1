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

use std::sync::Arc;

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;
use shared::auth::TokenAuthority;
use shared::aws::{AwsClients, AwsConfig};
use shared::clock::{Clock, SystemClock};
use shared::ports::Notifier;
use stream_handler::sinks::Sink;
use stream_handler::sinks::analysis::AnalysisSink;
use stream_handler::sinks::audit::AuditSink;
use stream_handler::sinks::notifications::NotificationSink;
use stream_handler::sinks::search::SearchSink;
use stream_handler::{Fanout, HandlerConfig};
use websocket::apigateway::ApiGatewayOutbox;
use websocket::{ConnectionService, ServiceConfig, ServicePorts};

/// The notifier: the connection service's, pushing through API Gateway. It never
/// verifies a token, so it is given a throwaway secret rather than the real one.
fn live_notifier(clients: &AwsClients, clock: &Arc<dyn Clock>) -> Result<Arc<dyn Notifier>, Error> {
    let throwaway: [u8; 32] = rand::random();
    let service = ConnectionService::new(
        ServicePorts {
            registry: Arc::new(clients.connection_registry(Arc::clone(clock))),
            documents: Arc::new(clients.document_store()),
            audit: Arc::new(clients.audit_log()),
            outbox: Arc::new(ApiGatewayOutbox::new(clients.pusher()?)),
            tokens: TokenAuthority::new(&throwaway)?,
            clock: Arc::clone(clock),
        },
        ServiceConfig::default(),
    );
    Ok(Arc::new(service.notifier()))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init(shared::aws::config::log_format());
    let clients = AwsClients::load(AwsConfig::from_env()?).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let sinks: Vec<Arc<dyn Sink>> = vec![
        Arc::new(SearchSink::new(
            Arc::new(clients.search_index()?),
            Default::default(),
        )),
        Arc::new(NotificationSink::new(
            live_notifier(&clients, &clock)?,
            Default::default(),
        )),
        Arc::new(AuditSink::new(
            Arc::new(clients.audit_log()),
            Default::default(),
        )),
        Arc::new(AnalysisSink::new(
            Arc::new(clients.analysis_queue(Arc::clone(&clock))?),
            Default::default(),
        )),
    ];
    let dead_letters = Arc::new(clients.dead_letter_queue(Arc::clone(&clock))?);
    let fanout = Fanout::new(sinks, dead_letters, clock, HandlerConfig::default());
    let fanout = &fanout;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        Ok::<_, Error>(fanout.handle_event(&event.payload).await)
    }))
    .await
}
