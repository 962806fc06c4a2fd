//! The built-in rules: their ids and the order the pipeline runs them in.

use std::fmt;
use std::str::FromStr;

/// A built-in rule. Its id ([`Rule::as_str`]) is what findings, settings and reports carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rule {
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
    /// The whole suite passes with the new files in place.
    SuiteGreen,
}

impl Rule {
    /// Every rule, in the order the pipeline runs them.
    pub const ALL: &'static [Rule] = &[
        Rule::FileExists,
        Rule::NotEmpty,
        Rule::Syntax,
        Rule::Toolchain,
        Rule::TestNaming,
        Rule::Assertions,
        Rule::ImportsTarget,
        Rule::NoPlaceholders,
        Rule::TestsPass,
        Rule::NotFlaky,
        Rule::CoverageGain,
        Rule::SuiteGreen,
    ];

    /// The stable id, e.g. `tests_pass`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Rule::FileExists => "file_exists",
            Rule::NotEmpty => "not_empty",
            Rule::Syntax => "syntax",
            Rule::Toolchain => "toolchain",
            Rule::TestNaming => "test_naming",
            Rule::Assertions => "assertions",
            Rule::ImportsTarget => "imports_target",
            Rule::NoPlaceholders => "no_placeholders",
            Rule::TestsPass => "tests_pass",
            Rule::NotFlaky => "not_flaky",
            Rule::CoverageGain => "coverage_gain",
            Rule::SuiteGreen => "suite_green",
        }
    }
}

impl Rule {
    /// What the rule demands, in words a model can act on (shown in prompts).
    pub const fn requirement(self) -> &'static str {
        match self {
            Rule::FileExists => "every file named in the reply is written whole",
            Rule::NotEmpty => "no file is empty",
            Rule::Syntax => "every file parses",
            Rule::Toolchain => "the language's compiler or checker accepts every file",
            Rule::TestNaming => {
                "test files and test functions are named so the framework collects them"
            }
            Rule::Assertions => "every test asserts something that fails if the code is wrong",
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
            Rule::SuiteGreen => "the whole existing test suite still passes",
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
