//! Model selection: which models can take a call (filters, each failure a named
//! [`Exclusion`]) and in which order to try them (a score from four components).
//!
//! # Score
//!
//! `score = 0.4 · quality + 0.3 · success + 0.2 · latency + 0.1 · specialization`, each
//! component in 0–1:
//!
//! - **quality**: the moving average of validated result quality (`Router::record_quality`),
//!   starting from the registry's prior. Already 0–1.
//! - **success**: the moving average of call success (1 for a success, 0 for a failure that
//!   was the model's: connection, timeout, 429, 5xx, truncation, content failures), starting
//!   at 1 so untried models get tried. Already 0–1.
//! - **latency**: `10 s / (10 s + latency)` over the moving average of successful calls'
//!   latency (starting from the registry's prior): 1 for an instant reply, 0.5 at 10 s,
//!   0.25 at 30 s. An absolute scale, so a model's score does not depend on which others are
//!   in the running.
//! - **specialization**: 1 when the model has a specialization the requirements want, 0.5
//!   when it is `balanced` (a generalist), else 0.
//!
//! Eligible models are ranked by score (the preferred model first, the fallback chain's
//! order breaking ties); excluded ones follow with their reasons.

use std::cmp::Ordering;
use std::fmt;

use chrono::{DateTime, Utc};
use pitcrew_core::TaskKind;
use serde::Serialize;

use crate::health::{ModelState, Unavailable};
use crate::registry::{ModelSpec, Specialization};

const WEIGHT_QUALITY: f64 = 0.4;
const WEIGHT_SUCCESS: f64 = 0.3;
const WEIGHT_LATENCY: f64 = 0.2;
const WEIGHT_SPECIALIZATION: f64 = 0.1;
/// The latency at which the latency component is 0.5.
const LATENCY_REFERENCE_MS: f64 = 10_000.0;
/// A model must leave at least this many tokens for the reply after the prompt.
const MIN_REPLY_TOKENS: u64 = 1024;

pitcrew_core::named_enum! {
    /// How hard a task is; decides the specialization selection favours.
    pub enum Complexity ("complexity") {
        Low = "low",
        Medium = "medium",
        High = "high",
    }
}

// `named_enum!` derives a fixed set of traits, so `Default` is written out.
#[allow(clippy::derivable_impls)]
impl Default for Complexity {
    fn default() -> Self {
        Complexity::Medium
    }
}

/// What a call needs from a model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Requirements {
    pub kind: Option<TaskKind>,
    pub complexity: Complexity,
    /// Estimated prompt size; the router raises it to its own estimate of the messages.
    pub prompt_tokens: u64,
    /// The most tokens the reply may take (`max_tokens`); lowered per model to what its
    /// context leaves after the prompt.
    pub max_output_tokens: u32,
    pub min_quality: Option<f64>,
    /// The most one call may cost at worst (prompt plus `max_output_tokens` at list price).
    pub max_cost_usd: Option<f64>,
    pub free_only: bool,
    /// A preset or model name to try first; the fallback chain follows it.
    pub prefer: Option<String>,
}

impl Default for Requirements {
    fn default() -> Self {
        Requirements {
            kind: None,
            complexity: Complexity::Medium,
            prompt_tokens: 0,
            max_output_tokens: 8192,
            min_quality: None,
            max_cost_usd: None,
            free_only: false,
            prefer: None,
        }
    }
}

impl Requirements {
    /// The specializations that fit: speed for simple work, quality for hard work (and
    /// reasoning for hard fixes, implementations and refactorings), a generalist between.
    pub fn wanted(&self) -> Vec<Specialization> {
        match self.complexity {
            Complexity::Low => vec![Specialization::Speed],
            Complexity::Medium => vec![Specialization::Balanced],
            Complexity::High => match self.kind {
                Some(TaskKind::Fix | TaskKind::Implement | TaskKind::Refactor) => {
                    vec![Specialization::Quality, Specialization::Reasoning]
                }
                _ => vec![Specialization::Quality],
            },
        }
    }
}

/// Why a model cannot take the call.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "exclusion", rename_all = "snake_case")]
pub enum Exclusion {
    /// Neither in the fallback chain nor the preferred model.
    NotInPool,
    ProviderNotConfigured {
        provider: String,
    },
    MissingKey {
        variable: String,
    },
    ContextTooSmall {
        needed: u64,
        window: u64,
    },
    NotFree,
    BelowMinQuality {
        quality: f64,
        min: f64,
    },
    OverCostLimit {
        estimated_usd: f64,
        limit_usd: f64,
    },
    OverBudget {
        estimated_usd: f64,
        remaining_usd: f64,
    },
    /// The provider asked for a pause (rate limit, quota, credit) or the circuit is open.
    CoolingDown {
        until: DateTime<Utc>,
        reason: String,
    },
}

impl Exclusion {
    /// Whether time alone lifts it.
    pub fn is_transient(&self) -> bool {
        matches!(self, Exclusion::CoolingDown { .. })
    }
}

impl fmt::Display for Exclusion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exclusion::NotInPool => f.write_str("not in the fallback chain"),
            Exclusion::ProviderNotConfigured { provider } => {
                write!(f, "provider `{provider}` is not configured")
            }
            Exclusion::MissingKey { variable } => write!(f, "{variable} is not set"),
            Exclusion::ContextTooSmall { needed, window } => {
                write!(f, "needs {needed} tokens of context, has {window}")
            }
            Exclusion::NotFree => f.write_str("not free"),
            Exclusion::BelowMinQuality { quality, min } => {
                write!(f, "quality {quality:.2} below {min:.2}")
            }
            Exclusion::OverCostLimit {
                estimated_usd,
                limit_usd,
            } => write!(
                f,
                "a call may cost ${estimated_usd:.4}, over the ${limit_usd:.4} limit"
            ),
            Exclusion::OverBudget {
                estimated_usd,
                remaining_usd,
            } => write!(
                f,
                "a call may cost ${estimated_usd:.4}, more than the ${remaining_usd:.4} left in the budget"
            ),
            Exclusion::CoolingDown { until, reason } => {
                write!(
                    f,
                    "cooling down until {} ({reason})",
                    until.format("%H:%M:%S UTC")
                )
            }
        }
    }
}

/// The score's components, each 0–1 (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Components {
    pub quality: f64,
    pub success: f64,
    pub latency: f64,
    pub specialization: f64,
}

impl Components {
    pub fn score(&self) -> f64 {
        WEIGHT_QUALITY * self.quality
            + WEIGHT_SUCCESS * self.success
            + WEIGHT_LATENCY * self.latency
            + WEIGHT_SPECIALIZATION * self.specialization
    }
}

/// One model as selection sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Candidate {
    /// The registry name.
    pub model: String,
    pub provider: String,
    /// The provider's model id.
    pub id: String,
    pub score: f64,
    pub components: Components,
    /// The worst-case price of one call (prompt plus the allowed reply at list price).
    pub estimated_cost_usd: f64,
    /// Empty when the model is eligible.
    pub excluded: Vec<Exclusion>,
}

impl Candidate {
    pub fn is_eligible(&self) -> bool {
        self.excluded.is_empty()
    }
}

/// What selection knows besides the model itself.
pub(crate) struct Facts<'a> {
    pub now: DateTime<Utc>,
    pub in_pool: bool,
    /// `None`: not configured; `Some(Some(var))`: configured, key missing from `var`.
    pub provider: Option<Option<&'a str>>,
    /// The smallest budget remaining (task or run), when any is limited.
    pub budget_left: Option<f64>,
}

/// The reply tokens a model can give after the prompt, at most the requested amount.
pub(crate) fn reply_tokens(spec: &ModelSpec, req: &Requirements) -> u64 {
    u64::from(req.max_output_tokens).min(spec.context.saturating_sub(req.prompt_tokens))
}

pub(crate) fn evaluate(
    spec: &ModelSpec,
    state: &ModelState,
    req: &Requirements,
    facts: &Facts<'_>,
) -> Candidate {
    let health = &state.health;
    let wanted = req.wanted();
    let specialization = if spec.specializations.iter().any(|s| wanted.contains(s)) {
        1.0
    } else if spec.specializations.contains(&Specialization::Balanced) {
        0.5
    } else {
        0.0
    };
    let components = Components {
        quality: health.quality,
        success: health.success_rate,
        latency: LATENCY_REFERENCE_MS / (LATENCY_REFERENCE_MS + health.latency_ms.max(0.0)),
        specialization,
    };
    let estimated_cost_usd = spec.price(req.prompt_tokens, reply_tokens(spec, req));

    let mut excluded = Vec::new();
    if !facts.in_pool {
        excluded.push(Exclusion::NotInPool);
    }
    match facts.provider {
        None => excluded.push(Exclusion::ProviderNotConfigured {
            provider: spec.provider.clone(),
        }),
        Some(Some(variable)) => excluded.push(Exclusion::MissingKey {
            variable: variable.to_string(),
        }),
        Some(None) => {}
    }
    let needed = req.prompt_tokens + MIN_REPLY_TOKENS.min(u64::from(req.max_output_tokens));
    if needed > spec.context {
        excluded.push(Exclusion::ContextTooSmall {
            needed,
            window: spec.context,
        });
    }
    if req.free_only && !spec.free {
        excluded.push(Exclusion::NotFree);
    }
    if let Some(min) = req.min_quality
        && health.quality < min
    {
        excluded.push(Exclusion::BelowMinQuality {
            quality: health.quality,
            min,
        });
    }
    if let Some(limit_usd) = req.max_cost_usd
        && estimated_cost_usd > limit_usd
    {
        excluded.push(Exclusion::OverCostLimit {
            estimated_usd: estimated_cost_usd,
            limit_usd,
        });
    }
    if let Some(remaining_usd) = facts.budget_left
        && estimated_cost_usd > remaining_usd
    {
        excluded.push(Exclusion::OverBudget {
            estimated_usd: estimated_cost_usd,
            remaining_usd,
        });
    }
    if let Some(Unavailable::Until(until, reason)) = state.blocked(facts.now) {
        excluded.push(Exclusion::CoolingDown { until, reason });
    }
    Candidate {
        model: spec.name.clone(),
        provider: spec.provider.clone(),
        id: spec.id.clone(),
        score: components.score(),
        components,
        estimated_cost_usd,
        excluded,
    }
}

/// Orders candidates: eligible by score (the preferred model first, `chain_position`
/// breaking ties), then those only waiting for a cooldown, then the rest.
pub(crate) fn rank(
    candidates: &mut [Candidate],
    preferred: Option<&str>,
    chain_position: impl Fn(&str) -> usize,
) {
    let group = |c: &Candidate| {
        if c.is_eligible() {
            0
        } else if c.excluded.iter().all(Exclusion::is_transient) {
            1
        } else {
            2
        }
    };
    candidates.sort_by(|a, b| {
        group(a)
            .cmp(&group(b))
            .then_with(|| {
                let pa = preferred == Some(a.model.as_str());
                let pb = preferred == Some(b.model.as_str());
                pb.cmp(&pa)
            })
            .then_with(|| b.score.partial_cmp(&a.score).unwrap_or(Ordering::Equal))
            .then_with(|| chain_position(&a.model).cmp(&chain_position(&b.model)))
    });
}
