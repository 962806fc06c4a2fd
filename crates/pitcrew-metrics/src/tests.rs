//! The computations over attempts shaped as the engine records them, and their Prometheus
//! text read back by a real parser of the format.

use std::collections::HashMap;

use chrono::{DateTime, TimeDelta, Utc};
use pitcrew_core::{Attempt, AttemptOutcome, ErrorKind, TaskId, TaskKind, TaskStatus, Usage};
use pitcrew_store::{DeliveryCount, DeliveryState, TaskAttempt};
use serde_json::{Value, json};

use super::*;

fn at(minutes: i64) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2025-03-10T12:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
        + TimeDelta::minutes(minutes)
}

/// A call as the router records it.
fn call(model_id: &str, error: Option<ErrorKind>, latency_ms: u64, ttft_ms: u64) -> Value {
    let answered = error.is_none();
    json!({
        "model": model_id.replace("vendor/", ""),
        "model_id": model_id,
        "error_kind": error,
        "error": error.map(|_| "it failed"),
        "usage": {"tokens_in": 100, "tokens_out": if answered { 40 } else { 0 }, "cost_usd": null},
        "cost_usd": if answered { 0.01 } else { 0.0 },
        "time_to_first_token_ms": answered.then_some(ttft_ms),
        "latency_ms": latency_ms,
    })
}

/// A round as the agent records it.
fn round(calls: &[Value], outcome: &str, rejected_as: Option<ErrorKind>) -> Value {
    json!({"number": 1, "model": null, "cache_hit": false, "calls": calls, "usage": {},
           "findings": [], "outcome": outcome, "rejected_as": rejected_as})
}

struct Made {
    kind: TaskKind,
    status: TaskStatus,
    outcome: AttemptOutcome,
    started: i64,
    finished: Option<i64>,
    model: Option<String>,
    run: Option<String>,
    quality: Option<f64>,
    rounds: Vec<Value>,
}

impl Made {
    fn new(kind: TaskKind, outcome: AttemptOutcome, started: i64) -> Made {
        Made {
            kind,
            status: match outcome {
                AttemptOutcome::Completed => TaskStatus::Completed,
                AttemptOutcome::Running => TaskStatus::Running,
                _ => TaskStatus::Failed,
            },
            outcome,
            started,
            finished: (outcome != AttemptOutcome::Running).then_some(started + 5),
            model: None,
            run: None,
            quality: None,
            rounds: Vec::new(),
        }
    }

    fn recorded(self) -> TaskAttempt {
        TaskAttempt {
            kind: self.kind,
            task_status: self.status,
            attempt: Attempt {
                task_id: TaskId::new(),
                number: 1,
                worker: "w".into(),
                outcome: self.outcome,
                started_at: at(self.started),
                finished_at: self.finished.map(at),
                model: self.model.clone(),
                usage: Usage::default(),
                latency_ms: None,
                findings: Vec::new(),
                error_kind: None,
                error: None,
                commit: None,
                patch: None,
                run_id: self.run,
                quality: self.quality,
                details: if self.rounds.is_empty() {
                    Value::Null
                } else {
                    json!({"model": self.model.map(|m| m.replace("vendor/", "")),
                           "iterations": self.rounds, "cache_hits": 0})
                },
            },
        }
    }
}

/// Four attempts over 60 minutes:
/// - a unit test in run r1, completed by vendor/b after vendor/a was rate-limited;
/// - a docs task in r1 whose only call, to vendor/b, came back as prose;
/// - a unit test in r2 whose reply from vendor/b wrote no file;
/// - a unit test still running, in no run yet, with no call so far.
fn fleet() -> Vec<TaskAttempt> {
    let mut rotated = Made::new(TaskKind::UnitTest, AttemptOutcome::Completed, 0);
    rotated.model = Some("vendor/b".into());
    rotated.run = Some("r1".into());
    rotated.quality = Some(0.8);
    rotated.rounds = vec![round(
        &[
            call("vendor/a", Some(ErrorKind::RateLimit), 50, 0),
            call("vendor/b", None, 900, 200),
        ],
        "accepted",
        None,
    )];
    let mut prose = Made::new(TaskKind::Docs, AttemptOutcome::Failed, 10);
    prose.run = Some("r1".into());
    prose.rounds = vec![round(
        &[call("vendor/b", Some(ErrorKind::ProseOnly), 700, 0)],
        "unusable_reply",
        None,
    )];
    let mut no_files = Made::new(TaskKind::UnitTest, AttemptOutcome::Failed, 30);
    no_files.model = Some("vendor/b".into());
    no_files.run = Some("r2".into());
    no_files.rounds = vec![round(
        &[call("vendor/b", None, 1100, 300)],
        "rejected",
        Some(ErrorKind::NoFiles),
    )];
    let running = Made::new(TaskKind::UnitTest, AttemptOutcome::Running, 55);
    vec![
        rotated.recorded(),
        prose.recorded(),
        no_files.recorded(),
        running.recorded(),
    ]
}

fn model<'a>(metrics: &'a Metrics, id: &str) -> &'a Figures {
    &metrics
        .models
        .iter()
        .find(|m| m.model == id)
        .unwrap_or_else(|| panic!("no model {id} in {:?}", metrics.models))
        .figures
}

#[test]
fn nothing_recorded_gives_counts_of_zero_and_no_other_figure() {
    let metrics = compute(&[], &Selection::default(), at(0)).unwrap();
    let json = serde_json::to_value(&metrics).unwrap();
    let totals = &json["totals"];
    for count in [
        "attempts",
        "completed",
        "calls",
        "tokens_in",
        "tokens_out",
        "rate_limited",
        "content_failures",
    ] {
        assert_eq!(totals[count], 0, "{count}");
    }
    for absent in [
        "success_rate",
        "latency_p50_ms",
        "latency_p95_ms",
        "time_to_first_token_p50_ms",
        "cost_usd",
        "mean_quality",
        "throughput_per_hour",
        "accepted_results_per_usd",
    ] {
        assert!(totals[absent].is_null(), "{absent}: {}", totals[absent]);
    }
    assert_eq!(
        totals["tasks"],
        json!({"queued": 0, "running": 0, "completed": 0, "failed": 0, "possible_bug": 0,
               "cancelled": 0})
    );
    assert_eq!(json["window"], json!({"since": null, "until": null}));
    for group in ["models", "kinds", "runs"] {
        assert_eq!(json[group], json!([]), "{group}");
    }
    assert_eq!(
        json["webhooks"],
        json!({"deliveries": {"pending": 0, "retrying": 0, "delivered": 0, "failed": 0},
               "delivered_ratio": null, "endpoints": []})
    );
    // Nothing to sample: counts of zero, and no family of a figure without data.
    let text = render_prometheus(&metrics);
    let samples = parse(&text);
    assert_eq!(
        samples.get(&("pitcrew_attempts".into(), vec![])),
        Some(&0.0)
    );
    assert_eq!(
        samples.get(&("pitcrew_webhook_deliveries".into(), vec!["failed".into()])),
        Some(&0.0)
    );
    for absent in [
        "pitcrew_webhook_delivered_ratio",
        "pitcrew_webhook_endpoint_",
        "success_ratio",
        "latency",
        "first_token",
        "cost",
        "quality",
        "throughput",
        "per_usd",
        "window",
        "pitcrew_model_",
        "pitcrew_kind_",
        "pitcrew_run_",
    ] {
        assert!(!text.contains(absent), "{absent}:\n{text}");
    }
}

#[test]
fn models_count_their_calls_and_the_attempts_whose_last_reply_they_gave() {
    let metrics = compute(&fleet(), &Selection::default(), at(60)).unwrap();

    // Rate-limited once, answered nothing: no attempt of its own, so no success rate.
    let a = model(&metrics, "vendor/a");
    assert_eq!((a.attempts, a.calls, a.rate_limited), (0, 1, 1));
    assert_eq!(a.success_rate, None);
    assert_eq!(
        (a.latency_p50_ms, a.time_to_first_token_p50_ms),
        (None, None)
    );
    assert_eq!(a.cost_usd, Some(0.0));

    let b = model(&metrics, "vendor/b");
    assert_eq!((b.attempts, b.completed, b.success_rate), (2, 1, Some(0.5)));
    assert_eq!(b.calls, 3);
    // Latency of the calls that brought a usable reply: 900 and 1100, not the prose one.
    assert_eq!(
        (b.latency_p50_ms, b.latency_p95_ms),
        (Some(900), Some(1100))
    );
    assert_eq!(b.time_to_first_token_p50_ms, Some(200));
    assert_eq!((b.tokens_in, b.tokens_out), (300, 80));
    assert_eq!(b.rate_limited, 0);
    // The prose the router refused, and the reply without files the agent refused.
    assert_eq!(b.content_failures, 2);
    assert_eq!(b.mean_quality, Some(0.8));
    assert!((b.cost_usd.unwrap() - 0.02).abs() < 1e-12);

    let kinds: Vec<(TaskKind, u64, u64)> = (metrics.kinds.iter())
        .map(|k| (k.kind, k.figures.attempts, k.figures.calls))
        .collect();
    assert_eq!(kinds, [(TaskKind::UnitTest, 3, 3), (TaskKind::Docs, 1, 1)]);
    let unit = &metrics.kinds[0].figures;
    // Decided: the completed and the failed one; the running one is not.
    assert_eq!(unit.success_rate, Some(0.5));

    let runs: Vec<(&str, DateTime<Utc>, u64)> = (metrics.runs.iter())
        .map(|r| (r.run.as_str(), r.started_at, r.figures.attempts))
        .collect();
    assert_eq!(runs, [("r1", at(0), 2), ("r2", at(30), 1)]);
    assert_eq!(metrics.runs[0].figures.content_failures, 1);

    let totals = &metrics.totals;
    assert_eq!(totals.figures.attempts, 4);
    assert_eq!(totals.figures.calls, 4);
    assert_eq!(totals.figures.rate_limited, 1);
    assert_eq!(totals.figures.content_failures, 2);
    assert_eq!(totals.tasks[&TaskStatus::Completed], 1);
    assert_eq!(totals.tasks[&TaskStatus::Failed], 2);
    assert_eq!(totals.tasks[&TaskStatus::Running], 1);
    // Something still runs: the window ends now, an hour after the first start.
    assert_eq!(
        metrics.window,
        Window {
            since: Some(at(0)),
            until: Some(at(60))
        }
    );
    assert_eq!(totals.throughput_per_hour, Some(1.0));
    assert!((totals.accepted_results_per_usd.unwrap() - 50.0).abs() < 1e-9);
}

#[test]
fn a_finished_window_ends_with_its_last_attempt_and_free_calls_give_no_results_per_dollar() {
    let mut free = Made::new(TaskKind::UnitTest, AttemptOutcome::Completed, 0);
    free.finished = Some(30);
    free.model = Some("vendor/free".into());
    let mut free_call = call("vendor/free", None, 400, 100);
    free_call["cost_usd"] = json!(0.0);
    free.rounds = vec![round(&[free_call], "accepted", None)];
    let metrics = compute(&[free.recorded()], &Selection::default(), at(600)).unwrap();
    assert_eq!(metrics.window.until, Some(at(30)));
    assert_eq!(metrics.totals.throughput_per_hour, Some(2.0));
    assert_eq!(metrics.totals.figures.cost_usd, Some(0.0));
    assert_eq!(metrics.totals.accepted_results_per_usd, None);
}

#[test]
fn a_model_filter_keeps_its_calls_and_the_attempts_it_answered() {
    for asked in ["vendor/a", "a"] {
        let selection = Selection {
            model: Some(asked.into()),
            ..Selection::default()
        };
        let metrics = compute(&fleet(), &selection, at(60)).unwrap();
        let ids: Vec<&str> = metrics.models.iter().map(|m| m.model.as_str()).collect();
        assert_eq!(ids, ["vendor/a"], "{asked}");
        let totals = &metrics.totals.figures;
        assert_eq!(
            (totals.attempts, totals.calls, totals.rate_limited),
            (0, 1, 1)
        );
        assert_eq!(totals.success_rate, None);
        assert_eq!(metrics.totals.throughput_per_hour, Some(0.0));
        assert_eq!(metrics.model.as_deref(), Some(asked));
    }
    let only_b = Selection {
        model: Some("vendor/b".into()),
        ..Selection::default()
    };
    let metrics = compute(&fleet(), &only_b, at(60)).unwrap();
    let totals = &metrics.totals.figures;
    assert_eq!(
        (totals.attempts, totals.calls, totals.rate_limited),
        (2, 3, 0)
    );
    assert_eq!(totals.content_failures, 2);
    assert_eq!(metrics.totals.tasks[&TaskStatus::Running], 0);

    let nobody = Selection {
        model: Some("vendor/none".into()),
        ..Selection::default()
    };
    let metrics = compute(&fleet(), &nobody, at(60)).unwrap();
    assert!(metrics.models.is_empty() && metrics.kinds.is_empty() && metrics.runs.is_empty());
    assert_eq!(metrics.totals.figures.attempts, 0);
    assert_eq!(metrics.window.since, None);
}

#[test]
fn kind_and_since_select_attempts() {
    let docs = Selection {
        kind: Some(TaskKind::Docs),
        ..Selection::default()
    };
    let metrics = compute(&fleet(), &docs, at(60)).unwrap();
    assert_eq!(metrics.totals.figures.attempts, 1);
    assert_eq!(metrics.totals.figures.content_failures, 1);
    assert_eq!(metrics.kinds.len(), 1);

    let recent = Selection {
        since: Some(at(20)),
        ..Selection::default()
    };
    let metrics = compute(&fleet(), &recent, at(60)).unwrap();
    assert_eq!(metrics.totals.figures.attempts, 2);
    assert_eq!(metrics.totals.figures.completed, 0);
    // A window with nothing completed in it: a throughput of zero is a measurement.
    assert_eq!(metrics.totals.throughput_per_hour, Some(0.0));
    assert_eq!(
        metrics.window,
        Window {
            since: Some(at(20)),
            until: Some(at(60))
        }
    );
    let runs: Vec<&str> = metrics.runs.iter().map(|r| r.run.as_str()).collect();
    assert_eq!(runs, ["r2"]);
}

#[test]
fn details_that_are_not_the_recorded_shape_are_an_error_naming_the_attempt() {
    let mut broken = Made::new(TaskKind::Fix, AttemptOutcome::Failed, 0).recorded();
    broken.attempt.details = json!({"iterations": [{"calls": [{"latency_ms": "slow"}]}]});
    let error = compute(&[broken.clone()], &Selection::default(), at(1)).unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains(&broken.attempt.task_id.to_string()),
        "{message}"
    );
    // Details without rounds (an attempt that failed before any call) are fine.
    broken.attempt.details = json!({"context": null});
    assert!(compute(&[broken], &Selection::default(), at(1)).is_ok());
}

/// Every sample of `text`, by family name and label values, as a real parser of the format
/// reads them (it refuses text that is not the format, and unescapes label values).
fn parse(text: &str) -> HashMap<(String, Vec<String>), f64> {
    use openmetrics_parser::{PrometheusType, PrometheusValue};
    let exposition = openmetrics_parser::prometheus::parse_prometheus(text)
        .unwrap_or_else(|e| panic!("not the Prometheus text format ({e}):\n{text}"));
    let mut samples = HashMap::new();
    for (name, family) in &exposition.families {
        assert_eq!(family.family_type, PrometheusType::Gauge, "{name}");
        assert!(!family.help.is_empty(), "{name} has no HELP");
        assert!(name.starts_with("pitcrew_"), "{name}");
        for sample in family.iter_samples() {
            let labels: Vec<String> = sample
                .get_labelset()
                .unwrap()
                .iter_values()
                .cloned()
                .collect();
            let PrometheusValue::Gauge(value) = &sample.value else {
                panic!("{name}: {:?}", sample.value);
            };
            samples.insert((name.clone(), labels), value.as_f64());
        }
    }
    samples
}

#[test]
fn the_prometheus_text_parses_and_says_what_the_json_says() {
    let metrics = compute(&fleet(), &Selection::default(), at(60)).unwrap();
    let text = render_prometheus(&metrics);
    let samples = parse(&text);
    let get = |name: &str, labels: &[&str]| {
        let key = (
            name.to_string(),
            labels.iter().map(|l| l.to_string()).collect::<Vec<_>>(),
        );
        samples.get(&key).copied()
    };
    let b = model(&metrics, "vendor/b");
    assert_eq!(get("pitcrew_model_attempts", &["vendor/b"]), Some(2.0));
    assert_eq!(
        get("pitcrew_model_success_ratio", &["vendor/b"]),
        b.success_rate
    );
    assert_eq!(
        get("pitcrew_model_latency_p95_seconds", &["vendor/b"]),
        Some(1.1)
    );
    assert_eq!(
        get(
            "pitcrew_model_time_to_first_token_p50_seconds",
            &["vendor/b"]
        ),
        Some(0.2)
    );
    assert_eq!(
        get("pitcrew_model_content_failures", &["vendor/b"]),
        Some(2.0)
    );
    assert_eq!(
        get("pitcrew_model_rate_limited_calls", &["vendor/a"]),
        Some(1.0)
    );
    // No data, no sample: vendor/a has no success rate and no latency.
    assert_eq!(get("pitcrew_model_success_ratio", &["vendor/a"]), None);
    assert_eq!(
        get("pitcrew_model_latency_p50_seconds", &["vendor/a"]),
        None
    );
    assert_eq!(get("pitcrew_kind_attempts", &["docs"]), Some(1.0));
    assert_eq!(get("pitcrew_run_calls", &["r1"]), Some(3.0));
    assert_eq!(get("pitcrew_tasks", &["failed"]), Some(2.0));
    assert_eq!(get("pitcrew_attempts", &[]), Some(4.0));
    assert_eq!(get("pitcrew_throughput_per_hour", &[]), Some(1.0));
    assert_eq!(
        get("pitcrew_window_start_timestamp_seconds", &[]),
        Some(at(0).timestamp() as f64)
    );
    // Every family has its HELP and TYPE lines, once, before its samples.
    let mut described = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            described.push(rest.split(' ').next().unwrap().to_string());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            assert_eq!(rest, format!("{} gauge", described.last().unwrap()));
        } else {
            let name = line.split(['{', ' ']).next().unwrap();
            assert_eq!(Some(&name.to_string()), described.last(), "{line}");
        }
    }
    let mut unique = described.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), described.len(), "a family twice");
}

#[test]
fn label_values_are_escaped_so_any_name_reads_back_as_it_was() {
    let awkward = [
        "we\"ird\\model\nid",
        "back\\slash",
        "quote\"",
        "new\nline",
        "ünï {c}=, ok",
    ];
    let recorded: Vec<TaskAttempt> = awkward
        .iter()
        .map(|id| {
            let mut made = Made::new(TaskKind::Custom, AttemptOutcome::Completed, 0);
            made.model = Some(id.to_string());
            made.run = Some(id.to_string());
            made.rounds = vec![round(&[call(id, None, 10, 5)], "accepted", None)];
            made.recorded()
        })
        .collect();
    let metrics = compute(&recorded, &Selection::default(), at(5)).unwrap();
    let text = render_prometheus(&metrics);
    let samples = parse(&text);
    for id in awkward {
        for family in ["pitcrew_model_attempts", "pitcrew_run_attempts"] {
            let key = (family.to_string(), vec![id.to_string()]);
            assert_eq!(samples.get(&key), Some(&1.0), "{family} {id:?}:\n{text}");
        }
    }
    assert_eq!(escape_label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
}

#[test]
fn the_parser_used_above_refuses_what_is_not_the_format() {
    // Without this, a lenient parser would make the tests above prove nothing.
    for broken in [
        "# HELP x a\n# TYPE x gauge\nx{model=\"a\"b\"} 1\n",
        "# HELP x a\n# TYPE x gauge\nx{model=\"a\nb\"} 1\n",
        "# HELP x a\n# TYPE x gauge\nx{model=\"a\\qb\"} 1\n",
        "# HELP x a\n# TYPE x gauge\nx{model=\"a\"} one\n",
    ] {
        assert!(
            openmetrics_parser::prometheus::parse_prometheus(broken).is_err(),
            "{broken}"
        );
    }
}

fn deliveries(url: &str, state: DeliveryState, count: u64) -> DeliveryCount {
    DeliveryCount {
        url: url.to_string(),
        state,
        count,
    }
}

#[test]
fn webhook_deliveries_are_counted_by_state_in_total_and_per_endpoint() {
    let counts = [
        deliveries("https://a.example/hook", DeliveryState::Delivered, 3),
        deliveries("https://a.example/hook", DeliveryState::Failed, 1),
        deliveries("https://b.example/x?\"q\"", DeliveryState::Retrying, 2),
        deliveries("https://b.example/x?\"q\"", DeliveryState::Delivered, 1),
    ];
    let mut metrics = compute(&fleet(), &Selection::default(), at(60)).unwrap();
    metrics.webhooks = webhook_figures(&counts);
    let json = serde_json::to_value(&metrics).unwrap();
    let webhooks = &json["webhooks"];
    assert_eq!(
        webhooks["deliveries"],
        json!({"pending": 0, "retrying": 2, "delivered": 4, "failed": 1})
    );
    assert_eq!(webhooks["delivered_ratio"], json!(0.8));
    assert_eq!(
        webhooks["endpoints"],
        json!([
            {"url": "https://a.example/hook",
             "deliveries": {"pending": 0, "retrying": 0, "delivered": 3, "failed": 1}},
            {"url": "https://b.example/x?\"q\"",
             "deliveries": {"pending": 0, "retrying": 2, "delivered": 1, "failed": 0}},
        ])
    );
    let samples = parse(&render_prometheus(&metrics));
    let get = |name: &str, labels: &[&str]| {
        let labels = labels.iter().map(|l| l.to_string()).collect::<Vec<_>>();
        samples.get(&(name.to_string(), labels)).copied()
    };
    assert_eq!(get("pitcrew_webhook_deliveries", &["delivered"]), Some(4.0));
    assert_eq!(get("pitcrew_webhook_deliveries", &["pending"]), Some(0.0));
    assert_eq!(get("pitcrew_webhook_delivered_ratio", &[]), Some(0.8));
    // The parser gives label values in the order of their names: state, then url.
    assert_eq!(
        get(
            "pitcrew_webhook_endpoint_deliveries",
            &["failed", "https://a.example/hook"]
        ),
        Some(1.0)
    );
    assert_eq!(
        get(
            "pitcrew_webhook_endpoint_deliveries",
            &["retrying", "https://b.example/x?\"q\""]
        ),
        Some(2.0)
    );
}

#[test]
fn only_pending_deliveries_give_no_delivered_ratio() {
    let figures = webhook_figures(&[deliveries("https://a/", DeliveryState::Pending, 2)]);
    assert_eq!(figures.delivered_ratio, None);
    assert_eq!(figures.deliveries[&DeliveryState::Pending], 2);
    assert_eq!(figures.endpoints.len(), 1);
}
