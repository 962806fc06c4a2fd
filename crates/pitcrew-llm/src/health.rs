//! Live health of one model: its circuit breaker, the cooldown a provider asked for, moving
//! averages of success, latency and quality, stall deadlines learned from its streams, and the
//! client-side limits. The persisted part is a [`pitcrew_core::ModelHealth`], so the store can
//! share it between workers and runs.
//!
//! The circuit judges a failure *rate*: it opens when `failure_threshold` of the model's last
//! [`CIRCUIT_WINDOW`] calls failed for infrastructure reasons (a provider that drops one call in
//! ten keeps serving; one that fails most of them is left alone), for a short jittered cooldown
//! that doubles with each failed probe. Cooldowns a provider asked for (429, quotas) are its
//! own and never counted towards the circuit.

use std::collections::VecDeque;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use pitcrew_core::{ErrorKind, ModelHealth};
use serde::Serialize;

use crate::limits::{Concurrency, RateLimits};
use crate::registry::ModelSpec;

/// Weight of the newest observation in the moving averages: about the last ten calls count.
const EWMA_ALPHA: f64 = 0.2;

/// How many of a model's most recent calls the circuit judges.
pub const CIRCUIT_WINDOW: usize = 20;

/// The longest an open circuit stays open, however many probes failed.
const MAX_CIRCUIT_COOLDOWN: Duration = Duration::from_secs(300);

/// Where a model's circuit breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum CircuitState {
    /// Calls flow.
    Closed,
    /// No calls until `until`.
    Open { until: DateTime<Utc> },
    /// The cooldown is over: one probe call decides whether it closes or opens again.
    HalfOpen,
}

/// The circuit state that `health` describes at `now`.
pub fn circuit_state(health: &ModelHealth, now: DateTime<Utc>) -> CircuitState {
    match health.circuit_open_until {
        None => CircuitState::Closed,
        Some(until) if until > now => CircuitState::Open { until },
        Some(_) => CircuitState::HalfOpen,
    }
}

/// How the router treats a failure of a given kind, for the model's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Blame {
    /// The model or its provider failed (5xx, connection, timeout, a cut or malformed
    /// stream, a 429): counts against success and, unless it is a 429, towards the circuit.
    Infrastructure,
    /// The reply was unusable (empty, looping, prose, placeholders): counts against success,
    /// never towards the circuit — such replies belong to the prompt and the task as much as
    /// to the model, and one bad task must not take a model away from every other.
    Content,
    /// Not the model's doing (the request was too long, a filter refused it, the account is
    /// out of credit): health is unchanged, apart from any cooldown.
    None,
}

impl Blame {
    pub(crate) fn of(kind: ErrorKind) -> Blame {
        use ErrorKind::*;
        match kind {
            Connection | Timeout | RateLimit | ServerError | Truncated | MalformedStream => {
                Blame::Infrastructure
            }
            EmptyReply | Degenerate | ReplyTooLarge | ProseOnly | Placeholder => Blame::Content,
            _ => Blame::None,
        }
    }
}

/// Settings that shape health updates.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HealthPolicy {
    /// Infrastructure failures among the last [`CIRCUIT_WINDOW`] calls that open the circuit.
    pub failure_threshold: u32,
    pub circuit_cooldown: Duration,
    pub rate_limit_cooldown: Duration,
    pub payment_cooldown: Duration,
    pub unknown_model_cooldown: Duration,
}

#[derive(Debug)]
pub(crate) struct ModelState {
    pub health: ModelHealth,
    /// A half-open probe is in flight: no other call until it ends.
    pub probing: bool,
    pub concurrency: Concurrency,
    pub limits: RateLimits,
    /// The last calls, newest last: whether each failed for infrastructure reasons.
    recent: VecDeque<bool>,
    /// Probes that failed since the circuit last closed: each doubles the cooldown.
    reopenings: u32,
    /// What its streams taught about stalls.
    pub stalls: StallModel,
}

/// Time to first token and the longest gap between chunks, learned per model from its
/// recent streams, giving the deadlines past which a stream counts as stalled (so a stall
/// frees its slot in seconds, not at the idle timeout).
///
/// The deadlines follow a high percentile of the recent streams, not the largest: a stall
/// that was waited out while the model was still being learned must not widen them for
/// every later stream, and a model that pauses often (more than one stream in
/// [`1 - STALL_QUANTILE`]) still gets the room its pauses need.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct StallModel {
    samples: u32,
    /// The last [`STALL_WINDOW`] streams, `(first token ms, longest gap ms)`, as a ring.
    recent: [(f64, f64); STALL_WINDOW],
}

/// Streams observed before the learned deadlines are used instead of the idle timeout.
const STALL_SAMPLES: u32 = 5;
/// Streams remembered.
const STALL_WINDOW: usize = 20;
/// The share of recent streams whose pace the deadlines are drawn from.
const STALL_QUANTILE: f64 = 0.8;

impl StallModel {
    pub(crate) fn observe(&mut self, first_token: Duration, longest_gap: Duration) {
        let slot = self.samples as usize % STALL_WINDOW;
        self.recent[slot] = (
            first_token.as_secs_f64() * 1000.0,
            longest_gap.as_secs_f64() * 1000.0,
        );
        self.samples = self.samples.saturating_add(1);
    }

    /// `(first token, between chunks)` deadlines, each within `[floor, ceiling]`; the
    /// ceiling alone until enough streams were seen.
    pub(crate) fn deadlines(&self, ceiling: Duration) -> (Duration, Duration) {
        if self.samples < STALL_SAMPLES {
            return (ceiling, ceiling);
        }
        let seen = &self.recent[..(self.samples as usize).min(STALL_WINDOW)];
        let quantile = |pick: fn(&(f64, f64)) -> f64| {
            let mut values: Vec<f64> = seen.iter().map(pick).collect();
            values.sort_by(f64::total_cmp);
            let rank = (STALL_QUANTILE * values.len() as f64).ceil() as usize;
            values[rank.clamp(1, values.len()) - 1]
        };
        let bound = |ms: f64, floor: Duration| {
            Duration::try_from_secs_f64(ms / 1000.0)
                .unwrap_or(ceiling)
                .max(floor)
                .min(ceiling)
        };
        (
            bound(4.0 * quantile(|s| s.0) + 5000.0, Duration::from_secs(10)),
            bound(4.0 * quantile(|s| s.1) + 3000.0, Duration::from_secs(5)),
        )
    }
}

/// Why a model cannot take a call right now.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Unavailable {
    /// Provider-imposed: a cooldown or an open circuit, until the given time.
    Until(DateTime<Utc>, String),
    /// Local: a probe or the concurrency cap; ends when a call finishes.
    Busy,
}

impl ModelState {
    pub(crate) fn new(spec: &ModelSpec, initial_concurrency: u32, max_concurrency: u32) -> Self {
        ModelState {
            health: ModelHealth {
                model: spec.name.clone(),
                consecutive_failures: 0,
                circuit_open_until: None,
                cooldown_until: None,
                cooldown_reason: None,
                success_rate: 1.0,
                latency_ms: spec.latency_ms,
                quality: spec.quality,
                samples: 0,
                // Priors are older than anything observed, so any stored health wins a merge.
                updated_at: DateTime::UNIX_EPOCH,
            },
            probing: false,
            concurrency: Concurrency::new(initial_concurrency, max_concurrency),
            limits: RateLimits::new(spec.rpm, spec.tpm),
            recent: VecDeque::with_capacity(CIRCUIT_WINDOW),
            reopenings: 0,
            stalls: StallModel::default(),
        }
    }

    fn remember(&mut self, infrastructure_failure: bool) {
        if self.recent.len() == CIRCUIT_WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(infrastructure_failure);
    }

    /// Provider-imposed unavailability at `now` (cooldown, open circuit), if any.
    pub(crate) fn blocked(&self, now: DateTime<Utc>) -> Option<Unavailable> {
        if let Some(until) = self.health.cooldown_until.filter(|u| *u > now) {
            let reason = self.health.cooldown_reason.clone().unwrap_or_default();
            return Some(Unavailable::Until(until, reason));
        }
        match circuit_state(&self.health, now) {
            CircuitState::Open { until } => Some(Unavailable::Until(
                until,
                format!(
                    "circuit open: {} of its last {} calls failed",
                    self.recent.iter().filter(|f| **f).count(),
                    self.recent.len()
                ),
            )),
            CircuitState::HalfOpen if self.probing => Some(Unavailable::Busy),
            _ => None,
        }
    }

    pub(crate) fn record_success(&mut self, latency: Duration, now: DateTime<Utc>) {
        let h = &mut self.health;
        h.success_rate = ewma(h.success_rate, 1.0);
        h.latency_ms = ewma(h.latency_ms, latency.as_secs_f64() * 1000.0);
        h.samples += 1;
        h.consecutive_failures = 0;
        h.circuit_open_until = None;
        h.updated_at = now;
        self.concurrency.grow();
        if self.probing {
            // The probe passed: the model starts afresh.
            self.recent.clear();
            self.reopenings = 0;
        }
        self.remember(false);
    }

    /// Records a failed call: health for failures that are the model's, and the cooldown the
    /// provider asked for (or the policy's default for the kind).
    pub(crate) fn record_failure(
        &mut self,
        kind: ErrorKind,
        status: Option<u16>,
        retry_after: Option<Duration>,
        message: &str,
        now: DateTime<Utc>,
        policy: &HealthPolicy,
    ) {
        let cooldown = match kind {
            ErrorKind::RateLimit => Some(retry_after.unwrap_or(policy.rate_limit_cooldown)),
            ErrorKind::Quota => Some(retry_after.unwrap_or_else(|| until_utc_midnight(now))),
            ErrorKind::Payment => Some(policy.payment_cooldown),
            ErrorKind::BadRequest if status == Some(404) => Some(policy.unknown_model_cooldown),
            // A 503 with Retry-After (maintenance, overload) is a request to wait too.
            _ => retry_after,
        };
        if let Some(wait) = cooldown {
            self.cool_down(
                now + delta(wait),
                format!("{kind}: {}", first_line(message)),
            );
        }
        if kind == ErrorKind::RateLimit {
            self.concurrency.halve();
        }
        if Blame::of(kind) != Blame::None {
            let h = &mut self.health;
            h.success_rate = ewma(h.success_rate, 0.0);
            h.samples += 1;
        }
        // A 429 already keeps the model away exactly as long as the provider asked; counting
        // it towards the breaker would replace that wait with a longer one of ours.
        if Blame::of(kind) == Blame::Infrastructure && kind != ErrorKind::RateLimit {
            self.health.consecutive_failures += 1;
            self.remember(true);
            let failures = self.recent.iter().filter(|f| **f).count();
            // A failed probe reopens at once, for twice as long; otherwise the rate decides.
            if self.probing || failures >= policy.failure_threshold as usize {
                if self.probing {
                    self.reopenings += 1;
                }
                let base = policy
                    .circuit_cooldown
                    .saturating_mul(1 << self.reopenings.min(8))
                    .min(MAX_CIRCUIT_COOLDOWN);
                // Jittered, so the workers of a fleet do not all probe at the same instant.
                let wait = retry_after
                    .unwrap_or_default()
                    .max(base.mul_f64(0.8 + 0.4 * fastrand::f64()));
                self.health.circuit_open_until = Some(now + delta(wait));
            }
        }
        self.health.updated_at = now;
    }

    pub(crate) fn record_quality(&mut self, quality: f64, now: DateTime<Utc>) {
        self.health.quality = ewma(self.health.quality, quality.clamp(0.0, 1.0));
        self.health.updated_at = now;
    }

    /// Folds in health another worker stored: cooldowns and circuits keep the later time
    /// (every worker honours a wait any of them was asked for); the averages and failure
    /// count come from whichever snapshot is newer.
    pub(crate) fn merge(&mut self, other: &ModelHealth) {
        if other.cooldown_until > self.health.cooldown_until {
            self.health.cooldown_until = other.cooldown_until;
            self.health.cooldown_reason = other.cooldown_reason.clone();
        }
        if other.updated_at > self.health.updated_at {
            let h = &mut self.health;
            h.consecutive_failures = other.consecutive_failures;
            h.success_rate = other.success_rate;
            h.latency_ms = other.latency_ms;
            h.quality = other.quality;
            h.samples = other.samples;
            h.updated_at = other.updated_at;
            h.circuit_open_until = other.circuit_open_until.max(h.circuit_open_until);
        } else if let (Some(theirs), Some(mine)) =
            (other.circuit_open_until, self.health.circuit_open_until)
        {
            self.health.circuit_open_until = Some(theirs.max(mine));
        }
    }

    pub(crate) fn cool_down(&mut self, until: DateTime<Utc>, reason: String) {
        // Never shorten a wait already asked for.
        if self
            .health
            .cooldown_until
            .is_none_or(|current| current < until)
        {
            self.health.cooldown_until = Some(until);
            self.health.cooldown_reason = Some(reason);
        }
    }
}

fn ewma(average: f64, sample: f64) -> f64 {
    average + EWMA_ALPHA * (sample - average)
}

fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

fn first_line(message: &str) -> &str {
    message.lines().next().unwrap_or_default()
}

/// A daily quota without an announced reset: OpenRouter resets daily limits at 00:00 UTC.
pub(crate) fn until_utc_midnight(now: DateTime<Utc>) -> Duration {
    let midnight = (now.date_naive() + TimeDelta::days(1))
        .and_hms_opt(0, 0, 0)
        .expect("midnight exists")
        .and_utc();
    (midnight - now).to_std().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ModelSpec {
        crate::Registry::builtin().models()[0].clone()
    }

    fn policy() -> HealthPolicy {
        HealthPolicy {
            failure_threshold: 3,
            circuit_cooldown: Duration::from_secs(25),
            rate_limit_cooldown: Duration::from_secs(10),
            payment_cooldown: Duration::from_secs(3600),
            unknown_model_cooldown: Duration::from_secs(3600),
        }
    }

    #[test]
    fn the_circuit_opens_after_the_threshold_and_a_failed_probe_reopens_it() {
        let now = Utc::now();
        let mut state = ModelState::new(&spec(), 2, 8);
        for _ in 0..2 {
            state.record_failure(ErrorKind::ServerError, Some(500), None, "x", now, &policy());
        }
        assert_eq!(circuit_state(&state.health, now), CircuitState::Closed);
        state.record_failure(ErrorKind::ServerError, Some(500), None, "x", now, &policy());
        let later = now + TimeDelta::seconds(31);
        assert!(matches!(
            circuit_state(&state.health, now),
            CircuitState::Open { .. }
        ));
        assert_eq!(circuit_state(&state.health, later), CircuitState::HalfOpen);
        state.probing = true;
        assert_eq!(state.blocked(later), Some(Unavailable::Busy));
        state.record_failure(ErrorKind::Timeout, None, None, "x", later, &policy());
        // Reopened for twice as long (25 s × 2, jittered by ±20%).
        let Some(until) = state.health.circuit_open_until else {
            panic!("reopened")
        };
        let wait = (until - later).to_std().unwrap();
        assert!(
            wait >= Duration::from_secs(40) && wait <= Duration::from_secs(60),
            "{wait:?}"
        );
        state.record_success(Duration::from_secs(1), later);
        assert_eq!(circuit_state(&state.health, later), CircuitState::Closed);
        state.probing = false;
    }

    #[test]
    fn the_circuit_judges_a_rate_and_content_failures_never_count() {
        let now = Utc::now();
        let policy = HealthPolicy {
            failure_threshold: 15,
            ..policy()
        };
        let mut state = ModelState::new(&spec(), 2, 8);
        // One call in three failing, for a long while: the model keeps serving.
        for i in 0..300 {
            if i % 3 == 0 {
                state.record_failure(ErrorKind::Truncated, None, None, "cut", now, &policy);
            } else {
                state.record_success(Duration::from_secs(1), now);
            }
            assert_eq!(
                circuit_state(&state.health, now),
                CircuitState::Closed,
                "call {i}"
            );
        }
        // Replies that are prose lower the success rate but never open the circuit.
        for _ in 0..50 {
            state.record_failure(ErrorKind::ProseOnly, None, None, "prose", now, &policy);
        }
        assert_eq!(circuit_state(&state.health, now), CircuitState::Closed);
        assert!(state.health.success_rate < 0.5);
        // Most calls failing opens it.
        for _ in 0..15 {
            state.record_failure(ErrorKind::ServerError, Some(500), None, "x", now, &policy);
        }
        assert!(matches!(
            circuit_state(&state.health, now),
            CircuitState::Open { .. }
        ));
    }

    #[test]
    fn stall_deadlines_are_learned_and_bounded() {
        let mut stalls = StallModel::default();
        let ceiling = Duration::from_secs(60);
        assert_eq!(stalls.deadlines(ceiling), (ceiling, ceiling));
        for _ in 0..5 {
            stalls.observe(Duration::from_millis(800), Duration::from_millis(300));
        }
        let (first, between) = stalls.deadlines(ceiling);
        assert_eq!(first, Duration::from_millis(10_000), "the floor");
        assert_eq!(between, Duration::from_millis(5_000), "the floor");
        // One stall waited out does not widen the deadlines for the streams after it.
        stalls.observe(Duration::from_secs(20), Duration::from_secs(20));
        assert_eq!(stalls.deadlines(ceiling), (first, between));
        // A model that is slow in most streams gets room for it.
        for _ in 0..10 {
            stalls.observe(Duration::from_secs(20), Duration::from_secs(4));
        }
        let (first, between) = stalls.deadlines(ceiling);
        assert_eq!(first, Duration::from_secs(60), "4 × 20 s + 5 s, capped");
        assert_eq!(between, Duration::from_secs(19), "4 × 4 s + 3 s");
        // The window forgets: fast streams bring the deadlines back down.
        for _ in 0..STALL_WINDOW {
            stalls.observe(Duration::from_millis(800), Duration::from_millis(300));
        }
        assert_eq!(
            stalls.deadlines(ceiling),
            (Duration::from_secs(10), Duration::from_secs(5))
        );
    }

    #[test]
    fn cooldowns_follow_the_kind_and_never_shrink() {
        let now = DateTime::parse_from_rfc3339("2025-03-07T18:00:00Z")
            .unwrap()
            .to_utc();
        let mut state = ModelState::new(&spec(), 2, 8);
        state.record_failure(ErrorKind::Quota, Some(429), None, "per-day", now, &policy());
        let midnight = DateTime::parse_from_rfc3339("2025-03-08T00:00:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(state.health.cooldown_until, Some(midnight));
        state.record_failure(
            ErrorKind::RateLimit,
            Some(429),
            Some(Duration::from_secs(2)),
            "slow",
            now,
            &policy(),
        );
        assert_eq!(state.health.cooldown_until, Some(midnight));
        assert!(
            state
                .health
                .cooldown_reason
                .as_deref()
                .unwrap()
                .starts_with("quota")
        );
        assert_eq!(Blame::of(ErrorKind::ContextTooLong), Blame::None);
        assert_eq!(
            state.health.consecutive_failures, 0,
            "quota and 429s do not open circuits"
        );
        assert!(
            state.health.success_rate < 1.0,
            "but a 429 lowers the success rate"
        );
    }

    #[test]
    fn merging_keeps_the_later_cooldown_and_the_newer_averages() {
        let now = Utc::now();
        let mut mine = ModelState::new(&spec(), 2, 8);
        mine.record_success(Duration::from_millis(500), now);
        let mut theirs = mine.health.clone();
        theirs.cooldown_until = Some(now + TimeDelta::seconds(60));
        theirs.cooldown_reason = Some("rate_limit".into());
        theirs.success_rate = 0.1;
        theirs.updated_at = now - TimeDelta::seconds(5);
        mine.merge(&theirs);
        assert_eq!(mine.health.cooldown_until, theirs.cooldown_until);
        assert_eq!(mine.health.success_rate, 1.0, "mine is newer");
        theirs.updated_at = now + TimeDelta::seconds(1);
        theirs.cooldown_until = None;
        mine.merge(&theirs);
        assert_eq!(mine.health.success_rate, 0.1);
        assert!(
            mine.health.cooldown_until.is_some(),
            "a merge never drops a cooldown"
        );
    }
}
