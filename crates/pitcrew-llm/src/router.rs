//! The router: the only layer that retries model calls. For each call it ranks the models
//! (see [`crate::select`]), takes the best one that is ready, and on a failure that another
//! model might not have (rate limit, quota, credit, 5xx, timeout, truncated, stalled or
//! malformed stream, content failure) rotates to the next best model not yet tried for this
//! call; when every model has been tried, one that failed by chance (a cut or malformed
//! stream, a 5xx, a dropped connection) is tried once more before anything waits. It waits
//! only when no model can take the call: exactly as long as its own rate limiters require,
//! for a freed slot, or, when every model has been tried or is cooling down, a jittered
//! exponential backoff (backon) that never ends before the earliest time a provider allowed.
//! Calls that wait are served first come, first served, and a wait is bounded by the call's
//! deadline (the task's), never by a count of rounds; when it runs out, the error says what
//! was waited for: a provider's cooldown until a time, or pitcrew's own pacing.
//!
//! Health is shared by every clone of a [`Router`] (all workers of a process) and, through
//! [`Router::health`] and [`Router::merge_health`], with other processes via the store.

use std::collections::HashMap;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use chrono::Utc;
use pitcrew_core::{ErrorClass, ErrorKind, ModelHealth, Usage};
use serde::Serialize;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::budget::Budget;
use crate::client::{ChatClient, ChatRequest, Completion, Endpoint, Message, StallDeadlines};
use crate::content::{self, Expect};
use crate::error::LlmError;
use crate::fleet::{Fleet, FleetLimits, LimitDecision, SharedLimit};
use crate::health::{
    CircuitState, HealthPolicy, ModelState, Unavailable, circuit_state, until_utc_midnight,
};
use crate::limits::SharedQuota;
use crate::registry::{ModelSpec, QuotaSpec, Registry};
use crate::select::{self, Candidate, Exclusion, Facts, Requirements};

/// How the router behaves; the defaults suit free OpenRouter models.
#[derive(Debug, Clone)]
pub struct RouterSettings {
    /// Infrastructure failures among a model's last [`crate::CIRCUIT_WINDOW`] calls that
    /// open its circuit.
    pub failure_threshold: u32,
    /// How long an open circuit stays open before a probe (jittered; doubled by each failed
    /// probe; longer when the provider asked for more).
    pub circuit_cooldown: Duration,
    /// Cooldown after a 429 that names no wait.
    pub rate_limit_cooldown: Duration,
    /// Cooldown after a 402 or an empty balance: credit rarely appears within minutes.
    pub payment_cooldown: Duration,
    /// Cooldown after a 404 for the model (withdrawn or renamed).
    pub unknown_model_cooldown: Duration,
    /// Calls in flight per model to start with; grows by one per that many successes.
    pub initial_concurrency: u32,
    pub max_concurrency: u32,
    /// First backoff delay when every model has been tried or is cooling down; doubles per
    /// round, with jitter, up to `backoff_max`.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// The longest one call may wait in total unless its request names a deadline; a call
    /// that would have to wait longer fails at once with `retry_after` saying when a model
    /// will be free.
    pub max_wait: Duration,
    /// Stream replies (time to first token, stall detection, live output).
    pub stream: bool,
    /// The run's budget in USD; `None`: unlimited (spending is still counted).
    pub run_budget_usd: Option<f64>,
}

impl Default for RouterSettings {
    fn default() -> Self {
        RouterSettings {
            failure_threshold: 15,
            circuit_cooldown: Duration::from_secs(5),
            rate_limit_cooldown: Duration::from_secs(10),
            payment_cooldown: Duration::from_secs(3600),
            unknown_model_cooldown: Duration::from_secs(3600),
            initial_concurrency: 4,
            max_concurrency: 16,
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            max_wait: Duration::from_secs(300),
            stream: true,
            run_budget_usd: None,
        }
    }
}

/// One routed call.
#[derive(Debug, Clone)]
pub struct RouteRequest {
    pub messages: Vec<Message>,
    pub temperature: f64,
    /// What the reply must be; content checks follow from it.
    pub expect: Expect,
    pub requirements: Requirements,
    /// The task's budget, charged alongside the run's.
    pub task_budget: Option<Budget>,
    /// The latest the call may wait for a model (the task's deadline); `None`: the
    /// settings' `max_wait` from now.
    pub wait_until: Option<std::time::Instant>,
}

/// What the router reports while a call runs (for live output).
#[derive(Debug, Clone, Copy)]
pub enum RouteEvent<'a> {
    /// A call to `model` begins; text streamed before it belonged to an abandoned call.
    Started { model: &'a str },
    /// The next piece of the reply.
    Delta(&'a str),
    /// The call to `model` failed; the router decides what comes next.
    Failed {
        model: &'a str,
        kind: ErrorKind,
        message: &'a str,
    },
    /// No model can take the call yet: it waits, for this reason, until at most `until`.
    Waiting {
        reason: &'a str,
        until: Option<chrono::DateTime<Utc>>,
    },
}

/// One HTTP call the router made, for the attempt's record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallRecord {
    /// The registry name.
    pub model: String,
    /// The provider's model id.
    pub model_id: String,
    pub error_kind: Option<ErrorKind>,
    pub error: Option<String>,
    /// Tokens as reported; estimated when the provider reported none.
    pub usage: Usage,
    /// What the call was charged: the provider's figure, else the registry price × tokens.
    pub cost_usd: f64,
    pub time_to_first_token_ms: Option<u64>,
    pub latency_ms: u64,
}

/// A call that produced a usable reply.
#[derive(Debug, Clone)]
pub struct Routed {
    pub completion: Completion,
    /// The registry name of the model that answered.
    pub model: String,
    /// Its provider's model id.
    pub model_id: String,
    /// Every call made, failed ones first, the answering one last.
    pub calls: Vec<CallRecord>,
}

impl Routed {
    /// Tokens and cost over every call, failed ones included.
    pub fn usage(&self) -> Usage {
        total(&self.calls)
    }
}

/// A call no model could serve.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct RouteError {
    pub kind: ErrorKind,
    pub message: String,
    /// When trying again could succeed (the earliest end of a cooldown), if known.
    pub retry_after: Option<Duration>,
    /// Every call made.
    pub calls: Vec<CallRecord>,
}

impl RouteError {
    pub fn usage(&self) -> Usage {
        total(&self.calls)
    }
}

fn total(calls: &[CallRecord]) -> Usage {
    Usage {
        tokens_in: calls.iter().map(|c| c.usage.tokens_in).sum(),
        tokens_out: calls.iter().map(|c| c.usage.tokens_out).sum(),
        cost_usd: Some(calls.iter().map(|c| c.cost_usd).sum()),
    }
}

/// Routes calls over the registry's models. Cheap to clone; clones share health, limits and
/// the run's budget.
#[derive(Debug, Clone)]
pub struct Router {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    registry: Registry,
    providers: HashMap<String, Endpoint>,
    client: ChatClient,
    settings: RouterSettings,
    policy: HealthPolicy,
    models: Mutex<HashMap<String, ModelState>>,
    /// Limits shared by several models (a provider account's); locked after `models`.
    quotas: Mutex<Vec<QuotaGroup>>,
    /// Signalled whenever a call ends, freeing a concurrency slot or a probe.
    freed: Notify,
    /// Calls waiting for a model line up here (tokio's mutex is fair): first come, first
    /// served.
    line: tokio::sync::Mutex<()>,
    run_budget: Budget,
    /// Set when the process shares its limits and budget with a fleet; the shared counts
    /// then replace this process's own rate limiters and quotas.
    fleet: OnceLock<Fleet>,
}

/// What a call is waiting for, in words and until when.
#[derive(Debug, Clone)]
struct WaitReason {
    text: String,
    until: Option<chrono::DateTime<Utc>>,
}

/// A quota several models share, the models it covers and what they used of it.
#[derive(Debug)]
struct QuotaGroup {
    spec: QuotaSpec,
    members: Vec<String>,
    usage: SharedQuota,
}

/// Why a ready-looking model could not be taken just now.
enum Held {
    /// Our own rate limits (the model's or a shared quota's, here or in the fleet's store):
    /// free at this instant; what holds it, in words.
    Until(Instant, String),
    /// Concurrency cap or probe in flight: free when a call ends.
    Busy,
    /// It began cooling down since the ranking.
    Blocked,
}

impl Router {
    /// A router over `registry`'s models, calling them through `providers` (provider name →
    /// endpoint; a model whose provider is missing is never selected).
    pub fn new(
        registry: Registry,
        providers: impl IntoIterator<Item = (String, Endpoint)>,
        client: ChatClient,
        settings: RouterSettings,
    ) -> Router {
        let models = registry
            .models()
            .iter()
            .map(|spec| {
                let state =
                    ModelState::new(spec, settings.initial_concurrency, settings.max_concurrency);
                (spec.name.clone(), state)
            })
            .collect();
        let quotas = registry
            .quotas()
            .iter()
            .map(|spec| QuotaGroup {
                members: (registry.models().iter())
                    .filter(|m| spec.covers(m))
                    .map(|m| m.name.clone())
                    .collect(),
                usage: SharedQuota::new(quota_limit(spec)),
                spec: spec.clone(),
            })
            .collect();
        let policy = HealthPolicy {
            failure_threshold: settings.failure_threshold.max(1),
            circuit_cooldown: settings.circuit_cooldown,
            rate_limit_cooldown: settings.rate_limit_cooldown,
            payment_cooldown: settings.payment_cooldown,
            unknown_model_cooldown: settings.unknown_model_cooldown,
        };
        Router {
            inner: Arc::new(Inner {
                run_budget: Budget::new(settings.run_budget_usd),
                registry,
                providers: providers.into_iter().collect(),
                client,
                settings,
                policy,
                models: Mutex::new(models),
                quotas: Mutex::new(quotas),
                freed: Notify::new(),
                line: tokio::sync::Mutex::new(()),
                fleet: OnceLock::new(),
            }),
        }
    }

    /// Shares this router's rate limits, quotas and (under `budget_key`) run budget with every
    /// process counting in `limits`. Call it once, before the first call.
    pub fn share_with_fleet(&self, limits: Arc<dyn FleetLimits>, budget_key: Option<String>) {
        let fleet = Fleet { limits, budget_key };
        if self.inner.fleet.set(fleet).is_err() {
            tracing::warn!("the router already shares its limits with a fleet");
        }
    }

    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// The run's budget (spent so far, what is left).
    pub fn run_budget(&self) -> &Budget {
        &self.inner.run_budget
    }

    /// Every model ranked for `requirements`: eligible ones by score with their components,
    /// then the excluded ones with their reasons.
    pub fn select(&self, requirements: &Requirements) -> Vec<Candidate> {
        let preferred = requirements
            .prefer
            .as_deref()
            .and_then(|p| self.inner.registry.resolve(p).ok())
            .map(|m| m.name.clone());
        self.candidates(requirements, preferred.as_deref(), None)
    }

    /// Sends `request` to the best available model, rotating and waiting as described in the
    /// module documentation, and reports progress to `on_event`.
    pub async fn complete(
        &self,
        request: &RouteRequest,
        on_event: &mut (dyn FnMut(RouteEvent<'_>) + Send),
    ) -> Result<Routed, RouteError> {
        let inner = &*self.inner;
        let deadline = request.wait_until.map_or_else(
            || Instant::now() + inner.settings.max_wait,
            Instant::from_std,
        );
        let mut req = request.requirements.clone();
        req.prompt_tokens = req.prompt_tokens.max(estimate_tokens(&request.messages));
        let mut calls: Vec<CallRecord> = Vec::new();
        let preferred = match req.prefer.as_deref().map(|p| inner.registry.resolve(p)) {
            None => None,
            Some(Ok(model)) => Some(model.name.clone()),
            Some(Err(unknown)) => return Err(fail(ErrorKind::Config, unknown.to_string(), calls)),
        };
        let mut backoff = ExponentialBuilder::default()
            .with_min_delay(inner.settings.backoff_min)
            .with_max_delay(inner.settings.backoff_max)
            .without_max_times()
            .with_jitter()
            .build();

        loop {
            let round_start = calls.len();
            let mut tries: HashMap<String, Try> = HashMap::new();
            loop {
                self.check_budgets(request, &calls)?;
                let ctx = Acquire {
                    req: &req,
                    preferred: preferred.as_deref(),
                    request,
                    tries: &tries,
                    deadline,
                };
                let taken = {
                    let _in_line = inner.line.lock().await;
                    self.acquire(&ctx, &calls, on_event).await?
                };
                let Some((spec, permit)) = taken else { break };
                let reserved = self.reserve_in_fleet(spec, &req, &calls).await?;
                let (record, result) = self.call(spec, permit, request, &req, on_event).await;
                if let Some(reserved) = reserved {
                    self.settle_in_fleet(reserved, record.cost_usd).await;
                }
                calls.push(record);
                match result {
                    Ok(completion) => {
                        return Ok(Routed {
                            completion,
                            model: spec.name.clone(),
                            model_id: spec.id.clone(),
                            calls,
                        });
                    }
                    Err(error) => {
                        on_event(RouteEvent::Failed {
                            model: &spec.name,
                            kind: error.kind,
                            message: &error.message,
                        });
                        if is_fatal(&error) {
                            return Err(fail(
                                error.kind,
                                format!("model `{}`: {}", spec.name, error.message),
                                calls,
                            ));
                        }
                        let entry = tries.entry(spec.name.clone()).or_default();
                        entry.count += 1;
                        entry.by_chance = by_chance(&error);
                    }
                }
            }

            // Every model has been tried this round or cannot take the call.
            let ranked = self.candidates(&req, preferred.as_deref(), request.task_budget.as_ref());
            let now = Utc::now();
            let retry_now = ranked.iter().any(Candidate::is_eligible);
            let cooling = earliest_cooldown(&ranked);
            if !retry_now && cooling.is_none() {
                return Err(self.nothing_can_serve(&ranked, calls));
            }
            let round = &calls[round_start..];
            if let Some(last) = round.last()
                && round.iter().all(|c| {
                    c.error_kind.is_some_and(|k| {
                        k.class() == ErrorClass::Content || k == ErrorKind::ContextTooLong
                    })
                })
            {
                // Another round would ask the same models the same question; the caller
                // decides (refine the prompt, pick a bigger model, give up).
                let kind = last.error_kind.unwrap_or(ErrorKind::NoModelAvailable);
                let message = format!("every model failed this call: {}", summary(round));
                return Err(fail(kind, message, calls));
            }
            let provider_wait = if retry_now {
                Duration::ZERO
            } else {
                cooling
                    .as_ref()
                    .and_then(|(until, _)| (*until - now).to_std().ok())
                    .unwrap_or_default()
            };
            let reason = match (&cooling, retry_now) {
                (Some((until, why)), false) => WaitReason {
                    text: format!(
                        "every model is cooling down (the provider asked: {why}) until {}",
                        until.format("%H:%M:%S UTC")
                    ),
                    until: Some(*until),
                },
                _ if round
                    .iter()
                    .all(|c| c.error_kind == Some(ErrorKind::Connection)) =>
                {
                    WaitReason {
                        text: format!("the provider, which cannot be reached ({})", summary(round)),
                        until: None,
                    }
                }
                _ => WaitReason {
                    text: format!(
                        "backing off after every model failed this call ({})",
                        summary(round)
                    ),
                    until: None,
                },
            };
            let delay = backoff
                .next()
                .unwrap_or(inner.settings.backoff_max)
                .max(provider_wait);
            // Never earlier than a provider allowed, never sooner than the backoff says, and
            // never past the call's deadline.
            if Instant::now() + delay > deadline {
                return Err(self.gave_up(&calls, Some(provider_wait), &reason));
            }
            on_event(RouteEvent::Waiting {
                reason: &reason.text,
                until: reason.until,
            });
            tracing::debug!(?delay, "{}", reason.text);
            tokio::time::sleep(delay).await;
        }
    }

    /// Takes the best model that can take the call now, waiting (in line) for our own limits
    /// or a freed slot when that is all that holds every model back. `None` when every
    /// eligible model has had its tries this round (or none is eligible just now).
    async fn acquire(
        &self,
        ctx: &Acquire<'_>,
        calls: &[CallRecord],
        on_event: &mut (dyn FnMut(RouteEvent<'_>) + Send),
    ) -> Result<Option<(&ModelSpec, Permit<'_>)>, RouteError> {
        let inner = &*self.inner;
        let mut announced = false;
        loop {
            // Registered before looking, so a call ending in between still wakes us.
            let mut freed = pin!(inner.freed.notified());
            freed.as_mut().enable();
            let ranked = self.candidates(ctx.req, ctx.preferred, ctx.request.task_budget.as_ref());
            let mut held: Option<(Instant, String)> = None;
            let mut busy: Option<&str> = None;
            // Models not tried this round first; then those whose failure looked like chance.
            for retrying in [false, true] {
                for candidate in ranked.iter().filter(|c| c.is_eligible()) {
                    let allowed = match ctx.tries.get(&candidate.model) {
                        None => !retrying,
                        Some(t) => retrying && t.by_chance && t.count < 2,
                    };
                    if !allowed {
                        continue;
                    }
                    let spec = self.spec(&candidate.model);
                    let tokens = ctx.req.prompt_tokens + select::reply_tokens(spec, ctx.req);
                    let taken = match self.try_take(spec, tokens) {
                        Ok(permit) => self.take_from_fleet(spec, tokens).await.map(|()| permit),
                        Err(held) => Err(held),
                    };
                    match taken {
                        Ok(permit) => return Ok(Some((spec, permit))),
                        Err(Held::Until(at, what)) => {
                            if held.as_ref().is_none_or(|(h, _)| at < *h) {
                                held = Some((at, what));
                            }
                        }
                        Err(Held::Busy) => busy = busy.or(Some(&candidate.model)),
                        Err(Held::Blocked) => {}
                    }
                }
                if held.is_some() || busy.is_some() {
                    break;
                }
            }
            let reason = match (&held, busy) {
                (Some((_, what)), _) => what.clone(),
                (None, Some(model)) => format!(
                    "a free slot on `{model}` (every call it may take at once is in flight)"
                ),
                (None, None) => return Ok(None),
            };
            // Held back only by our own limits, which lift at a known time or when a call
            // ends: wait for that, not a backoff.
            if Instant::now() >= ctx.deadline {
                let reason = WaitReason {
                    text: reason,
                    until: None,
                };
                return Err(self.gave_up(calls, None, &reason));
            }
            if !announced {
                announced = true;
                on_event(RouteEvent::Waiting {
                    reason: &reason,
                    until: None,
                });
            }
            let wake = held.map_or(ctx.deadline, |(at, _)| at).min(ctx.deadline);
            tokio::select! {
                () = tokio::time::sleep_until(wake) => {}
                () = freed => {}
            }
        }
    }

    /// Records the validated quality (0–1) of a result `model` produced; unknown names are
    /// ignored (the registry may have changed since the result was produced).
    pub fn record_quality(&self, model: &str, quality: f64) {
        if let Some(state) = self.models().get_mut(model) {
            state.record_quality(quality, Utc::now());
        }
    }

    /// A snapshot of every model's health, for the store.
    pub fn health(&self) -> Vec<ModelHealth> {
        let models = self.models();
        self.inner
            .registry
            .models()
            .iter()
            .filter_map(|spec| models.get(&spec.name).map(|s| s.health.clone()))
            .collect()
    }

    /// Folds in health read from the store (other workers' observations): the later of two
    /// cooldowns or circuit openings wins, and the newer snapshot's averages.
    pub fn merge_health(&self, from_store: &[ModelHealth]) {
        let mut models = self.models();
        for health in from_store {
            if let Some(state) = models.get_mut(&health.model) {
                state.merge(health);
            }
        }
    }

    fn models(&self) -> MutexGuard<'_, HashMap<String, ModelState>> {
        self.inner
            .models
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn spec(&self, name: &str) -> &ModelSpec {
        self.inner
            .registry
            .get(name)
            .expect("candidates come from the registry")
    }

    fn candidates(
        &self,
        req: &Requirements,
        preferred: Option<&str>,
        task_budget: Option<&Budget>,
    ) -> Vec<Candidate> {
        let inner = &*self.inner;
        let budget_left = [Some(&inner.run_budget), task_budget]
            .into_iter()
            .flatten()
            .filter_map(Budget::remaining_usd)
            .reduce(f64::min);
        let chain = inner.registry.fallback();
        let now = Utc::now();
        let models = self.models();
        let mut candidates: Vec<Candidate> = inner
            .registry
            .models()
            .iter()
            .map(|spec| {
                let provider = inner.providers.get(&spec.provider).map(|endpoint| {
                    (endpoint.api_key.is_none() && !endpoint.api_key_env.is_empty())
                        .then_some(endpoint.api_key_env.as_str())
                });
                let facts = Facts {
                    now,
                    in_pool: preferred == Some(spec.name.as_str()) || chain.contains(&spec.name),
                    provider,
                    budget_left,
                };
                select::evaluate(spec, &models[&spec.name], req, &facts)
            })
            .collect();
        select::rank(&mut candidates, preferred, |name| {
            chain.iter().position(|c| c == name).unwrap_or(usize::MAX)
        });
        candidates
    }

    fn try_take(&self, spec: &ModelSpec, tokens: u64) -> Result<Permit<'_>, Held> {
        let now = Utc::now();
        let mut models = self.models();
        match models.get(&spec.name).ok_or(Held::Blocked)?.blocked(now) {
            Some(Unavailable::Until(..)) => return Err(Held::Blocked),
            Some(Unavailable::Busy) => return Err(Held::Busy),
            None if !models[&spec.name].concurrency.has_room() => return Err(Held::Busy),
            None => {}
        }
        // With a fleet, the store counts every limit (see `take_from_fleet`).
        if self.inner.fleet.get().is_none() {
            let mut quotas = self.quotas();
            let now_ms = now.timestamp_millis();
            let covering: Vec<usize> = (0..quotas.len())
                .filter(|i| quotas[*i].members.contains(&spec.name))
                .collect();
            // Shared quotas are only asked here, and taken from once every limit let the call by.
            for &i in &covering {
                match quotas[i].usage.check(tokens, now_ms) {
                    None => {}
                    Some(LimitDecision::DayUsed { .. }) => {
                        let reason = day_used(&quotas[i].spec);
                        cool_group(
                            &mut models,
                            &quotas[i],
                            until_utc_midnight(now),
                            &reason,
                            now,
                        );
                        return Err(Held::Blocked);
                    }
                    Some(decision) => return Err(held_until(&decision, spec, now)),
                }
            }
            let state = models.get_mut(&spec.name).ok_or(Held::Blocked)?;
            state
                .limits
                .try_take(tokens)
                .map_err(|at| Held::Until(Instant::from_std(at), own_pacing(&spec.name)))?;
            for &i in &covering {
                quotas[i].usage.take(tokens, now_ms);
            }
        }
        let state = models.get_mut(&spec.name).ok_or(Held::Blocked)?;
        let probe = circuit_state(&state.health, now) == CircuitState::HalfOpen;
        state.probing |= probe;
        state.concurrency.in_flight += 1;
        Ok(Permit {
            router: self,
            model: spec.name.clone(),
            probe,
            active: true,
        })
    }

    /// Counts the call under the model's own limits and its shared quotas in the fleet's
    /// store; nothing to do without a fleet (the local limiters took it) or limits.
    async fn take_from_fleet(&self, spec: &ModelSpec, tokens: u64) -> Result<(), Held> {
        let Some(fleet) = self.inner.fleet.get() else {
            return Ok(());
        };
        let mut limits: Vec<SharedLimit> = Vec::new();
        if spec.rpm.is_some() || spec.tpm.is_some() || spec.rpd.is_some() {
            limits.push(model_limit(spec));
        }
        limits.extend(
            (self.quotas().iter())
                .filter(|g| g.members.contains(&spec.name))
                .map(|g| quota_limit(&g.spec)),
        );
        if limits.is_empty() {
            return Ok(());
        }
        let now = Utc::now();
        match fleet.limits.take(&limits, tokens).await {
            Ok(LimitDecision::Granted) => Ok(()),
            Ok(LimitDecision::DayUsed { key }) => {
                let mut models = self.models();
                let quotas = self.quotas();
                let wait = until_utc_midnight(now);
                if let Some(group) = quotas.iter().find(|g| quota_limit(&g.spec).key == key) {
                    cool_group(&mut models, group, wait, &day_used(&group.spec), now);
                } else if let Some(state) = models.get_mut(&spec.name) {
                    let reason = format!(
                        "quota: `{}`'s {} requests of the day (UTC) are used up",
                        spec.name,
                        spec.rpd.unwrap_or_default()
                    );
                    state.cool_down(
                        now + chrono::TimeDelta::from_std(wait).unwrap_or_default(),
                        reason,
                    );
                }
                Err(Held::Blocked)
            }
            Ok(decision) => Err(held_until(&decision, spec, now)),
            Err(error) => {
                tracing::warn!("{error}");
                Err(Held::Until(
                    Instant::now() + Duration::from_secs(1),
                    format!(
                        "the store, to count the call under the fleet's shared limits ({error})"
                    ),
                ))
            }
        }
    }

    /// Reserves the most `spec` can cost for this call in the run's budget the fleet shares,
    /// if it shares one: `(key, amount)` to settle when the call is done.
    async fn reserve_in_fleet(
        &self,
        spec: &ModelSpec,
        req: &Requirements,
        calls: &[CallRecord],
    ) -> Result<Option<(&str, f64)>, RouteError> {
        let Some(fleet) = self.inner.fleet.get() else {
            return Ok(None);
        };
        let (Some(key), Some(limit)) = (&fleet.budget_key, self.inner.settings.run_budget_usd)
        else {
            return Ok(None);
        };
        // The estimate is an upper bound (a generous prompt estimate, the full reply allowance),
        // so settling never carries the sum past the limit.
        let most = spec.price(req.prompt_tokens, select::reply_tokens(spec, req));
        match fleet.limits.reserve(key, limit, most).await {
            Ok(true) => Ok(Some((key, most))),
            Ok(false) => {
                // The run cannot afford this call: this process starts no other.
                self.inner.run_budget.spent_by_others();
                Err(fail(
                    ErrorKind::Budget,
                    format!(
                        "the budget of ${limit:.4} of `{key}` is spent or reserved by the \
                         workers sharing it (this call to `{}` could cost up to ${most:.4})",
                        spec.name
                    ),
                    calls.to_vec(),
                ))
            }
            Err(error) => Err(fail(
                ErrorKind::Connection,
                error.to_string(),
                calls.to_vec(),
            )),
        }
    }

    async fn settle_in_fleet(&self, (key, reserved): (&str, f64), cost_usd: f64) {
        if let Some(fleet) = self.inner.fleet.get()
            && let Err(error) = fleet.limits.settle(key, reserved, cost_usd).await
        {
            // The reservation stays counted: the budget errs towards spent.
            tracing::warn!("{error}");
        }
    }

    /// A provider said a quota is used up: every model sharing a daily quota with `model`
    /// is used up with it, until the provider's time or the next UTC day.
    fn quota_exhausted(&self, model: &str, retry_after: Option<Duration>, message: &str) {
        let now = Utc::now();
        let mut models = self.models();
        let mut quotas = self.quotas();
        for group in quotas
            .iter_mut()
            .filter(|g| g.spec.rpd.is_some() && g.members.iter().any(|m| m == model))
        {
            group.usage.spend_day(now.timestamp_millis());
            let wait = retry_after.unwrap_or_else(|| until_utc_midnight(now));
            let reason = format!(
                "quota: the `{}` quota is used up (`{model}`: {message})",
                group.spec.name
            );
            cool_group(&mut models, group, wait, &reason, now);
        }
    }

    fn quotas(&self) -> MutexGuard<'_, Vec<QuotaGroup>> {
        self.inner
            .quotas
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// One HTTP call to `spec`, its content checked, its cost charged and its outcome
    /// recorded in the model's health.
    async fn call(
        &self,
        spec: &ModelSpec,
        permit: Permit<'_>,
        request: &RouteRequest,
        req: &Requirements,
        on_event: &mut (dyn FnMut(RouteEvent<'_>) + Send),
    ) -> (CallRecord, Result<Completion, LlmError>) {
        let inner = &*self.inner;
        let endpoint = &inner.providers[&spec.provider];
        let chat = ChatRequest {
            model: spec.id.clone(),
            messages: request.messages.clone(),
            temperature: request.temperature,
            max_tokens: u32::try_from(select::reply_tokens(spec, req)).unwrap_or(u32::MAX),
        };
        on_event(RouteEvent::Started { model: &spec.name });
        let started = std::time::Instant::now();
        let mut streamed = 0usize;
        let result = if inner.settings.stream {
            let mut forward = |delta: &str| {
                streamed += delta.len();
                on_event(RouteEvent::Delta(delta));
            };
            // Deadlines learned from this model's streams; the client's idle timeout caps them.
            let (first_token, between_chunks) = self
                .models()
                .get(&spec.name)
                .map(|state| state.stalls.deadlines(Duration::MAX))
                .unwrap_or((Duration::MAX, Duration::MAX));
            let deadlines = StallDeadlines {
                first_token,
                between_chunks,
            };
            inner
                .client
                .stream_within(endpoint, &chat, deadlines, &mut forward)
                .await
        } else {
            inner.client.complete(endpoint, &chat).await
        };
        let latency = started.elapsed();

        let (usage, reported) = match &result {
            Ok(c) => (c.usage, c.usage.tokens_in + c.usage.tokens_out > 0),
            Err(_) => (Usage::default(), false),
        };
        // Unreported tokens are estimated: the prompt (unless the provider was never
        // reached) and ~4 characters per streamed token.
        let usage = if reported {
            usage
        } else {
            let reached = !matches!(&result, Err(e) if e.kind == ErrorKind::Connection);
            Usage {
                tokens_in: if reached { req.prompt_tokens } else { 0 },
                tokens_out: (streamed / 4) as u64,
                cost_usd: usage.cost_usd,
            }
        };
        let cost_usd = usage
            .cost_usd
            .unwrap_or_else(|| spec.price(usage.tokens_in, usage.tokens_out));
        inner.run_budget.charge(cost_usd);
        if let Some(task) = &request.task_budget {
            task.charge(cost_usd);
        }

        let result =
            result.and_then(
                |completion| match content::check(&completion.text, request.expect) {
                    Ok(()) => Ok(completion),
                    Err(failure) => Err(LlmError::new(failure.kind, failure.message)),
                },
            );
        let ttft = result.as_ref().ok().map(|c| c.time_to_first_token);
        let now = Utc::now();
        permit.finish(|state| match &result {
            Ok(completion) => {
                if inner.settings.stream {
                    state
                        .stalls
                        .observe(completion.time_to_first_token, completion.longest_gap);
                }
                state.record_success(latency, now);
                // The provider said this was the window's last request: the next would be
                // refused, so none is sent until the window resets.
                if let Some(wait) = completion.window_spent_for {
                    state.cool_down(
                        now + chrono::TimeDelta::from_std(wait).unwrap_or_default(),
                        "rate_limit: the provider's headers said the rate-limit window is used \
                         up (x-ratelimit-remaining: 0)"
                            .to_string(),
                    );
                }
            }
            Err(e) => state.record_failure(
                e.kind,
                e.status,
                e.retry_after,
                &e.message,
                now,
                &inner.policy,
            ),
        });
        if let Err(e) = &result {
            tracing::info!(model = %spec.name, kind = %e.kind, "model call failed: {}", e.message);
            if e.kind == ErrorKind::Quota {
                self.quota_exhausted(&spec.name, e.retry_after, &e.message);
            }
        }
        let record = CallRecord {
            model: spec.name.clone(),
            model_id: spec.id.clone(),
            error_kind: result.as_ref().err().map(|e| e.kind),
            error: result.as_ref().err().map(|e| e.message.clone()),
            usage,
            cost_usd,
            time_to_first_token_ms: ttft.map(|d| d.as_millis() as u64),
            latency_ms: latency.as_millis() as u64,
        };
        (record, result)
    }

    fn check_budgets(
        &self,
        request: &RouteRequest,
        calls: &[CallRecord],
    ) -> Result<(), RouteError> {
        let budgets = [
            ("run", Some(&self.inner.run_budget)),
            ("task", request.task_budget.as_ref()),
        ];
        for (what, budget) in budgets {
            if let Some(budget) = budget.filter(|b| b.is_spent()) {
                return Err(fail(
                    ErrorKind::Budget,
                    format!(
                        "the {what}'s budget of ${:.4} is spent (${:.4} so far)",
                        budget.limit_usd().unwrap_or_default(),
                        budget.spent_usd()
                    ),
                    calls.to_vec(),
                ));
            }
        }
        Ok(())
    }

    /// The error for a call whose every model is excluded for reasons time does not lift.
    fn nothing_can_serve(&self, ranked: &[Candidate], calls: Vec<CallRecord>) -> RouteError {
        let pool: Vec<&Candidate> = ranked
            .iter()
            .filter(|c| !c.excluded.contains(&Exclusion::NotInPool))
            .collect();
        let all = |f: fn(&Exclusion) -> bool| {
            !pool.is_empty() && pool.iter().all(|c| c.excluded.iter().any(f))
        };
        let kind = if let Some(last) = calls.last().and_then(|c| c.error_kind) {
            // Models were tried and each then dropped out (e.g. a 402 cooled the last one).
            if last == ErrorKind::ContextTooLong {
                last
            } else {
                ErrorKind::NoModelAvailable
            }
        } else if all(|e| matches!(e, Exclusion::ContextTooSmall { .. })) {
            ErrorKind::ContextTooLong
        } else if all(|e| {
            matches!(
                e,
                Exclusion::OverBudget { .. } | Exclusion::OverCostLimit { .. }
            )
        }) {
            ErrorKind::Budget
        } else {
            ErrorKind::Config
        };
        let reasons: Vec<String> = pool
            .iter()
            .map(|c| {
                let why: Vec<String> = c.excluded.iter().map(ToString::to_string).collect();
                format!("{} ({})", c.model, why.join("; "))
            })
            .collect();
        let mut message = if pool.is_empty() {
            "no model is in the fallback chain; add models to `fallback` or name one".to_string()
        } else {
            format!("no model can take this call: {}", reasons.join(", "))
        };
        if !calls.is_empty() {
            message = format!("{message}; calls made: {}", summary(&calls));
        }
        fail(kind, message, calls)
    }

    fn gave_up(
        &self,
        calls: &[CallRecord],
        retry_after: Option<Duration>,
        waiting_for: &WaitReason,
    ) -> RouteError {
        let mut message = format!(
            "no model could take the call before its deadline: waiting for {}",
            waiting_for.text
        );
        if !calls.is_empty() {
            message.push_str(&format!("; calls made: {}", summary(calls)));
        }
        let mut error = fail(ErrorKind::NoModelAvailable, message, calls.to_vec());
        error.retry_after = retry_after;
        error
    }
}

/// A model's slot for one call. Dropping it unused (a cancelled call) frees the slot.
struct Permit<'a> {
    router: &'a Router,
    model: String,
    probe: bool,
    active: bool,
}

impl Permit<'_> {
    /// Records the call's outcome and frees the slot.
    fn finish(mut self, record: impl FnOnce(&mut ModelState)) {
        self.release(record);
    }

    fn release(&mut self, record: impl FnOnce(&mut ModelState)) {
        if !self.active {
            return;
        }
        self.active = false;
        if let Some(state) = self.router.models().get_mut(&self.model) {
            // Recorded while the probe flag still stands, so a failed probe reopens the circuit.
            record(state);
            state.concurrency.in_flight = state.concurrency.in_flight.saturating_sub(1);
            if self.probe {
                state.probing = false;
            }
        }
        self.router.inner.freed.notify_waiters();
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.release(|_| {});
    }
}

/// The tries one model had in the current round of a call.
#[derive(Debug, Default, Clone, Copy)]
struct Try {
    count: u32,
    /// Its last failure looked like chance (see [`by_chance`]): one more try is worth it.
    by_chance: bool,
}

/// What [`Router::acquire`] needs to know about the call.
struct Acquire<'a> {
    req: &'a Requirements,
    preferred: Option<&'a str>,
    request: &'a RouteRequest,
    tries: &'a HashMap<String, Try>,
    deadline: Instant,
}

/// Whether a failure is the kind a provider drops now and then (a cut, stalled or malformed
/// stream, a 5xx without a requested wait, a broken connection), so the same model may well
/// answer the next request.
fn by_chance(error: &LlmError) -> bool {
    matches!(
        error.kind,
        ErrorKind::Truncated
            | ErrorKind::MalformedStream
            | ErrorKind::ServerError
            | ErrorKind::Connection
            | ErrorKind::Timeout
    ) && error.retry_after.is_none()
}

/// The earliest end of a cooldown among models held back by time alone, with its reason.
fn earliest_cooldown(ranked: &[Candidate]) -> Option<(chrono::DateTime<Utc>, String)> {
    ranked
        .iter()
        .filter(|c| !c.is_eligible() && c.excluded.iter().all(Exclusion::is_transient))
        .filter_map(|c| {
            c.excluded.iter().find_map(|e| match e {
                Exclusion::CoolingDown { until, reason } => {
                    Some((*until, format!("`{}`: {reason}", c.model)))
                }
                _ => None,
            })
        })
        .min_by_key(|(until, _)| *until)
}

/// The limit a shared quota puts on its models together.
fn quota_limit(spec: &QuotaSpec) -> SharedLimit {
    limit(format!("quota:{}", spec.name), spec.rpm, spec.tpm, spec.rpd)
}

/// A model's own limits, as a fleet counts them.
fn model_limit(spec: &ModelSpec) -> SharedLimit {
    limit(format!("model:{}", spec.name), spec.rpm, spec.tpm, spec.rpd)
}

fn limit(key: String, rpm: Option<u32>, tpm: Option<u32>, rpd: Option<u32>) -> SharedLimit {
    SharedLimit { key, rpm, tpm, rpd }
}

fn own_pacing(model: &str) -> String {
    format!("pitcrew's own request pacing for `{model}` (its rate limits in the registry)")
}

/// What a limit's `NotBefore` means for a call to `spec`, as a hold.
fn held_until(decision: &LimitDecision, spec: &ModelSpec, now: chrono::DateTime<Utc>) -> Held {
    let (key, at) = match decision {
        LimitDecision::NotBefore { key, at } => (key.as_str(), *at),
        _ => ("", now),
    };
    let what = match key.strip_prefix("quota:") {
        Some(quota) => format!(
            "pitcrew's own request pacing for the `{quota}` quota, which `{}` shares with other models",
            spec.name
        ),
        None => own_pacing(&spec.name),
    };
    Held::Until(
        Instant::now() + (at - now).to_std().unwrap_or_default(),
        what,
    )
}

fn day_used(quota: &QuotaSpec) -> String {
    format!(
        "quota: the `{}` quota's {} requests of the day (UTC) are used up",
        quota.name,
        quota.rpd.unwrap_or_default()
    )
}

/// Cools every model `group` covers for `wait`, saying why.
fn cool_group(
    models: &mut HashMap<String, ModelState>,
    group: &QuotaGroup,
    wait: Duration,
    reason: &str,
    now: chrono::DateTime<Utc>,
) {
    let until = now + chrono::TimeDelta::from_std(wait).unwrap_or(chrono::TimeDelta::MAX);
    for member in &group.members {
        if let Some(state) = models.get_mut(member) {
            state.cool_down(until, reason.to_string());
        }
    }
}

/// Whether no other model (or later try) can fix this failure.
fn is_fatal(error: &LlmError) -> bool {
    match error.kind {
        ErrorKind::Auth | ErrorKind::Config => true,
        // A 404 is about this model (withdrawn, renamed); other 400s are about the request.
        ErrorKind::BadRequest => error.status != Some(404),
        _ => false,
    }
}

fn fail(kind: ErrorKind, message: String, calls: Vec<CallRecord>) -> RouteError {
    RouteError {
        kind,
        message,
        retry_after: None,
        calls,
    }
}

fn summary(calls: &[CallRecord]) -> String {
    calls
        .iter()
        .map(|c| format!("{}: {}", c.model, c.error.as_deref().unwrap_or("ok")))
        .collect::<Vec<_>>()
        .join("; ")
}

/// A deliberately high token estimate (code runs ~3.5 characters per token; 3 is used), so
/// that the context check errs towards a bigger window; plus a few tokens of framing per
/// message.
pub fn estimate_tokens(messages: &[Message]) -> u64 {
    messages
        .iter()
        .map(|m| m.content.chars().count() as u64 / 3 + 4)
        .sum()
}
