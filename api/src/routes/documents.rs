//! `/documents`: create, read, list, replace, patch, delete.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use shared::domain::{Body, Collaborators, Document, DocumentId, Role, Title};
use shared::service::{NewDocument, Replacement};
use std::collections::BTreeMap;
use utoipa::ToSchema;

use crate::http::QueryParams;
use crate::http::pagination::{PageParams, encode_cursor};
use crate::http::precondition::{etag, if_match};
use crate::http::{ApiError, ApiResult, Caller, JsonBody, Problem};
use crate::state::AppState;

/// `POST /documents`. Unknown fields are refused (400), so a misspelt field never
/// silently does nothing.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDocument {
    /// 1 to 200 characters, not blank, no control characters (the pattern, in
    /// ECMA-262 syntax).
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    pub title: String,
    /// Up to 131072 bytes of UTF-8; empty when absent.
    #[serde(default)]
    #[schema(max_length = 131072)]
    pub body: String,
    /// User id → `editor` or `viewer`; at most 100; not the owner.
    #[serde(default)]
    #[schema(schema_with = collaborators_schema)]
    pub collaborators: BTreeMap<String, Role>,
}

/// `PUT /documents/{id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplaceDocument {
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    pub title: String,
    #[schema(max_length = 131072)]
    pub body: String,
}

/// Collaborators as a JSON Schema: user ids as keys, roles as values, at most 100.
fn collaborators_schema() -> utoipa::openapi::Object {
    use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property_names(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some("^[A-Za-z0-9._@:+-]{1,128}$")),
        ))
        .additional_properties(Some(AdditionalProperties::RefOr(
            utoipa::openapi::Ref::from_schema_name("Role").into(),
        )))
        .max_properties(Some(shared::domain::MAX_COLLABORATORS))
        .build()
}

/// A page of documents.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DocumentList {
    pub items: Vec<Document>,
    /// Absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

pub(crate) fn parse_title(raw: String) -> Result<Title, ApiError> {
    Title::parse(raw).map_err(|e| Problem::invalid(e.field, e.to_string()).into())
}

/// Bodies over the limit are 413, not 400: the request is well-formed but too big.
pub(crate) fn parse_body(raw: String) -> Result<Body, ApiError> {
    Body::parse(raw).map_err(|e| {
        Problem::too_large(e.to_string())
            .with("field", "body")
            .into()
    })
}

pub(crate) fn parse_collaborators(raw: BTreeMap<String, Role>) -> Result<Collaborators, ApiError> {
    raw.into_iter()
        .map(|(user, role)| {
            shared::domain::UserId::parse(user)
                .map(|u| (u, role))
                .map_err(|e| Problem::invalid("collaborators", e.to_string()).into())
        })
        .collect()
}

/// Document ids that do not parse name no document: 404, like any other unknown id.
pub(crate) fn parse_id(raw: &str) -> Result<DocumentId, ApiError> {
    DocumentId::parse(raw).map_err(|_| Problem::not_found().into())
}

fn with_etag(status: StatusCode, doc: Document) -> Response {
    let tag = etag(doc.version);
    let mut response = (status, Json(doc)).into_response();
    response.headers_mut().insert(header::ETAG, tag);
    response
}

#[utoipa::path(
    post, path = "/documents", tag = "documents", operation_id = "createDocument",
    request_body = CreateDocument,
    responses(
        (status = 201, description = "Created", body = Document, headers(("ETag" = String), ("Location" = String))),
        (status = 400, description = "Invalid input", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Storage read-only or a backend unavailable: nothing was written", body = Problem, content_type = "application/problem+json"),
        (status = 507, description = "Storage full: nothing was written", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    Caller(user): Caller,
    JsonBody(input): JsonBody<CreateDocument>,
) -> ApiResult<Response> {
    let input = NewDocument {
        title: parse_title(input.title)?,
        body: parse_body(input.body)?,
        collaborators: parse_collaborators(input.collaborators)?,
    };
    let doc = state.documents.create(&user, input).await?;
    let location =
        HeaderValue::from_str(&format!("/documents/{}", doc.id)).expect("ids are header-safe");
    let mut response = with_etag(StatusCode::CREATED, doc);
    response.headers_mut().insert(header::LOCATION, location);
    Ok(response)
}

#[utoipa::path(
    get, path = "/documents/{id}", tag = "documents", operation_id = "getDocument",
    params(("id" = String, Path, description = "Document id")),
    responses(
        (status = 200, description = "The document", body = Document, headers(("ETag" = String))),
        (status = 404, description = "No such document for the caller", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    Caller(user): Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = parse_id(&id)?;
    let (doc, _) = state.documents.get(&user, &id).await?;
    Ok(with_etag(StatusCode::OK, doc))
}

#[utoipa::path(
    get, path = "/documents", tag = "documents", operation_id = "listDocuments",
    params(PageParams),
    responses(
        (status = 200, description = "The caller's documents, newest first", body = DocumentList),
        (status = 400, description = "Bad limit or cursor", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    Caller(user): Caller,
    QueryParams(params): QueryParams<PageParams>,
) -> ApiResult<Json<DocumentList>> {
    let limit = params.limit()?;
    let after = match params.cursor()? {
        None => None,
        Some(raw) => Some(DocumentId::parse(&raw).map_err(|_| {
            ApiError::from(Problem::invalid("cursor", "not a cursor this API issued"))
        })?),
    };
    let page = state.documents.list(&user, limit, after.as_ref()).await?;
    Ok(Json(DocumentList {
        items: page.items,
        next_cursor: page.next.map(|id| encode_cursor(&id.to_string())),
    }))
}

#[utoipa::path(
    put, path = "/documents/{id}", tag = "documents", operation_id = "replaceDocument",
    params(("id" = String, Path), ("If-Match" = String, Header, description = "The version being replaced, e.g. \"3\"")),
    request_body = ReplaceDocument,
    responses(
        (status = 200, description = "Replaced; version + 1", body = Document, headers(("ETag" = String))),
        (status = 403, description = "Viewers cannot edit", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such document", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "Stale If-Match; carries currentVersion", body = Problem, content_type = "application/problem+json"),
        (status = 428, description = "If-Match missing", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Storage read-only or a backend unavailable: nothing was written", body = Problem, content_type = "application/problem+json"),
        (status = 507, description = "Storage full: nothing was written", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn replace(
    State(state): State<AppState>,
    Caller(user): Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonBody(input): JsonBody<ReplaceDocument>,
) -> ApiResult<Response> {
    let id = parse_id(&id)?;
    let expected = if_match(&headers)?;
    let replacement = Replacement {
        title: parse_title(input.title)?,
        body: parse_body(input.body)?,
    };
    let doc = state
        .documents
        .replace(&user, &id, expected, replacement)
        .await?;
    Ok(with_etag(StatusCode::OK, doc))
}

#[utoipa::path(
    patch, path = "/documents/{id}", tag = "documents", operation_id = "patchDocument",
    params(("id" = String, Path), ("If-Match" = String, Header, description = "The version being patched, e.g. \"3\"")),
    request_body(content = Object, content_type = "application/merge-patch+json",
        description = "JSON Merge Patch (RFC 7396) of title, body and collaborators (owner only); null removes a collaborator"),
    responses(
        (status = 200, description = "Patched; version + 1", body = Document, headers(("ETag" = String))),
        (status = 400, description = "Invalid patch", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not allowed", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such document", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "Stale If-Match", body = Problem, content_type = "application/problem+json"),
        (status = 428, description = "If-Match missing", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Storage read-only or a backend unavailable: nothing was written", body = Problem, content_type = "application/problem+json"),
        (status = 507, description = "Storage full: nothing was written", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn patch(
    State(state): State<AppState>,
    Caller(user): Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonBody(patch): JsonBody<serde_json::Value>,
) -> ApiResult<Response> {
    let id = parse_id(&id)?;
    let expected = if_match(&headers)?;
    // Screen the body's size before merging so an oversized body is 413 like on PUT.
    if let Some(body) = patch.get("body").and_then(|b| b.as_str()) {
        parse_body(body.to_owned())?;
    }
    let doc = state.documents.patch(&user, &id, expected, &patch).await?;
    Ok(with_etag(StatusCode::OK, doc))
}

#[utoipa::path(
    delete, path = "/documents/{id}", tag = "documents", operation_id = "deleteDocument",
    params(("id" = String, Path), ("If-Match" = Option<String>, Header, description = "Optional: delete only this version")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "Only the owner can delete", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such document", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "Stale If-Match", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Storage read-only or a backend unavailable: nothing was written", body = Problem, content_type = "application/problem+json"),
        (status = 507, description = "Storage full: nothing was written", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn delete(
    State(state): State<AppState>,
    Caller(user): Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    let id = parse_id(&id)?;
    let expected = if_match(&headers)?;
    state.documents.delete(&user, &id, expected).await?;
    Ok(StatusCode::NO_CONTENT)
}
