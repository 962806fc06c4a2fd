//! Migrations, shared by the backends: apply what is pending, refuse a schema written by a
//! newer pitcrew, and say what was done.

use std::collections::HashMap;

use serde::Serialize;
use sqlx::migrate::{Migrate, MigrateError, Migrator};

use crate::StoreError;

/// sqlx's bookkeeping table, in the store's schema.
const TABLE: &str = "_sqlx_migrations";

/// What [`crate::migrate`] found and did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MigrationStatus {
    /// The versions this call applied, oldest first; empty when the schema was up to date.
    pub applied_now: Vec<i64>,
    /// The schema version in place now.
    pub current: i64,
    /// The newest version this pitcrew knows.
    pub known: i64,
}

/// Applies `migrator`'s pending migrations over `conn`; the caller holds whatever lock makes
/// this exclusive. `url` (without a password) names the store in errors.
///
/// The checks of sqlx's `Migrator::run`, done here so that a newer schema is reported with its
/// newest version (sqlx names the first unknown one) and `applied_now` is exact; and `run`'s
/// higher-ranked bounds would keep every caller's future from being `Send`.
pub(crate) async fn run<C: Migrate>(
    migrator: &Migrator,
    conn: &mut C,
    url: &str,
) -> Result<MigrationStatus, StoreError> {
    conn.ensure_migrations_table(TABLE).await?;
    if let Some(version) = conn.dirty_version(TABLE).await? {
        return Err(MigrateError::Dirty(version).into());
    }
    let applied: HashMap<i64, _> = conn
        .list_applied_migrations(TABLE)
        .await?
        .into_iter()
        .map(|m| (m.version, m.checksum))
        .collect();
    let known = migrator.iter().map(|m| m.version).max().unwrap_or(0);
    if let Some(found) = applied
        .keys()
        .copied()
        .filter(|v| !migrator.version_exists(*v))
        .max()
    {
        return Err(StoreError::SchemaTooNew {
            url: url.to_string(),
            found,
            known,
        });
    }
    let mut applied_now = Vec::new();
    for migration in migrator
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
    {
        match applied.get(&migration.version) {
            Some(checksum) if *checksum != migration.checksum => {
                return Err(MigrateError::VersionMismatch(migration.version).into());
            }
            Some(_) => {}
            None => {
                conn.apply(TABLE, migration).await?;
                applied_now.push(migration.version);
            }
        }
    }
    let current = applied
        .keys()
        .chain(&applied_now)
        .copied()
        .max()
        .unwrap_or(0);
    Ok(MigrationStatus {
        applied_now,
        current,
        known,
    })
}
