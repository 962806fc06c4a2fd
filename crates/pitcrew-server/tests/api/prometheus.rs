//! `/metrics`: the store's figures, read back by a real parser of the Prometheus text format,
//! say what `/api/v1/metrics` (the JSON of `pitcrew metrics --json`) and `pitcrew_metrics::
//! gather` say; this process's own figures follow under names of their own; the token is
//! needed as for the API.

use std::collections::{BTreeMap, HashMap};

use chrono::Utc;
use openmetrics_parser::{PrometheusType, PrometheusValue};
use pitcrew_core::{TaskId, TaskStatus, Usage};
use pitcrew_engine::Event;
use pitcrew_metrics::{Selection, gather, render_prometheus};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::support::{Api, Backend, TOKEN, assert_error, backends, record_a_run};

/// A sample's family and label pairs (sorted by label name).
type SampleKey = (String, Vec<(String, String)>);

/// Every family of `text` with its type, and every sample with its value, as a parser of the
/// format reads them (it refuses text that is not the format, and unescapes label values).
fn parse(text: &str) -> (BTreeMap<String, PrometheusType>, HashMap<SampleKey, f64>) {
    let exposition = openmetrics_parser::prometheus::parse_prometheus(text)
        .unwrap_or_else(|e| panic!("not the Prometheus text format ({e}):\n{text}"));
    let mut families = BTreeMap::new();
    let mut samples = HashMap::new();
    for (name, family) in &exposition.families {
        families.insert(name.clone(), family.family_type.clone());
        for sample in family.iter_samples() {
            let labels = sample.get_labelset().unwrap();
            let mut pairs: Vec<(String, String)> = labels
                .iter_names()
                .cloned()
                .zip(labels.iter_values().cloned())
                .collect();
            pairs.sort();
            let value = match &sample.value {
                PrometheusValue::Gauge(v) => v.as_f64(),
                PrometheusValue::Counter(c) => c.value.as_f64(),
                // Histograms are checked by their families' names only.
                _ => continue,
            };
            samples.insert((name.clone(), pairs), value);
        }
    }
    (families, samples)
}

/// The figures of `Figures` as JSON field → Prometheus name, with the factor from the one to
/// the other (milliseconds to seconds).
const FIGURE_NAMES: &[(&str, &str, f64)] = &[
    ("attempts", "attempts", 1.0),
    ("completed", "completed_attempts", 1.0),
    ("success_rate", "success_ratio", 1.0),
    ("calls", "calls", 1.0),
    ("latency_p50_ms", "latency_p50_seconds", 0.001),
    ("latency_p95_ms", "latency_p95_seconds", 0.001),
    (
        "time_to_first_token_p50_ms",
        "time_to_first_token_p50_seconds",
        0.001,
    ),
    ("tokens_in", "input_tokens", 1.0),
    ("tokens_out", "output_tokens", 1.0),
    ("cost_usd", "cost_usd", 1.0),
    ("mean_quality", "mean_quality", 1.0),
    ("rate_limited", "rate_limited_calls", 1.0),
    ("content_failures", "content_failures", 1.0),
];

/// Asserts that every figure of the JSON group `figures` is the sample of `/metrics` named
/// `prefix` + its Prometheus name with `label`, and that a figure without data (`null`) has
/// no sample.
#[track_caller]
fn assert_group_agrees(
    samples: &HashMap<SampleKey, f64>,
    prefix: &str,
    label: Option<(&str, &str)>,
    figures: &Value,
) {
    let labels: Vec<(String, String)> = label
        .map(|(name, value)| vec![(name.to_string(), value.to_string())])
        .unwrap_or_default();
    for (field, name, factor) in FIGURE_NAMES {
        let key = (format!("{prefix}{name}"), labels.clone());
        let expected = figures[field].as_f64().map(|v| v * factor);
        let got = samples.get(&key).copied();
        match (expected, got) {
            (Some(expected), Some(got)) => assert!(
                (expected - got).abs() <= 1e-9 * expected.abs().max(1.0),
                "{key:?}: JSON says {expected}, /metrics says {got}"
            ),
            _ => assert_eq!(got, expected, "{key:?}"),
        }
    }
}

async fn scrape(api: &Api, path: &str) -> String {
    let response = api.request(Method::GET, path).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    response.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_say_what_the_json_and_gather_say() {
    for backend in backends("metrics_say_what_the_json_and_gather_say") {
        let api = Api::start(backend).await;
        record_a_run(&api).await;
        let text = scrape(&api, "/metrics").await;
        let (families, samples) = parse(&text);

        // Every sample the store's figures render is on /metrics, with the same value.
        let gathered = gather(&*api.store, &Selection::default(), Utc::now())
            .await
            .unwrap();
        let (store_families, store_samples) = parse(&render_prometheus(&gathered));
        assert!(!store_samples.is_empty());
        for (key, value) in &store_samples {
            assert_eq!(samples.get(key), Some(value), "{key:?}:\n{text}");
        }
        for (name, kind) in &store_families {
            assert_eq!(families.get(name), Some(kind), "{name}");
        }

        // And they are the JSON's figures, group by group.
        let (status, json) = api.get("/api/v1/metrics").await;
        assert_eq!(status, StatusCode::OK, "{json}");
        assert_eq!(json, serde_json::to_value(&gathered).unwrap());
        assert_group_agrees(&samples, "pitcrew_", None, &json["totals"]);
        for (group, prefix, label) in [
            ("models", "pitcrew_model_", "model"),
            ("kinds", "pitcrew_kind_", "kind"),
            ("runs", "pitcrew_run_", "run"),
        ] {
            let entries = json[group].as_array().unwrap();
            assert!(!entries.is_empty(), "{group}: {json}");
            for entry in entries {
                let name = entry[label].as_str().unwrap();
                assert_group_agrees(&samples, prefix, Some((label, name)), entry);
            }
        }
        for (status, count) in json["totals"]["tasks"].as_object().unwrap() {
            let key = (
                "pitcrew_tasks".to_string(),
                vec![("status".to_string(), status.clone())],
            );
            assert_eq!(samples.get(&key), count.as_f64().as_ref(), "{status}");
        }
        assert_eq!(
            samples.get(&(
                "pitcrew_model_rate_limited_calls".into(),
                vec![("model".into(), "vendor/a".into())]
            )),
            Some(&1.0)
        );

        // A selection narrows the store's figures as it does the JSON's.
        let docs = scrape(&api, "/metrics?kind=docs&since=1h").await;
        let (_, docs) = parse(&docs);
        assert_eq!(docs.get(&("pitcrew_attempts".into(), vec![])), Some(&1.0));
        assert_eq!(
            docs.get(&("pitcrew_success_ratio".into(), vec![])),
            Some(&0.0)
        );
        assert_error(
            &api.get("/metrics?format=json").await,
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "format",
        );
        api.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_add_the_process_figures_under_names_of_their_own() {
    let api = Api::start(Backend::Sqlite).await;
    // Requests to count: a read, a task by its handle, a refusal and a path that is no route.
    assert_eq!(api.get("/api/v1/queue").await.0, StatusCode::OK);
    assert_eq!(
        api.get("/api/v1/tasks/12345").await.0,
        StatusCode::NOT_FOUND
    );
    let refused = api
        .without_token(Method::GET, "/api/v1/queue")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(api.get("/no/such/route").await.0, StatusCode::NOT_FOUND);
    // A client following the events, and events of an engine in this process.
    let following = api
        .request(Method::GET, "/api/v1/events")
        .send()
        .await
        .unwrap();
    assert_eq!(following.status(), StatusCode::OK);
    let task = TaskId::new();
    api.events.publish(&Event::Started {
        task,
        attempt: 1,
        worker: "w/0".into(),
        what: "unit_test src/calc.py".into(),
    });
    api.events.publish(&Event::Finished {
        task,
        attempt: 1,
        status: TaskStatus::Completed,
        model: None,
        error: None,
        retry_in: None,
        branch: None,
        usage: Usage::default(),
        iterations: 1,
    });

    let text = scrape(&api, "/metrics").await;
    let (families, samples) = parse(&text);
    // The figures are the process's, shared by every test of this binary: at least ours.
    let at_least = |name: &str, labels: &[(&str, &str)], least: f64| {
        let mut pairs: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        pairs.sort();
        let value = samples.get(&(name.to_string(), pairs)).copied();
        assert!(
            value.is_some_and(|v| v >= least),
            "{name}{labels:?} is {value:?}:\n{text}"
        );
    };
    let requests = "pitcrew_server_http_requests_total";
    at_least(
        requests,
        &[
            ("method", "GET"),
            ("route", "/api/v1/queue"),
            ("status", "200"),
        ],
        1.0,
    );
    at_least(
        requests,
        &[
            ("method", "GET"),
            ("route", "/api/v1/queue"),
            ("status", "401"),
        ],
        1.0,
    );
    // The route's template, never what a client put in it.
    at_least(
        requests,
        &[
            ("method", "GET"),
            ("route", "/api/v1/tasks/{id}"),
            ("status", "404"),
        ],
        1.0,
    );
    at_least(
        requests,
        &[("method", "GET"), ("route", "unmatched"), ("status", "404")],
        1.0,
    );
    assert!(
        !text.contains("12345") && !text.contains("/no/such/route"),
        "{text}"
    );
    at_least("pitcrew_server_event_stream_clients", &[], 1.0);
    at_least(
        "pitcrew_server_engine_events_total",
        &[("type", "started")],
        1.0,
    );
    at_least(
        "pitcrew_server_finished_tasks_total",
        &[("status", "completed")],
        1.0,
    );
    assert_eq!(families[requests], PrometheusType::Counter);
    assert_eq!(
        families["pitcrew_server_http_request_duration_seconds"],
        PrometheusType::Histogram
    );
    assert_eq!(
        families["pitcrew_server_event_stream_clients"],
        PrometheusType::Gauge
    );

    // No family is written twice, and every one says what it is.
    let mut typed: Vec<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .map(|rest| rest.split(' ').next().unwrap())
        .collect();
    let count = typed.len();
    typed.sort_unstable();
    typed.dedup();
    assert_eq!(typed.len(), count, "a family is written twice:\n{text}");
    for name in typed {
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "{name} has no HELP:\n{text}"
        );
    }
    drop(following);
    api.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_need_the_token() {
    let api = Api::start(Backend::Sqlite).await;
    for authorization in [None, Some("Bearer not-the-token-at-all-0000")] {
        let mut request = api.without_token(Method::GET, "/metrics");
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
    }
    let scraped = api
        .without_token(Method::GET, "/metrics")
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(scraped.status(), StatusCode::OK);
    api.finish().await;
}
