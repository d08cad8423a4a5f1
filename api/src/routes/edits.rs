//! `POST /documents/{id}/edits`: a text operation on the body, transformed on the
//! server against everything committed since its base, and
//! `GET /documents/{id}/versions/{version}`: the document as it was at a version.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use shared::domain::{DocumentVersion, EditOutcome, TextOperation};
use utoipa::ToSchema;

use super::documents::parse_id;
use crate::http::precondition::etag;
use crate::http::{ApiError, ApiResult, Caller, JsonBody, Problem};
use crate::state::AppState;

/// `POST /documents/{id}/edits`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Edit {
    /// The version the operation was made on.
    #[schema(minimum = 1)]
    pub base_version: u64,
    /// OPS: a JSON array applied from the start of the body; a positive integer keeps
    /// that many characters (Unicode code points), a non-empty string inserts it, a
    /// negative integer deletes that many characters. What it does not reach is kept.
    #[schema(schema_with = ops_schema)]
    pub ops: serde_json::Value,
}

/// OPS as a JSON Schema: the operation type's own.
fn ops_schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    <TextOperation as utoipa::PartialSchema>::schema()
}

#[utoipa::path(
    post, path = "/documents/{id}/edits", tag = "documents", operation_id = "editDocument",
    params(("id" = String, Path, description = "Document id")),
    request_body = Edit,
    responses(
        (status = 200, description = "Committed as the next version; `ops` is the operation as applied to `baseVersion` (= version - 1)", body = EditOutcome, headers(("ETag" = String))),
        (status = 400, description = "Invalid operation (/problems/invalid-operation) or input", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Viewers cannot edit", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such document for the caller", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The base version is older than the operations kept (/problems/base-version-gone): fetch the document and edit again", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The edited body would exceed the limit", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Storage read-only or a backend unavailable: nothing was written", body = Problem, content_type = "application/problem+json"),
        (status = 507, description = "Storage full: nothing was written", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn edit(
    State(state): State<AppState>,
    Caller(user): Caller,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<Edit>,
) -> ApiResult<Response> {
    let id = parse_id(&id)?;
    // Read here rather than by the body extractor, so that a bad operation is
    // /problems/invalid-operation and not a generic invalid input.
    let ops: TextOperation = serde_json::from_value(input.ops)
        .map_err(|e| shared::Error::InvalidOperation(e.to_string()))?;
    let outcome = state
        .documents
        .edit(&user, &id, input.base_version, ops)
        .await?;
    let tag = etag(outcome.version);
    let mut response = Json(outcome).into_response();
    response.headers_mut().insert(header::ETAG, tag);
    Ok(response)
}

#[utoipa::path(
    get, path = "/documents/{id}/versions/{version}", tag = "documents", operation_id = "getDocumentVersion",
    params(("id" = String, Path, description = "Document id"), ("version" = u64, Path, description = "A version, from 1")),
    responses(
        (status = 200, description = "The document exactly as it was at that version", body = DocumentVersion),
        (status = 404, description = "No such document for the caller, or no such version", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn version(
    State(state): State<AppState>,
    Caller(user): Caller,
    Path((id, version)): Path<(String, String)>,
) -> ApiResult<Json<DocumentVersion>> {
    let id = parse_id(&id)?;
    // A version that does not parse names no version: 404, like one never made.
    let version = version
        .parse::<u64>()
        .map_err(|_| ApiError::from(Problem::not_found()))?;
    Ok(Json(state.documents.version(&user, &id, version).await?))
}
