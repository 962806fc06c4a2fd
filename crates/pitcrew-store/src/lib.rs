//! The durable queue. [`Store`] is what the engine and the CLI use; each backend implements
//! it with its own SQL and migrations: [`SqliteStore`] (one file, one machine) and [`PgStore`]
//! (PostgreSQL, many workers on many machines). [`open`] picks one by the URL's scheme.
//! Semantics (DESIGN.md, "Queue semantics"), identical for both backends:
//!
//! - `submit` is one transaction: every task is stored, or none is.
//! - `claim` hands out `queued` tasks whose `run_at` has come, `critical` first and FIFO within
//!   a priority, each with a lease (owner, random token, expiry) and a new attempt record.
//! - Every write about a running task is fenced by its lease token: once a lease was rescued,
//!   cancelled or finished, writes carrying it fail with [`StoreError::LeaseLost`].
//! - `rescue_expired` returns tasks whose lease ran out to the queue (or fails them when their
//!   attempts are used up), marking the vanished attempt `abandoned`.
//! - Idempotency keys are unique among `queued` and `running` tasks; submitting a key that is
//!   taken returns the existing task, even when two submitters race.
//! - Model health is shared by every worker on the store, so a cooldown one worker ran into
//!   holds for all of them.
//! - Opening a store applies pending migrations; a store migrated by a newer pitcrew is
//!   refused with [`StoreError::SchemaTooNew`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pitcrew_core::{
    Attempt, AttemptReport, Lease, ModelHealth, NewTask, Priority, Task, TaskFilter, TaskId,
    TaskStatus,
};
use serde::Serialize;

mod postgres;
mod rules;
mod schema;
mod sqlite;

pub use postgres::PgStore;
pub use schema::MigrationStatus;
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
    /// The result is a well-formed test that fails against the current code: kept (with its
    /// commit) for a human to judge, not accepted.
    PossibleBug,
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
    #[error(
        "unsupported store URL `{0}`; use sqlite://PATH or postgres://USER@HOST[:PORT]/DATABASE"
    )]
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

    /// Gives a running task back to the queue without counting the attempt against it (a
    /// worker stopping before it could finish); the attempt is recorded as abandoned with
    /// `reason`. [`StoreError::LeaseLost`] when the lease is gone.
    async fn release(&self, lease: &Lease, reason: &str) -> Result<(), StoreError>;

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

    /// Every model's stored health, by model name.
    async fn model_health(&self) -> Result<Vec<ModelHealth>, StoreError>;

    /// `(model id, latency in ms)` of the most recent `limit` finished attempts that called a
    /// model, newest first (for latency percentiles).
    async fn recent_latencies(&self, limit: u32) -> Result<Vec<(String, u64)>, StoreError>;

    /// Stores `health` for its model, replacing what was stored, with one exception: a stored
    /// `cooldown_until` or `circuit_open_until` that has not ended yet and ends later than the
    /// one written is kept (a kept cooldown keeps its `cooldown_reason`), so one worker cannot
    /// shorten a cooldown another ran into. `None` is no cooldown: it clears only one that is
    /// over. `updated_at` is the store's clock at the write; the one in `health` is ignored.
    async fn record_model_health(&self, health: &ModelHealth) -> Result<(), StoreError>;

    /// Waits until new work may have arrived, or `max` has passed. A hint, not a promise: it
    /// may return with nothing to claim, and work that arrived just before the call may not
    /// end the wait, so callers claim after it returns and choose `max` as the longest they
    /// can afford to be late. SQLite sleeps `max`; PostgreSQL wakes as soon as a task becomes
    /// claimable (submitted, requeued, retried or rescued) and sleeps `max` while its listening
    /// connection is down.
    async fn wait_for_work(&self, max: Duration);
}

/// A store URL, split by scheme.
enum Backend<'a> {
    Sqlite(std::path::PathBuf),
    Postgres(&'a str),
}

impl<'a> Backend<'a> {
    fn of(url: &'a str) -> Result<Self, StoreError> {
        if let Some(path) = sqlite::path_from_url(url) {
            Ok(Backend::Sqlite(path))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres(url))
        } else {
            Err(StoreError::UnsupportedUrl(redact(url)))
        }
    }
}

/// Opens the store at `url` (`sqlite://PATH`, `sqlite:PATH`, `postgres://…` or
/// `postgresql://…`), applying pending migrations; a SQLite file is created when missing.
pub async fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match Backend::of(url)? {
        Backend::Sqlite(path) => Arc::new(SqliteStore::open(path).await?),
        Backend::Postgres(url) => Arc::new(PgStore::open(url).await?),
    })
}

/// Applies the pending migrations of the store at `url` and says what was done; what
/// `pitcrew migrate` runs. Safe while other processes open or migrate the same store.
pub async fn migrate(url: &str) -> Result<MigrationStatus, StoreError> {
    match Backend::of(url)? {
        Backend::Sqlite(path) => SqliteStore::connect(path).await?.migrate().await,
        Backend::Postgres(url) => PgStore::connect(url)?.migrate().await,
    }
}

/// `url` with its password (if any) replaced by `***`, fit for messages and logs.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rsplit_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}{}", &rest[authority_end..])
        }
        _ => url.to_string(),
    }
}

/// Reads a name stored as text (status, kind, …), reporting an unknown one as corruption.
pub(crate) fn parse<T: std::str::FromStr>(column: &str, value: &str) -> Result<T, StoreError> {
    value
        .parse()
        .map_err(|_| StoreError::Corrupt(format!("{column} = `{value}`")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_only_the_password() {
        assert_eq!(
            redact("postgres://app:s3cret@db.example:5432/queue?sslmode=require"),
            "postgres://app:***@db.example:5432/queue?sslmode=require"
        );
        assert_eq!(redact("postgres://app@db/queue"), "postgres://app@db/queue");
        assert_eq!(redact("sqlite://.pitcrew/q.db"), "sqlite://.pitcrew/q.db");
    }

    #[test]
    fn unsupported_schemes_are_named_without_their_password() {
        let Err(e) = Backend::of("mysql://root:hunter2@db/q") else {
            panic!("mysql accepted");
        };
        let message = e.to_string();
        assert!(message.contains("mysql://root:***@db/q"), "{message}");
        assert!(message.contains("postgres://"), "{message}");
    }
}
