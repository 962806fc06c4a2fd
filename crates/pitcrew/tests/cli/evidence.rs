//! Evidence that generated tests catch bugs, through the real binary: surviving mutants fed
//! back to the model, the passing subset kept when some tests disagree with the code, and the
//! evidence card in `show`, `report`, the commit message and `validate`.

use pitcrew_testkit::Reply;

use crate::support::*;

/// Runs every line of calc.py and checks nothing precise: coverage rises, mutants survive.
const WEAK_TEST: &str = "\
from src.calc import double, sign


def test_double_gives_a_number():
    assert isinstance(double(3), int)


def test_sign_gives_something():
    for x in (-5, 0, 2):
        assert sign(x) is not None
";

#[test]
fn surviving_mutants_go_back_to_the_model_and_a_strong_reply_is_accepted_with_its_kills() {
    let p = Project::with_config("");
    p.server.push(Reply::content(&reply_with_file(
        "tests/test_calc.py",
        WEAK_TEST,
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

    // Round 2's prompt names mutants round 1's tests let through.
    let requests = p.server.requests();
    assert_eq!(requests.len(), 2);
    let feedback = requests[1].prompt_text();
    assert!(feedback.contains("[kills_mutants]"), "{feedback}");
    assert!(
        feedback.contains("went unnoticed by the new tests: `"),
        "{feedback}"
    );

    let attempt = &p.attempts(&id)[0];
    let rounds = attempt["details"]["iterations"].as_array().unwrap();
    assert_eq!(rounds[0]["outcome"], "rejected");
    let mutation = &attempt["details"]["validation"]["evidence"]["mutation"][0];
    assert!(mutation["killed"].as_u64().unwrap() >= 1, "{mutation:#}");
    assert_eq!(mutation["target"], "src/calc.py");

    // The card, in show, the commit message and the report.
    let show = stdout_of(&p.cmd().args(["show", &id]).output().unwrap());
    assert!(show.contains("evidence (attempt 1):"), "{show}");
    assert!(show.contains("mutants of src/calc.py: "), "{show}");
    assert!(show.contains("tests: 2 collected, 2 passed"), "{show}");
    let message = p
        .repo
        .git(&["log", "-1", "--format=%B", &format!("pitcrew/{id}")]);
    assert!(message.contains("mutants of src/calc.py: "), "{message}");
    assert!(message.contains("coverage of src/calc.py: "), "{message}");
    assert!(message.contains("rounds: 2"), "{message}");
    let report = stdout_of(&p.cmd().arg("report").output().unwrap());
    assert!(report.contains("| mutants killed |"), "{report}");
    let json = p.json(&["report"]);
    let card = &json["tasks"][0]["evidence"];
    assert!(
        card["mutation"][0]["tried"].as_u64().unwrap() >= 1,
        "{json:#}"
    );
}

#[test]
fn a_wrong_expectation_is_shown_its_real_value_then_dropped_and_the_rest_is_kept() {
    let p = Project::new();
    // Four good tests and one that expects the wrong value; the model insists in round 2.
    let with_one_wrong =
        format!("{GOOD_TEST}\n\ndef test_double_of_two():\n    assert double(2) == 5\n");
    for _ in 0..2 {
        p.server.push(Reply::content(&reply_with_file(
            "tests/test_calc.py",
            &with_one_wrong,
        )));
    }
    let id = p.submit("src/calc.py", &[]);
    let out = p
        .cmd()
        .env("PITCREW_MODELS_MAX_ITERATIONS", "2")
        .arg("run")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));

    // Round 2's prompt told the model what the code really gives.
    let feedback = p.server.requests()[1].prompt_text();
    assert!(
        feedback.contains("The values the code really gives are below"),
        "{feedback}"
    );
    assert!(feedback.contains("assert 4 == 5"), "{feedback}");

    let task = p.task(&id);
    assert_eq!(task["status"], "completed", "{task:#}");
    let committed = p
        .repo
        .git(&["show", &format!("pitcrew/{id}:tests/test_calc.py")]);
    assert!(committed.contains("def test_double():"), "{committed}");
    assert!(committed.contains("def test_sign():"), "{committed}");
    assert!(!committed.contains("test_double_of_two"), "{committed}");

    let attempt = &p.attempts(&id)[0];
    let rounds = attempt["details"]["iterations"].as_array().unwrap();
    let outcomes: Vec<&str> = rounds
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        [
            "possible_bug",
            "possible_bug",
            "accepted_without_failing_tests"
        ]
    );
    let kept = &attempt["details"]["possible_bugs"][0];
    assert_eq!(kept["test"], "tests/test_calc.py::test_double_of_two");
    assert!(
        kept["failure"].as_str().unwrap().contains("assert 4 == 5"),
        "{kept:#}"
    );
    let show = stdout_of(&p.cmd().args(["show", &id]).output().unwrap());
    assert!(show.contains("removed from the result"), "{show}");
    assert!(
        show.contains("tests/test_calc.py::test_double_of_two"),
        "{show}"
    );
    let message = p
        .repo
        .git(&["log", "-1", "--format=%B", &format!("pitcrew/{id}")]);
    assert!(
        message.contains("removed, failing against the code"),
        "{message}"
    );
}

#[test]
fn validate_shows_which_mutants_a_hand_written_test_lets_through() {
    let p = Project::new();
    p.repo.write("tests/test_calc.py", WEAK_TEST);
    let out = p
        .cmd()
        .args(["validate", "tests/test_calc.py", "--target", "src/calc.py"])
        .output()
        .unwrap();
    let text = stdout_of(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("kills_mutants      FAILED"), "{text}");
    assert!(text.contains("went unnoticed by the new tests"), "{text}");
    assert!(text.contains("mutants of src/calc.py: "), "{text}");

    p.repo.write("tests/test_calc.py", GOOD_TEST);
    let out = p
        .cmd()
        .args(["validate", "tests/test_calc.py", "--target", "src/calc.py"])
        .output()
        .unwrap();
    let text = stdout_of(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("kills_mutants      passed"), "{text}");
}
