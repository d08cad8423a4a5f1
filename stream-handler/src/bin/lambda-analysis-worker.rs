//! The Lambda `analysis-worker` function: SQS events of analysis jobs into the same
//! worker as the embedded one, results into the DynamoDB analysis table,
//! `analysis.completed` pushed to subscribers, and a partial batch response naming
//! the messages to retry (the queue's redrive policy parks them after
//! `maxReceiveCount` receives).
//!
//! Environment: the AWS adapters' variables (see `shared::aws::config`: the documents,
//! analysis, connections and subscriptions tables, `DOCFAN_WEBSOCKET_ENDPOINT`, and
//! optionally `DOCFAN_DEAD_LETTER_QUEUE_URL` to dead-letter jobs with their reason
//! instead); logs follow `RUST_LOG` and `DOCFAN_LOG_FORMAT`.

// A binary sees all of its package's dependencies; the library is where unused ones are caught.
#![allow(unused_crate_dependencies)]

use std::sync::Arc;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use shared::aws::analysis_queue::SqsEventBatch;
use shared::aws::{AwsClients, AwsConfig};
use shared::clock::{Clock, SystemClock};
use shared::ports::{AnalysisStore, DeadLetterQueue, DocumentStore, Notifier};
use stream_handler::analysis::{AnalysisWorker, AnalysisWorkerConfig};

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
    let (analyses, documents, notifier, dead_letters, clock) =
        (&analyses, &documents, &notifier, &dead_letters, &clock);
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
        );
        while !worker.run_once().await?.is_empty() {}
        Ok::<SqsBatchResponse, Error>(batch.response())
    }))
    .await
}
