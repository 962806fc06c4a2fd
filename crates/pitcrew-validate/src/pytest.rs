//! Running pytest so that its results can be trusted: a JUnit report at a fresh path (never
//! the exit code alone), a chosen test order and hash seed, and test ids and failure
//! excerpts for the findings.

use std::fmt;
use std::path::Path;

use pitcrew_sandbox::Output;

use crate::error::ValidateError;
use crate::reports::{CaseResult, TestCase, parse_junit};
use crate::sandbox::{ORDER_PLUGIN_MODULE, Sandbox, quote_all, shell_quote};
use crate::settings::ValidationSettings;

/// The order tests run in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Order {
    /// As collected: file order.
    File,
    Reverse,
    Shuffle(u32),
}

impl fmt::Display for Order {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Order::File => f.write_str("file order"),
            Order::Reverse => f.write_str("reverse order"),
            Order::Shuffle(seed) => write!(f, "shuffled with seed {seed}"),
        }
    }
}

/// One pytest invocation.
#[derive(Debug)]
pub(crate) struct Invocation<'a> {
    /// Used to name the report file; unique within a validation.
    pub label: &'a str,
    /// Test files to run; empty: the whole suite as the project configures it.
    pub files: &'a [String],
    pub order: Order,
    pub hash_seed: u32,
    /// Record coverage into this data file (with the coverage command).
    pub coverage_data: Option<&'a Path>,
}

impl Invocation<'_> {
    /// Whether this runs the new tests (rather than the whole suite).
    fn runs_new_tests(&self) -> bool {
        !self.files.is_empty()
    }
}

/// What one invocation produced.
#[derive(Debug)]
pub(crate) struct PytestRun {
    /// The report's test cases; `None` when pytest wrote no (readable) report.
    pub cases: Option<Vec<TestCase>>,
    pub output: Output,
    /// The shell command that ran, for messages and baseline cache keys.
    pub command: String,
}

impl PytestRun {
    /// The test running when a timeout killed the run: `-v` prints each test id before the
    /// test starts, and output is unbuffered.
    pub fn running_at_timeout(&self) -> Option<&str> {
        self.output
            .stdout
            .lines()
            .rev()
            .find(|l| l.contains("::"))
            .and_then(|l| l.split_whitespace().next())
    }

    pub fn timeout_message(&self) -> String {
        let what = match self.running_at_timeout() {
            Some(test) => format!(" while running `{test}`"),
            None => String::new(),
        };
        format!(
            "{}{what}; the whole process group was killed. Tests must not sleep, wait on \
             the network or loop forever",
            self.output.describe_status()
        )
    }
}

/// The shell command for `invocation`, without its junit path (see [`run`]).
pub(crate) fn command(settings: &ValidationSettings, invocation: &Invocation<'_>) -> String {
    let base = match invocation.coverage_data {
        Some(data) => settings
            .coverage_command
            .replace("{data}", &shell_quote(&data.to_string_lossy())),
        None => settings.test_command.clone(),
    };
    // No cache directory in the worktree; xunit1 adds `file` and `line` to each case; `-v`
    // names each test before it runs, which says what a timeout interrupted.
    let mut command = format!("{base} -p no:cacheprovider -o junit_family=xunit1 -v");
    if invocation.runs_new_tests() {
        // An `xfail` test that passes then fails, instead of counting as a pass.
        command.push_str(" -o xfail_strict=true");
    }
    if invocation.order != Order::File {
        command.push_str(&format!(" -p {ORDER_PLUGIN_MODULE}"));
    }
    if invocation.files.is_empty() {
        // The whole suite: one broken module must not hide the results of the others.
        command.push_str(" --continue-on-collection-errors");
    } else {
        command.push(' ');
        command.push_str(&quote_all(invocation.files.iter().map(String::as_str)));
    }
    command
}

/// Runs pytest in `cwd` as `invocation` says, reading the JUnit report it writes to a fresh
/// path in the scratch directory.
pub(crate) async fn run(
    sandbox: &Sandbox<'_>,
    cwd: &Path,
    invocation: &Invocation<'_>,
) -> Result<PytestRun, ValidateError> {
    // A fresh, unguessable path per run, outside the worktree: no file of the task's can
    // stand in for the report.
    let junit = sandbox.scratch_path(&format!(
        "junit-{}-{:016x}.xml",
        invocation.label,
        fastrand::u64(..)
    ));
    let command = command(sandbox.settings(), invocation);
    let full = format!(
        "{command} --junitxml={}",
        shell_quote(&junit.to_string_lossy())
    );
    let order = match invocation.order {
        Order::File => String::new(),
        Order::Reverse => "reverse".into(),
        Order::Shuffle(seed) => format!("shuffle:{seed}"),
    };
    let env = [
        ("PYTHONHASHSEED", invocation.hash_seed.to_string()),
        ("PITCREW_TEST_ORDER", order),
    ];
    let output = sandbox.shell(cwd, &full, &env).await?;
    // A report that does not parse (the run was killed while writing it) is as good as none.
    let cases = crate::reports::read_report(&junit)
        .ok()
        .and_then(|xml| parse_junit(&xml).ok());
    // Without the tools there is nothing to judge: the machine's fault, not the tests'.
    let missing_tool = ["pytest", "coverage"]
        .iter()
        .any(|tool| output.stderr.contains(&format!("No module named {tool}")));
    if cases.is_none() && missing_tool {
        return Err(ValidateError::CommandNotFound {
            command,
            output: output.combined_tail(5),
        });
    }
    Ok(PytestRun {
        cases,
        output,
        command,
    })
}

/// `tests/test_calc.py::TestDiv::test_div[1]`, pytest's node id, rebuilt from a case.
pub(crate) fn test_id(case: &TestCase) -> String {
    let Some(file) = &case.file else {
        return format!("{}::{}", case.classname, case.name);
    };
    let module = module_of(file);
    if case.classname.is_empty() {
        // A collection error: the case is the module itself.
        return file.clone();
    }
    let classes = case
        .classname
        .strip_prefix(&module)
        .unwrap_or(&case.classname)
        .trim_start_matches('.');
    if classes.is_empty() {
        format!("{file}::{}", case.name)
    } else {
        format!("{file}::{}::{}", classes.replace('.', "::"), case.name)
    }
}

/// `tests/test_calc.py` → `tests.test_calc`, as pytest writes it in `classname`.
pub(crate) fn module_of(path: &str) -> String {
    path.trim_end_matches(".py").replace('/', ".")
}

/// Whether `case` is pytest's stand-in for a module that could not be collected.
pub(crate) fn is_collection_error(case: &TestCase) -> bool {
    matches!(&case.result, CaseResult::Errored { message, .. } if message == "collection failure")
}

/// Where a failure was raised and what: pytest ends a failure's text with `path:line: Type`.
pub(crate) fn crash_site(details: &str) -> Option<(&str, u32, &str)> {
    let last = details.lines().rev().find(|l| !l.trim().is_empty())?;
    let (location, kind) = last.rsplit_once(": ")?;
    let (path, line) = location.rsplit_once(':')?;
    Some((path, line.parse().ok()?, kind.trim()))
}

/// Whether `case` failed on an assertion raised in one of `test_files`: the test's own
/// check was false (not an exception in the code under test, a fixture or an import).
pub(crate) fn failed_own_assertion(case: &TestCase, test_files: &[String]) -> bool {
    let CaseResult::Failed { message, details } = &case.result else {
        return false;
    };
    let Some((path, _, kind)) = crash_site(details) else {
        return false;
    };
    let in_test_file = test_files.iter().any(|f| f == path);
    let asserted =
        kind == "AssertionError" || (kind == "Failed" && message.starts_with("DID NOT RAISE"));
    in_test_file && asserted
}

/// The lines of a failure worth reading: the failing source line (`>`), the explanation
/// (`E`), and where it was raised. Long explanations are cut.
pub(crate) fn excerpt(message: &str, details: &str) -> String {
    const MAX_LINES: usize = 25;
    let mut lines: Vec<&str> = details
        .lines()
        .filter(|l| l.starts_with('>') || l.starts_with("E ") || l.trim() == "E")
        .collect();
    if let Some(last) = details.lines().rev().find(|l| !l.trim().is_empty())
        && crash_site(last).is_some()
    {
        lines.push(last);
    }
    if lines.is_empty() {
        return message.trim().to_string();
    }
    if lines.len() > MAX_LINES {
        let cut = lines.len() - MAX_LINES;
        lines.truncate(MAX_LINES);
        return format!("{}\n[… {cut} more lines]", lines.join("\n"));
    }
    lines.join("\n")
}

/// The result of a case in a word, for comparing runs.
pub(crate) fn result_word(result: &CaseResult) -> &'static str {
    match result {
        CaseResult::Passed => "passed",
        CaseResult::Failed { .. } => "failed",
        CaseResult::Errored { .. } => "errored",
        CaseResult::Skipped { xfail: true, .. } => "xfailed",
        CaseResult::Skipped { .. } => "was skipped",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(classname: &str, name: &str, file: Option<&str>, result: CaseResult) -> TestCase {
        TestCase {
            classname: classname.into(),
            name: name.into(),
            file: file.map(str::to_string),
            line: None,
            duration_ms: None,
            result,
        }
    }

    #[test]
    fn test_ids_match_pytest_node_ids() {
        let passed = CaseResult::Passed;
        let file = Some("tests/test_calc.py");
        assert_eq!(
            test_id(&case("tests.test_calc", "test_add", file, passed.clone())),
            "tests/test_calc.py::test_add"
        );
        assert_eq!(
            test_id(&case(
                "tests.test_calc.TestDiv",
                "test_div[1]",
                file,
                passed.clone()
            )),
            "tests/test_calc.py::TestDiv::test_div[1]"
        );
        assert_eq!(
            test_id(&case("", "tests.test_calc", file, passed.clone())),
            "tests/test_calc.py"
        );
        assert_eq!(
            test_id(&case("test_calc", "test_add", None, passed)),
            "test_calc::test_add"
        );
    }

    #[test]
    fn own_assertion_failures_are_told_from_other_failures() {
        let tests = vec!["tests/test_calc.py".to_string()];
        let failed = |message: &str, details: &str| {
            case(
                "tests.test_calc",
                "test_x",
                Some("tests/test_calc.py"),
                CaseResult::Failed {
                    message: message.into(),
                    details: details.into(),
                },
            )
        };
        let assertion = failed(
            "assert 1 == 2",
            ">       assert add(1, 1) == 3\nE       assert 2 == 3\n\ntests/test_calc.py:10: AssertionError",
        );
        assert!(failed_own_assertion(&assertion, &tests));
        assert_eq!(
            excerpt(
                "assert 1 == 2",
                match &assertion.result {
                    CaseResult::Failed { details, .. } => details,
                    _ => unreachable!(),
                }
            ),
            ">       assert add(1, 1) == 3\nE       assert 2 == 3\ntests/test_calc.py:10: AssertionError"
        );
        let did_not_raise = failed(
            "DID NOT RAISE <class 'ValueError'>",
            "tests/test_calc.py:12: Failed",
        );
        assert!(failed_own_assertion(&did_not_raise, &tests));
        let in_code = failed("ValueError: no", "src/calc.py:6: ValueError");
        assert!(!failed_own_assertion(&in_code, &tests));
        let assert_in_code = failed("AssertionError", "src/calc.py:9: AssertionError");
        assert!(!failed_own_assertion(&assert_in_code, &tests));
        let type_error = failed("TypeError: x", "tests/test_calc.py:4: TypeError");
        assert!(!failed_own_assertion(&type_error, &tests));
    }
}
