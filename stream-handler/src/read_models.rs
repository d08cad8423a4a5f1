//! What the REST API reads from the fan-out: the search index, the audit trail and the
//! analyses. Trait objects, so the embedded and the AWS adapters serve the same routes.

use std::sync::Arc;

use shared::ports::{AnalysisStore, AuditLog, SearchIndex};

#[derive(Clone)]
pub struct ReadModels {
    pub search: Arc<dyn SearchIndex>,
    pub audit: Arc<dyn AuditLog>,
    pub analyses: Arc<dyn AnalysisStore>,
}
