//! Webhooks from the command line: the dispatcher every process that works the queue runs
//! beside its workers (`run`, `worker`, `serve`), and `pitcrew webhooks`, the recent
//! deliveries.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use pitcrew_core::WebhookEvent;
use pitcrew_engine::Stop;
use pitcrew_store::{DeliveryState, Store, WebhookDelivery};
use pitcrew_webhooks::{Dispatched, Dispatcher, Endpoint, Mode};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::context::Context;
use crate::output::{self, usage};

/// When a process stops, how long its dispatcher keeps delivering what falls due (retries
/// included) before it leaves the rest to the next process: long enough for a few quick
/// retries, short enough not to hold up the end of `pitcrew run` in CI.
pub(super) const DRAIN: Duration = Duration::from_secs(30);

/// A dispatcher running beside the workers of this process.
pub(super) struct Webhooks {
    store: Arc<dyn Store>,
    dispatcher: Arc<Dispatcher>,
    mode: watch::Sender<Mode>,
    running: JoinHandle<Dispatched>,
}

/// Starts delivering webhooks from `store` when `[[webhooks]]` lists any; `None` when none.
/// A secret that is missing (or too short) is a usage error, found before anything is
/// claimed.
pub(super) fn start(
    ctx: &Context,
    store: &Arc<dyn Store>,
    owner: &str,
) -> anyhow::Result<Option<Webhooks>> {
    let endpoints = Endpoint::from_config(&ctx.config)?;
    if endpoints.is_empty() {
        return Ok(None);
    }
    let dispatcher = Dispatcher::new(Arc::clone(store), endpoints, format!("{owner}/webhooks"))
        .map_err(|e| usage(e.to_string()))?;
    let dispatcher = Arc::new(dispatcher);
    let (mode, watching) = watch::channel(Mode::Deliver);
    let running = tokio::spawn(Arc::clone(&dispatcher).run(watching));
    Ok(Some(Webhooks {
        store: Arc::clone(store),
        dispatcher,
        mode,
        running,
    }))
}

impl Webhooks {
    /// Enqueues `event` for the endpoints that want it; a failure is a warning (the run is
    /// over either way).
    pub(super) async fn announce(&self, event: &WebhookEvent) {
        if let Err(e) = self.store.enqueue_webhook_event(event).await {
            output::message(&format!(
                "warning: the {} webhook was not enqueued: {e}",
                event.event_type
            ));
        }
    }

    /// Stops the dispatcher once what falls due within [`DRAIN`] is delivered — at once when
    /// a signal comes meanwhile — and says what is left for the next process.
    pub(super) async fn finish(self, mut stop: watch::Receiver<Stop>) {
        let until = tokio::time::Instant::now() + DRAIN;
        let _ = self.mode.send(Mode::Drain { until });
        stop.mark_unchanged();
        let mut running = self.running;
        let mut signalled = false;
        let finished = loop {
            tokio::select! {
                finished = &mut running => break finished,
                changed = stop.changed(), if !signalled => {
                    // Ctrl-C (or SIGTERM) while deliveries drain: leave them for the next
                    // process.
                    signalled = true;
                    if changed.is_ok() {
                        let _ = self.mode.send(Mode::Stop);
                    }
                }
            }
        };
        if let Err(e) = finished {
            output::message(&format!("warning: the webhook dispatcher stopped: {e}"));
        }
        match self.dispatcher.waiting().await {
            Ok(0) => {}
            Ok(n) => output::message(&format!(
                "{n} webhook {} still {} to be sent: the next `pitcrew run`, `worker` or `serve` \
                 sends {} (`pitcrew webhooks` lists them)",
                if n == 1 { "delivery" } else { "deliveries" },
                if n == 1 { "waits" } else { "wait" },
                if n == 1 { "it" } else { "them" },
            )),
            Err(e) => output::message(&format!(
                "warning: cannot count the webhook deliveries left: {e}"
            )),
        }
    }
}

/// `pitcrew webhooks`: the most recent deliveries, newest first.
pub async fn list(ctx: &Context, limit: u32, json: bool) -> anyhow::Result<ExitCode> {
    let store = ctx.store().await?;
    let deliveries = store.webhook_deliveries(limit).await?;
    if json {
        output::json(&deliveries);
        return Ok(ExitCode::SUCCESS);
    }
    if deliveries.is_empty() {
        output::message(if ctx.config.config.webhooks.is_empty() {
            "no webhook deliveries: add a [[webhooks]] entry to pitcrew.toml \
             (see docs/integrations.md)"
        } else {
            "no webhook deliveries yet: one is made when a task or a run ends"
        });
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = output::table(&[
        "#", "event", "task", "url", "state", "attempts", "last", "when",
    ]);
    for delivery in &deliveries {
        table.add_row(vec![
            delivery.seq.to_string(),
            delivery.event_type.to_string(),
            task_handle(&*store, delivery).await,
            delivery.url.clone(),
            delivery.state.to_string(),
            delivery.attempts.to_string(),
            last_answer(delivery),
            when(delivery),
        ]);
    }
    // Names and numbers stay whole; URLs and errors wrap.
    output::keep_whole(&mut table, &[0, 1, 2, 4, 5]);
    output::print_table(&table);
    Ok(ExitCode::SUCCESS)
}

/// The handle of the task a delivery is about, or `—`.
async fn task_handle(store: &dyn Store, delivery: &WebhookDelivery) -> String {
    match delivery.task_id {
        Some(id) => match store.find(&id.to_string()).await {
            Ok(task) => output::handle(task.seq),
            Err(_) => id.to_string(),
        },
        None => "—".into(),
    }
}

/// What the endpoint last answered, or why nothing came.
fn last_answer(delivery: &WebhookDelivery) -> String {
    match (&delivery.last_error, delivery.last_status_code) {
        (Some(error), _) => output::truncate(error, 60),
        (None, Some(code)) => format!("HTTP {code}"),
        (None, None) => "—".into(),
    }
}

/// When it was delivered or given up, or when its next attempt is due.
fn when(delivery: &WebhookDelivery) -> String {
    let at = |time: DateTime<Utc>| time.format("%Y-%m-%d %H:%M:%S").to_string();
    match (delivery.state, delivery.finished_at) {
        (DeliveryState::Delivered | DeliveryState::Failed, Some(done)) => at(done),
        _ => format!("next {}", at(delivery.next_attempt_at)),
    }
}
