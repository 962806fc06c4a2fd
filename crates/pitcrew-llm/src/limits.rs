//! Client-side regulation per model, so that the provider's limit is rarely reached: request
//! and token rates (governor's GCRA) and an adaptive cap on calls in flight (additive
//! increase on success, halving on a 429).

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// Requests are spaced this much wider than the provider's RPM implies. Providers count
/// arrivals, which jitter by milliseconds around our send times; at exactly the limit a
/// jittered pair would cost a 429 and a cooldown.
const RPM_MARGIN: f64 = 1.02;

/// Requests-per-minute and tokens-per-minute limiters for one model.
#[derive(Debug)]
pub(crate) struct RateLimits {
    requests: Option<DefaultDirectRateLimiter>,
    /// The limiter and its burst: the most tokens one call can take at once.
    tokens: Option<(DefaultDirectRateLimiter, NonZeroU32)>,
}

impl RateLimits {
    pub(crate) fn new(rpm: Option<u32>, tpm: Option<u32>) -> Self {
        // Requests one at a time (burst 1): a provider counting over a sliding minute sees at
        // most `rpm` in any minute, however the calls bunch up.
        let requests = rpm.filter(|r| *r > 0).map(|rpm| {
            let spacing = Duration::from_secs_f64(60.0 / f64::from(rpm) * RPM_MARGIN);
            RateLimiter::direct(Quota::with_period(spacing).expect("spacing is positive"))
        });
        // Tokens come in large lumps, so they need a burst; a quarter of the minute's
        // allowance keeps any one minute within bounds while letting a big prompt through.
        let tokens = tpm.and_then(NonZeroU32::new).map(|tpm| {
            let burst = NonZeroU32::new(tpm.get() / 4).unwrap_or(NonZeroU32::MIN);
            (
                RateLimiter::direct(Quota::per_minute(tpm).allow_burst(burst)),
                burst,
            )
        });
        RateLimits { requests, tokens }
    }

    /// Takes one request and `tokens` tokens now, or returns when to ask again. A call larger
    /// than the token burst waits for a full bucket rather than never running.
    pub(crate) fn try_take(&self, tokens: u64) -> Result<(), Instant> {
        if let Some((limiter, burst)) = &self.tokens {
            let n = u32::try_from(tokens)
                .unwrap_or(u32::MAX)
                .clamp(1, burst.get());
            let n = NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
            // `n` fits the burst, so the outer error (never enough capacity) cannot occur.
            if let Ok(Err(not_until)) = limiter.check_n(n) {
                return Err(not_until.earliest_possible());
            }
        }
        if let Some(limiter) = &self.requests {
            limiter
                .check()
                .map_err(|not_until| not_until.earliest_possible())?;
        }
        Ok(())
    }
}

/// An adaptive cap on one model's calls in flight.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Concurrency {
    limit: f64,
    max: f64,
    pub(crate) in_flight: u32,
}

impl Concurrency {
    pub(crate) fn new(initial: u32, max: u32) -> Self {
        let max = f64::from(max.max(1));
        Concurrency {
            limit: f64::from(initial.max(1)).min(max),
            max,
            in_flight: 0,
        }
    }

    pub(crate) fn has_room(&self) -> bool {
        f64::from(self.in_flight) < self.limit.floor()
    }

    /// Additive increase: one more slot per `limit` successes.
    pub(crate) fn grow(&mut self) {
        self.limit = (self.limit + 1.0 / self.limit).min(self.max);
    }

    /// Multiplicative decrease on a 429.
    pub(crate) fn halve(&mut self) {
        self.limit = (self.limit / 2.0).max(1.0);
    }

    #[cfg(test)]
    fn limit(&self) -> u32 {
        self.limit.floor() as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_spaced_by_the_rpm() {
        let limits = RateLimits::new(Some(600), None);
        assert!(limits.try_take(1).is_ok());
        let again = limits.try_take(1).unwrap_err();
        let wait = again.saturating_duration_since(Instant::now());
        assert!(
            wait > Duration::from_millis(80) && wait <= Duration::from_millis(103),
            "{wait:?}"
        );
    }

    #[test]
    fn tokens_are_limited_per_minute_and_oversized_calls_still_run() {
        let limits = RateLimits::new(None, Some(4000));
        assert!(
            limits.try_take(1000).is_ok(),
            "a quarter of the minute is the burst"
        );
        assert!(limits.try_take(10).is_err());
        let fresh = RateLimits::new(None, Some(4000));
        assert!(fresh.try_take(50_000).is_ok(), "clamped to the burst");
        assert!(RateLimits::new(None, None).try_take(u64::MAX).is_ok());
    }

    #[test]
    fn concurrency_halves_on_429_and_grows_back() {
        let mut c = Concurrency::new(4, 8);
        c.halve();
        assert_eq!(c.limit(), 2);
        c.halve();
        c.halve();
        assert_eq!(c.limit(), 1);
        for _ in 0..3 {
            c.grow();
        }
        assert_eq!(c.limit(), 2);
        for _ in 0..100 {
            c.grow();
        }
        assert_eq!(c.limit(), 8);
    }
}
