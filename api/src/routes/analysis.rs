//! `GET /documents/{id}/analysis`: the latest text analysis of the document's body.

use axum::Json;
use axum::extract::{Path, State};
use shared::domain::Analysis;

use super::documents::parse_id;
use crate::http::{ApiResult, Caller, Problem};
use crate::state::AppState;

#[utoipa::path(
    get, path = "/documents/{id}/analysis", tag = "analysis", operation_id = "getAnalysis",
    params(("id" = String, Path, description = "Document id")),
    responses(
        (status = 200, description = "The latest analysis", body = Analysis),
        (status = 404, description = "No such document for the caller, or not analysed yet", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    Caller(user): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Analysis>> {
    let id = parse_id(&id)?;
    Ok(Json(state.reads.analysis(&user, &id).await?))
}
