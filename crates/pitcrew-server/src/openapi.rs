//! The OpenAPI document: its frame (title, auth, tags) here; every path and schema comes from
//! the routes themselves (`#[utoipa::path]` on each handler, `ToSchema` on each type).

use axum::extract::State;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::AppState;
use crate::body::ApiJson;
use crate::error::ErrorBody;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "pitcrew",
        description = "Queue LLM coding tasks against a git repository, follow them as they \
            run, and read their verified results. Every /api/v1 route and /metrics need \
            `Authorization: Bearer TOKEN` when a token is configured (`[server] token` or \
            PITCREW_SERVER_TOKEN). Errors are `{\"error\": {\"code\": …, \"message\": …}}`. \
            The dashboard at / is a page, not part of this API."
    ),
    modifiers(&BearerToken),
    security(("bearer" = [])),
    tags(
        (name = "tasks", description = "Submit, list, read, cancel and retry tasks; their results' patches"),
        (name = "queue", description = "The queue's counts"),
        (name = "models", description = "The model registry with live health, and the router's ranking"),
        (name = "metrics", description = "Figures from the recorded attempts, as JSON or Prometheus text; /metrics for a scraper"),
        (name = "dashboard", description = "What the dashboard at / shows beyond the other routes"),
        (name = "events", description = "Live events of the tasks this server works"),
        (name = "health", description = "Whether the server is up and ready (no token needed)"),
        (name = "meta", description = "This document"),
    )
)]
pub(crate) struct ApiDoc;

/// The `bearer` security scheme the document's `security` names.
struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// This document.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "meta",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document of this API", content_type = "application/json"),
        (status = 401, description = "No token, or a wrong one", body = ErrorBody),
    )
)]
pub(crate) async fn document(State(state): State<AppState>) -> ApiJson<serde_json::Value> {
    ApiJson::ok(state.openapi.get().cloned().unwrap_or_default())
}
