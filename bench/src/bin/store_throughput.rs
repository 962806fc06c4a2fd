//! How fast each store backend moves tasks, and what idle workers cost it.
//!
//! - Throughput: `WORKERS` workers claim and complete 2000 queued tasks, one per claim or
//!   `BATCH` per claim; tasks per second, median of 5 runs, each on a fresh store.
//! - Idle load: `WORKERS` workers run the engine's idle loop (rescue, claim, stats, then wait
//!   until the next due time or the poll interval) on an empty queue: store calls per second
//!   and, on PostgreSQL, committed transactions per second in the database (from
//!   `pg_stat_database`), in the steady state (a long run minus a short one), with the poll
//!   wait either a sleep (the engine today) or `Store::wait_for_work`. Also how long a task
//!   submitted to idle workers waits to be claimed.
//!
//! `cargo run --release -p pitcrew-bench --bin store_throughput`. PostgreSQL is the server at
//! `PITCREW_BENCH_POSTGRES_URL` (default: the local test server); the benchmark creates and
//! drops a database of its own there, so that nothing else counts in its statistics.
//! `--smoke` runs everything at tiny sizes (a check that it works, not figures).

#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pitcrew_bench::{flag, median, rate, report};
use pitcrew_core::{AttemptReport, NewTask, Priority, TaskKind, TaskStatus};
use pitcrew_store::{Disposition, PgStore, SqliteStore, Store};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use tokio::sync::watch;

const WORKERS: usize = 4;
const BATCH: u32 = 10;
const TTL: Duration = Duration::from_secs(60);
/// The engine's default poll interval (`pitcrew run`).
const POLL: Duration = Duration::from_secs(1);
const DEFAULT_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/test";

type Error = Box<dyn std::error::Error + Send + Sync>;

/// How much work each measurement does.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    /// Tasks per throughput run.
    tasks: usize,
    /// Throughput runs per mode.
    runs: usize,
    /// Pairs of idle runs.
    idle_runs: usize,
    /// A short and a long idle run; their difference (a multiple of every poll interval
    /// measured) is the steady state.
    idle_windows: (Duration, Duration),
    /// Tasks submitted to idle workers, one at a time.
    pickups: usize,
}

const FULL: Sizes = Sizes {
    tasks: 2000,
    runs: 5,
    idle_runs: 3,
    idle_windows: (Duration::from_secs(2), Duration::from_secs(12)),
    pickups: 10,
};

/// `--smoke`: every code path, in seconds.
const SMOKE: Sizes = Sizes {
    tasks: 20,
    runs: 1,
    idle_runs: 1,
    idle_windows: (Duration::from_millis(200), Duration::from_millis(400)),
    pickups: 1,
};

/// Makes fresh, empty stores of one backend.
enum Backend {
    Sqlite(tempfile::TempDir),
    Postgres(Box<Bench>),
}

impl Backend {
    fn name(&self) -> &'static str {
        match self {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    async fn fresh(&self, run: &str) -> Result<Arc<dyn Store>, Error> {
        Ok(match self {
            Backend::Sqlite(dir) => {
                Arc::new(SqliteStore::open(dir.path().join(format!("{run}.db"))).await?)
            }
            Backend::Postgres(bench) => Arc::new(bench.fresh_schema(run).await?),
        })
    }
}

/// A database of the benchmark's own on the PostgreSQL server, dropped at the end.
struct Bench {
    admin: PgConnectOptions,
    database: String,
}

impl Bench {
    async fn create(url: &str) -> Result<Self, Error> {
        let admin: PgConnectOptions = url.parse()?;
        let database = format!("pitcrew_bench_{}", uuid::Uuid::now_v7().simple());
        let mut conn = PgConnection::connect_with(&admin).await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}")))
            .execute(&mut conn)
            .await?;
        Ok(Bench { admin, database })
    }

    async fn fresh_schema(&self, name: &str) -> Result<PgStore, Error> {
        let options = self.admin.clone().database(&self.database);
        let mut conn = PgConnection::connect_with(&options).await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}")))
            .execute(&mut conn)
            .await?;
        conn.close().await?;
        Ok(PgStore::open_with(options.options([("search_path", name)])).await?)
    }

    /// Transactions committed in the benchmark's database so far. Read from another database,
    /// so the reading does not count; a backend reports its counts when it goes idle (at most
    /// once a second) or exits, so callers wait for that first.
    async fn commits(&self) -> Result<i64, Error> {
        let mut conn = PgConnection::connect_with(&self.admin).await?;
        let commits =
            sqlx::query_scalar("SELECT xact_commit FROM pg_stat_database WHERE datname = $1")
                .bind(&self.database)
                .fetch_one(&mut conn)
                .await?;
        conn.close().await?;
        Ok(commits)
    }

    async fn drop_database(&self) -> Result<(), Error> {
        let mut conn = PgConnection::connect_with(&self.admin).await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE {} WITH (FORCE)",
            self.database
        )))
        .execute(&mut conn)
        .await?;
        Ok(())
    }
}

fn task(i: usize) -> NewTask {
    NewTask {
        kind: TaskKind::UnitTest,
        description: format!("bench task {i}"),
        targets: vec![format!("src/m{i}.py")],
        repo: "/tmp/repo".into(),
        repo_url: None,
        base_commit: "0123456789abcdef0123456789abcdef01234567".into(),
        priority: Priority::ALL[i % 4],
        model: None,
        max_attempts: 3,
        idempotency_key: None,
        metadata: serde_json::json!({}),
    }
}

/// Tasks per second for `WORKERS` workers draining `tasks` tasks, `limit` per claim.
async fn throughput(store: Arc<dyn Store>, limit: u32, tasks: usize) -> Result<f64, Error> {
    let batch: Vec<NewTask> = (0..tasks).map(task).collect();
    for chunk in batch.chunks(500) {
        store.submit(chunk).await?;
    }
    let started = Instant::now();
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let name = format!("w{w}");
                loop {
                    let claimed = store.claim(&name, limit, TTL).await?;
                    if claimed.is_empty() {
                        return Ok::<_, pitcrew_store::StoreError>(());
                    }
                    for (_, lease) in claimed {
                        store
                            .finish(&lease, Disposition::Complete, &AttemptReport::default())
                            .await?;
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.await??;
    }
    let elapsed = started.elapsed();
    let done = store.stats().await?.count(TaskStatus::Completed);
    assert_eq!(done, tasks as u64, "every task completes exactly once");
    Ok(rate(tasks as u64, elapsed))
}

/// How an idle worker waits for the next look at the queue.
#[derive(Debug, Clone, Copy)]
enum Wait {
    /// `tokio::time::sleep`, what the engine does today.
    Sleep,
    /// `Store::wait_for_work` with this longest wait.
    Notified(Duration),
}

/// Idle workers running the engine's loop (pitcrew-engine `Engine::worker`) until stopped.
struct IdleWorkers {
    calls: Arc<AtomicU64>,
    claims: watch::Receiver<Option<Instant>>,
    stop: watch::Sender<bool>,
    handles: Vec<tokio::task::JoinHandle<Result<(), pitcrew_store::StoreError>>>,
}

impl IdleWorkers {
    fn start(store: &Arc<dyn Store>, wait: Wait) -> Self {
        let calls = Arc::new(AtomicU64::new(0));
        let (claimed_tx, claims) = watch::channel(None);
        let claimed_tx = Arc::new(claimed_tx);
        let (stop, _) = watch::channel(false);
        let handles = (0..WORKERS)
            .map(|w| {
                let (store, calls, claimed) = (store.clone(), calls.clone(), claimed_tx.clone());
                let mut stop = stop.subscribe();
                tokio::spawn(async move {
                    let name = format!("idle{w}");
                    while !*stop.borrow() {
                        store.rescue_expired().await?;
                        let claimed_now = store.claim(&name, 1, TTL).await?;
                        calls.fetch_add(2, Ordering::Relaxed);
                        if let Some((_, lease)) = claimed_now.into_iter().next() {
                            claimed.send_replace(Some(Instant::now()));
                            let done = AttemptReport::default();
                            store.finish(&lease, Disposition::Complete, &done).await?;
                            calls.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        let stats = store.stats().await?;
                        calls.fetch_add(1, Ordering::Relaxed);
                        let now = chrono::Utc::now();
                        let due = [stats.next_run_at, stats.next_lease_expiry]
                            .into_iter()
                            .flatten()
                            .min()
                            .and_then(|t| (t - now).to_std().ok());
                        let longest = match wait {
                            Wait::Sleep => POLL,
                            Wait::Notified(max) => max,
                        };
                        let pause = due
                            .unwrap_or(longest)
                            .clamp(Duration::from_millis(20), longest);
                        tokio::select! {
                            _ = async {
                                match wait {
                                    Wait::Sleep => tokio::time::sleep(pause).await,
                                    Wait::Notified(_) => store.wait_for_work(pause).await,
                                }
                            } => {}
                            _ = stop.changed() => {}
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        IdleWorkers {
            calls,
            claims,
            stop,
            handles,
        }
    }

    async fn stop(self) -> Result<(), Error> {
        self.stop.send_replace(true);
        for h in self.handles {
            h.await??;
        }
        Ok(())
    }
}

/// What idle workers cost, and how long a task submitted to them waits.
struct IdleFigures {
    calls_per_s: f64,
    /// PostgreSQL only.
    commits_per_s: Option<f64>,
    pickup_ms: f64,
}

/// Store calls and (PostgreSQL) committed transactions of idle workers that run for
/// `window` on a fresh store, counted from before they start until their connections closed.
async fn idle_run(
    backend: &Backend,
    wait: Wait,
    name: &str,
    window: Duration,
) -> Result<(f64, Option<f64>), Error> {
    let store = backend.fresh(name).await?;
    let bench = match backend {
        Backend::Postgres(bench) => Some(bench),
        Backend::Sqlite(_) => None,
    };
    let before = match bench {
        Some(b) => Some(b.commits().await?),
        None => None,
    };
    let workers = IdleWorkers::start(&store, wait);
    tokio::time::sleep(window).await;
    let calls = workers.calls.load(Ordering::Relaxed);
    workers.stop().await?;
    // Closing the connections ends their server processes, which report their counts as
    // they exit.
    drop(store);
    let commits = match (bench, before) {
        (Some(b), Some(before)) => {
            tokio::time::sleep(Duration::from_millis(1000)).await;
            Some((b.commits().await? - before) as f64)
        }
        _ => None,
    };
    Ok((calls as f64, commits))
}

async fn idle(
    backend: &Backend,
    wait: Wait,
    label: &str,
    sizes: &Sizes,
) -> Result<IdleFigures, Error> {
    // The difference between a short and a long run is the steady state: starting (connecting,
    // preparing statements, the first look at the queue) and stopping cancel out.
    let (short, long) = sizes.idle_windows;
    let extra = long - short;
    let mut calls = Vec::new();
    let mut commits = Vec::new();
    for run in 0..sizes.idle_runs {
        let a = idle_run(backend, wait, &format!("idle_{label}_{run}_a"), short).await?;
        let b = idle_run(backend, wait, &format!("idle_{label}_{run}_b"), long).await?;
        calls.push((b.0 - a.0) / extra.as_secs_f64());
        if let (Some(ca), Some(cb)) = (a.1, b.1) {
            commits.push((cb - ca) / extra.as_secs_f64());
        }
    }
    let mut pickups = Vec::new();
    let store = backend.fresh(&format!("pickup_{label}")).await?;
    let workers = IdleWorkers::start(&store, wait);
    let mut claims = workers.claims.clone();
    for i in 0..sizes.pickups {
        // Submit at points unrelated to the workers' polling rhythm.
        let offset = 700 + 97 * i as u64 % POLL.as_millis() as u64;
        tokio::time::sleep(Duration::from_millis(offset)).await;
        let submitted = Instant::now();
        claims.mark_unchanged();
        store.submit(&[task(i)]).await?;
        claims.changed().await?;
        let claimed = claims.borrow().expect("a claim was recorded");
        pickups.push(claimed.duration_since(submitted).as_secs_f64() * 1000.0);
    }
    workers.stop().await?;
    Ok(IdleFigures {
        calls_per_s: median(&mut calls).unwrap_or_default(),
        commits_per_s: median(&mut commits),
        pickup_ms: median(&mut pickups).unwrap_or_default(),
    })
}

async fn bench_backend(backend: &Backend, sizes: &Sizes) -> Result<(), Error> {
    let name = backend.name();
    for (mode, limit) in [("single claims", 1), ("batched claims", BATCH)] {
        let mut samples = Vec::new();
        for run in 0..sizes.runs {
            let store = backend.fresh(&format!("tp_{limit}_{run}")).await?;
            samples.push(throughput(store, limit, sizes.tasks).await?);
        }
        report(
            &format!("{name} claim+complete, {WORKERS} workers, {mode} (limit {limit})"),
            "tasks/s",
            &mut samples,
        );
    }
    let mut waits = vec![("sleep", Wait::Sleep)];
    if let Backend::Postgres(_) = backend {
        waits.push(("wait_for_work_1s", Wait::Notified(POLL)));
        waits.push(("wait_for_work_10s", Wait::Notified(Duration::from_secs(10))));
    }
    for (label, wait) in waits {
        let figures = idle(backend, wait, label, sizes).await?;
        let commits = figures
            .commits_per_s
            .map(|c| format!(", {c:.1} committed transactions/s"))
            .unwrap_or_default();
        println!(
            "{name} idle, {WORKERS} workers, {label}: {:.1} store calls/s{commits}; \
             a submitted task is claimed after {:.0} ms (medians)",
            figures.calls_per_s, figures.pickup_ms
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let sizes = if flag("--smoke") { SMOKE } else { FULL };
    println!(
        "store_throughput: {} tasks per run, {} runs; idle: {} pairs of runs \
         of {:?} and {:?}, {} pickups, poll {POLL:?}",
        sizes.tasks,
        sizes.runs,
        sizes.idle_runs,
        sizes.idle_windows.0,
        sizes.idle_windows.1,
        sizes.pickups
    );
    bench_backend(&Backend::Sqlite(tempfile::tempdir()?), &sizes).await?;
    let url = std::env::var("PITCREW_BENCH_POSTGRES_URL")
        .unwrap_or_else(|_| DEFAULT_POSTGRES.to_string());
    match Bench::create(&url).await {
        Ok(bench) => {
            let backend = Backend::Postgres(Box::new(bench));
            let result = bench_backend(&backend, &sizes).await;
            if let Backend::Postgres(bench) = &backend {
                bench.drop_database().await?;
            }
            result?;
        }
        Err(e) => println!("postgres: skipped, cannot create a database on the server: {e}"),
    }
    Ok(())
}
