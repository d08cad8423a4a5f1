//! The search sink: keeps the full-text index in step with the documents.
//!
//! A creation or update upserts the new state with its readers; a deletion leaves a
//! tombstone at the deletion's version. The index guards both by version, so a
//! redelivered or late record never replaces a newer state. Writes are committed once
//! per batch, in [`Sink::flush`], not once per record.

use std::sync::Arc;

use async_trait::async_trait;
use shared::domain::ChangeEvent;
use shared::ports::{SearchDocument, SearchIndex};
use shared::{Error, Result};

use super::Sink;
use crate::decode::RecordMeta;

/// How the search sink behaves.
#[derive(Debug, Clone, Default)]
pub struct SearchSinkConfig {
    /// Skip the commit at the end of each batch (the caller flushes on its own).
    pub defer_flush: bool,
}

pub struct SearchSink {
    index: Arc<dyn SearchIndex>,
    config: SearchSinkConfig,
}

impl SearchSink {
    pub fn new(index: Arc<dyn SearchIndex>, config: SearchSinkConfig) -> Self {
        Self { index, config }
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
        Ok(())
    }

    async fn flush(&self) -> Result<()> {
        if self.config.defer_flush {
            return Ok(());
        }
        self.index.flush().await
    }

    fn is_retriable(&self, err: &Error) -> bool {
        err.is_transient()
    }

    async fn health(&self) -> Result<()> {
        self.index.health().await
    }
}
