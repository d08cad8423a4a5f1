//! The Lambda `analysis-worker` function: SQS events of analysis jobs into the same
//! worker as the embedded one, results into the DynamoDB analysis table,
//! `analysis.completed` pushed to subscribers, and a partial batch response naming
//! the messages to retry (the queue's redrive policy parks them after
//! `maxReceiveCount` receives).
//!
//! Environment: the AWS adapters' variables (see `shared::aws::config`: the documents,
//! analysis, connections and subscriptions tables, `DOCFAN_WEBSOCKET_ENDPOINT`, and
//! optionally `DOCFAN_DEAD_LETTER_QUEUE_URL` to dead-letter jobs with their reason
//! instead); logs follow `RUST_LOG` and `DOCFAN_LOG_FORMAT`. Each invocation ends with
//! its analysis jobs by outcome as CloudWatch EMF lines on stdout, in namespace
//! `DOCFAN_METRICS_NAMESPACE` (default `docfan`).

// A binary sees all of its package's dependencies; the library is where unused ones are caught.
#![allow(unused_crate_dependencies)]

use std::sync::Arc;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use shared::aws::analysis_queue::SqsEventBatch;
use shared::aws::{AwsClients, AwsConfig};
use shared::clock::{Clock, SystemClock};
use shared::metrics::{Emf, FanoutMetrics};
use shared::ports::{AnalysisStore, DeadLetterQueue, DocumentStore, Notifier};
use stream_handler::analysis::{AnalysisWorker, AnalysisWorkerConfig};
use stream_handler::lambda::run_analysis_batch;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init(shared::aws::config::log_format());
    shared::aws::config::require(shared::aws::config::required::ANALYSIS_WORKER)?;
    let clients = AwsClients::load(AwsConfig::from_env()?).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let dead_letters: Option<Arc<dyn DeadLetterQueue>> = match clients.config.dead_letter_queue_url
    {
        Some(_) => Some(Arc::new(clients.dead_letter_queue(Arc::clone(&clock))?)),
        None => None,
    };
    let analyses: Arc<dyn AnalysisStore> = Arc::new(clients.analysis_store());
    let documents: Arc<dyn DocumentStore> = Arc::new(clients.document_store());
    let notifier: Arc<dyn Notifier> = Arc::new(clients.notifier(Arc::clone(&clock))?);
    // Kept across invocations: each one's EMF lines hold its own counts (deltas).
    let metrics = FanoutMetrics::default();
    let emf = Emf::from_env("analysis-worker");
    let (analyses, documents, notifier, dead_letters, clock, metrics, emf) = (
        &analyses,
        &documents,
        &notifier,
        &dead_letters,
        &clock,
        &metrics,
        &emf,
    );
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let batch = Arc::new(SqsEventBatch::new(
            &event.payload,
            dead_letters.clone(),
            Arc::clone(clock),
        ));
        let worker = AnalysisWorker::new(
            batch.clone(),
            Arc::clone(analyses),
            Arc::clone(documents),
            Arc::clone(notifier),
            Arc::clone(clock),
            AnalysisWorkerConfig::default(),
        )
        .with_metrics(metrics.clone());
        run_analysis_batch(&worker, emf, &mut std::io::stdout()).await?;
        Ok::<SqsBatchResponse, Error>(batch.response())
    }))
    .await
}
