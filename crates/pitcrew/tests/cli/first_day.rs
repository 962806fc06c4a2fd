//! Planning and results on the first day: `plan` finds the tests the prompt asks for and the
//! tests that import a module, `show` tells every round, a possible bug's patch can be read,
//! `report` adds up honestly, and `apply` says what is in the way, writes commits that say
//! what they add and remembers what it applied.

use std::collections::BTreeSet;

use pitcrew_testkit::Reply;
use serde_json::Value;

use crate::support::*;

const SIGN_TEST: &str = "\
from src.calc import sign


def test_sign_of_negative():
    assert sign(-3) == -1
";

const PKG_INIT: &str = "\
def triple(x):
    return x * 3
";

const PKG_TEST: &str = "\
from pkg import triple


def test_triple():
    assert triple(2) == 6
";

/// Queues a unit_test task for `target` answered with `file`, runs the queue; returns the id.
fn completed(p: &Project, target: &str, file: &str, content: &str) -> String {
    p.server
        .push(Reply::content(&reply_with_file(file, content)));
    let id = p.submit(target, &[]);
    let out = p.cmd().arg("run").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert_eq!(p.task(&id)["status"], "completed");
    id
}

fn planned_targets(p: &Project) -> Vec<String> {
    p.json(&["plan", "unit-tests", ".", "--dry-run"])
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["target"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn plan_finds_tests_named_as_the_prompt_asks_and_tests_that_import_the_module() {
    let p = Project::new();
    // The prompt asks for `tests/test_<module>.py`; a package's module is its name.
    let prompt = stdout_of(
        &p.cmd()
            .args(["prompts", "show", "unit_test"])
            .output()
            .unwrap(),
    );
    assert!(prompt.contains("`tests/test_<module>.py`"), "{prompt}");

    p.repo.write(
        "inflection/__init__.py",
        "def camelize(word):\n    return word.title().replace('_', '')\n",
    );
    p.repo.write(
        "tests/test_inflection.py",
        "from inflection import camelize\n\n\ndef test_camelize():\n    assert camelize('a_b') == 'AB'\n",
    );
    // Tested, under a name of the project's own choosing.
    p.repo
        .write("src/util.py", "def clamp(x):\n    return max(0, x)\n");
    p.repo.write(
        "tests/test_helpers.py",
        "from src.util import clamp\n\n\ndef test_clamp():\n    assert clamp(-1) == 0\n",
    );
    p.repo.write("pkg/__init__.py", PKG_INIT);
    p.repo.commit("packages and tests");
    assert_eq!(planned_targets(&p), ["pkg/__init__.py", "src/calc.py"]);

    // Queue both, let the model write what the prompt asks for, apply: nothing left to plan.
    let submitted = p.json(&["plan", "unit-tests", "."]);
    assert_eq!(submitted.as_array().unwrap().len(), 2, "{submitted}");
    p.server.push(Reply::content(&reply_with_file(
        "tests/test_pkg.py",
        PKG_TEST,
    )));
    p.server.push(Reply::content(&reply_with_file(
        "tests/test_calc.py",
        GOOD_TEST,
    )));
    let out = p.cmd().arg("run").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let out = p.cmd().args(["apply", "--all"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert!(p.path().join("tests/test_pkg.py").is_file());
    assert!(
        planned_targets(&p).is_empty(),
        "planned again after apply: {:?}",
        planned_targets(&p)
    );
}

#[test]
fn show_tells_every_round_with_its_model_outcome_and_findings() {
    let p = Project::new();
    let broken = "from src.calc import double\n\n\ndef test_double(:\n    assert double(3) == 6\n";
    p.server.push(Reply::content(&reply_with_file(
        "tests/test_calc.py",
        broken,
    )));
    p.server.push(Reply::content(&reply_with_file(
        "tests/test_calc.py",
        GOOD_TEST,
    )));
    let id = p.submit("src/calc.py", &[]);
    let out = p
        .cmd()
        .env("PITCREW_MODELS_MAX_ITERATIONS", "2")
        .arg("run")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let rounds = p.attempts(&id)[0]["details"]["iterations"].clone();
    assert_eq!(rounds.as_array().unwrap().len(), 2, "{rounds:#}");

    let show = stdout_of(&p.cmd().args(["show", &id]).output().unwrap());
    let line_of = |needle: &str| {
        show.lines()
            .find(|l| l.trim_start().starts_with(needle))
            .unwrap_or_else(|| panic!("no `{needle}` line in:\n{show}"))
            .to_string()
    };
    let first = line_of("round 1");
    let second = line_of("round 2");
    for (line, outcome) in [(&first, "rejected"), (&second, "accepted")] {
        assert!(line.contains(outcome), "{line}\n{show}");
        let model = rounds[0]["model"].as_str().unwrap();
        assert!(line.contains(model), "{line}\n{show}");
    }
    // Round 1's finding, under round 1 (before round 2).
    let syntax = show
        .find("[syntax] tests/test_calc.py:4")
        .unwrap_or_else(|| panic!("round 1's finding is missing:\n{show}"));
    assert!(show.find(&first).unwrap() < syntax, "{show}");
    assert!(syntax < show.find(&second).unwrap(), "{show}");
}

#[test]
fn the_patch_of_a_possible_bug_can_be_read_and_says_what_it_is() {
    let p = Project::new();
    let wrong =
        "from src.calc import double\n\n\ndef test_double_of_two():\n    assert double(2) == 5\n";
    p.server.push(Reply::content(&reply_with_file(
        "tests/test_calc.py",
        wrong,
    )));
    let id = p.submit("src/calc.py", &[]);
    p.cmd().arg("run").assert().code(1);
    assert_eq!(p.task(&id)["status"], "possible_bug");

    let diff = p.cmd().args(["diff", &id]).output().unwrap();
    assert_eq!(diff.status.code(), Some(0), "{}", stderr_of(&diff));
    assert!(
        stdout_of(&diff).contains("+++ b/tests/test_calc.py"),
        "{}",
        stdout_of(&diff)
    );
    assert!(
        stderr_of(&diff).contains("possible bug"),
        "{}",
        stderr_of(&diff)
    );
    // What diff prints applies on the base, label and all.
    let patch_file = p.scratch.path().join("bug.patch");
    std::fs::write(&patch_file, diff.stdout).unwrap();
    p.repo
        .git(&["apply", "--check", patch_file.to_str().unwrap()]);

    let show = p.cmd().args(["show", &id, "--diff"]).output().unwrap();
    assert_eq!(show.status.code(), Some(0), "{}", stderr_of(&show));
    let text = stdout_of(&show);
    let label = text
        .find("possible bug")
        .unwrap_or_else(|| panic!("the patch is not labelled:\n{text}"));
    let patch = text
        .rfind("diff --git")
        .unwrap_or_else(|| panic!("no patch:\n{text}"));
    assert!(label < patch, "{text}");
    assert!(text.contains("+    assert double(2) == 5"), "{text}");

    // It is still not a result to apply.
    let out = p.cmd().args(["apply", &id]).output().unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(!p.path().join("tests/test_calc.py").exists());
}

fn newly_covered(attempt: &Value) -> Vec<u64> {
    attempt["details"]["validation"]["coverage"][0]["newly_covered"]
        .as_array()
        .map(|lines| lines.iter().map(|l| l.as_u64().unwrap()).collect())
        .unwrap_or_default()
}

#[test]
fn report_counts_covered_lines_once_shows_no_negative_cost_and_refuses_an_unknown_run() {
    let p = Project::new();
    let first = completed(&p, "src/calc.py", "tests/test_calc.py", GOOD_TEST);
    let second = completed(&p, "src/calc.py", "tests/test_sign.py", SIGN_TEST);
    let cancelled = p.submit("src/calc.py", &[]);
    p.cmd().args(["cancel", &cancelled]).assert().code(0);

    let attempts = [&p.attempts(&first)[0], &p.attempts(&second)[0]];
    let statements = attempts[0]["details"]["validation"]["coverage"][0]["statements"]
        .as_u64()
        .unwrap();
    let each: Vec<Vec<u64>> = attempts.iter().map(|a| newly_covered(a)).collect();
    let union: BTreeSet<u64> = each.iter().flatten().copied().collect();
    let sum: usize = each.iter().map(Vec::len).sum();
    assert!(sum > union.len(), "the tasks cover no line twice: {each:?}");

    let json = p.json(&["report"]);
    assert_eq!(
        json["totals"]["lines_covered"].as_u64(),
        Some(union.len() as u64),
        "{:#}",
        json["totals"]
    );
    assert!(union.len() as u64 <= statements);
    assert!(
        !json.to_string().contains("-0.0"),
        "a negative zero cost: {json}"
    );
    let text = stdout_of(&p.cmd().arg("report").output().unwrap());
    assert!(!text.contains("$-0"), "{text}");
    assert!(
        text.contains(&format!("{} lines newly covered", union.len())),
        "{text}"
    );

    let out = p.cmd().args(["report", "--run", "bogus"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stdout_of(&out));
    let stderr = stderr_of(&out);
    assert!(stderr.contains("bogus"), "{stderr}");
    for attempt in attempts {
        let run = attempt["run_id"].as_str().unwrap();
        assert!(stderr.contains(run), "run {run} is not listed: {stderr}");
    }
    assert!(stdout_of(&out).is_empty(), "{}", stdout_of(&out));
}

/// The lines of `pitcrew list` that mark a task as applied.
fn applied_rows(p: &Project) -> usize {
    let out = p.cmd().arg("list").output().unwrap();
    stdout_of(&out)
        .lines()
        .filter(|l| l.contains("applied"))
        .count()
}

#[test]
fn apply_names_what_is_in_the_way_keeps_each_commits_message_and_remembers_what_it_applied() {
    let p = Project::new();
    let first = completed(&p, "src/calc.py", "tests/test_calc.py", GOOD_TEST);
    let second = completed(&p, "src/calc.py", "tests/test_sign.py", SIGN_TEST);

    // Each result commit says what it adds.
    let subject = |id: &str| {
        p.repo
            .git(&["log", "-1", "--format=%s", &format!("pitcrew/{id}")])
    };
    let (one, two) = (subject(&first), subject(&second));
    assert_ne!(one, two);
    assert!(
        one.contains("tests/test_calc.py") && one.contains("2 tests"),
        "{one}"
    );
    assert!(
        two.contains("tests/test_sign.py") && two.contains("1 test"),
        "{two}"
    );
    assert!(!two.contains("1 tests"), "{two}");
    assert_eq!(applied_rows(&p), 0);

    // An untracked file where the second result goes is named, and left alone.
    p.repo.write("tests/test_sign.py", "# mine\n");
    let out = p.cmd().args(["apply", "--all"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    let stdout = stdout_of(&out);
    assert!(
        stdout.contains("CONFLICT in tests/test_sign.py"),
        "{stdout}"
    );
    assert_eq!(
        std::fs::read_to_string(p.path().join("tests/test_sign.py")).unwrap(),
        "# mine\n"
    );

    // The applied commit carries the result commit's message: subject, Task and Model.
    let message = p.repo.git(&["log", "-1", "--format=%B"]);
    assert!(message.starts_with(&one), "{message}");
    assert!(message.contains(&format!("Task: {first}")), "{message}");
    assert!(message.contains(&format!("Model: {MODEL_ID}")), "{message}");

    // list and show know which task was applied.
    assert_eq!(applied_rows(&p), 1);
    let listed = p.json(&["list"]);
    let applied: Vec<&Value> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| &t["applied"])
        .collect();
    let head = p.repo.git(&["rev-parse", "HEAD"]);
    assert_eq!(applied, [&Value::from(head.as_str()), &Value::Null]);
    let applied_line = |id: &str| {
        let show = stdout_of(&p.cmd().args(["show", id]).output().unwrap());
        show.lines()
            .find(|l| l.starts_with("applied "))
            .map(str::to_string)
    };
    let line = applied_line(&first).expect("show does not say the task was applied");
    assert!(line.contains(&head), "{line}");
    assert_eq!(applied_line(&second), None);
    assert_eq!(p.json(&["show", &first])["task"]["applied"], head.as_str());

    std::fs::remove_file(p.path().join("tests/test_sign.py")).unwrap();
    let out = p.cmd().args(["apply", &second]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert_eq!(applied_rows(&p), 2);
    let message = p.repo.git(&["log", "-1", "--format=%B"]);
    assert!(message.starts_with(&two), "{message}");
}
