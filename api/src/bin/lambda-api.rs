//! The Lambda `api` function: the REST router `docfan serve` serves, behind an API
//! Gateway HTTP API (payload v2), on the AWS adapters.
//!
//! Environment: the AWS adapters' variables (see `shared::aws::config`: the documents,
//! members, audit and analysis tables, and OpenSearch) and token verification's
//! (`shared::auth::env`: `DOCFAN_JWT_SECRET`, or an identity provider's
//! `DOCFAN_JWT_JWKS_URL`, with `DOCFAN_JWT_ISSUER`, `DOCFAN_JWT_AUDIENCE`…); logs follow
//! `RUST_LOG` and `DOCFAN_LOG_FORMAT` (JSON unless set to `human`). Each user's request
//! budget is `DOCFAN_RATE_LIMIT_PER_SECOND` and `DOCFAN_RATE_LIMIT_BURST`, per instance.

// A binary sees all of its package's dependencies; the library is where unused ones are caught.
#![allow(unused_crate_dependencies)]

use api::commands::serve::App;
use api::http::rate_limit::RateLimit;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::telemetry::init(shared::aws::config::log_format());
    shared::aws::config::require(shared::aws::config::required::API)?;
    let app = App::from_aws_env(RateLimit::from_env()?).await?;
    lambda_http::run(app.router).await
}
