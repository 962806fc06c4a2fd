//! Configuration mistakes are exit code 2 with the file, the field and the valid values.

use crate::support::*;

#[test]
fn init_writes_a_commented_config_that_loads_and_refuses_to_overwrite() {
    let repo = pitcrew_testkit::TempRepo::with_files(&[("a.py", "x = 1\n")]);
    let pitcrew = || {
        let mut cmd = assert_cmd::Command::new(env!("CARGO_BIN_EXE_pitcrew"));
        cmd.current_dir(repo.path()).env_remove("PITCREW_CONFIG");
        cmd
    };
    pitcrew().arg("init").assert().success();
    let text = std::fs::read_to_string(repo.path().join("pitcrew.toml")).unwrap();
    assert!(text.contains("# Where the queue lives."));
    assert!(text.contains("deepseek/deepseek-chat-v3.1:free"));
    pitcrew()
        .arg("init")
        .assert()
        .code(2)
        .stderr(predicates::str::contains("--force"));
    pitcrew().args(["init", "--force"]).assert().success();
    pitcrew().args(["queue", "--json"]).assert().success();
    assert_eq!(repo.git(&["status", "--porcelain"]), "?? pitcrew.toml");
}

#[test]
fn an_unknown_key_names_the_file_line_and_valid_fields() {
    let p = Project::new();
    let path = p.path().join("pitcrew.toml");
    let config = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("workerz = 3\n{config}")).unwrap();
    let out = p.cmd().arg("list").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = stderr_of(&out);
    assert!(stderr.contains("pitcrew.toml"), "{stderr}");
    assert!(stderr.contains("line 1"), "{stderr}");
    assert!(stderr.contains("unknown field `workerz`"), "{stderr}");
    assert!(stderr.contains("`workers`"), "{stderr}");

    std::fs::write(&path, format!("{config}lease_ttl = 3\n")).unwrap();
    let out = p.cmd().arg("list").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = stderr_of(&out);
    let appended_line = format!("line {}", config.lines().count() + 1);
    assert!(stderr.contains(&appended_line), "{stderr}");
    assert!(
        stderr.contains("unknown field `lease_ttl`, expected one of `count`, `lease_ttl_secs`"),
        "{stderr}"
    );
}

#[test]
fn an_unknown_provider_or_default_preset_lists_the_valid_ones() {
    let p = Project::new();
    let path = p.path().join("pitcrew.toml");
    let config = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        config.replace("provider = \"local\"", "provider = \"locall\""),
    )
    .unwrap();
    let out = p.cmd().arg("list").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = stderr_of(&out);
    assert!(stderr.contains("presets.local.provider"), "{stderr}");
    assert!(
        stderr
            .contains("unknown provider `locall`; valid values: local, ollama, openai, openrouter"),
        "{stderr}"
    );

    std::fs::write(
        &path,
        config.replace("default = \"local\"", "default = \"nope\""),
    )
    .unwrap();
    let out = p.cmd().arg("list").output().unwrap();
    assert!(
        stderr_of(&out).contains("models.default"),
        "{}",
        stderr_of(&out)
    );
    assert!(
        stderr_of(&out).contains("unknown model preset `nope`; valid values: deepseek-r1"),
        "{}",
        stderr_of(&out)
    );
}

#[test]
fn environment_overrides_apply_and_unknown_ones_are_errors() {
    let p = Project::new();
    let out = p
        .cmd()
        .env("PITCREW_WORKERS_COUNT", "lots")
        .arg("list")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr_of(&out).contains("PITCREW_WORKERS_COUNT: expected an integer"),
        "{}",
        stderr_of(&out)
    );
    let out = p
        .cmd()
        .env("PITCREW_WORKER_COUNT", "2")
        .arg("list")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr_of(&out).contains("valid names:"),
        "{}",
        stderr_of(&out)
    );
    assert!(
        stderr_of(&out).contains("PITCREW_WORKERS_COUNT"),
        "{}",
        stderr_of(&out)
    );

    let elsewhere = p.scratch.path().join("elsewhere.db");
    let store = format!("sqlite://{}", elsewhere.display());
    p.cmd()
        .env("PITCREW_STORE_URL", &store)
        .args(["submit", "--kind", "unit_test", "--target", "src/calc.py"])
        .assert()
        .success();
    assert!(elsewhere.exists());
    assert_eq!(p.json(&["list"]), serde_json::json!([]));
    let out = p
        .cmd()
        .args(["--store", &store, "list", "--json"])
        .output()
        .unwrap();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn run_refuses_to_start_when_a_needed_key_is_missing() {
    let p = Project::new();
    p.submit("src/calc.py", &[]);
    let out = p.cmd().env_remove(KEY_VAR).arg("run").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = stderr_of(&out);
    assert!(
        stderr.contains("no model can serve tasks preferring `local`"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{KEY_VAR} is not set")),
        "{stderr}"
    );
    assert!(p.server.requests().is_empty());
    assert_eq!(p.json(&["list"])[0]["status"], "queued");
}

#[test]
fn outside_a_repository_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    assert_cmd::Command::new(env!("CARGO_BIN_EXE_pitcrew"))
        .current_dir(dir.path())
        .env("GIT_CEILING_DIRECTORIES", dir.path().parent().unwrap())
        .arg("list")
        .assert()
        .code(2)
        .stderr(predicates::str::contains("not inside a git repository"));
}
