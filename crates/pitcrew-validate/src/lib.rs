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
//! environment without secrets, and without network where the machine allows it. The
//! in-process syntax gate ([`check_syntax`]) is usable on its own.

mod ast;
mod checks;
mod commands;
mod coverage;
mod dynamic;
mod error;
mod pipeline;
mod pytest;
mod report;
mod reports;
mod rules;
mod sandbox;
mod settings;
mod syntax;
mod testfns;

pub use error::ValidateError;
pub use pipeline::{ValidationRequest, validate};
pub use report::{CoverageGain, Outcome, RuleRun, RuleStatus, ValidationReport, quality};
pub use reports::{Coverage, FileCoverage, ReportError, parse_coverage};
pub use rules::{Rule, UnknownRule};
pub use settings::{
    CommandRule, CoverageFormat, DEFAULT_SETTINGS_TOML, LimitSettings, RuleSettings, SettingsError,
    ToolchainSettings, ValidationSettings,
};
pub use syntax::{Language, SyntaxCheck, check_syntax};
