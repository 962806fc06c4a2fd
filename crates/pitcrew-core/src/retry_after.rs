//! `Retry-After`, as providers and webhook receivers send it.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// How long a `Retry-After` value asks to wait from `now`: delta-seconds or an HTTP date (RFC
/// 9110). A date in the past is no wait; anything else unreadable is `None`.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(s) = value.parse::<f64>() {
        return Some(Duration::try_from_secs_f64(s.max(0.0)).unwrap_or(Duration::MAX));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?;
    Some((at.with_timezone(&Utc) - now).to_std().unwrap_or_default())
}
