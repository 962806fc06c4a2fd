use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::named_enum;

named_enum! {
    /// What a task asks for; selects the prompt and the validation rules.
    pub enum TaskKind ("task kind") {
        UnitTest = "unit_test",
        IntegrationTest = "integration_test",
        Implement = "implement",
        Fix = "fix",
        Refactor = "refactor",
        Docs = "docs",
        Custom = "custom",
    }
}

impl TaskKind {
    /// Kinds that work on existing files: their targets must exist at the base commit.
    pub fn needs_existing_targets(self) -> bool {
        !matches!(self, TaskKind::Implement | TaskKind::Custom)
    }
}

named_enum! {
    /// Claim order: every `critical` task before any `high`, and so on; FIFO within one.
    pub enum Priority ("priority") {
        Critical = "critical",
        High = "high",
        Normal = "normal",
        Low = "low",
    }
}

impl Priority {
    /// The number stored and sorted on: lower is claimed first.
    pub const fn rank(self) -> i64 {
        match self {
            Priority::Critical => 0,
            Priority::High => 1,
            Priority::Normal => 2,
            Priority::Low => 3,
        }
    }

    pub fn from_rank(rank: i64) -> Option<Self> {
        Self::ALL.iter().copied().find(|p| p.rank() == rank)
    }
}

named_enum! {
    /// Where a task is in its life: `queued` → `running` → `completed` | `failed` |
    /// `possible_bug` | `cancelled`, and `running` → `queued` again when an attempt failed for
    /// a reason worth retrying.
    pub enum TaskStatus ("task status") {
        Queued = "queued",
        Running = "running",
        Completed = "completed",
        Failed = "failed",
        /// A well-formed test that fails against the current code: kept for a human to judge
        /// whether the code or the test is wrong.
        PossibleBug = "possible_bug",
        Cancelled = "cancelled",
    }
}

impl TaskStatus {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskStatus::Completed
                | TaskStatus::Failed
                | TaskStatus::PossibleBug
                | TaskStatus::Cancelled
        )
    }
}

named_enum! {
    /// Why an attempt did not produce an accepted result. The class decides what happens next.
    pub enum ErrorKind ("error kind") {
        /// Could not reach the provider.
        Connection = "connection",
        /// A request or the whole task ran past its time limit.
        Timeout = "timeout",
        /// The provider said 429: slow down for a short while.
        RateLimit = "rate_limit",
        /// A daily or free-tier quota is used up: the model is unusable until its reset.
        Quota = "quota",
        /// The provider answered 5xx.
        ServerError = "server_error",
        /// The reply stopped before it was complete.
        Truncated = "truncated",
        /// The stream was not well formed (a chunk that is not JSON, content of an unknown
        /// shape, counts that do not add up): what arrived cannot be trusted to be what the
        /// model sent.
        MalformedStream = "malformed_stream",
        /// The worker holding the task stopped heart-beating (crash, kill, partition).
        LeaseExpired = "lease_expired",
        /// Every model that could serve the call is cooling down or has an open circuit.
        NoModelAvailable = "no_model_available",
        /// The worker was stopped before the attempt finished; the task went back to the queue.
        Interrupted = "interrupted",
        /// The model replied with nothing.
        EmptyReply = "empty_reply",
        /// The reply held no code block annotated with a file path.
        NoFiles = "no_files",
        /// The reply tried to write outside the task's worktree.
        UnsafePath = "unsafe_path",
        /// The reply loops: the same tokens or lines over and over.
        Degenerate = "degenerate",
        /// The reply passed pitcrew's size limits (its text, a file, the number of files).
        ReplyTooLarge = "reply_too_large",
        /// The reply is prose where code was asked for.
        ProseOnly = "prose_only",
        /// The reply leaves placeholders (`... existing code ...`, `TODO: implement`).
        Placeholder = "placeholder",
        /// The provider's content filter withheld the reply.
        ContentFilter = "content_filter",
        /// A produced file does not parse.
        SyntaxError = "syntax_error",
        /// The reply's code blocks could not be read (never closed, empty).
        MalformedReply = "malformed_reply",
        /// The project's validation command failed on the produced files.
        ValidationFailed = "validation_failed",
        /// The provider rejected the API key.
        Auth = "auth",
        /// The provider rejected the request itself (unknown model, malformed body).
        BadRequest = "bad_request",
        /// The account has no credit left for a paid model (HTTP 402).
        Payment = "payment",
        /// The prompt does not fit the context window of any model that could take it.
        ContextTooLong = "context_too_long",
        /// The task's or the run's cost budget is spent.
        Budget = "budget",
        /// pitcrew's configuration cannot serve this task (unknown preset, missing key).
        Config = "config",
        /// The task's git workspace could not be prepared (missing base commit, git failure).
        Workspace = "workspace",
        /// An external agent runtime did not start (program missing, container never up).
        RuntimeStartup = "runtime_startup",
        /// An external agent repeated itself (the same action, or condensing its context
        /// again and again) and was stopped.
        Stuck = "stuck",
        /// An external agent reported an error, whatever its exit status said.
        AgentError = "agent_error",
        /// An external agent finished without changing any file.
        NoChanges = "no_changes",
        /// An external agent changed files its task may not change (test-runner
        /// configuration, the code under test of a test-writing task, pitcrew's files).
        PolicyViolation = "policy_violation",
    }
}

/// What an error kind means for the task (see DESIGN.md, "Error kinds").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// Not the task's fault: retry later, never counted against its quality.
    Infrastructure,
    /// The model's output was unusable.
    Content,
    /// The output was produced but did not pass validation.
    Validation,
    /// Retrying cannot help: fail now with the reason.
    Permanent,
}

impl ErrorKind {
    pub fn class(self) -> ErrorClass {
        use ErrorKind::*;
        match self {
            Connection | Timeout | RateLimit | Quota | ServerError | Truncated
            | MalformedStream | LeaseExpired | NoModelAvailable | Interrupted | RuntimeStartup => {
                ErrorClass::Infrastructure
            }
            EmptyReply | NoFiles | UnsafePath | SyntaxError | MalformedReply | Degenerate
            | ReplyTooLarge | ProseOnly | Placeholder | ContentFilter | Stuck | AgentError
            | NoChanges => ErrorClass::Content,
            ValidationFailed | PolicyViolation => ErrorClass::Validation,
            Auth | BadRequest | Payment | ContextTooLong | Budget | Config | Workspace => {
                ErrorClass::Permanent
            }
        }
    }

    pub fn is_retryable(self) -> bool {
        self.class() == ErrorClass::Infrastructure
    }
}

/// A task's identity: a UUID v7, so ids sort by creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(transparent)]
pub struct TaskId(pub Uuid);

impl TaskId {
    pub fn new() -> Self {
        TaskId(Uuid::now_v7())
    }

    /// The name of the git branch holding the task's accepted result.
    pub fn branch_name(&self) -> String {
        format!("pitcrew/{self}")
    }
}

impl Default for TaskId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.as_hyphenated().fmt(f)
    }
}

impl FromStr for TaskId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s.trim()).map(TaskId)
    }
}

/// A task as submitted, before the store gives it an id and a place in the queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewTask {
    pub kind: TaskKind,
    pub description: String,
    /// Paths relative to the repository root.
    pub targets: Vec<String>,
    /// Absolute path of the repository the task works on, on the submitter's machine.
    pub repo: String,
    /// Where the repository can be cloned from (its `origin` remote, without credentials):
    /// a worker whose clone is elsewhere, or who has none, finds or makes one by it.
    #[serde(default)]
    pub repo_url: Option<String>,
    /// The commit the task's worktree starts from.
    pub base_commit: String,
    pub priority: Priority,
    /// A model preset name; `None` means the configured default.
    pub model: Option<String>,
    pub max_attempts: u32,
    /// Submitting twice with the same key while the first is not finished returns the first.
    pub idempotency_key: Option<String>,
    pub metadata: serde_json::Value,
}

/// A task's short handle, `#42`: its number in the store ([`Task::seq`]), accepted wherever
/// an id is.
pub fn handle(seq: u64) -> String {
    format!("#{seq}")
}

/// A task as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Task {
    pub id: TaskId,
    /// The task's number in its store: 1, 2, 3, … in order of submission, never reused. Shown
    /// as the handle `#42`, accepted wherever an id is.
    pub seq: u64,
    pub kind: TaskKind,
    pub description: String,
    pub targets: Vec<String>,
    pub repo: String,
    pub repo_url: Option<String>,
    pub base_commit: String,
    pub priority: Priority,
    pub model: Option<String>,
    pub max_attempts: u32,
    pub idempotency_key: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub metadata: serde_json::Value,
    pub status: TaskStatus,
    /// How many times the task has been claimed.
    pub attempts: u32,
    /// Not claimed before this time (retry backoff).
    pub run_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub error_kind: Option<ErrorKind>,
    pub last_error: Option<String>,
    /// The commit holding the accepted result (on branch `pitcrew/<id>`).
    pub result_commit: Option<String>,
}

/// The right to work on a task, held by one worker until it expires. Every write about a
/// running task names the lease's token; a write with a token that is no longer current is
/// rejected (fencing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lease {
    pub task_id: TaskId,
    pub token: Uuid,
    pub owner: String,
    /// The attempt number this lease belongs to (1 for the first claim).
    pub attempt: u32,
}

/// Which tasks `list` returns: in the order they were submitted (by [`Task::seq`]).
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    pub status: Option<TaskStatus>,
    pub kind: Option<TaskKind>,
    pub limit: Option<u32>,
    /// Only tasks submitted after the one with this number: the next page of a listing that
    /// ended there. Numbers are never reused, so pages neither skip nor repeat a task.
    pub after_seq: Option<u64>,
}
