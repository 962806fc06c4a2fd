//! `pitcrew metrics`: figures from the recorded attempts, as tables, JSON or Prometheus text
//! (computed and rendered by pitcrew-metrics, which anything else showing them uses too).

use std::process::ExitCode;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use pitcrew_metrics::{Figures, Metrics, Selection, WebhookFigures, Window, render_prometheus};
use pitcrew_store::DeliveryState;

use crate::cli::MetricsArgs;
use crate::context::Context;
use crate::output;

/// How a figure without data is shown.
const NO_DATA: &str = "—";

pub async fn metrics(ctx: &Context, args: MetricsArgs) -> anyhow::Result<ExitCode> {
    let now = Utc::now();
    let selection = Selection {
        since: args.since.map(|since| since.start(now)),
        model: args.model,
        kind: args.kind,
    };
    let store = ctx.store().await?;
    let metrics = pitcrew_metrics::gather(&*store, &selection, now).await?;
    if args.prometheus {
        output::line(render_prometheus(&metrics).trim_end());
    } else if args.format.json {
        output::json(&metrics);
    } else {
        print_tables(&metrics);
    }
    Ok(ExitCode::SUCCESS)
}

fn or_no_data<T>(value: Option<T>, show: impl FnOnce(T) -> String) -> String {
    value.map_or_else(|| NO_DATA.to_string(), show)
}

fn time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn window_text(window: &Window) -> String {
    match (window.since, window.until) {
        (Some(since), Some(until)) => {
            let length = or_no_data(window.hours(), |hours| match hours * 3600.0 {
                seconds if seconds < 120.0 => format!("{seconds:.0} s"),
                seconds if seconds < 7200.0 => format!("{:.0} min", seconds / 60.0),
                _ => format!("{hours:.1} h"),
            });
            format!("{} to {} ({length})", time(since), time(until))
        }
        (Some(since), None) => format!("since {}", time(since)),
        _ => NO_DATA.to_string(),
    }
}

fn duration(ms: Option<u64>) -> String {
    or_no_data(ms, |ms| {
        if ms < 1000 {
            format!("{ms} ms")
        } else {
            format!("{:.2} s", ms as f64 / 1000.0)
        }
    })
}

/// A row of figures, after the group's name.
fn figure_cells(f: &Figures) -> Vec<String> {
    vec![
        f.attempts.to_string(),
        or_no_data(f.success_rate, |r| format!("{:.0}%", r * 100.0)),
        f.calls.to_string(),
        if f.latency_p50_ms.is_none() && f.latency_p95_ms.is_none() {
            NO_DATA.to_string()
        } else {
            format!(
                "{} / {}",
                duration(f.latency_p50_ms),
                duration(f.latency_p95_ms)
            )
        },
        duration(f.time_to_first_token_p50_ms),
        format!("{} / {}", f.tokens_in, f.tokens_out),
        or_no_data(f.cost_usd, |c| format!("${c:.4}")),
        or_no_data(f.mean_quality, |q| format!("{q:.2}")),
        f.rate_limited.to_string(),
        f.content_failures.to_string(),
    ]
}

fn print_figures<'a>(group: &str, rows: impl IntoIterator<Item = (String, &'a Figures)>) {
    let rows: Vec<(String, &Figures)> = rows.into_iter().collect();
    if rows.is_empty() {
        return;
    }
    let header = [
        group,
        "attempts",
        "success",
        "calls",
        "latency p50/p95",
        "TTFT p50",
        "tokens in/out",
        "cost",
        "quality",
        "rate-limited",
        "unusable",
    ];
    let mut table = output::table(&header);
    for (name, figures) in rows {
        let mut row = vec![name];
        row.extend(figure_cells(figures));
        table.add_row(row);
    }
    // Every cell is a name or a short figure: a table wider than the terminal reads better
    // than ids and numbers cut across lines.
    let every_column: Vec<usize> = (0..header.len()).collect();
    output::keep_whole(&mut table, &every_column);
    output::print_table(&table);
}

fn print_tables(metrics: &Metrics) {
    let totals = &metrics.totals;
    let mut lines = vec![("window", window_text(&metrics.window))];
    if let Some(model) = &metrics.model {
        lines.push(("model", model.clone()));
    }
    if let Some(kind) = metrics.kind {
        lines.push(("kind", kind.to_string()));
    }
    let tasks: Vec<String> = (totals.tasks.iter())
        .map(|(status, count)| format!("{count} {status}"))
        .collect();
    lines.extend([
        ("tasks", tasks.join(", ")),
        (
            "throughput",
            or_no_data(totals.throughput_per_hour, |t| {
                format!("{t:.2} completed attempts per hour")
            }),
        ),
        (
            "cost",
            or_no_data(totals.figures.cost_usd, |c| format!("${c:.4}")),
        ),
        (
            "results per USD",
            or_no_data(totals.accepted_results_per_usd, |r| {
                format!("{r:.1} accepted results per USD")
            }),
        ),
    ]);
    let webhooks = &metrics.webhooks;
    if !webhooks.endpoints.is_empty() {
        lines.push(("webhooks", deliveries_text(&webhooks.deliveries)));
        lines.push((
            "delivered",
            or_no_data(webhooks.delivered_ratio, |r| {
                format!("{:.0}% of the deliveries decided", r * 100.0)
            }),
        ));
    }
    let width = lines.iter().map(|(key, _)| key.len()).max().unwrap_or(0);
    for (key, value) in &lines {
        output::line(&format!("{key:<width$}  {value}"));
    }
    print_webhook_endpoints(webhooks);
    if totals.figures.attempts == 0 && totals.figures.calls == 0 {
        output::message(
            "no recorded attempt matches: figures appear once tasks have run (`pitcrew run`)",
        );
        return;
    }
    output::line("");
    print_figures("totals", [("all".to_string(), &totals.figures)]);
    print_figures(
        "model",
        (metrics.models.iter()).map(|m| (m.model.clone(), &m.figures)),
    );
    print_figures(
        "kind",
        (metrics.kinds.iter()).map(|k| (k.kind.to_string(), &k.figures)),
    );
    print_figures(
        "run",
        (metrics.runs.iter()).map(|r| (r.run.clone(), &r.figures)),
    );
}

/// `3 delivered, 1 retrying, 0 pending, 2 failed`.
fn deliveries_text(deliveries: &BTreeMap<DeliveryState, u64>) -> String {
    [
        DeliveryState::Delivered,
        DeliveryState::Retrying,
        DeliveryState::Pending,
        DeliveryState::Failed,
    ]
    .iter()
    .map(|state| format!("{} {state}", deliveries.get(state).copied().unwrap_or(0)))
    .collect::<Vec<_>>()
    .join(", ")
}

/// Each endpoint's deliveries by state, when there are any.
fn print_webhook_endpoints(webhooks: &WebhookFigures) {
    if webhooks.endpoints.is_empty() {
        return;
    }
    output::line("");
    let header = ["webhook", "delivered", "retrying", "pending", "failed"];
    let mut table = output::table(&header);
    for endpoint in &webhooks.endpoints {
        let count = |state| endpoint.deliveries.get(&state).copied().unwrap_or(0);
        table.add_row(vec![
            endpoint.url.clone(),
            count(DeliveryState::Delivered).to_string(),
            count(DeliveryState::Retrying).to_string(),
            count(DeliveryState::Pending).to_string(),
            count(DeliveryState::Failed).to_string(),
        ]);
    }
    output::keep_whole(&mut table, &[1, 2, 3, 4]);
    output::print_table(&table);
}
