//! Redriving dead letters: the operator's way back once the cause is fixed.
//!
//! A stream record is handled again on its own (every sink is idempotent and
//! version-guarded, so a record older than what the sinks hold changes nothing there);
//! an analysis job is put back on its queue; a webhook delivery goes back into the
//! webhook outbox (one machine only), at the end of its rule's rows with a fresh retry
//! budget. A letter leaves the queue only when its redrive succeeded.

use serde_json::Value;
use shared::embedded::SqliteWebhookOutbox;
use shared::embedded::webhook_outbox::WebhookLetter;
use shared::ports::{AnalysisJob, AnalysisQueue, DeadLetter, DeadLetterQueue, DeadLetterSource};
use shared::{Error, Result};

use crate::handler::Fanout;

/// The most letters one redrive goes through.
pub const MAX_REDRIVE: usize = 10_000;

/// What became of one letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedriveOutcome {
    pub id: String,
    /// `Err` with the reason it still fails (the letter stays).
    pub result: Result<(), String>,
}

/// Redrives every letter, or only the one with id `only` (`NotFound` if there is none).
pub async fn redrive(
    fanout: &Fanout,
    queue: &dyn AnalysisQueue,
    dlq: &dyn DeadLetterQueue,
    only: Option<&str>,
) -> Result<Vec<RedriveOutcome>> {
    redrive_with_webhooks(fanout, queue, None, dlq, only).await
}

/// [`redrive`], with webhook deliveries going back into `webhooks` (without an outbox,
/// a webhook letter stays, failing).
pub async fn redrive_with_webhooks(
    fanout: &Fanout,
    queue: &dyn AnalysisQueue,
    webhooks: Option<&SqliteWebhookOutbox>,
    dlq: &dyn DeadLetterQueue,
    only: Option<&str>,
) -> Result<Vec<RedriveOutcome>> {
    redrive_letters(
        dlq,
        only,
        Target::Everywhere {
            fanout,
            queue,
            webhooks,
        },
    )
    .await
}

/// Where redriven letters go.
enum Target<'a> {
    /// Each letter back where it came from.
    Everywhere {
        fanout: &'a Fanout,
        queue: &'a dyn AnalysisQueue,
        webhooks: Option<&'a SqliteWebhookOutbox>,
    },
    /// Only webhook letters, back into the outbox.
    Webhooks(&'a SqliteWebhookOutbox),
}

impl Target<'_> {
    fn wants(&self, letter: &DeadLetter) -> bool {
        match self {
            Self::Everywhere { .. } => true,
            Self::Webhooks(_) => letter.source == DeadLetterSource::Webhook,
        }
    }

    async fn redrive(&self, letter: &DeadLetter) -> Result<(), String> {
        match (self, letter.source) {
            (Self::Everywhere { fanout, .. }, DeadLetterSource::Stream) => {
                fanout.redrive(&letter.payload).await
            }
            (Self::Everywhere { queue, .. }, DeadLetterSource::Analysis) => {
                requeue(*queue, &letter.payload).await
            }
            (Self::Everywhere { webhooks, .. }, DeadLetterSource::Webhook) => {
                requeue_webhook(*webhooks, &letter.payload).await
            }
            (Self::Webhooks(outbox), _) => requeue_webhook(Some(outbox), &letter.payload).await,
        }
    }
}

/// Redrives the letters `target` takes (all of them, or the one with id `only`:
/// `NotFound` if it is not among them), removing each that succeeds.
async fn redrive_letters(
    dlq: &dyn DeadLetterQueue,
    only: Option<&str>,
    target: Target<'_>,
) -> Result<Vec<RedriveOutcome>> {
    let letters: Vec<DeadLetter> = dlq
        .list(MAX_REDRIVE)
        .await?
        .into_iter()
        .filter(|l| target.wants(l) && only.is_none_or(|id| l.id == id))
        .collect();
    if only.is_some() && letters.is_empty() {
        return Err(Error::NotFound);
    }
    let mut outcomes = Vec::with_capacity(letters.len());
    for letter in letters {
        let result = target.redrive(&letter).await;
        if result.is_ok() {
            dlq.remove(&letter.id).await?;
        }
        outcomes.push(RedriveOutcome {
            id: letter.id,
            result,
        });
    }
    Ok(outcomes)
}

async fn requeue(queue: &dyn AnalysisQueue, payload: &Value) -> Result<(), String> {
    let job: AnalysisJob =
        serde_json::from_value(payload.clone()).map_err(|e| format!("not an analysis job: {e}"))?;
    queue.requeue(&job).await.map_err(|e| e.to_string())
}

/// Redrives the webhook letters alone (all, or the one with id `only`: `NotFound` if
/// there is no such webhook letter) back into `outbox`. It touches neither the stream's
/// sinks nor the data directory's lock, so it runs beside a server, whose workers then
/// deliver the rows.
pub async fn redrive_webhooks(
    outbox: &SqliteWebhookOutbox,
    dlq: &dyn DeadLetterQueue,
    only: Option<&str>,
) -> Result<Vec<RedriveOutcome>> {
    redrive_letters(dlq, only, Target::Webhooks(outbox)).await
}

async fn requeue_webhook(
    outbox: Option<&SqliteWebhookOutbox>,
    payload: &Value,
) -> Result<(), String> {
    let outbox = outbox.ok_or("webhook deliveries are redriven on the machine that made them")?;
    let letter: WebhookLetter = serde_json::from_value(payload.clone())
        .map_err(|e| format!("not a webhook delivery: {e}"))?;
    outbox
        .requeue(&letter)
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}
