//! The [`DeadLetterQueue`] on SQS (the poison-record queue of `infra/template.yaml`).
//!
//! Each letter is one message whose body is the whole [`DeadLetter`] as JSON (the full
//! stream record or job, the reason, the attempts, the source, the time), with `source`,
//! `reason` and `attempts` repeated as message attributes for the console. The
//! letter's id is the SQS message id. A letter over SQS's 1 MiB message limit keeps its
//! record without the images, and its reason says so.
//!
//! Listing a queue: SQS has no "peek". `list` receives the messages with a short
//! visibility timeout (so that successive receives return new messages rather than the
//! same first ten again), then makes every listed message visible again at once. While
//! a listing runs, the listed messages are hidden from other readers for at most
//! [`LIST_VISIBILITY_SECONDS`]; two listings at the same moment each see only part of
//! the queue. Each listing counts as a receive (`ApproximateReceiveCount`), so the
//! queue must have no redrive policy of its own. Letters come back sorted by the time
//! they failed. `remove` deletes by the receipt handle of the latest listing, listing
//! again if the id was not in it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::operation::delete_message::DeleteMessageError;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, MessageAttributeValue, QueueAttributeName,
};
use chrono::Utc;

use super::errors::{build_error, sdk_error};
use crate::clock::Clock;
use crate::ports::{DeadLetter, DeadLetterQueue, DeadLetterSource};
use crate::{Error, Result};

/// How long listed messages stay hidden if a listing is interrupted before it makes
/// them visible again.
pub const LIST_VISIBILITY_SECONDS: i32 = 30;
/// The longest reason kept in the `reason` message attribute (the body has it whole).
const REASON_ATTRIBUTE_CHARS: usize = 1024;
/// SQS's limit on a message, body and attributes together.
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;
/// Room left for the message attributes.
const ATTRIBUTES_ALLOWANCE: usize = 4 * 1024;

/// The body of a letter, within SQS's message limit. A stream record with two large
/// images can exceed it: the letter then keeps the record without its images (its keys
/// and sequence number still name it, and the stream keeps it for 24 hours) and says so
/// in its reason, so the cut is never silent.
fn body_within_limit(letter: &DeadLetter) -> Result<String> {
    let encode =
        |letter: &DeadLetter| serde_json::to_string(letter).map_err(|e| Error::Unknown(e.into()));
    let body = encode(letter)?;
    if body.len() + ATTRIBUTES_ALLOWANCE <= MAX_MESSAGE_BYTES {
        return Ok(body);
    }
    let mut cut = letter.clone();
    let mut payload = letter.payload.clone();
    if let Some(change) = payload.get_mut("dynamodb").and_then(|c| c.as_object_mut()) {
        change.remove("NewImage");
        change.remove("OldImage");
    }
    cut.reason = format!(
        "{} [the letter was {} bytes, over SQS's message limit: the record's images were dropped]",
        letter.reason,
        body.len()
    );
    cut.payload = payload;
    let body = encode(&cut)?;
    if body.len() + ATTRIBUTES_ALLOWANCE <= MAX_MESSAGE_BYTES {
        return Ok(body);
    }
    cut.payload = serde_json::json!({ "eventID": letter.payload.get("eventID"), "dynamodb": {
        "Keys": letter.payload.pointer("/dynamodb/Keys"),
        "SequenceNumber": letter.payload.pointer("/dynamodb/SequenceNumber"),
    }});
    encode(&cut)
}

/// Dead letters in an SQS queue.
pub struct SqsDeadLetterQueue {
    client: Client,
    url: String,
    clock: Arc<dyn Clock>,
    /// Receipt handles of the latest listing, by letter id.
    receipts: Mutex<HashMap<String, String>>,
    /// How long each receive of a listing waits for messages (long polling: short
    /// polls sample only some of SQS's servers and may miss messages).
    wait_seconds: i32,
}

impl std::fmt::Debug for SqsDeadLetterQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqsDeadLetterQueue")
            .field("url", &self.url)
            .finish()
    }
}

impl SqsDeadLetterQueue {
    pub fn new(client: Client, url: &str, clock: Arc<dyn Clock>) -> Self {
        Self {
            client,
            url: url.to_owned(),
            clock,
            receipts: Mutex::new(HashMap::new()),
            wait_seconds: 1,
        }
    }

    /// Sets the long-polling wait of each receive of a listing (0 for emulators).
    pub fn with_wait_seconds(mut self, seconds: i32) -> Self {
        self.wait_seconds = seconds.clamp(0, 20);
        self
    }

    fn attribute(value: &str, kind: &str) -> Result<MessageAttributeValue> {
        MessageAttributeValue::builder()
            .data_type(kind)
            .string_value(value)
            .build()
            .map_err(|e| build_error("a message attribute", e))
    }
}

/// The JSON body of a dead letter; a body that is not one (a message some other
/// producer sent) is listed as it is, so nothing in the queue is hidden.
fn letter_from_body(id: &str, body: &str, now: chrono::DateTime<Utc>) -> DeadLetter {
    match serde_json::from_str::<DeadLetter>(body) {
        Ok(mut letter) => {
            letter.id = id.to_owned();
            letter
        }
        Err(e) => DeadLetter {
            id: id.to_owned(),
            source: DeadLetterSource::Stream,
            payload: serde_json::from_str(body)
                .unwrap_or_else(|_| serde_json::Value::String(body.to_owned())),
            reason: format!("a message that is not a dead letter: {e}"),
            attempts: 0,
            failed_at: now,
        },
    }
}

#[async_trait]
impl DeadLetterQueue for SqsDeadLetterQueue {
    async fn put(&self, letter: &DeadLetter) -> Result<String> {
        let mut stored = letter.clone();
        stored.id = String::new();
        let body = body_within_limit(&stored)?;
        let source = serde_json::to_value(letter.source)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let reason: String = letter.reason.chars().take(REASON_ATTRIBUTE_CHARS).collect();
        let out = self
            .client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .message_attributes("source", Self::attribute(&source, "String")?)
            .message_attributes(
                "reason",
                Self::attribute(if reason.is_empty() { "-" } else { &reason }, "String")?,
            )
            .message_attributes(
                "attempts",
                Self::attribute(&letter.attempts.to_string(), "Number")?,
            )
            .send()
            .await
            .map_err(|e| sdk_error("SendMessage", e))?;
        out.message_id
            .ok_or_else(|| Error::Unknown(anyhow::anyhow!("SendMessage returned no message id")))
    }

    async fn list(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        let now = self.clock.now();
        let mut letters = Vec::new();
        let mut receipts: Vec<(String, String)> = Vec::new();
        let mut seen = HashSet::new();
        while letters.len() < limit {
            let out = self
                .client
                .receive_message()
                .queue_url(&self.url)
                .max_number_of_messages((limit - letters.len()).min(10) as i32)
                .visibility_timeout(LIST_VISIBILITY_SECONDS)
                .wait_time_seconds(self.wait_seconds)
                .send()
                .await
                .map_err(|e| sdk_error("ReceiveMessage", e))?;
            let messages = out.messages.unwrap_or_default();
            let mut fresh = 0;
            for message in messages {
                let (Some(id), Some(receipt)) = (message.message_id, message.receipt_handle) else {
                    continue;
                };
                receipts.push((id.clone(), receipt));
                if seen.insert(id.clone()) {
                    fresh += 1;
                    letters.push(letter_from_body(
                        &id,
                        message.body.as_deref().unwrap_or(""),
                        now,
                    ));
                }
            }
            if fresh == 0 {
                break;
            }
        }
        // Visible again at once: listing is not consuming.
        for chunk in receipts.chunks(SQS_BATCH_ENTRIES) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, (_, receipt))| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(receipt)
                        .visibility_timeout(0)
                        .build()
                        .map_err(|e| build_error("a visibility change", e))
                })
                .collect::<Result<Vec<_>>>()?;
            self.client
                .change_message_visibility_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| sdk_error("ChangeMessageVisibilityBatch", e))?;
        }
        {
            let mut known = self.receipts.lock().expect("receipts lock");
            known.clear();
            known.extend(receipts);
        }
        letters.sort_by(|a, b| a.failed_at.cmp(&b.failed_at).then_with(|| a.id.cmp(&b.id)));
        letters.truncate(limit);
        Ok(letters)
    }

    async fn remove(&self, id: &str) -> Result<()> {
        let known = self
            .receipts
            .lock()
            .expect("receipts lock")
            .get(id)
            .cloned();
        let receipt = match known {
            Some(receipt) => receipt,
            None => {
                self.list(usize::MAX).await?;
                self.receipts
                    .lock()
                    .expect("receipts lock")
                    .get(id)
                    .cloned()
                    .ok_or(Error::NotFound)?
            }
        };
        let result = self
            .client
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .send()
            .await;
        self.receipts.lock().expect("receipts lock").remove(id);
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(DeleteMessageError::ReceiptHandleIsInvalid(_))
                ) =>
            {
                Err(Error::NotFound)
            }
            Err(e) => Err(sdk_error("DeleteMessage", e)),
        }
    }

    async fn depth(&self) -> Result<u64> {
        queue_depth(&self.client, &self.url).await
    }
}

/// Entries SQS takes in one batch call (`SendMessageBatch`, `DeleteMessageBatch`,
/// `ChangeMessageVisibilityBatch`), at most.
pub(crate) const SQS_BATCH_ENTRIES: usize = 10;

/// Messages waiting in a queue, visible or in flight.
pub(crate) async fn queue_depth(client: &Client, url: &str) -> Result<u64> {
    let out = client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .map_err(|e| sdk_error("GetQueueAttributes", e))?;
    let attributes = out.attributes.unwrap_or_default();
    let count = |name: QueueAttributeName| -> u64 {
        attributes
            .get(&name)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok(count(QueueAttributeName::ApproximateNumberOfMessages)
        + count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible))
}
