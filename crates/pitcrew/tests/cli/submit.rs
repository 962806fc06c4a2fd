//! Submitting: single tasks, batches, and the order tasks are claimed in.

use pitcrew_testkit::Reply;

use crate::support::*;

/// The module a unit-test prompt is about (other modules appear in its repository map).
fn target_module(prompt: &str) -> String {
    (0..8)
        .map(|i| format!("m{i}"))
        .find(|m| prompt.contains(&format!("Write unit tests for src/{m}.py")))
        .unwrap()
}

#[test]
fn tasks_are_claimed_critical_to_low_and_fifo_within_a_priority() {
    let p = Project::new();
    let order = [
        ("m0", "low"),
        ("m1", "normal"),
        ("m2", "critical"),
        ("m3", "high"),
        ("m4", "low"),
        ("m5", "critical"),
        ("m6", "normal"),
        ("m7", "high"),
    ];
    for (module, _) in order {
        p.repo
            .write(&format!("src/{module}.py"), "def f():\n    return 1\n");
    }
    p.repo.commit("modules");
    for (module, priority) in order {
        p.submit(&format!("src/{module}.py"), &["--priority", priority]);
    }
    p.server.respond_with(|request| {
        let prompt = request.prompt_text();
        let module = target_module(&prompt);
        Reply::content(&reply_with_file(
            &format!("tests/test_{module}.py"),
            &format!("from src.{module} import f\n\n\ndef test_f():\n    assert f() == 1\n"),
        ))
    });
    p.cmd().args(["run", "--workers", "1"]).assert().code(0);

    let served: Vec<String> = p
        .server
        .requests()
        .iter()
        .map(|r| target_module(&r.prompt_text()))
        .collect();
    assert_eq!(served, ["m2", "m5", "m3", "m7", "m1", "m6", "m0", "m4"]);
    assert_eq!(p.pitcrew_branches().len(), 8);
}

#[test]
fn a_batch_with_one_bad_line_enqueues_nothing_and_names_the_line() {
    let p = Project::new();
    let batch = p.scratch.path().join("tasks.jsonl");
    std::fs::write(
        &batch,
        concat!(
            "{\"kind\": \"unit_test\", \"target\": \"src/calc.py\"}\n",
            "\n",
            "{\"kind\": \"unit_tests\", \"target\": \"src/calc.py\"}\n",
            "{\"kind\": \"docs\", \"target\": \"src/calc.py\", \"priority\": \"high\"}\n",
            "{\"kind\": \"unit_test\", \"target\": \"src/missing.py\"}\n",
        ),
    )
    .unwrap();
    let out = p
        .cmd()
        .args(["submit", "--file", batch.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = stderr_of(&out);
    assert!(stderr.contains("tasks.jsonl:3:"), "{stderr}");
    assert!(
        stderr.contains("unknown task kind `unit_tests`"),
        "{stderr}"
    );
    assert!(stderr.contains("tasks.jsonl:5:"), "{stderr}");
    assert!(stderr.contains("src/missing.py"), "{stderr}");
    assert!(!stderr.contains("tasks.jsonl:1:"), "{stderr}");
    assert!(stderr.contains("nothing was queued"), "{stderr}");
    assert_eq!(p.json(&["list"]), serde_json::json!([]));
}

#[test]
fn a_good_batch_is_stored_in_order_in_jsonl_and_toml() {
    let p = Project::new();
    let jsonl = p.scratch.path().join("tasks.jsonl");
    std::fs::write(
        &jsonl,
        "{\"kind\": \"unit_test\", \"target\": \"src/calc.py\", \"idempotency_key\": \"calc\"}\n\
         {\"kind\": \"docs\", \"targets\": [\"src/calc.py\"], \"priority\": \"low\", \"metadata\": {\"ticket\": 7}}\n",
    )
    .unwrap();
    let submitted = p.json(&["submit", "--file", jsonl.to_str().unwrap()]);
    assert_eq!(submitted.as_array().unwrap().len(), 2);
    // Submitting again dedups the keyed task and adds the other.
    let again = p.json(&["submit", "--file", jsonl.to_str().unwrap()]);
    assert_eq!(again[0]["deduplicated"], true);
    assert_eq!(again[0]["id"], submitted[0]["id"]);
    assert_eq!(again[1]["deduplicated"], false);

    let toml = p.scratch.path().join("tasks.toml");
    std::fs::write(
        &toml,
        "[[task]]\nkind = \"implement\"\ntarget = \"src/new.py\"\ndescription = \"add a parser\"\n\n\
         [[task]]\nkind = \"fix\"\ntarget = \"src/calc.py\"\n",
    )
    .unwrap();
    let out = p
        .cmd()
        .args(["submit", "--file", toml.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr_of(&out).contains("tasks.toml:6: a fix task needs a description"),
        "{}",
        stderr_of(&out)
    );
    std::fs::write(
        &toml,
        "[[task]]\nkind = \"implement\"\ntarget = \"src/new.py\"\ndescription = \"add a parser\"\n",
    )
    .unwrap();
    p.json(&["submit", "--file", toml.to_str().unwrap()]);

    let listed = p.json(&["list"]);
    let kinds: Vec<_> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["kind"].clone())
        .collect();
    assert_eq!(kinds, ["unit_test", "docs", "docs", "implement"]);
    assert_eq!(listed[1]["metadata"]["ticket"], 7);
    assert_eq!(listed[3]["targets"][0], "src/new.py");
    let docs = p.json(&["list", "--kind", "docs"]);
    assert_eq!(docs.as_array().unwrap().len(), 2);
}

#[test]
fn single_submit_checks_its_input() {
    let p = Project::new();
    let cases: [(&[&str], &str); 5] = [
        (
            &["--kind", "unit_test", "--target", "src/nope.py"],
            "does not exist at HEAD",
        ),
        (
            &["--kind", "unit_test", "--target", "../x.py"],
            "outside the repository",
        ),
        (
            &[
                "--kind",
                "unit_test",
                "--target",
                "src/calc.py",
                "--model",
                "gpt-5",
            ],
            "unknown model preset `gpt-5`; valid values: ",
        ),
        (
            &["--kind", "implement", "--target", "src/new.py"],
            "needs a description",
        ),
        (
            &[
                "--kind",
                "unit_test",
                "--target",
                "src/calc.py",
                "--base",
                "nope",
            ],
            "base `nope` is not a commit",
        ),
    ];
    for (args, expected) in cases {
        let out = p.cmd().arg("submit").args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            stderr_of(&out).contains(expected),
            "{args:?}: {}",
            stderr_of(&out)
        );
    }
    let out = p
        .cmd()
        .args(["submit", "--kind", "unittest", "--target", "src/calc.py"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr_of(&out).contains("valid values: unit_test"),
        "{}",
        stderr_of(&out)
    );
    assert_eq!(p.json(&["list"]), serde_json::json!([]));
}

#[test]
fn targets_may_be_given_relative_to_a_subdirectory() {
    let p = Project::new();
    let out = p
        .cmd()
        .current_dir(p.path().join("src"))
        .args([
            "submit",
            "--kind",
            "unit_test",
            "--target",
            "calc.py",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let listed = p.json(&["list"]);
    assert_eq!(listed[0]["targets"][0], "src/calc.py");
}

#[test]
fn status_list_queue_cancel_and_retry() {
    let p = Project::new();
    let a = p.submit("src/calc.py", &["--priority", "high"]);
    let b = p.submit("src/calc.py", &[]);
    // Aliases existing users know.
    let status = p.cmd().args(["get-status", &a[..13]]).output().unwrap();
    assert!(
        stdout_of(&status).contains("queued (attempt 0 of 3)"),
        "{}",
        stdout_of(&status)
    );
    let stats = p.json(&["queue-stats"]);
    assert_eq!(stats["total"], 2);
    let queue = p.cmd().arg("queue").output().unwrap();
    assert!(
        stdout_of(&queue).contains("queued"),
        "{}",
        stdout_of(&queue)
    );

    assert_eq!(p.json(&["cancel", &a])["status"], "cancelled");
    let out = p.cmd().args(["cancel", &a]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_of(&out).contains("only queued or running tasks can be cancelled"));
    assert_eq!(
        p.json(&["list", "--status", "cancelled"])[0]["id"],
        a.as_str()
    );
    assert_eq!(p.json(&["retry", &a])["status"], "queued");
    let out = p.cmd().args(["retry", &b]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_of(&out).contains("only failed or cancelled tasks can be retried"));

    let out = p.cmd().args(["status", "ffffffff"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_of(&out).contains("no task matches `ffffffff`"));
    // Two ids share their first hex digit: a one-digit prefix is ambiguous.
    let out = p.cmd().args(["status", &a[..1]]).output().unwrap();
    assert!(
        stderr_of(&out).contains("matches 2 tasks"),
        "{}",
        stderr_of(&out)
    );
}

#[test]
fn prompts_are_listed_shown_overridden_and_chosen_per_task() {
    let p = Project::new();
    let listed = p.json(&["prompts"]);
    let names: Vec<_> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    for name in [
        "unit_test",
        "type_hints",
        "error_handling",
        "retry_wrapper",
        "docs",
        "custom",
        "refine",
    ] {
        assert!(names.iter().any(|n| n == name), "{name} missing: {names:?}");
    }
    let shown = p
        .cmd()
        .args(["prompts", "show", "unit_test"])
        .output()
        .unwrap();
    assert!(
        stdout_of(&shown).contains("Write unit tests for {{ targets"),
        "{}",
        stdout_of(&shown)
    );
    let out = p.cmd().args(["prompts", "show", "nope"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr_of(&out).contains("unknown prompt `nope`; valid values:"),
        "{}",
        stderr_of(&out)
    );

    // A project override is used for the task's prompt.
    p.repo.write(".pitcrew/prompts/type_hints.j2", "{# Ours #}\nOUR OWN HINTS PROMPT for {{ targets | join(\", \") }}\n{% include \"_context.j2\" %}\n");
    let listed = p.json(&["prompts"]);
    let hints = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "type_hints")
        .unwrap();
    assert!(
        hints["source"]["project"]
            .as_str()
            .unwrap()
            .ends_with("type_hints.j2"),
        "{hints}"
    );
    let out = p
        .cmd()
        .args([
            "submit",
            "--kind",
            "refactor",
            "--target",
            "src/calc.py",
            "-d",
            "annotate",
            "--prompt",
            "typehints",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    p.submit("src/calc.py", &["--prompt", "type_hints"]);
    p.server.push(Reply::content(&reply_with_file(
        "tests/test_calc.py",
        GOOD_TEST,
    )));
    p.cmd().arg("run").assert().code(0);
    let prompt = p.server.requests()[0].prompt_text();
    assert!(
        prompt.contains("OUR OWN HINTS PROMPT for src/calc.py"),
        "{prompt}"
    );
    assert!(prompt.contains("def sign(x):"), "{prompt}");
}
