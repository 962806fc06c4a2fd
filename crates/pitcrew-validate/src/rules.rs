//! The built-in rules: their ids and the order the pipeline runs them in.

use std::fmt;
use std::str::FromStr;

/// A built-in rule. Its id ([`Rule::as_str`]) is what findings, settings and reports carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rule {
    /// The task changed only what its kind may change: no protected file (test-runner
    /// configuration, hooks), no module shadowing the standard library or the test tools, no
    /// existing test changed. Always runs.
    ChangeSet,
    /// Every written file exists in the worktree.
    FileExists,
    /// Every written file has content beyond whitespace.
    NotEmpty,
    /// Every written file parses (tree-sitter, in process).
    Syntax,
    /// The language's toolchain accepts the files (`python3 -m py_compile`, …).
    Toolchain,
    /// Test files and test functions are named so the framework collects them.
    TestNaming,
    /// Every test asserts something that can fail.
    Assertions,
    /// The tests run for real: no skip or xfail, no exit, no pytest hooks or plugins, no
    /// reaching into the test runner.
    TestIntegrity,
    /// The tests import and use the target.
    ImportsTarget,
    /// No placeholder left where code should be (`# ... existing code ...`, `todo!()`).
    NoPlaceholders,
    /// The new tests are collected and pass.
    TestsPass,
    /// The new tests pass again, reordered and with other hash seeds.
    NotFlaky,
    /// The new tests cover lines of the target the existing suite did not.
    CoverageGain,
    /// The new tests notice changes to the code they run: they kill mutants of the target
    /// that the existing suite does not.
    KillsMutants,
    /// The whole suite passes with the new files in place.
    SuiteGreen,
    /// Running the checks left the worktree as it was: the files judged are the files that
    /// will be committed, and nothing else appeared or changed. Runs whenever a command did.
    WorktreeUnchanged,
}

impl Rule {
    /// Every rule, in the order the pipeline runs them.
    pub const ALL: &'static [Rule] = &[
        Rule::ChangeSet,
        Rule::FileExists,
        Rule::NotEmpty,
        Rule::Syntax,
        Rule::Toolchain,
        Rule::TestNaming,
        Rule::Assertions,
        Rule::TestIntegrity,
        Rule::ImportsTarget,
        Rule::NoPlaceholders,
        Rule::TestsPass,
        Rule::NotFlaky,
        Rule::CoverageGain,
        Rule::KillsMutants,
        Rule::SuiteGreen,
        Rule::WorktreeUnchanged,
    ];

    /// Whether the rule runs whatever the settings say: the guarantees about what is
    /// committed do not depend on configuration.
    pub const fn is_mandatory(self) -> bool {
        matches!(self, Rule::ChangeSet | Rule::WorktreeUnchanged)
    }

    /// The stable id, e.g. `tests_pass`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Rule::ChangeSet => "change_set",
            Rule::FileExists => "file_exists",
            Rule::NotEmpty => "not_empty",
            Rule::Syntax => "syntax",
            Rule::Toolchain => "toolchain",
            Rule::TestNaming => "test_naming",
            Rule::Assertions => "assertions",
            Rule::TestIntegrity => "test_integrity",
            Rule::ImportsTarget => "imports_target",
            Rule::NoPlaceholders => "no_placeholders",
            Rule::TestsPass => "tests_pass",
            Rule::NotFlaky => "not_flaky",
            Rule::CoverageGain => "coverage_gain",
            Rule::KillsMutants => "kills_mutants",
            Rule::SuiteGreen => "suite_green",
            Rule::WorktreeUnchanged => "worktree_unchanged",
        }
    }
}

impl Rule {
    /// What the rule demands, in words a model can act on (shown in prompts).
    pub const fn requirement(self) -> &'static str {
        match self {
            Rule::ChangeSet => "only files the task kind may change are changed",
            Rule::FileExists => "every file named in the reply is written whole",
            Rule::NotEmpty => "no file is empty",
            Rule::Syntax => "every file parses",
            Rule::Toolchain => "the language's compiler or checker accepts every file",
            Rule::TestNaming => {
                "test files and test functions are named so the framework collects them"
            }
            Rule::Assertions => "every test asserts something that fails if the code is wrong",
            Rule::TestIntegrity => {
                "tests run for real: no skip or xfail markers, no pytest.exit, no pytest hooks, \
                 plugins or patching of the test runner"
            }
            Rule::ImportsTarget => "the tests import the code under test and call it",
            Rule::NoPlaceholders => {
                "no placeholders such as `... existing code ...` or `TODO: implement`"
            }
            Rule::TestsPass => "the new tests are collected and pass",
            Rule::NotFlaky => {
                "the new tests pass again in a shuffled order and with other hash seeds"
            }
            Rule::CoverageGain => {
                "the new tests cover lines of the target the existing tests do not"
            }
            Rule::KillsMutants => {
                "the new tests fail when the code they run is changed (each assertion checks \
                 what the code computes, exactly)"
            }
            Rule::SuiteGreen => "the whole existing test suite still passes",
            Rule::WorktreeUnchanged => {
                "tests write only to temporary directories (tmp_path), never into the repository"
            }
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Not a built-in rule id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown rule `{0}`")]
pub struct UnknownRule(pub String);

impl FromStr for Rule {
    type Err = UnknownRule;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Rule::ALL
            .iter()
            .copied()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownRule(s.to_string()))
    }
}
