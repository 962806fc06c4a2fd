//! [`Metrics`] in the Prometheus text exposition format (version 0.0.4).
//!
//! Every figure is a gauge: it describes the window the figures were made for, which may
//! slide (`--since 24h`). Without a window the counts only grow, so `delta()` or `deriv()`
//! over them are rates. Times are in seconds and money in USD, as Prometheus names units; a
//! figure without data has no sample, since the format has no `null`.

use std::fmt::Write;

use chrono::{DateTime, Utc};

use crate::{Figures, Metrics};

/// A figure of [`Figures`] as a metric family of each group.
struct FigureMetric {
    /// The name after the group's prefix.
    name: &'static str,
    help: &'static str,
    value: fn(&Figures) -> Option<f64>,
}

fn seconds(ms: Option<u64>) -> Option<f64> {
    ms.map(|ms| ms as f64 / 1000.0)
}

const FIGURES: &[FigureMetric] = &[
    FigureMetric {
        name: "attempts",
        help: "Attempts, running ones included",
        value: |f| Some(f.attempts as f64),
    },
    FigureMetric {
        name: "completed_attempts",
        help: "Attempts that ended with an accepted result",
        value: |f| Some(f.completed as f64),
    },
    FigureMetric {
        name: "success_ratio",
        help: "Completed attempts over decided ones (completed, failed or possible bug)",
        value: |f| f.success_rate,
    },
    FigureMetric {
        name: "calls",
        help: "Calls made to models, failed ones included",
        value: |f| Some(f.calls as f64),
    },
    FigureMetric {
        name: "latency_p50_seconds",
        help: "Median latency of the calls that brought a usable reply",
        value: |f| seconds(f.latency_p50_ms),
    },
    FigureMetric {
        name: "latency_p95_seconds",
        help: "95th percentile latency of the calls that brought a usable reply",
        value: |f| seconds(f.latency_p95_ms),
    },
    FigureMetric {
        name: "time_to_first_token_p50_seconds",
        help: "Median time to the first token of the calls that brought a usable reply",
        value: |f| seconds(f.time_to_first_token_p50_ms),
    },
    FigureMetric {
        name: "input_tokens",
        help: "Prompt tokens of the calls",
        value: |f| Some(f.tokens_in as f64),
    },
    FigureMetric {
        name: "output_tokens",
        help: "Completion tokens of the calls",
        value: |f| Some(f.tokens_out as f64),
    },
    FigureMetric {
        name: "cost_usd",
        help: "What the calls cost, in USD",
        value: |f| f.cost_usd,
    },
    FigureMetric {
        name: "mean_quality",
        help: "Mean validated quality (0-1) of the attempts whose output was validated",
        value: |f| f.mean_quality,
    },
    FigureMetric {
        name: "rate_limited_calls",
        help: "Calls refused for a rate limit or a used-up quota",
        value: |f| Some(f.rate_limited as f64),
    },
    FigureMetric {
        name: "content_failures",
        help: "Unusable replies, refused by the router or the agent's checks",
        value: |f| Some(f.content_failures as f64),
    },
];

/// Families being written, each with its HELP and TYPE lines before its samples.
#[derive(Default)]
struct Exposition(String);

impl Exposition {
    /// A gauge family `name` with its samples: label pairs and a value, or `None` for a
    /// sample that has no data (left out). A family without any sample is left out.
    fn gauge<'a>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (Option<(&'a str, &'a str)>, Option<f64>)>,
    ) {
        let samples = (samples.into_iter()).map(|(label, value)| (Vec::from_iter(label), value));
        self.gauge_labelled(name, help, samples);
    }

    /// [`Exposition::gauge`] with any number of labels per sample.
    fn gauge_labelled<'a>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (Vec<(&'a str, &'a str)>, Option<f64>)>,
    ) {
        let mut lines = String::new();
        for (labels, value) in samples {
            let Some(value) = value else { continue };
            let labels = if labels.is_empty() {
                String::new()
            } else {
                let pairs: Vec<String> = (labels.iter())
                    .map(|(name, value)| format!("{name}=\"{}\"", escape_label_value(value)))
                    .collect();
                format!("{{{}}}", pairs.join(","))
            };
            let _ = writeln!(lines, "{name}{labels} {value}");
        }
        if lines.is_empty() {
            return;
        }
        let _ = writeln!(self.0, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.0, "# TYPE {name} gauge");
        self.0.push_str(&lines);
    }

    fn timestamp(&mut self, name: &str, help: &str, at: Option<DateTime<Utc>>) {
        let value = at.map(|at| at.timestamp_millis() as f64 / 1000.0);
        self.gauge(name, help, [(None, value)]);
    }
}

/// A label value as the format writes it: backslash, double quote and line feed escaped.
pub fn escape_label_value(value: &str) -> String {
    escape_help(value).replace('"', "\\\"")
}

/// HELP text as the format writes it: backslash and line feed escaped.
fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

/// `metrics` in the Prometheus text format: families named `pitcrew_…` for the totals,
/// `pitcrew_model_…{model}`, `pitcrew_kind_…{kind}` and `pitcrew_run_…{run}` for the groups,
/// and `pitcrew_webhook_deliveries{state}`, `pitcrew_webhook_delivered_ratio` and
/// `pitcrew_webhook_endpoint_deliveries{url,state}` for the webhooks, with the same figures
/// as [`Metrics`]' JSON.
pub fn render_prometheus(metrics: &Metrics) -> String {
    let mut out = Exposition::default();
    let totals = &metrics.totals;
    out.gauge(
        "pitcrew_tasks",
        "Tasks the counted attempts were made at, by their status now",
        totals
            .tasks
            .iter()
            .map(|(status, count)| (Some(("status", status.as_str())), Some(*count as f64))),
    );
    out.gauge(
        "pitcrew_throughput_per_hour",
        "Completed attempts per hour of the window",
        [(None, totals.throughput_per_hour)],
    );
    out.gauge(
        "pitcrew_accepted_results_per_usd",
        "Completed attempts per USD the calls cost",
        [(None, totals.accepted_results_per_usd)],
    );
    out.timestamp(
        "pitcrew_window_start_timestamp_seconds",
        "Start of the window the figures cover, in seconds since the Unix epoch",
        metrics.window.since,
    );
    out.timestamp(
        "pitcrew_window_end_timestamp_seconds",
        "End of the window the figures cover, in seconds since the Unix epoch",
        metrics.window.until,
    );

    let models: Vec<(&str, &Figures)> = (metrics.models.iter())
        .map(|m| (m.model.as_str(), &m.figures))
        .collect();
    let kinds: Vec<(&str, &Figures)> = (metrics.kinds.iter())
        .map(|k| (k.kind.as_str(), &k.figures))
        .collect();
    let runs: Vec<(&str, &Figures)> = (metrics.runs.iter())
        .map(|r| (r.run.as_str(), &r.figures))
        .collect();
    for figure in FIGURES {
        out.gauge(
            &format!("pitcrew_{}", figure.name),
            &format!("{}, in total", figure.help),
            [(None, (figure.value)(&totals.figures))],
        );
    }
    for (prefix, label, scope, groups) in [
        (
            "pitcrew_model_",
            "model",
            "per model: the attempts whose last reply it gave, the calls made to it",
            &models,
        ),
        ("pitcrew_kind_", "kind", "per task kind", &kinds),
        ("pitcrew_run_", "run", "per run", &runs),
    ] {
        for figure in FIGURES {
            out.gauge(
                &format!("{prefix}{}", figure.name),
                &format!("{}, {scope}", figure.help),
                groups
                    .iter()
                    .map(|(name, figures)| (Some((label, *name)), (figure.value)(figures))),
            );
        }
    }
    let webhooks = &metrics.webhooks;
    out.gauge(
        "pitcrew_webhook_deliveries",
        "Webhook deliveries by state (pending, retrying, delivered, failed)",
        (webhooks.deliveries.iter())
            .map(|(state, count)| (Some(("state", state.as_str())), Some(*count as f64))),
    );
    out.gauge(
        "pitcrew_webhook_delivered_ratio",
        "Webhook deliveries delivered over those delivered or given up",
        [(None, webhooks.delivered_ratio)],
    );
    out.gauge_labelled(
        "pitcrew_webhook_endpoint_deliveries",
        "Webhook deliveries per endpoint URL, by state",
        webhooks.endpoints.iter().flat_map(|endpoint| {
            (endpoint.deliveries.iter()).map(|(state, count)| {
                (
                    vec![("url", endpoint.url.as_str()), ("state", state.as_str())],
                    Some(*count as f64),
                )
            })
        }),
    );
    out.0
}
