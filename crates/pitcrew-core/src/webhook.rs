//! Webhook events: what pitcrew tells the endpoints configured in `[[webhooks]]` when a task
//! or a run ends, in the body it POSTs. The body is made once, when the event is recorded, and
//! sent byte for byte the same on every attempt, so a receiver can verify its signature and
//! deduplicate by the event's id.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Task, TaskStatus, handle, named_enum};

named_enum! {
    /// What a webhook event says happened.
    pub enum WebhookEventType ("webhook event") {
        /// A task's result was accepted.
        TaskCompleted = "task.completed",
        /// A task failed for good (its attempts used up, or a failure retrying cannot help).
        TaskFailed = "task.failed",
        /// A task produced a well-formed test that fails against the code: a human's call.
        TaskPossibleBug = "task.possible_bug",
        /// A task was cancelled.
        TaskCancelled = "task.cancelled",
        /// `pitcrew run` ended: its queue drained, its budget spent, or it was stopped.
        RunFinished = "run.finished",
    }
}

impl WebhookEventType {
    /// The event a task's move to `status` is, when that status is an end.
    pub fn of_task_status(status: TaskStatus) -> Option<Self> {
        match status {
            TaskStatus::Completed => Some(Self::TaskCompleted),
            TaskStatus::Failed => Some(Self::TaskFailed),
            TaskStatus::PossibleBug => Some(Self::TaskPossibleBug),
            TaskStatus::Cancelled => Some(Self::TaskCancelled),
            TaskStatus::Queued | TaskStatus::Running => None,
        }
    }
}

/// An endpoint as the store sees it: where events of which types go. The secret that signs
/// them is not here; the store never holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSubscription {
    pub url: String,
    pub events: Vec<WebhookEventType>,
}

impl WebhookSubscription {
    pub fn wants(&self, event: WebhookEventType) -> bool {
        self.events.contains(&event)
    }
}

/// One event, as POSTed (JSON): `{"id", "type", "created_at", "data"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookEvent {
    /// Unique per event and the same on every attempt to deliver it: receivers deduplicate
    /// by it. A UUID v7, so ids sort by time.
    pub id: Uuid,
    #[serde(rename = "type")]
    pub event_type: WebhookEventType,
    pub created_at: DateTime<Utc>,
    /// `{"task": TaskEnded}` for `task.*` events, `{"run": RunEnded}` for `run.finished`.
    pub data: serde_json::Value,
}

/// A task that ended, as a `task.*` event's `data.task` describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskEnded {
    pub id: String,
    /// `#42`: the task's handle, as every command shows it.
    pub handle: String,
    pub seq: u64,
    pub kind: String,
    /// `completed`, `failed`, `possible_bug` or `cancelled`.
    pub status: TaskStatus,
    pub description: String,
    pub targets: Vec<String>,
    pub priority: String,
    /// The repository's path on the submitter's machine, and its remote when it has one.
    pub repo: String,
    pub repo_url: Option<String>,
    pub base_commit: String,
    pub attempts: u32,
    pub max_attempts: u32,
    pub idempotency_key: Option<String>,
    pub metadata: serde_json::Value,
    /// Why it did not complete (`null` when it did).
    pub error_kind: Option<String>,
    pub error: Option<String>,
    /// The commit of an accepted result or a possible bug, on `branch`.
    pub result_commit: Option<String>,
    pub branch: Option<String>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl TaskEnded {
    pub fn of(task: &Task) -> Self {
        TaskEnded {
            id: task.id.to_string(),
            handle: handle(task.seq),
            seq: task.seq,
            kind: task.kind.to_string(),
            status: task.status,
            description: task.description.clone(),
            targets: task.targets.clone(),
            priority: task.priority.to_string(),
            repo: task.repo.clone(),
            repo_url: task.repo_url.clone(),
            base_commit: task.base_commit.clone(),
            attempts: task.attempts,
            max_attempts: task.max_attempts,
            idempotency_key: task.idempotency_key.clone(),
            metadata: task.metadata.clone(),
            error_kind: task.error_kind.map(|kind| kind.to_string()),
            error: task.last_error.clone(),
            result_commit: task.result_commit.clone(),
            branch: task.result_commit.as_ref().map(|_| task.id.branch_name()),
            created_at: task.created_at,
            finished_at: task.finished_at,
        }
    }
}

/// A run that ended, as `run.finished`'s `data.run` describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunEnded {
    /// The run's id (`--run NAME`, or the one `pitcrew run` made): `pitcrew report --run ID`.
    pub id: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// Tasks this run finished, by how they ended.
    pub completed: u32,
    pub failed: u32,
    pub possible_bugs: u32,
    /// Attempts that failed for a reason worth retrying; their tasks went back to the queue.
    pub retried: u32,
    /// Tasks left waiting in the queue when the run ended.
    pub queued: u64,
    /// USD the run's calls cost.
    pub cost_usd: f64,
    /// The run stopped claiming because its budget was spent.
    pub budget_spent: bool,
    /// A signal stopped the run.
    pub stopped: bool,
}

impl WebhookEvent {
    /// A new event of `event_type` about `data`, made now.
    fn new(event_type: WebhookEventType, data: serde_json::Value) -> Self {
        WebhookEvent {
            id: Uuid::now_v7(),
            event_type,
            created_at: Utc::now(),
            data,
        }
    }

    /// The event of `task` having ended; `None` while it has not.
    pub fn task_ended(task: &Task) -> Option<Self> {
        let event_type = WebhookEventType::of_task_status(task.status)?;
        let data = serde_json::json!({ "task": TaskEnded::of(task) });
        Some(Self::new(event_type, data))
    }

    pub fn run_finished(run: &RunEnded) -> Self {
        Self::new(
            WebhookEventType::RunFinished,
            serde_json::json!({ "run": run }),
        )
    }

    /// The task the event is about, if it is about one.
    pub fn task_id(&self) -> Option<&str> {
        self.data["task"]["id"].as_str()
    }

    /// The body POSTed: this event as compact JSON.
    pub fn body(&self) -> String {
        serde_json::to_string(self).expect("an event serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ErrorKind, Priority, TaskId, TaskKind};

    fn task(status: TaskStatus) -> Task {
        let now = Utc::now();
        Task {
            id: TaskId::new(),
            seq: 7,
            kind: TaskKind::UnitTest,
            description: "write tests".into(),
            targets: vec!["src/a.py".into()],
            repo: "/repo".into(),
            repo_url: None,
            base_commit: "abc".into(),
            priority: Priority::High,
            model: None,
            max_attempts: 3,
            idempotency_key: Some("k".into()),
            metadata: serde_json::json!({"ticket": 12}),
            status,
            attempts: 2,
            run_at: now,
            created_at: now,
            updated_at: now,
            finished_at: Some(now),
            lease_owner: None,
            lease_expires_at: None,
            error_kind: (status == TaskStatus::Failed).then_some(ErrorKind::SyntaxError),
            last_error: (status == TaskStatus::Failed).then(|| "does not parse".into()),
            result_commit: (status == TaskStatus::Completed).then(|| "c0ffee".into()),
        }
    }

    #[test]
    fn only_an_ended_task_is_an_event_and_its_status_names_it() {
        for status in [TaskStatus::Queued, TaskStatus::Running] {
            assert!(WebhookEvent::task_ended(&task(status)).is_none());
        }
        for (status, name) in [
            (TaskStatus::Completed, "task.completed"),
            (TaskStatus::Failed, "task.failed"),
            (TaskStatus::PossibleBug, "task.possible_bug"),
            (TaskStatus::Cancelled, "task.cancelled"),
        ] {
            let event = WebhookEvent::task_ended(&task(status)).unwrap();
            assert_eq!(event.event_type.as_str(), name);
        }
    }

    #[test]
    fn the_body_carries_id_type_time_and_the_task() {
        let t = task(TaskStatus::Completed);
        let event = WebhookEvent::task_ended(&t).unwrap();
        let body: serde_json::Value = serde_json::from_str(&event.body()).unwrap();
        assert_eq!(body["id"], event.id.to_string());
        assert_eq!(body["type"], "task.completed");
        assert!(body["created_at"].as_str().unwrap().ends_with('Z'));
        let sent = &body["data"]["task"];
        assert_eq!(sent["id"], t.id.to_string());
        assert_eq!(sent["handle"], "#7");
        assert_eq!(sent["status"], "completed");
        assert_eq!(sent["kind"], "unit_test");
        assert_eq!(sent["priority"], "high");
        assert_eq!(sent["result_commit"], "c0ffee");
        assert_eq!(sent["branch"], format!("pitcrew/{}", t.id));
        assert_eq!(sent["metadata"]["ticket"], 12);
        assert_eq!(sent["error"], serde_json::Value::Null);
        assert_eq!(event.task_id(), Some(t.id.to_string().as_str()));
        // What was sent reads back as the same event.
        let read: WebhookEvent = serde_json::from_str(&event.body()).unwrap();
        assert_eq!(read, event);
    }

    #[test]
    fn a_failed_task_says_why_and_has_no_branch() {
        let event = WebhookEvent::task_ended(&task(TaskStatus::Failed)).unwrap();
        let sent = &event.data["task"];
        assert_eq!(sent["error_kind"], "syntax_error");
        assert_eq!(sent["error"], "does not parse");
        assert_eq!(sent["branch"], serde_json::Value::Null);
    }

    #[test]
    fn event_names_parse_as_configured() {
        assert_eq!(
            "run.finished".parse::<WebhookEventType>().unwrap(),
            WebhookEventType::RunFinished
        );
        let err = "task.done".parse::<WebhookEventType>().unwrap_err();
        assert!(err.to_string().contains("task.completed"), "{err}");
    }
}
