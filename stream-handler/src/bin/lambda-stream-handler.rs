//! The Lambda stream-handler functions: the documents table's DynamoDB stream event
//! into the same handler as the embedded poller, returning `batchItemFailures`, as one
//! of the stream's two consumers (`DOCFAN_STREAM_CONSUMER`, each with its own event
//! source mapping, as on one machine):
//!
//! - `index`: OpenSearch, the DynamoDB audit table, the SQS analysis queue and, when
//!   `DOCFAN_EVENT_BUS_NAME` is set, the EventBridge bus (every change as an event for
//!   other consumers), with poison records sent whole to the SQS dead-letter queue;
//! - `live`: notifications through the DynamoDB connection registry and
//!   `post_to_connection`, with no batching window, so a frame never waits for the
//!   index sinks; what it cannot deliver it logs and drops.
//!
//! Environment: `DOCFAN_STREAM_CONSUMER` (required); for `index`, also required,
//! `DOCFAN_STREAM_MAX_RETRIES` and `DOCFAN_STREAM_MAX_RECORD_AGE_SECS`, below the
//! mapping's own limits, at which it dead-letters a record that keeps failing
//! (`stream_handler::give_up`, counting attempts in `DOCFAN_ATTEMPTS_TABLE`); the AWS
//! adapters' variables (see
//! `shared::aws::config`: the versions table for long bodies; for `index` the audit
//! table, `DOCFAN_ANALYSIS_QUEUE_URL`, `DOCFAN_DEAD_LETTER_QUEUE_URL`,
//! `DOCFAN_OPENSEARCH_URL`, `DOCFAN_OPENSEARCH_INDEX` and optionally
//! `DOCFAN_EVENT_BUS_NAME` (a bus name or ARN; a malformed one stops the function at
//! start); for `live` the connections and subscriptions tables and
//! `DOCFAN_WEBSOCKET_ENDPOINT`); logs follow `RUST_LOG` and `DOCFAN_LOG_FORMAT`. Each
//! invocation ends with its metrics as CloudWatch EMF lines on stdout, in namespace
//! `DOCFAN_METRICS_NAMESPACE` (default `docfan`; `stream_handler::lambda`). With
//! active tracing (`AWS_XRAY_DAEMON_ADDRESS`), each sampled invocation sends one X-Ray
//! subsegment per sink (`stream_handler::xray`).

// A binary sees all of its package's dependencies; the library is where unused ones are caught.
#![allow(unused_crate_dependencies)]

use std::sync::Arc;

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;
use shared::aws::{AwsClients, AwsConfig};
use shared::clock::{Clock, SystemClock};
use shared::metrics::Emf;
use shared::ports::Notifier;
use stream_handler::aws::Consumer;
use stream_handler::lambda::handle_stream_event;
use stream_handler::sinks::notifications::NoSubscribers;
use stream_handler::xray::SinkTrace;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init(shared::aws::config::log_format());
    let consumer = Consumer::from_env()?;
    shared::aws::config::require(match consumer {
        Consumer::Live => shared::aws::config::required::LIVE_CONSUMER,
        Consumer::Index(_) => shared::aws::config::required::INDEX_CONSUMER,
    })?;
    let clients = AwsClients::load(AwsConfig::from_env()?).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let notifier: Arc<dyn Notifier> = match consumer {
        Consumer::Live => Arc::new(clients.notifier(Arc::clone(&clock))?),
        Consumer::Index(_) => Arc::new(NoSubscribers),
    };
    let trace = SinkTrace::from_env()?;
    let fanout = stream_handler::aws::traced_consumer_fanout(
        &clients,
        notifier,
        clock,
        consumer,
        trace.as_ref(),
    )?;
    let emf = Emf::from_env("stream-handler");
    let (fanout, trace, emf) = (&fanout, &trace, &emf);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let response =
            handle_stream_event(fanout, emf, &event.payload, &mut std::io::stdout()).await;
        if let Some(trace) = trace {
            trace.finish(event.context.xray_trace_id.as_deref());
        }
        Ok::<_, Error>(response)
    }))
    .await
}
