//! Validation of what a task produced: an output is accepted only when it has been shown to
//! work. [`validate`] runs the rules selected for the task's kind (see [`Rule`] and
//! [`ValidationSettings`]) and returns a [`ValidationReport`]: the outcome, every finding,
//! which rules ran or were skipped and why, a quality score computed from the findings
//! ([`quality`]), and the coverage the new tests added.
//!
//! ```no_run
//! # async fn demo() -> Result<(), pitcrew_validate::ValidateError> {
//! use pitcrew_core::TaskKind;
//! use pitcrew_validate::{ValidationRequest, ValidationSettings, validate};
//!
//! let request = ValidationRequest {
//!     worktree: "/tmp/task".into(),
//!     repo: "/src/project".into(),
//!     kind: TaskKind::UnitTest,
//!     targets: vec!["src/calc.py".into()],
//!     files: vec!["tests/test_calc.py".into()],
//!     base_commit: "4f2a…".into(),
//!     cache_dir: ".pitcrew/cache".into(),
//!     parent_env: None,
//! };
//! let report = validate(&ValidationSettings::default(), &request).await?;
//! for finding in report.errors() {
//!     println!("{finding}");
//! }
//! # Ok(()) }
//! ```
//!
//! Every command that runs generated code runs through `pitcrew-sandbox`: in the worktree,
//! under the timeout (killing the process group), resource limits, an allowlisted
//! environment without secrets, without network, and confined (PID, mount and network
//! namespaces of its own, Landlock) to the system, the toolchain, the worktree and a scratch
//! directory — unless `validation.sandbox = "none"`, which every report then states. What a
//! task may change at all is the `change_set` rule's business ([`ChangeSettings`]). The
//! in-process syntax gate ([`check_syntax`]) is usable on its own.

mod ast;
mod changes;
mod checks;
mod commands;
mod coverage;
mod dynamic;
mod effects;
mod error;
mod mutants;
mod mutation;
mod pipeline;
mod pytest;
mod repo;
mod report;
mod reports;
mod rules;
mod sandbox;
mod settings;
mod syntax;
mod testfns;

pub use error::ValidateError;
pub use mutation::{MutationSummary, SurvivingMutant};
pub use pipeline::{ValidationRequest, validate};
pub use report::{
    COMMAND_RULE_WEIGHT, CoverageGain, Evidence, FailingTest, Outcome, RuleRun, RuleStatus,
    StageTime, ValidationReport, evidence_weight, quality,
};
pub use reports::{
    CaseResult, Coverage, FileCoverage, ReportError, TestCase, parse_coverage, parse_junit,
};
pub use rules::{Rule, UnknownRule};
pub use sandbox::preflight;
pub use settings::{
    ChangeSettings, CommandRule, CoverageFormat, DEFAULT_SETTINGS_TOML, LimitSettings,
    MutationSettings, RuleSettings, SandboxMode, SettingsError, ToolchainSettings,
    ValidationSettings,
};
pub use syntax::{Language, SyntaxCheck, check_syntax};
pub use testfns::without_tests;
