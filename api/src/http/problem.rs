//! RFC 9457 problem details: every error response is `application/problem+json` with a
//! stable `type`. Causes of server errors are logged once here and never shown.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value};
use shared::Error;
use shared::auth::AuthError;
use utoipa::ToSchema;

use super::precondition::{InvalidIfMatch, etag};

/// A problem details object.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// A stable identifier of the kind of problem, e.g. `/problems/version-mismatch`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    /// The id of the request this problem answers (its `x-request-id`), so a report of
    /// it finds the request's log lines. Filled in when the problem becomes a response.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// Extension members (`currentVersion`, `field`…).
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub extensions: Map<String, Value>,
}

impl Problem {
    pub fn new(
        status: StatusCode,
        kind: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            title,
            status: status.as_u16(),
            detail: detail.into(),
            instance: None,
            extensions: Map::new(),
        }
    }

    pub fn with(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.extensions.insert(name.to_owned(), value.into());
        self
    }

    pub fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "/problems/not-found",
            "Not found",
            "no such resource",
        )
    }

    pub fn malformed_json(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "/problems/malformed-json",
            "Malformed JSON",
            detail,
        )
    }

    pub fn invalid(field: &str, detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "/problems/invalid-input",
            "Invalid input",
            detail,
        )
        .with("field", field)
    }

    pub fn too_large(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "/problems/payload-too-large",
            "Payload too large",
            detail,
        )
    }

    /// Past the caller's request budget; `Retry-After` says when the next one fits.
    pub fn rate_limited(
        limit: super::rate_limit::RateLimit,
        retry_after: std::time::Duration,
    ) -> Self {
        let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "/problems/rate-limited",
            "Too many requests",
            format!(
                "one user may make {} requests a second, {} at once; retry in {seconds} s",
                limit.per_second, limit.burst
            ),
        )
        .with("retryAfter", seconds)
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "/problems/unauthorized",
            "Unauthorized",
            detail,
        )
    }
}

impl IntoResponse for Problem {
    fn into_response(mut self) -> Response {
        if self.instance.is_none() {
            self.instance = super::request_id::current().map(|id| id.to_string());
        }
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, axum::Json(&self)).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        match status {
            StatusCode::UNAUTHORIZED => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            StatusCode::TOO_MANY_REQUESTS => {
                if let Some(seconds) = self.extensions.get("retryAfter").and_then(Value::as_u64) {
                    headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
                }
            }
            _ => {}
        }
        if let Some(current) = self
            .extensions
            .get("currentVersion")
            .and_then(Value::as_u64)
        {
            headers.insert(header::ETAG, etag(current));
        }
        response
    }
}

/// An error on its way to becoming a response.
#[derive(Debug)]
pub struct ApiError(pub Problem);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.0.into_response()
    }
}

impl From<Problem> for ApiError {
    fn from(p: Problem) -> Self {
        Self(p)
    }
}

impl From<InvalidIfMatch> for ApiError {
    fn from(_: InvalidIfMatch) -> Self {
        Self(Problem::invalid("If-Match", InvalidIfMatch::DETAIL))
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Unavailable(detail) => {
                tracing::warn!(%detail, "a token could not be checked: the identity provider's keys are unavailable");
                Self(Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "/problems/unavailable",
                    "Temporarily unavailable",
                    "the token cannot be checked now; retry shortly",
                ))
            }
            e => Self(Problem::unauthorized(e.to_string())),
        }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let problem = match e {
            Error::NotFound => Problem::not_found(),
            Error::VersionMismatch { current } => Problem::new(
                StatusCode::PRECONDITION_FAILED,
                "/problems/version-mismatch",
                "Version mismatch",
                format!("the document is at version {current}; fetch it, merge, and retry with If-Match: \"{current}\""),
            )
            .with("currentVersion", current),
            Error::PreconditionRequired => Problem::new(
                StatusCode::PRECONDITION_REQUIRED,
                "/problems/precondition-required",
                "Precondition required",
                "send If-Match with the version you are replacing, e.g. If-Match: \"3\"",
            ),
            Error::Forbidden(why) => Problem::new(StatusCode::FORBIDDEN, "/problems/forbidden", "Forbidden", why),
            Error::AlreadyExists => Problem::new(StatusCode::CONFLICT, "/problems/conflict", "Conflict", "it already exists"),
            Error::Invalid(v) => Problem::invalid(v.field, v.to_string()),
            Error::InvalidQuery(detail) => Problem::new(
                StatusCode::BAD_REQUEST,
                "/problems/invalid-query",
                "Invalid query",
                detail,
            )
            .with("field", "q"),
            Error::TooLarge(detail) => Problem::too_large(detail),
            Error::InvalidOperation(detail) => Problem::new(
                StatusCode::BAD_REQUEST,
                "/problems/invalid-operation",
                "Invalid operation",
                detail,
            ),
            Error::BaseVersionGone { oldest } => Problem::new(
                StatusCode::CONFLICT,
                "/problems/base-version-gone",
                "Base version gone",
                format!("edits are transformed from version {oldest} on; fetch the document and make the edit again on its current version"),
            )
            .with("oldestBaseVersion", oldest),
            Error::Unavailable(detail) => {
                tracing::warn!(%detail, "backend unavailable");
                Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "/problems/unavailable",
                    "Temporarily unavailable",
                    "the service cannot complete this now; retry shortly",
                )
            }
            Error::StorageFull(detail) => {
                tracing::error!(%detail, "storage full: writes are refused until space is freed");
                Problem::new(
                    StatusCode::INSUFFICIENT_STORAGE,
                    "/problems/storage-full",
                    "Storage full",
                    "the server's storage is full: nothing was written; retry once space has been freed",
                )
            }
            Error::StorageReadOnly(detail) => {
                tracing::error!(%detail, "storage read-only: writes are refused until it is writable");
                Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "/problems/storage-read-only",
                    "Storage read-only",
                    "the server's storage is read-only: nothing was written; retry once it is writable again",
                )
            }
            Error::Blocked(detail) => {
                tracing::error!(%detail, "a backend refuses until an operator acts");
                Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "/problems/unavailable",
                    "Temporarily unavailable",
                    "the service cannot complete this now; retry shortly",
                )
            }
            Error::Unknown(cause) => {
                tracing::error!(error = ?cause, "internal error");
                Problem::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "/problems/internal",
                    "Internal error",
                    "something went wrong on our side",
                )
            }
        };
        Self(problem)
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
