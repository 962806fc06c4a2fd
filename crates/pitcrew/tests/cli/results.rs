//! What a run does with each kind of reply.

use pitcrew_testkit::Reply;
use serde_json::json;

use crate::support::*;

#[test]
fn a_good_reply_becomes_a_branch_and_a_patch_that_applies_on_the_base() {
    let p = Project::new();
    p.server.push(Reply::content(&reply_with_file(
        "tests/test_calc.py",
        GOOD_TEST,
    )));
    let id = p.submit("src/calc.py", &[]);

    let out = p.cmd().arg("run").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert!(
        stdout_of(&out).contains("1 completed, 0 failed"),
        "{}",
        stdout_of(&out)
    );
    assert!(
        stderr_of(&out).contains("[completed]  #1"),
        "{}",
        stderr_of(&out)
    );

    // The provider got the model id (never the preset name) and the target's code.
    let requests = p.server.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].path, "/v1/chat/completions");
    assert_eq!(requests[0].model(), Some(MODEL_ID));
    assert!(requests[0].prompt_text().contains("def sign(x):"));
    assert!(requests[0].prompt_text().contains("src/calc.py"));

    let task = p.task(&id);
    assert_eq!(task["status"], "completed");
    let commit = task["result_commit"].as_str().unwrap().to_string();
    assert_eq!(p.pitcrew_branches(), [format!("pitcrew/{id}")]);
    assert_eq!(p.repo.git(&["rev-parse", &format!("pitcrew/{id}")]), commit);
    assert_eq!(
        p.repo
            .git(&["show", &format!("pitcrew/{id}:tests/test_calc.py")]),
        GOOD_TEST.trim_end()
    );

    // The user's working tree is untouched.
    assert_eq!(p.repo.git(&["status", "--porcelain"]), "");
    assert!(!p.path().join("tests").exists());
    // The worktree is gone.
    assert!(p.worktree_files().is_empty());

    let attempts = p.attempts(&id);
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0]["outcome"], "completed");
    assert_eq!(attempts[0]["model"], MODEL_ID);
    assert!(attempts[0]["usage"]["tokens_out"].as_u64().unwrap() > 0);

    // The stored patch applies on the base commit.
    let show = p.cmd().args(["show", &id, "--diff"]).output().unwrap();
    let text = stdout_of(&show);
    let patch_start = text
        .find("diff --git")
        .expect("show --diff prints the patch");
    let patch_file = p.scratch.path().join("result.patch");
    std::fs::write(
        &patch_file,
        format!("{}\n", &text[patch_start..].trim_end()),
    )
    .unwrap();
    p.repo
        .git(&["apply", "--check", patch_file.to_str().unwrap()]);
    let json = p.json(&["show", &id, "--diff"]);
    assert!(
        json["attempts"][0]["patch"]
            .as_str()
            .unwrap()
            .contains("+++ b/tests/test_calc.py")
    );
}

/// Runs a task whose only reply is `reply`; returns (task JSON, run stderr).
fn run_failing(p: &Project, reply: Reply) -> (serde_json::Value, String) {
    p.server.push(reply);
    let id = p.submit("src/calc.py", &[]);
    let out = p.cmd().arg("run").output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "a failed task must exit 1: {}",
        stderr_of(&out)
    );
    assert!(
        stdout_of(&out).contains("0 completed, 1 failed"),
        "{}",
        stdout_of(&out)
    );
    assert!(
        p.pitcrew_branches().is_empty(),
        "a failed task left a branch"
    );
    assert_eq!(p.repo.git(&["status", "--porcelain"]), "");
    (p.task(&id), stderr_of(&out))
}

#[test]
fn a_reply_with_a_syntax_error_fails_naming_the_file_and_line() {
    let p = Project::new();
    let broken = "def test_double():\n    assert double(3) == 6\n\ndef test_sign(:\n    pass\n";
    let (task, stderr) = run_failing(
        &p,
        Reply::content(&reply_with_file("tests/test_calc.py", broken)),
    );
    assert_eq!(task["status"], "failed");
    assert_eq!(task["error_kind"], "syntax_error");
    let error = task["last_error"].as_str().unwrap();
    assert!(error.contains("tests/test_calc.py:4"), "{error}");
    assert!(error.contains("syntax error"), "{error}");
    assert!(stderr.contains("[failed]"), "{stderr}");
    let attempt = &p.attempts(task["id"].as_str().unwrap())[0];
    assert_eq!(attempt["outcome"], "failed");
    assert_eq!(attempt["findings"][0]["rule"], "syntax");
    assert_eq!(attempt["findings"][0]["line"], 4);
}

#[test]
fn an_empty_reply_fails_as_empty() {
    let p = Project::new();
    let (task, _) = run_failing(&p, Reply::content(""));
    assert_eq!(task["error_kind"], "empty_reply");
    assert!(task["last_error"].as_str().unwrap().contains("empty reply"));
}

#[test]
fn a_reply_without_annotated_files_fails_and_says_what_was_expected() {
    let p = Project::new();
    let (task, _) = run_failing(
        &p,
        Reply::content("Sure! Here is a test:\n```python\ndef test_x():\n    assert 1\n```\n"),
    );
    assert_eq!(task["error_kind"], "no_files");
    assert!(task["last_error"].as_str().unwrap().contains("path="));
}

#[test]
fn a_reply_writing_outside_the_worktree_is_refused_and_nothing_is_written() {
    let p = Project::new();
    let reply = format!(
        "{}\n{}",
        reply_with_file("../outside.py", "print('escaped')\n"),
        reply_with_file("tests/test_calc.py", GOOD_TEST)
    );
    let (task, _) = run_failing(&p, Reply::content(&reply));
    assert_eq!(task["error_kind"], "unsafe_path");
    let error = task["last_error"].as_str().unwrap();
    assert!(
        error.contains("refused to write `../outside.py`"),
        "{error}"
    );
    assert!(error.contains("`..`"), "{error}");
    // Not next to the worktree, not next to the repository, and the good file neither.
    assert!(!p.worktree_files().iter().any(|f| f.ends_with("outside.py")));
    assert!(!p.path().parent().unwrap().join("outside.py").exists());
    assert!(!p.path().join("outside.py").exists());
    let stray: Vec<_> = files_under(p.path())
        .into_iter()
        .filter(|f| f.ends_with("outside.py") || f.ends_with("test_calc.py"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
}

#[test]
fn a_server_error_is_retried_by_the_router_within_the_attempt() {
    let p = Project::new();
    p.server.push(Reply::status(
        503,
        json!({"error": {"message": "overloaded", "code": 503}}),
    ));
    p.server.push(Reply::content(&reply_with_file(
        "tests/test_calc.py",
        GOOD_TEST,
    )));
    let id = p.submit("src/calc.py", &[]);
    let out = p.cmd().arg("run").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("local failed (server_error)"),
        "{}",
        stderr_of(&out)
    );
    let attempts = p.attempts(&id);
    assert_eq!(
        attempts.len(),
        1,
        "the router retried; the task needed no second attempt"
    );
    assert_eq!(attempts[0]["outcome"], "completed");
    let calls = &attempts[0]["details"]["iterations"][0]["calls"];
    assert_eq!(calls.as_array().unwrap().len(), 2, "{calls}");
    assert_eq!(calls[0]["error_kind"], "server_error");
    assert_eq!(
        p.server.requests().len(),
        2,
        "one HTTP request per call, no hidden retries"
    );
}

#[test]
fn a_rate_limit_longer_than_a_call_may_wait_returns_the_task_to_the_queue() {
    let p = Project::new();
    // Asks for 6 s; a call waits at most models.max_wait_secs = 5 s.
    p.server.push(
        Reply::status(429, json!({"error": {"message": "slow down", "code": 429}}))
            .header("Retry-After", "6"),
    );
    p.server.push(Reply::content(&reply_with_file(
        "tests/test_calc.py",
        GOOD_TEST,
    )));
    let id = p.submit("src/calc.py", &[]);
    let out = p.cmd().arg("run").output().unwrap();
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("[retry]"), "{stderr}");
    assert!(
        stdout_of(&out).contains("1 completed, 0 failed, 0 possible bugs (1 retried"),
        "{}",
        stdout_of(&out)
    );
    let attempts = p.attempts(&id);
    let outcomes: Vec<_> = attempts.iter().map(|a| a["outcome"].clone()).collect();
    assert_eq!(outcomes, ["failed", "completed"]);
    assert_eq!(attempts[0]["error_kind"], "no_model_available");
    // The provider's wait was honoured: the second request came at least 6 s after the first.
    let requests = p.server.requests();
    assert_eq!(requests.len(), 2);
    assert!(
        requests[1]
            .received_at
            .duration_since(requests[0].received_at)
            >= std::time::Duration::from_secs(6)
    );
}

#[test]
fn a_rejected_key_fails_at_once_naming_the_variable() {
    let p = Project::new();
    p.server.push(Reply::status(
        401,
        json!({"error": {"message": "invalid api key"}}),
    ));
    let (task, _) = run_failing(&p, Reply::content("never sent"));
    assert_eq!(task["error_kind"], "auth");
    assert!(task["last_error"].as_str().unwrap().contains(KEY_VAR));
    assert_eq!(task["attempts"], 1, "an auth failure must not be retried");
    assert_eq!(p.server.requests().len(), 1);
}

#[test]
fn a_validation_command_failure_fails_the_task_with_its_output() {
    let p = Project::with_config(
        "\n[[validation.commands]]\nid = \"project_check\"\ncommand = \"python3 -c 'import sys; print(\\\"checked\\\", sys.argv[1:]); sys.exit(3)' {files}\"\n",
    );
    let (task, _) = run_failing(
        &p,
        Reply::content(&reply_with_file("tests/test_calc.py", GOOD_TEST)),
    );
    assert_eq!(task["error_kind"], "validation_failed");
    let error = task["last_error"].as_str().unwrap();
    assert!(error.contains("exit code 3"), "{error}");
    assert!(error.contains("checked ['tests/test_calc.py']"), "{error}");
}

#[test]
fn a_passing_validation_command_lets_the_result_through() {
    let p = Project::with_config(
        "\n[[validation.commands]]\nid = \"project_check\"\ncommand = \"python3 -m py_compile {files}\"\n",
    );
    p.server.push(Reply::content(&reply_with_file(
        "tests/test_calc.py",
        GOOD_TEST,
    )));
    let id = p.submit("src/calc.py", &[]);
    p.cmd().arg("run").assert().code(0);
    assert_eq!(p.task(&id)["status"], "completed");
    let rules = p.attempts(&id)[0]["details"]["validation"]["rules"].clone();
    let check = rules
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["rule"] == "project_check")
        .unwrap_or_else(|| panic!("the project's check did not run: {rules}"));
    assert_eq!(
        (&check["status"], &check["passed"]),
        (&json!("ran"), &json!(true)),
        "{check}"
    );
}

#[test]
fn results_of_unconfined_runs_say_so_everywhere() {
    let p = Project::new();
    p.server.push(Reply::content(&reply_with_file(
        "tests/test_calc.py",
        GOOD_TEST,
    )));
    let id = p.submit("src/calc.py", &[]);
    let sandboxed_quality = |p: &Project, id: &str| p.attempts(id)[0]["quality"].as_f64().unwrap();

    let out = p
        .cmd()
        .env("PITCREW_VALIDATION_SANDBOX", "none")
        .arg("run")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let show = p.cmd().args(["show", &id]).output().unwrap();
    assert!(
        stdout_of(&show).contains("NOT SANDBOXED"),
        "{}",
        stdout_of(&show)
    );
    let report = p.cmd().arg("report").output().unwrap();
    assert!(
        stdout_of(&report).contains("**NOT SANDBOXED**"),
        "{}",
        stdout_of(&report)
    );
    let json = p.json(&["report"]);
    assert_eq!(json["tasks"][0]["sandboxed"], false);
    assert_eq!(json["totals"]["unsandboxed"], 1);
    // The same evidence, unconfined, counts half: all rules passed, the mutants in proportion.
    let attempt = &p.attempts(&id)[0];
    let mutation = &attempt["details"]["validation"]["evidence"]["mutation"][0];
    let score = mutation["killed"].as_f64().unwrap() / mutation["tried"].as_f64().unwrap();
    let confined = (86.0 + 14.0 * score).round() / 100.0;
    assert!((sandboxed_quality(&p, &id) - confined * 0.5).abs() < 1e-9);

    let validate = p
        .cmd()
        .env("PITCREW_VALIDATION_SANDBOX", "none")
        .args(["validate", "src/calc.py", "--kind", "fix"])
        .output()
        .unwrap();
    assert!(
        stdout_of(&validate).contains("NOT SANDBOXED"),
        "{}",
        stdout_of(&validate)
    );
}
