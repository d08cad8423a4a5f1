//! The fan-out on one machine: every port it needs, opened from the data directory,
//! and its background tasks: two consumers of the change log, the analysis worker and,
//! with webhook rules, one delivery worker per rule.
//!
//! - The **live** consumer delivers notifications alone, with no batching window, so a
//!   frame never waits behind an index commit, an audit append or a slow sink. Its
//!   checkpoints are in memory from the latest record: the connections it notifies
//!   live in this process and do not survive it (clients re-subscribe with
//!   `sinceVersion`, replayed from the audit trail). What it cannot deliver it logs
//!   and drops: the index consumer dead-letters every record it cannot decode, once.
//! - The **index** consumer delivers search, audit and analysis (and events, with
//!   webhook rules), with durable checkpoints: every record reaches those sinks exactly
//!   once in effect, across crashes.
//! - With webhook rules ([`FanoutConfig::events`]), the events sink writes each matching
//!   event into the webhook outbox, and a worker per rule delivers its rows
//!   ([`crate::webhooks`]): no receiver ever holds up the index consumer or another
//!   rule's receiver.
//!
//! A subscription that replays from the audit trail while the live consumer runs ahead
//! of the index consumer waits for the missing entries (`replay_wait`) and takes the
//! live frames held meanwhile, so it switches to live frames with no gap and no
//! duplicate.
//!
//! ```text
//! let fanout = EmbeddedFanout::open(&data_dir, documents, notifier, clock, FanoutConfig::default())?;
//! let tasks = fanout.start(store.change_feed(), shutdown);
//! ```

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use shared::Result;
use shared::clock::Clock;
use shared::embedded::{
    ChangeFeed, DATABASE_FILE, SEARCH_INDEX_DIR, SqliteAnalysisQueue, SqliteAnalysisStore,
    SqliteAuditLog, SqliteDeadLetterQueue, SqliteWebhookOutbox, TantivySearchIndex,
};
use shared::metrics::{Metrics, WebhookMetrics};
use shared::ports::{DocumentStore, Notifier};
use shared::service::ReadService;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::analysis::{AnalysisWorker, AnalysisWorkerConfig};
use crate::handler::{Fanout, HandlerConfig};
use crate::poller::{Poller, PollerConfig};
use crate::redrive::{self, RedriveOutcome};
use crate::sinks::Sink;
use crate::sinks::analysis::{AnalysisSink, AnalysisSinkConfig};
use crate::sinks::audit::{AuditSink, AuditSinkConfig};
use crate::sinks::events::{EventsSink, EventsSinkConfig};
use crate::sinks::notifications::{NotificationSink, NotificationSinkConfig};
use crate::sinks::search::{CommitPolicy, SearchSink, SearchSinkConfig};
use crate::webhooks::{EventsConfig, WebhookWorker};

/// Every knob of the embedded fan-out.
#[derive(Debug, Clone)]
pub struct FanoutConfig {
    pub handler: HandlerConfig,
    /// The index consumer (search, audit, analysis).
    pub poller: PollerConfig,
    /// The live consumer (notifications).
    pub live: PollerConfig,
    pub worker: AnalysisWorkerConfig,
    /// Commits the index by time and size: a write is searchable within about 200 ms;
    /// while nobody searches, the index is committed every second (the first search
    /// commits what waits).
    pub search: SearchSinkConfig,
    pub audit: AuditSinkConfig,
    pub notifications: NotificationSinkConfig,
    pub analysis: AnalysisSinkConfig,
    /// Webhook rules and how they are delivered; `None` (or no rules): no events sink.
    pub events: Option<EventsConfig>,
}

impl Default for FanoutConfig {
    fn default() -> Self {
        Self {
            handler: HandlerConfig::default(),
            poller: PollerConfig::default(),
            live: PollerConfig::live(),
            worker: AnalysisWorkerConfig::default(),
            search: SearchSinkConfig {
                commit: CommitPolicy::by_time_and_size(Duration::from_millis(200), 5_000)
                    .when_search_idle(Duration::from_secs(1)),
            },
            // The embedded trail and queue fail as a whole, never one entry: a batch's
            // entries and jobs are committed together.
            audit: AuditSinkConfig {
                append_at_flush: true,
                ..AuditSinkConfig::default()
            },
            notifications: NotificationSinkConfig::default(),
            analysis: AnalysisSinkConfig {
                enqueue_at_flush: true,
            },
            events: None,
        }
    }
}

/// Whether one of the fan-out's background tasks runs, for readiness checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskState {
    NotStarted,
    Running,
    /// Ended (shut down, failed or panicked), and how.
    Stopped(String),
}

/// The states of the background tasks [`EmbeddedFanout::start`] runs.
#[derive(Debug, Clone)]
pub struct TaskStates {
    /// The index consumer.
    pub poller: watch::Receiver<TaskState>,
    /// The live consumer.
    pub live: watch::Receiver<TaskState>,
    pub worker: watch::Receiver<TaskState>,
    /// Each webhook rule's delivery worker, by rule name.
    pub webhooks: Vec<(String, watch::Receiver<TaskState>)>,
}

struct TaskSenders {
    poller: watch::Sender<TaskState>,
    live: watch::Sender<TaskState>,
    worker: watch::Sender<TaskState>,
    webhooks: Vec<(String, watch::Sender<TaskState>)>,
}

/// The embedded fan-out's ports and handler.
#[derive(Clone)]
pub struct EmbeddedFanout {
    /// Every sink: what redrives and operator commands deliver through. The consumers
    /// [`EmbeddedFanout::start`] runs each take their share of it.
    pub fanout: Arc<Fanout>,
    pub search: Arc<TantivySearchIndex>,
    pub audit: Arc<SqliteAuditLog>,
    pub analysis_queue: Arc<SqliteAnalysisQueue>,
    pub analyses: Arc<SqliteAnalysisStore>,
    pub dead_letters: Arc<SqliteDeadLetterQueue>,
    /// The embedded event bus: the webhook deliveries waiting, per rule.
    pub webhook_outbox: Arc<SqliteWebhookOutbox>,
    documents: Arc<dyn DocumentStore>,
    notifier: Arc<dyn Notifier>,
    clock: Arc<dyn Clock>,
    config: FanoutConfig,
    tasks: Arc<TaskSenders>,
    webhook_metrics: WebhookMetrics,
}

impl EmbeddedFanout {
    /// Opens the fan-out's stores in `data_dir` (the SQLite database the documents live
    /// in, and the search index folder beside it), counting into metrics of its own.
    pub fn open(
        data_dir: &Path,
        documents: Arc<dyn DocumentStore>,
        notifier: Arc<dyn Notifier>,
        clock: Arc<dyn Clock>,
        config: FanoutConfig,
    ) -> Result<Self> {
        Self::open_counting(
            data_dir,
            documents,
            notifier,
            clock,
            config,
            &Metrics::new(),
        )
    }

    /// [`EmbeddedFanout::open`], counting into `metrics`' fan-out and webhook parts.
    pub fn open_counting(
        data_dir: &Path,
        documents: Arc<dyn DocumentStore>,
        notifier: Arc<dyn Notifier>,
        clock: Arc<dyn Clock>,
        config: FanoutConfig,
        metrics: &Metrics,
    ) -> Result<Self> {
        let db = data_dir.join(DATABASE_FILE);
        let search = Arc::new(TantivySearchIndex::open(&data_dir.join(SEARCH_INDEX_DIR))?);
        let audit = Arc::new(SqliteAuditLog::open(&db)?);
        let analysis_queue = Arc::new(SqliteAnalysisQueue::open(&db, Arc::clone(&clock))?);
        let analyses = Arc::new(SqliteAnalysisStore::open(&db)?);
        let dead_letters = Arc::new(SqliteDeadLetterQueue::open(&db)?);
        let rules = config
            .events
            .as_ref()
            .map(|e| e.rules.clone())
            .unwrap_or_default();
        let webhook_outbox = Arc::new(SqliteWebhookOutbox::open(
            &db,
            rules.clone(),
            Arc::clone(&clock),
        )?);
        let mut sinks: Vec<Arc<dyn Sink>> = vec![
            Arc::new(SearchSink::new(search.clone(), config.search.clone())),
            Arc::new(NotificationSink::new(
                Arc::clone(&notifier),
                config.notifications.clone(),
            )),
            Arc::new(AuditSink::new(audit.clone(), config.audit.clone())),
            Arc::new(AnalysisSink::new(
                analysis_queue.clone(),
                config.analysis.clone(),
            )),
        ];
        if !rules.is_empty() {
            sinks.push(Arc::new(EventsSink::new(
                webhook_outbox.clone(),
                // The outbox fails as a whole, never one event: a batch's events are
                // committed together.
                EventsSinkConfig {
                    publish_at_flush: true,
                    ..EventsSinkConfig::default()
                },
            )));
        }
        let fanout = Arc::new(
            Fanout::new(
                sinks,
                dead_letters.clone(),
                Arc::clone(&clock),
                config.handler.clone(),
            )
            .with_metrics(metrics.fanout.clone()),
        );
        Ok(Self {
            fanout,
            search,
            audit,
            analysis_queue,
            analyses,
            dead_letters,
            webhook_outbox,
            documents,
            notifier,
            clock,
            config,
            tasks: Arc::new(TaskSenders {
                poller: watch::channel(TaskState::NotStarted).0,
                live: watch::channel(TaskState::NotStarted).0,
                worker: watch::channel(TaskState::NotStarted).0,
                webhooks: rules
                    .rules()
                    .iter()
                    .map(|r| (r.name.to_string(), watch::channel(TaskState::NotStarted).0))
                    .collect(),
            }),
            webhook_metrics: metrics.webhooks.clone(),
        })
    }

    /// Whether the stream poller and the analysis worker run, as they change.
    pub fn task_states(&self) -> TaskStates {
        TaskStates {
            poller: self.tasks.poller.subscribe(),
            live: self.tasks.live.subscribe(),
            worker: self.tasks.worker.subscribe(),
            webhooks: self
                .tasks
                .webhooks
                .iter()
                .map(|(name, tx)| (name.clone(), tx.subscribe()))
                .collect(),
        }
    }

    /// The analysis worker over these stores, woken by the queue on every enqueue.
    pub fn analysis_worker(&self) -> AnalysisWorker {
        AnalysisWorker::new(
            self.analysis_queue.clone(),
            self.analyses.clone(),
            Arc::clone(&self.documents),
            Arc::clone(&self.notifier),
            Arc::clone(&self.clock),
            self.config.worker.clone(),
        )
        .with_wake(self.analysis_queue.enqueued())
        .with_metrics(self.fanout.metrics().clone())
    }

    /// The delivery worker of each webhook rule, over the outbox.
    pub fn webhook_workers(&self) -> Result<Vec<WebhookWorker>> {
        let Some(events) = &self.config.events else {
            return Ok(Vec::new());
        };
        events
            .rules
            .rules()
            .iter()
            .map(|rule| {
                WebhookWorker::new(
                    rule.clone(),
                    self.webhook_outbox.clone(),
                    Arc::clone(&self.clock),
                    events.delivery.clone(),
                )
                .map(|worker| worker.with_metrics(self.webhook_metrics.clone()))
            })
            .collect()
    }

    /// Starts the two consumers of `feed`, the analysis worker and the webhook
    /// workers; they stop when `shutdown` completes, and the returned task ends when
    /// they have.
    pub fn start(
        &self,
        feed: ChangeFeed,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> JoinHandle<Result<()>> {
        let (stop_tx, stop) = watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        let stopped = |mut stop: watch::Receiver<bool>| async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        let live = Poller::spawn(
            self.config.live.clone(),
            feed.clone(),
            Arc::new(self.fanout.live()),
            Arc::clone(&self.clock),
            stopped(stop.clone()),
        );
        let poller = Poller::spawn(
            self.config.poller.clone(),
            feed,
            Arc::new(self.fanout.index()),
            Arc::clone(&self.clock),
            stopped(stop.clone()),
        );
        let webhook_workers = match self.webhook_workers() {
            Ok(workers) => workers,
            Err(e) => {
                tracing::error!(error = %e, "the webhook workers cannot start");
                Vec::new()
            }
        };
        let mut webhooks = Vec::new();
        for (worker, (_, state)) in webhook_workers.into_iter().zip(&self.tasks.webhooks) {
            state.send_replace(TaskState::Running);
            let state = state.clone();
            let running = worker.spawn(stopped(stop.clone()));
            webhooks.push(tokio::spawn(async move {
                let ended = match running.await {
                    Ok(()) => "stopped".to_owned(),
                    Err(e) => format!("failed: {e}"),
                };
                state.send_replace(TaskState::Stopped(ended));
            }));
        }
        self.warn_of_unconfigured_rules();
        let worker = self.analysis_worker().spawn(stopped(stop));
        let tasks = Arc::clone(&self.tasks);
        tasks.poller.send_replace(TaskState::Running);
        tasks.live.send_replace(TaskState::Running);
        tasks.worker.send_replace(TaskState::Running);
        // Each task's end is published as soon as it happens, not when both have ended.
        let worker = {
            let tasks = Arc::clone(&tasks);
            tokio::spawn(async move {
                let ended = match worker.await {
                    Ok(()) => "stopped".to_owned(),
                    Err(e) => format!("failed: {e}"),
                };
                tasks.worker.send_replace(TaskState::Stopped(ended));
            })
        };
        let live = {
            let tasks = Arc::clone(&tasks);
            tokio::spawn(async move {
                let ended = match live.await {
                    Ok(Ok(())) => "stopped".to_owned(),
                    Ok(Err(e)) => format!("failed: {e}"),
                    Err(e) => format!("failed: {e}"),
                };
                tasks.live.send_replace(TaskState::Stopped(ended));
            })
        };
        tokio::spawn(async move {
            let polled = poller.await;
            let ended = match &polled {
                Ok(Ok(())) => "stopped".to_owned(),
                Ok(Err(e)) => format!("failed: {e}"),
                Err(e) => format!("failed: {e}"),
            };
            tasks.poller.send_replace(TaskState::Stopped(ended));
            let polled =
                polled.map_err(|e| shared::Error::Unknown(anyhow::anyhow!("poller task: {e}")))?;
            let _ = worker.await;
            let _ = live.await;
            for webhook in webhooks {
                let _ = webhook.await;
            }
            polled
        })
    }

    /// Warns, once at start, of webhook deliveries waiting for a rule the rules file no
    /// longer names (left by an earlier configuration, or redriven): they wait until
    /// that rule is configured again.
    fn warn_of_unconfigured_rules(&self) {
        let outbox = self.webhook_outbox.clone();
        tokio::spawn(async move {
            let Ok(waiting) = outbox.waiting_by_rule().await else {
                return;
            };
            for (rule, rows) in waiting {
                let configured = outbox
                    .rules()
                    .rules()
                    .iter()
                    .any(|r| r.name.as_str() == rule);
                if !configured {
                    tracing::warn!(
                        rule,
                        rows,
                        "webhook deliveries wait for a rule that is not configured; they go out once it is"
                    );
                }
            }
        });
    }

    /// The read side over these stores: search, history and analysis, for the REST API.
    pub fn reads(&self) -> ReadService {
        ReadService::new(
            Arc::clone(&self.documents),
            self.audit.clone(),
            self.analyses.clone(),
            Some(self.search.clone()),
        )
    }

    /// Redrives the dead letters (all, or the one with id `only`).
    pub async fn redrive(&self, only: Option<&str>) -> Result<Vec<RedriveOutcome>> {
        redrive::redrive_with_webhooks(
            &self.fanout,
            self.analysis_queue.as_ref(),
            Some(self.webhook_outbox.as_ref()),
            self.dead_letters.as_ref(),
            only,
        )
        .await
    }
}
