use async_trait::async_trait;

use crate::Result;
use crate::domain::{Analysis, ChangeEvent, Document};

/// Live notifications to the collaborators subscribed to a document.
#[async_trait]
pub trait Notifier: Send + Sync + 'static {
    /// Sends the change to every subscriber of the document who may read its latest
    /// state; a subscriber who lost access gets `access.revoked` and is unsubscribed; a
    /// deletion ends every subscription. Connections found gone are removed.
    ///
    /// Errors: [`Error::Unavailable`](crate::Error::Unavailable) when subscribers could not
    /// be looked up; failures to reach single connections are not errors.
    async fn publish_change(&self, change: &ChangeEvent) -> Result<()>;

    /// Sends `analysis.completed` to the subscribers of `document` who may read it.
    /// Errors: `Unavailable`, as above.
    async fn publish_analysis(&self, document: &Document, analysis: &Analysis) -> Result<()>;
}
