//! What the store's test files share: the empty place a store lives in for each backend (a
//! [`Fixture`]), and builders of the tasks and reports they feed it. PostgreSQL fixtures exist
//! only when `PITCREW_TEST_POSTGRES_URL` is set, each in a schema of its own.

use std::io::Write;
use std::sync::Arc;

use pitcrew_core::{AttemptReport, ErrorKind, NewTask, Priority, TaskKind};
use pitcrew_store::Store;
use sqlx::{Connection, PgConnection};

/// An empty place for a store (a temporary file, a fresh schema), removed when dropped.
pub trait Fixture: Sized + Send + Sync + 'static {
    /// A new one, or `None` (having said why) when this backend cannot be tested here.
    async fn new() -> Option<Self>;
    /// The URL that [`pitcrew_store::open`] takes.
    fn url(&self) -> String;
    /// Runs `sql` on the database directly, to make states the API never makes.
    async fn execute(&self, sql: &str);
}

pub async fn open(fx: &impl Fixture) -> Arc<dyn Store> {
    pitcrew_store::open(&fx.url()).await.unwrap()
}

pub fn task(target: &str, priority: Priority) -> NewTask {
    NewTask {
        kind: TaskKind::UnitTest,
        description: format!("write tests for {target}"),
        targets: vec![target.to_string()],
        repo: "/tmp/repo".into(),
        repo_url: None,
        base_commit: "0123456789abcdef0123456789abcdef01234567".into(),
        priority,
        model: None,
        max_attempts: 3,
        idempotency_key: None,
        metadata: serde_json::json!({"source": "test"}),
    }
}

pub fn report(error_kind: Option<ErrorKind>, error: Option<&str>) -> AttemptReport {
    AttemptReport {
        model: Some("test/model".into()),
        error_kind,
        error: error.map(String::from),
        ..AttemptReport::default()
    }
}

/// A database file in a temporary directory.
pub struct SqliteFixture(tempfile::TempDir);

impl Fixture for SqliteFixture {
    async fn new() -> Option<Self> {
        Some(SqliteFixture(tempfile::tempdir().unwrap()))
    }

    fn url(&self) -> String {
        format!("sqlite://{}", self.0.path().join("queue.db").display())
    }

    async fn execute(&self, sql: &str) {
        let options =
            sqlx::sqlite::SqliteConnectOptions::new().filename(self.0.path().join("queue.db"));
        let mut conn = sqlx::SqliteConnection::connect_with(&options)
            .await
            .unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .unwrap();
    }
}

/// A fresh schema, dropped afterwards, in the database at `PITCREW_TEST_POSTGRES_URL`.
pub struct PgFixture {
    base: String,
    /// Also the `application_name` of the store's connections, so a test can find them.
    pub schema: String,
}

impl Fixture for PgFixture {
    async fn new() -> Option<Self> {
        let Ok(base) = std::env::var("PITCREW_TEST_POSTGRES_URL") else {
            // Straight to stderr: the test harness swallows `eprintln!` of a passing test,
            // and a skip must not look like a pass.
            let _ = writeln!(
                std::io::stderr(),
                "skipped: PITCREW_TEST_POSTGRES_URL is not set, so a PostgreSQL test did \
                 not run (set it to e.g. postgres://postgres@127.0.0.1:5432/test)"
            );
            return None;
        };
        let schema = format!("pitcrew_t_{}", uuid::Uuid::now_v7().simple());
        let mut conn = PgConnection::connect(&base).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&mut conn)
            .await
            .unwrap();
        Some(PgFixture { base, schema })
    }

    fn url(&self) -> String {
        let separator = if self.base.contains('?') { '&' } else { '?' };
        // The application name lets a test find the store's connections.
        format!(
            "{}{separator}options[search_path]={}&application_name={}",
            self.base, self.schema, self.schema
        )
    }

    async fn execute(&self, sql: &str) {
        let mut conn = PgConnection::connect(&self.url()).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
            .execute(&mut conn)
            .await
            .unwrap();
    }
}

impl Drop for PgFixture {
    #[allow(clippy::print_stderr)]
    fn drop(&mut self) {
        let (base, schema) = (self.base.clone(), self.schema.clone());
        // On a thread and runtime of its own: this may run while the test's runtime is
        // unwinding from a failure, where it cannot be blocked on.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let mut conn = PgConnection::connect(&base).await?;
                // A connection the test left in a transaction would block the drop forever.
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "SET lock_timeout = '10s'; DROP SCHEMA {schema} CASCADE"
                )))
                .execute(&mut conn)
                .await
                .map(drop)
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test schema {}: {dropped:?}", self.schema);
        }
    }
}
