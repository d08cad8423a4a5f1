//! The notification sink: hands each change to the [`Notifier`], which frames it for
//! the document's subscribers (the WebSocket service decides who may still read it).
//! Frames carry the version, so a redelivered change is dropped by clients that have
//! seen it.

use std::sync::Arc;

use async_trait::async_trait;
use shared::domain::{Analysis, ChangeEvent, Document};
use shared::ports::Notifier;
use shared::{Error, Result};

use super::Sink;
use crate::decode::RecordMeta;

/// How the notification sink behaves.
#[derive(Debug, Clone, Default)]
pub struct NotificationSinkConfig {}

pub struct NotificationSink {
    notifier: Arc<dyn Notifier>,
    config: NotificationSinkConfig,
}

impl NotificationSink {
    pub fn new(notifier: Arc<dyn Notifier>, config: NotificationSinkConfig) -> Self {
        Self { notifier, config }
    }

    pub fn config(&self) -> &NotificationSinkConfig {
        &self.config
    }
}

#[async_trait]
impl Sink for NotificationSink {
    fn name(&self) -> &'static str {
        "notifications"
    }

    async fn deliver(&self, change: &ChangeEvent, _record: &RecordMeta) -> Result<()> {
        self.notifier.publish_change(change).await
    }

    fn is_retriable(&self, err: &Error) -> bool {
        err.is_transient()
    }

    async fn health(&self) -> Result<()> {
        Ok(())
    }
}

/// A notifier for a process with no live connections (operator commands, tests, the
/// fan-out before the WebSocket service is wired): every change reaches no one.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSubscribers;

#[async_trait]
impl Notifier for NoSubscribers {
    async fn publish_change(&self, _change: &ChangeEvent) -> Result<()> {
        Ok(())
    }

    async fn publish_analysis(&self, _document: &Document, _analysis: &Analysis) -> Result<()> {
        Ok(())
    }
}
