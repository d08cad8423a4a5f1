//! The analysis sink: puts a job for (document, version) on the [`AnalysisQueue`] when
//! a change touched the title or the body. The queue deduplicates by that key, so a
//! redelivered change enqueues nothing; the worker ([`crate::analysis`]) does the rest.

use std::sync::Arc;

use async_trait::async_trait;
use shared::domain::{ChangeEvent, Field};
use shared::ports::{AnalysisJob, AnalysisQueue};
use shared::{Error, Result};

use super::Sink;
use crate::decode::RecordMeta;

/// How the analysis sink behaves.
#[derive(Debug, Clone, Default)]
pub struct AnalysisSinkConfig {}

pub struct AnalysisSink {
    queue: Arc<dyn AnalysisQueue>,
    config: AnalysisSinkConfig,
}

impl AnalysisSink {
    pub fn new(queue: Arc<dyn AnalysisQueue>, config: AnalysisSinkConfig) -> Self {
        Self { queue, config }
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
        self.queue
            .enqueue(&AnalysisJob {
                document_id: change.document_id,
                version: change.version,
            })
            .await?;
        Ok(())
    }

    fn is_retriable(&self, err: &Error) -> bool {
        err.is_transient()
    }

    async fn health(&self) -> Result<()> {
        self.queue.depth().await.map(|_| ())
    }
}
