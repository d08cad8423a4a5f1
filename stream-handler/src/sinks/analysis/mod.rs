//! The analysis sink: puts a job for (document, version) on the [`AnalysisQueue`] when
//! a change touched the title or the body. The embedded queue remembers the newest
//! version each document enqueued, so a redelivered change enqueues nothing (SQS relies
//! on the worker being idempotent); the worker ([`crate::analysis`]) does the rest.
//!
//! With [`AnalysisSinkConfig::enqueue_at_flush`] the jobs of a batch are held until its
//! flush and enqueued in one commit ([`super::held`]).

use std::sync::Arc;

use async_trait::async_trait;
use shared::domain::{ChangeEvent, Field};
use shared::ports::{AnalysisJob, AnalysisQueue};
use shared::{Error, Result};

use super::held::Held;
use super::{Flush, Flushed, Sink};
use crate::decode::RecordMeta;

/// How the analysis sink behaves.
#[derive(Debug, Clone, Default)]
pub struct AnalysisSinkConfig {
    /// Whether a batch's jobs are held until its flush and enqueued together (one commit
    /// per batch on the embedded queue), rather than each as its change is delivered.
    pub enqueue_at_flush: bool,
}

pub struct AnalysisSink {
    queue: Arc<dyn AnalysisQueue>,
    config: AnalysisSinkConfig,
    held: Held<AnalysisJob>,
}

impl AnalysisSink {
    pub fn new(queue: Arc<dyn AnalysisQueue>, config: AnalysisSinkConfig) -> Self {
        Self {
            queue,
            config,
            held: Held::default(),
        }
    }

    pub fn config(&self) -> &AnalysisSinkConfig {
        &self.config
    }
}

/// Whether a change calls for a new analysis.
pub fn needs_analysis(change: &ChangeEvent) -> bool {
    change.new.is_some() && (change.touches(Field::Title) || change.touches(Field::Body))
}

#[async_trait]
impl Sink for AnalysisSink {
    fn name(&self) -> &'static str {
        "analysis"
    }

    async fn deliver(&self, change: &ChangeEvent, record: &RecordMeta) -> Result<()> {
        // A later body of the document in this batch is analysed instead.
        if !needs_analysis(change) || record.body_superseded {
            return Ok(());
        }
        let job = AnalysisJob {
            document_id: change.document_id,
            version: change.version,
        };
        if self.config.enqueue_at_flush {
            self.held.push(job);
            return Ok(());
        }
        self.queue.enqueue(&job).await?;
        Ok(())
    }

    async fn flush(&self, _when: Flush) -> Result<Flushed> {
        let taken = self.held.take().await;
        let written = self.queue.enqueue_all(taken.items()).await;
        taken.settle(written).map(|()| Flushed::Durable)
    }

    fn is_retriable(&self, err: &Error) -> bool {
        err.is_transient()
    }

    async fn health(&self) -> Result<()> {
        self.queue.depth().await.map(|_| ())
    }
}
