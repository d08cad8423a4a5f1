//! The search sink: keeps the full-text index in step with the documents.
//!
//! A creation or update upserts the new state with its readers; a deletion leaves a
//! tombstone at the deletion's version. The index guards both by version, so a
//! redelivered or late record never replaces a newer state.
//!
//! Writes are committed by a [`CommitPolicy`]: at the end of a batch once the oldest
//! uncommitted write has waited `interval` or `max_writes` are waiting, not after every
//! batch (an index commit costs milliseconds whatever it holds). Until then a flush
//! answers [`Flushed::Deferred`], and the consumer keeps its checkpoint below the
//! uncommitted writes, so a crash redelivers them. While nobody searches (the index
//! [is search idle](SearchIndex::is_search_idle)) the writes wait `idle_interval`
//! instead: the search that ends the quiet spell commits them itself.

use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use shared::domain::ChangeEvent;
use shared::ports::{SearchDocument, SearchIndex};
use shared::{Error, Result};
use tokio::time::Instant;

use super::{Flush, Flushed, Sink};
use crate::decode::RecordMeta;

/// When the index is committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitPolicy {
    /// The longest an uncommitted write waits (zero: commit at the end of every batch).
    pub interval: Duration,
    /// Commit at the end of a batch once this many writes wait, whatever their age.
    pub max_writes: usize,
    /// The longest an uncommitted write waits while the index is search idle (at least
    /// `interval`).
    pub idle_interval: Duration,
}

impl CommitPolicy {
    /// A commit at the end of every batch: for a handler whose batch must be durable
    /// when it answers (a Lambda invocation).
    pub const EVERY_BATCH: CommitPolicy = CommitPolicy {
        interval: Duration::ZERO,
        max_writes: 1,
        idle_interval: Duration::ZERO,
    };

    /// By time and size, for a long-running consumer: a write is searchable within
    /// about `interval` plus one commit.
    pub const fn by_time_and_size(interval: Duration, max_writes: usize) -> Self {
        Self {
            interval,
            max_writes,
            idle_interval: interval,
        }
    }

    /// The same, with writes waiting up to `idle_interval` while the index is search
    /// idle.
    pub const fn when_search_idle(self, idle_interval: Duration) -> Self {
        Self {
            idle_interval,
            ..self
        }
    }

    /// The longest a write waits, given whether the index is search idle.
    fn interval(&self, search_idle: bool) -> Duration {
        if search_idle {
            self.idle_interval.max(self.interval)
        } else {
            self.interval
        }
    }
}

impl Default for CommitPolicy {
    fn default() -> Self {
        Self::EVERY_BATCH
    }
}

/// How the search sink behaves.
#[derive(Debug, Clone, Default)]
pub struct SearchSinkConfig {
    pub commit: CommitPolicy,
}

/// The writes since the last commit.
#[derive(Debug, Default)]
struct Uncommitted {
    writes: usize,
    /// When the oldest of them was made.
    since: Option<Instant>,
}

pub struct SearchSink {
    index: Arc<dyn SearchIndex>,
    config: SearchSinkConfig,
    uncommitted: Mutex<Uncommitted>,
    /// Held through a commit, so a flush that finds nothing uncommitted knows that the
    /// commit which took the writes has finished.
    committing: tokio::sync::Mutex<()>,
}

impl SearchSink {
    pub fn new(index: Arc<dyn SearchIndex>, config: SearchSinkConfig) -> Self {
        Self {
            index,
            config,
            uncommitted: Mutex::default(),
            committing: tokio::sync::Mutex::new(()),
        }
    }

    fn uncommitted(&self) -> std::sync::MutexGuard<'_, Uncommitted> {
        self.uncommitted.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the writes waiting now must be committed; if not, when they must be.
    fn due(&self, when: Flush) -> Option<Duration> {
        let waiting = self.uncommitted();
        let policy = self.config.commit;
        let age = waiting.since.map_or(Duration::ZERO, |t| t.elapsed());
        let interval = policy.interval(self.index.is_search_idle());
        if when == Flush::Now || waiting.writes >= policy.max_writes || age >= interval {
            None
        } else {
            Some(interval - age)
        }
    }
}

#[async_trait]
impl Sink for SearchSink {
    fn name(&self) -> &'static str {
        "search"
    }

    async fn deliver(&self, change: &ChangeEvent, record: &RecordMeta) -> Result<()> {
        // A later version of the document in this batch replaces this one anyway.
        if record.superseded {
            return Ok(());
        }
        match &change.new {
            Some(doc) => self.index.upsert(&SearchDocument::from(doc)).await?,
            None => {
                self.index
                    .delete(&change.document_id, change.version)
                    .await?
            }
        };
        // Counted once written: a commit that starts after this takes it.
        let mut waiting = self.uncommitted();
        waiting.writes += 1;
        waiting.since.get_or_insert_with(Instant::now);
        Ok(())
    }

    async fn flush(&self, when: Flush) -> Result<Flushed> {
        let _committing = self.committing.lock().await;
        if self.uncommitted().writes == 0 {
            // Every write made so far was taken by a commit that has finished.
            return Ok(Flushed::Durable);
        }
        if let Some(due_in) = self.due(when) {
            return Ok(Flushed::Deferred(due_in));
        }
        let taken = std::mem::take(&mut *self.uncommitted());
        if let Err(e) = self.index.flush().await {
            // Not committed: they wait for the next flush (the index keeps them).
            let mut waiting = self.uncommitted();
            waiting.writes += taken.writes;
            waiting.since = match (waiting.since, taken.since) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            return Err(e);
        }
        Ok(Flushed::Durable)
    }

    fn is_retriable(&self, err: &Error) -> bool {
        err.is_transient()
    }

    async fn health(&self) -> Result<()> {
        self.index.health().await
    }
}
