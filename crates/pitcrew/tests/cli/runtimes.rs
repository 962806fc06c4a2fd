//! External agent runtimes through the real binary: a stand-in OpenHands CLI (a Python script,
//! `fixtures/fake_openhands`) started by pitcrew in the task's worktree, confined, calling its
//! model through pitcrew's per-task gateway, which routes to the scripted provider. What it
//! changed is read from git and validated with real pytest like the built-in agent's files.

use std::io::Write;
use std::path::{Path, PathBuf};

use pitcrew_testkit::Reply;
use serde_json::Value;

use crate::adversarial::Fortress;
use crate::support::*;

fn fake_openhands() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cli/fixtures/fake_openhands")
}

/// `[runtimes.oh]`, the fake OpenHands acting out `mode`, as the project's runtime.
fn runtime_config(mode: &str) -> String {
    format!(
        "\n[runtime]\ndefault = \"oh\"\n\n[runtimes.oh]\ntype = \"openhands-cli\"\n\
         program = {:?}\ntimeout_secs = 60\nset = {{ FAKE_MODE = \"{mode}\" }}\n",
        fake_openhands().display().to_string()
    )
}

/// What the fake recorded about how it was started (kept with `--keep-worktrees`).
fn record(project: &Project, id: &str) -> Value {
    let scratch = files_under(&project.cache_home().join("pitcrew/agents"));
    let file = scratch
        .iter()
        .find(|p| p.to_string_lossy().contains(id) && p.ends_with("home/record.json"))
        .unwrap_or_else(|| panic!("no record of the agent's start among {scratch:?}"));
    serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap()
}

fn run(project: &Project, args: &[&str]) -> String {
    let out = project.cmd().args(args).output().unwrap();
    format!("{}{}", stdout_of(&out), stderr_of(&out))
}

#[test]
fn an_agent_works_through_the_gateway_and_only_its_verified_tests_are_committed() {
    for mode in ["tests", "tests-streamed"] {
        let project = Project::with_config(&runtime_config(mode));
        project
            .server
            .respond_with(|_| Reply::content(&reply_with_file("tests/test_calc.py", GOOD_TEST)));
        let id = project.submit("src/calc.py", &[]);
        let transcript = run(&project, &["run", "--keep-worktrees"]);
        let task = project.task(&id);
        assert_eq!(
            task["status"], "completed",
            "{mode}: {task:#}\n{transcript}"
        );

        // The commit holds the test file the agent wrote, nothing else.
        let branch = format!("pitcrew/{id}");
        let changed = project.repo.git(&["diff", "--name-only", "HEAD", &branch]);
        assert_eq!(changed.trim(), "tests/test_calc.py", "{mode}");

        // How the agent was started: the OpenHands headless command line, a provider-prefixed
        // model, the gateway with a per-task token, and no provider key anywhere.
        let started = record(&project, &id);
        let argv: Vec<&str> = started["argv"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(
            &argv[..4],
            ["--headless", "--json", "--override-with-envs", "-t"]
        );
        assert!(argv[4].contains("src/calc.py"), "{argv:?}");
        assert!(
            !argv[4].contains("fenced block"),
            "an agent edits files: {argv:?}"
        );
        let env = &started["env"];
        assert_eq!(env["LLM_MODEL"], "openai/pitcrew");
        assert_eq!(env["LLM_NATIVE_TOOL_CALLING"], "false");
        let token = env["LLM_API_KEY"].as_str().unwrap();
        assert!(token.starts_with("pcgw-"), "{token}");
        let base = env["LLM_BASE_URL"].as_str().unwrap();
        assert!(
            base.starts_with("http://127.0.0.1:") && base.ends_with("/v1"),
            "{base}"
        );
        assert!(
            env.get(KEY_VAR).is_none(),
            "the provider key's variable reached the agent"
        );
        assert!(
            !started.to_string().contains(SENTINEL_KEY),
            "the provider key reached the agent"
        );
        assert!(!transcript.contains(token), "the gateway token was printed");

        // The gateway called the provider with the real key and the real model id.
        let requests = project.server.requests();
        assert_eq!(requests.len(), 1, "{mode}");
        assert_eq!(
            requests[0].header("authorization"),
            Some(format!("Bearer {SENTINEL_KEY}").as_str())
        );
        assert_eq!(requests[0].model(), Some(MODEL_ID));

        // The attempt records the runtime, its command line (token redacted), the gateway's
        // calls and what they used.
        let attempt = &project.attempts(&id)[0];
        let runtime = &attempt["details"]["runtime"];
        assert_eq!(runtime["kind"], "openhands-cli", "{attempt:#}");
        assert_eq!(runtime["requests"], 1, "{attempt:#}");
        assert!(!runtime.to_string().contains(token));
        assert_eq!(attempt["model"], MODEL_ID, "{attempt:#}");
        // `show` says which runtime worked the attempt and how its run ended.
        let shown = run(&project, &["show", &id]);
        assert!(
            shown.contains("runtime oh (openhands-cli), 1 model request(s) through the gateway")
                && shown.contains("run 1  finished  exit 0"),
            "{shown}"
        );
        assert!(
            attempt["usage"]["tokens_in"].as_u64().unwrap() > 0,
            "{attempt:#}"
        );
    }
}

#[test]
fn an_agent_that_changes_the_code_under_test_adds_a_conftest_and_reaches_outside_is_refused() {
    let f = Fortress::with_config(&runtime_config("cheat"));
    let good = Reply::content(&reply_with_file("tests/test_calc.py", GOOD_TEST));
    let (id, transcript, _) = f.run_reply(good, &[]);
    let task = f.project().task(&id);
    assert_eq!(task["status"], "failed", "{task:#}\n{transcript}");
    assert_eq!(task["error_kind"], "policy_violation", "{task:#}");
    let error = task["last_error"].as_str().unwrap();
    assert!(
        error.contains("conftest.py") && error.contains("src/calc.py"),
        "{error}"
    );
    f.assert_rejected_by(&id, "change_set", &transcript);
    // The hook and the user's checkout were out of the agent's reach.
    f.assert_untouched(&id, &transcript);
    let runtime = f.project().attempts(&id)[0]["details"]["runtime"].to_string();
    assert_eq!(runtime.matches("denied 13").count(), 2, "{runtime}");
}

#[test]
fn bytecode_planted_where_git_does_not_look_is_gone_before_the_tests_run() {
    let project = Project::with_config(&runtime_config("pyc"));
    project.repo.write(".gitignore", "__pycache__/\n");
    project.repo.commit("ignore bytecode");
    // A wrong test: it passes only against the planted bytecode (double triples).
    let wrong = GOOD_TEST.replace("double(3) == 6", "double(3) == 9");
    project
        .server
        .respond_with(move |_| Reply::content(&reply_with_file("tests/test_calc.py", &wrong)));
    let id = project.submit("src/calc.py", &[]);
    let transcript = run(&project, &["run"]);
    let task = project.task(&id);
    assert_ne!(task["status"], "completed", "{task:#}\n{transcript}");
    let runtime = project.attempts(&id)[0]["details"]["runtime"].to_string();
    assert!(
        runtime.contains("planted"),
        "the attack did not run: {runtime}"
    );
    assert!(
        project.attempts(&id)[0]["findings"]
            .to_string()
            .contains("assert 6 == 9"),
        "{task:#}"
    );
}

#[test]
fn an_error_event_fails_the_attempt_whatever_the_exit_status_and_doing_nothing_is_no_success() {
    for (mode, kind) in [("error", "agent_error"), ("nothing", "no_changes")] {
        let project = Project::with_config(&runtime_config(mode));
        project
            .server
            .respond_with(|_| Reply::content(&reply_with_file("tests/test_calc.py", GOOD_TEST)));
        let id = project.submit("src/calc.py", &["--max-attempts", "2"]);
        let transcript = run(&project, &["run"]);
        let task = project.task(&id);
        assert_eq!(task["status"], "failed", "{mode}: {task:#}\n{transcript}");
        assert_eq!(task["error_kind"], kind, "{task:#}");
        // Another attempt was given: an agent may do better from a fresh start.
        assert_eq!(project.attempts(&id).len(), 2, "{task:#}");
        assert!(project.pitcrew_branches().is_empty());
    }
}

#[test]
fn a_hanging_agent_is_killed_at_its_time_limit_and_leaves_nothing_behind() {
    let config = runtime_config("hang").replace("timeout_secs = 60", "timeout_secs = 2");
    let project = Project::with_config(&config);
    let marker = format!("hang-{:016x}", fastrand::u64(..));
    let id = project.submit(
        "src/calc.py",
        &["--max-attempts", "1", "--description", &marker],
    );
    let transcript = run(&project, &["run"]);
    let task = project.task(&id);
    assert_eq!(task["status"], "failed", "{task:#}\n{transcript}");
    assert_eq!(task["error_kind"], "timeout", "{task:#}");
    // The agent's processes are gone, and so is its scratch directory.
    let alive: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).into_owned())
        .filter(|c| c.contains(&marker))
        .collect();
    assert!(alive.is_empty(), "{alive:?}");
    assert!(
        files_under(&project.cache_home().join("pitcrew/agents")).is_empty(),
        "scratch left behind"
    );
}

#[test]
fn stopping_pitcrew_kills_a_running_agent_and_removes_its_scratch() {
    let project = Project::with_config(&runtime_config("hang"));
    let marker = format!("stop-{:016x}", fastrand::u64(..));
    project.submit("src/calc.py", &["--description", &marker]);
    let child = project.spawn(&["run"]);
    let agents = project.cache_home().join("pitcrew/agents");
    let started = std::time::Instant::now();
    while !files_under(&agents)
        .iter()
        .any(|p| p.ends_with("home/record.json"))
    {
        assert!(started.elapsed().as_secs() < 30, "the agent never started");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Two signals: stop claiming, then give running tasks back at once.
    signal(&child, nix::sys::signal::Signal::SIGINT);
    std::thread::sleep(std::time::Duration::from_millis(200));
    signal(&child, nix::sys::signal::Signal::SIGINT);
    let out = child.wait_with_output().unwrap();
    let alive: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).into_owned())
        .filter(|c| c.contains(&marker))
        .collect();
    assert!(alive.is_empty(), "{alive:?}\n{}", stderr_of(&out));
    assert!(
        files_under(&agents).is_empty(),
        "scratch left behind: {:?}",
        files_under(&agents)
    );
}

#[test]
fn a_runtime_whose_program_is_missing_fails_the_task_at_once_naming_the_field() {
    let config = runtime_config("tests").replace(
        &format!("{:?}", fake_openhands().display().to_string()),
        "\"no-such-openhands-5f1c\"",
    );
    let project = Project::with_config(&config);
    let id = project.submit("src/calc.py", &[]);
    let transcript = run(&project, &["run"]);
    let task = project.task(&id);
    assert_eq!(task["status"], "failed", "{task:#}\n{transcript}");
    assert_eq!(task["error_kind"], "config", "{task:#}");
    let error = task["last_error"].as_str().unwrap();
    assert!(
        error.contains("runtimes.oh.program") && error.contains("no-such-openhands-5f1c"),
        "{error}"
    );
    // Not retried: no attempt can fix a missing program.
    assert_eq!(project.attempts(&id).len(), 1);
    assert!(project.server.requests().is_empty());
}

#[test]
fn a_task_names_a_runtime_the_configuration_has_or_is_refused_at_submit() {
    let project = Project::with_config(&runtime_config("tests"));
    let out = project
        .cmd()
        .args([
            "submit",
            "--kind",
            "unit_test",
            "--target",
            "src/calc.py",
            "--runtime",
            "ohh",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    let err = stderr_of(&out);
    assert!(
        err.contains("unknown runtime `ohh`") && err.contains("builtin, oh"),
        "{err}"
    );
    assert!(err.contains("did you mean"), "{err}");
    // `builtin` overrides the project's default for one task.
    let id = project.submit("src/calc.py", &["--runtime", "builtin"]);
    project
        .server
        .respond_with(|_| Reply::content(&reply_with_file("tests/test_calc.py", GOOD_TEST)));
    let transcript = run(&project, &["run"]);
    assert_eq!(project.task(&id)["status"], "completed", "{transcript}");
    assert!(project.attempts(&id)[0]["details"]["runtime"].is_null());
}

/// The real OpenHands CLI (PyPI `openhands`), when `PITCREW_TEST_OPENHANDS` names its
/// executable (`.ci/run` installs it): started by pitcrew headless in the worktree, confined,
/// its native tool calls translated by the gateway into text for the scripted model, which
/// answers with a terminal command writing the tests and then a finish call.
#[test]
fn the_real_openhands_cli_writes_tests_through_the_gateway() {
    let Some(openhands) = std::env::var_os("PITCREW_TEST_OPENHANDS") else {
        // Straight to stderr: the harness would swallow eprintln! of a passing test.
        let _ = writeln!(
            std::io::stderr(),
            "skipped: PITCREW_TEST_OPENHANDS is not set (the path of an `openhands` executable, \
             e.g. from `pip install openhands` in a Python 3.12 virtualenv), so the real \
             OpenHands CLI did not run"
        );
        return;
    };
    let project = Project::with_config(&format!(
        "\n[runtime]\ndefault = \"openhands\"\n\n[runtimes.openhands]\ntype = \"openhands-cli\"\n\
         program = {:?}\ntimeout_secs = 240\n",
        PathBuf::from(openhands).display().to_string()
    ));
    let write_tests = format!(
        "I will write the tests.\n<function=terminal>\n<parameter=command>mkdir -p tests && \
         cat > tests/test_calc.py <<'PYEOF'\n{GOOD_TEST}PYEOF</parameter>\n\
         <parameter=security_risk>LOW</parameter>\n</function>"
    );
    project.server.respond_with(move |request| {
        let seen = request.prompt_text();
        if seen.contains("EXECUTION RESULT of [terminal]") {
            Reply::content(
                "<function=finish>\n<parameter=message>The tests are written.</parameter>\n</function>",
            )
        } else {
            Reply::content(&write_tests)
        }
    });
    let id = project.submit("src/calc.py", &[]);
    let transcript = run(&project, &["run"]);
    let task = project.task(&id);
    assert_eq!(task["status"], "completed", "{task:#}\n{transcript}");
    let changed = project
        .repo
        .git(&["diff", "--name-only", "HEAD", &format!("pitcrew/{id}")]);
    assert_eq!(changed.trim(), "tests/test_calc.py");
    // The model saw OpenHands' tools described in text, never a `tools` field; every call
    // carried pitcrew's key, not the agent's token.
    let requests = project.server.requests();
    assert!(requests.len() >= 2, "{}", requests.len());
    for request in &requests {
        assert!(request.body.get("tools").is_none());
        assert_eq!(
            request.header("authorization"),
            Some(format!("Bearer {SENTINEL_KEY}").as_str())
        );
    }
    let attempt = &project.attempts(&id)[0];
    let runtime = &attempt["details"]["runtime"];
    assert_eq!(
        runtime["requests"].as_u64(),
        Some(requests.len() as u64),
        "{runtime:#}"
    );
    let transcript = runtime["transcript"].to_string();
    assert!(transcript.contains("\"kind\":\"finish\""), "{runtime:#}");
    assert!(
        !transcript.contains("\\u001b"),
        "terminal escapes kept: {runtime:#}"
    );
}
