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
//! - No registered secret ([`pitcrew_core::register_secret`]) is written: an attempt's error,
//!   findings and details, a release reason and a model's cooldown reason are redacted before
//!   they are stored. The patch is stored as verified; task descriptions are the user's input.
//!   A store URL's password is registered when the store is opened and shown as `***`
//!   ([`redact_url`]).
//! - Webhooks: a task's end (written by `finish`, `cancel` or `rescue_expired`) enqueues one
//!   delivery per subscribed endpoint ([`Store::subscribe_webhooks`]) in the same
//!   transaction, so a task never ends without its deliveries. Deliveries are leased like
//!   tasks: a dispatcher claims due ones for the URLs it can sign for, and only the lease's
//!   holder records an attempt's outcome.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pitcrew_core::{
    Attempt, AttemptReport, Lease, LimitDecision, ModelHealth, NewTask, Priority, SharedLimit,
    Task, TaskFilter, TaskId, TaskKind, TaskStatus, WebhookEvent, WebhookSubscription,
};
use serde::Serialize;

mod postgres;
mod rules;
mod schema;
mod sqlite;
mod webhooks;

pub use postgres::PgStore;
pub use schema::MigrationStatus;
pub use sqlite::SqliteStore;
pub use webhooks::{
    ClaimedDelivery, DeliveryCount, DeliveryOutcome, DeliveryState, MAX_DELIVERY_ERROR_CHARS,
    WebhookDelivery,
};

/// The result of submitting one task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Submitted {
    pub id: TaskId,
    /// The task's number in the store, shown as its handle `#seq` (see [`Task::seq`]).
    pub seq: u64,
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
    /// Try again after `delay` without counting this attempt against the task: it failed
    /// for reasons that were not the task's (a provider outage, no model free, pitcrew's own
    /// trouble). The attempt is recorded, failed, with its error.
    Defer { delay: Duration },
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

    /// The counts as `pitcrew queue --json` and the HTTP API show them.
    pub fn summary(&self) -> QueueSummary {
        QueueSummary {
            counts: self
                .counts
                .iter()
                .map(|&(status, priority, count)| QueueCount {
                    status,
                    priority,
                    count,
                })
                .collect(),
            total: TaskStatus::ALL.iter().map(|s| self.count(*s)).sum(),
            next_run_at: self.next_run_at,
            next_lease_expiry: self.next_lease_expiry,
        }
    }
}

/// How many tasks sit in the queue, by status and priority, for people and programs to read.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QueueSummary {
    /// Every non-empty combination of status and priority.
    pub counts: Vec<QueueCount>,
    /// Tasks in the store, whatever their status.
    pub total: u64,
    /// The earliest time a queued task may be claimed.
    pub next_run_at: Option<DateTime<Utc>>,
    /// The earliest lease expiry of a running task.
    pub next_lease_expiry: Option<DateTime<Utc>>,
}

/// The number of tasks with one status and priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QueueCount {
    pub status: TaskStatus,
    pub priority: Priority,
    pub count: u64,
}

/// Which attempts [`Store::recorded_attempts`] returns.
#[derive(Debug, Clone, Default)]
pub struct AttemptFilter {
    /// Only attempts started at or after this time.
    pub started_since: Option<DateTime<Utc>>,
    /// Only attempts at tasks of this kind.
    pub kind: Option<TaskKind>,
}

/// A recorded attempt with what its task is and where the task stands now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskAttempt {
    pub kind: TaskKind,
    /// The task's status now, not when the attempt ended.
    pub task_status: TaskStatus,
    pub attempt: Attempt,
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

    /// The task `id_or_prefix` names: its handle (`#42`, or `42`: digits not starting with
    /// `0`, which no UUID v7 of the next five centuries does), its id, or a unique prefix of
    /// the id.
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

    /// The attempts `filter` selects, running ones included, in the order they started (then
    /// by task number and attempt number), each with its task's kind and current status. One
    /// query, whatever the number of tasks.
    async fn recorded_attempts(
        &self,
        filter: &AttemptFilter,
    ) -> Result<Vec<TaskAttempt>, StoreError>;

    /// Stores `health` for its model, replacing what was stored, with one exception: a stored
    /// `cooldown_until` or `circuit_open_until` that has not ended yet and ends later than the
    /// one written is kept (a kept cooldown keeps its `cooldown_reason`), so one worker cannot
    /// shorten a cooldown another ran into. `None` is no cooldown: it clears only one that is
    /// over. `updated_at` is the store's clock at the write; the one in `health` is ignored.
    async fn record_model_health(&self, health: &ModelHealth) -> Result<(), StoreError>;

    /// Counts one call of `tokens` under every one of `limits` if each has room, else under
    /// none (the first limit without room says why and until when). Every worker of the
    /// store counts here, so together they stay within each limit; PostgreSQL's clock times
    /// the calls, so a fleet's machines need not agree on the time.
    async fn take_limits(
        &self,
        limits: &[SharedLimit],
        tokens: u64,
    ) -> Result<LimitDecision, StoreError>;

    /// Reserves `amount_usd` of the budget `key`, which allows `limit_usd` in all: `false`,
    /// reserving nothing, when what is spent and reserved plus `amount_usd` would pass it.
    async fn reserve_budget(
        &self,
        key: &str,
        limit_usd: f64,
        amount_usd: f64,
    ) -> Result<bool, StoreError>;

    /// Replaces a reservation of `reserved_usd` under `key` by what the call cost.
    async fn settle_budget(
        &self,
        key: &str,
        reserved_usd: f64,
        cost_usd: f64,
    ) -> Result<(), StoreError>;

    /// What is spent or reserved under the budget `key` (0 for a budget never used).
    async fn budget_spent(&self, key: &str) -> Result<f64, StoreError>;

    /// Waits until new work may have arrived, or `max` has passed. A hint, not a promise: it
    /// may return with nothing to claim, and work that arrived just before the call may not
    /// end the wait, so callers claim after it returns and choose `max` as the longest they
    /// can afford to be late. SQLite sleeps `max`; PostgreSQL wakes as soon as a task becomes
    /// claimable (submitted, requeued, retried or rescued) and sleeps `max` while its listening
    /// connection is down.
    async fn wait_for_work(&self, max: Duration);

    /// The endpoints that get a delivery of every event recorded from now on: a task's end
    /// (enqueued by the write that ends it) and [`Store::enqueue_webhook_event`]. Replaces
    /// what was set; none at first.
    fn subscribe_webhooks(&self, subscriptions: Vec<WebhookSubscription>);

    /// Enqueues a delivery of `event` to every subscribed endpoint that wants its type;
    /// returns how many. Enqueuing an event again adds nothing for an endpoint that has it.
    async fn enqueue_webhook_event(&self, event: &WebhookEvent) -> Result<u32, StoreError>;

    /// Leases up to `limit` due deliveries to `urls` (pending, their next attempt due, not
    /// leased or their lease expired) to `owner` for `ttl`, oldest due first, counting an
    /// attempt for each.
    async fn claim_webhook_deliveries(
        &self,
        owner: &str,
        urls: &[String],
        limit: u32,
        ttl: Duration,
    ) -> Result<Vec<ClaimedDelivery>, StoreError>;

    /// Records how the attempt `delivery` was claimed for ended; `false`, writing nothing,
    /// when its lease is no longer held (it expired and another dispatcher took it).
    async fn record_webhook_attempt(
        &self,
        delivery: &ClaimedDelivery,
        outcome: &DeliveryOutcome,
    ) -> Result<bool, StoreError>;

    /// The `limit` most recent deliveries, newest first.
    async fn webhook_deliveries(&self, limit: u32) -> Result<Vec<WebhookDelivery>, StoreError>;

    /// Deliveries by URL and state, of the events recorded at or after `created_since` (all
    /// when `None`), by URL then state.
    async fn webhook_delivery_counts(
        &self,
        created_since: Option<DateTime<Utc>>,
    ) -> Result<Vec<DeliveryCount>, StoreError>;

    /// When the next pending delivery to `urls` may be claimed (its attempt due and any
    /// lease on it expired); `None` when none is pending.
    async fn next_webhook_due(&self, urls: &[String]) -> Result<Option<DateTime<Utc>>, StoreError>;
}

/// A store URL, split by scheme.
enum Backend<'a> {
    Sqlite(std::path::PathBuf),
    Postgres(&'a str),
}

impl<'a> Backend<'a> {
    fn of(url: &'a str) -> Result<Self, StoreError> {
        // Before anything can show it: a password in the URL is a secret from now on.
        register_url_secrets(url);
        if let Some(path) = sqlite::path_from_url(url) {
            Ok(Backend::Sqlite(path))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres(url))
        } else {
            Err(StoreError::UnsupportedUrl(redact_url(url)))
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

/// The parts of a store URL that carry a password.
struct UrlSecrets<'a> {
    /// The userinfo password's range in the URL (percent-encoded, as written).
    userinfo: Option<std::ops::Range<usize>>,
    /// The ranges of query parameter values that are passwords.
    query: Vec<std::ops::Range<usize>>,
    url: &'a str,
}

impl<'a> UrlSecrets<'a> {
    /// Finds the passwords of `url` in every form sqlx accepts: `scheme://user:PASSWORD@host/…`
    /// and the `password` query parameter (`?password=…`, `&password=…`); any other query
    /// parameter whose name looks secret (`sslpassword`, `api_token`, but not `sslkey`, a
    /// file) counts too.
    fn of(url: &'a str) -> Self {
        let mut found = UrlSecrets {
            userinfo: None,
            query: Vec::new(),
            url,
        };
        let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
            return found;
        };
        let rest = &url[scheme_end..];
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        if let Some((userinfo, _)) = rest[..authority_end].rsplit_once('@')
            && let Some(colon) = userinfo.find(':')
        {
            found.userinfo = Some(scheme_end + colon + 1..scheme_end + userinfo.len());
        }
        let after_authority = scheme_end + authority_end;
        if let Some(query_start) = url[after_authority..]
            .find('?')
            .map(|i| after_authority + i + 1)
        {
            let query_end = url[query_start..]
                .find('#')
                .map_or(url.len(), |i| query_start + i);
            let mut at = query_start;
            for pair in url[query_start..query_end].split('&') {
                if let Some((name, _)) = pair.split_once('=')
                    && !name.eq_ignore_ascii_case("sslkey")
                    && pitcrew_core::is_secret_name(name)
                {
                    found.query.push(at + name.len() + 1..at + pair.len());
                }
                at += pair.len() + 1;
            }
        }
        found
    }

    /// The password values, as written in the URL (percent-encoded where they are).
    fn values(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.userinfo
            .iter()
            .chain(&self.query)
            .map(|r| &self.url[r.clone()])
            .filter(|v| !v.is_empty())
    }
}

/// `url` with every password in it (see [`register_url_secrets`] for the forms) replaced by
/// `***`, fit for messages and logs.
pub fn redact_url(url: &str) -> String {
    let found = UrlSecrets::of(url);
    let mut ranges: Vec<_> = found
        .userinfo
        .iter()
        .chain(&found.query)
        .filter(|r| !r.is_empty())
        .cloned()
        .collect();
    ranges.sort_by_key(|r| r.start);
    let mut shown = String::with_capacity(url.len());
    let mut copied = 0;
    for range in ranges {
        shown.push_str(&url[copied..range.start]);
        shown.push_str("***");
        copied = range.end;
    }
    shown.push_str(&url[copied..]);
    shown
}

/// Registers the passwords of a store URL with the process-wide redactor
/// ([`pitcrew_core::register_secret`]), both as written and percent-decoded: the userinfo
/// password of `postgres://user:PASSWORD@host/db` and the `password` query parameter
/// (`?password=…` or `&password=…`). `sqlite://` URLs carry none. Returns how many were
/// found.
pub fn register_url_secrets(url: &str) -> usize {
    let found = UrlSecrets::of(url);
    let values: Vec<&str> = found.values().collect();
    pitcrew_core::register_secrets(&values);
    values.len()
}

/// `report` with registered secrets replaced in its text (never in the patch).
pub(crate) fn scrubbed(report: &AttemptReport) -> AttemptReport {
    let mut report = report.clone();
    report.redact_secrets();
    report
}

/// How a task is named on the command line: its handle or (a prefix of) its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TaskRef {
    /// `#42` or `42`.
    Seq(u64),
    /// Lowercase hex digits and dashes.
    Prefix(String),
}

impl TaskRef {
    pub(crate) fn parse(given: &str) -> Result<TaskRef, StoreError> {
        let text = given.trim();
        let not_found = || StoreError::NotFound(text.to_string());
        if let Some(number) = text.strip_prefix('#') {
            return number.parse().map(TaskRef::Seq).map_err(|_| not_found());
        }
        if text.starts_with(|c: char| c.is_ascii_digit() && c != '0')
            && text.chars().all(|c| c.is_ascii_digit())
        {
            return text.parse().map(TaskRef::Seq).map_err(|_| not_found());
        }
        let prefix = text.to_ascii_lowercase();
        if prefix.is_empty() || !prefix.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            return Err(not_found());
        }
        Ok(TaskRef::Prefix(prefix))
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
            redact_url("postgres://app:s3cret@db.example:5432/queue?sslmode=require"),
            "postgres://app:***@db.example:5432/queue?sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://app@db/queue"),
            "postgres://app@db/queue"
        );
        assert_eq!(
            redact_url("sqlite://.pitcrew/q.db"),
            "sqlite://.pitcrew/q.db"
        );
        assert_eq!(redact_url("sqlite:q.db"), "sqlite:q.db");
    }

    #[test]
    fn redact_hides_passwords_in_every_form() {
        for (url, shown) in [
            // Percent-encoded, with `@` and `:` inside.
            (
                "postgresql://app:p%40ss%3Aw0rd@db:5432/q",
                "postgresql://app:***@db:5432/q",
            ),
            // No path: the authority ends at the query.
            (
                "postgres://app:pw12@db?sslmode=disable",
                "postgres://app:***@db?sslmode=disable",
            ),
            (
                "postgres://app@db/q?password=s3cret&sslmode=require",
                "postgres://app@db/q?password=***&sslmode=require",
            ),
            (
                "postgres://db/q?sslmode=require&password=s3cret&user=app",
                "postgres://db/q?sslmode=require&password=***&user=app",
            ),
            (
                "postgres://app:one@db/q?PASSWORD=two#frag",
                "postgres://app:***@db/q?PASSWORD=***#frag",
            ),
            // A key file is a path, not a secret.
            (
                "postgres://db/q?sslkey=/etc/k.pem&sslpassword=kp",
                "postgres://db/q?sslkey=/etc/k.pem&sslpassword=***",
            ),
            // An `@` in the path or query is not userinfo.
            (
                "postgres://db/q?application_name=a:b@c",
                "postgres://db/q?application_name=a:b@c",
            ),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }

    #[test]
    fn url_passwords_are_registered_as_written_and_decoded() {
        let url = "postgres://app:url%2Fpass-4f1c9e@db/q?password=url-query-pass-8b2d";
        assert_eq!(register_url_secrets(url), 2);
        assert_eq!(register_url_secrets("sqlite://.pitcrew/q.db"), 0);
        assert_eq!(
            pitcrew_core::redact("a url%2Fpass-4f1c9e b url/pass-4f1c9e c url-query-pass-8b2d"),
            "a [REDACTED] b [REDACTED] c [REDACTED]"
        );
    }

    #[test]
    fn handles_ids_and_prefixes_are_told_apart() {
        assert_eq!(TaskRef::parse("#42").unwrap(), TaskRef::Seq(42));
        assert_eq!(TaskRef::parse(" 42 ").unwrap(), TaskRef::Seq(42));
        // UUID v7 ids start with `0` for centuries: a leading zero is a prefix.
        assert_eq!(
            TaskRef::parse("0199AB").unwrap(),
            TaskRef::Prefix("0199ab".into())
        );
        assert_eq!(
            TaskRef::parse("0199ab12-34").unwrap(),
            TaskRef::Prefix("0199ab12-34".into())
        );
        for bad in ["", "#", "#x", "#-1", "xyz", "99999999999999999999999"] {
            assert!(
                matches!(TaskRef::parse(bad), Err(StoreError::NotFound(_))),
                "{bad}"
            );
        }
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
