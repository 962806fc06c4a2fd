//! `[validation]` in `pitcrew.toml`: which rules run for which task kind, the commands they
//! run, and the sandbox those commands run in. Every field has a default, so an empty table
//! (or none) is the built-in configuration.

use pitcrew_core::{Severity, TaskKind};
use serde::{Deserialize, Serialize};

use crate::rules::Rule;

/// The `[validation]` table with every default and what it means, for `pitcrew init`.
pub const DEFAULT_SETTINGS_TOML: &str = include_str!("default_settings.toml");

/// How pitcrew verifies what a task produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ValidationSettings {
    /// Runs tests (a shell command, run in the task's worktree). It must accept pytest's
    /// options: pitcrew appends `--junitxml`, `-p` and `-o` options and the test files.
    pub test_command: String,
    /// Runs the same tests while recording coverage; `{data}` becomes the path of a fresh
    /// coverage data file.
    pub coverage_command: String,
    /// Writes the coverage report from `{data}` to `{report}` (both fresh paths).
    pub coverage_report_command: String,
    /// The format `coverage_report_command` writes: `coverage_json` (coverage.py's
    /// `coverage json`), `cobertura` (XML, e.g. `coverage xml`) or `lcov`.
    pub coverage_format: CoverageFormat,
    /// How many times the new tests run again after their first run, to catch flaky tests:
    /// the first rerun in reverse order, the others shuffled, each with its own
    /// `PYTHONHASHSEED`. Any test whose result changes is flaky.
    pub reruns: u32,
    /// Wall-clock limit in seconds for each command; past it the command's whole process
    /// group is killed.
    pub timeout_secs: u64,
    /// How commands that run generated code are confined. `required`: each runs in PID,
    /// mount and network namespaces of its own under Landlock, seeing only the system's
    /// programs, the toolchain, the task's worktree and a scratch directory; where the machine
    /// cannot do that, nothing generated runs. `none`: commands run unconfined, and every
    /// report says so. See docs/security.md.
    pub sandbox: SandboxMode,
    /// Extra paths confined commands may read and execute (absolute), e.g. a toolchain outside
    /// the system directories (`~/.cargo`, `~/.rustup`, a virtualenv).
    pub sandbox_read: Vec<String>,
    /// Extra paths confined commands may write (absolute). Rarely needed: each command gets a
    /// private HOME and TMPDIR.
    pub sandbox_write: Vec<String>,
    /// Whether commands running generated code may use the network. When false they run in a
    /// network namespace of their own.
    pub allow_network: bool,
    /// Environment variables passed from pitcrew's environment to the commands, besides
    /// PATH, LANG, LC_ALL, LC_CTYPE, TZ and TERM. Names that look like secrets (containing
    /// KEY, SECRET, TOKEN, PASSWORD, …) are never passed, even when listed.
    pub pass_env: Vec<String>,
    /// Resource limits for each process of a command.
    pub limits: LimitSettings,
    /// The second syntax gate: the language's own compiler or checker, run on the written
    /// files of that language after the in-process tree-sitter parse passed.
    pub toolchain: ToolchainSettings,
    /// Which rules run for which task kind.
    pub rules: RuleSettings,
    /// What each task kind may create or change (the `change_set` rule).
    pub changes: ChangeSettings,
    /// The mutation stage (the `kills_mutants` rule).
    pub mutation: MutationSettings,
    /// The project's own checks, run after the static rules and before the tests. Each is a
    /// `[[validation.commands]]` table.
    pub commands: Vec<CommandRule>,
}

impl Default for ValidationSettings {
    fn default() -> Self {
        ValidationSettings {
            test_command: "python3 -m pytest".into(),
            coverage_command: "python3 -m coverage run --data-file={data} -m pytest".into(),
            coverage_report_command:
                "python3 -m coverage json --ignore-errors --data-file={data} -o {report}".into(),
            coverage_format: CoverageFormat::CoverageJson,
            reruns: 3,
            timeout_secs: 300,
            sandbox: SandboxMode::Required,
            sandbox_read: Vec::new(),
            sandbox_write: Vec::new(),
            allow_network: false,
            pass_env: Vec::new(),
            limits: LimitSettings::default(),
            toolchain: ToolchainSettings::default(),
            rules: RuleSettings::default(),
            changes: ChangeSettings::default(),
            mutation: MutationSettings::default(),
            commands: Vec::new(),
        }
    }
}

/// How commands that run generated code are confined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SandboxMode {
    /// Confined, or not run at all.
    Required,
    /// Unconfined; reports say the results were not sandboxed.
    None,
}

/// The mutation stage: mutants of the target's lines the new tests run, each run against the
/// new tests (see `kills_mutants`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MutationSettings {
    /// At most this many mutants per target.
    pub max_mutants: usize,
    /// At most this many seconds per target; mutants not run by then are not judged.
    pub max_seconds: u64,
    /// Mutants the new tests must kill that the existing tests do not.
    pub min_kills: usize,
    /// The share of the mutants tried that the new tests must kill (0–1): tests that run
    /// the code but check little of it let most mutants through.
    pub min_score: f64,
    /// Picks which mutants are made when there are more than `max_mutants`; the same seed
    /// and file give the same mutants.
    pub seed: u64,
}

impl Default for MutationSettings {
    fn default() -> Self {
        MutationSettings {
            max_mutants: 20,
            max_seconds: 15,
            min_kills: 1,
            min_score: 0.5,
            seed: 0,
        }
    }
}

/// What a task may create or change, by kind. Patterns are globs over paths relative to the
/// repository root: one without `/` matches a file name in any directory (`conftest.py`,
/// `test_*.py`), one with `/` matches from the root (`tests/**`), `**` spans directories.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChangeSettings {
    /// What counts as a test file.
    pub tests: Vec<String>,
    /// Files no task may create or change: test-runner configuration and hooks, packaging,
    /// pitcrew's own files, secrets.
    pub protected: Vec<String>,
    /// Whether existing tests must stay as they are: changing or deleting a test that exists
    /// at the base commit is an error for every kind (new tests may be added).
    pub keep_existing_tests: bool,
    /// What each kind may create or change; `"{tests}"` stands for the `tests` patterns.
    pub unit_test: Vec<String>,
    pub integration_test: Vec<String>,
    pub implement: Vec<String>,
    pub fix: Vec<String>,
    pub refactor: Vec<String>,
    pub docs: Vec<String>,
    pub custom: Vec<String>,
}

/// Stands for [`ChangeSettings::tests`] in a kind's list.
pub(crate) const TESTS_PLACEHOLDER: &str = "{tests}";

impl Default for ChangeSettings {
    fn default() -> Self {
        let list = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        ChangeSettings {
            tests: list(&["**/tests/**", "**/test/**", "test_*.py", "*_test.py"]),
            protected: list(&[
                "conftest.py",
                "pytest.ini",
                "pyproject.toml",
                "setup.cfg",
                "setup.py",
                "tox.ini",
                "noxfile.py",
                ".coveragerc",
                "sitecustomize.py",
                "usercustomize.py",
                "*.pth",
                ".python-version",
                ".gitattributes",
                ".gitignore",
                ".gitmodules",
                ".pre-commit-config.yaml",
                ".github/**",
                ".pitcrew/**",
                "pitcrew.toml",
                ".env",
                ".env.*",
            ]),
            keep_existing_tests: true,
            unit_test: list(&[TESTS_PLACEHOLDER]),
            integration_test: list(&[TESTS_PLACEHOLDER]),
            implement: list(&["**"]),
            fix: list(&["**"]),
            refactor: list(&["**"]),
            docs: list(&["**"]),
            custom: list(&["**"]),
        }
    }
}

impl ChangeSettings {
    /// The kind's own list, as configured.
    fn for_kind(&self, kind: TaskKind) -> &[String] {
        match kind {
            TaskKind::UnitTest => &self.unit_test,
            TaskKind::IntegrationTest => &self.integration_test,
            TaskKind::Implement => &self.implement,
            TaskKind::Fix => &self.fix,
            TaskKind::Refactor => &self.refactor,
            TaskKind::Docs => &self.docs,
            TaskKind::Custom => &self.custom,
        }
    }

    /// The patterns `kind` may change, with `{tests}` expanded.
    pub(crate) fn allowed(&self, kind: TaskKind) -> Vec<String> {
        self.for_kind(kind)
            .iter()
            .flat_map(|p| {
                if p == TESTS_PLACEHOLDER {
                    self.tests.clone()
                } else {
                    vec![p.clone()]
                }
            })
            .collect()
    }

    /// What `kind` may change, in words, for the prompt.
    pub(crate) fn requirement(&self, kind: TaskKind) -> String {
        let allowed = self.allowed(kind);
        let what = if allowed.iter().any(|p| p == "**") {
            "any file".to_string()
        } else {
            format!("only files matching {}", allowed.join(", "))
        };
        let mut text = format!(
            "the task creates or changes {what}, never {}",
            self.protected.join(", ")
        );
        if self.keep_existing_tests {
            text.push_str("; existing tests stay exactly as they are (new tests may be added)");
        }
        text
    }

    /// Every list with its field name, for checking the patterns.
    fn lists(&self) -> Vec<(&'static str, &[String])> {
        let mut lists = vec![
            ("tests", self.tests.as_slice()),
            ("protected", &self.protected),
        ];
        lists.extend(
            TaskKind::ALL
                .iter()
                .map(|&kind| (kind.as_str(), self.for_kind(kind))),
        );
        lists
    }
}

/// The coverage report formats pitcrew reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CoverageFormat {
    CoverageJson,
    Cobertura,
    Lcov,
}

/// Limits applied to every process of a sandboxed command; 0 means no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitSettings {
    /// CPU seconds per process.
    pub cpu_secs: u64,
    /// Virtual memory per process, in MiB. Runtimes that reserve much address space up front
    /// (Node with WebAssembly, Go, the JVM) may need more, or 0.
    pub address_space_mb: u64,
    /// Largest file a process may write, in MiB.
    pub file_size_mb: u64,
    /// Processes of the user running pitcrew, counted across the whole machine (that is how
    /// `RLIMIT_NPROC` works), so no limit by default; not enforced for root.
    pub processes: u64,
}

impl Default for LimitSettings {
    fn default() -> Self {
        LimitSettings {
            cpu_secs: 300,
            address_space_mb: 8192,
            file_size_mb: 256,
            processes: 0,
        }
    }
}

impl LimitSettings {
    pub(crate) fn to_sandbox(self) -> pitcrew_sandbox::Limits {
        const MIB: u64 = 1024 * 1024;
        let some = |v: u64| (v > 0).then_some(v);
        pitcrew_sandbox::Limits {
            cpu_secs: some(self.cpu_secs),
            address_space_bytes: some(self.address_space_mb).map(|v| v.saturating_mul(MIB)),
            file_size_bytes: some(self.file_size_mb).map(|v| v.saturating_mul(MIB)),
            processes: some(self.processes),
        }
    }
}

/// Toolchain gate commands per language. The written files of the language are appended
/// (shell-quoted), or replace `{files}` when the command contains it. Empty: no gate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ToolchainSettings {
    /// Python files; `py_compile` compiles without running anything.
    pub python: String,
    /// Rust files, e.g. `cargo check --all-targets --quiet # {files}` (cargo checks the
    /// whole crate; the shell comment keeps the files from being appended).
    pub rust: String,
    /// JavaScript files, e.g. `for f in {files}; do node --check "$f" || exit 1; done`.
    pub javascript: String,
    /// TypeScript and TSX files, e.g. `npx --no-install tsc --noEmit {files}`.
    pub typescript: String,
    /// Go files, e.g. `go vet ./... # {files}`.
    pub go: String,
}

impl Default for ToolchainSettings {
    fn default() -> Self {
        ToolchainSettings {
            python: "python3 -m py_compile".into(),
            rust: String::new(),
            javascript: String::new(),
            typescript: String::new(),
            go: String::new(),
        }
    }
}

/// The rules each task kind runs, by rule id, and the ones this project never runs. Built-in
/// ids: file_exists, not_empty, syntax, toolchain, test_naming, assertions, imports_target,
/// no_placeholders, tests_pass, not_flaky, coverage_gain, suite_green. They always run in
/// that order, whatever the order of a list; the project's command rules run after
/// no_placeholders, for the kinds each lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuleSettings {
    /// Writing unit tests: every rule.
    pub unit_test: Vec<String>,
    /// Writing integration tests: every rule.
    pub integration_test: Vec<String>,
    /// Writing new code: the file, syntax and placeholder rules, and the whole suite.
    pub implement: Vec<String>,
    /// Fixing code: as `implement`.
    pub fix: Vec<String>,
    /// Restructuring code: as `implement`.
    pub refactor: Vec<String>,
    /// Writing documentation: the file, syntax and placeholder rules.
    pub docs: Vec<String>,
    /// Anything else: the file, syntax, toolchain and placeholder rules.
    pub custom: Vec<String>,
    /// Rule ids (built-in or command rules) never run in this project, whatever the kind.
    pub disable: Vec<String>,
}

impl Default for RuleSettings {
    fn default() -> Self {
        use Rule::*;
        let ids = |rules: &[Rule]| rules.iter().map(|r| r.as_str().to_string()).collect();
        let code = [
            FileExists,
            NotEmpty,
            Syntax,
            Toolchain,
            NoPlaceholders,
            SuiteGreen,
        ];
        let selectable: Vec<Rule> = Rule::ALL
            .iter()
            .copied()
            .filter(|r| !r.is_mandatory())
            .collect();
        RuleSettings {
            unit_test: ids(&selectable),
            integration_test: ids(&selectable),
            implement: ids(&code),
            fix: ids(&code),
            refactor: ids(&code),
            docs: ids(&[FileExists, NotEmpty, Syntax, NoPlaceholders]),
            custom: ids(&[FileExists, NotEmpty, Syntax, Toolchain, NoPlaceholders]),
            disable: Vec::new(),
        }
    }
}

impl ValidationSettings {
    /// What an output of `kind` must pass, in words, for the prompt.
    pub fn requirements(&self, kind: TaskKind) -> Vec<String> {
        let enabled = |id: &str| !self.rules.disable.iter().any(|d| d == id);
        let mut out = vec![self.changes.requirement(kind)];
        out.extend(
            self.rules
                .for_kind(kind)
                .iter()
                .filter(|id| enabled(id) && *id != Rule::ChangeSet.as_str())
                .filter_map(|id| id.parse::<Rule>().ok())
                .map(|rule| rule.requirement().to_string()),
        );
        out.extend(
            self.commands
                .iter()
                .filter(|c| enabled(&c.id) && (c.kinds.is_empty() || c.kinds.contains(&kind)))
                .map(|c| format!("the project's check `{}` passes", c.command)),
        );
        out
    }
}

impl RuleSettings {
    fn for_kind(&self, kind: TaskKind) -> &[String] {
        match kind {
            TaskKind::UnitTest => &self.unit_test,
            TaskKind::IntegrationTest => &self.integration_test,
            TaskKind::Implement => &self.implement,
            TaskKind::Fix => &self.fix,
            TaskKind::Refactor => &self.refactor,
            TaskKind::Docs => &self.docs,
            TaskKind::Custom => &self.custom,
        }
    }

    fn lists(&self) -> impl Iterator<Item = (&'static str, &[String])> {
        TaskKind::ALL
            .iter()
            .map(|&kind| (kind.as_str(), self.for_kind(kind)))
            .chain([("disable", self.disable.as_slice())])
    }
}

/// A project check: a shell command run in the worktree; a non-zero exit is a finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandRule {
    /// The rule id findings carry, e.g. `ruff`; must differ from the built-in ids.
    pub id: String,
    /// `{files}` is replaced by the written files, shell-quoted; nothing is appended.
    pub command: String,
    /// The severity of the finding when the command fails: error, warning or info.
    #[serde(default = "error")]
    pub severity: Severity,
    /// The task kinds it runs for; empty: every kind.
    #[serde(default)]
    pub kinds: Vec<TaskKind>,
}

fn error() -> Severity {
    Severity::Error
}

/// Variables that would let pitcrew's environment change how tests run or what they load,
/// refused in `pass_env`.
const RUNNER_CHANGING_VARIABLES: &[&str] = &[
    "PYTEST_ADDOPTS",
    "PYTEST_PLUGINS",
    "PYTEST_DISABLE_PLUGIN_AUTOLOAD",
    "PYTHONPATH",
    "PYTHONSTARTUP",
    "PYTHONHOME",
    "PYTHONUSERBASE",
    "PYTHONINSPECT",
    "COVERAGE_PROCESS_START",
    "COVERAGE_RCFILE",
    "LD_PRELOAD",
    "LD_LIBRARY_PATH",
];

/// Why the validation settings cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("validation.{field}: {message}")]
pub struct SettingsError {
    /// The offending field, e.g. `rules.unit_test`.
    pub field: String,
    pub message: String,
}

impl ValidationSettings {
    /// Checks what serde cannot: rule ids exist, command ids are unique and not built-in,
    /// commands are not empty.
    pub fn check(&self) -> Result<(), SettingsError> {
        let invalid = |field: &str, message: String| SettingsError {
            field: field.to_string(),
            message,
        };
        for (field, command) in [
            ("test_command", &self.test_command),
            ("coverage_command", &self.coverage_command),
            ("coverage_report_command", &self.coverage_report_command),
        ] {
            if command.trim().is_empty() {
                return Err(invalid(field, "must not be empty".into()));
            }
        }
        if !self.coverage_command.contains("{data}") {
            return Err(invalid("coverage_command", "must contain `{data}`".into()));
        }
        for placeholder in ["{data}", "{report}"] {
            if !self.coverage_report_command.contains(placeholder) {
                return Err(invalid(
                    "coverage_report_command",
                    format!("must contain `{placeholder}`"),
                ));
            }
        }
        if self.timeout_secs == 0 {
            return Err(invalid("timeout_secs", "must be at least 1".into()));
        }
        if !(0.0..=1.0).contains(&self.mutation.min_score) {
            return Err(invalid(
                "mutation.min_score",
                format!("{} is not between 0 and 1", self.mutation.min_score),
            ));
        }
        if self.mutation.max_seconds == 0 || self.mutation.max_mutants == 0 {
            return Err(invalid(
                "mutation",
                "max_mutants and max_seconds must be at least 1 (to turn the stage off, add \
                 `kills_mutants` to rules.disable)"
                    .into(),
            ));
        }
        for (field, paths) in [
            ("sandbox_read", &self.sandbox_read),
            ("sandbox_write", &self.sandbox_write),
        ] {
            if let Some(path) = paths
                .iter()
                .find(|p| !std::path::Path::new(p).is_absolute())
            {
                return Err(invalid(
                    field,
                    format!("`{path}` is not an absolute path; give every path from `/`"),
                ));
            }
        }
        if let Some(name) = self
            .pass_env
            .iter()
            .find(|n| RUNNER_CHANGING_VARIABLES.contains(&n.as_str()))
        {
            return Err(invalid(
                "pass_env",
                format!(
                    "`{name}` changes how tests run or what code they load; put pytest options \
                     and plugins in the repository's own pytest configuration instead"
                ),
            ));
        }
        if let Some(rule) = self
            .rules
            .disable
            .iter()
            .find(|d| d.parse::<Rule>().is_ok_and(Rule::is_mandatory))
        {
            return Err(invalid(
                "rules.disable",
                format!(
                    "`{rule}` always runs: it guards what is committed (to allow other files, \
                     change validation.changes)"
                ),
            ));
        }
        for (list, patterns) in self.changes.lists() {
            for pattern in patterns {
                if pattern == TESTS_PLACEHOLDER && (list == "tests" || list == "protected") {
                    return Err(invalid(
                        &format!("changes.{list}"),
                        format!("`{TESTS_PLACEHOLDER}` may only be used in a task kind's list"),
                    ));
                }
                if pattern != TESTS_PLACEHOLDER
                    && let Err(e) = crate::changes::compiled(pattern)
                {
                    return Err(invalid(&format!("changes.{list}"), e));
                }
            }
        }
        for (i, rule) in self.commands.iter().enumerate() {
            let field = format!("commands[{i}]");
            if rule.id.trim().is_empty() || rule.command.trim().is_empty() {
                return Err(invalid(
                    &field,
                    "needs a non-empty `id` and `command`".into(),
                ));
            }
            if rule.id.parse::<Rule>().is_ok() {
                return Err(invalid(
                    &field,
                    format!("id `{}` is a built-in rule's", rule.id),
                ));
            }
            if self.commands[..i].iter().any(|r| r.id == rule.id) {
                return Err(invalid(&field, format!("id `{}` is used twice", rule.id)));
            }
        }
        for (list, ids) in self.rules.lists() {
            for id in ids {
                let known = id.parse::<Rule>().is_ok() || self.commands.iter().any(|r| r.id == *id);
                if !known {
                    let mut valid: Vec<&str> = Rule::ALL.iter().map(|r| r.as_str()).collect();
                    valid.extend(self.commands.iter().map(|r| r.id.as_str()));
                    return Err(invalid(
                        &format!("rules.{list}"),
                        format!("unknown rule `{id}`; valid: {}", valid.join(", ")),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Whether `rule` runs for `kind`: listed for the kind (command rules: their `kinds`) and
    /// not disabled. `Err` carries the reason it does not, for the report.
    pub(crate) fn selects(&self, kind: TaskKind, rule: &str) -> Result<(), String> {
        if rule.parse::<Rule>().is_ok_and(Rule::is_mandatory) {
            return Ok(());
        }
        if self.rules.disable.iter().any(|d| d == rule) {
            return Err("disabled in validation.rules.disable".into());
        }
        let listed = match self.commands.iter().find(|c| c.id == rule) {
            Some(command) => command.kinds.is_empty() || command.kinds.contains(&kind),
            None => self.rules.for_kind(kind).iter().any(|r| r == rule),
        };
        if listed {
            Ok(())
        } else {
            Err(format!("not enabled for task kind `{kind}`"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_pass_their_own_check_and_an_empty_table_is_the_default() {
        ValidationSettings::default().check().unwrap();
        let parsed: ValidationSettings = toml::from_str("").unwrap();
        assert_eq!(parsed, ValidationSettings::default());
    }

    #[test]
    fn the_commented_default_table_is_the_default() {
        #[derive(Deserialize)]
        struct File {
            validation: ValidationSettings,
        }
        let file: File = toml::from_str(DEFAULT_SETTINGS_TOML).unwrap();
        assert_eq!(file.validation, ValidationSettings::default());
    }

    #[test]
    fn a_project_table_overrides_fields_and_adds_command_rules() {
        let parsed: ValidationSettings = toml::from_str(
            r#"
            reruns = 5
            [limits]
            cpu_secs = 10
            [rules]
            disable = ["coverage_gain", "ruff"]
            [[commands]]
            id = "ruff"
            command = "ruff check {files}"
            severity = "warning"
            kinds = ["unit_test"]
            "#,
        )
        .unwrap();
        parsed.check().unwrap();
        assert_eq!(parsed.reruns, 5);
        assert_eq!(parsed.limits.cpu_secs, 10);
        assert_eq!(parsed.limits.file_size_mb, 256);
        assert_eq!(parsed.commands[0].severity, Severity::Warning);
        assert!(parsed.selects(TaskKind::UnitTest, "tests_pass").is_ok());
        assert_eq!(
            parsed.selects(TaskKind::UnitTest, "coverage_gain"),
            Err("disabled in validation.rules.disable".into())
        );
        assert_eq!(
            parsed.selects(TaskKind::Docs, "tests_pass"),
            Err("not enabled for task kind `docs`".into())
        );
    }

    #[test]
    fn unknown_fields_and_rule_ids_are_refused_with_the_valid_ones() {
        assert!(toml::from_str::<ValidationSettings>("retries = 3").is_err());
        let mut settings = ValidationSettings::default();
        settings.rules.docs.push("spellcheck".into());
        let err = settings.check().unwrap_err();
        assert_eq!(err.field, "rules.docs");
        assert!(err.message.contains("unknown rule `spellcheck`"), "{err}");
        assert!(err.message.contains("coverage_gain"), "{err}");

        let mut settings = ValidationSettings::default();
        settings.commands.push(CommandRule {
            id: "syntax".into(),
            command: "true".into(),
            severity: Severity::Error,
            kinds: Vec::new(),
        });
        assert!(settings.check().unwrap_err().message.contains("built-in"));
    }
}
