//! When a failed delivery is tried again. The schedule outlives the process that made an
//! attempt (the next attempt's time is stored, and any dispatcher may make it), so a delay is
//! computed from the attempt's number rather than iterated the way `backon` does in-process.

use std::time::Duration;

/// The delay after the first failed attempt; each later failure doubles it.
pub const FIRST_RETRY_DELAY: Duration = Duration::from_secs(1);
/// The longest the doubling goes.
pub const MAX_BACKOFF: Duration = Duration::from_secs(15 * 60);
/// The longest wait a receiver's `Retry-After` is granted: asking for more gets this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// How long to wait after `failed` attempts failed (1 for the first): 1 s doubled per failure
/// up to 15 minutes, spread ±20 % so that deliveries failing together do not come back
/// together; and never sooner than the receiver's `Retry-After`, when it sent one.
pub fn retry_delay(failed: u32, retry_after: Option<Duration>) -> Duration {
    let doublings = failed.saturating_sub(1).min(20);
    let backoff = FIRST_RETRY_DELAY
        .saturating_mul(1 << doublings)
        .min(MAX_BACKOFF)
        .mul_f64(0.8 + 0.4 * fastrand::f64());
    match retry_after {
        Some(asked) => backoff.max(asked.min(MAX_RETRY_AFTER)),
        None => backoff,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn within(delay: Duration, nominal_secs: f64) -> bool {
        let secs = delay.as_secs_f64();
        secs >= nominal_secs * 0.8 - 1e-9 && secs <= nominal_secs * 1.2 + 1e-9
    }

    #[test]
    fn delays_double_from_one_second_up_to_fifteen_minutes_with_jitter() {
        for _ in 0..50 {
            assert!(within(retry_delay(1, None), 1.0));
            assert!(within(retry_delay(2, None), 2.0));
            assert!(within(retry_delay(5, None), 16.0));
            assert!(within(retry_delay(11, None), 900.0));
            assert!(within(retry_delay(u32::MAX, None), 900.0));
        }
        // Jittered: not every delay is the same.
        let delays: std::collections::HashSet<Duration> =
            (0..20).map(|_| retry_delay(3, None)).collect();
        assert!(delays.len() > 1);
    }

    #[test]
    fn retry_after_is_honoured_up_to_a_day() {
        let asked = Duration::from_secs(120);
        assert_eq!(retry_delay(1, Some(asked)), asked);
        // A backoff already longer than asked is kept.
        assert!(retry_delay(11, Some(Duration::from_secs(1))) >= Duration::from_secs(720));
        let greedy = Duration::from_secs(30 * 24 * 3600);
        assert_eq!(retry_delay(1, Some(greedy)), MAX_RETRY_AFTER);
    }
}
