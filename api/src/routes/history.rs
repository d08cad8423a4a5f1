//! `GET /documents/{id}/history` and `GET /documents/{id}/history/{version}`: the
//! document's audit trail, for its owner and collaborators.

use axum::Json;
use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use serde::Serialize;
use shared::domain::{AuditEntry, ChangeKind, Field};
use utoipa::ToSchema;

use super::documents::parse_id;
use crate::http::QueryParams;
use crate::http::pagination::{PageParams, encode_cursor};
use crate::http::{ApiError, ApiResult, Caller, Problem};
use crate::state::AppState;

/// One change in a document's history (without its detail).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryItem {
    pub event_id: String,
    pub version: u64,
    pub action: ChangeKind,
    pub actor: String,
    pub at: DateTime<Utc>,
    pub changed_fields: Vec<Field>,
}

impl From<AuditEntry> for HistoryItem {
    fn from(e: AuditEntry) -> Self {
        Self {
            event_id: e.event_id,
            version: e.version,
            action: e.action,
            actor: e.actor.to_string(),
            at: e.at,
            changed_fields: e.changed_fields,
        }
    }
}

/// A page of history, oldest first.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct History {
    pub items: Vec<HistoryItem>,
    /// Absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[utoipa::path(
    get, path = "/documents/{id}/history", tag = "history", operation_id = "getHistory",
    params(("id" = String, Path, description = "Document id"), PageParams),
    responses(
        (status = 200, description = "The document's changes, oldest first", body = History),
        (status = 400, description = "Bad limit or cursor", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such document for the caller", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    Caller(user): Caller,
    Path(id): Path<String>,
    QueryParams(params): QueryParams<PageParams>,
) -> ApiResult<Json<History>> {
    let id = parse_id(&id)?;
    let limit = params.limit()?;
    let after = match params.cursor()? {
        None => None,
        // Versions are stored as signed 64-bit integers: a larger cursor was never
        // issued, and must not wrap around to the first page.
        Some(raw) => Some(
            raw.parse::<u64>()
                .ok()
                .filter(|v| i64::try_from(*v).is_ok())
                .ok_or_else(|| {
                    ApiError::from(Problem::invalid("cursor", "not a cursor this API issued"))
                })?,
        ),
    };
    let mut entries = state.reads.history(&user, &id, after, limit + 1).await?;
    let more = entries.len() > limit;
    entries.truncate(limit);
    let next_cursor = if more {
        entries
            .last()
            .map(|e| encode_cursor(&e.version.to_string()))
    } else {
        None
    };
    Ok(Json(History {
        items: entries.into_iter().map(HistoryItem::from).collect(),
        next_cursor,
    }))
}

#[utoipa::path(
    get, path = "/documents/{id}/history/{version}", tag = "history", operation_id = "getHistoryEntry",
    params(("id" = String, Path, description = "Document id"), ("version" = u64, Path, description = "Document version")),
    responses(
        (status = 200, description = "The change with its detail (body diff, title and collaborator changes)", body = AuditEntry),
        (status = 404, description = "No such document for the caller, or no such version", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    Caller(user): Caller,
    Path((id, version)): Path<(String, String)>,
) -> ApiResult<Json<AuditEntry>> {
    let id = parse_id(&id)?;
    let version: u64 = version
        .parse()
        .map_err(|_| ApiError::from(Problem::not_found()))?;
    Ok(Json(state.reads.history_entry(&user, &id, version).await?))
}
