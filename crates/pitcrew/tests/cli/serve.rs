//! `pitcrew serve`: the real binary serving the API on a loopback port, its workers running a
//! task against the scripted server while a client follows the events.

use std::io::{BufRead, BufReader, Read};
use std::process::Child;
use std::time::Duration;

use nix::sys::signal::Signal;
use pitcrew_testkit::Reply;
use serde_json::{Value, json};

use crate::support::{
    GOOD_TEST, Project, Schema, postgres_or_skip, reply_with_file, signal, stderr_of,
};

const TOKEN: &str = "cli-serve-token-c41f09b2e7";

/// The API's base URL, from the line `serve` prints once it listens.
fn api_url(serve: &mut Child) -> (String, BufReader<std::process::ChildStdout>) {
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
    let schema = Schema::create(&base_url);
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
    runtime.block_on(async {
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
