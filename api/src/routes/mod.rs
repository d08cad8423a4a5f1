//! The REST routes and the OpenAPI document generated from them.

pub mod documents;
pub mod system;

use axum::Router;
use axum::routing::get;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "docfan", description = "Collaborative documents with change fan-out. Errors are RFC 9457 problem details."),
    paths(
        documents::create, documents::get, documents::list, documents::replace,
        documents::patch, documents::delete,
        system::healthz, system::openapi, system::metrics,
    ),
    components(schemas(crate::http::Problem)),
    modifiers(&BearerAuth),
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
        .route("/healthz", get(system::healthz))
        .route("/openapi.json", get(system::openapi))
        .route("/metrics", get(system::metrics))
}
