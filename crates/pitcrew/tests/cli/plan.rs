//! Planning batches and validating files a user already has.

use crate::support::*;

#[test]
fn plan_unit_tests_queues_modules_without_tests_once() {
    let p = Project::new();
    p.repo
        .write("src/util.py", "def clamp(x):\n    return max(0, x)\n");
    p.repo.write(
        "tests/test_util.py",
        "from src.util import clamp\n\n\ndef test_clamp():\n    assert clamp(-1) == 0\n",
    );
    p.repo.commit("util with tests");

    let planned = p.json(&["plan", "unit-tests", "src", "--dry-run"]);
    let targets: Vec<_> = planned
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["target"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(targets, ["src/calc.py"]);
    assert!(
        p.json(&["list"]).as_array().unwrap().is_empty(),
        "--dry-run queued tasks"
    );

    let submitted = p.json(&["plan", "unit-tests", "src"]);
    assert_eq!(submitted[0]["deduplicated"], false);
    let again = p.json(&["plan", "unit-tests", "src"]);
    assert_eq!(
        again[0]["deduplicated"], true,
        "planning twice queued a module twice"
    );
    let tasks = p.json(&["list"]);
    assert_eq!(tasks.as_array().unwrap().len(), 1);
    assert_eq!(tasks[0]["kind"], "unit_test");
    assert_eq!(tasks[0]["targets"][0], "src/calc.py");
}

#[test]
fn plan_unit_tests_from_a_coverage_report_picks_poorly_covered_modules() {
    let p = Project::new();
    p.repo
        .write("src/util.py", "def clamp(x):\n    return max(0, x)\n");
    p.repo.commit("util");
    let report = p.scratch.path().join("coverage.json");
    std::fs::write(
        &report,
        r#"{"files": {
            "src/calc.py": {"executed_lines": [1, 2], "missing_lines": [5, 6, 7, 8, 9, 10]},
            "src/util.py": {"executed_lines": [1, 2], "missing_lines": []}
        }}"#,
    )
    .unwrap();
    let planned = p.json(&[
        "plan",
        "unit-tests",
        "src",
        "--coverage",
        report.to_str().unwrap(),
        "--dry-run",
    ]);
    let planned = planned.as_array().unwrap();
    assert_eq!(planned.len(), 1, "{planned:?}");
    assert_eq!(planned[0]["target"], "src/calc.py");
    assert_eq!(planned[0]["reason"], "25% of 8 lines covered");
}

#[test]
fn validate_checks_files_already_in_the_working_tree() {
    let p = Project::new();
    p.repo.write("tests/test_calc.py", GOOD_TEST);
    let out = p
        .cmd()
        .env("PITCREW_VALIDATION_RERUNS", "1")
        .args(["validate", "tests/test_calc.py", "--target", "src/calc.py"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout_of(&out),
        stderr_of(&out)
    );
    let text = stdout_of(&out);
    assert!(text.contains("outcome: Accepted"), "{text}");
    assert!(text.contains("coverage of src/calc.py"), "{text}");

    p.repo.write(
        "tests/test_calc.py",
        "def test_nothing():\n    assert True\n",
    );
    let report = p
        .cmd()
        .args([
            "validate",
            "tests/test_calc.py",
            "--target",
            "src/calc.py",
            "--json",
        ])
        .output()
        .unwrap();
    assert_eq!(report.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&report.stdout).unwrap();
    assert_eq!(json["outcome"], "rejected");
    assert!(
        json["findings"]
            .to_string()
            .contains("\"rule\":\"assertions\""),
        "{json}"
    );
}
