//! `pitcrew demo`: the newcomer's first command runs the real pipeline (git, pytest,
//! coverage) against the in-process simulator, says the model was simulated, ends with
//! accepted and rejected tasks and their reasons, and writes nothing outside its directory
//! but pitcrew's cache, whatever the shell's PITCREW_* variables say.

use std::path::{Path, PathBuf};
use std::process::Output;

use pitcrew_testkit::TempRepo;
use serde_json::Value;

use crate::support::{files_under, stderr_of, stdout_of};

/// A scratch directory standing for the user's machine: a home (with pitcrew's cache), a
/// temporary directory, and the repository the user is in.
struct Machine {
    scratch: tempfile::TempDir,
    /// The repository the demo is started from; it must not change.
    current: TempRepo,
}

impl Machine {
    fn new() -> Machine {
        let scratch = tempfile::tempdir().unwrap();
        for dir in ["home", "tmp"] {
            std::fs::create_dir(scratch.path().join(dir)).unwrap();
        }
        let current = TempRepo::with_files(&[("app.py", "x = 1\n")]);
        Machine { scratch, current }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.scratch.path().join(name)
    }

    /// `pitcrew demo args…` started in the user's repository, with a shell that tries to
    /// point pitcrew elsewhere: another store, another configuration, a real provider's key.
    fn demo(&self, args: &[&str]) -> Output {
        let mut cmd = assert_cmd::Command::new(env!("CARGO_BIN_EXE_pitcrew"));
        for (name, _) in std::env::vars() {
            if name.starts_with("PITCREW_") || name == "RUST_LOG" {
                cmd.env_remove(&name);
            }
        }
        let home = self.path("home");
        cmd.current_dir(self.current.path())
            .arg("demo")
            .args(args)
            .env("HOME", &home)
            .env("XDG_CACHE_HOME", home.join(".cache"))
            .env("TMPDIR", self.path("tmp"))
            .env("NO_COLOR", "1")
            .env(
                "PITCREW_STORE_URL",
                format!("sqlite://{}", home.join("real.db").display()),
            )
            .env("PITCREW_CONFIG", home.join("pitcrew.toml"))
            .env("PITCREW_WORKERS_COUNT", "1")
            .env("OPENROUTER_API_KEY", "sk-or-real-key-never-used");
        cmd.output().unwrap()
    }

    /// What the demo may leave outside its project: pitcrew's cache, with its repository
    /// index only (the worktrees are removed).
    fn assert_nothing_written_outside(&self, project: Option<&Path>) {
        let cache = self.path("home").join(".cache").join("pitcrew");
        for file in files_under(self.scratch.path()) {
            let inside_project = project.is_some_and(|p| file.starts_with(p));
            assert!(
                inside_project || file.starts_with(cache.join("index")),
                "the demo wrote {}",
                file.display()
            );
        }
        assert!(files_under(&cache.join("worktrees")).is_empty());
        assert_eq!(self.current.git(&["status", "--porcelain"]), "");
        assert_eq!(self.current.git(&["branch", "--list", "pitcrew/*"]), "");
        assert!(!self.current.path().join(".pitcrew").exists());
    }
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", stderr_of(&out));
    stdout_of(&out)
}

#[test]
fn the_demo_runs_the_real_pipeline_on_a_simulated_model() {
    let machine = Machine::new();
    let project = machine.path("project");
    let out = machine.demo(&["--keep", project.to_str().unwrap()]);
    let (stdout, stderr) = (stdout_of(&out), stderr_of(&out));
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");

    let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines[0].contains("SIMULATED"), "{stdout}");
    assert!(lines.last().unwrap().contains("was SIMULATED"), "{stdout}");
    assert!(stdout.contains("no real model was called"), "{stdout}");
    // The report, then each task's ending and why.
    assert!(
        stdout.contains("3 tasks: 2 completed, 0 failed, 1 possible bugs"),
        "{stdout}"
    );
    for expected in [
        "#1  textstats/words.py  (sim-words): completed",
        "rate limited (HTTP 429): the router waited as asked",
        "the stream was cut off: the router called again",
        "#2  textstats/sentences.py  (sim-sentences): completed",
        "prose instead of code: an unusable reply",
        "its tests passed every check",
        "#3  textstats/readability.py  (sim-readability): possible_bug",
        "2 of its tests fail against the code, so it was not accepted",
        "test_readable_has_three_syllables: AssertionError: assert 2 == 3",
        "pitcrew show '#1' --diff",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in\n{stdout}"
        );
    }
    // Real git: the accepted results are branches of the demo's repository.
    let branches = git(&project, &["branch", "--list", "pitcrew/*"]);
    assert_eq!(branches.lines().count(), 3, "{branches}");
    let first = branches.lines().next().unwrap().trim();
    assert!(
        git(&project, &["show", "--stat", first]).contains("tests/test_"),
        "{first}"
    );
    assert_eq!(git(&project, &["status", "--porcelain"]), "");
    // Its own store: the shell's PITCREW_STORE_URL was not used.
    assert!(project.join(".pitcrew").join("pitcrew.db").is_file());
    assert!(!machine.path("home").join("real.db").exists());
    machine.assert_nothing_written_outside(Some(&project));
}

#[test]
fn the_demo_describes_its_run_as_json() {
    let machine = Machine::new();
    let out = machine.demo(&["--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let demo: Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(demo["simulated"], true);
    assert!(demo["note"].as_str().unwrap().contains("SIMULATED"));
    assert_eq!(demo["report"]["totals"]["completed"], 2);
    assert_eq!(demo["report"]["totals"]["possible_bugs"], 1);
    let tasks = demo["tasks"].as_array().unwrap();
    let statuses: Vec<&str> = tasks
        .iter()
        .map(|t| t["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["completed", "completed", "possible_bug"]);
    for task in tasks {
        assert!(
            task["reason"].as_str().is_some_and(|r| !r.is_empty()),
            "{task}"
        );
        assert!(
            task["rounds"].as_array().is_some_and(|r| !r.is_empty()),
            "{task}"
        );
        assert!(
            task["branch"].as_str().unwrap().starts_with("pitcrew/"),
            "{task}"
        );
    }
    assert!(
        demo["next"][0]["command"]
            .as_str()
            .unwrap()
            .starts_with("cd ")
    );
    // Without --keep: a new temporary directory, kept and named.
    let dir = PathBuf::from(demo["dir"].as_str().unwrap());
    assert!(
        dir.starts_with(machine.path("tmp").canonicalize().unwrap()),
        "{dir:?}"
    );
    assert!(dir.join(".git").is_dir());
    machine.assert_nothing_written_outside(Some(&dir));
}

#[test]
fn the_demo_refuses_a_directory_that_is_not_empty() {
    let machine = Machine::new();
    let taken = machine.path("home");
    std::fs::write(taken.join("notes.txt"), "mine\n").unwrap();
    let out = machine.demo(&["--keep", taken.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("not empty"), "{}", stderr_of(&out));
    assert_eq!(
        std::fs::read_to_string(taken.join("notes.txt")).unwrap(),
        "mine\n"
    );
}
