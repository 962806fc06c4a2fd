//! Client-side regulation per model, so that the provider's limit is rarely reached: request
//! and token rates (governor's GCRA) and an adaptive cap on calls in flight (additive
//! increase on success, halving on a 429).

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use pitcrew_core::{
    LimitDecision, MINUTE_MS, RATE_MARGIN, SharedLimit, judge_limit, utc_day_start_ms,
};

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
            let spacing = Duration::from_secs_f64(60.0 / f64::from(rpm) * RATE_MARGIN);
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

/// Limits several models share (a provider account's quota), counted in this process: requests
/// and tokens over a sliding minute and requests per UTC day. Unlike [`RateLimits`] it can be
/// asked before it is taken from, so a call that another limit holds back uses none of it.
/// Workers sharing a store count them there instead (see [`crate::FleetLimits`]).
#[derive(Debug)]
pub(crate) struct SharedQuota {
    limit: SharedLimit,
    /// (ms, tokens) of the calls of the last minute, oldest first.
    minute: VecDeque<(i64, u64)>,
    day_start_ms: i64,
    today: u64,
}

impl SharedQuota {
    pub(crate) fn new(limit: SharedLimit) -> Self {
        SharedQuota {
            limit,
            minute: VecDeque::new(),
            day_start_ms: 0,
            today: 0,
        }
    }

    /// Whether a call of `tokens` fits at `now_ms`: `None`, or why not.
    pub(crate) fn check(&mut self, tokens: u64, now_ms: i64) -> Option<LimitDecision> {
        self.roll_day(now_ms);
        while self
            .minute
            .front()
            .is_some_and(|(at, _)| now_ms - at >= MINUTE_MS)
        {
            self.minute.pop_front();
        }
        judge_limit(
            &self.limit,
            self.minute.make_contiguous(),
            self.today,
            tokens,
        )
    }

    /// A new UTC day starts with nothing used.
    fn roll_day(&mut self, now_ms: i64) {
        let day_start = utc_day_start_ms(now_ms);
        if day_start != self.day_start_ms {
            (self.day_start_ms, self.today) = (day_start, 0);
        }
    }

    /// Counts a call of `tokens` made at `now_ms` (after [`SharedQuota::check`] allowed it).
    pub(crate) fn take(&mut self, tokens: u64, now_ms: i64) {
        self.minute.push_back((now_ms, tokens));
        self.today += 1;
    }

    /// The day's requests are used up, as the provider said (a quota 429) at `now_ms`.
    pub(crate) fn spend_day(&mut self, now_ms: i64) {
        self.roll_day(now_ms);
        if let Some(rpd) = self.limit.rpd {
            self.today = self.today.max(u64::from(rpd));
        }
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
    fn a_shared_quota_counts_requests_tokens_and_days_without_taking_on_a_check() {
        let quota = |rpm, tpm, rpd| {
            SharedQuota::new(SharedLimit {
                key: "quota:q".into(),
                rpm,
                tpm,
                rpd,
            })
        };
        let start = chrono::Utc::now().timestamp_millis();
        let mut shared = quota(Some(2), Some(1000), Some(3));
        assert_eq!(shared.check(400, start), None);
        assert_eq!(shared.check(400, start), None, "a check takes nothing");
        shared.take(400, start);
        shared.take(400, start);
        let Some(LimitDecision::NotBefore { at, .. }) = shared.check(10, start) else {
            panic!("the minute's requests are used")
        };
        assert!(at.timestamp_millis() >= start + MINUTE_MS);
        let later = start + 62_000;
        assert_eq!(shared.check(10, later), None);
        shared.take(10, later);
        assert!(matches!(
            shared.check(10, later),
            Some(LimitDecision::DayUsed { .. })
        ));
        let mut tokens = quota(None, Some(1000), None);
        tokens.take(800, start);
        assert!(tokens.check(300, start).is_some());
        assert_eq!(tokens.check(200, start), None);
        let mut spent = quota(None, None, Some(50));
        spent.spend_day(start);
        assert!(matches!(
            spent.check(1, start),
            Some(LimitDecision::DayUsed { .. })
        ));
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
