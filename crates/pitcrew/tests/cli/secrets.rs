//! The API key reaches the provider's Authorization header and nothing else: not the queue,
//! not logs, not the worktree or the result, not the prompt, not a validation command.

use pitcrew_testkit::Reply;

use crate::support::*;

#[test]
fn the_api_key_never_leaves_the_authorization_header() {
    let env_dump = tempfile::tempdir().unwrap();
    let dump_file = env_dump.path().join("validation-env.txt");
    // The dump goes outside the worktree, into a directory the sandbox is told to allow.
    let p = Project::with_config(&format!(
        "\n[validation]\nsandbox_write = [{:?}]\n\n[[validation.commands]]\nid = \"dump_env\"\ncommand = \"env > {} && python3 -m py_compile {{files}}\"\n",
        env_dump.path().display().to_string(),
        dump_file.display()
    ));
    // The key comes from .env this time (which must not leak into child processes either).
    std::fs::write(p.path().join(".env"), format!("{KEY_VAR}={SENTINEL_KEY}\n")).unwrap();
    p.repo.write(".gitignore", ".env\n");
    p.repo.commit("ignore .env");
    p.server.push(Reply::content(&reply_with_file(
        "tests/test_calc.py",
        GOOD_TEST,
    )));
    p.server.push(Reply::content(
        "```python path=tests/test_other.py\ndef broken(:\n```",
    ));
    let id = p.submit("src/calc.py", &[]);
    let failing = p.submit("src/calc.py", &["--priority", "low"]);

    let mut transcript = String::new();
    let mut run = p.cmd();
    run.env_remove(KEY_VAR)
        .env("PITCREW_LOG", "debug")
        .arg("run");
    let out = run.output().unwrap();
    transcript.push_str(&stdout_of(&out));
    transcript.push_str(&stderr_of(&out));
    assert_eq!(out.status.code(), Some(1), "{transcript}");
    for args in [
        vec!["show", id.as_str(), "--diff"],
        vec!["show", failing.as_str(), "--json"],
        vec!["list", "--json"],
        vec!["queue"],
    ] {
        let out = p.cmd().env_remove(KEY_VAR).args(&args).output().unwrap();
        transcript.push_str(&stdout_of(&out));
        transcript.push_str(&stderr_of(&out));
    }
    assert_eq!(p.task(&id)["status"], "completed");
    assert_eq!(p.task(&failing)["status"], "failed");

    // It was used where it belongs.
    let requests = p.server.requests();
    assert_eq!(
        requests[0].header("authorization"),
        Some(format!("Bearer {SENTINEL_KEY}").as_str())
    );
    for r in &requests {
        assert!(
            !r.body.to_string().contains(SENTINEL_KEY),
            "the key is in a prompt"
        );
    }
    // And nowhere else.
    assert!(
        !transcript.contains(SENTINEL_KEY),
        "the key is in the output or logs"
    );
    for file in files_under(p.path()) {
        if file.ends_with(".env") {
            continue;
        }
        let bytes = std::fs::read(&file).unwrap();
        assert!(
            !bytes
                .windows(SENTINEL_KEY.len())
                .any(|w| w == SENTINEL_KEY.as_bytes()),
            "the key is in {}",
            file.display()
        );
    }
    let history = p.repo.git(&["log", "-p", "--all"]);
    assert!(!history.contains(SENTINEL_KEY), "the key is in a commit");
    let env_seen = std::fs::read_to_string(&dump_file).expect("the validation command ran");
    assert!(
        !env_seen.contains(SENTINEL_KEY),
        "the validation command saw the key"
    );
    assert!(
        !env_seen.contains(KEY_VAR),
        "the validation command saw the key's variable"
    );
    assert!(env_seen.contains("PATH="), "{env_seen}");
}

/// A token of another service in pitcrew's environment, under a name that looks secret.
const SERVICE_TOKEN: &str = "svc-token-3b8e1f0a-do-not-leak";
const SERVICE_VAR: &str = "MY_SERVICE_TOKEN";
/// A secret only `.env` holds.
const DOTENV_SECRET: &str = "dotenv-secret-9c4d2a7e-do-not-leak";
const DOTENV_VAR: &str = "DEPLOY_SECRET";
/// A store password, as it is (the URL carries it percent-encoded) and as a query parameter.
const PG_PASSWORD: &str = "pg/pass-sentinel-61f0a2";
const PG_PASSWORD_ENCODED: &str = "pg%2Fpass-sentinel-61f0a2";
const PG_QUERY_PASSWORD: &str = "pg-query-sentinel-7d3b9e";

/// `url` (`postgres://user@host…`) with `password` in its userinfo.
fn with_password(url: &str, password: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    match rest.split_once('@') {
        Some((user, host)) => {
            let user = user.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:{password}@{host}")
        }
        None => format!("{scheme}://postgres:{password}@{rest}"),
    }
}

/// Whether `haystack` contains `needle` anywhere.
fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Runs the leak scenario on the store `store_url` (`None`: the repository's SQLite file):
/// secrets in the environment and `.env`, echoed by the model and by a validation command
/// whose failure is fed back to the model, and a provider that echoes the key in its error.
/// Returns the project, everything pitcrew printed and logged, and the secrets to look for.
fn leak_scenario(
    store_url: Option<&str>,
    extra_secrets: &[&str],
) -> (Project, String, Vec<String>) {
    let mut secrets: Vec<String> = [SENTINEL_KEY, SERVICE_TOKEN, DOTENV_SECRET]
        .iter()
        .chain(extra_secrets)
        .map(|s| s.to_string())
        .collect();
    secrets.sort();
    secrets.dedup();
    // The command prints a file of the repository that holds the secrets, then fails: its
    // output becomes a finding, which goes back to the model in the next round.
    let p = Project::with_config(
        "\n[[validation.commands]]\nid = \"leaky\"\ncommand = \"cat leaky.txt; exit 1\"\n",
    );
    p.repo
        .write("leaky.txt", &format!("{}\n", secrets.join("\n")));
    p.repo.write(".gitignore", ".env\n");
    p.repo.commit("a file the validation command prints");
    std::fs::write(
        p.path().join(".env"),
        format!("{DOTENV_VAR}={DOTENV_SECRET}\n"),
    )
    .unwrap();

    let mut env: Vec<(&str, String)> = vec![
        (SERVICE_VAR, SERVICE_TOKEN.to_string()),
        ("PITCREW_MODELS_MAX_ITERATIONS", "2".to_string()),
        ("PITCREW_LOG", "trace".to_string()),
    ];
    if let Some(url) = store_url {
        env.push(("PITCREW_STORE_URL", url.to_string()));
    }
    let mut transcript = String::new();
    let mut pitcrew = |args: &[&str]| {
        let mut cmd = p.cmd();
        for (name, value) in &env {
            cmd.env(name, value);
        }
        let out = cmd.args(args).output().unwrap();
        transcript.push_str(&stdout_of(&out));
        transcript.push_str(&stderr_of(&out));
        out
    };

    // The model talks about the secrets in both rounds; the files are fine, the command not.
    let chatty = format!(
        "I noticed {} in the repository.\n\n{}\n\nAgain: {}\n",
        secrets.join(", "),
        reply_with_file("tests/test_calc.py", GOOD_TEST),
        secrets.join(" ")
    );
    p.server.push(Reply::content(&chatty));
    p.server.push(Reply::content(&chatty));
    // The provider echoes the key it rejects.
    p.server.push(Reply::status(
        401,
        serde_json::json!({"error": {"message": format!("Incorrect API key provided: {SENTINEL_KEY}"), "code": 401}}),
    ));
    let submit = |pitcrew: &mut dyn FnMut(&[&str]) -> std::process::Output, priority: &str| {
        let out = pitcrew(&[
            "submit",
            "--kind",
            "unit_test",
            "--target",
            "src/calc.py",
            "--priority",
            priority,
            "--json",
        ]);
        assert!(out.status.success(), "{}", stderr_of(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v[0]["id"].as_str().unwrap().to_string()
    };
    let echoed = submit(&mut pitcrew, "high");
    let rejected = submit(&mut pitcrew, "low");
    let run = pitcrew(&["run"]);
    assert_eq!(run.status.code(), Some(1), "{}", stderr_of(&run));

    let shown = pitcrew(&["show", &echoed, "--json"]);
    let attempt: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    let findings = attempt["attempts"][0]["findings"].to_string();
    assert!(
        findings.contains("leaky") && findings.contains("[REDACTED]"),
        "the command's output is a finding, redacted: {findings}"
    );
    let shown = pitcrew(&["show", &rejected, "--json"]);
    let attempt: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    let error = attempt["attempts"][0]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("Incorrect API key provided: [REDACTED]"),
        "the provider's error is kept, redacted: {error}"
    );
    for args in [
        vec!["show", echoed.as_str()],
        vec!["show", rejected.as_str()],
        vec!["status", echoed.as_str(), "--json"],
        vec!["list", "--json"],
        vec!["list"],
        vec!["queue"],
        vec!["report"],
        vec!["report", "--format", "json"],
        vec!["models", "--json"],
    ] {
        let out = pitcrew(&args);
        assert!(
            out.status.success(),
            "pitcrew {args:?}: {}",
            stderr_of(&out)
        );
    }

    // The key went where it belongs, and the refinement round carried the findings.
    let requests = p.server.requests();
    assert_eq!(requests.len(), 3, "two rounds and the rejected call");
    assert_eq!(
        requests[0].header("authorization"),
        Some(format!("Bearer {SENTINEL_KEY}").as_str())
    );
    assert!(
        requests[1].prompt_text().contains("[REDACTED]"),
        "the second round quotes the findings and the reply, redacted"
    );
    for (n, r) in requests.iter().enumerate() {
        let body = r.body.to_string();
        for secret in &secrets {
            assert!(
                !body.contains(secret.as_str()),
                "request {n} carries {secret}"
            );
        }
    }
    assert!(transcript.contains("TRACE"), "the logs ran at trace level");
    for secret in &secrets {
        assert!(
            !transcript.contains(secret.as_str()),
            "{secret} is in the output or logs"
        );
    }
    (p, transcript, secrets)
}

#[test]
fn secrets_of_the_environment_and_dotenv_are_redacted_everywhere() {
    let (p, _, secrets) = leak_scenario(None, &[]);
    let state = p.path().join(".pitcrew");
    let stores: Vec<_> = files_under(&state)
        .into_iter()
        .filter(|f| {
            f.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("pitcrew.db"))
        })
        .collect();
    assert!(!stores.is_empty(), "no store under {}", state.display());
    for file in stores {
        let bytes = std::fs::read(&file).unwrap();
        for secret in &secrets {
            assert!(
                !contains(&bytes, secret),
                "{secret} is in {}",
                file.display()
            );
        }
    }
}

#[test]
fn store_passwords_are_redacted_everywhere() {
    // Shown in an error without a server: the password in the userinfo and in the query.
    let p = Project::new();
    for url in [
        format!("postgres://app:{PG_PASSWORD_ENCODED}@127.0.0.1:1/queue"),
        format!("postgresql://app@127.0.0.1:1/queue?sslmode=disable&password={PG_QUERY_PASSWORD}"),
    ] {
        let out = p
            .cmd()
            .args(["--store", &url, "queue"])
            .env("PITCREW_LOG", "trace")
            .output()
            .unwrap();
        assert!(!out.status.success());
        let text = format!("{}{}", stdout_of(&out), stderr_of(&out));
        assert!(text.contains("127.0.0.1:1"), "the store is named: {text}");
        for secret in [PG_PASSWORD, PG_PASSWORD_ENCODED, PG_QUERY_PASSWORD] {
            assert!(!text.contains(secret), "{secret} is in: {text}");
        }
    }
    // A URL echoed by a command-line error (before any configuration is read).
    let url = format!("postgres://app:{PG_PASSWORD_ENCODED}@127.0.0.1:1/queue");
    let out = p.cmd().args(["list", "--status", &url]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let text = stderr_of(&out);
    assert!(
        text.contains("postgres://app:[REDACTED]@127.0.0.1:1"),
        "{text}"
    );

    let Some(base_url) = postgres_or_skip("the PostgreSQL part") else {
        return;
    };
    let schema = PgSchema::create(&base_url, "cli");
    // The test server trusts local connections: the passwords are carried, never checked.
    let url = format!(
        "{}&password={PG_QUERY_PASSWORD}",
        PgSchema::url_with(
            &with_password(&base_url, PG_PASSWORD_ENCODED),
            schema.name()
        )
    );
    let (_p, _, secrets) = leak_scenario(
        Some(&url),
        &[PG_PASSWORD, PG_PASSWORD_ENCODED, PG_QUERY_PASSWORD],
    );
    let dump = dump(&schema);
    assert!(dump.contains("[REDACTED]"), "the attempts are stored");
    for secret in &secrets {
        assert!(!dump.contains(secret.as_str()), "{secret} is in the store");
    }
}
