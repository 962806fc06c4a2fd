//! The API key reaches the provider's Authorization header and nothing else: not the queue,
//! not logs, not the worktree or the result, not the prompt, not a validation command.

use pitcrew_testkit::Reply;

use crate::support::*;

#[test]
fn the_api_key_never_leaves_the_authorization_header() {
    let env_dump = tempfile::tempdir().unwrap();
    let dump_file = env_dump.path().join("validation-env.txt");
    let p = Project::with_config(&format!(
        "\n[[validation.commands]]\nid = \"dump_env\"\ncommand = \"env > {} && python3 -m py_compile {{files}}\"\n",
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
