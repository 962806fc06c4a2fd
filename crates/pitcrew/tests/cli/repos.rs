//! Repositories by identity: a task records its repository's remote, so a worker whose clone
//! is at another path (another machine), or who has none, still runs it.

use std::path::Path;

use pitcrew_testkit::Reply;

use crate::support::*;

fn git(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", stderr_of(&out));
}

#[test]
fn workers_whose_clone_is_elsewhere_or_missing_complete_the_submitter_s_tasks() {
    let p = Project::new();
    p.server
        .respond_with(|_| Reply::content(&reply_with_file("tests/test_calc.py", GOOD_TEST)));
    // The team's remote, and the submitter's clone pointing at it with a credential in the URL
    // that must never be stored.
    let remote = p.scratch.path().join("calc.git");
    git(
        p.scratch.path(),
        &[
            "clone",
            "--quiet",
            "--bare",
            p.path().to_str().unwrap(),
            "calc.git",
        ],
    );
    let remote_url = format!("file://{}", remote.display());
    let with_credential = format!("file://builder:s3cr3t-token@{}", remote.display());
    git(p.path(), &["remote", "add", "origin", &with_credential]);
    let store = format!("sqlite://{}", p.scratch.path().join("queue.db").display());
    let submit = |target: &str| {
        let out = p
            .cmd()
            .args([
                "--store",
                &store,
                "submit",
                "--kind",
                "unit_test",
                "--target",
                target,
                "--json",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr_of(&out));
        let submitted: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        submitted[0]["id"].as_str().unwrap().to_string()
    };
    let first = submit("src/calc.py");
    let task = p.json(&["--store", &store, "show", &first])["task"].clone();
    assert_eq!(task["repo_url"], remote_url.as_str(), "{task}");

    // Another machine: the submitter's path does not exist there, and its clone is elsewhere.
    let submitter = p.path().to_path_buf();
    let away = p.scratch.path().join("submitter-away");
    let elsewhere = p.scratch.path().join("elsewhere");
    git(
        p.scratch.path(),
        &["clone", "--quiet", &remote_url, elsewhere.to_str().unwrap()],
    );
    let run_elsewhere = |config_extra: &str| {
        std::fs::rename(&submitter, &away).unwrap();
        let config = std::fs::read_to_string(elsewhere.join("pitcrew.toml")).unwrap();
        std::fs::write(
            elsewhere.join("pitcrew.toml"),
            format!("{config}{config_extra}"),
        )
        .unwrap();
        let out = p
            .cmd()
            .current_dir(&elsewhere)
            .args(["--store", &store, "run", "--workers", "1"])
            .output()
            .unwrap();
        std::fs::write(elsewhere.join("pitcrew.toml"), config).unwrap();
        std::fs::rename(&away, &submitter).unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    };
    let branches_in = |dir: &Path| {
        let out = std::process::Command::new("git")
            .args(["branch", "--list", "pitcrew/*", "--format=%(refname:short)"])
            .current_dir(dir)
            .output()
            .unwrap();
        stdout_of(&out)
    };

    // Without [repos], the worker clones the remote into its cache and works there.
    run_elsewhere("");
    assert_eq!(
        p.json(&["--store", &store, "show", &first])["task"]["status"],
        "completed"
    );
    let clones: Vec<_> = std::fs::read_dir(p.scratch.path().join("cache/pitcrew/repos"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(clones.len(), 1, "{clones:?}");
    assert!(branches_in(&clones[0]).contains(&format!("pitcrew/{first}")));
    // A crash that kept the branch from being made in that clone is mended by the next run.
    git(&clones[0], &["branch", "-D", &format!("pitcrew/{first}")]);
    run_elsewhere("");
    assert!(branches_in(&clones[0]).contains(&format!("pitcrew/{first}")));

    // With [repos], the worker uses its own clone.
    let second = submit("src/calc.py");
    run_elsewhere(&format!(
        "\n[repos]\n\"{remote_url}\" = \"{}\"\n",
        elsewhere.display()
    ));
    assert_eq!(
        p.json(&["--store", &store, "show", &second])["task"]["status"],
        "completed"
    );
    assert!(branches_in(&elsewhere).contains(&format!("pitcrew/{second}")));

    // Back on the submitter's machine, the result applies from the store.
    let out = p
        .cmd()
        .args(["--store", &store, "apply", &first])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert!(p.path().join("tests/test_calc.py").exists());
    // The remote's credential was never stored.
    for file in ["queue.db", "queue.db-wal"] {
        let stored = std::fs::read(p.scratch.path().join(file)).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&stored).contains("s3cr3t-token"),
            "the credential reached the store ({file})"
        );
    }
}
