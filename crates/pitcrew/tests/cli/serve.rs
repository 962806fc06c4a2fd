//! `pitcrew serve`: the real binary serving the API on a loopback port, its workers running a
//! task against the scripted server while a client follows the events.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::process::Child;
use std::time::Duration;

use nix::sys::signal::Signal;
use pitcrew_testkit::Reply;
use serde_json::{Value, json};

use crate::support::{
    GOOD_TEST, PgSchema, Project, postgres_or_skip, reply_with_file, signal, stderr_of,
};

const TOKEN: &str = "cli-serve-token-c41f09b2e7";

/// The API's base URL, from the line `serve` prints once it listens.
pub(crate) fn api_url(serve: &mut Child) -> (String, BufReader<std::process::ChildStdout>) {
    let mut stdout = BufReader::new(serve.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let url = line
        .split_whitespace()
        .find(|word| word.starts_with("http://") && word.ends_with("/api/v1"))
        .unwrap_or_else(|| panic!("no API address in: {line}"))
        .to_string();
    (url, stdout)
}

/// Every SSE event of `response` as (name, data) until `done` says enough, or two minutes
/// pass.
async fn events_until(
    mut response: reqwest::Response,
    done: impl Fn(&str, &Value) -> bool,
) -> Vec<(String, Value)> {
    let mut buffer = String::new();
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let chunk = tokio::time::timeout_at(deadline, response.chunk())
            .await
            .unwrap_or_else(|_| panic!("no finishing event in time; got {events:?}"))
            .unwrap()
            .expect("the stream stays open");
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let mut name = String::new();
            let mut data = String::new();
            for line in block.lines() {
                if let Some(value) = line.strip_prefix("event:") {
                    name = value.trim().to_string();
                } else if let Some(value) = line.strip_prefix("data:") {
                    data.push_str(value.trim_start());
                }
            }
            if data.is_empty() {
                continue; // a keep-alive comment
            }
            let data: Value = serde_json::from_str(&data).unwrap();
            let finished = done(&name, &data);
            events.push((name, data));
            if finished {
                return events;
            }
        }
    }
}

/// Every sample of the Prometheus text `text` by family name and label values, as a real
/// parser of the format reads them; counters and gauges only.
fn samples(text: &str) -> HashMap<(String, Vec<String>), f64> {
    use openmetrics_parser::PrometheusValue;
    let exposition = openmetrics_parser::prometheus::parse_prometheus(text)
        .unwrap_or_else(|e| panic!("not the Prometheus text format ({e}):\n{text}"));
    let mut samples = HashMap::new();
    for (name, family) in &exposition.families {
        for sample in family.iter_samples() {
            let labels = sample
                .get_labelset()
                .unwrap()
                .iter_values()
                .cloned()
                .collect();
            let value = match &sample.value {
                PrometheusValue::Gauge(value) => value.as_f64(),
                PrometheusValue::Counter(counter) => counter.value.as_f64(),
                _ => continue,
            };
            samples.insert((name.clone(), labels), value);
        }
    }
    samples
}

/// Asserts that the figures `json` of `pitcrew metrics --json` (a group: the totals, or a
/// model's) are the samples of `/metrics` named `prefix` + the figure, with `labels`.
#[track_caller]
fn assert_figures_agree(
    scraped: &HashMap<(String, Vec<String>), f64>,
    prefix: &str,
    labels: &[&str],
    json: &Value,
) {
    for (field, name, factor) in [
        ("attempts", "attempts", 1.0),
        ("completed", "completed_attempts", 1.0),
        ("success_rate", "success_ratio", 1.0),
        ("calls", "calls", 1.0),
        ("tokens_in", "input_tokens", 1.0),
        ("tokens_out", "output_tokens", 1.0),
        ("latency_p50_ms", "latency_p50_seconds", 0.001),
        ("cost_usd", "cost_usd", 1.0),
        ("mean_quality", "mean_quality", 1.0),
    ] {
        let key = (
            format!("{prefix}{name}"),
            labels.iter().map(|l| l.to_string()).collect::<Vec<_>>(),
        );
        let expected = json[field].as_f64().map(|v| v * factor);
        let got = scraped.get(&key).copied();
        match (expected, got) {
            (Some(e), Some(g)) => assert!((e - g).abs() < 1e-9, "{key:?}: {e} ≠ {g}"),
            _ => assert_eq!(got, expected, "{key:?}"),
        }
    }
}

/// The JSON answer to a GET of `url` with the token.
async fn get_json(client: &reqwest::Client, url: &str) -> Value {
    let response = client.get(url).bearer_auth(TOKEN).send().await.unwrap();
    response.json().await.unwrap()
}

#[test]
fn serve_streams_the_events_of_a_task_its_workers_run() {
    serve_streams_events_on(None);
}

#[test]
fn serve_streams_the_events_of_a_task_its_workers_run_on_postgres() {
    let what = "serve_streams_the_events_of_a_task_its_workers_run_on_postgres";
    let Some(base_url) = postgres_or_skip(what) else {
        return;
    };
    let schema = PgSchema::create(&base_url, "cli");
    serve_streams_events_on(Some(&schema.store_url()));
}

/// `serve --workers 1` on the store `store_url` (the project's SQLite file when `None`): a
/// client follows the events of a task it submits until the task is finished.
fn serve_streams_events_on(store_url: Option<&str>) {
    let p = Project::with_config(&format!("\n[server]\ntoken = \"{TOKEN}\"\n"));
    p.server.push(Reply::content(&reply_with_file(
        "tests/test_calc.py",
        GOOD_TEST,
    )));
    let mut args = vec!["serve", "--bind", "127.0.0.1:0", "--workers", "1"];
    if let Some(url) = store_url {
        args.extend(["--store", url]);
    }
    let mut serve = p.spawn_with(&args, &[("PITCREW_LOG", "debug")]);
    let (url, mut stdout) = api_url(&mut serve);
    // Logs are read as they come, so a chatty server never blocks on a full pipe.
    let mut stderr = serve.stderr.take().unwrap();
    let logs = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let scraped = runtime.block_on(async {
        let client = reqwest::Client::new();
        let refused = client
            .get(format!("{url}/queue"))
            .bearer_auth("not-the-token")
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 401);

        let events = client
            .get(format!("{url}/events"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(events.status(), 200);
        assert_eq!(
            events.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        let submitted: Value = client
            .post(format!("{url}/tasks"))
            .bearer_auth(TOKEN)
            .json(&json!({"kind": "unit_test", "target": "src/calc.py"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = submitted["id"].as_str().unwrap().to_string();
        let streamed = events_until(events, |name, data| {
            name == "finished" && data["task"] == id.as_str()
        })
        .await;
        let of_task: Vec<&(String, Value)> = streamed
            .iter()
            .filter(|(_, data)| data["task"] == id.as_str())
            .collect();
        let names: Vec<&str> = of_task.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names.first(), Some(&"started"), "{names:?}");
        let generated: String = of_task
            .iter()
            .filter(|(name, _)| name == "output")
            .map(|(_, data)| data["text"].as_str().unwrap())
            .collect();
        assert!(generated.contains("def test_double"), "{generated}");
        let (_, finished) = of_task.last().unwrap();
        assert_eq!(finished["type"], "finished");
        assert_eq!(finished["status"], "completed", "{finished}");

        let shown = get_json(&client, &format!("{url}/tasks/{id}")).await;
        assert_eq!(shown["task"]["status"], "completed");
        let diff = get_json(&client, &format!("{url}/tasks/%231/diff")).await;
        assert!(
            diff["patch"].as_str().unwrap().contains("+def test_double"),
            "{diff}"
        );
        let site = url.trim_end_matches("/api/v1");
        let metrics = client
            .get(format!("{site}/metrics"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(metrics.status(), 200);
        metrics.text().await.unwrap()
    });
    signal(&serve, Signal::SIGTERM);
    let status = serve.wait().unwrap();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let logs = logs.join().unwrap();
    assert!(status.success(), "serve exited with {status}: {logs}");
    assert!(
        !rest.contains(TOKEN) && !logs.contains(TOKEN),
        "the token was printed: {rest}{logs}"
    );
    // What the API queued is the CLI's queue.
    let mut list = vec!["list"];
    if let Some(url) = store_url {
        list.extend(["--store", url]);
    }
    assert_eq!(p.json(&list)[0]["status"], "completed");

    // /metrics says what `pitcrew metrics --json` says of the same store, and adds the
    // server's own figures.
    let mut metrics = vec!["metrics"];
    if let Some(url) = store_url {
        metrics.extend(["--store", url]);
    }
    let figures = p.json(&metrics);
    let samples = samples(&scraped);
    assert_eq!(figures["totals"]["attempts"], 1, "{figures}");
    assert_figures_agree(&samples, "pitcrew_", &[], &figures["totals"]);
    for model in figures["models"].as_array().unwrap() {
        let id = model["model"].as_str().unwrap();
        assert_figures_agree(&samples, "pitcrew_model_", &[id], model);
    }
    let requests = samples
        .iter()
        .filter(|((name, _), _)| name == "pitcrew_server_http_requests_total")
        .map(|(_, count)| count)
        .sum::<f64>();
    assert!(requests >= 4.0, "{scraped}");
    let finished = (
        "pitcrew_server_finished_tasks_total".to_string(),
        vec!["completed".to_string()],
    );
    assert_eq!(samples.get(&finished), Some(&1.0), "{scraped}");
}

#[test]
fn serve_refuses_a_remote_address_without_a_token() {
    let p = Project::new();
    let out = p
        .cmd()
        .args(["serve", "--bind", "0.0.0.0:0"])
        .timeout(Duration::from_secs(30))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    let stderr = stderr_of(&out);
    assert!(
        stderr.contains("refusing to listen on 0.0.0.0:0 without a token")
            && stderr.contains("PITCREW_SERVER_TOKEN"),
        "{stderr}"
    );
}
