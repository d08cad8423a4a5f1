//! docfan's REST API: one [`router`] that the local server (`docfan serve`) and the
//! Lambda `api` function both serve, plus the `docfan` command line.
//!
//! - [`routes`]: the handlers, one module per resource, and the OpenAPI document;
//! - [`http`]: problem details, authentication, JSON bodies, preconditions, pagination;
//! - [`state`]: what handlers share;
//! - [`server`]: serving a router on a listener until a shutdown signal;
//! - [`commands`]: the `docfan` subcommands.

pub mod commands;
pub mod http;
pub mod metrics;
pub mod routes;
pub mod server;
pub mod state;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use tower_http::trace::TraceLayer;

pub use state::{AppState, MetricsSource};

/// The largest request body accepted, in bytes. A document body is at most 128 KiB of
/// text, which JSON escaping can inflate up to sixfold; anything bigger is refused with
/// 413 before it is read.
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;

/// The REST API with its layers: body limit, metrics, a tracing span per request, and
/// problem answers for unknown routes and methods.
pub fn router(mut state: AppState) -> Router {
    let http_metrics = std::sync::Arc::new(metrics::HttpMetrics::default());
    let rendered = std::sync::Arc::clone(&http_metrics);
    state.metrics.insert(
        0,
        std::sync::Arc::new(move |out: &mut String| rendered.render(out)),
    );
    routes::routes()
        .fallback(routes::system::not_found)
        .method_not_allowed_fallback(routes::system::method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            http_metrics,
            metrics::record,
        ))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request| {
                tracing::info_span!(
                    "request",
                    method = %request.method(),
                    path = %request.uri().path(),
                    user = tracing::field::Empty,
                )
            }),
        )
        .with_state(state)
}
