//! The state of things: the queue's counts, the models with their health and ranking (as
//! `pitcrew queue`, `models` and `select-model` show them), and the server's own health.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use pitcrew_core::TaskKind;
use pitcrew_engine::models::{ModelRow, Selection, model_rows, rank_models};
use pitcrew_llm::{Candidate, Complexity};
use pitcrew_store::QueueSummary;
use serde::{Deserialize, Serialize};
// `IntoParams` is not imported: the `#[utoipa::path]` code calls it by its full path.
use utoipa::ToSchema;

use crate::AppState;
use crate::body::{ApiJson, QueryParams};
use crate::error::{ApiError, ErrorBody};

/// How long `/readyz` waits for the store before calling it unreachable.
const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// Count tasks by status and priority.
#[utoipa::path(
    get,
    path = "/api/v1/queue",
    tag = "queue",
    responses(
        (status = 200, description = "The counts", body = QueueSummary),
        (status = 401, description = "No token, or a wrong one", body = ErrorBody),
    )
)]
pub(crate) async fn queue_stats(
    State(state): State<AppState>,
) -> Result<ApiJson<QueueSummary>, ApiError> {
    Ok(ApiJson::ok(state.store.stats().await?.summary()))
}

/// The model registry with each model's live health: circuit, cooldown, success rate,
/// latency, price.
#[utoipa::path(
    get,
    path = "/api/v1/models",
    tag = "models",
    responses(
        (status = 200, description = "Every model of the registry", body = [ModelRow]),
        (status = 401, description = "No token, or a wrong one", body = ErrorBody),
    )
)]
pub(crate) async fn models(
    State(state): State<AppState>,
) -> Result<ApiJson<Vec<ModelRow>>, ApiError> {
    Ok(ApiJson::ok(
        model_rows(&*state.store, &state.config.registry).await?,
    ))
}

/// What to rank the models for.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SelectQuery {
    /// The task kind to select for (unit_test when not given).
    pub kind: Option<TaskKind>,
    /// low, medium or high (medium when not given).
    pub complexity: Option<Complexity>,
    /// Leave out models whose learned quality is below this (0–1).
    pub min_quality: Option<f64>,
    /// Only models that cost nothing.
    #[serde(default)]
    pub free_only: bool,
    /// A preset or model to prefer.
    pub model: Option<String>,
}

/// Rank the models for a kind of task, with each score component and why models were left
/// out (as `pitcrew select-model`).
#[utoipa::path(
    get,
    path = "/api/v1/models/select",
    tag = "models",
    params(SelectQuery),
    responses(
        (status = 200, description = "Eligible models best first, then the others with their reasons", body = [Candidate]),
        (status = 400, description = "A parameter is unknown or has a bad value", body = ErrorBody),
        (status = 401, description = "No token, or a wrong one", body = ErrorBody),
        (status = 422, description = "`model` names no preset or model (`unknown_model`)", body = ErrorBody),
    )
)]
pub(crate) async fn select_model(
    State(state): State<AppState>,
    QueryParams(query): QueryParams<SelectQuery>,
) -> Result<ApiJson<Vec<Candidate>>, ApiError> {
    let selection = Selection {
        kind: query.kind.unwrap_or(TaskKind::UnitTest),
        complexity: query.complexity.unwrap_or_default(),
        min_quality: query.min_quality,
        free_only: query.free_only,
        prefer: query.model,
    };
    Ok(ApiJson::ok(
        rank_models(&state.config, &*state.store, selection).await?,
    ))
}

/// How the server is.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` (the process is up) or `ready` (and its store answers).
    pub status: &'static str,
}

/// Whether the process is up. Needs no token.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "health",
    security(()),
    responses((status = 200, description = "The process is up", body = Health))
)]
pub(crate) async fn healthz() -> ApiJson<Health> {
    ApiJson::ok(Health { status: "ok" })
}

/// Whether the server can serve: its store answers. Needs no token.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    security(()),
    responses(
        (status = 200, description = "The store answers", body = Health),
        (status = 503, description = "The store does not answer (`store_unreachable`)", body = ErrorBody),
    )
)]
pub(crate) async fn readyz(State(state): State<AppState>) -> Result<ApiJson<Health>, ApiError> {
    let unreachable = |why: String| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unreachable",
            format!("the store does not answer: {why}"),
        )
    };
    match tokio::time::timeout(READY_TIMEOUT, state.store.stats()).await {
        Ok(Ok(_)) => Ok(ApiJson::ok(Health { status: "ready" })),
        Ok(Err(e)) => Err(unreachable(e.to_string())),
        Err(_) => Err(unreachable(format!(
            "no answer within {}s",
            READY_TIMEOUT.as_secs()
        ))),
    }
}
