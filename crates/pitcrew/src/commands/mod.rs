//! One module per group of commands; `dispatch` routes the parsed command line.

mod demo;
mod init;
mod inspect;
mod manage;
mod metrics;
mod models;
mod plan;
mod prompts;
mod report;
mod results;
mod run;
mod serve;
mod sim;
mod submit;
mod validate;
mod webhooks;

use std::process::ExitCode;

use crate::cli::{Cli, Command, PlanAction, ReportFormat};
use crate::context::Context;

/// What to say when there are no tasks at all.
pub const EMPTY_QUEUE_HINT: &str = "the queue is empty: add work with \
    `pitcrew submit --kind unit_test --target PATH` (or `--file tasks.jsonl`), or queue a task \
    per untested module with `pitcrew plan unit-tests DIR`";

pub async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::Init { force } = cli.command {
        return init::init(&cli, force).await;
    }
    // The simulator needs no repository or pitcrew.toml; the demo makes its own.
    if let Command::Sim(args) = &cli.command {
        return sim::sim(&cli, args).await;
    }
    if let Command::Demo(args) = &cli.command {
        return demo::demo(args).await;
    }
    let ctx = Context::load(&cli).await?;
    match cli.command {
        Command::Init { .. } | Command::Sim(_) | Command::Demo(_) => unreachable!("handled above"),
        Command::Submit(args) => submit::submit(&ctx, args).await,
        Command::Status { id, format } => inspect::status(&ctx, &id, format.json).await,
        Command::List {
            status,
            kind,
            limit,
            format,
        } => inspect::list(&ctx, status, kind, limit, format.json).await,
        Command::Queue { format } => inspect::queue(&ctx, format.json).await,
        Command::Show { id, diff, format } => inspect::show(&ctx, &id, diff, format.json).await,
        Command::Cancel { id, format } => manage::cancel(&ctx, &id, format.json).await,
        Command::Retry { id, format } => manage::retry(&ctx, &id, format.json).await,
        Command::Run(args) => run::run(&ctx, args).await,
        Command::Worker(args) => run::worker(&ctx, args).await,
        Command::Serve(args) => serve::serve(&ctx, args).await,
        Command::Prompts { action, format } => prompts::prompts(&ctx, action, format.json),
        Command::Diff { id, format } => results::diff(&ctx, &id, format.json).await,
        Command::Migrate { format } => manage::migrate(&ctx, format.json).await,
        Command::Models { action, format } => models::models(&ctx, action, format.json).await,
        Command::SelectModel {
            kind,
            complexity,
            min_quality,
            free_only,
            model,
            format,
        } => {
            models::select_model(
                &ctx,
                kind,
                complexity,
                min_quality,
                free_only,
                model,
                format.json,
            )
            .await
        }
        Command::Validate {
            paths,
            targets,
            kind,
            format,
        } => validate::validate(&ctx, &paths, &targets, kind, format.json).await,
        Command::Metrics(args) => metrics::metrics(&ctx, args).await,
        Command::Webhooks { limit, format } => webhooks::list(&ctx, limit, format.json).await,
        Command::Report { run, format, json } => {
            let format = if json { ReportFormat::Json } else { format };
            report::report(&ctx, run.as_deref(), format).await
        }
        Command::Plan {
            action:
                PlanAction::UnitTests {
                    path,
                    coverage,
                    below,
                    priority,
                    dry_run,
                    format,
                },
        } => {
            plan::unit_tests(
                &ctx,
                &path,
                coverage.as_deref(),
                below,
                priority,
                dry_run,
                format.json,
            )
            .await
        }
        Command::Apply { ids, all, format } => results::apply(&ctx, &ids, all, format.json).await,
    }
}
