//! What the REST handlers share: the services and ports, built once by the driver.

use std::sync::Arc;

use shared::auth::TokenAuthority;

use crate::http::rate_limit::UserRateLimiter;
use shared::clock::Clock;
use shared::service::DocumentService;

/// Writes Prometheus text-format lines for one part of the system.
pub type MetricsSource = Arc<dyn Fn(&mut String) + Send + Sync>;

#[derive(Clone)]
pub struct AppState {
    pub documents: DocumentService,
    pub tokens: Arc<TokenAuthority>,
    pub clock: Arc<dyn Clock>,
    /// Everything `/metrics` reports, beyond the HTTP counters.
    pub metrics: Vec<MetricsSource>,
    /// The fan-out's stores behind search, history and analysis (503 when absent).
    pub read_models: Option<stream_handler::ReadModels>,
    /// Each user's REST request budget.
    pub rate_limit: Arc<UserRateLimiter>,
}
