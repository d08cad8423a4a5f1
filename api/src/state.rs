//! What the REST handlers share: the services and ports, built once by the driver.

use std::sync::Arc;

use shared::auth::TokenAuthority;

use crate::http::rate_limit::UserRateLimiter;
use shared::clock::Clock;
use shared::metrics::Metrics;
use shared::service::{DocumentService, ReadService};

#[derive(Clone)]
pub struct AppState {
    pub documents: DocumentService,
    pub tokens: Arc<TokenAuthority>,
    pub clock: Arc<dyn Clock>,
    /// The registry `/metrics` renders; the router counts requests into its HTTP part.
    pub metrics: Metrics,
    /// Search, history and analysis, behind the same access question as the documents.
    pub reads: ReadService,
    /// Each user's REST request budget.
    pub rate_limit: Arc<UserRateLimiter>,
}
