//! Getting results out: `diff` and `apply`.

use pitcrew_testkit::Reply;

use crate::support::*;

const SIGN_TEST: &str = "\
from src.calc import sign


def test_sign_of_negative():
    assert sign(-3) == -1
";

fn completed(p: &Project, test_file: &str, content: &str) -> String {
    p.server
        .push(Reply::content(&reply_with_file(test_file, content)));
    let id = p.submit("src/calc.py", &[]);
    p.cmd().arg("run").assert().code(0);
    id
}

#[test]
fn apply_commits_accepted_results_on_the_current_branch_and_the_suite_passes() {
    let p = Project::new();
    let first = completed(&p, "tests/test_calc.py", GOOD_TEST);
    let second = completed(&p, "tests/test_sign.py", SIGN_TEST);
    p.repo.git(&["checkout", "-q", "-b", "with-tests"]);

    let diff = p.cmd().args(["diff", &first]).output().unwrap();
    assert!(
        stdout_of(&diff).contains("+++ b/tests/test_calc.py"),
        "{}",
        stdout_of(&diff)
    );

    let out = p.cmd().args(["apply", "--all"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("2 applied onto with-tests"),
        "{}",
        stderr_of(&out)
    );
    let log = p.repo.git(&["log", "--format=%B", "-2"]);
    assert!(
        log.contains(&format!("Task: {first}")) && log.contains(&format!("Task: {second}")),
        "{log}"
    );
    assert!(p.path().join("tests/test_calc.py").is_file());
    assert_eq!(p.repo.git(&["status", "--porcelain"]), "");

    let pytest = std::process::Command::new("python3")
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .current_dir(p.path())
        .output()
        .unwrap();
    assert!(pytest.status.success(), "{}", stdout_of(&pytest));
    assert!(
        stdout_of(&pytest).contains("3 passed"),
        "{}",
        stdout_of(&pytest)
    );

    // Applying again changes nothing.
    let again = p.json(&["apply", &first]);
    assert_eq!(again[0]["result"], "already_present");
}

#[test]
fn a_conflicting_result_is_reported_and_the_branch_is_left_as_it_was() {
    let p = Project::new();
    let id = completed(&p, "tests/test_calc.py", GOOD_TEST);
    p.repo
        .write("tests/test_calc.py", "def test_mine():\n    assert True\n");
    let head = p.repo.commit("my own tests");

    let out = p.cmd().args(["apply", &id]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    assert!(
        stdout_of(&out).contains("CONFLICT in tests/test_calc.py")
            || stdout_of(&out).contains("CONFLICT in"),
        "{}",
        stdout_of(&out)
    );
    assert_eq!(p.repo.git(&["rev-parse", "HEAD"]), head);
    assert_eq!(p.repo.git(&["status", "--porcelain"]), "");

    // Uncommitted changes are refused before anything happens.
    p.repo.write("src/calc.py", "changed = True\n");
    let out = p.cmd().args(["apply", &id]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr_of(&out).contains("uncommitted changes"),
        "{}",
        stderr_of(&out)
    );
}

#[test]
fn only_completed_tasks_have_a_result_to_apply() {
    let p = Project::new();
    let id = p.submit("src/calc.py", &[]);
    let out = p.cmd().args(["diff", &id]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr_of(&out).contains("is queued; only completed tasks have an accepted result"),
        "{}",
        stderr_of(&out)
    );
}
