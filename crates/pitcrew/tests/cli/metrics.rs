//! `pitcrew metrics`: figures checked against what the scripted provider did, on SQLite and
//! PostgreSQL; no figure invented where there is no data.

use pitcrew_testkit::Reply;
use serde_json::{Value, json};

use crate::support::*;

/// A second model on the same provider, and a routing pool of the two.
const TWO_MODELS: &str = "\n[presets.second]\nprovider = \"local\"\nmodel = \"scripted/backup-v2\"\n\n\
    [registry]\nfallback = [\"local\", \"second\"]\n";
const SECOND_ID: &str = "scripted/backup-v2";

/// Two tasks over two models. The first: the preferred model is rate-limited for a minute,
/// the second model writes good tests. The second task: the preferred model is still cooling
/// down, the second model replies with prose (a content failure) and the task fails.
fn run_two_tasks(p: &Project) {
    p.server.push(
        Reply::status(429, json!({"error": {"message": "slow down", "code": 429}}))
            .header("Retry-After", "60"),
    );
    p.server.push(
        Reply::content(&reply_with_file("tests/test_calc.py", GOOD_TEST)).with_usage(
            500,
            120,
            Some(0.004),
        ),
    );
    p.server.push(
        Reply::content("These functions look fine to me; I would not add tests.").with_usage(
            300,
            60,
            Some(0.002),
        ),
    );
    p.submit("src/calc.py", &[]);
    p.submit("src/calc.py", &["--description", "more tests"]);
    let out = p.cmd().arg("run").output().unwrap();
    // One task failed: exit 1.
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    let models: Vec<Option<String>> = (p.server.requests().iter())
        .map(|r| r.model().map(String::from))
        .collect();
    assert_eq!(
        models,
        [
            Some(MODEL_ID.to_string()),
            Some(SECOND_ID.to_string()),
            Some(SECOND_ID.to_string())
        ],
        "the calls went where the scenario needs them"
    );
}

fn model<'a>(metrics: &'a Value, id: &str) -> &'a Value {
    (metrics["models"].as_array().unwrap().iter())
        .find(|m| m["model"] == id)
        .unwrap_or_else(|| panic!("no model {id}: {metrics:#}"))
}

/// What the provider did, as `metrics --json` counts it.
fn check_figures(p: &Project) {
    let metrics = p.json(&["metrics"]);

    // Rate-limited once and never answered: no attempt of its own, so no success rate and
    // no latency, rather than 0% and 0 ms.
    let limited = model(&metrics, MODEL_ID);
    assert_eq!(limited["calls"], 1, "{limited:#}");
    assert_eq!(limited["rate_limited"], 1, "{limited:#}");
    assert_eq!(limited["attempts"], 0, "{limited:#}");
    assert_eq!(limited["content_failures"], 0, "{limited:#}");
    for absent in [
        "success_rate",
        "latency_p50_ms",
        "latency_p95_ms",
        "time_to_first_token_p50_ms",
        "mean_quality",
    ] {
        assert!(limited[absent].is_null(), "{absent}: {limited:#}");
    }

    let second = model(&metrics, SECOND_ID);
    assert_eq!(second["calls"], 2, "{second:#}");
    // It gave the first task's last reply; the second task got none it could use.
    assert_eq!(second["attempts"], 1, "{second:#}");
    assert_eq!(second["completed"], 1, "{second:#}");
    assert_eq!(second["success_rate"], 1.0, "{second:#}");
    assert_eq!(second["rate_limited"], 0, "{second:#}");
    assert_eq!(second["content_failures"], 1, "{second:#}");
    assert_eq!(second["tokens_in"], 800, "{second:#}");
    assert_eq!(second["tokens_out"], 180, "{second:#}");
    let cost = second["cost_usd"].as_f64().unwrap();
    assert!((cost - 0.006).abs() < 1e-9, "{second:#}");
    let p50 = second["latency_p50_ms"].as_u64().expect("latency recorded");
    let p95 = second["latency_p95_ms"].as_u64().expect("latency recorded");
    assert!(p50 <= p95, "{second:#}");
    let first_token = second["time_to_first_token_p50_ms"]
        .as_u64()
        .expect("time to first token recorded");
    assert!(first_token <= p95, "{second:#}");
    let quality = second["mean_quality"].as_f64().expect("validated quality");
    assert!(quality > 0.0 && quality <= 1.0, "{second:#}");

    let totals = &metrics["totals"];
    assert_eq!(totals["attempts"], 2, "{totals:#}");
    assert_eq!(totals["completed"], 1, "{totals:#}");
    assert_eq!(totals["success_rate"], 0.5, "{totals:#}");
    assert_eq!(totals["calls"], 3, "{totals:#}");
    assert_eq!(totals["rate_limited"], 1, "{totals:#}");
    assert_eq!(totals["content_failures"], 1, "{totals:#}");
    assert_eq!(totals["tasks"]["completed"], 1, "{totals:#}");
    assert_eq!(totals["tasks"]["failed"], 1, "{totals:#}");
    assert_eq!(totals["tasks"]["queued"], 0, "{totals:#}");
    assert!(
        totals["throughput_per_hour"].as_f64().unwrap() > 0.0,
        "{totals:#}"
    );
    // The rate-limited call cost nothing (the presets have no price): 1 result for $0.006.
    let per_usd = totals["accepted_results_per_usd"].as_f64().unwrap();
    assert!((per_usd - 1.0 / 0.006).abs() < 1e-6, "{totals:#}");

    let kinds = metrics["kinds"].as_array().unwrap();
    assert_eq!(kinds.len(), 1, "{metrics:#}");
    assert_eq!(kinds[0]["kind"], "unit_test");
    assert_eq!(kinds[0]["attempts"], 2);
    let runs = metrics["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "one `pitcrew run`: {metrics:#}");
    assert_eq!(runs[0]["attempts"], 2);
    assert_eq!(runs[0]["calls"], 3);
    assert!(runs[0]["started_at"].is_string());
    assert!(metrics["window"]["since"].is_string() && metrics["window"]["until"].is_string());

    // The filters select the same records.
    let only_limited = p.json(&["metrics", "--model", MODEL_ID]);
    assert_eq!(only_limited["models"].as_array().unwrap().len(), 1);
    assert_eq!(only_limited["totals"]["calls"], 1);
    assert_eq!(only_limited["totals"]["attempts"], 0);
    assert!(only_limited["totals"]["success_rate"].is_null());
    // A registry name selects the same model as its id.
    assert_eq!(
        p.json(&["metrics", "--model", "second"])["totals"]["calls"],
        2
    );
    let docs = p.json(&["metrics", "--kind", "docs"]);
    assert_eq!(docs["totals"]["attempts"], 0);
    assert!(docs["kinds"].as_array().unwrap().is_empty());
    assert_eq!(
        p.json(&["metrics", "--since", "1h"])["totals"]["attempts"],
        2
    );
    let future = p.json(&["metrics", "--since", "2999-01-01T00:00:00Z"]);
    assert_eq!(future["totals"]["attempts"], 0);
    assert!(future["totals"]["throughput_per_hour"].is_null());

    // The Prometheus text says the same.
    let out = p.cmd().args(["metrics", "--prometheus"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let text = stdout_of(&out);
    for line in [
        format!("pitcrew_model_rate_limited_calls{{model=\"{MODEL_ID}\"}} 1"),
        format!("pitcrew_model_content_failures{{model=\"{SECOND_ID}\"}} 1"),
        format!("pitcrew_model_success_ratio{{model=\"{SECOND_ID}\"}} 1"),
        "pitcrew_kind_attempts{kind=\"unit_test\"} 2".to_string(),
        "pitcrew_tasks{status=\"failed\"} 1".to_string(),
        "pitcrew_calls 3".to_string(),
        "# TYPE pitcrew_model_calls gauge".to_string(),
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
    }
    assert!(
        !text.contains(&format!(
            "pitcrew_model_success_ratio{{model=\"{MODEL_ID}\"}}"
        )),
        "no sample without data:\n{text}"
    );
    for line in text.lines() {
        assert!(
            line.starts_with("# HELP pitcrew_")
                || line.starts_with("# TYPE pitcrew_")
                || (line.starts_with("pitcrew_")
                    && line.rsplit(' ').next().unwrap().parse::<f64>().is_ok()),
            "{line}"
        );
    }

    // The table, for people.
    let out = p.cmd().arg("metrics").output().unwrap();
    let table = stdout_of(&out);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(
        table.contains(MODEL_ID) && table.contains(SECOND_ID),
        "{table}"
    );
    assert!(table.contains("unusable"), "{table}");
    assert!(
        table.contains("—"),
        "a figure without data is shown as such:\n{table}"
    );
}

#[test]
fn metrics_count_what_the_provider_did_per_model() {
    let p = Project::with_config(TWO_MODELS);
    run_two_tasks(&p);
    check_figures(&p);
}

#[test]
fn metrics_count_what_the_provider_did_on_postgres() {
    let Some(base_url) = postgres_or_skip("the PostgreSQL metrics test") else {
        return;
    };
    let schema = PgSchema::create(&base_url, "cli");
    let p = Project::with_config(&format!(
        "{TWO_MODELS}\n[store]\nurl = \"{}\"\n",
        schema.store_url()
    ));
    run_two_tasks(&p);
    check_figures(&p);
}

#[test]
fn a_reply_the_agent_refuses_is_a_content_failure_of_the_model_that_sent_it() {
    let p = Project::new();
    // Code, but in no file: the router passes it, the agent's checks find nothing to write.
    p.server.push(Reply::content(
        "```python\ndef test_double():\n    assert True\n```",
    ));
    p.submit("src/calc.py", &["--max-attempts", "1"]);
    let out = p.cmd().arg("run").output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));

    let metrics = p.json(&["metrics"]);
    let only = model(&metrics, MODEL_ID);
    assert_eq!(only["calls"], 1, "{only:#}");
    assert_eq!(only["content_failures"], 1, "{only:#}");
    assert_eq!(only["attempts"], 1, "{only:#}");
    // A decided attempt that failed: 0% is a measurement here, not a stand-in.
    assert_eq!(only["success_rate"], 0.0, "{only:#}");
    assert!(only["latency_p50_ms"].is_u64(), "{only:#}");
    assert!(metrics["totals"]["accepted_results_per_usd"].is_null());
}

#[test]
fn an_empty_store_has_no_figures_but_counts_of_zero() {
    let p = Project::new();
    let metrics = p.json(&["metrics"]);
    let totals = &metrics["totals"];
    for count in [
        "attempts",
        "completed",
        "calls",
        "tokens_in",
        "rate_limited",
    ] {
        assert_eq!(totals[count], 0, "{count}: {totals:#}");
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
        assert!(totals[absent].is_null(), "{absent}: {totals:#}");
    }
    assert_eq!(metrics["models"], json!([]));
    assert!(metrics["window"]["since"].is_null());

    let out = p.cmd().arg("metrics").output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let table = stdout_of(&out);
    assert!(table.contains("throughput       —"), "{table}");
    assert!(!table.contains("0%"), "{table}");
    assert!(
        stderr_of(&out).contains("no recorded attempt"),
        "{}",
        stderr_of(&out)
    );
}

#[test]
fn a_bad_window_or_kind_is_a_usage_error_that_says_what_is_accepted() {
    let p = Project::new();
    for bad in ["yesterday", "24", "0h", "2025-13-01T00:00:00Z"] {
        let out = p.cmd().args(["metrics", "--since", bad]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad}");
        let stderr = stderr_of(&out);
        assert!(stderr.contains("--since"), "{stderr}");
        assert!(stderr.contains("30m, 24h, 7d"), "{stderr}");
        assert!(stderr.contains("RFC 3339"), "{stderr}");
    }
    let out = p
        .cmd()
        .args(["metrics", "--kind", "tests"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = stderr_of(&out);
    assert!(
        stderr.contains("valid values: unit_test, integration_test"),
        "{stderr}"
    );
    let out = p
        .cmd()
        .args(["metrics", "--json", "--prometheus"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
