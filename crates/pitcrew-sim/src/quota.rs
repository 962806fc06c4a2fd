//! Requests per minute, tokens per minute and requests per day, each counted over a sliding
//! window as providers count them, and the `x-ratelimit-*` headers that report them.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::config::Limits;

const MINUTE: Duration = Duration::from_secs(60);
const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// What a sliding window has let through: `(when, amount)`, oldest first.
#[derive(Debug)]
struct Window {
    span: Duration,
    limit: u64,
    entries: VecDeque<(Instant, u64)>,
    used: u64,
}

impl Window {
    fn new(span: Duration, limit: u64) -> Window {
        Window {
            span,
            limit,
            entries: VecDeque::new(),
            used: 0,
        }
    }

    fn forget_before(&mut self, now: Instant) {
        while let Some(&(at, amount)) = self.entries.front() {
            if now.duration_since(at) < self.span {
                break;
            }
            self.entries.pop_front();
            self.used -= amount;
        }
    }

    /// How long until `amount` more fits; zero when it fits now. An amount larger than the
    /// whole limit never fits: it is told to wait a full window.
    fn wait_for(&self, now: Instant, amount: u64) -> Duration {
        if amount > self.limit {
            return self.span;
        }
        let mut used = self.used;
        for &(at, taken) in &self.entries {
            if used + amount <= self.limit {
                break;
            }
            used -= taken;
            if used + amount <= self.limit {
                return (at + self.span).saturating_duration_since(now);
            }
        }
        Duration::ZERO
    }

    fn record(&mut self, now: Instant, amount: u64) {
        self.entries.push_back((now, amount));
        self.used += amount;
    }

    fn remaining(&self) -> u64 {
        self.limit.saturating_sub(self.used)
    }

    /// Until the oldest entry leaves the window (and with it, room frees up).
    fn reset(&self, now: Instant) -> Duration {
        self.entries.front().map_or(Duration::ZERO, |&(at, _)| {
            (at + self.span).saturating_duration_since(now)
        })
    }
}

/// Which quota refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exceeded {
    RequestsPerMinute,
    TokensPerMinute,
    RequestsPerDay,
}

/// A request refused: which quota, its limit, and how long until it would be admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub exceeded: Exceeded,
    pub limit: u64,
    pub wait: Duration,
}

/// One model's quotas.
#[derive(Debug)]
pub(crate) struct Quotas {
    rpm: Option<Window>,
    tpm: Option<Window>,
    rpd: Option<Window>,
}

impl Quotas {
    pub(crate) fn new(limits: Limits) -> Quotas {
        Quotas {
            rpm: limits.rpm.map(|limit| Window::new(MINUTE, limit)),
            tpm: limits.tpm.map(|limit| Window::new(MINUTE, limit)),
            rpd: limits.rpd.map(|limit| Window::new(DAY, limit)),
        }
    }

    /// Admits a request whose prompt is `prompt_tokens` long if every quota has room for it,
    /// counting it against the request quotas and the prompt against the token quota.
    /// The day's quota is checked first: it is the one a client must not keep retrying.
    pub(crate) fn admit(&mut self, now: Instant, prompt_tokens: u64) -> Result<(), Refusal> {
        for window in self.windows_mut() {
            window.forget_before(now);
        }
        let checks = [
            (&self.rpd, 1, Exceeded::RequestsPerDay),
            (&self.rpm, 1, Exceeded::RequestsPerMinute),
            // At least one token, so a full minute refuses even an empty prompt.
            (&self.tpm, prompt_tokens.max(1), Exceeded::TokensPerMinute),
        ];
        for (window, amount, exceeded) in checks {
            if let Some(window) = window {
                let wait = window.wait_for(now, amount);
                if !wait.is_zero() {
                    return Err(Refusal {
                        exceeded,
                        limit: window.limit,
                        wait,
                    });
                }
            }
        }
        for window in [&mut self.rpm, &mut self.rpd].into_iter().flatten() {
            window.record(now, 1);
        }
        if let Some(tpm) = &mut self.tpm {
            tpm.record(now, prompt_tokens);
        }
        Ok(())
    }

    /// Counts the completion tokens of an admitted request. They are known only once its
    /// reply is chosen, so a minute may end a little over its limit, as with real providers.
    pub(crate) fn add_completion(&mut self, now: Instant, tokens: u64) {
        if let Some(tpm) = &mut self.tpm {
            tpm.record(now, tokens);
        }
    }

    /// OpenAI's `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` headers. The request
    /// headers report the per-minute quota, or the daily one for a model with only that;
    /// a quota that is not configured is not reported. `reset` is the time until the oldest
    /// counted request (or tokens) leaves the window, as a Go-style duration (`1.5s`, `20ms`).
    pub(crate) fn headers(&mut self, now: Instant) -> Vec<(&'static str, String)> {
        for window in self.windows_mut() {
            window.forget_before(now);
        }
        let mut headers = Vec::new();
        let requests = self.rpm.as_ref().or(self.rpd.as_ref());
        let reported = [
            (
                requests,
                [
                    "x-ratelimit-limit-requests",
                    "x-ratelimit-remaining-requests",
                    "x-ratelimit-reset-requests",
                ],
            ),
            (
                self.tpm.as_ref(),
                [
                    "x-ratelimit-limit-tokens",
                    "x-ratelimit-remaining-tokens",
                    "x-ratelimit-reset-tokens",
                ],
            ),
        ];
        for (window, [limit, remaining, reset]) in reported {
            let Some(window) = window else { continue };
            headers.push((limit, window.limit.to_string()));
            headers.push((remaining, window.remaining().to_string()));
            headers.push((reset, go_duration(window.reset(now))));
        }
        headers
    }

    fn windows_mut(&mut self) -> impl Iterator<Item = &mut Window> {
        [&mut self.rpm, &mut self.tpm, &mut self.rpd]
            .into_iter()
            .flatten()
    }
}

/// `20ms`, `1.5s`, `2m3.25s`, `23h59m1s`: the duration format OpenAI's reset headers use.
pub(crate) fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (hours, rest) = (ms / 3_600_000, ms % 3_600_000);
    let (minutes, rest) = (rest / 60_000, rest % 60_000);
    let seconds = rest as f64 / 1000.0;
    let mut text = String::new();
    if hours > 0 {
        text += &format!("{hours}h");
    }
    if hours > 0 || minutes > 0 {
        text += &format!("{minutes}m");
    }
    text + &format!("{seconds}s")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(rpm: Option<u64>, tpm: Option<u64>, rpd: Option<u64>) -> Limits {
        Limits { rpm, tpm, rpd }
    }

    #[test]
    fn requests_are_counted_over_a_sliding_minute() {
        let start = Instant::now();
        let mut quotas = Quotas::new(limits(Some(2), None, None));
        assert_eq!(quotas.admit(start, 10), Ok(()));
        assert_eq!(quotas.admit(start + Duration::from_secs(30), 10), Ok(()));
        let refused = quotas
            .admit(start + Duration::from_secs(45), 10)
            .unwrap_err();
        assert_eq!(refused.exceeded, Exceeded::RequestsPerMinute);
        assert_eq!(refused.wait, Duration::from_secs(15));
        assert_eq!(quotas.admit(start + Duration::from_secs(60), 10), Ok(()));
    }

    #[test]
    fn tokens_wait_until_enough_have_left_the_minute() {
        let start = Instant::now();
        let mut quotas = Quotas::new(limits(None, Some(100), None));
        assert_eq!(quotas.admit(start, 30), Ok(()));
        quotas.add_completion(start, 30);
        assert_eq!(quotas.admit(start + Duration::from_secs(10), 30), Ok(()));
        // 90 used; 20 more needs the first two entries (60 tokens at `start`) gone.
        let refused = quotas
            .admit(start + Duration::from_secs(20), 20)
            .unwrap_err();
        assert_eq!(refused.exceeded, Exceeded::TokensPerMinute);
        assert_eq!(refused.wait, Duration::from_secs(40));
        let too_big = quotas.admit(start, 101).unwrap_err();
        assert_eq!(too_big.wait, MINUTE);
    }

    #[test]
    fn the_day_is_checked_first_and_headers_report_the_minute() {
        let start = Instant::now();
        let mut quotas = Quotas::new(limits(Some(5), Some(1000), Some(1)));
        assert_eq!(quotas.admit(start, 1), Ok(()));
        let refused = quotas.admit(start + Duration::from_secs(1), 1).unwrap_err();
        assert_eq!(refused.exceeded, Exceeded::RequestsPerDay);
        let headers = quotas.headers(start + Duration::from_millis(1500));
        let get = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("x-ratelimit-limit-requests"), Some("5"));
        assert_eq!(get("x-ratelimit-remaining-requests"), Some("4"));
        assert_eq!(get("x-ratelimit-reset-requests"), Some("58.5s"));
        assert_eq!(get("x-ratelimit-remaining-tokens"), Some("999"));
        assert!(Quotas::new(Limits::default()).headers(start).is_empty());
    }

    #[test]
    fn durations_are_written_the_go_way() {
        assert_eq!(go_duration(Duration::from_millis(20)), "20ms");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_millis(123_250)), "2m3.25s");
        assert_eq!(go_duration(Duration::from_secs(86_341)), "23h59m1s");
    }
}
