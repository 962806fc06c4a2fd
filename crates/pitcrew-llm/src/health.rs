//! Live health of one model: its circuit breaker, the cooldown a provider asked for, moving
//! averages of success, latency and quality, and the client-side limits. The persisted part
//! is a [`pitcrew_core::ModelHealth`], so the store can share it between workers and runs.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use pitcrew_core::{ErrorKind, ModelHealth};
use serde::Serialize;

use crate::limits::{Concurrency, RateLimits};
use crate::registry::ModelSpec;

/// Weight of the newest observation in the moving averages: about the last ten calls count.
const EWMA_ALPHA: f64 = 0.2;

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
    /// The model (or its provider) failed: counts against success and, unless it is a 429,
    /// towards the circuit.
    Model,
    /// Not the model's doing (the request was too long, a filter refused it, the account is
    /// out of credit): health is unchanged, apart from any cooldown.
    None,
}

impl Blame {
    pub(crate) fn of(kind: ErrorKind) -> Blame {
        use ErrorKind::*;
        match kind {
            Connection | Timeout | RateLimit | ServerError | Truncated | EmptyReply
            | Degenerate | ProseOnly | Placeholder => Blame::Model,
            _ => Blame::None,
        }
    }
}

/// Settings that shape health updates.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HealthPolicy {
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
        }
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
                    "circuit open after {} consecutive failures",
                    self.health.consecutive_failures
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
        if Blame::of(kind) == Blame::Model {
            let h = &mut self.health;
            h.success_rate = ewma(h.success_rate, 0.0);
            h.samples += 1;
        }
        // A 429 already keeps the model away exactly as long as the provider asked; counting
        // it towards the breaker would replace that wait with a longer one of ours.
        if Blame::of(kind) == Blame::Model && kind != ErrorKind::RateLimit {
            let h = &mut self.health;
            h.consecutive_failures += 1;
            // A failed probe reopens at once; otherwise the threshold decides.
            if self.probing || h.consecutive_failures >= policy.failure_threshold {
                let wait = retry_after.unwrap_or_default().max(policy.circuit_cooldown);
                h.circuit_open_until = Some(now + delta(wait));
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

    fn cool_down(&mut self, until: DateTime<Utc>, reason: String) {
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
fn until_utc_midnight(now: DateTime<Utc>) -> Duration {
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
            circuit_cooldown: Duration::from_secs(30),
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
        assert!(matches!(
            circuit_state(&state.health, later),
            CircuitState::Open { .. }
        ));
        state.probing = false;
        state.record_success(Duration::from_secs(1), later);
        assert_eq!(circuit_state(&state.health, later), CircuitState::Closed);
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
