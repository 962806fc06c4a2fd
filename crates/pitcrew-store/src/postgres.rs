//! The scale-out backend: one PostgreSQL database (or schema) shared by workers on many
//! machines. Claims and rescues take rows with `FOR UPDATE SKIP LOCKED`, so workers never wait
//! on each other's rows; every time is the server's `now()`, so workers' clocks need not agree;
//! and every write that makes a task claimable sends a notification that wakes idle workers
//! (see [`Store::wait_for_work`]).

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pitcrew_core::{
    Attempt, AttemptReport, Lease, LimitDecision, ModelHealth, NewTask, Priority, SharedLimit,
    Task, TaskFilter, TaskId, TaskStatus, Usage, WebhookEvent, WebhookEventType,
    WebhookSubscription, utc_day_start_ms,
};
use sqlx::migrate::{Migrate, Migrator};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPool, PgPoolOptions, PgRow};
use sqlx::types::Json;
use sqlx::{Connection, Postgres, Row, Transaction};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::schema::{self, MigrationStatus};
use crate::webhooks::{self, Subscriptions};
use crate::{
    AttemptFilter, ClaimedDelivery, DeliveryCount, DeliveryOutcome, DeliveryState, Disposition,
    QueueStats, Rescued, Store, StoreError, Submitted, TaskAttempt, TaskRef, WebhookDelivery,
    parse, rules,
};

static MIGRATOR: Migrator = sqlx::migrate!("migrations/postgres");

/// Where writes announce claimable work. Channels span a whole database, which several queues
/// (one per schema) may share, so the payload names the writer's schema.
const CHANNEL: &str = "pitcrew_work";

/// Connections per store, shared by all the workers of one process.
const POOL_SIZE: u32 = 10;

/// The pause before listening again after the listening connection failed.
const RELISTEN_DELAY: Duration = Duration::from_secs(2);

const TASK_COLUMNS: &str = "id, seq, kind, description, targets, repo, repo_url, base_commit, priority, model, \
    max_attempts, idempotency_key, metadata, status, attempts, run_at, created_at, updated_at, \
    finished_at, lease_owner, lease_expires_at, error_kind, last_error, result_commit";

/// The PostgreSQL-backed [`Store`]. Clones share their connections.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    /// For the migration connection, which must not come from the pool.
    options: PgConnectOptions,
    /// Where the store is, without a password, for messages.
    url: String,
    wakeups: Arc<Wakeups>,
    webhooks: Subscriptions,
}

impl fmt::Debug for PgStore {
    // By hand: the connect options hold the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStore").field("url", &self.url).finish()
    }
}

fn json<T: serde::de::DeserializeOwned>(
    column: &str,
    value: serde_json::Value,
) -> Result<T, StoreError> {
    serde_json::from_value(value).map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
}

fn priority(rank: i16) -> Result<Priority, StoreError> {
    Priority::from_rank(i64::from(rank))
        .ok_or_else(|| StoreError::Corrupt(format!("priority = {rank}")))
}

fn task_from_row(row: &PgRow) -> Result<Task, StoreError> {
    Ok(Task {
        id: TaskId(row.try_get("id")?),
        seq: row.try_get::<i64, _>("seq")? as u64,
        kind: parse("kind", row.try_get("kind")?)?,
        description: row.try_get("description")?,
        targets: json("targets", row.try_get("targets")?)?,
        repo: row.try_get("repo")?,
        repo_url: row.try_get("repo_url")?,
        base_commit: row.try_get("base_commit")?,
        priority: priority(row.try_get("priority")?)?,
        model: row.try_get("model")?,
        max_attempts: row.try_get::<i32, _>("max_attempts")? as u32,
        idempotency_key: row.try_get("idempotency_key")?,
        metadata: row.try_get("metadata")?,
        status: parse("status", row.try_get("status")?)?,
        attempts: row.try_get::<i32, _>("attempts")? as u32,
        run_at: row.try_get("run_at")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        finished_at: row.try_get("finished_at")?,
        lease_owner: row.try_get("lease_owner")?,
        lease_expires_at: row.try_get("lease_expires_at")?,
        error_kind: row
            .try_get::<Option<&str>, _>("error_kind")?
            .map(|k| parse("error_kind", k))
            .transpose()?,
        last_error: row.try_get("last_error")?,
        result_commit: row.try_get("result_commit")?,
    })
}

fn attempt_from_row(row: &PgRow) -> Result<Attempt, StoreError> {
    Ok(Attempt {
        task_id: TaskId(row.try_get("task_id")?),
        number: row.try_get::<i32, _>("number")? as u32,
        worker: row.try_get("worker")?,
        outcome: parse("outcome", row.try_get("outcome")?)?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        model: row.try_get("model")?,
        usage: Usage {
            tokens_in: row.try_get::<i64, _>("tokens_in")? as u64,
            tokens_out: row.try_get::<i64, _>("tokens_out")? as u64,
            cost_usd: row.try_get("cost_usd")?,
        },
        latency_ms: row
            .try_get::<Option<i64>, _>("latency_ms")?
            .map(|v| v as u64),
        findings: json("findings", row.try_get("findings")?)?,
        error_kind: row
            .try_get::<Option<&str>, _>("error_kind")?
            .map(|k| parse("error_kind", k))
            .transpose()?,
        error: row.try_get("error")?,
        commit: row.try_get("commit_sha")?,
        patch: row.try_get("patch")?,
        run_id: row.try_get("run_id")?,
        quality: row.try_get("quality")?,
        details: json("details", row.try_get("details")?)?,
    })
}

fn health_from_row(row: &PgRow) -> Result<ModelHealth, StoreError> {
    Ok(ModelHealth {
        model: row.try_get("model")?,
        consecutive_failures: row.try_get::<i64, _>("consecutive_failures")? as u32,
        circuit_open_until: row.try_get("circuit_open_until")?,
        cooldown_until: row.try_get("cooldown_until")?,
        cooldown_reason: row.try_get("cooldown_reason")?,
        success_rate: row.try_get("success_rate")?,
        latency_ms: row.try_get("latency_ms")?,
        quality: row.try_get("quality")?,
        samples: row.try_get::<i64, _>("samples")? as u64,
        updated_at: row.try_get("updated_at")?,
    })
}

/// The smallest and largest UUIDs whose hyphenated form starts with `prefix` (lowercase), or
/// `None` when no UUID's can. Finding by prefix becomes a range scan of the `id` index, where
/// `id::text LIKE 'prefix%'` would read every row.
fn uuid_range(prefix: &str) -> Option<(Uuid, Uuid)> {
    const HYPHENS: [usize; 4] = [8, 13, 18, 23];
    if prefix.len() > 36 {
        return None;
    }
    let mut hex = String::with_capacity(32);
    for (i, c) in prefix.char_indices() {
        match c {
            '-' if HYPHENS.contains(&i) => {}
            '0'..='9' | 'a'..='f' if !HYPHENS.contains(&i) => hex.push(c),
            _ => return None,
        }
    }
    let low = Uuid::parse_str(&format!("{hex:0<32}")).ok()?;
    let high = Uuid::parse_str(&format!("{hex:f<32}")).ok()?;
    Some((low, high))
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|e| e.is_unique_violation())
}

/// Tells idle workers that a task may be claimable; delivered when the transaction commits.
async fn announce_work(tx: &mut Transaction<'static, Postgres>) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_notify($1, current_schema())")
        .bind(CHANNEL)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Ends `tx` and answers `refusal`. Dropping a transaction is not enough: sqlx only queues its
/// ROLLBACK, sent when the pool next tests the connection in a task that runs whenever the
/// runtime gets to it. Until then what the transaction locked stays locked: claims pass over
/// such a task (they skip locked rows), and writers of it wait.
async fn refuse<T>(
    tx: Transaction<'static, Postgres>,
    refusal: StoreError,
) -> Result<T, StoreError> {
    if let Err(e) = tx.rollback().await {
        // The connection is broken, and its session's locks end with it; the refusal is still
        // the answer.
        tracing::warn!("rolling back a refused write: {e}");
    }
    Err(refusal)
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://…`) and migrates it. A schema other
    /// than `public` is chosen with `?options[search_path]=NAME`; it must exist.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let store = Self::connect(url)?;
        store.migrate().await?;
        Ok(store)
    }

    /// Like [`PgStore::open`], with options built by the caller.
    pub async fn open_with(options: PgConnectOptions) -> Result<Self, StoreError> {
        let url = format!(
            "postgres://{}@{}:{}/{}",
            options.get_username(),
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or_default()
        );
        let store = Self::connect_with(options, url);
        store.migrate().await?;
        Ok(store)
    }

    /// A store on `url` that connects on first use and is not migrated.
    pub(crate) fn connect(url: &str) -> Result<Self, StoreError> {
        crate::register_url_secrets(url);
        Ok(Self::connect_with(url.parse()?, crate::redact_url(url)))
    }

    fn connect_with(options: PgConnectOptions, url: String) -> Self {
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .connect_lazy_with(options.clone());
        // A pool of its own for the listening connection, so that it never takes one of the
        // workers' connections; PgListener reconnects through it.
        let listen_pool = PgPoolOptions::new()
            .max_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_lazy_with(options.clone());
        PgStore {
            pool,
            options,
            url,
            wakeups: Arc::new(Wakeups {
                pool: listen_pool,
                notify: Arc::new(Notify::new()),
                listener: OnceLock::new(),
            }),
            webhooks: Subscriptions::default(),
        }
    }

    /// Applies pending migrations; refuses a database migrated by a newer pitcrew. Safe while
    /// other processes migrate the same database: they wait for each other.
    pub async fn migrate(&self) -> Result<MigrationStatus, StoreError> {
        // A connection of its own, closed at the end whatever happened: sqlx's migration lock
        // is a session-level advisory lock that it does not release when it fails, and a
        // pooled connection still holding it would block every later migrator.
        let mut conn = PgConnection::connect_with(&self.options).await?;
        // The lock sqlx's own migrator takes: concurrent migrators of this database wait.
        conn.lock().await?;
        let status = schema::run(&MIGRATOR, &mut conn, &self.url).await;
        // Closing ends the session and with it the lock; a failure to say goodbye changes
        // nothing about the migration's outcome.
        let _ = conn.close().await;
        status
    }

    /// The task `id`, locked until `tx` ends; `None` when there is none.
    async fn lock_task(
        tx: &mut Transaction<'static, Postgres>,
        id: TaskId,
    ) -> Result<Option<PgRow>, StoreError> {
        Ok(sqlx::query(
            "SELECT status, attempts, idempotency_key FROM tasks WHERE id = $1 FOR UPDATE",
        )
        .bind(id.0)
        .fetch_optional(&mut **tx)
        .await?)
    }

    async fn unfinished_with_key<'e, E>(
        executor: E,
        key: &str,
    ) -> Result<Option<TaskId>, StoreError>
    where
        E: sqlx::PgExecutor<'e>,
    {
        let id: Option<Uuid> = sqlx::query_scalar(
            "SELECT id FROM tasks WHERE idempotency_key = $1 AND status IN ('queued', 'running')",
        )
        .bind(key)
        .fetch_optional(executor)
        .await?;
        Ok(id.map(TaskId))
    }

    /// Enqueues the deliveries of task `id` having ended as `status`, in the transaction that
    /// ends it; nothing when no endpoint wants the event.
    async fn enqueue_task_end(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        id: TaskId,
        status: TaskStatus,
    ) -> Result<(), StoreError> {
        let Some(event_type) = WebhookEventType::of_task_status(status) else {
            return Ok(());
        };
        let urls = self.webhooks.urls_wanting(event_type);
        if urls.is_empty() {
            return Ok(());
        }
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1"
        )))
        .bind(id.0)
        .fetch_one(&mut **tx)
        .await?;
        if let Some(event) = WebhookEvent::task_ended(&task_from_row(&row)?) {
            Self::insert_deliveries(tx, &event, &urls).await?;
        }
        Ok(())
    }

    /// One pending delivery of `event` per URL, due now; a URL that has the event already
    /// keeps the one it has.
    async fn insert_deliveries(
        tx: &mut Transaction<'static, Postgres>,
        event: &WebhookEvent,
        urls: &[String],
    ) -> Result<u32, StoreError> {
        let task_id = event
            .task_id()
            .map(|id| parse::<TaskId>("task_id", id))
            .transpose()?;
        let inserted = sqlx::query(
            "INSERT INTO webhook_deliveries (event_id, event_type, task_id, url, body, status, \
             next_attempt_at, created_at, updated_at) \
             SELECT $1, $2, $3, url, $5, 'pending', now(), now(), now() FROM unnest($4::text[]) AS url \
             ON CONFLICT (event_id, url) DO NOTHING",
        )
        .bind(event.id)
        .bind(event.event_type.as_str())
        .bind(task_id.map(|id| id.0))
        .bind(urls)
        .bind(webhooks::stored_body(event))
        .execute(&mut **tx)
        .await?
        .rows_affected();
        Ok(u32::try_from(inserted).unwrap_or(u32::MAX))
    }

    /// One try at [`Store::requeue`]; `None` when a concurrent submit took the task's
    /// idempotency key between the check and the update, and the check must be redone.
    async fn try_requeue(&self, id: TaskId) -> Result<Option<Task>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let Some(row) = Self::lock_task(&mut tx, id).await? else {
            return refuse(tx, StoreError::NotFound(id.to_string())).await;
        };
        let status: TaskStatus = parse("status", row.try_get("status")?)?;
        if !matches!(status, TaskStatus::Failed | TaskStatus::Cancelled) {
            let refusal = StoreError::InvalidState {
                task: id,
                status,
                action: "only failed or cancelled tasks can be retried".into(),
            };
            return refuse(tx, refusal).await;
        }
        let key: Option<String> = row.try_get("idempotency_key")?;
        if let Some(key) = &key
            && let Some(other) = Self::unfinished_with_key(&mut *tx, key).await?
        {
            let refusal = StoreError::IdempotencyConflict {
                key: key.clone(),
                task: other,
            };
            return refuse(tx, refusal).await;
        }
        let updated = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE tasks SET status = 'queued', run_at = now(), updated_at = now(), \
             finished_at = NULL, error_kind = NULL, last_error = NULL, \
             max_attempts = GREATEST(max_attempts, attempts + 1) WHERE id = $1 \
             RETURNING {TASK_COLUMNS}"
        )))
        .bind(id.0)
        .fetch_one(&mut *tx)
        .await;
        let row = match updated {
            Err(e) if is_unique_violation(&e) => {
                // Unlocked before the next try, which locks the row again.
                tx.rollback().await?;
                return Ok(None);
            }
            other => other?,
        };
        announce_work(&mut tx).await?;
        tx.commit().await?;
        task_from_row(&row).map(Some)
    }
}

#[async_trait]
impl Store for PgStore {
    async fn submit(&self, tasks: &[NewTask]) -> Result<Vec<Submitted>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut submitted = Vec::with_capacity(tasks.len());
        for task in tasks {
            let id = TaskId::new();
            // A taken key is a conflict on the partial unique index, not an error: when another
            // transaction holds the key uncommitted, the insert waits for it, then either
            // inserts (it rolled back) or does nothing (it committed) and the key's task is
            // read below. If that task finished in between, the key is free: try again.
            // Ok(seq) when inserted, Err(id) of the task holding the key.
            let outcome = loop {
                // A key already taken: no insert, so no number is used up (an insert that
                // conflicts still draws one from the sequence).
                if let Some(key) = &task.idempotency_key
                    && let Some(existing) = Self::unfinished_with_key(&mut *tx, key).await?
                {
                    break Err(existing);
                }
                let inserted: Option<i64> = sqlx::query_scalar(
                    "INSERT INTO tasks (id, kind, description, targets, repo, base_commit, \
                     priority, model, max_attempts, idempotency_key, metadata, repo_url, status, \
                     run_at, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'queued', now(), \
                     now(), now()) \
                     ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL \
                     AND status IN ('queued', 'running') DO NOTHING RETURNING seq",
                )
                .bind(id.0)
                .bind(task.kind.as_str())
                .bind(&task.description)
                .bind(Json(&task.targets))
                .bind(&task.repo)
                .bind(&task.base_commit)
                .bind(task.priority.rank() as i16)
                .bind(&task.model)
                .bind(i32::try_from(task.max_attempts.max(1)).unwrap_or(i32::MAX))
                .bind(&task.idempotency_key)
                .bind(&task.metadata)
                .bind(&task.repo_url)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(seq) = inserted {
                    break Ok(seq);
                }
                let key = task.idempotency_key.as_deref().unwrap_or_default();
                if let Some(existing) = Self::unfinished_with_key(&mut *tx, key).await? {
                    break Err(existing);
                }
            };
            submitted.push(match outcome {
                Err(id) => {
                    let seq: i64 = sqlx::query_scalar("SELECT seq FROM tasks WHERE id = $1")
                        .bind(id.0)
                        .fetch_one(&mut *tx)
                        .await?;
                    Submitted {
                        id,
                        seq: seq as u64,
                        deduplicated: true,
                    }
                }
                Ok(seq) => Submitted {
                    id,
                    seq: seq as u64,
                    deduplicated: false,
                },
            });
        }
        if submitted.iter().any(|s| !s.deduplicated) {
            announce_work(&mut tx).await?;
        }
        tx.commit().await?;
        Ok(submitted)
    }

    async fn claim(
        &self,
        worker: &str,
        limit: u32,
        ttl: Duration,
    ) -> Result<Vec<(Task, Lease)>, StoreError> {
        // One statement, so no transaction is held open between round trips. The candidates
        // sit in a MATERIALIZED CTE so they are chosen (and locked) exactly once; an
        // `IN (subquery)` may be re-evaluated by the planner. SKIP LOCKED: rows another
        // claimer is taking are passed over, not waited for.
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "WITH picked AS MATERIALIZED ( \
                 SELECT id FROM tasks WHERE status = 'queued' AND run_at <= now() \
                 ORDER BY priority, run_at, seq LIMIT $2 FOR UPDATE SKIP LOCKED \
             ), claimed AS ( \
                 UPDATE tasks t SET status = 'running', attempts = t.attempts + 1, \
                 lease_owner = $1, lease_token = gen_random_uuid(), \
                 lease_expires_at = now() + make_interval(secs => $3), updated_at = now() \
                 FROM picked WHERE t.id = picked.id RETURNING t.* \
             ), recorded AS ( \
                 INSERT INTO attempts (task_id, number, worker, lease_token, outcome, started_at) \
                 SELECT id, attempts, lease_owner, lease_token, 'running', now() FROM claimed \
             ) \
             SELECT {TASK_COLUMNS}, lease_token FROM claimed ORDER BY priority, run_at, seq"
        )))
        .bind(worker)
        .bind(i64::from(limit))
        .bind(ttl.as_secs_f64())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let task = task_from_row(row)?;
                let lease = Lease {
                    task_id: task.id,
                    token: row.try_get("lease_token")?,
                    owner: worker.to_string(),
                    attempt: task.attempts,
                };
                Ok((task, lease))
            })
            .collect()
    }

    async fn heartbeat(&self, lease: &Lease, ttl: Duration) -> Result<(), StoreError> {
        let updated = sqlx::query(
            "UPDATE tasks SET lease_expires_at = now() + make_interval(secs => $1), \
             updated_at = now() WHERE id = $2 AND lease_token = $3 AND status = 'running'",
        )
        .bind(ttl.as_secs_f64())
        .bind(lease.task_id.0)
        .bind(lease.token)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if updated == 0 {
            return Err(StoreError::LeaseLost {
                task: lease.task_id,
                attempt: lease.attempt,
            });
        }
        Ok(())
    }

    async fn finish(
        &self,
        lease: &Lease,
        disposition: Disposition,
        report: &AttemptReport,
    ) -> Result<TaskStatus, StoreError> {
        let report = &crate::scrubbed(report);
        let mut tx = self.pool.begin().await?;
        // The row lock keeps a concurrent rescue or cancel from changing the task between this
        // check and the writes below.
        let held = sqlx::query(
            "SELECT attempts, max_attempts FROM tasks \
             WHERE id = $1 AND lease_token = $2 AND status = 'running' FOR UPDATE",
        )
        .bind(lease.task_id.0)
        .bind(lease.token)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(held) = held else {
            let refusal = StoreError::LeaseLost {
                task: lease.task_id,
                attempt: lease.attempt,
            };
            return refuse(tx, refusal).await;
        };
        let next = rules::finished(
            disposition,
            i64::from(held.try_get::<i32, _>("attempts")?),
            i64::from(held.try_get::<i32, _>("max_attempts")?),
            report,
        );
        sqlx::query(
            "UPDATE tasks SET status = $1, lease_owner = NULL, lease_token = NULL, \
             lease_expires_at = NULL, run_at = now() + make_interval(secs => $2), \
             updated_at = now(), finished_at = CASE WHEN $3 THEN now() END, \
             error_kind = $4, last_error = $5, result_commit = $6, \
             max_attempts = max_attempts + $9 \
             WHERE id = $7 AND lease_token = $8",
        )
        .bind(next.status.as_str())
        .bind(next.delay.as_secs_f64())
        .bind(next.status.is_terminal())
        .bind(next.error_kind)
        .bind(&next.last_error)
        .bind(next.result_commit)
        .bind(lease.task_id.0)
        .bind(lease.token)
        .bind(i32::from(next.refund))
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE attempts SET outcome = $1, finished_at = now(), model = $2, tokens_in = $3, \
             tokens_out = $4, cost_usd = $5, latency_ms = $6, findings = $7, error_kind = $8, \
             error = $9, commit_sha = $10, patch = $11, run_id = $12, quality = $13, \
             details = $14 WHERE task_id = $15 AND number = $16 AND lease_token = $17",
        )
        .bind(next.outcome.as_str())
        .bind(&report.model)
        .bind(report.usage.tokens_in as i64)
        .bind(report.usage.tokens_out as i64)
        .bind(report.usage.cost_usd)
        .bind(report.latency_ms.map(|v| v as i64))
        .bind(Json(&report.findings))
        .bind(report.error_kind.map(|k| k.as_str()))
        .bind(&report.error)
        .bind(&report.commit)
        .bind(&report.patch)
        .bind(&report.run_id)
        .bind(report.quality)
        .bind(Json(&report.details))
        .bind(lease.task_id.0)
        .bind(lease.attempt as i32)
        .bind(lease.token)
        .execute(&mut *tx)
        .await?;
        self.enqueue_task_end(&mut tx, lease.task_id, next.status)
            .await?;
        if next.status == TaskStatus::Queued {
            announce_work(&mut tx).await?;
        }
        tx.commit().await?;
        Ok(next.status)
    }

    async fn rescue_expired(&self) -> Result<Vec<Rescued>, StoreError> {
        let mut tx = self.pool.begin().await?;
        // SKIP LOCKED: concurrent rescuers split the expired tasks instead of queueing behind
        // each other, and a task whose worker is finishing it right now is left alone.
        let expired = sqlx::query(
            "SELECT id, attempts, max_attempts, lease_owner, lease_token FROM tasks \
             WHERE status = 'running' AND lease_expires_at < now() \
             ORDER BY lease_expires_at FOR UPDATE SKIP LOCKED",
        )
        .fetch_all(&mut *tx)
        .await?;
        let mut rescued = Vec::with_capacity(expired.len());
        for row in expired {
            let id: Uuid = row.try_get("id")?;
            let token: Uuid = row.try_get("lease_token")?;
            let owner: String = row
                .try_get::<Option<String>, _>("lease_owner")?
                .unwrap_or_default();
            let next = rules::expired(
                &owner,
                i64::from(row.try_get::<i32, _>("attempts")?),
                i64::from(row.try_get::<i32, _>("max_attempts")?),
            );
            sqlx::query(
                "UPDATE attempts SET outcome = 'abandoned', finished_at = now(), \
                 error_kind = 'lease_expired', error = $1 \
                 WHERE task_id = $2 AND lease_token = $3",
            )
            .bind(&next.attempt_error)
            .bind(id)
            .bind(token)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE tasks SET status = $1, lease_owner = NULL, lease_token = NULL, \
                 lease_expires_at = NULL, run_at = now(), updated_at = now(), \
                 finished_at = CASE WHEN $2 THEN now() END, error_kind = 'lease_expired', \
                 last_error = $3 WHERE id = $4 AND lease_token = $5",
            )
            .bind(next.status.as_str())
            .bind(next.status.is_terminal())
            .bind(&next.task_error)
            .bind(id)
            .bind(token)
            .execute(&mut *tx)
            .await?;
            self.enqueue_task_end(&mut tx, TaskId(id), next.status)
                .await?;
            rescued.push(Rescued {
                id: TaskId(id),
                owner,
                status: next.status,
            });
        }
        if rescued.iter().any(|r| r.status == TaskStatus::Queued) {
            announce_work(&mut tx).await?;
        }
        tx.commit().await?;
        Ok(rescued)
    }

    async fn release(&self, lease: &Lease, reason: &str) -> Result<(), StoreError> {
        let reason = pitcrew_core::redact(reason);
        let reason = reason.as_ref();
        let mut tx = self.pool.begin().await?;
        // One more allowed attempt: the one given back does not count.
        let released = sqlx::query(
            "UPDATE tasks SET status = 'queued', lease_owner = NULL, lease_token = NULL, \
             lease_expires_at = NULL, run_at = now(), updated_at = now(), \
             max_attempts = max_attempts + 1, error_kind = 'interrupted', last_error = $1 \
             WHERE id = $2 AND lease_token = $3 AND status = 'running'",
        )
        .bind(reason)
        .bind(lease.task_id.0)
        .bind(lease.token)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if released == 0 {
            let refusal = StoreError::LeaseLost {
                task: lease.task_id,
                attempt: lease.attempt,
            };
            return refuse(tx, refusal).await;
        }
        sqlx::query(
            "UPDATE attempts SET outcome = 'abandoned', finished_at = now(), \
             error_kind = 'interrupted', error = $1 \
             WHERE task_id = $2 AND number = $3 AND lease_token = $4",
        )
        .bind(reason)
        .bind(lease.task_id.0)
        .bind(lease.attempt as i32)
        .bind(lease.token)
        .execute(&mut *tx)
        .await?;
        announce_work(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn cancel(&self, id: TaskId) -> Result<Task, StoreError> {
        let mut tx = self.pool.begin().await?;
        let Some(row) = Self::lock_task(&mut tx, id).await? else {
            return refuse(tx, StoreError::NotFound(id.to_string())).await;
        };
        match parse("status", row.try_get("status")?)? {
            TaskStatus::Queued => {}
            TaskStatus::Running => {
                sqlx::query(
                    "UPDATE attempts SET outcome = 'cancelled', finished_at = now() \
                     WHERE task_id = $1 AND number = $2",
                )
                .bind(id.0)
                .bind(row.try_get::<i32, _>("attempts")?)
                .execute(&mut *tx)
                .await?;
            }
            status => {
                let refusal = StoreError::InvalidState {
                    task: id,
                    status,
                    action: "only queued or running tasks can be cancelled".into(),
                };
                return refuse(tx, refusal).await;
            }
        }
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE tasks SET status = 'cancelled', lease_owner = NULL, lease_token = NULL, \
             lease_expires_at = NULL, updated_at = now(), finished_at = now(), \
             last_error = $2 WHERE id = $1 RETURNING {TASK_COLUMNS}"
        )))
        .bind(id.0)
        .bind(rules::CANCELLED_BY_USER)
        .fetch_one(&mut *tx)
        .await?;
        self.enqueue_task_end(&mut tx, id, TaskStatus::Cancelled)
            .await?;
        tx.commit().await?;
        task_from_row(&row)
    }

    async fn requeue(&self, id: TaskId) -> Result<Task, StoreError> {
        loop {
            if let Some(task) = self.try_requeue(id).await? {
                return Ok(task);
            }
        }
    }

    async fn find(&self, id_or_prefix: &str) -> Result<Task, StoreError> {
        let prefix = match TaskRef::parse(id_or_prefix)? {
            TaskRef::Seq(seq) => {
                let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {TASK_COLUMNS} FROM tasks WHERE seq = $1"
                )))
                .bind(i64::try_from(seq).unwrap_or(i64::MAX))
                .fetch_optional(&self.pool)
                .await?
                .ok_or_else(|| StoreError::NotFound(id_or_prefix.trim().to_string()))?;
                return task_from_row(&row);
            }
            TaskRef::Prefix(prefix) => prefix,
        };
        let Some((low, high)) = uuid_range(&prefix) else {
            return Err(StoreError::NotFound(id_or_prefix.to_string()));
        };
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE id BETWEEN $1 AND $2 ORDER BY seq LIMIT 2"
        )))
        .bind(low)
        .bind(high)
        .fetch_all(&self.pool)
        .await?;
        match rows.as_slice() {
            [] => Err(StoreError::NotFound(id_or_prefix.to_string())),
            [row] => task_from_row(row),
            _ => {
                let count: i64 =
                    sqlx::query_scalar("SELECT count(*) FROM tasks WHERE id BETWEEN $1 AND $2")
                        .bind(low)
                        .bind(high)
                        .fetch_one(&self.pool)
                        .await?;
                Err(StoreError::Ambiguous {
                    prefix: id_or_prefix.to_string(),
                    count: count as u64,
                })
            }
        }
    }

    async fn list(&self, filter: &TaskFilter) -> Result<Vec<Task>, StoreError> {
        let after_seq = (filter.after_seq).map(|seq| i64::try_from(seq).unwrap_or(i64::MAX));
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {TASK_COLUMNS} FROM tasks \
             WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR kind = $2) \
             AND ($4::bigint IS NULL OR seq > $4) \
             ORDER BY seq LIMIT $3"
        )))
        .bind(filter.status.map(|s| s.as_str()))
        .bind(filter.kind.map(|k| k.as_str()))
        .bind(filter.limit.map(i64::from))
        .bind(after_seq)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(task_from_row).collect()
    }

    async fn attempts(&self, id: TaskId) -> Result<Vec<Attempt>, StoreError> {
        let rows = sqlx::query("SELECT * FROM attempts WHERE task_id = $1 ORDER BY number")
            .bind(id.0)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(attempt_from_row).collect()
    }

    async fn stats(&self) -> Result<QueueStats, StoreError> {
        // COLLATE "C": the same byte order SQLite sorts statuses in.
        let rows = sqlx::query(
            "SELECT status, priority, count(*) AS n FROM tasks GROUP BY status, priority \
             ORDER BY status COLLATE \"C\", priority",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut counts = Vec::with_capacity(rows.len());
        for row in &rows {
            counts.push((
                parse("status", row.try_get("status")?)?,
                priority(row.try_get("priority")?)?,
                row.try_get::<i64, _>("n")? as u64,
            ));
        }
        let next = sqlx::query(
            "SELECT (SELECT min(run_at) FROM tasks WHERE status = 'queued') AS next_run_at, \
             (SELECT min(lease_expires_at) FROM tasks WHERE status = 'running') AS next_expiry",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(QueueStats {
            counts,
            next_run_at: next.try_get("next_run_at")?,
            next_lease_expiry: next.try_get("next_expiry")?,
        })
    }

    async fn recent_latencies(&self, limit: u32) -> Result<Vec<(String, u64)>, StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT model, latency_ms FROM attempts \
             WHERE model IS NOT NULL AND latency_ms IS NOT NULL \
             ORDER BY finished_at DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(m, l)| (m, l.max(0) as u64))
            .collect())
    }

    async fn recorded_attempts(
        &self,
        filter: &AttemptFilter,
    ) -> Result<Vec<TaskAttempt>, StoreError> {
        let rows = sqlx::query(
            "SELECT a.*, t.kind AS task_kind, t.status AS task_status \
             FROM attempts a JOIN tasks t ON t.id = a.task_id \
             WHERE ($1::timestamptz IS NULL OR a.started_at >= $1) \
             AND ($2::text IS NULL OR t.kind = $2) \
             ORDER BY a.started_at, t.seq, a.number",
        )
        .bind(filter.started_since)
        .bind(filter.kind.map(|k| k.as_str()))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(TaskAttempt {
                    kind: parse("kind", row.try_get("task_kind")?)?,
                    task_status: parse("status", row.try_get("task_status")?)?,
                    attempt: attempt_from_row(row)?,
                })
            })
            .collect()
    }

    async fn model_health(&self) -> Result<Vec<ModelHealth>, StoreError> {
        let rows = sqlx::query("SELECT * FROM model_health ORDER BY model COLLATE \"C\"")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(health_from_row).collect()
    }

    async fn record_model_health(&self, health: &ModelHealth) -> Result<(), StoreError> {
        let mut health = health.clone();
        health.redact_secrets();
        let health = &health;
        // `stored > GREATEST(now(), written)` (GREATEST skips NULLs): a stored end is kept
        // while it is ahead of both; one already past is no cooldown at all and may be
        // cleared.
        sqlx::query(
            "INSERT INTO model_health AS h (model, consecutive_failures, circuit_open_until, \
             cooldown_until, cooldown_reason, success_rate, latency_ms, quality, samples, \
             updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, now()) \
             ON CONFLICT (model) DO UPDATE SET \
             consecutive_failures = excluded.consecutive_failures, \
             circuit_open_until = CASE \
                 WHEN h.circuit_open_until > GREATEST(now(), excluded.circuit_open_until) \
                 THEN h.circuit_open_until ELSE excluded.circuit_open_until END, \
             cooldown_until = CASE \
                 WHEN h.cooldown_until > GREATEST(now(), excluded.cooldown_until) \
                 THEN h.cooldown_until ELSE excluded.cooldown_until END, \
             cooldown_reason = CASE \
                 WHEN h.cooldown_until > GREATEST(now(), excluded.cooldown_until) \
                 THEN h.cooldown_reason ELSE excluded.cooldown_reason END, \
             success_rate = excluded.success_rate, latency_ms = excluded.latency_ms, \
             quality = excluded.quality, samples = excluded.samples, updated_at = now()",
        )
        .bind(&health.model)
        .bind(i64::from(health.consecutive_failures))
        .bind(health.circuit_open_until)
        .bind(health.cooldown_until)
        .bind(&health.cooldown_reason)
        .bind(health.success_rate)
        .bind(health.latency_ms)
        .bind(health.quality)
        .bind(health.samples as i64)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn take_limits(
        &self,
        limits: &[SharedLimit],
        tokens: u64,
    ) -> Result<LimitDecision, StoreError> {
        let mut tx = self.pool.begin().await?;
        // One worker at a time per limit, locked in one order so that two callers asking for
        // overlapping limits cannot deadlock.
        let mut keys: Vec<&str> = limits.iter().map(|l| l.key.as_str()).collect();
        keys.sort_unstable();
        keys.dedup();
        for key in keys {
            sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 7401))")
                .bind(key)
                .execute(&mut *tx)
                .await?;
        }
        // The database's clock, read after the locks: one clock for every machine.
        let now: i64 =
            sqlx::query_scalar("SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint")
                .fetch_one(&mut *tx)
                .await?;
        let mut counted = Vec::with_capacity(limits.len());
        for limit in limits {
            sqlx::query("DELETE FROM rate_events WHERE key = $1 AND at < $2")
                .bind(&limit.key)
                .bind(rules::forget_before(limit, now))
                .execute(&mut *tx)
                .await?;
            let minute: Vec<(i64, i64)> = sqlx::query_as(
                "SELECT at, tokens FROM rate_events WHERE key = $1 AND at > $2 ORDER BY at",
            )
            .bind(&limit.key)
            .bind(now - pitcrew_core::MINUTE_MS)
            .fetch_all(&mut *tx)
            .await?;
            let today: i64 =
                sqlx::query_scalar("SELECT count(*) FROM rate_events WHERE key = $1 AND at >= $2")
                    .bind(&limit.key)
                    .bind(utc_day_start_ms(now))
                    .fetch_one(&mut *tx)
                    .await?;
            counted.push((limit, rules::counted(minute, today)));
        }
        if let Some(refused) = rules::refusal(counted, tokens) {
            // Now, not when the pool gets to it: until then the limits stay locked for every
            // other worker (see `refuse`).
            tx.rollback().await?;
            return Ok(refused);
        }
        for limit in limits {
            sqlx::query("INSERT INTO rate_events (key, at, tokens) VALUES ($1, $2, $3)")
                .bind(&limit.key)
                .bind(now)
                .bind(i64::try_from(tokens).unwrap_or(i64::MAX))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(LimitDecision::Granted)
    }

    async fn reserve_budget(
        &self,
        key: &str,
        limit_usd: f64,
        amount_usd: f64,
    ) -> Result<bool, StoreError> {
        sqlx::query(
            "INSERT INTO budgets (key, spent_usd, updated_at) VALUES ($1, 0, now()) \
             ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .execute(&self.pool)
        .await?;
        // One statement: the row lock makes check and add one step for every worker.
        let reserved = sqlx::query(
            "UPDATE budgets SET spent_usd = spent_usd + $2, updated_at = now() \
             WHERE key = $1 AND spent_usd + $2 <= $3",
        )
        .bind(key)
        .bind(amount_usd.max(0.0))
        .bind(limit_usd + rules::BUDGET_EPSILON)
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1;
        Ok(reserved)
    }

    async fn settle_budget(
        &self,
        key: &str,
        reserved_usd: f64,
        cost_usd: f64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE budgets SET spent_usd = GREATEST(0, spent_usd + $2 - $3), updated_at = now() \
             WHERE key = $1",
        )
        .bind(key)
        .bind(cost_usd.max(0.0))
        .bind(reserved_usd.max(0.0))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn budget_spent(&self, key: &str) -> Result<f64, StoreError> {
        let spent: Option<f64> = sqlx::query_scalar("SELECT spent_usd FROM budgets WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(spent.unwrap_or(0.0))
    }

    async fn wait_for_work(&self, max: Duration) {
        self.wakeups.wait(max).await;
    }

    fn subscribe_webhooks(&self, subscriptions: Vec<WebhookSubscription>) {
        self.webhooks.set(subscriptions);
    }

    async fn enqueue_webhook_event(&self, event: &WebhookEvent) -> Result<u32, StoreError> {
        let urls = self.webhooks.urls_wanting(event.event_type);
        if urls.is_empty() {
            return Ok(0);
        }
        let mut tx = self.pool.begin().await?;
        let inserted = Self::insert_deliveries(&mut tx, event, &urls).await?;
        tx.commit().await?;
        Ok(inserted)
    }

    async fn claim_webhook_deliveries(
        &self,
        owner: &str,
        urls: &[String],
        limit: u32,
        ttl: Duration,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        if urls.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        // As a task claim: one statement, candidates chosen once and locked, SKIP LOCKED so
        // dispatchers of other processes pass over what one is taking.
        let rows = sqlx::query(
            "WITH picked AS MATERIALIZED ( \
                 SELECT seq FROM webhook_deliveries \
                 WHERE status = 'pending' AND next_attempt_at <= now() \
                 AND (lease_expires_at IS NULL OR lease_expires_at < now()) \
                 AND url = ANY($2) \
                 ORDER BY next_attempt_at, seq LIMIT $3 FOR UPDATE SKIP LOCKED \
             ) \
             UPDATE webhook_deliveries d SET attempts = d.attempts + 1, lease_owner = $1, \
             lease_token = gen_random_uuid(), \
             lease_expires_at = now() + make_interval(secs => $4), updated_at = now() \
             FROM picked WHERE d.seq = picked.seq \
             RETURNING d.seq, d.event_id, d.event_type, d.url, d.body, d.attempts, d.lease_token",
        )
        .bind(owner)
        .bind(urls)
        .bind(i64::from(limit))
        .bind(ttl.as_secs_f64())
        .fetch_all(&self.pool)
        .await?;
        let mut claimed = rows
            .iter()
            .map(|row| {
                Ok(ClaimedDelivery {
                    seq: row.try_get::<i64, _>("seq")? as u64,
                    token: row.try_get("lease_token")?,
                    attempt: row.try_get::<i32, _>("attempts")? as u32,
                    event_id: row.try_get("event_id")?,
                    event_type: parse("event_type", row.try_get("event_type")?)?,
                    url: row.try_get("url")?,
                    body: row.try_get("body")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        claimed.sort_by_key(|d| d.seq);
        Ok(claimed)
    }

    async fn record_webhook_attempt(
        &self,
        delivery: &ClaimedDelivery,
        outcome: &DeliveryOutcome,
    ) -> Result<bool, StoreError> {
        let recorded = outcome.recorded();
        let updated = sqlx::query(
            "UPDATE webhook_deliveries SET status = $1, \
             next_attempt_at = now() + make_interval(secs => $2), last_status_code = $3, \
             last_error = $4, finished_at = CASE WHEN $5 THEN now() END, updated_at = now(), \
             lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL \
             WHERE seq = $6 AND lease_token = $7 AND status = 'pending'",
        )
        .bind(recorded.status)
        .bind(recorded.delay.as_secs_f64())
        .bind(recorded.status_code.map(|code| code as i32))
        .bind(&recorded.error)
        .bind(recorded.finished)
        .bind(i64::try_from(delivery.seq).unwrap_or(i64::MAX))
        .bind(delivery.token)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(updated == 1)
    }

    async fn webhook_deliveries(&self, limit: u32) -> Result<Vec<WebhookDelivery>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, event_id, event_type, task_id, url, status, attempts, \
             next_attempt_at, last_status_code, last_error, created_at, updated_at, finished_at \
             FROM webhook_deliveries ORDER BY seq DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(delivery_from_row).collect()
    }

    async fn webhook_delivery_counts(
        &self,
        created_since: Option<DateTime<Utc>>,
    ) -> Result<Vec<DeliveryCount>, StoreError> {
        let rows: Vec<(String, String, bool, i64)> = sqlx::query_as(
            "SELECT url, status, last_error IS NOT NULL AS failed_before, count(*) \
             FROM webhook_deliveries \
             WHERE ($1::timestamptz IS NULL OR created_at >= $1) \
             GROUP BY url, status, failed_before",
        )
        .bind(created_since)
        .fetch_all(&self.pool)
        .await?;
        webhooks::counts(rows)
    }

    async fn next_webhook_due(&self, urls: &[String]) -> Result<Option<DateTime<Utc>>, StoreError> {
        // GREATEST skips NULLs: an unleased delivery is due at its next attempt.
        Ok(sqlx::query_scalar(
            "SELECT min(GREATEST(next_attempt_at, lease_expires_at)) FROM webhook_deliveries \
             WHERE status = 'pending' AND url = ANY($1)",
        )
        .bind(urls)
        .fetch_one(&self.pool)
        .await?)
    }
}

fn delivery_from_row(row: &PgRow) -> Result<WebhookDelivery, StoreError> {
    let last_error: Option<String> = row.try_get("last_error")?;
    Ok(WebhookDelivery {
        seq: row.try_get::<i64, _>("seq")? as u64,
        event_id: row.try_get("event_id")?,
        event_type: parse("event_type", row.try_get("event_type")?)?,
        task_id: row.try_get::<Option<Uuid>, _>("task_id")?.map(TaskId),
        url: row.try_get("url")?,
        state: DeliveryState::of(row.try_get("status")?, last_error.as_deref())?,
        attempts: row.try_get::<i32, _>("attempts")? as u32,
        next_attempt_at: row.try_get("next_attempt_at")?,
        last_status_code: (row.try_get::<Option<i32>, _>("last_status_code")?)
            .and_then(|code| u16::try_from(code).ok()),
        last_error,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        finished_at: row.try_get("finished_at")?,
    })
}

/// Wakes a store's idle workers when work arrives. The first waiter starts a task that LISTENs
/// on a connection of its own and wakes every waiter at each notification for this store's
/// schema; it runs until the store is dropped.
struct Wakeups {
    pool: PgPool,
    notify: Arc<Notify>,
    listener: OnceLock<AbortOnDrop>,
}

impl Wakeups {
    async fn wait(&self, max: Duration) {
        // Registered before anything else, so a notification from here on is not missed.
        let notified = self.notify.notified();
        self.listener.get_or_init(|| {
            let task = tokio::spawn(listen(self.pool.clone(), self.notify.clone()));
            AbortOnDrop(task.abort_handle())
        });
        // Timing out is the polling fallback, not a failure.
        let _ = tokio::time::timeout(max, notified).await;
    }
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Relays notifications to `notify` for as long as the store lives, listening again after a
/// pause whenever the connection fails; meanwhile waiters fall back to sleeping.
async fn listen(pool: PgPool, notify: Arc<Notify>) {
    loop {
        let Err(e) = relay(&pool, &notify).await;
        tracing::warn!("listening for new work failed ({e}); idle workers poll until it is back");
        tokio::time::sleep(RELISTEN_DELAY).await;
    }
}

async fn relay(pool: &PgPool, notify: &Notify) -> Result<std::convert::Infallible, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    let schema: Option<String> = sqlx::query_scalar("SELECT current_schema()")
        .fetch_one(&mut listener)
        .await?;
    // Work may have arrived while nobody listened.
    notify.notify_waiters();
    loop {
        match listener.try_recv().await? {
            Some(n) if Some(n.payload()) == schema.as_deref() => notify.notify_waiters(),
            // Another queue (schema) in the same database.
            Some(_) => {}
            // The connection dropped and PgListener re-established it: what was sent in
            // between is lost, so look.
            None => notify.notify_waiters(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn debug_output_holds_no_password() {
        let store = PgStore::connect("postgres://app:s3cret@db.invalid/queue").unwrap();
        let shown = format!("{store:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(
            shown.contains("postgres://app:***@db.invalid/queue"),
            "{shown}"
        );
    }

    #[test]
    fn a_prefix_maps_to_the_uuids_that_start_with_it() {
        let id: Uuid = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b".parse().unwrap();
        for len in [1, 8, 9, 13, 20, 36] {
            let (low, high) = uuid_range(&id.to_string()[..len]).unwrap();
            assert!(low <= id && id <= high, "prefix of length {len}");
        }
        let (low, high) = uuid_range("0190a1b2-c").unwrap();
        assert_eq!(low.to_string(), "0190a1b2-c000-0000-0000-000000000000");
        assert_eq!(high.to_string(), "0190a1b2-cfff-ffff-ffff-ffffffffffff");
        // Hyphens only where a UUID has them; nothing but hex otherwise.
        let too_long = "0".repeat(37);
        for bad in [
            "0190-",
            "0190a1b2c",
            "xyz",
            "'; drop table tasks; --",
            &too_long,
        ] {
            assert_eq!(uuid_range(bad), None, "{bad}");
        }
    }
}
