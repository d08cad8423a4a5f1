//! HTTP plumbing shared by the routes: problem details, the authenticated caller and
//! its request budget, JSON bodies, preconditions, pagination, request ids with the
//! request log line, and the count of each request for `/metrics`.

pub mod auth;
pub mod json;
pub mod metrics;
pub mod pagination;
pub mod precondition;
pub mod problem;
pub mod query;
pub mod rate_limit;
pub mod request_id;

pub use auth::Caller;
pub use json::JsonBody;
pub use problem::{ApiError, ApiResult, Problem};
pub use query::QueryParams;
