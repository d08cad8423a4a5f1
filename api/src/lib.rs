//! docfan's REST API: one [`router`] that the local server (`docfan serve`) and the
//! Lambda `api` function both serve, plus the `docfan` command line.
//!
//! - [`routes`]: the handlers, one module per resource, and the OpenAPI document;
//! - [`http`]: problem details, authentication and each user's request budget, JSON
//!   bodies, preconditions, pagination, request ids and the request log line;
//! - [`state`]: what handlers share; [`readiness`]: what `/readyz` checks;
//! - [`server`]: serving a router on a listener until a shutdown signal;
//! - [`commands`]: the `docfan` subcommands; [`admin`]: the admin socket through which
//!   they act on a running server.

// The library's unit tests see the dev-dependencies the integration tests use.
#![cfg_attr(test, allow(unused_crate_dependencies))]

// The `lambda-api` binary's runtime, a dependency of the package for it alone.
#[cfg(feature = "lambda")]
use lambda_http as _;
// The `docfan` binary's allocator (`main.rs`).
use mimalloc as _;

pub mod admin;
pub mod commands;
pub mod http;
pub mod readiness;
pub mod routes;
pub mod server;
pub mod state;

use axum::extract::DefaultBodyLimit;
use axum::{Extension, Router};

pub use readiness::Readiness;
pub use state::AppState;

/// The largest request body accepted, in bytes. A document body is at most 128 KiB of
/// text, which JSON escaping can inflate up to sixfold; anything bigger is refused with
/// 413 before it is read.
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;

/// The REST API with its layers: body limit, metrics, request ids with a tracing span
/// and a log line per request, and problem answers for unknown routes and methods.
/// `/readyz` checks only that the document store answers.
pub fn router(state: AppState) -> Router {
    router_with(state, Readiness::default(), Router::new())
}

/// [`router`] with the driver's readiness checks, and `extra` routes (the local
/// WebSocket endpoint) merged under the same request ids and request logging.
pub fn router_with(state: AppState, readiness: Readiness, extra: Router) -> Router {
    let http_metrics = state.metrics.http.clone();
    routes::routes()
        .fallback(routes::system::not_found)
        .method_not_allowed_fallback(routes::system::method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            http_metrics,
            http::metrics::record,
        ))
        .layer(Extension(readiness))
        .with_state(state)
        .merge(extra)
        .layer(axum::middleware::from_fn(http::request_id::track))
}
