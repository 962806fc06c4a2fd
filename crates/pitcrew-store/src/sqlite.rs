//! The embedded backend: one SQLite file in WAL mode. Writers serialise on `BEGIN IMMEDIATE`,
//! which is what makes a claim or a fenced finish atomic across processes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use pitcrew_core::{
    Attempt, AttemptReport, Finding, Lease, LimitDecision, ModelHealth, NewTask, Priority,
    SharedLimit, Task, TaskFilter, TaskId, TaskStatus, Usage, WebhookEvent, WebhookEventType,
    WebhookSubscription, utc_day_start_ms,
};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};

use crate::schema::{self, MigrationStatus};
use crate::webhooks::{self, Subscriptions};
use crate::{
    AttemptFilter, ClaimedDelivery, DeliveryCount, DeliveryOutcome, DeliveryState, Disposition,
    QueueStats, Rescued, Store, StoreError, Submitted, TaskAttempt, TaskRef, WebhookDelivery,
    parse, rules,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

const TASK_COLUMNS: &str = "id, seq, kind, description, targets, repo, repo_url, base_commit, priority, model, \
    max_attempts, idempotency_key, metadata, status, attempts, run_at, created_at, updated_at, \
    finished_at, lease_owner, lease_expires_at, error_kind, last_error, result_commit";

/// The path in `sqlite://PATH` or `sqlite:PATH`, if `url` is a SQLite URL.
pub(crate) fn path_from_url(url: &str) -> Option<PathBuf> {
    url.strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .map(PathBuf::from)
}

/// The SQLite-backed [`Store`].
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    url: String,
    webhooks: Subscriptions,
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

fn to_time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn json<T: serde::de::DeserializeOwned>(column: &str, value: &str) -> Result<T, StoreError> {
    serde_json::from_str(value).map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("plain data serializes")
}

fn task_from_row(row: &SqliteRow) -> Result<Task, StoreError> {
    let priority: i64 = row.try_get("priority")?;
    let opt_time = |col: &str| -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(row.try_get::<Option<i64>, _>(col)?.map(to_time))
    };
    Ok(Task {
        id: parse("id", row.try_get("id")?)?,
        seq: row.try_get::<i64, _>("seq")? as u64,
        kind: parse("kind", row.try_get("kind")?)?,
        description: row.try_get("description")?,
        targets: json("targets", row.try_get("targets")?)?,
        repo: row.try_get("repo")?,
        repo_url: row.try_get("repo_url")?,
        base_commit: row.try_get("base_commit")?,
        priority: Priority::from_rank(priority)
            .ok_or_else(|| StoreError::Corrupt(format!("priority = {priority}")))?,
        model: row.try_get("model")?,
        max_attempts: row.try_get::<i64, _>("max_attempts")? as u32,
        idempotency_key: row.try_get("idempotency_key")?,
        metadata: json("metadata", row.try_get("metadata")?)?,
        status: parse("status", row.try_get("status")?)?,
        attempts: row.try_get::<i64, _>("attempts")? as u32,
        run_at: to_time(row.try_get("run_at")?),
        created_at: to_time(row.try_get("created_at")?),
        updated_at: to_time(row.try_get("updated_at")?),
        finished_at: opt_time("finished_at")?,
        lease_owner: row.try_get("lease_owner")?,
        lease_expires_at: opt_time("lease_expires_at")?,
        error_kind: row
            .try_get::<Option<&str>, _>("error_kind")?
            .map(|k| parse("error_kind", k))
            .transpose()?,
        last_error: row.try_get("last_error")?,
        result_commit: row.try_get("result_commit")?,
    })
}

fn attempt_from_row(row: &SqliteRow) -> Result<Attempt, StoreError> {
    Ok(Attempt {
        task_id: parse("task_id", row.try_get("task_id")?)?,
        number: row.try_get::<i64, _>("number")? as u32,
        worker: row.try_get("worker")?,
        outcome: parse("outcome", row.try_get("outcome")?)?,
        started_at: to_time(row.try_get("started_at")?),
        finished_at: row.try_get::<Option<i64>, _>("finished_at")?.map(to_time),
        model: row.try_get("model")?,
        usage: Usage {
            tokens_in: row.try_get::<i64, _>("tokens_in")? as u64,
            tokens_out: row.try_get::<i64, _>("tokens_out")? as u64,
            cost_usd: row.try_get("cost_usd")?,
        },
        latency_ms: row
            .try_get::<Option<i64>, _>("latency_ms")?
            .map(|v| v as u64),
        findings: json::<Vec<Finding>>("findings", row.try_get("findings")?)?,
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

fn health_from_row(row: &SqliteRow) -> Result<ModelHealth, StoreError> {
    let opt_time = |col: &str| -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(row.try_get::<Option<i64>, _>(col)?.map(to_time))
    };
    Ok(ModelHealth {
        model: row.try_get("model")?,
        consecutive_failures: row.try_get::<i64, _>("consecutive_failures")? as u32,
        circuit_open_until: opt_time("circuit_open_until")?,
        cooldown_until: opt_time("cooldown_until")?,
        cooldown_reason: row.try_get("cooldown_reason")?,
        success_rate: row.try_get("success_rate")?,
        latency_ms: row.try_get("latency_ms")?,
        quality: row.try_get("quality")?,
        samples: row.try_get::<i64, _>("samples")? as u64,
        updated_at: to_time(row.try_get("updated_at")?),
    })
}

/// How many times [`SqliteStore::open`] tries a file that is locked (about 5 s in all).
const OPEN_TRIES: u32 = 9;

/// SQLITE_BUSY or SQLITE_LOCKED, in any of their extended forms.
fn is_locked(error: &StoreError) -> bool {
    let StoreError::Database(sqlx::Error::Database(db)) = error else {
        return false;
    };
    db.code()
        .and_then(|code| code.parse::<i32>().ok())
        .is_some_and(|code| matches!(code & 0xff, 5 | 6))
}

impl SqliteStore {
    /// Opens the database at `path`, creating it (and its directory) and migrating it.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref();
        // Several processes opening a fresh file at once: switching it to WAL takes a lock
        // that SQLite refuses at once, without the busy timeout's wait, to all but one of
        // them. Those try again shortly; the file is theirs to share once it is set up.
        let mut pause = Duration::from_millis(20);
        let mut tries = 1;
        loop {
            let opened = match Self::connect(path).await {
                Ok(store) => store.migrate().await.map(|_| store),
                Err(e) => Err(e),
            };
            match opened {
                Err(e) if is_locked(&e) && tries < OPEN_TRIES => {
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                    tries += 1;
                }
                other => return other,
            }
        }
    }

    /// Opens the database at `path`, creating it (and its directory), without migrating it.
    pub(crate) async fn connect(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(sqlx::Error::Io)?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a submitted task survives power loss, not only a process crash.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        Ok(SqliteStore {
            pool,
            url: format!("sqlite://{}", path.display()),
            webhooks: Subscriptions::default(),
        })
    }

    /// Applies pending migrations; refuses a database migrated by a newer pitcrew.
    pub async fn migrate(&self) -> Result<MigrationStatus, StoreError> {
        // sqlx's migration lock is a no-op on SQLite: one write transaction around the whole
        // run makes a second process opening a fresh file wait, then find nothing to do,
        // instead of applying the same migration twice. sqlx nests each migration in a
        // savepoint inside it.
        let mut tx = self.begin().await?;
        let status = schema::run(&MIGRATOR, &mut *tx, &self.url).await?;
        tx.commit().await?;
        Ok(status)
    }

    async fn begin(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        // IMMEDIATE takes the write lock up front; a deferred transaction that reads and then
        // writes can fail with SQLITE_BUSY instead of waiting.
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    async fn task_in(
        tx: &mut Transaction<'static, Sqlite>,
        id: TaskId,
    ) -> Result<Task, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?"
        )))
        .bind(id.to_string())
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(id.to_string()))?;
        task_from_row(&row)
    }

    async fn unfinished_with_key(
        tx: &mut Transaction<'static, Sqlite>,
        key: &str,
    ) -> Result<Option<TaskId>, StoreError> {
        let id: Option<String> = sqlx::query_scalar(
            "SELECT id FROM tasks WHERE idempotency_key = ? AND status IN ('queued', 'running')",
        )
        .bind(key)
        .fetch_optional(&mut **tx)
        .await?;
        id.map(|id| parse("id", &id)).transpose()
    }

    /// Enqueues the deliveries of task `id` having ended as `status`, in the transaction that
    /// ends it; nothing when no endpoint wants the event.
    async fn enqueue_task_end(
        &self,
        tx: &mut Transaction<'static, Sqlite>,
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
        let task = Self::task_in(tx, id).await?;
        if let Some(event) = WebhookEvent::task_ended(&task) {
            Self::insert_deliveries(tx, &event, &urls).await?;
        }
        Ok(())
    }

    /// One pending delivery of `event` per URL, due now; a URL that has the event already
    /// keeps the one it has.
    async fn insert_deliveries(
        tx: &mut Transaction<'static, Sqlite>,
        event: &WebhookEvent,
        urls: &[String],
    ) -> Result<u32, StoreError> {
        let now = now_ms();
        let body = webhooks::stored_body(event);
        let mut inserted = 0;
        for url in urls {
            inserted += sqlx::query(
                "INSERT INTO webhook_deliveries (event_id, event_type, task_id, url, body, \
                 status, next_attempt_at, created_at, updated_at) \
                 VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, ?) \
                 ON CONFLICT (event_id, url) DO NOTHING",
            )
            .bind(event.id.to_string())
            .bind(event.event_type.as_str())
            .bind(event.task_id())
            .bind(url)
            .bind(&body)
            .bind(now)
            .bind(now)
            .bind(now)
            .execute(&mut **tx)
            .await?
            .rows_affected();
        }
        Ok(u32::try_from(inserted).unwrap_or(u32::MAX))
    }
}

fn delivery_from_row(row: &SqliteRow) -> Result<WebhookDelivery, StoreError> {
    let opt_time = |col: &str| -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(row.try_get::<Option<i64>, _>(col)?.map(to_time))
    };
    let last_error: Option<String> = row.try_get("last_error")?;
    Ok(WebhookDelivery {
        seq: row.try_get::<i64, _>("seq")? as u64,
        event_id: parse("event_id", row.try_get("event_id")?)?,
        event_type: parse("event_type", row.try_get("event_type")?)?,
        task_id: (row.try_get::<Option<&str>, _>("task_id")?)
            .map(|id| parse("task_id", id))
            .transpose()?,
        url: row.try_get("url")?,
        state: DeliveryState::of(row.try_get("status")?, last_error.as_deref())?,
        attempts: row.try_get::<i64, _>("attempts")? as u32,
        next_attempt_at: to_time(row.try_get("next_attempt_at")?),
        last_status_code: (row.try_get::<Option<i64>, _>("last_status_code")?)
            .and_then(|code| u16::try_from(code).ok()),
        last_error,
        created_at: to_time(row.try_get("created_at")?),
        updated_at: to_time(row.try_get("updated_at")?),
        finished_at: opt_time("finished_at")?,
    })
}

#[async_trait]
impl Store for SqliteStore {
    async fn submit(&self, tasks: &[NewTask]) -> Result<Vec<Submitted>, StoreError> {
        let now = now_ms();
        let mut tx = self.begin().await?;
        let mut submitted = Vec::with_capacity(tasks.len());
        for task in tasks {
            if let Some(key) = &task.idempotency_key
                && let Some(id) = Self::unfinished_with_key(&mut tx, key).await?
            {
                let seq: i64 = sqlx::query_scalar("SELECT seq FROM tasks WHERE id = ?")
                    .bind(id.to_string())
                    .fetch_one(&mut *tx)
                    .await?;
                submitted.push(Submitted {
                    id,
                    seq: seq as u64,
                    deduplicated: true,
                });
                continue;
            }
            let id = TaskId::new();
            let seq: i64 = sqlx::query_scalar(
                "INSERT INTO tasks (id, kind, description, targets, repo, repo_url, base_commit, \
                 priority, model, max_attempts, idempotency_key, metadata, status, run_at, \
                 created_at, updated_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?) \
                 RETURNING seq",
            )
            .bind(id.to_string())
            .bind(task.kind.as_str())
            .bind(&task.description)
            .bind(to_json(&task.targets))
            .bind(&task.repo)
            .bind(&task.repo_url)
            .bind(&task.base_commit)
            .bind(task.priority.rank())
            .bind(&task.model)
            .bind(i64::from(task.max_attempts.max(1)))
            .bind(&task.idempotency_key)
            .bind(to_json(&task.metadata))
            .bind(now)
            .bind(now)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            submitted.push(Submitted {
                id,
                seq: seq as u64,
                deduplicated: false,
            });
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
        let now = now_ms();
        let mut tx = self.begin().await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE tasks SET status = 'running', attempts = attempts + 1, lease_owner = ?1, \
             lease_token = lower(hex(randomblob(16))), lease_expires_at = ?2, updated_at = ?3 \
             WHERE id IN (SELECT id FROM tasks WHERE status = 'queued' AND run_at <= ?3 \
                          ORDER BY priority, run_at, seq LIMIT ?4) \
             RETURNING {TASK_COLUMNS}, lease_token"
        )))
        .bind(worker)
        .bind(now + ms(ttl))
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        let mut claimed = Vec::with_capacity(rows.len());
        for row in rows {
            let task = task_from_row(&row)?;
            let token: String = row.try_get("lease_token")?;
            let lease = Lease {
                task_id: task.id,
                token: parse("lease_token", &token)?,
                owner: worker.to_string(),
                attempt: task.attempts,
            };
            sqlx::query(
                "INSERT INTO attempts (task_id, number, worker, lease_token, outcome, started_at) \
                 VALUES (?, ?, ?, ?, 'running', ?)",
            )
            .bind(task.id.to_string())
            .bind(i64::from(task.attempts))
            .bind(worker)
            .bind(&token)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            claimed.push((task, lease));
        }
        tx.commit().await?;
        // RETURNING does not follow the subquery's order.
        claimed.sort_by_key(|(t, _)| (t.priority, t.run_at, t.created_at, t.id));
        Ok(claimed)
    }

    async fn heartbeat(&self, lease: &Lease, ttl: Duration) -> Result<(), StoreError> {
        let now = now_ms();
        let updated = sqlx::query(
            "UPDATE tasks SET lease_expires_at = ?, updated_at = ? \
             WHERE id = ? AND lease_token = ? AND status = 'running'",
        )
        .bind(now + ms(ttl))
        .bind(now)
        .bind(lease.task_id.to_string())
        .bind(lease.token.simple().to_string())
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
        let now = now_ms();
        let token = lease.token.simple().to_string();
        let mut tx = self.begin().await?;
        let held = sqlx::query(
            "SELECT attempts, max_attempts FROM tasks \
             WHERE id = ? AND lease_token = ? AND status = 'running'",
        )
        .bind(lease.task_id.to_string())
        .bind(&token)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(held) = held else {
            return Err(StoreError::LeaseLost {
                task: lease.task_id,
                attempt: lease.attempt,
            });
        };
        let next = rules::finished(
            disposition,
            held.try_get("attempts")?,
            held.try_get("max_attempts")?,
            report,
        );
        sqlx::query(
            "UPDATE tasks SET status = ?, lease_owner = NULL, lease_token = NULL, \
             lease_expires_at = NULL, run_at = ?, updated_at = ?, finished_at = ?, \
             error_kind = ?, last_error = ?, result_commit = ?, \
             max_attempts = max_attempts + ? \
             WHERE id = ? AND lease_token = ?",
        )
        .bind(next.status.as_str())
        .bind(now + ms(next.delay))
        .bind(now)
        .bind(next.status.is_terminal().then_some(now))
        .bind(next.error_kind)
        .bind(&next.last_error)
        .bind(next.result_commit)
        .bind(i64::from(next.refund))
        .bind(lease.task_id.to_string())
        .bind(&token)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE attempts SET outcome = ?, finished_at = ?, model = ?, tokens_in = ?, \
             tokens_out = ?, cost_usd = ?, latency_ms = ?, findings = ?, error_kind = ?, \
             error = ?, commit_sha = ?, patch = ?, run_id = ?, quality = ?, details = ? \
             WHERE task_id = ? AND number = ? AND lease_token = ?",
        )
        .bind(next.outcome.as_str())
        .bind(now)
        .bind(&report.model)
        .bind(report.usage.tokens_in as i64)
        .bind(report.usage.tokens_out as i64)
        .bind(report.usage.cost_usd)
        .bind(report.latency_ms.map(|v| v as i64))
        .bind(to_json(&report.findings))
        .bind(report.error_kind.map(|k| k.as_str()))
        .bind(&report.error)
        .bind(&report.commit)
        .bind(&report.patch)
        .bind(&report.run_id)
        .bind(report.quality)
        .bind(to_json(&report.details))
        .bind(lease.task_id.to_string())
        .bind(i64::from(lease.attempt))
        .bind(&token)
        .execute(&mut *tx)
        .await?;
        self.enqueue_task_end(&mut tx, lease.task_id, next.status)
            .await?;
        tx.commit().await?;
        Ok(next.status)
    }

    async fn rescue_expired(&self) -> Result<Vec<Rescued>, StoreError> {
        let now = now_ms();
        let mut tx = self.begin().await?;
        let expired = sqlx::query(
            "SELECT id, attempts, max_attempts, lease_owner, lease_token FROM tasks \
             WHERE status = 'running' AND lease_expires_at < ?",
        )
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        let mut rescued = Vec::with_capacity(expired.len());
        for row in expired {
            let id: String = row.try_get("id")?;
            let attempts: i64 = row.try_get("attempts")?;
            let max_attempts: i64 = row.try_get("max_attempts")?;
            let owner: String = row
                .try_get::<Option<String>, _>("lease_owner")?
                .unwrap_or_default();
            let token: String = row.try_get("lease_token")?;
            let next = rules::expired(&owner, attempts, max_attempts);
            sqlx::query(
                "UPDATE attempts SET outcome = 'abandoned', finished_at = ?, \
                 error_kind = 'lease_expired', error = ? \
                 WHERE task_id = ? AND lease_token = ?",
            )
            .bind(now)
            .bind(&next.attempt_error)
            .bind(&id)
            .bind(&token)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE tasks SET status = ?, lease_owner = NULL, lease_token = NULL, \
                 lease_expires_at = NULL, run_at = ?, updated_at = ?, finished_at = ?, \
                 error_kind = 'lease_expired', last_error = ? WHERE id = ? AND lease_token = ?",
            )
            .bind(next.status.as_str())
            .bind(now)
            .bind(now)
            .bind(next.status.is_terminal().then_some(now))
            .bind(&next.task_error)
            .bind(&id)
            .bind(&token)
            .execute(&mut *tx)
            .await?;
            let id = parse("id", &id)?;
            self.enqueue_task_end(&mut tx, id, next.status).await?;
            rescued.push(Rescued {
                id,
                owner,
                status: next.status,
            });
        }
        tx.commit().await?;
        Ok(rescued)
    }

    async fn release(&self, lease: &Lease, reason: &str) -> Result<(), StoreError> {
        let reason = pitcrew_core::redact(reason);
        let reason = reason.as_ref();
        let now = now_ms();
        let token = lease.token.simple().to_string();
        let mut tx = self.begin().await?;
        // One more allowed attempt: the one given back does not count.
        let released = sqlx::query(
            "UPDATE tasks SET status = 'queued', lease_owner = NULL, lease_token = NULL, \
             lease_expires_at = NULL, run_at = ?, updated_at = ?, max_attempts = max_attempts + 1, \
             error_kind = 'interrupted', last_error = ? \
             WHERE id = ? AND lease_token = ? AND status = 'running'",
        )
        .bind(now)
        .bind(now)
        .bind(reason)
        .bind(lease.task_id.to_string())
        .bind(&token)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if released == 0 {
            return Err(StoreError::LeaseLost {
                task: lease.task_id,
                attempt: lease.attempt,
            });
        }
        sqlx::query(
            "UPDATE attempts SET outcome = 'abandoned', finished_at = ?, \
             error_kind = 'interrupted', error = ? \
             WHERE task_id = ? AND number = ? AND lease_token = ?",
        )
        .bind(now)
        .bind(reason)
        .bind(lease.task_id.to_string())
        .bind(i64::from(lease.attempt))
        .bind(&token)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn cancel(&self, id: TaskId) -> Result<Task, StoreError> {
        let now = now_ms();
        let mut tx = self.begin().await?;
        let task = Self::task_in(&mut tx, id).await?;
        match task.status {
            TaskStatus::Queued => {}
            TaskStatus::Running => {
                sqlx::query(
                    "UPDATE attempts SET outcome = 'cancelled', finished_at = ? \
                     WHERE task_id = ? AND number = ?",
                )
                .bind(now)
                .bind(id.to_string())
                .bind(i64::from(task.attempts))
                .execute(&mut *tx)
                .await?;
            }
            status => {
                return Err(StoreError::InvalidState {
                    task: id,
                    status,
                    action: "only queued or running tasks can be cancelled".into(),
                });
            }
        }
        sqlx::query(
            "UPDATE tasks SET status = 'cancelled', lease_owner = NULL, lease_token = NULL, \
             lease_expires_at = NULL, updated_at = ?, finished_at = ?, \
             last_error = ? WHERE id = ?",
        )
        .bind(now)
        .bind(now)
        .bind(rules::CANCELLED_BY_USER)
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        self.enqueue_task_end(&mut tx, id, TaskStatus::Cancelled)
            .await?;
        let task = Self::task_in(&mut tx, id).await?;
        tx.commit().await?;
        Ok(task)
    }

    async fn requeue(&self, id: TaskId) -> Result<Task, StoreError> {
        let now = now_ms();
        let mut tx = self.begin().await?;
        let task = Self::task_in(&mut tx, id).await?;
        if !matches!(task.status, TaskStatus::Failed | TaskStatus::Cancelled) {
            return Err(StoreError::InvalidState {
                task: id,
                status: task.status,
                action: "only failed or cancelled tasks can be retried".into(),
            });
        }
        if let Some(key) = &task.idempotency_key
            && let Some(other) = Self::unfinished_with_key(&mut tx, key).await?
        {
            return Err(StoreError::IdempotencyConflict {
                key: key.clone(),
                task: other,
            });
        }
        sqlx::query(
            "UPDATE tasks SET status = 'queued', run_at = ?, updated_at = ?, finished_at = NULL, \
             error_kind = NULL, last_error = NULL, \
             max_attempts = MAX(max_attempts, attempts + 1) WHERE id = ?",
        )
        .bind(now)
        .bind(now)
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        let task = Self::task_in(&mut tx, id).await?;
        tx.commit().await?;
        Ok(task)
    }

    async fn find(&self, id_or_prefix: &str) -> Result<Task, StoreError> {
        let prefix = match TaskRef::parse(id_or_prefix)? {
            TaskRef::Seq(seq) => {
                let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {TASK_COLUMNS} FROM tasks WHERE seq = ?"
                )))
                .bind(i64::try_from(seq).unwrap_or(i64::MAX))
                .fetch_optional(&self.pool)
                .await?
                .ok_or_else(|| StoreError::NotFound(id_or_prefix.trim().to_string()))?;
                return task_from_row(&row);
            }
            TaskRef::Prefix(prefix) => prefix,
        };
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE id LIKE ? || '%' ORDER BY seq LIMIT 2"
        )))
        .bind(&prefix)
        .fetch_all(&self.pool)
        .await?;
        match rows.as_slice() {
            [] => Err(StoreError::NotFound(id_or_prefix.to_string())),
            [row] => task_from_row(row),
            _ => {
                let count: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM tasks WHERE id LIKE ? || '%'")
                        .bind(&prefix)
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
             WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR kind = ?2) \
             AND (?4 IS NULL OR seq > ?4) \
             ORDER BY seq LIMIT ?3"
        )))
        .bind(filter.status.map(|s| s.as_str()))
        .bind(filter.kind.map(|k| k.as_str()))
        .bind(filter.limit.map_or(-1, i64::from))
        .bind(after_seq)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(task_from_row).collect()
    }

    async fn attempts(&self, id: TaskId) -> Result<Vec<Attempt>, StoreError> {
        let rows = sqlx::query("SELECT * FROM attempts WHERE task_id = ? ORDER BY number")
            .bind(id.to_string())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(attempt_from_row).collect()
    }

    async fn stats(&self) -> Result<QueueStats, StoreError> {
        let rows = sqlx::query(
            "SELECT status, priority, COUNT(*) AS n FROM tasks GROUP BY status, priority \
             ORDER BY status, priority",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut counts = Vec::with_capacity(rows.len());
        for row in &rows {
            let status: TaskStatus = parse("status", row.try_get("status")?)?;
            let rank: i64 = row.try_get("priority")?;
            let priority = Priority::from_rank(rank)
                .ok_or_else(|| StoreError::Corrupt(format!("priority = {rank}")))?;
            counts.push((status, priority, row.try_get::<i64, _>("n")? as u64));
        }
        let next = sqlx::query(
            "SELECT (SELECT MIN(run_at) FROM tasks WHERE status = 'queued') AS next_run_at, \
             (SELECT MIN(lease_expires_at) FROM tasks WHERE status = 'running') AS next_expiry",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(QueueStats {
            counts,
            next_run_at: next.try_get::<Option<i64>, _>("next_run_at")?.map(to_time),
            next_lease_expiry: next.try_get::<Option<i64>, _>("next_expiry")?.map(to_time),
        })
    }

    async fn recent_latencies(&self, limit: u32) -> Result<Vec<(String, u64)>, StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT model, latency_ms FROM attempts \
             WHERE model IS NOT NULL AND latency_ms IS NOT NULL \
             ORDER BY finished_at DESC LIMIT ?",
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
             WHERE (?1 IS NULL OR a.started_at >= ?1) AND (?2 IS NULL OR t.kind = ?2) \
             ORDER BY a.started_at, t.seq, a.number",
        )
        .bind(filter.started_since.map(|t| t.timestamp_millis()))
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
        let rows = sqlx::query("SELECT * FROM model_health ORDER BY model")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(health_from_row).collect()
    }

    async fn record_model_health(&self, health: &ModelHealth) -> Result<(), StoreError> {
        let mut health = health.clone();
        health.redact_secrets();
        let health = &health;
        // `stored > max(now, written)`: a stored end is kept while it is ahead of both; one
        // already past is no cooldown at all and may be cleared.
        sqlx::query(
            "INSERT INTO model_health (model, consecutive_failures, circuit_open_until, \
             cooldown_until, cooldown_reason, success_rate, latency_ms, quality, samples, \
             updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
             ON CONFLICT (model) DO UPDATE SET \
             consecutive_failures = excluded.consecutive_failures, \
             circuit_open_until = CASE \
                 WHEN circuit_open_until > max(?10, coalesce(excluded.circuit_open_until, ?10)) \
                 THEN circuit_open_until ELSE excluded.circuit_open_until END, \
             cooldown_until = CASE \
                 WHEN cooldown_until > max(?10, coalesce(excluded.cooldown_until, ?10)) \
                 THEN cooldown_until ELSE excluded.cooldown_until END, \
             cooldown_reason = CASE \
                 WHEN cooldown_until > max(?10, coalesce(excluded.cooldown_until, ?10)) \
                 THEN cooldown_reason ELSE excluded.cooldown_reason END, \
             success_rate = excluded.success_rate, latency_ms = excluded.latency_ms, \
             quality = excluded.quality, samples = excluded.samples, \
             updated_at = excluded.updated_at",
        )
        .bind(&health.model)
        .bind(i64::from(health.consecutive_failures))
        .bind(health.circuit_open_until.map(|t| t.timestamp_millis()))
        .bind(health.cooldown_until.map(|t| t.timestamp_millis()))
        .bind(&health.cooldown_reason)
        .bind(health.success_rate)
        .bind(health.latency_ms)
        .bind(health.quality)
        .bind(health.samples as i64)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn take_limits(
        &self,
        limits: &[SharedLimit],
        tokens: u64,
    ) -> Result<LimitDecision, StoreError> {
        let mut tx = self.begin().await?;
        let now = now_ms();
        let mut counted = Vec::with_capacity(limits.len());
        for limit in limits {
            sqlx::query("DELETE FROM rate_events WHERE key = ?1 AND at < ?2")
                .bind(&limit.key)
                .bind(rules::forget_before(limit, now))
                .execute(&mut *tx)
                .await?;
            let minute: Vec<(i64, i64)> = sqlx::query_as(
                "SELECT at, tokens FROM rate_events WHERE key = ?1 AND at > ?2 ORDER BY at",
            )
            .bind(&limit.key)
            .bind(now - pitcrew_core::MINUTE_MS)
            .fetch_all(&mut *tx)
            .await?;
            let today: i64 =
                sqlx::query_scalar("SELECT count(*) FROM rate_events WHERE key = ?1 AND at >= ?2")
                    .bind(&limit.key)
                    .bind(utc_day_start_ms(now))
                    .fetch_one(&mut *tx)
                    .await?;
            counted.push((limit, rules::counted(minute, today)));
        }
        if let Some(refused) = rules::refusal(counted, tokens) {
            return Ok(refused);
        }
        for limit in limits {
            sqlx::query("INSERT INTO rate_events (key, at, tokens) VALUES (?1, ?2, ?3)")
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
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO budgets (key, spent_usd, updated_at) VALUES (?1, 0, ?2) \
             ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        let reserved = sqlx::query(
            "UPDATE budgets SET spent_usd = spent_usd + ?2, updated_at = ?4 \
             WHERE key = ?1 AND spent_usd + ?2 <= ?3",
        )
        .bind(key)
        .bind(amount_usd.max(0.0))
        .bind(limit_usd + rules::BUDGET_EPSILON)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        tx.commit().await?;
        Ok(reserved)
    }

    async fn settle_budget(
        &self,
        key: &str,
        reserved_usd: f64,
        cost_usd: f64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE budgets SET spent_usd = max(0, spent_usd + ?2 - ?3), updated_at = ?4 \
             WHERE key = ?1",
        )
        .bind(key)
        .bind(cost_usd.max(0.0))
        .bind(reserved_usd.max(0.0))
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn budget_spent(&self, key: &str) -> Result<f64, StoreError> {
        let spent: Option<f64> = sqlx::query_scalar("SELECT spent_usd FROM budgets WHERE key = ?1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(spent.unwrap_or(0.0))
    }

    async fn wait_for_work(&self, max: Duration) {
        // SQLite has no notifications across processes; polling is the only signal.
        tokio::time::sleep(max).await;
    }

    fn subscribe_webhooks(&self, subscriptions: Vec<WebhookSubscription>) {
        self.webhooks.set(subscriptions);
    }

    async fn enqueue_webhook_event(&self, event: &WebhookEvent) -> Result<u32, StoreError> {
        let urls = self.webhooks.urls_wanting(event.event_type);
        if urls.is_empty() {
            return Ok(0);
        }
        let mut tx = self.begin().await?;
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
        let now = now_ms();
        let rows = sqlx::query(
            "UPDATE webhook_deliveries SET attempts = attempts + 1, lease_owner = ?1, \
             lease_token = lower(hex(randomblob(16))), lease_expires_at = ?2, updated_at = ?3 \
             WHERE seq IN (SELECT seq FROM webhook_deliveries \
                           WHERE status = 'pending' AND next_attempt_at <= ?3 \
                           AND (lease_expires_at IS NULL OR lease_expires_at < ?3) \
                           AND url IN (SELECT value FROM json_each(?4)) \
                           ORDER BY next_attempt_at, seq LIMIT ?5) \
             RETURNING seq, event_id, event_type, url, body, attempts, lease_token",
        )
        .bind(owner)
        .bind(now + ms(ttl))
        .bind(now)
        .bind(to_json(&urls))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let mut claimed = rows
            .iter()
            .map(|row| {
                Ok(ClaimedDelivery {
                    seq: row.try_get::<i64, _>("seq")? as u64,
                    token: parse("lease_token", row.try_get("lease_token")?)?,
                    attempt: row.try_get::<i64, _>("attempts")? as u32,
                    event_id: parse("event_id", row.try_get("event_id")?)?,
                    event_type: parse("event_type", row.try_get("event_type")?)?,
                    url: row.try_get("url")?,
                    body: row.try_get("body")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        // RETURNING does not follow the subquery's order.
        claimed.sort_by_key(|d| d.seq);
        Ok(claimed)
    }

    async fn record_webhook_attempt(
        &self,
        delivery: &ClaimedDelivery,
        outcome: &DeliveryOutcome,
    ) -> Result<bool, StoreError> {
        let now = now_ms();
        let recorded = outcome.recorded();
        let updated = sqlx::query(
            "UPDATE webhook_deliveries SET status = ?, next_attempt_at = ?, \
             last_status_code = ?, last_error = ?, finished_at = ?, updated_at = ?, \
             lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL \
             WHERE seq = ? AND lease_token = ? AND status = 'pending'",
        )
        .bind(recorded.status)
        .bind(now + ms(recorded.delay))
        .bind(recorded.status_code)
        .bind(&recorded.error)
        .bind(recorded.finished.then_some(now))
        .bind(now)
        .bind(i64::try_from(delivery.seq).unwrap_or(i64::MAX))
        .bind(delivery.token.simple().to_string())
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(updated == 1)
    }

    async fn webhook_deliveries(&self, limit: u32) -> Result<Vec<WebhookDelivery>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, event_id, event_type, task_id, url, status, attempts, \
             next_attempt_at, last_status_code, last_error, created_at, updated_at, finished_at \
             FROM webhook_deliveries ORDER BY seq DESC LIMIT ?",
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
            "SELECT url, status, last_error IS NOT NULL AS failed_before, COUNT(*) \
             FROM webhook_deliveries WHERE (?1 IS NULL OR created_at >= ?1) \
             GROUP BY url, status, failed_before",
        )
        .bind(created_since.map(|t| t.timestamp_millis()))
        .fetch_all(&self.pool)
        .await?;
        webhooks::counts(rows)
    }

    async fn next_webhook_due(&self, urls: &[String]) -> Result<Option<DateTime<Utc>>, StoreError> {
        let due: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(max(next_attempt_at, coalesce(lease_expires_at, 0))) \
             FROM webhook_deliveries WHERE status = 'pending' \
             AND url IN (SELECT value FROM json_each(?))",
        )
        .bind(to_json(&urls))
        .fetch_one(&self.pool)
        .await?;
        Ok(due.map(to_time))
    }
}
