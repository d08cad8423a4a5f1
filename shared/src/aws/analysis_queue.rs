//! The [`AnalysisQueue`] on SQS.
//!
//! A standard queue, not FIFO. Deduplication by (document, version) is the consumer's:
//! the worker skips a job whose version is no longer the document's current one, and
//! the result store only accepts a version newer than the one it holds, so a duplicate
//! or reordered job costs at most one redundant analysis and never a wrong result. A
//! FIFO queue would not remove that check (its deduplication window is five minutes,
//! while the stream may redeliver a change later, and redrives requeue on purpose), and
//! it would cap throughput and hold a document's later jobs behind a failing one. So
//! `enqueue` always sends and reports `Applied`: unlike the embedded queue, it does not
//! remember the newest version enqueued of each document, nor fold a document's waiting
//! jobs into one.
//!
//! In Lambda the event source mapping receives the messages: [`SqsEventBatch`] is the
//! queue as the worker sees it during one invocation, and makes its partial batch
//! response.
//!
//! A job's receipt is the SQS receipt handle. `dead_letter` moves the job, with its
//! reason, to the dead-letter queue (the same one the stream handler uses, as the
//! embedded queue does) and deletes it; without a dead-letter queue configured, or for
//! a receipt this process did not receive, it makes the message visible again so the
//! queue's own redrive policy (`maxReceiveCount`) parks it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{
    BatchResultErrorEntry, DeleteMessageBatchRequestEntry, MessageSystemAttributeName,
    SendMessageBatchRequestEntry,
};

use super::dead_letter::{SQS_BATCH_ENTRIES, queue_depth};
use super::errors::{build_error, sdk_error};
use crate::clock::Clock;
use crate::ports::{
    AnalysisJob, AnalysisQueue, DeadLetter, DeadLetterQueue, DeadLetterSource, ReceivedJob,
    WriteOutcome,
};
use crate::{Error, Result};

/// Received jobs remembered for `dead_letter`, at most (older ones are forgotten; their
/// messages then fall back to the queue's redrive policy).
const REMEMBERED_RECEIPTS: usize = 10_000;

/// Analysis jobs in an SQS standard queue.
pub struct SqsAnalysisQueue {
    client: Client,
    url: String,
    dead_letters: Option<Arc<dyn DeadLetterQueue>>,
    clock: Arc<dyn Clock>,
    received: Mutex<HashMap<String, (AnalysisJob, u32)>>,
}

impl std::fmt::Debug for SqsAnalysisQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqsAnalysisQueue")
            .field("url", &self.url)
            .finish()
    }
}

impl SqsAnalysisQueue {
    pub fn new(
        client: Client,
        url: &str,
        dead_letters: Option<Arc<dyn DeadLetterQueue>>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            client,
            url: url.to_owned(),
            dead_letters,
            clock,
            received: Mutex::new(HashMap::new()),
        }
    }

    fn remember(&self, receipt: &str, job: &AnalysisJob, attempts: u32) {
        let mut received = self.received.lock().expect("receipts lock");
        if received.len() >= REMEMBERED_RECEIPTS {
            received.clear();
        }
        received.insert(receipt.to_owned(), (job.clone(), attempts));
    }

    async fn send(&self, job: &AnalysisJob) -> Result<()> {
        let body = serde_json::to_string(job).map_err(|e| Error::Unknown(e.into()))?;
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .send()
            .await
            .map_err(|e| sdk_error("SendMessage", e))?;
        Ok(())
    }

    async fn delete(&self, receipt: &str) -> Result<()> {
        self.client
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .send()
            .await
            .map_err(|e| sdk_error("DeleteMessage", e))?;
        self.received.lock().expect("receipts lock").remove(receipt);
        Ok(())
    }
}

/// A batch call's entries that failed, as one error naming each (`Unavailable`: the
/// caller retries the whole batch, and a job sent twice costs at most one redundant
/// analysis).
fn batch_failures(what: &str, failed: &[BatchResultErrorEntry]) -> Result<()> {
    if failed.is_empty() {
        return Ok(());
    }
    let each: Vec<String> = failed
        .iter()
        .map(|f| {
            format!(
                "entry {}: {}{}",
                f.id(),
                f.code(),
                f.message().map(|m| format!(" ({m})")).unwrap_or_default()
            )
        })
        .collect();
    Err(Error::Unavailable(format!(
        "{what}: {} entries failed: {}",
        failed.len(),
        each.join("; ")
    )))
}

fn parse_job(body: &str) -> Result<AnalysisJob> {
    serde_json::from_str(body)
        .map_err(|e| Error::invalid("body", format!("not an analysis job: {e}")))
}

fn seconds(duration: Duration) -> i32 {
    duration.as_secs_f64().ceil().clamp(0.0, 43_200.0) as i32
}

#[async_trait]
impl AnalysisQueue for SqsAnalysisQueue {
    async fn enqueue(&self, job: &AnalysisJob) -> Result<WriteOutcome> {
        self.send(job).await?;
        Ok(WriteOutcome::Applied)
    }

    /// Ten jobs a call (`SendMessageBatch`).
    async fn enqueue_all(&self, jobs: &[AnalysisJob]) -> Result<()> {
        for chunk in jobs.chunks(SQS_BATCH_ENTRIES) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, job)| {
                    let body = serde_json::to_string(job).map_err(|e| Error::Unknown(e.into()))?;
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(body)
                        .build()
                        .map_err(|e| build_error("an analysis job's message", e))
                })
                .collect::<Result<Vec<_>>>()?;
            let out = self
                .client
                .send_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| sdk_error("SendMessageBatch", e))?;
            batch_failures("SendMessageBatch", out.failed())?;
        }
        Ok(())
    }

    async fn requeue(&self, job: &AnalysisJob) -> Result<()> {
        self.send(job).await
    }

    async fn receive(&self, max: usize, visibility: Duration) -> Result<Vec<ReceivedJob>> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max.clamp(1, 10) as i32)
            .visibility_timeout(seconds(visibility))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|e| sdk_error("ReceiveMessage", e))?;
        let mut jobs = Vec::new();
        for message in out.messages.unwrap_or_default() {
            let Some(receipt) = message.receipt_handle else {
                continue;
            };
            let attempts = message
                .attributes
                .as_ref()
                .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                .and_then(|n| n.parse().ok())
                .unwrap_or(1);
            match parse_job(message.body.as_deref().unwrap_or("")) {
                Ok(job) => {
                    self.remember(&receipt, &job, attempts);
                    jobs.push(ReceivedJob {
                        job,
                        receipt,
                        attempts,
                    });
                }
                Err(e) => {
                    // Left for the queue's redrive policy to park.
                    tracing::error!(message_id = message.message_id.as_deref().unwrap_or(""), error = %e, "not an analysis job");
                }
            }
        }
        Ok(jobs)
    }

    async fn ack(&self, receipt: &str) -> Result<()> {
        self.delete(receipt).await
    }

    /// Ten receipts a call (`DeleteMessageBatch`).
    async fn ack_all(&self, receipts: &[String]) -> Result<()> {
        for chunk in receipts.chunks(SQS_BATCH_ENTRIES) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, receipt)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(receipt)
                        .build()
                        .map_err(|e| build_error("a message deletion", e))
                })
                .collect::<Result<Vec<_>>>()?;
            let out = self
                .client
                .delete_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| sdk_error("DeleteMessageBatch", e))?;
            let mut received = self.received.lock().expect("receipts lock");
            for done in out.successful() {
                if let Some(receipt) = done.id().parse::<usize>().ok().and_then(|i| chunk.get(i)) {
                    received.remove(receipt);
                }
            }
            drop(received);
            batch_failures("DeleteMessageBatch", out.failed())?;
        }
        Ok(())
    }

    async fn dead_letter(&self, receipt: &str, reason: &str) -> Result<()> {
        let known = self
            .received
            .lock()
            .expect("receipts lock")
            .get(receipt)
            .cloned();
        match (&self.dead_letters, known) {
            (Some(dead_letters), Some((job, attempts))) => {
                let letter = DeadLetter {
                    id: String::new(),
                    source: DeadLetterSource::Analysis,
                    payload: serde_json::to_value(&job).map_err(|e| Error::Unknown(e.into()))?,
                    reason: reason.to_owned(),
                    attempts,
                    failed_at: self.clock.now(),
                };
                dead_letters.put(&letter).await?;
                self.delete(receipt).await
            }
            _ => {
                self.client
                    .change_message_visibility()
                    .queue_url(&self.url)
                    .receipt_handle(receipt)
                    .visibility_timeout(0)
                    .send()
                    .await
                    .map_err(|e| sdk_error("ChangeMessageVisibility", e))?;
                Ok(())
            }
        }
    }

    async fn depth(&self) -> Result<u64> {
        queue_depth(&self.client, &self.url).await
    }
}

/// One Lambda invocation's SQS messages, as the [`AnalysisQueue`] the worker takes jobs
/// from. The event source mapping received the messages and deletes every one the
/// invocation does not report as failed, so:
///
/// - `receive` hands out the event's jobs, once;
/// - `ack` marks a message done (nothing to call: Lambda deletes it);
/// - `dead_letter` puts the job, with its reason, on the dead-letter queue and marks
///   it done; without a dead-letter queue it leaves the message failed, for the
///   queue's redrive policy (`maxReceiveCount`) to park;
/// - [`response`](SqsEventBatch::response) reports every message not done — failed
///   jobs, and messages that are not jobs at all.
///
/// The batch never sends to the analysis queue (`enqueue` and `requeue` are refused),
/// so the worker function needs no queue URL.
pub struct SqsEventBatch {
    pending: Mutex<Vec<ReceivedJob>>,
    /// Message id, job and receive count by receipt handle.
    received: HashMap<String, (String, AnalysisJob, u32)>,
    /// Every message id, in the event's order.
    message_ids: Vec<String>,
    done: Mutex<std::collections::HashSet<String>>,
    dead_letters: Option<Arc<dyn DeadLetterQueue>>,
    clock: Arc<dyn Clock>,
}

impl SqsEventBatch {
    pub fn new(
        event: &SqsEvent,
        dead_letters: Option<Arc<dyn DeadLetterQueue>>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let mut pending = Vec::new();
        let mut received = HashMap::new();
        let mut message_ids = Vec::new();
        for message in &event.records {
            let id = message.message_id.clone().unwrap_or_default();
            message_ids.push(id.clone());
            let job = parse_job(message.body.as_deref().unwrap_or(""));
            match (job, message.receipt_handle.clone()) {
                (Ok(job), Some(receipt)) => {
                    let attempts = message
                        .attributes
                        .get("ApproximateReceiveCount")
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(1);
                    received.insert(receipt.clone(), (id, job.clone(), attempts));
                    pending.push(ReceivedJob {
                        job,
                        receipt,
                        attempts,
                    });
                }
                (Err(e), _) => tracing::error!(message_id = %id, error = %e, "not an analysis job"),
                (_, None) => {
                    tracing::error!(message_id = %id, "a message without a receipt handle")
                }
            }
        }
        Self {
            pending: Mutex::new(pending),
            received,
            message_ids,
            done: Mutex::new(Default::default()),
            dead_letters,
            clock,
        }
    }

    /// The ids of the messages to report failed (Lambda returns them to the queue).
    pub fn failures(&self) -> Vec<String> {
        let done = self.done.lock().expect("batch lock");
        self.message_ids
            .iter()
            .filter(|id| !done.contains(*id))
            .cloned()
            .collect()
    }

    /// The partial batch response of the invocation.
    pub fn response(&self) -> SqsBatchResponse {
        let mut response = SqsBatchResponse::default();
        response.batch_item_failures = self
            .failures()
            .into_iter()
            .map(|id| {
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = id;
                failure
            })
            .collect();
        response
    }

    fn finish(&self, receipt: &str) -> Result<()> {
        let (id, _, _) = self
            .received
            .get(receipt)
            .ok_or_else(|| Error::invalid("receipt", "not a message of this event"))?;
        self.done.lock().expect("batch lock").insert(id.clone());
        Ok(())
    }
}

#[async_trait]
impl AnalysisQueue for SqsEventBatch {
    async fn enqueue(&self, _job: &AnalysisJob) -> Result<WriteOutcome> {
        Err(Error::Unknown(anyhow::anyhow!(
            "an SQS event batch does not enqueue"
        )))
    }

    async fn requeue(&self, _job: &AnalysisJob) -> Result<()> {
        Err(Error::Unknown(anyhow::anyhow!(
            "an SQS event batch does not enqueue"
        )))
    }

    /// The event's jobs not handed out yet, up to `max`; their visibility timeout is
    /// the queue's own (the event source mapping received them).
    async fn receive(&self, max: usize, _visibility: Duration) -> Result<Vec<ReceivedJob>> {
        let mut pending = self.pending.lock().expect("batch lock");
        let take = max.min(pending.len());
        Ok(pending.drain(..take).collect())
    }

    async fn ack(&self, receipt: &str) -> Result<()> {
        self.finish(receipt)
    }

    async fn dead_letter(&self, receipt: &str, reason: &str) -> Result<()> {
        let Some(dead_letters) = &self.dead_letters else {
            // Reported failed: the queue's redrive policy parks it.
            return Ok(());
        };
        let (_, job, attempts) = self
            .received
            .get(receipt)
            .ok_or_else(|| Error::invalid("receipt", "not a message of this event"))?;
        let letter = DeadLetter {
            id: String::new(),
            source: DeadLetterSource::Analysis,
            payload: serde_json::to_value(job).map_err(|e| Error::Unknown(e.into()))?,
            reason: reason.to_owned(),
            attempts: *attempts,
            failed_at: self.clock.now(),
        };
        dead_letters.put(&letter).await?;
        self.finish(receipt)
    }

    async fn depth(&self) -> Result<u64> {
        Ok(self.pending.lock().expect("batch lock").len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_call_with_failed_entries_is_one_error_naming_each() {
        assert!(batch_failures("DeleteMessageBatch", &[]).is_ok());
        let failed = [
            BatchResultErrorEntry::builder()
                .id("3")
                .sender_fault(true)
                .code("ReceiptHandleIsInvalid")
                .message("the receipt handle has expired")
                .build()
                .unwrap(),
            BatchResultErrorEntry::builder()
                .id("7")
                .sender_fault(false)
                .code("InternalError")
                .build()
                .unwrap(),
        ];
        let Err(Error::Unavailable(text)) = batch_failures("DeleteMessageBatch", &failed) else {
            panic!("one Unavailable error");
        };
        assert_eq!(
            text,
            "DeleteMessageBatch: 2 entries failed: entry 3: ReceiptHandleIsInvalid \
             (the receipt handle has expired); entry 7: InternalError"
        );
    }
}
