use std::process::ExitCode;

use crate::context::Context;
use crate::output;

pub async fn cancel(ctx: &Context, id: &str, json: bool) -> anyhow::Result<ExitCode> {
    let store = ctx.store().await?;
    let task = store.find(id).await?;
    let task = store.cancel(task.id).await?;
    if json {
        output::json(&task);
    } else {
        output::line(&format!("cancelled {}", task.id));
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn retry(ctx: &Context, id: &str, json: bool) -> anyhow::Result<ExitCode> {
    let store = ctx.store().await?;
    let task = store.find(id).await?;
    let task = store.requeue(task.id).await?;
    if json {
        output::json(&task);
    } else {
        output::line(&format!(
            "queued {} again (attempt {} of {})",
            task.id,
            task.attempts + 1,
            task.max_attempts
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
