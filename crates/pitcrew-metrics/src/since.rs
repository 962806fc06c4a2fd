//! Where a window of figures starts: `--since 24h` on the command line, the same text
//! anywhere else a window is asked for.

use std::str::FromStr;

use chrono::{DateTime, TimeDelta, Utc};

/// The forms a window start may take, for messages.
pub const SINCE_FORMS: &str = "a duration back from now (30m, 24h, 7d; units s, m, h, d, w) \
    or an RFC 3339 timestamp (2025-01-31T09:00:00Z)";

/// The start of a window: a span back from the moment the figures are made, or a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// `30m`, `24h`, `7d`: this long before now.
    Ago(TimeDelta),
    /// An RFC 3339 timestamp.
    At(DateTime<Utc>),
}

impl Since {
    /// The moment the window starts, for a window that ends at `now`.
    pub fn start(self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Since::Ago(span) => now
                .checked_sub_signed(span)
                .unwrap_or(DateTime::<Utc>::MIN_UTC),
            Since::At(at) => at,
        }
    }
}

/// Text that is not a window start; the message says which forms are.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{given}` {reason}; give {SINCE_FORMS}")]
pub struct InvalidSince {
    pub given: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl FromStr for Since {
    type Err = InvalidSince;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let invalid = |reason| InvalidSince {
            given: text.to_string(),
            reason,
        };
        if let Ok(at) = DateTime::parse_from_rfc3339(text) {
            return Ok(Since::At(at.with_timezone(&Utc)));
        }
        let unit_at = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (digits, unit) = text.split_at(unit_at);
        let seconds_per_unit: i64 = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 60 * 60,
            "d" => 24 * 60 * 60,
            "w" => 7 * 24 * 60 * 60,
            _ => return Err(invalid("is neither a duration nor a timestamp")),
        };
        if digits.is_empty() {
            return Err(invalid("is neither a duration nor a timestamp"));
        }
        // Only digits are left: parsing fails on overflow alone.
        let count: i64 = digits
            .parse()
            .map_err(|_| invalid("is too long a duration"))?;
        if count == 0 {
            // An empty window holds nothing: surely not what was meant.
            return Err(invalid("is an empty window"));
        }
        count
            .checked_mul(seconds_per_unit)
            .and_then(TimeDelta::try_seconds)
            .map(Since::Ago)
            .ok_or_else(|| invalid("is too long a duration"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_timestamps_are_read() {
        let now = DateTime::parse_from_rfc3339("2025-03-10T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        for (given, start) in [
            ("30m", "2025-03-10T11:30:00Z"),
            ("24h", "2025-03-09T12:00:00Z"),
            (" 7d ", "2025-03-03T12:00:00Z"),
            ("90s", "2025-03-10T11:58:30Z"),
            ("2w", "2025-02-24T12:00:00Z"),
            ("2025-03-01T08:00:00Z", "2025-03-01T08:00:00Z"),
            ("2025-03-01T09:00:00+01:00", "2025-03-01T08:00:00Z"),
        ] {
            let since: Since = given.parse().unwrap();
            assert_eq!(
                since.start(now).to_rfc3339(),
                start.replace('Z', "+00:00"),
                "{given}"
            );
        }
    }

    #[test]
    fn anything_else_is_refused_with_the_forms_named() {
        for (given, reason) in [
            ("", "neither"),
            ("24", "neither"),
            ("h", "neither"),
            ("24 h", "neither"),
            ("-5m", "neither"),
            ("1.5h", "neither"),
            ("3y", "neither"),
            ("yesterday", "neither"),
            ("2025-03-01", "neither"),
            ("0m", "empty window"),
            ("99999999999999999999d", "too long"),
            ("9999999999999999d", "too long"),
        ] {
            let error = given.parse::<Since>().unwrap_err();
            let message = error.to_string();
            assert!(message.contains(reason), "{given}: {message}");
            assert!(message.contains("30m, 24h, 7d"), "{message}");
            assert!(message.contains("RFC 3339"), "{message}");
        }
    }
}
