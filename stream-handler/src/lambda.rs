//! One Lambda invocation of the stream-handler and analysis-worker functions, as their
//! entry points run it: the work, then the invocation's metrics flushed as CloudWatch
//! Embedded Metric Format lines ([`shared::metrics::emf`]) before the response goes
//! back. Kept apart from the entry points so that tests run the same path with a
//! writer they read.

use std::io::Write;

use aws_lambda_events::event::streams::DynamoDbEventResponse;
use serde_json::Value;
use shared::metrics::Emf;

use crate::analysis::AnalysisWorker;
use crate::decode::approximate_creation;
use crate::handler::Fanout;

/// The consumer label of a Lambda function's stream lag (its function is its
/// dimension).
const LAMBDA_CONSUMER: &str = "lambda";

/// Handles a stream event (`{"Records": [...]}`) and writes the invocation's metrics to
/// `out`: per sink the delivery attempts (`Delivered`, `Retried`, `Failed`), the
/// records dead-lettered for it and the mean latency; the records by outcome; and
/// `StreamLag`, the age of the batch's oldest record when it was handled.
pub async fn handle_stream_event(
    fanout: &Fanout,
    emf: &Emf,
    event: &Value,
    out: &mut impl Write,
) -> DynamoDbEventResponse {
    let records = event["Records"].as_array().map_or(&[][..], Vec::as_slice);
    let oldest = records
        .iter()
        .filter_map(|record| approximate_creation(&record["dynamodb"]))
        .min();
    let metrics = fanout.metrics();
    metrics.set_oldest_unprocessed(LAMBDA_CONSUMER, 0, oldest);
    let response = fanout.handle_event(event).await;
    if let Err(e) = emf.flush(&[metrics], out) {
        tracing::warn!(error = %e, "writing the invocation's metrics failed");
    }
    metrics.set_oldest_unprocessed(LAMBDA_CONSUMER, 0, None);
    response
}

/// Runs `worker` until its batch is done and writes the invocation's metrics (analysis
/// jobs by outcome) to `out`.
pub async fn run_analysis_batch(
    worker: &AnalysisWorker,
    emf: &Emf,
    out: &mut impl Write,
) -> shared::Result<()> {
    let ran = async {
        while !worker.run_once().await?.is_empty() {}
        Ok(())
    }
    .await;
    if let Err(e) = emf.flush(&[worker.metrics()], out) {
        tracing::warn!(error = %e, "writing the invocation's metrics failed");
    }
    ran
}
