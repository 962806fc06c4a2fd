//! A schema of its own on the test PostgreSQL server, for tests of the PostgreSQL backend.

use std::io::Write;

/// The test PostgreSQL server's URL (`PITCREW_TEST_POSTGRES_URL`), or `None` after saying on
/// stderr that `what` was skipped: a test without the server never passes silently.
pub fn postgres_or_skip(what: &str) -> Option<String> {
    let url = std::env::var("PITCREW_TEST_POSTGRES_URL").ok();
    if url.is_none() {
        // Straight to stderr: the test harness would swallow eprintln! of a passing test.
        let _ = std::io::stderr().write_all(
            format!("skipped: PITCREW_TEST_POSTGRES_URL is not set, so {what} did not run\n")
                .as_bytes(),
        );
    }
    url
}

/// A fresh schema on the test server, dropped with the value (or by [`PgSchema::drop_now`]).
/// Usable from plain and from `#[tokio::test]` tests alike: its SQL runs on a thread and
/// runtime of its own.
#[derive(Debug)]
pub struct PgSchema {
    base_url: String,
    name: String,
    dropped: bool,
}

impl PgSchema {
    /// Creates a schema named `pitcrew_<purpose>_<unique>` on the server at `base_url`.
    pub fn create(base_url: &str, purpose: &str) -> PgSchema {
        let name = format!("pitcrew_{purpose}_{:032x}", fastrand::u128(..));
        run_sql(base_url, format!("CREATE SCHEMA {name}"), true);
        PgSchema {
            base_url: base_url.to_string(),
            name,
            dropped: false,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The store URL of the schema: the server's URL with the schema as its search path.
    pub fn store_url(&self) -> String {
        Self::url_with(&self.base_url, &self.name)
    }

    /// `base_url` (any URL of the same server, e.g. one with a password) with the search path
    /// of the schema `name`.
    pub fn url_with(base_url: &str, name: &str) -> String {
        let separator = if base_url.contains('?') { '&' } else { '?' };
        format!("{base_url}{separator}options[search_path]={name}")
    }

    /// Drops the schema now, as if the database went away under whatever uses it.
    pub fn drop_now(&mut self) {
        if !self.dropped {
            self.dropped = true;
            run_sql(
                &self.base_url,
                format!("DROP SCHEMA {} CASCADE", self.name),
                false,
            );
        }
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        self.drop_now();
    }
}

/// Runs `sql` on the server at `url` on a thread and runtime of its own (the caller may be
/// inside a runtime, or unwinding); panics on failure only when `must` is set.
fn run_sql(url: &str, sql: String, must: bool) {
    let url = url.to_string();
    let done = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            let pool = sqlx::PgPool::connect(&url).await?;
            sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await?;
            pool.close().await;
            Ok::<(), sqlx::Error>(())
        })
    })
    .join()
    .expect("the SQL thread does not panic");
    if must && let Err(e) = done {
        panic!("the test PostgreSQL server: {e}");
    }
}
