//! The REST routes and the OpenAPI document generated from them.

pub mod analysis;
pub mod documents;
pub mod edits;
pub mod history;
pub mod search;
pub mod system;
pub mod web;

use axum::Router;
use axum::routing::{get, post};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "docfan", description = "Collaborative documents with change fan-out. Errors are RFC 9457 problem details."),
    paths(
        documents::create, documents::get, documents::list, documents::replace,
        documents::patch, documents::delete, edits::edit, edits::version,
        system::healthz, system::readyz, system::openapi, system::metrics,
        search::search, history::list, history::get, analysis::get,
    ),
    components(schemas(crate::http::Problem, system::Ready)),
    modifiers(&BearerAuth, &CommonResponses),
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// Adds the problem responses every operation can give, so the document lists every
/// status the API answers with: 401 and 429 (with `Retry-After`) where a token is
/// needed; 400, 413 and 415 where a body is read; 400 where query parameters or
/// `If-Match` are parsed; 503 everywhere.
/// Also gives `If-Match` its exact syntax.
struct CommonResponses;

impl Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};

        let problem = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/problem+json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("Problem")))
                        .build(),
                )
                .build()
        };
        let mut rate_limited = problem(
            "Past this user's request budget (`/problems/rate-limited`); retry after `Retry-After` seconds",
        );
        rate_limited.headers.insert(
            "Retry-After".to_owned(),
            utoipa::openapi::HeaderBuilder::new()
                .schema(
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .minimum(Some(1)),
                )
                .description(Some("Seconds until the next request fits the budget"))
                .build(),
        );
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                let mut add = |status: &str, response: utoipa::openapi::Response| {
                    operation
                        .responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| response.into());
                };
                let authenticated = operation.security.as_ref().is_some_and(|s| !s.is_empty());
                let has_body = operation.request_body.is_some();
                let parameters = operation.parameters.clone().unwrap_or_default();
                let parses_input = has_body
                    || parameters.iter().any(|p| {
                        matches!(
                            p.parameter_in,
                            utoipa::openapi::path::ParameterIn::Query
                                | utoipa::openapi::path::ParameterIn::Header
                        )
                    });
                if authenticated {
                    add(
                        "401",
                        problem("Missing, malformed, wrongly signed or expired token"),
                    );
                    add("429", rate_limited.clone());
                }
                if parses_input {
                    add("400", problem("Malformed or invalid input"));
                }
                if has_body {
                    add("413", problem("Request or document body too large"));
                    add("415", problem("Content-Type is not JSON"));
                }
                add("503", problem("Temporarily unavailable; retry"));
                if let Some(parameters) = operation.parameters.as_mut() {
                    for parameter in parameters.iter_mut().filter(|p| p.name == "If-Match") {
                        parameter.schema = Some(
                            ObjectBuilder::new()
                                .schema_type(Type::String)
                                .pattern(Some("^(\"[0-9]{1,19}\"|[0-9]{1,19})$"))
                                .build()
                                .into(),
                        );
                    }
                }
            }
        }
    }
}

/// The routes, before the layers that `crate::router` adds.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/documents", get(documents::list).post(documents::create))
        .route(
            "/documents/{id}",
            get(documents::get)
                .put(documents::replace)
                .patch(documents::patch)
                .delete(documents::delete),
        )
        .route("/documents/{id}/edits", post(edits::edit))
        .route("/documents/{id}/versions/{version}", get(edits::version))
        .route("/search", get(search::search))
        .route("/documents/{id}/history", get(history::list))
        .route("/documents/{id}/history/{version}", get(history::get))
        .route("/documents/{id}/analysis", get(analysis::get))
        .route("/healthz", get(system::healthz))
        .route("/readyz", get(system::readyz))
        .route("/openapi.json", get(system::openapi))
        .route("/metrics", get(system::metrics))
        .merge(web::routes())
}
