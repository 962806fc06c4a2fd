//! The figures of one group of attempts and calls, and the arithmetic behind them.

use pitcrew_core::{Attempt, AttemptOutcome};
use serde::Serialize;

use crate::recorded::RecordedCall;

/// What a group of attempts and the model calls they made add up to. A figure that needs data
/// the group lacks is `None` (`null` in JSON, "—" in tables), never a stand-in such as 0: no
/// success rate without a decided attempt, no percentile of an empty set, no cost when no call
/// reported one.
///
/// Attempt figures (`attempts`, `completed`, `success_rate`, `mean_quality`) count attempts;
/// call figures (the rest) count the HTTP calls to models, failed ones included.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figures {
    /// Attempts, running ones included.
    pub attempts: u64,
    /// Attempts that ended with an accepted result.
    pub completed: u64,
    /// `completed` over the decided attempts (completed, failed or possible bug); abandoned,
    /// cancelled and running ones are not decided.
    pub success_rate: Option<f64>,
    /// Calls made to models (a reply taken from the cache is no call).
    pub calls: u64,
    /// The median latency of the calls that answered with a usable reply.
    pub latency_p50_ms: Option<u64>,
    /// The 95th percentile of the same.
    pub latency_p95_ms: Option<u64>,
    /// The median time to the first token of the calls that answered with a usable reply.
    pub time_to_first_token_p50_ms: Option<u64>,
    pub tokens_in: u64,
    pub tokens_out: u64,
    /// What the calls cost, by the provider's figure or the registry's price.
    pub cost_usd: Option<f64>,
    /// The mean validated quality (0–1) of the attempts whose output was validated.
    pub mean_quality: Option<f64>,
    /// Calls the provider refused for a rate limit or a used-up quota.
    pub rate_limited: u64,
    /// Unusable replies: calls the router refused (empty, looping, prose, placeholders,
    /// filtered) and replies the agent's checks refused (paths, syntax, size, no files).
    pub content_failures: u64,
}

/// What a group's [`Figures`] are made of, gathered an attempt and a call at a time.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    attempts: u64,
    completed: u64,
    decided: u64,
    qualities: Vec<f64>,
    calls: u64,
    latencies_ms: Vec<u64>,
    first_token_ms: Vec<u64>,
    tokens_in: u64,
    tokens_out: u64,
    costs: Vec<Option<f64>>,
    rate_limited: u64,
    content_failures: u64,
}

impl Tally {
    pub(crate) fn add_attempt(&mut self, attempt: &Attempt) {
        self.attempts += 1;
        match attempt.outcome {
            AttemptOutcome::Completed => {
                self.completed += 1;
                self.decided += 1;
            }
            AttemptOutcome::Failed | AttemptOutcome::PossibleBug => self.decided += 1,
            AttemptOutcome::Running | AttemptOutcome::Abandoned | AttemptOutcome::Cancelled => {}
        }
        self.qualities.extend(attempt.quality);
    }

    pub(crate) fn add_call(&mut self, call: &RecordedCall) {
        self.calls += 1;
        self.tokens_in += call.usage.tokens_in;
        self.tokens_out += call.usage.tokens_out;
        self.costs.push(call.cost_usd);
        if call.answered() {
            self.latencies_ms.extend(call.latency_ms);
            self.first_token_ms.extend(call.time_to_first_token_ms);
        }
        self.rate_limited += u64::from(call.was_rate_limited());
        self.content_failures += u64::from(call.was_unusable());
    }

    /// A reply the agent's own checks refused (the call that brought it succeeded).
    pub(crate) fn add_refused_reply(&mut self) {
        self.content_failures += 1;
    }

    pub(crate) fn figures(&self) -> Figures {
        Figures {
            attempts: self.attempts,
            completed: self.completed,
            success_rate: (self.decided > 0).then(|| self.completed as f64 / self.decided as f64),
            calls: self.calls,
            latency_p50_ms: percentile(&self.latencies_ms, 0.5),
            latency_p95_ms: percentile(&self.latencies_ms, 0.95),
            time_to_first_token_p50_ms: percentile(&self.first_token_ms, 0.5),
            tokens_in: self.tokens_in,
            tokens_out: self.tokens_out,
            cost_usd: total_cost(self.costs.iter().copied()),
            mean_quality: mean(&self.qualities),
            rate_limited: self.rate_limited,
            content_failures: self.content_failures,
        }
    }
}

pub use pitcrew_core::percentile;

/// The sum of the costs that are known; `None` when none is. Never `-0.0` (what an empty
/// `f64` sum is), which would print as `$-0.0000`.
pub fn total_cost(costs: impl IntoIterator<Item = Option<f64>>) -> Option<f64> {
    costs
        .into_iter()
        .flatten()
        .fold(None, |total, cost| Some(total.unwrap_or(0.0) + cost))
}

fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costs_sum_what_is_known_and_nothing_is_unknown() {
        assert_eq!(total_cost([]), None);
        assert_eq!(total_cost([None, None]), None);
        assert_eq!(total_cost([Some(0.25), None, Some(0.5)]), Some(0.75));
        let free = total_cost([Some(0.0)]).unwrap();
        assert!(free == 0.0 && free.is_sign_positive());
        let negative_zero = total_cost([Some(-0.0)]).unwrap();
        assert_eq!(format!("{negative_zero:.4}"), "0.0000");
    }

    #[test]
    fn an_empty_tally_has_counts_of_zero_and_no_other_figure() {
        let figures = Tally::default().figures();
        assert_eq!(
            (figures.attempts, figures.completed, figures.calls),
            (0, 0, 0)
        );
        assert_eq!(figures.success_rate, None);
        assert_eq!(figures.latency_p50_ms, None);
        assert_eq!(figures.latency_p95_ms, None);
        assert_eq!(figures.time_to_first_token_p50_ms, None);
        assert_eq!(figures.cost_usd, None);
        assert_eq!(figures.mean_quality, None);
    }
}
