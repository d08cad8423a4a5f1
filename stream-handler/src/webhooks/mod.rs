//! The webhook delivery workers of one machine: one per rule of `--event-rules`, each
//! draining its own rows of the [`SqliteWebhookOutbox`] in insertion order.
//!
//! A worker takes its rule's oldest waiting row and, once it is due, POSTs it signed
//! ([`delivery`]). A 2xx answer marks it delivered and the next row goes; any other
//! outcome (an error status, a timeout, a refused address) is recorded in the row with
//! the next attempt's time, after a pause from [`RetryPolicy`] (exponential, jittered),
//! and the row stays at the head: later events of the rule wait behind it, so each
//! document's events arrive in order. Once the retry budget since the first attempt is
//! spent, the row moves to the dead letters with its reason and the next row goes.
//!
//! Each rule has its own worker, so one slow or failing receiver delays no other, and
//! the stream's sinks only ever write rows ([`SqliteWebhookOutbox`] as the
//! [`EventBus`](shared::ports::EventBus)).

pub mod delivery;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use shared::Result;
use shared::clock::Clock;
use shared::embedded::SqliteWebhookOutbox;
use shared::events::address::check_addresses;
use shared::events::{EventRule, EventRules};
use shared::retry::RetryPolicy;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;

pub use delivery::{PublicOnlyResolver, WebhookClient};
use shared::metrics::{WebhookMetrics, WebhookOutcome};

/// How often a busy worker refreshes its rule's gauges.
const GAUGE_INTERVAL: Duration = Duration::from_secs(1);

/// How every rule's deliveries are made.
#[derive(Debug, Clone)]
pub struct WebhookDeliveryConfig {
    /// How long one attempt may take (connect, send, answer).
    pub attempt_timeout: Duration,
    /// The pauses between attempts (its `max_attempts` is not used: the budget ends the
    /// retries).
    pub retry: RetryPolicy,
    /// How long after its first attempt a delivery is given up and dead-lettered.
    pub retry_budget: Duration,
    /// Whether targets may resolve to private, loopback or link-local addresses
    /// (`DOCFAN_ALLOW_PRIVATE_TARGETS=1`).
    pub allow_private_targets: bool,
    /// How often an idle worker looks for rows it was not woken for (rows written by
    /// another process); rows this process publishes wake it at once.
    pub idle_poll: Duration,
    /// How long delivered rows are kept to recognise a change published again.
    pub delivered_retention: Duration,
}

impl Default for WebhookDeliveryConfig {
    fn default() -> Self {
        Self {
            attempt_timeout: Duration::from_secs(10),
            retry: RetryPolicy {
                max_attempts: u32::MAX,
                initial_backoff: Duration::from_secs(1),
                max_backoff: Duration::from_secs(10 * 60),
            },
            retry_budget: Duration::from_secs(24 * 60 * 60),
            allow_private_targets: false,
            idle_poll: Duration::from_secs(5),
            delivered_retention: Duration::from_secs(24 * 60 * 60),
        }
    }
}

/// The events of one machine: the rules and how their deliveries are made.
#[derive(Debug, Clone, Default)]
pub struct EventsConfig {
    /// The rules of `--event-rules`.
    pub rules: EventRules,
    /// How every rule's deliveries are made.
    pub delivery: WebhookDeliveryConfig,
}

/// What one step of a worker did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing waits.
    Idle,
    /// The oldest row is due only after this long.
    NotDue(Duration),
    /// The oldest row was delivered.
    Delivered { event_id: String },
    /// The attempt failed; the row is tried again after `retry_in`.
    Failed {
        event_id: String,
        reason: String,
        retry_in: Duration,
    },
    /// The attempt failed with the budget spent; the row is now dead letter `letter`.
    DeadLettered {
        event_id: String,
        reason: String,
        letter: String,
    },
}

/// Delivers one rule's rows.
#[derive(Clone)]
pub struct WebhookWorker {
    rule: EventRule,
    outbox: Arc<SqliteWebhookOutbox>,
    client: WebhookClient,
    clock: Arc<dyn Clock>,
    config: WebhookDeliveryConfig,
    metrics: WebhookMetrics,
}

fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

impl WebhookWorker {
    /// A worker delivering `rule`'s rows of `outbox`.
    pub fn new(
        rule: EventRule,
        outbox: Arc<SqliteWebhookOutbox>,
        clock: Arc<dyn Clock>,
        config: WebhookDeliveryConfig,
    ) -> Result<Self> {
        let client = WebhookClient::new(config.attempt_timeout, config.allow_private_targets)?;
        Ok(Self {
            rule,
            outbox,
            client,
            clock,
            config,
            metrics: WebhookMetrics::default(),
        })
    }

    /// The same worker counting into `metrics` (by default it counts into its own).
    pub fn with_metrics(mut self, metrics: WebhookMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// The rule it delivers.
    pub fn rule(&self) -> &EventRule {
        &self.rule
    }

    /// Attempts the rule's oldest row if it is due, and records what happened.
    pub async fn step(&self) -> Result<Step> {
        let Some(head) = self.outbox.head(&self.rule.name).await? else {
            return Ok(Step::Idle);
        };
        let now = self.clock.now();
        if head.next_attempt_at > now {
            let wait = (head.next_attempt_at - now).to_std().unwrap_or_default();
            return Ok(Step::NotDue(wait));
        }
        let span = tracing::info_span!(
            "webhook",
            rule = %self.rule.name,
            event_id = %head.event_id,
            document_id = %head.document_id,
            attempt = head.attempts + 1,
        );
        let posted = self
            .client
            .post(&self.rule.target, &head.event_id, &head.body, now)
            .instrument(span.clone())
            .await;
        let label = self.rule.name.as_str();
        let reason = match posted {
            Ok(()) => {
                self.outbox
                    .mark_delivered(head.seq, self.clock.now())
                    .await?;
                self.metrics.record(label, WebhookOutcome::Delivered);
                return Ok(Step::Delivered {
                    event_id: head.event_id,
                });
            }
            Err(reason) => reason,
        };
        self.metrics.record(label, WebhookOutcome::Failed);
        let attempts = head.attempts.saturating_add(1);
        let first = head.first_attempt_at.unwrap_or(now);
        let after = self.clock.now();
        let deadline = first + delta(self.config.retry_budget);
        if after >= deadline {
            let reason = format!(
                "webhook rule {}: gave up after {attempts} attempts in {} s: {reason}",
                self.rule.name,
                (after - first).num_seconds()
            );
            let spent = shared::embedded::webhook_outbox::PendingDelivery { attempts, ..head };
            let letter = self.outbox.dead_letter(&spent, &reason).await?;
            self.metrics.record(label, WebhookOutcome::DeadLettered);
            span.in_scope(|| tracing::error!(%reason, letter, "webhook delivery dead-lettered"));
            return Ok(Step::DeadLettered {
                event_id: spent.event_id,
                reason,
                letter,
            });
        }
        // One last attempt at the end of the budget rather than none after a long pause.
        let next = (after + delta(self.config.retry.backoff(attempts))).min(deadline);
        self.outbox
            .record_failure(head.seq, attempts, first, next, &reason)
            .await?;
        let retry_in = (next - after).to_std().unwrap_or_default();
        span.in_scope(|| {
            tracing::warn!(%reason, retry_in_ms = retry_in.as_millis() as u64, "webhook delivery failed")
        });
        Ok(Step::Failed {
            event_id: head.event_id,
            reason,
            retry_in,
        })
    }

    /// Refreshes the rule's gauges (rows waiting, age of the oldest).
    async fn publish_backlog(&self) {
        if let Ok(backlog) = self.outbox.backlog(&self.rule.name).await {
            self.metrics.set_backlog(
                self.rule.name.as_str(),
                backlog.waiting,
                backlog.oldest_enqueued_at,
            );
        }
    }

    /// Warns at start when the target's host name resolves to an address that is not
    /// public (a literal address is reported when the rules are loaded): its
    /// deliveries will fail until that changes, as every attempt checks again.
    async fn warn_if_name_refused(&self) {
        let url = &self.rule.target.url;
        let (Some(host), None) = (url.host_str(), self.rule.target.literal_ip()) else {
            return;
        };
        let resolved = tokio::time::timeout(
            self.config.attempt_timeout,
            tokio::net::lookup_host((host, url.port_or_known_default().unwrap_or(443))),
        )
        .await;
        if let Ok(Ok(addresses)) = resolved
            && let Err(refused) = check_addresses(host, addresses.map(|a| a.ip()))
        {
            tracing::warn!(rule = %self.rule.name, "{refused}: its deliveries will fail and be dead-lettered");
        }
    }

    /// Runs the worker until `shutdown` completes; an attempt in flight then is
    /// abandoned and made again after a restart (at least once).
    pub fn spawn(self, shutdown: impl Future<Output = ()> + Send + 'static) -> JoinHandle<()> {
        let (stop_tx, mut stop) = watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        let wake = self.outbox.wake(&self.rule.name);
        tokio::spawn(async move {
            if !self.config.allow_private_targets {
                self.warn_if_name_refused().await;
            }
            let mut last_prune = tokio::time::Instant::now();
            // The gauges count the rule's waiting rows: refreshed when the worker goes
            // idle and at most once a second while deliveries go on, never per delivery.
            let mut gauges_at: Option<tokio::time::Instant> = None;
            loop {
                if *stop.borrow() {
                    break;
                }
                if gauges_at.is_none_or(|at| at.elapsed() >= GAUGE_INTERVAL) {
                    self.publish_backlog().await;
                    gauges_at = Some(tokio::time::Instant::now());
                }
                if last_prune.elapsed() > Duration::from_secs(60) {
                    let before = self.clock.now() - delta(self.config.delivered_retention);
                    if let Err(e) = self.outbox.prune_delivered(before).await {
                        tracing::warn!(error = %e, "pruning delivered webhooks failed");
                    }
                    last_prune = tokio::time::Instant::now();
                }
                let stepped = tokio::select! {
                    stepped = self.step() => stepped,
                    _ = stop.wait_for(|s| *s) => break,
                };
                let pause = match stepped {
                    Ok(Step::Delivered { .. } | Step::DeadLettered { .. }) => continue,
                    Ok(Step::Failed { retry_in, .. }) => retry_in,
                    Ok(Step::NotDue(wait)) => wait,
                    Ok(Step::Idle) => self.config.idle_poll,
                    Err(e) => {
                        tracing::warn!(rule = %self.rule.name, error = %e, "the webhook outbox failed; trying again");
                        self.config.idle_poll
                    }
                };
                // About to wait: the gauges show where the rule stands.
                self.publish_backlog().await;
                gauges_at = Some(tokio::time::Instant::now());
                let woken = async {
                    match &wake {
                        Some(wake) => wake.notified().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = tokio::time::sleep(pause.min(Duration::from_secs(60))) => {}
                    _ = woken => {}
                    _ = stop.wait_for(|s| *s) => break,
                }
            }
            self.publish_backlog().await;
        })
    }
}
