//! `/api/v1/metrics`: the figures `pitcrew metrics` prints, gathered and rendered by
//! pitcrew-metrics, so the two agree.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use pitcrew_core::TaskKind;
use pitcrew_metrics::{MetricsError, Selection, Since, render_prometheus};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::body::{ApiJson, QueryParams};
use crate::error::{ApiError, ErrorBody};

/// How the figures are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MetricsFormat {
    /// As `pitcrew metrics --json` prints them.
    #[default]
    Json,
    /// The Prometheus text exposition format, as `pitcrew metrics --prometheus` prints it.
    Prometheus,
}

/// Which attempts the figures are about, and how to write them.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MetricsQuery {
    /// Only attempts started in this window: a duration back from now (30m, 24h, 7d) or an
    /// RFC 3339 timestamp.
    pub since: Option<String>,
    /// Only this model (its id or registry name): the attempts whose last reply it gave and
    /// the calls made to it.
    pub model: Option<String>,
    /// Only attempts at tasks of this kind.
    pub kind: Option<TaskKind>,
    /// json (when not given) or prometheus.
    pub format: Option<MetricsFormat>,
}

impl From<MetricsError> for ApiError {
    fn from(error: MetricsError) -> Self {
        match error {
            MetricsError::Store(e) => e.into(),
            other => ApiError::internal(&other),
        }
    }
}

/// Figures from the recorded attempts: per model, kind and run, and in total.
#[utoipa::path(
    get,
    path = "/api/v1/metrics",
    tag = "metrics",
    params(MetricsQuery),
    responses(
        (status = 200, description = "The figures: JSON as `pitcrew metrics --json` prints them, or Prometheus text with `format=prometheus`",
            content((Object = "application/json"), (String = "text/plain"))),
        (status = 400, description = "A parameter is unknown or has a bad value", body = ErrorBody),
        (status = 401, description = "No token, or a wrong one", body = ErrorBody),
    )
)]
pub(crate) async fn metrics(
    State(state): State<AppState>,
    QueryParams(query): QueryParams<MetricsQuery>,
) -> Result<Response, ApiError> {
    let now = Utc::now();
    let since = (query.since.as_deref())
        .map(str::parse::<Since>)
        .transpose()
        .map_err(|e| ApiError::bad_request("invalid_query", format!("since: {e}")))?;
    let selection = Selection {
        since: since.map(|since| since.start(now)),
        model: query.model,
        kind: query.kind,
    };
    let metrics = pitcrew_metrics::gather(&*state.store, &selection, now).await?;
    Ok(match query.format.unwrap_or_default() {
        MetricsFormat::Json => ApiJson::ok(metrics).into_response(),
        MetricsFormat::Prometheus => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            pitcrew_core::redact(&render_prometheus(&metrics)).into_owned(),
        )
            .into_response(),
    })
}
