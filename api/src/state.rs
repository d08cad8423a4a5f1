//! What the REST handlers share: the services and ports, built once by the driver.

use std::sync::Arc;

use shared::auth::TokenAuthority;

use crate::http::rate_limit::UserRateLimiter;
use shared::clock::Clock;
use shared::service::{DocumentService, ReadService};

/// Writes Prometheus text-format lines for one part of the system.
pub type MetricsSource = Arc<dyn Fn(&mut String) + Send + Sync>;

#[derive(Clone)]
pub struct AppState {
    pub documents: DocumentService,
    pub tokens: Arc<TokenAuthority>,
    pub clock: Arc<dyn Clock>,
    /// Everything `/metrics` reports, beyond the HTTP counters.
    pub metrics: Vec<MetricsSource>,
    /// Search, history and analysis, behind the same access question as the documents.
    pub reads: ReadService,
    /// Each user's REST request budget.
    pub rate_limit: Arc<UserRateLimiter>,
}
