//! Limits every worker of a store honours together: a provider's request and token rates
//! (a model's own, or an account's shared by several models) and a run's budget.

use chrono::{DateTime, Utc};
use serde::Serialize;

/// Requests and tokens over a sliding minute and requests per UTC day, counted under `key`
/// by every worker sharing the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SharedLimit {
    /// `model:<name>` for one model's own limits, `quota:<name>` for an account's.
    pub key: String,
    pub rpm: Option<u32>,
    pub tpm: Option<u32>,
    pub rpd: Option<u32>,
}

/// The answer to asking for one call under some [`SharedLimit`]s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitDecision {
    /// Counted under every limit; the call may go.
    Granted,
    /// The limit `key` has no room this minute; ask again at this time. Nothing was counted.
    NotBefore { key: String, at: DateTime<Utc> },
    /// The day's requests under `key` are used up (until 00:00 UTC). Nothing was counted.
    DayUsed { key: String },
}

/// Requests are spaced this much wider than a limit implies: providers count arrivals, which
/// jitter by milliseconds around the send times.
pub const RATE_MARGIN: f64 = 1.02;

/// The sliding minute of rates, widened by [`RATE_MARGIN`]: a call counts this long, so that
/// a provider whose clock or network runs a little behind still sees a full minute.
pub const MINUTE_MS: i64 = (60_000.0 * RATE_MARGIN) as i64;

/// What one limit allows given the calls counted under it: `minute` holds the (time in ms,
/// tokens) of the calls of the last [`MINUTE_MS`], oldest first, `today` the calls since 00:00 UTC.
/// `None` when a call of `tokens` fits now.
pub fn judge_limit(
    limit: &SharedLimit,
    minute: &[(i64, u64)],
    today: u64,
    tokens: u64,
) -> Option<LimitDecision> {
    if limit.rpd.is_some_and(|rpd| today >= u64::from(rpd)) {
        return Some(LimitDecision::DayUsed {
            key: limit.key.clone(),
        });
    }
    let not_before = |at_ms: i64| {
        Some(LimitDecision::NotBefore {
            key: limit.key.clone(),
            at: DateTime::from_timestamp_millis(at_ms + MINUTE_MS).unwrap_or_default(),
        })
    };
    if let Some(rpm) = limit.rpm.filter(|r| *r > 0).map(|r| r as usize)
        && minute.len() >= rpm
    {
        return not_before(minute[minute.len() - rpm].0);
    }
    if let Some(tpm) = limit.tpm.map(u64::from) {
        let used: u64 = minute.iter().map(|(_, t)| t).sum();
        // A call bigger than the whole allowance runs alone once the minute is clear.
        if used > 0 && used + tokens > tpm {
            let mut freed = 0;
            for (at, t) in minute {
                freed += t;
                if used - freed + tokens <= tpm {
                    return not_before(*at);
                }
            }
        }
    }
    None
}

/// The start of the UTC day `now_ms` falls in, in ms.
pub fn utc_day_start_ms(now_ms: i64) -> i64 {
    now_ms - now_ms.rem_euclid(86_400_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(rpm: Option<u32>, tpm: Option<u32>, rpd: Option<u32>) -> SharedLimit {
        SharedLimit {
            key: "quota:k".into(),
            rpm,
            tpm,
            rpd,
        }
    }

    #[test]
    fn a_full_minute_waits_for_its_oldest_call_to_leave() {
        let l = limit(Some(2), None, None);
        assert_eq!(judge_limit(&l, &[(1_000, 1)], 1, 1), None);
        let Some(LimitDecision::NotBefore { at, .. }) =
            judge_limit(&l, &[(1_000, 1), (5_000, 1)], 2, 1)
        else {
            panic!("the minute is full")
        };
        assert_eq!(at.timestamp_millis(), 1_000 + 61_200);
    }

    #[test]
    fn tokens_and_days_are_limits_too() {
        let l = limit(None, Some(100), Some(3));
        assert!(judge_limit(&l, &[(0, 60)], 1, 60).is_some());
        assert_eq!(judge_limit(&l, &[(0, 60)], 1, 40), None);
        assert_eq!(
            judge_limit(&l, &[], 3, 1),
            Some(LimitDecision::DayUsed {
                key: "quota:k".into()
            })
        );
        assert_eq!(utc_day_start_ms(86_400_000 * 3 + 5), 86_400_000 * 3);
    }
}
