//! What each of the demo's tasks ended as and why, told from what the store recorded: its
//! status and error, and for every round the model calls that failed and how the round
//! ended.

use pitcrew_core::{Attempt, ErrorKind, Task, TaskStatus};
use pitcrew_runtime::Repo;
use pitcrew_store::{Store, Submitted};
use serde::{Deserialize, Serialize};

use crate::output;

/// One task's ending.
#[derive(Debug, Serialize)]
pub struct Story {
    pub task: String,
    pub seq: u64,
    pub target: String,
    pub model: Option<String>,
    pub status: TaskStatus,
    /// Why it ended so, in a line.
    pub reason: String,
    /// The branch holding its result, when git has it.
    pub branch: Option<String>,
    /// Every round of every attempt, in a line each.
    pub rounds: Vec<String>,
}

/// A round as the agent records it in an attempt's details.
#[derive(Debug, Deserialize)]
struct Round {
    number: u32,
    outcome: String,
    #[serde(default)]
    calls: Vec<Call>,
}

#[derive(Debug, Deserialize)]
struct Call {
    error_kind: Option<ErrorKind>,
}

/// The stories of the `submitted` tasks, in their order.
pub async fn tell(
    store: &dyn Store,
    repo: &Repo,
    submitted: &[Submitted],
) -> anyhow::Result<Vec<Story>> {
    let mut stories = Vec::with_capacity(submitted.len());
    for one in submitted {
        let task = store.find(&one.id.to_string()).await?;
        let attempts = store.attempts(task.id).await?;
        let branch = task.id.branch_name();
        let branch = repo.branch_commit(&branch).await?.map(|_| branch);
        stories.push(Story {
            task: task.id.to_string(),
            seq: task.seq,
            target: task.targets.join(" "),
            model: task.model.clone(),
            status: task.status,
            reason: reason(&task, attempts.last()),
            branch,
            rounds: attempts.iter().flat_map(rounds).collect(),
        });
    }
    Ok(stories)
}

fn reason(task: &Task, last: Option<&Attempt>) -> String {
    let error = task
        .last_error
        .as_deref()
        .and_then(|e| e.lines().next())
        .unwrap_or("no reason was recorded");
    match task.status {
        TaskStatus::Completed => "its tests passed every check".to_string(),
        TaskStatus::PossibleBug => {
            let failing = last.map(failing_tests).unwrap_or_default();
            format!(
                "{} of its tests fail against the code, so it was not accepted; either the code \
                 or the tests are wrong, for a human to judge: {}",
                failing.len(),
                failing.join("; ")
            )
        }
        TaskStatus::Failed => match task.error_kind {
            Some(kind) => format!("{kind}: {error}"),
            None => error.to_string(),
        },
        other => format!("{other} (the run ended before it finished)"),
    }
}

/// The tests of `attempt` that failed against the code, each with its failed assertion
/// (`test_x: AssertionError: assert 2 == 3`).
fn failing_tests(attempt: &Attempt) -> Vec<String> {
    let Some(report) = super::super::report::validation_of(attempt) else {
        return Vec::new();
    };
    report
        .failing_tests
        .iter()
        .map(|failing| {
            let name = failing
                .test
                .rsplit_once("::")
                .map_or(failing.test.as_str(), |(_, name)| name);
            // pytest marks the lines that explain a failure with `E`.
            match failing
                .failure
                .lines()
                .find_map(|line| line.trim_start().strip_prefix("E "))
            {
                Some(assertion) => format!("{name}: {}", assertion.trim()),
                None => name.to_string(),
            }
        })
        .collect()
}

/// A line per round of `attempt`: the calls that failed before the reply it used, and how
/// the round ended.
fn rounds(attempt: &Attempt) -> Vec<String> {
    let rounds: Vec<Round> = attempt
        .details
        .get("iterations")
        .and_then(|r| serde_json::from_value(r.clone()).ok())
        .unwrap_or_default();
    rounds
        .iter()
        .map(|round| {
            let mut steps: Vec<String> = round
                .calls
                .iter()
                .filter_map(|c| c.error_kind)
                .map(call_failure)
                .collect();
            steps.push(round_outcome(&round.outcome));
            format!("round {}: {}", round.number, steps.join(" → "))
        })
        .collect()
}

fn call_failure(kind: ErrorKind) -> String {
    match kind {
        ErrorKind::RateLimit => "rate limited (HTTP 429): the router waited as asked".into(),
        ErrorKind::Truncated => "the stream was cut off: the router called again".into(),
        ErrorKind::ProseOnly => "prose instead of code: an unusable reply".into(),
        other => format!("the call failed ({other})"),
    }
}

fn round_outcome(outcome: &str) -> String {
    match outcome {
        "accepted" => "tests accepted".into(),
        "accepted_without_failing_tests" => {
            "accepted without the tests that fail against the code (kept for a human)".into()
        }
        "possible_bug" => "tests fail against the code (the model is shown what it gives)".into(),
        "rejected" => "rejected by the checks (the findings go back to the model)".into(),
        "unusable_reply" => "no usable reply (asked again)".into(),
        "model_error" => "no reply (the model could not be reached)".into(),
        other => other.replace('_', " "),
    }
}

/// The stories as text: a paragraph per task.
pub fn print(stories: &[Story]) {
    output::line("What each task ended as, and why:");
    for story in stories {
        output::line(&format!(
            "\n  {}  {}  ({}): {}",
            output::handle(story.seq),
            story.target,
            story.model.as_deref().unwrap_or("-"),
            story.status
        ));
        for round in &story.rounds {
            output::line(&format!("      {round}"));
        }
        output::line(&format!("      → {}", story.reason));
        if let Some(branch) = &story.branch {
            output::line(&format!("      result: branch {branch}"));
        }
    }
}
