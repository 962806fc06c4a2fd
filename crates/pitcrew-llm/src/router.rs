//! The router: the only layer that retries model calls. For each call it ranks the models
//! (see [`crate::select`]), takes the best one that is ready, and on a failure that another
//! model might not have (rate limit, quota, credit, 5xx, timeout, truncated or stalled
//! stream, content failure) rotates to the next best model not yet tried for this call. It
//! waits only when no model can take the call: exactly as long as its own rate limiters
//! require, or, when every model has been tried or is cooling down, a jittered exponential
//! backoff (backon) that never ends before the earliest time a provider allowed.
//!
//! Health is shared by every clone of a [`Router`] (all workers of a process) and, through
//! [`Router::health`] and [`Router::merge_health`], with other processes via the store.

use std::collections::{HashMap, HashSet};
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use chrono::Utc;
use pitcrew_core::{ErrorClass, ErrorKind, ModelHealth, Usage};
use serde::Serialize;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::budget::Budget;
use crate::client::{ChatClient, ChatRequest, Completion, Endpoint, Message};
use crate::content::{self, Expect};
use crate::error::LlmError;
use crate::health::{CircuitState, HealthPolicy, ModelState, Unavailable, circuit_state};
use crate::registry::{ModelSpec, Registry};
use crate::select::{self, Candidate, Exclusion, Facts, Requirements};

/// How the router behaves; the defaults suit free OpenRouter models.
#[derive(Debug, Clone)]
pub struct RouterSettings {
    /// Consecutive failures that open a model's circuit.
    pub failure_threshold: u32,
    /// How long an open circuit stays open (longer when the provider asked for more).
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
    /// Backoff rounds before the call fails with [`ErrorKind::NoModelAvailable`].
    pub max_rounds: usize,
    /// The longest one call may wait in total; a call that would have to wait longer fails
    /// at once with `retry_after` saying when a model will be free.
    pub max_wait: Duration,
    /// Stream replies (time to first token, stall detection, live output).
    pub stream: bool,
    /// The run's budget in USD; `None`: unlimited (spending is still counted).
    pub run_budget_usd: Option<f64>,
}

impl Default for RouterSettings {
    fn default() -> Self {
        RouterSettings {
            failure_threshold: 3,
            circuit_cooldown: Duration::from_secs(30),
            rate_limit_cooldown: Duration::from_secs(10),
            payment_cooldown: Duration::from_secs(3600),
            unknown_model_cooldown: Duration::from_secs(3600),
            initial_concurrency: 4,
            max_concurrency: 16,
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            max_rounds: 5,
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
    /// Signalled whenever a call ends, freeing a concurrency slot or a probe.
    freed: Notify,
    run_budget: Budget,
}

/// Why a ready-looking model could not be taken just now.
enum Held {
    /// Our own rate limiter: free at this instant.
    Until(Instant),
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
                freed: Notify::new(),
            }),
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
        let deadline = Instant::now() + inner.settings.max_wait;
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
            .with_max_times(inner.settings.max_rounds)
            .with_jitter()
            .build();

        loop {
            let round_start = calls.len();
            let mut tried: HashSet<String> = HashSet::new();
            loop {
                self.check_budgets(request, &calls)?;
                // Registered before looking, so a call ending in between still wakes us.
                let mut freed = pin!(inner.freed.notified());
                freed.as_mut().enable();
                let ranked =
                    self.candidates(&req, preferred.as_deref(), request.task_budget.as_ref());
                let mut held_until: Option<Instant> = None;
                let mut busy = false;
                let mut taken = None;
                for candidate in ranked
                    .iter()
                    .filter(|c| c.is_eligible() && !tried.contains(&c.model))
                {
                    let spec = self.spec(&candidate.model);
                    let tokens = req.prompt_tokens + select::reply_tokens(spec, &req);
                    match self.try_take(spec, tokens) {
                        Ok(permit) => {
                            taken = Some((spec, permit));
                            break;
                        }
                        Err(Held::Until(at)) => {
                            held_until = Some(held_until.map_or(at, |h| h.min(at)));
                        }
                        Err(Held::Busy) => busy = true,
                        Err(Held::Blocked) => {}
                    }
                }
                if let Some((spec, permit)) = taken {
                    tried.insert(spec.name.clone());
                    let (record, result) = self.call(spec, permit, request, &req, on_event).await;
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
                            continue;
                        }
                    }
                }
                if held_until.is_none() && !busy {
                    break;
                }
                // Every untried model that could serve is held back only by our own limits,
                // which lift at a known time or when a call ends: wait for that, not a backoff.
                let wake = held_until.unwrap_or(deadline).min(deadline);
                if Instant::now() >= deadline {
                    return Err(self.gave_up(&calls, None));
                }
                tokio::select! {
                    () = tokio::time::sleep_until(wake) => {}
                    () = freed => {}
                }
            }

            // Every model has been tried this round or cannot take the call.
            let ranked = self.candidates(&req, preferred.as_deref(), request.task_budget.as_ref());
            let now = Utc::now();
            let retry_now = ranked.iter().any(Candidate::is_eligible);
            let cooling_until = ranked
                .iter()
                .filter(|c| !c.is_eligible() && c.excluded.iter().all(Exclusion::is_transient))
                .filter_map(|c| {
                    c.excluded.iter().find_map(|e| match e {
                        Exclusion::CoolingDown { until, .. } => Some(*until),
                        _ => None,
                    })
                })
                .min();
            if !retry_now && cooling_until.is_none() {
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
                cooling_until
                    .and_then(|until| (until - now).to_std().ok())
                    .unwrap_or_default()
            };
            let Some(delay) = backoff.next() else {
                return Err(self.gave_up(&calls, Some(provider_wait)));
            };
            // Never earlier than a provider allowed, never sooner than the backoff says.
            let delay = delay.max(provider_wait);
            if Instant::now() + delay > deadline {
                return Err(self.gave_up(&calls, Some(provider_wait)));
            }
            tracing::debug!(?delay, "every model tried or cooling down; backing off");
            tokio::time::sleep(delay).await;
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
        let state = models.get_mut(&spec.name).ok_or(Held::Blocked)?;
        match state.blocked(now) {
            Some(Unavailable::Until(..)) => return Err(Held::Blocked),
            Some(Unavailable::Busy) => return Err(Held::Busy),
            None => {}
        }
        if !state.concurrency.has_room() {
            return Err(Held::Busy);
        }
        state
            .limits
            .try_take(tokens)
            .map_err(|at| Held::Until(Instant::from_std(at)))?;
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
            inner.client.stream(endpoint, &chat, &mut forward).await
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
            Ok(_) => state.record_success(latency, now),
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

    fn gave_up(&self, calls: &[CallRecord], retry_after: Option<Duration>) -> RouteError {
        let mut error = fail(
            ErrorKind::NoModelAvailable,
            format!(
                "no model could serve the call within {:.0?}{}",
                self.inner.settings.max_wait,
                if calls.is_empty() {
                    String::from(" (every model is cooling down)")
                } else {
                    format!(": {}", summary(calls))
                }
            ),
            calls.to_vec(),
        );
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
