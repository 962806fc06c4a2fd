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
