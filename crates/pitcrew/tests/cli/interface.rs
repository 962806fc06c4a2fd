//! The interface a person meets on the first day: short task handles, tables that fit, `--json`
//! on every read command, configuration errors that say where, progress that does not lie, and
//! hints where there is nothing to do yet.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use pitcrew_testkit::{Gate, Reply, TempRepo};

use crate::support::*;

/// `pitcrew` in `dir`, with none of the developer's pitcrew or provider settings.
fn bare_cmd(dir: &std::path::Path) -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::new(env!("CARGO_BIN_EXE_pitcrew"));
    cmd.current_dir(dir);
    for (name, _) in std::env::vars() {
        if name.starts_with("PITCREW_") || name.ends_with("_API_KEY") || name == "RUST_LOG" {
            cmd.env_remove(&name);
        }
    }
    cmd.env("NO_COLOR", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1");
    cmd
}

/// Submits a unit_test task for src/calc.py with `extra` flags; returns (id, seq).
fn submit_one(p: &Project, extra: &[&str]) -> (String, u64) {
    let mut args = vec!["submit", "--kind", "unit_test", "--target", "src/calc.py"];
    args.extend_from_slice(extra);
    let out = p.json(&args);
    (
        out[0]["id"].as_str().unwrap().to_string(),
        out[0]["seq"]
            .as_u64()
            .unwrap_or_else(|| panic!("submit --json gives no seq: {out}")),
    )
}

fn run_ok(p: &Project, args: &[&str]) -> std::process::Output {
    let out = p.cmd().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "pitcrew {args:?}: {}{}",
        stdout_of(&out),
        stderr_of(&out)
    );
    out
}

#[test]
fn tasks_have_short_handles_accepted_wherever_an_id_is() {
    let p = Project::new();
    let out = run_ok(
        &p,
        &["submit", "--kind", "unit_test", "--target", "src/calc.py"],
    );
    // The message names the handle.
    assert!(stdout_of(&out).starts_with("#1 "), "{}", stdout_of(&out));
    let (second, seq) = submit_one(&p, &["--priority", "low"]);
    assert_eq!(seq, 2);
    let (third, _) = submit_one(&p, &["--priority", "low"]);

    // `#2`, `2`, the full id and a unique prefix name the same task.
    for name in ["#2", "2", second.as_str(), &second[..second.len() - 1]] {
        let task = p.json(&["status", name]);
        assert_eq!(task["id"], second, "{name}");
        assert_eq!(task["seq"], 2, "{name}");
    }
    let status = stdout_of(&run_ok(&p, &["status", "#2"]));
    assert!(status.contains("#2"), "{status}");
    assert!(p.json(&["show", "2"])["task"]["id"] == second);

    // Every table shows handles; piped, no id wraps over lines.
    let list = stdout_of(&run_ok(&p, &["list"]));
    for handle in ["#1", "#2", "#3"] {
        assert!(list.contains(handle), "{list}");
    }
    assert!(
        !list.contains(&second),
        "the full id fills the table: {list}"
    );

    // cancel and retry take handles and say which task they touched.
    let cancelled = stdout_of(&run_ok(&p, &["cancel", "#3"]));
    assert!(cancelled.contains("#3"), "{cancelled}");
    assert_eq!(p.task(&third)["status"], "cancelled");
    let retried = stdout_of(&run_ok(&p, &["retry", "3"]));
    assert!(retried.contains("#3"), "{retried}");
    run_ok(&p, &["cancel", "3"]);
    run_ok(&p, &["cancel", "#2"]);

    // A handle that does not exist is named as such.
    let out = p.cmd().args(["status", "#99"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_of(&out).contains("#99"), "{}", stderr_of(&out));

    // --follow, diff and apply take them too; progress lines show them.
    p.server.push(Reply::content(&reply_with_file(
        "tests/test_calc.py",
        GOOD_TEST,
    )));
    let out = run_ok(&p, &["run", "--follow", "#1"]);
    let stderr = stderr_of(&out);
    assert!(stderr.contains("[completed]  #1"), "{stderr}");
    assert!(stderr.contains("  │ def test_sign():"), "{stderr}");
    let diff = stdout_of(&run_ok(&p, &["diff", "#1"]));
    assert!(diff.contains("+++ b/tests/test_calc.py"), "{diff}");
    let applied = stdout_of(&run_ok(&p, &["apply", "1"]));
    assert!(applied.contains("#1"), "{applied}");
    assert!(p.path().join("tests/test_calc.py").exists());
    let report = stdout_of(&run_ok(&p, &["report"]));
    assert!(report.contains("| #1 |"), "{report}");
}

#[test]
fn tables_show_a_description_and_fit_a_pipe() {
    let p = Project::new();
    let long = "Cover the sign function's three branches and the doubling of negative \
                numbers, floats and very large integers without overflow surprises";
    submit_one(&p, &["--description", long]);
    submit_one(&p, &["--description", "short and sweet"]);
    for (columns, width) in [(None, 100), (Some("80"), 80)] {
        let mut cmd = p.cmd();
        if let Some(c) = columns {
            cmd.env("COLUMNS", c);
        } else {
            cmd.env_remove("COLUMNS");
        }
        let out = cmd.arg("list").output().unwrap();
        let text = stdout_of(&out);
        assert!(text.contains("description"), "{text}");
        // Narrower, the description wraps; it is not cut further.
        assert!(text.contains("short and"), "{text}");
        assert!(text.contains("Cover the"), "{text}");
        if columns.is_none() {
            assert!(text.contains("short and sweet"), "{text}");
        }
        for line in text.lines() {
            assert!(
                line.chars().count() <= width,
                "{} columns (at most {width}): {line}\n{text}",
                line.chars().count()
            );
        }
    }
    let report = stdout_of(&run_ok(&p, &["report"]));
    assert!(report.contains("| description |"), "{report}");
    assert!(report.contains("short and sweet"), "{report}");
}

/// The commands of README's table, by their first word (`models sync` and `prompts show`
/// count as their own).
fn readme_commands() -> Vec<String> {
    let readme = include_str!("../../../../README.md");
    let section = readme
        .split("## Commands")
        .nth(1)
        .expect("README has a Commands section");
    let mut commands = Vec::new();
    for line in section.lines().skip_while(|l| !l.starts_with('|')) {
        if !line.starts_with('|') {
            break;
        }
        let first_cell = line.split('|').nth(1).unwrap_or("");
        // Every `…` span that starts a command (not an alias in parentheses).
        for span in first_cell.split('`').skip(1).step_by(2) {
            let words: Vec<&str> = span.split_whitespace().collect();
            let Some(first) = words.first() else { continue };
            if !first.chars().all(|c| c.is_ascii_lowercase() || c == '-') {
                continue;
            }
            let is_word = |w: &str| {
                w.starts_with(|c: char| c.is_ascii_lowercase())
                    && w.chars().all(|c| c.is_ascii_lowercase() || c == '-')
            };
            let name = match words.get(1) {
                Some(sub) if is_word(sub) => format!("{first} {sub}"),
                _ => first.to_string(),
            };
            if !commands.contains(&name) {
                commands.push(name);
            }
        }
    }
    commands
}

#[test]
fn every_command_in_the_readme_exists_and_every_read_command_takes_json() {
    const READ: &[&str] = &[
        "status",
        "list",
        "queue",
        "show",
        "diff",
        "report",
        "metrics",
        "models",
        "select-model",
        "prompts",
        "prompts show",
        "webhooks",
    ];
    const WRITE: &[&str] = &[
        "init",
        "submit",
        "submit-task",
        "plan unit-tests",
        "get-status",
        "cancel",
        "retry",
        "run",
        "run-engine",
        "worker",
        "apply",
        "validate",
        "models sync",
        "migrate",
        "queue-stats",
        "demo",
        "sim",
        "serve",
    ];
    let mut readme = readme_commands();
    readme.sort();
    let mut known: Vec<String> = READ.iter().chain(WRITE).map(|s| s.to_string()).collect();
    known.sort();
    assert_eq!(
        readme, known,
        "README's command table changed: classify the commands here"
    );
    for command in &readme {
        let mut args: Vec<&str> = command.split(' ').collect();
        args.push("--help");
        assert_cmd::Command::new(env!("CARGO_BIN_EXE_pitcrew"))
            .args(&args)
            .assert()
            .success();
    }

    let p = Project::new();
    p.server.push(Reply::content(&reply_with_file(
        "tests/test_calc.py",
        GOOD_TEST,
    )));
    let (id, _) = submit_one(&p, &[]);
    run_ok(&p, &["run"]);
    for command in READ {
        let mut args: Vec<&str> = command.split(' ').collect();
        match *command {
            "status" | "show" | "diff" => args.push(&id),
            "prompts show" => args.push("unit_test"),
            _ => {}
        }
        let value = p.json(&args);
        assert!(!value.is_null(), "{command}: {value}");
        match *command {
            "diff" => assert!(
                value["patch"]
                    .as_str()
                    .is_some_and(|d| d.contains("+++ b/tests/test_calc.py")),
                "{value}"
            ),
            "prompts show" => assert!(value["source"].as_str().is_some(), "{value}"),
            "list" => assert_eq!(value[0]["id"], id),
            _ => {}
        }
    }
}

#[test]
fn the_exit_codes_of_the_readme_hold() {
    let p = Project::new();
    // 0: every task the command finished completed.
    p.server.push(Reply::content(&reply_with_file(
        "tests/test_calc.py",
        GOOD_TEST,
    )));
    submit_one(&p, &[]);
    p.cmd().arg("run").assert().code(0);
    // 1: a task failed.
    p.server.push(Reply::content("no code here, sorry"));
    submit_one(&p, &["--max-attempts", "1"]);
    p.cmd().arg("run").assert().code(1);
    // 1: an error occurred.
    p.cmd().args(["status", "#42"]).assert().code(1);
    // 2: the command line or the configuration is wrong.
    p.cmd().args(["list", "--frobnicate"]).assert().code(2);
    p.cmd()
        .args(["--store", "mysql://x", "list"])
        .assert()
        .code(2);
    p.cmd()
        .env("PITCREW_WORKERS_COUNT", "0")
        .arg("list")
        .assert()
        .code(2);
}

/// The number of the line of `text` that contains `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("`{needle}` not in:\n{text}"))
        + 1
}

fn stderr_with(p: &Project, config: &str, env: &[(&str, &str)], args: &[&str]) -> String {
    let path = p.path().join("pitcrew.toml");
    std::fs::write(&path, config).unwrap();
    let mut cmd = p.cmd();
    cmd.envs(env.iter().copied()).args(args);
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    stderr_of(&out)
}

#[test]
fn configuration_errors_name_the_file_and_line_or_the_variable() {
    let p = Project::new();
    let path = p.path().join("pitcrew.toml");
    let config = std::fs::read_to_string(&path).unwrap();
    let file = path.display().to_string();

    // An unknown provider: the line, and a did-you-mean.
    let bad = config.replace("provider = \"local\"", "provider = \"locall\"");
    let stderr = stderr_with(&p, &bad, &[], &["list"]);
    let line = line_of(&bad, "provider = \"locall\"");
    assert!(stderr.contains(&format!("{file}:{line}:")), "{stderr}");
    assert!(stderr.contains("did you mean `local`?"), "{stderr}");

    // An unknown default preset in the file.
    let bad = config.replace("default = \"local\"", "default = \"locl\"");
    let stderr = stderr_with(&p, &bad, &[], &["list"]);
    let line = line_of(&bad, "default = \"locl\"");
    assert!(stderr.contains(&format!("{file}:{line}:")), "{stderr}");
    assert!(stderr.contains("did you mean `local`?"), "{stderr}");

    // An unknown model in the fallback chain.
    let bad = format!("{config}\n[registry]\nfallback = [\"local\", \"nosuch/model\"]\n");
    let stderr = stderr_with(&p, &bad, &[], &["list"]);
    let line = line_of(&bad, "nosuch/model");
    assert!(stderr.contains(&format!("{file}:{line}:")), "{stderr}");
    assert!(stderr.contains("nosuch/model"), "{stderr}");

    // An unknown preset from the environment is the variable's fault, not the file's.
    let stderr = stderr_with(
        &p,
        &config,
        &[("PITCREW_MODELS_DEFAULT", "nosuch")],
        &["list"],
    );
    assert!(
        stderr.contains("environment variable PITCREW_MODELS_DEFAULT"),
        "{stderr}"
    );
    assert!(!stderr.contains(&file), "{stderr}");

    // A mistyped variable: the closest names first.
    let stderr = stderr_with(&p, &config, &[("PITCREW_WORKER_COUNT", "2")], &["list"]);
    assert!(
        stderr.contains("did you mean PITCREW_WORKERS_COUNT?"),
        "{stderr}"
    );
    let stderr = stderr_with(
        &p,
        &config,
        &[("PITCREW_MODELS_TEMPRATURE", "0.1")],
        &["list"],
    );
    assert!(
        stderr.contains("did you mean PITCREW_MODELS_TEMPERATURE?"),
        "{stderr}"
    );

    // A store URL of an unknown kind is a usage error, wherever it comes from.
    let stderr = stderr_with(&p, &config, &[], &["--store", "mysql://x", "list"]);
    assert!(stderr.contains("mysql://x"), "{stderr}");
    assert!(stderr.contains("--store"), "{stderr}");
    let stderr = stderr_with(
        &p,
        &config,
        &[("PITCREW_STORE_URL", "mysql://x")],
        &["list"],
    );
    assert!(stderr.contains("PITCREW_STORE_URL"), "{stderr}");
    let bad = format!("{config}\n[store]\nurl = \"mysql://x\"\n");
    let stderr = stderr_with(&p, &bad, &[], &["list"]);
    let line = line_of(&bad, "mysql://x");
    assert!(stderr.contains(&format!("{file}:{line}:")), "{stderr}");

    // A missing configuration file: the OS error once.
    let stderr = stderr_with(&p, &config, &[], &["--config", "/nonexistent.toml", "list"]);
    assert_eq!(
        stderr.matches("No such file or directory").count(),
        1,
        "{stderr}"
    );
}

#[test]
fn logs_carry_no_colour_codes_off_a_terminal() {
    let p = Project::new();
    let out = p
        .cmd()
        .env_remove("NO_COLOR")
        .env("PITCREW_LOG", "debug")
        .args(["run"])
        .output()
        .unwrap();
    let stderr = stderr_of(&out);
    assert!(
        stderr.contains("DEBUG") || stderr.contains("INFO"),
        "no log lines to check: {stderr}"
    );
    assert!(
        !stderr.contains('\u{1b}'),
        "ANSI codes in a pipe: {stderr:?}"
    );
}

/// Runs `pitcrew args…` in `p` on a pseudo-terminal (120 columns), with `env` besides the
/// project's, and returns what it wrote.
fn on_a_terminal(p: &Project, args: &[&str], env: &[(&str, &str)]) -> String {
    const SCRIPT: &str = r#"
import fcntl, os, pty, struct, sys, termios
pid, fd = pty.fork()
if pid == 0:
    fcntl.ioctl(1, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    os.execv(sys.argv[1], sys.argv[1:])
out = bytearray()
while True:
    try:
        data = os.read(fd, 65536)
    except OSError:
        break
    if not data:
        break
    out += data
os.waitpid(pid, 0)
sys.stdout.buffer.write(bytes(out))
"#;
    let bin = env!("CARGO_BIN_EXE_pitcrew");
    let mut python = std::process::Command::new("python3");
    python
        .args(["-c", SCRIPT, bin])
        .args(args)
        .current_dir(p.path());
    // The environment `Project::cmd` gives pitcrew.
    for (name, _) in std::env::vars() {
        if name.starts_with("PITCREW_") || name == "RUST_LOG" {
            python.env_remove(&name);
        }
    }
    python
        .env(KEY_VAR, SENTINEL_KEY)
        .env("PITCREW_VALIDATION_RERUNS", "1")
        .env("PITCREW_WORKERS_SHUTDOWN_GRACE_SECS", "1")
        .env("NO_COLOR", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("XDG_CACHE_HOME", p.scratch.path().join("cache"))
        .envs(env.iter().copied());
    let out = python.output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Seconds in an ETA as shown: `12s`, `1m 05s`, `3m`, `2h`, `7 minutes`.
fn eta_seconds(text: &str) -> Option<u64> {
    let mut total = 0;
    let mut found = false;
    let mut rest = text.trim();
    while let Some(end) = rest.find(|c: char| !c.is_ascii_digit()) {
        if end == 0 {
            break;
        }
        let n: u64 = rest[..end].parse().ok()?;
        let unit = rest[end..].trim_start();
        let factor = match unit.chars().next()? {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return None,
        };
        total += n * factor;
        found = true;
        rest = unit
            .trim_start_matches(|c: char| c.is_ascii_alphabetic())
            .trim_start();
    }
    found.then_some(total)
}

#[test]
fn the_eta_stays_put_while_a_slow_task_runs() {
    let p = Project::new();
    let quick = || Reply::content(&reply_with_file("tests/test_calc.py", GOOD_TEST));
    p.server.push(quick());
    p.server.push(quick().delay(Duration::from_secs(14)));
    p.server.push(quick());
    for _ in 0..3 {
        submit_one(&p, &[]);
    }
    let started = Instant::now();
    // The slow reply must not count as a stalled stream.
    let screen = on_a_terminal(
        &p,
        &["run", "--workers", "1"],
        &[
            ("PITCREW_MODELS_IDLE_TIMEOUT_SECS", "60"),
            ("PITCREW_MODELS_REQUEST_TIMEOUT_SECS", "60"),
        ],
    );
    let took = started.elapsed();
    assert!(screen.contains("3 completed"), "{screen}");
    let etas: Vec<u64> = screen
        .split("ETA ")
        .skip(1)
        .filter_map(|rest| eta_seconds(rest.split(['\r', '\n', '\u{1b}']).next()?))
        .collect();
    assert!(!etas.is_empty(), "no ETA shown: {screen:?}");
    let worst = *etas.iter().max().unwrap();
    assert!(
        worst <= took.as_secs() + 10,
        "an ETA of {worst}s in a run of {}s: {etas:?}",
        took.as_secs()
    );
}

#[test]
fn after_a_stop_the_summary_says_how_many_tasks_wait_and_how_to_resume() {
    let p = Project::new();
    let gate = Gate::new();
    let (_, child) = worker_stuck_in_a_call(&p, &gate, "stopper", GOOD_TEST);
    submit_one(&p, &[]);
    submit_one(&p, &[]);
    signal(&child, Signal::SIGINT);
    std::thread::sleep(Duration::from_millis(300));
    gate.open();
    let out = child.wait_with_output().unwrap();
    let stdout = stdout_of(&out);
    // The two never claimed, and the first if its grace period ran out.
    let queued = p.json(&["list", "--status", "queued"]);
    let queued = queued.as_array().unwrap().len();
    assert!(queued >= 2, "{queued}");
    assert!(
        stdout.contains(&format!(
            "{queued} tasks still queued: `pitcrew run` resumes them"
        )),
        "{stdout}{}",
        stderr_of(&out)
    );
}

#[test]
fn first_steps_get_hints_instead_of_puzzles() {
    // No key and no configuration: say which key to set, or where to configure another.
    let repo = TempRepo::with_files(&[("src/calc.py", CALC_PY)]);
    bare_cmd(repo.path())
        .args(["submit", "--kind", "unit_test", "--target", "src/calc.py"])
        .assert()
        .success();
    let out = bare_cmd(repo.path()).arg("run").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = stderr_of(&out);
    assert!(stderr.contains("OPENROUTER_API_KEY"), "{stderr}");
    assert!(stderr.contains("pitcrew init"), "{stderr}");
    assert!(!stderr.contains("deepseek-v3"), "{stderr}");
    assert!(!stderr.contains("fallback chain"), "{stderr}");

    // An empty queue: how to add work.
    let p = Project::new();
    let out = run_ok(&p, &["run"]);
    let stderr = stderr_of(&out);
    assert!(stderr.contains("queue is empty"), "{stderr}");
    assert!(stderr.contains("pitcrew submit"), "{stderr}");

    // A repository without commits.
    let empty = TempRepo::new();
    empty.write("calc.py", CALC_PY);
    let out = bare_cmd(empty.path())
        .args(["submit", "--kind", "unit_test", "--target", "calc.py"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr_of(&out).contains("has no commits"),
        "{}",
        stderr_of(&out)
    );
}

/// Serves `body` as JSON to every request on a local port, in a thread; returns the base URL.
fn serve_json(body: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.flush();
            let mut rest = Vec::new();
            let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
            let _ = stream.read_to_end(&mut rest);
        }
    });
    format!("http://{addr}/v1")
}

#[test]
fn models_sync_counts_what_an_openai_style_server_lists() {
    // What Ollama, vLLM and llama.cpp answer: ids only, no prices or context windows.
    let url = serve_json(
        r#"{"object": "list", "data": [{"id": "qwen2.5-coder:7b", "object": "model", "created": 1, "owned_by": "library"}]}"#,
    );
    let p = Project::with_config(&format!(
        "\n[providers.ollama]\nbase_url = \"{url}\"\napi_key_env = \"\"\n"
    ));
    let out = run_ok(&p, &["models", "sync", "--provider", "ollama"]);
    let stdout = stdout_of(&out);
    assert!(stdout.contains("1 model(s) listed by ollama"), "{stdout}");
    let models = p.json(&["models"]);
    let qwen = models
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "qwen2.5-coder:7b")
        .unwrap_or_else(|| panic!("the listed model is not in the registry: {models}"));
    assert_eq!(qwen["provider"], "ollama");
    assert_eq!(qwen["free"], true);
    submit_one(&p, &["--model", "qwen2.5-coder:7b"]);

    // A keyed provider's unpriced models are listed, and said to be left out.
    let url = serve_json(r#"{"data": [{"id": "gpt-9", "object": "model"}]}"#);
    let p = Project::with_config(&format!(
        "\n[providers.openai]\nbase_url = \"{url}\"\napi_key_env = \"{KEY_VAR}\"\n"
    ));
    let out = run_ok(&p, &["models", "sync", "--provider", "openai"]);
    let stdout = stdout_of(&out);
    assert!(stdout.contains("1 model(s) listed by openai"), "{stdout}");
    assert!(stdout.contains("gpt-9"), "{stdout}");
}
