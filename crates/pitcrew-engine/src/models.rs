//! The models as `pitcrew models` and `select-model` and the HTTP API show them: the
//! registry with the live health every worker of the store shares, and the router's ranking
//! for a kind of task.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use pitcrew_config::LoadedConfig;
use pitcrew_core::{TaskKind, UnknownName};
use pitcrew_llm::{Candidate, CircuitState, Complexity, Registry, Requirements, circuit_state};
use pitcrew_store::{Store, StoreError};
use serde::Serialize;

use crate::EngineError;

/// How many recent attempts the latency percentiles are taken over.
const LATENCY_SAMPLES: u32 = 5000;

/// One model of the registry with its live health.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ModelRow {
    /// The registry name.
    pub name: String,
    pub provider: String,
    /// The provider's model id.
    pub id: String,
    /// The presets that name this model.
    pub presets: Vec<String>,
    /// Whether the model is in the fallback chain (the routing pool).
    pub in_fallback: bool,
    pub free: bool,
    /// Context window in tokens.
    pub context: u64,
    /// USD per million prompt tokens.
    pub price_in_per_mtok: f64,
    /// USD per million reply tokens.
    pub price_out_per_mtok: f64,
    /// `closed`, `half-open` or `open until HH:MM:SS`.
    pub circuit: String,
    /// The end of a cooldown the provider asked for (rate limit, quota), while it lasts.
    pub cooldown_until: Option<DateTime<Utc>>,
    pub cooldown_reason: Option<String>,
    /// Share of recent calls that succeeded, once there were any.
    pub success_rate: Option<f64>,
    /// The median latency of recent attempts, in milliseconds.
    pub p50_latency_ms: Option<u64>,
    /// Calls the success rate is learned from.
    pub calls_seen: u64,
}

/// Every model of `registry`, in its order, with the health stored in `store`.
pub async fn model_rows(
    store: &dyn Store,
    registry: &Registry,
) -> Result<Vec<ModelRow>, StoreError> {
    let health: BTreeMap<String, _> = store
        .model_health()
        .await?
        .into_iter()
        .map(|h| (h.model.clone(), h))
        .collect();
    let mut latencies: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (model, latency) in store.recent_latencies(LATENCY_SAMPLES).await? {
        latencies.entry(model).or_default().push(latency);
    }
    let now = Utc::now();
    let rows = registry
        .models()
        .iter()
        .map(|m| {
            let h = health.get(&m.name);
            let circuit = match h.map(|h| circuit_state(h, now)) {
                None | Some(CircuitState::Closed) => "closed".to_string(),
                Some(CircuitState::HalfOpen) => "half-open".to_string(),
                Some(CircuitState::Open { until }) => {
                    format!("open until {}", until.format("%H:%M:%S"))
                }
            };
            let cooling = h.and_then(|h| {
                h.cooldown_until
                    .filter(|t| *t > now)
                    .map(|t| (t, h.cooldown_reason.clone()))
            });
            ModelRow {
                name: m.name.clone(),
                provider: m.provider.clone(),
                id: m.id.clone(),
                presets: registry
                    .presets()
                    .iter()
                    .filter(|(_, target)| **target == m.name)
                    .map(|(preset, _)| preset.clone())
                    .collect(),
                in_fallback: registry.fallback().contains(&m.name),
                free: m.free,
                context: m.context,
                price_in_per_mtok: m.price_in * 1e6,
                price_out_per_mtok: m.price_out * 1e6,
                circuit,
                cooldown_until: cooling.as_ref().map(|(t, _)| *t),
                cooldown_reason: cooling.and_then(|(_, r)| r),
                success_rate: h.filter(|h| h.samples > 0).map(|h| h.success_rate),
                p50_latency_ms: latencies
                    .get(&m.id)
                    .and_then(|samples| pitcrew_core::percentile(samples, 0.5)),
                calls_seen: h.map_or(0, |h| h.samples),
            }
        })
        .collect();
    Ok(rows)
}

/// What a ranking is for.
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    pub kind: TaskKind,
    pub complexity: Complexity,
    /// Leave out models whose learned quality is below this (0–1).
    pub min_quality: Option<f64>,
    /// Only models that cost nothing (also when `models.free_only` says so).
    pub free_only: bool,
    /// A preset or model to prefer.
    pub prefer: Option<String>,
}

/// Why models could not be ranked.
#[derive(Debug, thiserror::Error)]
pub enum RankError {
    #[error(transparent)]
    UnknownModel(#[from] UnknownName),
    #[error(transparent)]
    Setup(#[from] EngineError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Every model of the registry as the router ranks it for `selection`, with the health the
/// store holds: the eligible ones best first, then the others with why they were left out.
pub async fn rank_models(
    config: &LoadedConfig,
    store: &dyn Store,
    selection: Selection,
) -> Result<Vec<Candidate>, RankError> {
    if let Some(name) = &selection.prefer {
        config.resolve(Some(name))?;
    }
    let router = crate::router(config)?;
    router.merge_health(&store.model_health().await?);
    Ok(router.select(&Requirements {
        kind: Some(selection.kind),
        complexity: selection.complexity,
        min_quality: selection.min_quality,
        free_only: selection.free_only || config.config.models.free_only,
        max_output_tokens: config.config.models.max_tokens,
        prefer: selection.prefer,
        ..Requirements::default()
    }))
}
