//! The REST API on the AWS adapters (cargo feature `aws`): the same [`router`], with
//! the DynamoDB document store, OpenSearch, and the DynamoDB audit and analysis tables
//! instead of SQLite and tantivy. The Lambda `api` entry point builds
//! its app here, and so can a local server pointed at real tables or at emulators.
//!
//! It also holds the operator commands' AWS side: listing and redriving the SQS
//! dead-letter queue through the AWS sinks, and replaying the batches the stream
//! mappings gave up on from their on-failure metadata.
//!
//! Configuration is [`AwsConfig`]'s environment (see `shared::aws::config`) plus token
//! verification's (`shared::auth::env`: `DOCFAN_JWT_SECRET`, or an identity provider's
//! `DOCFAN_JWT_JWKS_URL`, with `DOCFAN_JWT_ISSUER`, `DOCFAN_JWT_AUDIENCE`…).
//!
//! [`router`]: crate::router

use std::sync::Arc;

use anyhow::Context;
use shared::auth::{TokenAuthority, TokenConfig};
use shared::aws::{AwsClients, AwsConfig};
use shared::clock::{Clock, SystemClock};
use shared::ports::{DeadLetter, DeadLetterQueue, DocumentStore, SearchIndex};
use shared::service::{DocumentService, ReadService};
use stream_handler::Fanout;
use stream_handler::redrive::{self, RedriveOutcome};
use stream_handler::sinks::notifications::NoSubscribers;

use super::serve::App;
use crate::http::rate_limit::{RateLimit, UserRateLimiter};
use crate::state::AppState;

impl App {
    /// Wires the router over clients that are already built.
    pub async fn build_aws(
        clients: &AwsClients,
        tokens: TokenConfig,
        rate_limit: RateLimit,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        let tokens = Arc::new(TokenAuthority::start(tokens, clock.now()).await?);
        let store: Arc<dyn DocumentStore> = Arc::new(clients.document_store());
        let documents = DocumentService::new(Arc::clone(&store), Arc::clone(&clock));
        // Without `DOCFAN_OPENSEARCH_URL`, search answers 503; history and analysis
        // need only their tables.
        let search = clients
            .search_index()
            .ok()
            .map(|search| Arc::new(search) as Arc<dyn SearchIndex>);
        let reads = ReadService::new(
            store,
            Arc::new(clients.audit_log()),
            Arc::new(clients.analysis_store()),
            search,
        );
        let state = AppState {
            documents,
            tokens,
            clock: Arc::clone(&clock),
            metrics: shared::metrics::Metrics::new(),
            reads,
            rate_limit: Arc::new(UserRateLimiter::new(rate_limit)),
        };
        Ok(Self::from_router(crate::router(state), clock))
    }

    /// Reads the AWS configuration and token verification's from the environment,
    /// builds every client once and wires the router with `rate_limit` per user (the
    /// Lambda function's is [`RateLimit::from_env`]).
    pub async fn from_aws_env(rate_limit: RateLimit) -> anyhow::Result<Self> {
        let tokens = TokenConfig::from_env_without_data_dir()?;
        let config = AwsConfig::from_env()?;
        let clients = AwsClients::load(config).await?;
        Self::build_aws(&clients, tokens, rate_limit, Arc::new(SystemClock)).await
    }
}

/// The fan-out on the AWS adapters for operator commands: every sink but live
/// notifications (redriven changes notify no one, as in the embedded mode; clients
/// catch up from the history on their next subscribe).
pub fn operator_fanout(clients: &AwsClients, clock: Arc<dyn Clock>) -> anyhow::Result<Fanout> {
    stream_handler::aws::fanout(clients, Arc::new(NoSubscribers), clock)
}

/// `docfan dlq list` on AWS: up to `limit` letters of the SQS dead-letter queue,
/// oldest first.
pub async fn list_dead_letters(
    clients: &AwsClients,
    limit: usize,
) -> anyhow::Result<Vec<DeadLetter>> {
    let dlq = clients.dead_letter_queue(Arc::new(SystemClock))?;
    Ok(dlq.list(limit).await?)
}

/// `docfan dlq redrive` on AWS: handles the letters (all, or the one with id `only`)
/// again through the AWS sinks; those that succeed leave the queue.
pub async fn redrive_dead_letters(
    clients: &AwsClients,
    only: Option<&str>,
) -> anyhow::Result<Vec<RedriveOutcome>> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let fanout = operator_fanout(clients, Arc::clone(&clock))?;
    let queue = clients.analysis_queue(Arc::clone(&clock))?;
    let dlq = clients.dead_letter_queue(clock)?;
    Ok(redrive::redrive(&fanout, &queue, &dlq, only).await?)
}

/// What became of one batch the stream mapping gave up on.
#[derive(Debug)]
pub struct ReplayOutcome {
    /// The on-failure message's id.
    pub message: String,
    /// How many records were handled again, or why the batch is still waiting (its
    /// message stays in the queue, and shows again after its visibility timeout).
    pub result: Result<usize, String>,
}

/// `docfan dlq replay` on AWS: reads each message of the stream mappings' on-failure
/// queue (`DOCFAN_STREAM_FAILURE_QUEUE_URL`: batch metadata only), reads the batch's
/// records back from the stream while it holds them (24 hours), and hands them to the
/// same fan-out as `redrive` (no notifications). A batch whose every record is handled
/// (delivered, or dead-lettered whole as poison) leaves the queue.
pub async fn replay_failed_batches(clients: &AwsClients) -> anyhow::Result<Vec<ReplayOutcome>> {
    use shared::aws::stream_replay::StreamReader;

    let queue = clients
        .config
        .stream_failure_queue_url
        .clone()
        .context("DOCFAN_STREAM_FAILURE_QUEUE_URL must name the stream mappings' on-failure queue (the stack's output StreamFailureQueueUrl)")?;
    let fanout = operator_fanout(clients, Arc::new(SystemClock))?;
    let reader = StreamReader::new(clients.streams.clone());
    let mut outcomes = Vec::new();
    let mut seen = std::collections::HashSet::new();
    loop {
        let received = clients
            .sqs
            .receive_message()
            .queue_url(&queue)
            .max_number_of_messages(10)
            // Long enough to read a batch back and hand it over; a message left in the
            // queue shows again after it.
            .visibility_timeout(120)
            .send()
            .await
            .context("reading the on-failure queue")?;
        let messages = received.messages.unwrap_or_default();
        if messages.is_empty() {
            return Ok(outcomes);
        }
        for message in messages {
            let id = message.message_id.clone().unwrap_or_default();
            if !seen.insert(id.clone()) {
                return Ok(outcomes);
            }
            let result = replay_one(&reader, &fanout, message.body.as_deref().unwrap_or("")).await;
            if result.is_ok()
                && let Some(receipt) = &message.receipt_handle
            {
                clients
                    .sqs
                    .delete_message()
                    .queue_url(&queue)
                    .receipt_handle(receipt)
                    .send()
                    .await
                    .context("removing a replayed batch from the on-failure queue")?;
            }
            outcomes.push(ReplayOutcome {
                message: id,
                result,
            });
        }
    }
}

async fn replay_one(
    reader: &shared::aws::stream_replay::StreamReader,
    fanout: &Fanout,
    body: &str,
) -> Result<usize, String> {
    let batch = shared::aws::stream_replay::FailedBatch::parse(body)
        .map_err(|e| format!("not an on-failure message of a stream mapping: {e}"))?;
    tracing::info!(
        shard = %batch.shard_id,
        from = %batch.start_sequence_number,
        to = %batch.end_sequence_number,
        condition = batch.condition.as_deref().unwrap_or("unknown"),
        "replaying a batch the stream mapping gave up on"
    );
    let records = match reader.records(&batch).await {
        Ok(records) => records,
        Err(shared::Error::NotFound) => {
            return Err(format!(
                "the stream no longer holds sequence numbers {}..={} of {} (past its 24 hours)",
                batch.start_sequence_number, batch.end_sequence_number, batch.shard_id
            ));
        }
        Err(e) => return Err(format!("reading the batch back: {e}")),
    };
    let report = fanout
        .handle_detailed(&records, stream_handler::sinks::Flush::Now)
        .await;
    match report.outcome() {
        stream_handler::BatchOutcome::Succeeded => Ok(records.len()),
        stream_handler::BatchOutcome::FailedFrom { seq, reason } => {
            Err(format!("record {seq} still fails: {reason}"))
        }
        stream_handler::BatchOutcome::WholeBatchFailed { reason } => {
            Err(format!("the batch still fails: {reason}"))
        }
    }
}
