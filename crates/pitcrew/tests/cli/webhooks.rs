//! Webhooks through the binary: a real receiver on 127.0.0.1 that verifies every signature,
//! tasks ended by `run`, `cancel` and a killed `worker`, retries, give-ups, `pitcrew webhooks`
//! and `pitcrew metrics`.

use std::time::{Duration, Instant};

use pitcrew_testkit::{Answer, Gate, ReceivedDelivery, Reply, WebhookReceiver};
use serde_json::Value;

use crate::support::*;

/// The signing secret: it must never show anywhere but in the signatures it makes.
const HOOK_SECRET: &str = "whsec-cli-test-6c1f0a9e2b7d4f";
const HOOK_VAR: &str = "HOOK_SECRET";

const NO_ASSERTIONS: &str = "from src.calc import double\n\n\ndef test_double():\n    double(3)\n";

/// A project whose pitcrew.toml sends every event to `receiver`, with `extra` lines in the
/// `[[webhooks]]` entry.
fn hooked(receiver: &WebhookReceiver, extra: &str) -> Project {
    Project::with_config(&format!(
        "\n[[webhooks]]\nurl = \"{}\"\nsecret_env = \"{HOOK_VAR}\"\n{extra}",
        receiver.url()
    ))
}

fn good_reply() -> Reply {
    Reply::content(&reply_with_file("tests/test_calc.py", GOOD_TEST))
}

/// The deliveries of events of `event_type`.
fn of_type(deliveries: &[ReceivedDelivery], event_type: &str) -> Vec<ReceivedDelivery> {
    (deliveries.iter())
        .filter(|d| d.header("x-pitcrew-event") == Some(event_type))
        .cloned()
        .collect()
}

/// What a receiver should check of every delivery: the signature, the headers against the
/// body, a fresh timestamp.
fn assert_well_formed(delivery: &ReceivedDelivery) {
    assert!(
        delivery.signature_valid,
        "bad signature: {:?}",
        delivery.headers
    );
    let body = delivery.json();
    assert_eq!(delivery.event_id(), body["id"].as_str(), "{body}");
    assert_eq!(delivery.header("x-pitcrew-event"), body["type"].as_str());
    let sent: i64 = delivery
        .header("x-pitcrew-timestamp")
        .unwrap()
        .parse()
        .unwrap();
    assert!((chrono::Utc::now().timestamp() - sent).abs() < 300);
    assert!(body["created_at"].as_str().is_some(), "{body}");
}

/// `pitcrew webhooks --json`, with the secret set as a run would have it.
fn listed(p: &Project) -> Vec<Value> {
    p.json(&["webhooks"]).as_array().unwrap().clone()
}

/// Every file of the store (the database, its WAL), read as bytes.
fn store_bytes(p: &Project) -> Vec<u8> {
    let mut bytes = Vec::new();
    for file in files_under(&p.path().join(".pitcrew")) {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("pitcrew.db") {
            bytes.extend(std::fs::read(file).unwrap());
        }
    }
    assert!(!bytes.is_empty(), "no store found");
    bytes
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

#[test]
fn a_completed_and_a_failed_task_each_get_one_signed_delivery_and_the_secret_stays_put() {
    let receiver = WebhookReceiver::start(HOOK_SECRET);
    let p = hooked(&receiver, "");
    p.server.push(good_reply());
    p.server.push(Reply::content(&reply_with_file(
        "tests/test_calc.py",
        NO_ASSERTIONS,
    )));
    let completed = p.submit("src/calc.py", &[]);
    let failed = p.submit("src/calc.py", &[]);
    let out = p
        .cmd()
        .env(HOOK_VAR, HOOK_SECRET)
        .env("PITCREW_LOG", "debug")
        .arg("run")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));

    // `run` sends what is due before it exits: one delivery per event, each signed.
    let got = receiver.deliveries();
    assert_eq!(got.len(), 3, "{got:?}");
    got.iter().for_each(assert_well_formed);
    let ids: std::collections::HashSet<_> = got.iter().map(|d| d.event_id()).collect();
    assert_eq!(ids.len(), 3, "an event delivered twice");

    let [done] = of_type(&got, "task.completed").try_into().unwrap();
    let task = &done.json()["data"]["task"];
    let stored = p.task(&completed);
    assert_eq!(task["id"], completed.as_str());
    assert_eq!(task["handle"], "#1");
    assert_eq!(task["status"], "completed");
    assert_eq!(task["kind"], "unit_test");
    assert_eq!(task["targets"], serde_json::json!(["src/calc.py"]));
    assert_eq!(task["result_commit"], stored["result_commit"]);
    assert_eq!(task["branch"], format!("pitcrew/{completed}"));
    assert_eq!(task["attempts"], 1);
    assert_eq!(task["error"], Value::Null);
    assert_eq!(task["finished_at"], stored["finished_at"]);

    let [broke] = of_type(&got, "task.failed").try_into().unwrap();
    let task = &broke.json()["data"]["task"];
    assert_eq!(task["id"], failed.as_str());
    assert_eq!(task["status"], "failed");
    assert_eq!(task["error_kind"], "validation_failed");
    assert!(
        task["error"].as_str().unwrap().contains("[assertions]"),
        "{task}"
    );
    assert_eq!(task["branch"], Value::Null);

    let [ended] = of_type(&got, "run.finished").try_into().unwrap();
    let run = &ended.json()["data"]["run"];
    assert_eq!(
        (run["completed"].as_u64(), run["failed"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(run["queued"], 0);
    assert!(stderr_of(&out).contains(run["id"].as_str().unwrap()));

    let deliveries = listed(&p);
    assert_eq!(deliveries.len(), 3);
    for delivery in &deliveries {
        assert_eq!(delivery["state"], "delivered", "{delivery}");
        assert_eq!(delivery["attempts"], 1);
        assert_eq!(delivery["last_status_code"], 200);
        assert_eq!(delivery["url"], receiver.url());
    }

    // The secret signs; it is shown, logged and stored nowhere.
    let table = p.cmd().arg("webhooks").output().unwrap();
    assert!(stdout_of(&table).contains("task.completed"));
    for text in [&out.stdout, &out.stderr, &table.stdout, &table.stderr] {
        assert!(
            !contains(text, HOOK_SECRET),
            "{}",
            String::from_utf8_lossy(text)
        );
    }
    assert!(
        !contains(&store_bytes(&p), HOOK_SECRET),
        "the store holds the secret"
    );
    assert!(!contains(
        &std::fs::read(p.path().join("pitcrew.toml")).unwrap(),
        HOOK_SECRET
    ));
}

#[test]
fn failed_deliveries_are_retried_with_the_same_event_id_without_holding_up_the_workers() {
    let receiver = WebhookReceiver::start(HOOK_SECRET);
    let gate = Gate::new();
    // The first task's event: held until the test has seen both tasks done, then refused
    // twice, then taken. Every other event is taken at once.
    let held = gate.clone();
    receiver.answer_by(move |delivery, earlier| {
        let first_task = delivery.json()["data"]["task"]["seq"] == 1;
        match (first_task, earlier) {
            (true, 0) => Answer::status(500).hold(&held),
            (true, 1) => Answer::status(500),
            _ => Answer::ok(),
        }
    });
    let p = hooked(&receiver, "events = [\"task.completed\"]\n");
    p.server.push(good_reply());
    p.server.push(good_reply());
    let first = p.submit("src/calc.py", &[]);
    let second = p.submit("src/calc.py", &[]);
    let run = p.spawn_with(&["run", "--workers", "1"], &[(HOOK_VAR, HOOK_SECRET)]);

    // The first task's delivery hangs; the one worker goes on to the second task regardless.
    assert!(receiver.wait_for(1, Duration::from_secs(60)), "no delivery");
    let deadline = Instant::now() + Duration::from_secs(60);
    while p.task(&second)["status"] != "completed" {
        assert!(Instant::now() < deadline, "the second task never completed");
        std::thread::sleep(Duration::from_millis(200));
    }
    let held_since = receiver.deliveries()[0].received_at;
    assert_eq!(p.task(&first)["status"], "completed");
    assert!(
        receiver.wait_for(2, Duration::from_secs(30)),
        "the second task's delivery never came"
    );
    gate.open();
    let out = run.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));

    let got = receiver.deliveries();
    got.iter().for_each(assert_well_formed);
    let of_first: Vec<&ReceivedDelivery> = (got.iter())
        .filter(|d| d.json()["data"]["task"]["id"] == first.as_str())
        .collect();
    assert_eq!(of_first.len(), 3, "{got:?}");
    for (n, delivery) in of_first.iter().enumerate() {
        assert_eq!(delivery.event_id(), of_first[0].event_id());
        assert_eq!(delivery.body, of_first[0].body);
        assert_eq!(
            delivery.header("x-pitcrew-delivery-attempt"),
            Some((n + 1).to_string().as_str())
        );
    }
    // Backoff: about 1 s after the first refusal (answered when the gate opened), about 2 s
    // after the second.
    assert!(of_first[1].received_at > held_since);
    let second_wait = of_first[2].received_at - of_first[1].received_at;
    assert!(
        second_wait >= Duration::from_millis(1500),
        "{second_wait:?}"
    );
    let of_second = (got.iter())
        .filter(|d| d.json()["data"]["task"]["id"] == second.as_str())
        .count();
    assert_eq!(of_second, 1);

    let deliveries = listed(&p);
    let first_listed = (deliveries.iter())
        .find(|d| d["task_id"] == first.as_str())
        .unwrap();
    assert_eq!(first_listed["state"], "delivered");
    assert_eq!(first_listed["attempts"], 3);
    assert_eq!(first_listed["last_error"], Value::Null);
}

#[test]
fn an_endpoint_that_always_fails_ends_as_a_failure_in_metrics() {
    let receiver = WebhookReceiver::start(HOOK_SECRET);
    receiver.then_answer(Answer::status(500).body("endpoint is down"));
    let p = hooked(&receiver, "max_attempts = 2\n");
    let id = p.submit("src/calc.py", &[]);
    // Cancelling needs no secret: the delivery waits in the store for a process that sends.
    p.cmd().args(["cancel", &id]).assert().success();
    assert_eq!(listed(&p)[0]["state"], "pending");
    assert!(receiver.deliveries().is_empty());

    let out = p
        .cmd()
        .env(HOOK_VAR, HOOK_SECRET)
        .arg("run")
        .output()
        .unwrap();
    // The run had nothing to do and did it: failed deliveries are not failed tasks.
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("gave up after 2 attempts"),
        "{}",
        stderr_of(&out)
    );
    // task.cancelled and run.finished, twice each.
    assert_eq!(receiver.deliveries().len(), 4);

    let metrics = p.json(&["metrics"]);
    let webhooks = &metrics["webhooks"];
    assert_eq!(
        webhooks["deliveries"],
        serde_json::json!({"pending": 0, "retrying": 0, "delivered": 0, "failed": 2})
    );
    assert_eq!(webhooks["delivered_ratio"], 0.0);
    assert_eq!(webhooks["endpoints"][0]["url"], receiver.url());
    assert_eq!(webhooks["endpoints"][0]["deliveries"]["failed"], 2);
    let prometheus = p.cmd().args(["metrics", "--prometheus"]).output().unwrap();
    let text = stdout_of(&prometheus);
    assert!(
        text.contains(&format!(
            "pitcrew_webhook_endpoint_deliveries{{url=\"{}\",state=\"failed\"}} 2",
            receiver.url()
        )),
        "{text}"
    );
    assert!(
        text.contains("pitcrew_webhook_deliveries{state=\"failed\"} 2"),
        "{text}"
    );
    let table = stdout_of(&p.cmd().arg("metrics").output().unwrap());
    assert!(
        table.contains("0 delivered, 0 retrying, 0 pending, 2 failed"),
        "{table}"
    );

    let deliveries = listed(&p);
    for delivery in &deliveries {
        assert_eq!(delivery["state"], "failed");
        assert_eq!(delivery["attempts"], 2);
        assert_eq!(delivery["last_status_code"], 500);
        assert_eq!(delivery["last_error"], "HTTP 500: endpoint is down");
    }
    let table = stdout_of(&p.cmd().arg("webhooks").output().unwrap());
    assert!(
        table.contains("task.cancelled") && table.contains("failed"),
        "{table}"
    );
}

#[test]
fn a_delivery_cut_short_by_a_killed_worker_is_sent_by_the_next_process() {
    let receiver = WebhookReceiver::start(HOOK_SECRET);
    // The first attempt never gets an answer: the worker is killed while it waits.
    let never = Gate::new();
    receiver.push(Answer::ok().hold(&never));
    let p = hooked(
        &receiver,
        "events = [\"task.completed\"]\ntimeout_secs = 3\n",
    );
    p.server.push(good_reply());
    let id = p.submit("src/calc.py", &[]);
    let mut worker = p.spawn_with(&["worker"], &[(HOOK_VAR, HOOK_SECRET)]);
    assert!(
        receiver.wait_for(1, Duration::from_secs(60)),
        "the worker sent nothing"
    );
    worker.kill().unwrap();
    worker.wait().unwrap();
    // The task's end and its delivery were written together.
    assert_eq!(p.task(&id)["status"], "completed");
    assert_eq!(listed(&p)[0]["state"], "pending");

    // Any later process sends it, once the dead worker's lease on it has expired.
    let out = p
        .cmd()
        .env(HOOK_VAR, HOOK_SECRET)
        .arg("run")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let got = receiver.deliveries();
    assert_eq!(got.len(), 2, "{got:?}");
    got.iter().for_each(assert_well_formed);
    assert_eq!(got[0].event_id(), got[1].event_id());
    assert_eq!(got[1].header("x-pitcrew-delivery-attempt"), Some("2"));
    assert_eq!(got[1].json()["data"]["task"]["id"], id.as_str());
    let delivery = &listed(&p)[0];
    assert_eq!(delivery["state"], "delivered");
    assert_eq!(delivery["attempts"], 2);
    never.open();
}

#[test]
fn a_missing_webhook_secret_stops_run_before_anything_is_claimed() {
    let receiver = WebhookReceiver::start(HOOK_SECRET);
    let p = hooked(&receiver, "");
    let id = p.submit("src/calc.py", &[]);
    let out = p.cmd().arg("run").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    let stderr = stderr_of(&out);
    assert!(
        stderr.contains("HOOK_SECRET: not set") && stderr.contains(&receiver.url()),
        "{stderr}"
    );
    assert_eq!(p.task(&id)["status"], "queued");
    assert!(p.server.requests().is_empty());
}

#[test]
fn serve_sends_the_webhook_of_a_task_cancelled_through_the_api() {
    let receiver = WebhookReceiver::start(HOOK_SECRET);
    let p = hooked(&receiver, "events = [\"task.cancelled\"]\n");
    let id = p.submit("src/calc.py", &[]);
    // No workers: `serve` still sends the deliveries of what its API (or anyone) ends.
    let mut serve = p.spawn_with(
        &["serve", "--bind", "127.0.0.1:0"],
        &[(HOOK_VAR, HOOK_SECRET)],
    );
    let (api, _stdout) = crate::serve::api_url(&mut serve);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let cancelled = runtime
        .block_on(
            reqwest::Client::new()
                .post(format!("{api}/tasks/{id}/cancel"))
                .send(),
        )
        .unwrap();
    assert_eq!(cancelled.status().as_u16(), 200);
    assert!(
        receiver.wait_for(1, Duration::from_secs(30)),
        "serve sent nothing"
    );
    signal(&serve, nix::sys::signal::Signal::SIGTERM);
    let out = serve.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let [got] = receiver.deliveries().try_into().unwrap();
    assert_well_formed(&got);
    let task = &got.json()["data"]["task"];
    assert_eq!(
        (task["id"].as_str(), task["status"].as_str()),
        (Some(id.as_str()), Some("cancelled"))
    );
    assert_eq!(listed(&p)[0]["state"], "delivered");
}
