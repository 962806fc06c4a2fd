//! Changing tasks and the store: `cancel`, `retry`, `migrate`.

use std::process::ExitCode;

use anyhow::Context as _;

use crate::context::Context;
use crate::output;

pub async fn cancel(ctx: &Context, id: &str, json: bool) -> anyhow::Result<ExitCode> {
    let store = ctx.store().await?;
    let task = store.find(id).await?;
    let handle = output::handle(task.seq);
    let task = store
        .cancel(task.id)
        .await
        .with_context(|| format!("cannot cancel {handle}"))?;
    if json {
        output::json(&task);
    } else {
        output::line(&format!("cancelled {handle}  ({})", task.id));
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn retry(ctx: &Context, id: &str, json: bool) -> anyhow::Result<ExitCode> {
    let store = ctx.store().await?;
    let task = store.find(id).await?;
    let handle = output::handle(task.seq);
    let task = store
        .requeue(task.id)
        .await
        .with_context(|| format!("cannot retry {handle}"))?;
    if json {
        output::json(&task);
    } else {
        output::line(&format!(
            "queued {handle} again (attempt {} of {})  ({})",
            task.attempts + 1,
            task.max_attempts,
            task.id
        ));
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn migrate(ctx: &Context, json: bool) -> anyhow::Result<ExitCode> {
    if ctx.store_url().starts_with("sqlite:") {
        ctx.repo.state_dir()?;
    }
    let status = pitcrew_store::migrate(ctx.store_url()).await?;
    if json {
        output::json(&status);
    } else if status.applied_now.is_empty() {
        output::line(&format!(
            "the store is up to date (schema version {})",
            status.current
        ));
    } else {
        output::line(&format!(
            "applied migration(s) {} — the store is at schema version {}",
            status
                .applied_now
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            status.current
        ));
    }
    Ok(ExitCode::SUCCESS)
}
