//! The durable queue. [`Store`] is what the engine and the CLI use; each backend implements
//! it with its own SQL and migrations. Semantics (DESIGN.md, "Queue semantics"):
//!
//! - `submit` is one transaction: every task is stored, or none is.
//! - `claim` hands out `queued` tasks whose `run_at` has come, `critical` first and FIFO within
//!   a priority, each with a lease (owner, random token, expiry) and a new attempt record.
//! - Every write about a running task is fenced by its lease token: once a lease was rescued,
//!   cancelled or finished, writes carrying it fail with [`StoreError::LeaseLost`].
//! - `rescue_expired` returns tasks whose lease ran out to the queue (or fails them when their
//!   attempts are used up), marking the vanished attempt `abandoned`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pitcrew_core::{
    Attempt, AttemptReport, Lease, NewTask, Priority, Task, TaskFilter, TaskId, TaskStatus,
};
use serde::Serialize;

mod sqlite;

pub use sqlite::SqliteStore;

/// The result of submitting one task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Submitted {
    pub id: TaskId,
    /// True when an unfinished task with the same idempotency key already existed; `id` is
    /// that task's.
    pub deduplicated: bool,
}

/// What a worker decided about the attempt it holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Disposition {
    /// The result is accepted.
    Complete,
    /// The task fails now.
    Fail,
    /// Try again after `delay` — or fail, when the task's attempts are used up.
    Retry { delay: Duration },
}

/// How many tasks sit in each status and priority, and when work is next due.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct QueueStats {
    /// `(status, priority, count)` for every non-empty combination.
    pub counts: Vec<(TaskStatus, Priority, u64)>,
    /// The earliest `run_at` of a queued task.
    pub next_run_at: Option<DateTime<Utc>>,
    /// The earliest lease expiry of a running task.
    pub next_lease_expiry: Option<DateTime<Utc>>,
}

impl QueueStats {
    pub fn count(&self, status: TaskStatus) -> u64 {
        self.counts
            .iter()
            .filter(|(s, _, _)| *s == status)
            .map(|(_, _, n)| n)
            .sum()
    }
}

/// A task whose lease expired and was taken back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rescued {
    pub id: TaskId,
    /// The worker that held the lease.
    pub owner: String,
    /// `queued` again, or `failed` when its attempts were used up.
    pub status: TaskStatus,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no task matches `{0}`")]
    NotFound(String),
    #[error("`{prefix}` matches {count} tasks; give more of the id")]
    Ambiguous { prefix: String, count: u64 },
    #[error(
        "the lease on task {task} (attempt {attempt}) is no longer held: the task was rescued, \
         cancelled or finished elsewhere; this worker's result is discarded"
    )]
    LeaseLost { task: TaskId, attempt: u32 },
    #[error("task {task} is {status}; {action}")]
    InvalidState {
        task: TaskId,
        status: TaskStatus,
        action: String,
    },
    #[error("idempotency key `{key}` is already used by unfinished task {task}")]
    IdempotencyConflict { key: String, task: TaskId },
    #[error(
        "the store at {url} has schema version {found}, newer than this pitcrew knows \
         (up to {known}); upgrade pitcrew"
    )]
    SchemaTooNew { url: String, found: i64, known: i64 },
    #[error("unsupported store URL `{0}`; use sqlite://PATH")]
    UnsupportedUrl(String),
    #[error("the store holds a row it cannot read ({0})")]
    Corrupt(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migrating the store: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// The queue's operations; see the crate docs for their guarantees.
#[async_trait]
pub trait Store: Send + Sync + fmt::Debug {
    /// Stores all `tasks` in one transaction (all or none), in order.
    async fn submit(&self, tasks: &[NewTask]) -> Result<Vec<Submitted>, StoreError>;

    /// Leases up to `limit` due tasks to `worker` for `ttl`.
    async fn claim(
        &self,
        worker: &str,
        limit: u32,
        ttl: Duration,
    ) -> Result<Vec<(Task, Lease)>, StoreError>;

    /// Extends a lease by `ttl` from now; [`StoreError::LeaseLost`] when it is gone.
    async fn heartbeat(&self, lease: &Lease, ttl: Duration) -> Result<(), StoreError>;

    /// Ends the leased attempt with `report` and moves the task on; returns its new status.
    async fn finish(
        &self,
        lease: &Lease,
        disposition: Disposition,
        report: &AttemptReport,
    ) -> Result<TaskStatus, StoreError>;

    /// Takes back every task whose lease has expired.
    async fn rescue_expired(&self) -> Result<Vec<Rescued>, StoreError>;

    /// Cancels a queued or running task (a running one's lease stops being valid).
    async fn cancel(&self, id: TaskId) -> Result<Task, StoreError>;

    /// Puts a failed or cancelled task back in the queue, allowing it one more attempt.
    async fn requeue(&self, id: TaskId) -> Result<Task, StoreError>;

    /// The task whose id is `id_or_prefix` or starts with it.
    async fn find(&self, id_or_prefix: &str) -> Result<Task, StoreError>;

    async fn list(&self, filter: &TaskFilter) -> Result<Vec<Task>, StoreError>;

    /// A task's attempts, oldest first.
    async fn attempts(&self, id: TaskId) -> Result<Vec<Attempt>, StoreError>;

    async fn stats(&self) -> Result<QueueStats, StoreError>;
}

/// Opens (creating and migrating when needed) the store at `url`.
pub async fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if let Some(path) = sqlite::path_from_url(url) {
        return Ok(Arc::new(SqliteStore::open(path).await?));
    }
    Err(StoreError::UnsupportedUrl(url.to_string()))
}
