//! How a task moves on when its attempt ends or its lease expires: decided here once, so the
//! backends differ only in SQL, never in what they store.

use std::time::Duration;

use pitcrew_core::{
    AttemptOutcome, AttemptReport, ErrorKind, LimitDecision, MINUTE_MS, SharedLimit, TaskStatus,
    judge_limit, utc_day_start_ms,
};

use crate::Disposition;

/// `last_error` of a task cancelled through [`crate::Store::cancel`].
pub(crate) const CANCELLED_BY_USER: &str = "cancelled by user";

/// What `finish` writes: the task's new state and the attempt's outcome.
#[derive(Debug)]
pub(crate) struct Finished<'a> {
    pub status: TaskStatus,
    /// How long until the task may be claimed again (zero unless it is queued for a retry).
    pub delay: Duration,
    pub error_kind: Option<&'a str>,
    pub last_error: Option<String>,
    pub result_commit: Option<&'a str>,
    pub outcome: AttemptOutcome,
    /// The attempt does not count against the task: one more is allowed.
    pub refund: bool,
}

/// Where `disposition` leaves a task that has been claimed `attempts` times out of
/// `max_attempts`: a retry with no attempts left fails, saying so.
pub(crate) fn finished(
    disposition: Disposition,
    attempts: i64,
    max_attempts: i64,
    report: &AttemptReport,
) -> Finished<'_> {
    let (status, delay) = match disposition {
        Disposition::Complete => (TaskStatus::Completed, Duration::ZERO),
        Disposition::Fail => (TaskStatus::Failed, Duration::ZERO),
        Disposition::Retry { .. } if attempts >= max_attempts => {
            (TaskStatus::Failed, Duration::ZERO)
        }
        Disposition::Retry { delay } | Disposition::Defer { delay } => (TaskStatus::Queued, delay),
        Disposition::PossibleBug => (TaskStatus::PossibleBug, Duration::ZERO),
    };
    let refund = matches!(disposition, Disposition::Defer { .. });
    if status == TaskStatus::Completed {
        return Finished {
            status,
            delay,
            error_kind: None,
            last_error: None,
            result_commit: report.commit.as_deref(),
            outcome: AttemptOutcome::Completed,
            refund,
        };
    }
    let last_error = if matches!(disposition, Disposition::Retry { .. }) && status.is_terminal() {
        Some(used_up(
            report.error.as_deref().unwrap_or("failed"),
            attempts,
            max_attempts,
        ))
    } else {
        report.error.clone()
    };
    let possible_bug = status == TaskStatus::PossibleBug;
    Finished {
        status,
        delay,
        error_kind: report.error_kind.map(ErrorKind::as_str),
        last_error,
        // A possible bug keeps its commit: the failing test is what a human looks at.
        result_commit: possible_bug.then_some(report.commit.as_deref()).flatten(),
        outcome: if possible_bug {
            AttemptOutcome::PossibleBug
        } else {
            AttemptOutcome::Failed
        },
        refund,
    }
}

/// What `rescue_expired` writes about a task whose lease, held by `owner`, expired.
#[derive(Debug)]
pub(crate) struct Expired {
    pub status: TaskStatus,
    /// The abandoned attempt's error.
    pub attempt_error: String,
    /// The task's `last_error`.
    pub task_error: String,
}

pub(crate) fn expired(owner: &str, attempts: i64, max_attempts: i64) -> Expired {
    let attempt_error = format!("lease expired: worker `{owner}` stopped heart-beating");
    if attempts >= max_attempts {
        Expired {
            status: TaskStatus::Failed,
            task_error: used_up(&attempt_error, attempts, max_attempts),
            attempt_error,
        }
    } else {
        Expired {
            status: TaskStatus::Queued,
            task_error: attempt_error.clone(),
            attempt_error,
        }
    }
}

fn used_up(error: &str, attempts: i64, max_attempts: i64) -> String {
    format!("{error} (attempts used up: {attempts} of {max_attempts})")
}

/// The calls counted under one shared limit, as a backend reads them.
pub(crate) struct Counted {
    /// (ms, tokens) of the calls of the last minute, oldest first.
    pub minute: Vec<(i64, u64)>,
    /// Calls since 00:00 UTC.
    pub today: u64,
}

/// Counts as a backend reads them: (ms, tokens) rows of the minute and the day's count.
pub(crate) fn counted(minute: Vec<(i64, i64)>, today: i64) -> Counted {
    Counted {
        minute: minute
            .into_iter()
            .map(|(at, tokens)| (at, u64::try_from(tokens).unwrap_or(0)))
            .collect(),
        today: u64::try_from(today).unwrap_or(0),
    }
}

/// Calls under `limit` older than this (ms) count for nothing any more and may be deleted.
pub(crate) fn forget_before(limit: &SharedLimit, now_ms: i64) -> i64 {
    let minute_ago = now_ms - MINUTE_MS;
    if limit.rpd.is_some() {
        minute_ago.min(utc_day_start_ms(now_ms))
    } else {
        minute_ago
    }
}

/// The first of `limits` (each with its counts) that cannot take a call of `tokens`.
pub(crate) fn refusal<'a>(
    limits: impl IntoIterator<Item = (&'a SharedLimit, Counted)>,
    tokens: u64,
) -> Option<LimitDecision> {
    limits
        .into_iter()
        .find_map(|(limit, counted)| judge_limit(limit, &counted.minute, counted.today, tokens))
}

/// A little slack for rounding when a budget is compared with its limit.
pub(crate) const BUDGET_EPSILON: f64 = 1e-12;

#[cfg(test)]
mod tests {
    use super::*;

    fn failing() -> AttemptReport {
        AttemptReport {
            error_kind: Some(ErrorKind::ServerError),
            error: Some("HTTP 503".into()),
            commit: Some("abc".into()),
            ..AttemptReport::default()
        }
    }

    #[test]
    fn a_retry_without_attempts_left_fails_and_says_why() {
        let retry = Disposition::Retry {
            delay: Duration::from_secs(5),
        };
        let report = failing();
        let again = finished(retry, 1, 2, &report);
        assert_eq!(
            (again.status, again.delay),
            (TaskStatus::Queued, Duration::from_secs(5))
        );
        assert_eq!(again.last_error.as_deref(), Some("HTTP 503"));
        let spent = finished(retry, 2, 2, &report);
        assert_eq!(
            (spent.status, spent.delay),
            (TaskStatus::Failed, Duration::ZERO)
        );
        assert_eq!(
            spent.last_error.as_deref(),
            Some("HTTP 503 (attempts used up: 2 of 2)")
        );
        assert_eq!(spent.result_commit, None);
    }

    #[test]
    fn a_possible_bug_keeps_its_commit_and_its_reason() {
        let mut report = failing();
        report.error_kind = Some(ErrorKind::ValidationFailed);
        report.error = Some("test_sign fails: assert sign(0) == 1".into());
        let kept = finished(Disposition::PossibleBug, 1, 3, &report);
        assert_eq!(kept.status, TaskStatus::PossibleBug);
        assert_eq!(kept.outcome, AttemptOutcome::PossibleBug);
        assert_eq!(kept.result_commit, Some("abc"));
        assert_eq!(kept.error_kind, Some("validation_failed"));
        assert_eq!(
            kept.last_error.as_deref(),
            Some("test_sign fails: assert sign(0) == 1")
        );
    }

    #[test]
    fn only_a_completed_task_keeps_a_commit_and_loses_its_error() {
        let report = failing();
        let done = finished(Disposition::Complete, 1, 3, &report);
        assert_eq!(done.result_commit, Some("abc"));
        assert_eq!((done.error_kind, done.last_error), (None, None));
        assert_eq!(done.outcome, AttemptOutcome::Completed);
        let failed = finished(Disposition::Fail, 1, 3, &report);
        assert_eq!(failed.error_kind, Some("server_error"));
        assert_eq!(failed.outcome, AttemptOutcome::Failed);
    }

    #[test]
    fn an_expired_lease_requeues_until_attempts_run_out() {
        assert_eq!(expired("w1", 1, 3).status, TaskStatus::Queued);
        let spent = expired("w1", 3, 3);
        assert_eq!(spent.status, TaskStatus::Failed);
        assert_eq!(
            spent.task_error,
            "lease expired: worker `w1` stopped heart-beating (attempts used up: 3 of 3)"
        );
    }
}
