//! `/api/v1/metrics`: the figures `pitcrew metrics` prints, gathered and rendered by
//! pitcrew-metrics, so the two agree; and `/metrics`, the same figures in the Prometheus text
//! format followed by this process's own (see [`crate::process_metrics`]), for a scraper.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use pitcrew_core::TaskKind;
use pitcrew_metrics::{Metrics, MetricsError, Selection, Since, render_prometheus};
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

/// Which attempts the figures on `/metrics` are about (every one when nothing is given).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ScrapeQuery {
    /// Only attempts started in this window: a duration back from now (30m, 24h, 7d) or an
    /// RFC 3339 timestamp.
    pub since: Option<String>,
    /// Only this model (its id or registry name).
    pub model: Option<String>,
    /// Only attempts at tasks of this kind.
    pub kind: Option<TaskKind>,
}

/// The Prometheus text format's media type.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

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
    let metrics = gather(&state, query.since, query.model, query.kind).await?;
    Ok(match query.format.unwrap_or_default() {
        MetricsFormat::Json => ApiJson::ok(metrics).into_response(),
        MetricsFormat::Prometheus => prometheus_text(&render_prometheus(&metrics)),
    })
}

/// The figures of the attempts selected, as of now.
async fn gather(
    state: &AppState,
    since: Option<String>,
    model: Option<String>,
    kind: Option<TaskKind>,
) -> Result<Metrics, ApiError> {
    let now = Utc::now();
    let since = (since.as_deref())
        .map(str::parse::<Since>)
        .transpose()
        .map_err(|e| ApiError::bad_request("invalid_query", format!("since: {e}")))?;
    let selection = Selection {
        since: since.map(|since| since.start(now)),
        model,
        kind,
    };
    Ok(pitcrew_metrics::gather(&*state.store, &selection, now).await?)
}

/// `text` as a Prometheus text answer, redacted.
fn prometheus_text(text: &str) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, PROMETHEUS_TEXT)],
        pitcrew_core::redact(text).into_owned(),
    )
        .into_response()
}

/// Everything for a Prometheus scraper, in its text format.
///
/// First the figures of `GET /api/v1/metrics` (`pitcrew_…`, `pitcrew_model_…`,
/// `pitcrew_kind_…`, `pitcrew_run_…`: gauges over the recorded attempts, the same values as
/// its JSON), then this process's own (`pitcrew_server_…`: HTTP requests by route and status
/// with their durations, clients of `/api/v1/events`, the events of the engine working in this
/// process). Needs the token like `/api/v1`.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "metrics",
    params(ScrapeQuery),
    responses(
        (status = 200, description = "The Prometheus text exposition format, version 0.0.4", content_type = "text/plain", body = String),
        (status = 400, description = "A parameter is unknown or has a bad value", body = ErrorBody),
        (status = 401, description = "No token, or a wrong one", body = ErrorBody),
    )
)]
pub(crate) async fn scrape(
    State(state): State<AppState>,
    QueryParams(query): QueryParams<ScrapeQuery>,
) -> Result<Response, ApiError> {
    let metrics = gather(&state, query.since, query.model, query.kind).await?;
    let mut text = render_prometheus(&metrics);
    if let Some(process) = &state.process_metrics {
        text.push_str(&process.render());
    }
    Ok(prometheus_text(&text))
}
