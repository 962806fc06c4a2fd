//! `pitcrew serve`: the HTTP API of `pitcrew-server` until stopped, with the engine working
//! the queue in this process when `--workers` asks for it (its events stream to clients).

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use pitcrew_engine::{Engine, RunSummary, Stop};
use pitcrew_server::{ApiSettings, BindError, Server};
use tokio::sync::{mpsc, watch};

use super::run::{EngineSetup, default_worker_name, engine_setup, handle_signals};
use super::webhooks;
use crate::cli::ServeArgs;
use crate::context::Context;
use crate::output::{self, usage};
use crate::signals;

pub async fn serve(ctx: &Context, args: ServeArgs) -> anyhow::Result<ExitCode> {
    let addr = args.bind.unwrap_or(ctx.config.config.server.bind);
    let has_token = ctx.config.config.server.token.secret().is_some();
    let listener = pitcrew_server::bind(addr, has_token)
        .await
        .map_err(|e| match e {
            BindError::NoToken { .. } => usage(e.to_string()),
            BindError::Io { .. } => e.into(),
        })?;
    let setup = match args.workers {
        0 => None,
        workers => Some(engine_setup(ctx, Some(workers), args.name, true, &args.engine).await?),
    };
    let store = match &setup {
        Some(setup) => Arc::clone(&setup.store),
        None => ctx.store().await?,
    };
    let owner =
        (setup.as_ref()).map_or_else(default_worker_name, |s| s.settings.worker_name.clone());
    // Tasks cancelled through the API, and those other processes end, have webhooks too.
    let webhooks = webhooks::start(ctx, &store, &owner)?;
    let server = Server::new(ApiSettings {
        store: Arc::clone(&store),
        config: ctx.config.clone(),
        repo: ctx.repo.clone(),
        repo_url: ctx.repo_url().await,
    });
    let (stop_tx, stop_rx) = watch::channel(Stop::Run);
    let engine = match setup {
        Some(EngineSetup {
            store,
            config,
            mut settings,
        }) => {
            // Clients may follow any task: every task's generation streams.
            settings.follow = Some(String::new());
            let engine = Arc::new(Engine::new(store, &config, settings)?);
            let (events_tx, events_rx) = mpsc::unbounded_channel();
            tokio::spawn(server.events().clone().forward(events_rx));
            handle_signals(stop_tx);
            Some(tokio::spawn(engine.run(events_tx, stop_rx.clone())))
        }
        None => {
            tokio::spawn(async move {
                signals::first().await;
                let _ = stop_tx.send(Stop::Finish);
                // A second one cuts short the webhooks' last deliveries.
                signals::first().await;
                let _ = stop_tx.send(Stop::Abort);
            });
            None
        }
    };
    let webhooks_stop = stop_rx.clone();
    let addr = listener
        .local_addr()
        .context("the listening address is unknown")?;
    output::line(&format!(
        "pitcrew serve: the API is at http://{addr}/api/v1 (OpenAPI document: \
         http://{addr}/api/v1/openapi.json); {}",
        match args.workers {
            0 => "no workers: tasks wait for `pitcrew worker` or `pitcrew run`".to_string(),
            1 => "1 worker".to_string(),
            n => format!("{n} workers"),
        }
    ));
    let mut stopping = stop_rx;
    server
        .serve(listener, async move {
            let _ = stopping.wait_for(|stop| *stop != Stop::Run).await;
        })
        .await
        .context("the API stopped serving")?;
    if let Some(engine) = engine {
        let summary: RunSummary = engine.await.context("the workers panicked")??;
        output::message(&format!(
            "workers stopped: {}",
            super::run::summary_line(&summary)
        ));
    }
    if let Some(webhooks) = webhooks {
        webhooks.finish(webhooks_stop).await;
    }
    Ok(ExitCode::SUCCESS)
}
