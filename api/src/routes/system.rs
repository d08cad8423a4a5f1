//! Operational endpoints: liveness, readiness, the OpenAPI document, Prometheus
//! metrics, and the problem answer for unknown routes.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use super::ApiDoc;
use crate::http::{ApiResult, Problem};
use crate::readiness::{Finding, Readiness};
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` when the document store answers.
    pub status: &'static str,
}

#[utoipa::path(
    get, path = "/healthz", tag = "operations", operation_id = "getHealth",
    responses(
        (status = 200, description = "Serving", body = Health),
        (status = 503, description = "The document store does not answer", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn healthz(State(state): State<AppState>) -> ApiResult<Json<Health>> {
    store_answers(&state).await?;
    Ok(Json(Health { status: "ok" }))
}

/// A read of an id that cannot exist: exercises the store without touching data.
async fn store_answers(state: &AppState) -> shared::Result<()> {
    let probe = shared::domain::DocumentId::parse("00000000-0000-7000-8000-000000000000")
        .expect("a valid v7 uuid");
    state.documents.store().get(&probe).await.map(|_| ())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Ready {
    /// `ready`.
    pub status: &'static str,
    /// Every check and its outcome (`ok`): `store` (the document store answers), and
    /// on one machine `store-writable`, `stream-poller`, `analysis-worker` and
    /// `sink-<name>` for each fan-out sink.
    pub checks: BTreeMap<String, String>,
}

#[utoipa::path(
    get, path = "/readyz", tag = "operations", operation_id = "getReadiness",
    responses(
        (status = 200, description = "Ready to take traffic: the store answers and takes writes, the fan-out runs", body = Ready),
        (status = 503, description = "Not ready: the problem's `checks` say which check failed and why (`/problems/not-ready`)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn readyz(
    State(state): State<AppState>,
    Extension(readiness): Extension<Readiness>,
) -> Result<Json<Ready>, Problem> {
    let store = async {
        let outcome = tokio::time::timeout(crate::readiness::CHECK_TIMEOUT, store_answers(&state))
            .await
            .unwrap_or_else(|_| Err(shared::Error::Unavailable("no answer in time".into())));
        Finding::new("store", outcome.map_err(|e| e.to_string()))
    };
    let (store, others) = tokio::join!(store, readiness.run());
    let findings: Vec<Finding> = std::iter::once(store).chain(others).collect();
    let failing: Vec<&Finding> = findings.iter().filter(|f| f.outcome.is_err()).collect();
    let checks: BTreeMap<String, String> = findings
        .iter()
        .map(|f| {
            let said = match &f.outcome {
                Ok(()) => "ok".to_owned(),
                Err(why) => why.clone(),
            };
            (f.name.clone(), said)
        })
        .collect();
    if failing.is_empty() {
        return Ok(Json(Ready {
            status: "ready",
            checks,
        }));
    }
    let names: Vec<&str> = failing.iter().map(|f| f.name.as_str()).collect();
    for finding in &failing {
        tracing::warn!(check = %finding.name, why = ?finding.outcome, "not ready");
    }
    Err(Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "/problems/not-ready",
        "Not ready",
        format!("failing: {}", names.join(", ")),
    )
    .with("failing", names)
    .with("checks", serde_json::to_value(&checks).unwrap_or_default()))
}

#[utoipa::path(
    get, path = "/openapi.json", tag = "operations", operation_id = "getOpenApi",
    responses((status = 200, description = "This API's OpenAPI 3.1 document"))
)]
pub async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

#[utoipa::path(
    get, path = "/metrics", tag = "operations", operation_id = "getMetrics",
    responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain"))
)]
pub async fn metrics(State(state): State<AppState>) -> Response {
    let mut response = state.metrics.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(shared::metrics::CONTENT_TYPE),
    );
    response
}

pub async fn not_found() -> Problem {
    Problem::not_found()
}

pub async fn method_not_allowed() -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "/problems/method-not-allowed",
        "Method not allowed",
        "this resource does not support that method",
    )
}
