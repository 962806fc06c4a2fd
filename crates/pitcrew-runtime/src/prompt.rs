//! The prompt library: Jinja templates shipped with the binary, each overridable per project
//! by a file `.pitcrew/prompts/NAME.j2`. A task uses the template of its kind unless its
//! metadata names another (`{"prompt": "type_hints"}`).

use std::path::PathBuf;

use minijinja::syntax::SyntaxConfig;
use minijinja::value::Serde;
use minijinja::{Environment, Value, context};
use pitcrew_core::{Finding, Task, TaskKind};
use serde::Serialize;

use crate::git::Repo;

/// Bigger files are cut, with a note, so one huge file cannot crowd out the task.
const MAX_FILE_BYTES: usize = 200 * 1024;

/// The shipped templates: name and source. Names starting with `_` are partials.
const BUILTIN: &[(&str, &str)] = &[
    ("system", include_str!("../prompts/system.j2")),
    ("_context", include_str!("../prompts/_context.j2")),
    ("unit_test", include_str!("../prompts/unit_test.j2")),
    (
        "integration_test",
        include_str!("../prompts/integration_test.j2"),
    ),
    ("implement", include_str!("../prompts/implement.j2")),
    ("fix", include_str!("../prompts/fix.j2")),
    ("refactor", include_str!("../prompts/refactor.j2")),
    ("type_hints", include_str!("../prompts/type_hints.j2")),
    (
        "error_handling",
        include_str!("../prompts/error_handling.j2"),
    ),
    ("docs", include_str!("../prompts/docs.j2")),
    ("retry_wrapper", include_str!("../prompts/retry_wrapper.j2")),
    ("custom", include_str!("../prompts/custom.j2")),
    ("refine", include_str!("../prompts/refine.j2")),
    ("agent", include_str!("../prompts/agent.j2")),
];

#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    #[error("unknown prompt `{name}`; valid values: {}", .valid.join(", "))]
    Unknown { name: String, valid: Vec<String> },
    #[error("prompt `{name}` ({source_path}): {message}")]
    Template {
        name: String,
        source_path: String,
        message: String,
    },
}

/// A file as shown to the model.
#[derive(Debug, Clone, Serialize)]
pub struct PromptFile {
    pub path: String,
    pub language: String,
    pub content: String,
    /// Why it is shown (for related files): e.g. "imported by the target".
    pub reason: String,
}

impl PromptFile {
    pub fn new(path: &str, mut content: String) -> Self {
        if content.len() > MAX_FILE_BYTES {
            let mut cut = MAX_FILE_BYTES;
            while !content.is_char_boundary(cut) {
                cut -= 1;
            }
            content.truncate(cut);
            content.push_str("\n[… file cut here: it is longer than pitcrew shows …]");
        }
        let language = pitcrew_validate::Language::from_path(path)
            .map_or("", |l| l.name())
            .to_string();
        PromptFile {
            path: path.to_string(),
            language,
            content: content.trim_end().to_string(),
            reason: String::new(),
        }
    }

    pub fn because(mut self, reason: impl Into<String>) -> Self {
        self.reason = reason.into();
        self
    }
}

/// A project document the model should follow (AGENTS.md, CONTRIBUTING.md, …).
#[derive(Debug, Clone, Serialize)]
pub struct Convention {
    pub path: String,
    pub content: String,
}

/// Everything a task prompt can show besides the task itself.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PromptContext {
    /// The targets that exist.
    pub files: Vec<PromptFile>,
    /// Targets that do not exist yet.
    pub missing: Vec<String>,
    /// Files around the targets: their tests, what they import, what imports them.
    pub related: Vec<PromptFile>,
    /// A compact map of the repository's symbols.
    pub repo_map: String,
    pub conventions: Vec<Convention>,
    /// The checks the output must pass, in words.
    pub rules: Vec<String>,
}

/// Where a template comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PromptSource {
    Builtin,
    Project(PathBuf),
}

#[derive(Debug, Clone, Serialize)]
pub struct PromptInfo {
    pub name: String,
    /// The template's first comment.
    pub description: String,
    pub source: PromptSource,
}

/// The templates available to one project.
#[derive(Debug, Clone)]
pub struct PromptLibrary {
    project_dir: Option<PathBuf>,
}

/// The template a task uses by default.
pub fn default_prompt(kind: TaskKind) -> &'static str {
    match kind {
        TaskKind::UnitTest => "unit_test",
        TaskKind::IntegrationTest => "integration_test",
        TaskKind::Implement => "implement",
        TaskKind::Fix => "fix",
        TaskKind::Refactor => "refactor",
        TaskKind::Docs => "docs",
        TaskKind::Custom => "custom",
    }
}

/// The template `task` asks for.
pub fn prompt_name(task: &Task) -> &str {
    task.metadata
        .get("prompt")
        .and_then(|p| p.as_str())
        .unwrap_or_else(|| default_prompt(task.kind))
}

fn describe(source: &str) -> String {
    source
        .trim_start()
        .strip_prefix("{#-")
        .or_else(|| source.trim_start().strip_prefix("{#"))
        .and_then(|rest| rest.split_once("#}"))
        .map(|(comment, _)| comment.trim().trim_end_matches('-').trim().to_string())
        .unwrap_or_default()
}

impl PromptLibrary {
    /// The library of `repo` (`None`: built-in templates only), whose overrides are in
    /// [`Repo::prompts_dir`].
    pub fn new(repo: Option<&Repo>) -> Self {
        PromptLibrary {
            project_dir: repo.map(Repo::prompts_dir),
        }
    }

    fn override_path(&self, name: &str) -> Option<PathBuf> {
        let path = self.project_dir.as_ref()?.join(format!("{name}.j2"));
        path.is_file().then_some(path)
    }

    /// Every template that can be rendered (partials excluded).
    pub fn list(&self) -> Vec<PromptInfo> {
        BUILTIN
            .iter()
            .filter(|(name, _)| !name.starts_with('_'))
            .map(|(name, source)| {
                let (source, text) = match self.override_path(name) {
                    Some(path) => {
                        let text = std::fs::read_to_string(&path).unwrap_or_default();
                        (PromptSource::Project(path), text)
                    }
                    None => (PromptSource::Builtin, source.to_string()),
                };
                PromptInfo {
                    name: name.to_string(),
                    description: describe(&text),
                    source,
                }
            })
            .collect()
    }

    fn unknown(name: &str) -> PromptError {
        PromptError::Unknown {
            name: name.to_string(),
            valid: BUILTIN
                .iter()
                .map(|(n, _)| n.to_string())
                .filter(|n| !n.starts_with('_'))
                .collect(),
        }
    }

    /// A template's source: the project's override if there is one, else the shipped one.
    pub fn source(&self, name: &str) -> Result<String, PromptError> {
        let builtin = BUILTIN
            .iter()
            .find(|(n, _)| *n == name)
            .ok_or_else(|| Self::unknown(name))?;
        match self.override_path(name) {
            Some(path) => std::fs::read_to_string(&path).map_err(|e| PromptError::Template {
                name: name.to_string(),
                source_path: path.display().to_string(),
                message: e.to_string(),
            }),
            None => Ok(builtin.1.to_string()),
        }
    }

    fn source_label(&self, name: &str) -> String {
        self.override_path(name)
            .map_or_else(|| "built-in".to_string(), |p| p.display().to_string())
    }

    /// An environment that compiles a template when a render first needs it (a task uses
    /// two or three of them), reading the project's override if there is one.
    fn environment(&self) -> Environment<'static> {
        let mut env = Environment::new();
        env.set_syntax(
            SyntaxConfig::builder()
                .trim_blocks(true)
                .lstrip_blocks(true)
                .build()
                .expect("plain syntax settings are valid"),
        );
        let library = self.clone();
        // Registered as `NAME.j2` so templates include each other by file name.
        env.set_loader(move |file| {
            let Some(name) = file.strip_suffix(".j2") else {
                return Ok(None);
            };
            if !BUILTIN.iter().any(|(n, _)| *n == name) {
                return Ok(None);
            }
            library.source(name).map(Some).map_err(|e| {
                minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, e.to_string())
            })
        });
        env
    }

    /// `error` of rendering `name`, naming the template it is in (an included one, perhaps).
    fn template_error(&self, name: &str, error: &minijinja::Error) -> PromptError {
        let mut message = error.to_string();
        if let Some(line) = error.line() {
            message = format!("line {line}: {message}");
        }
        let name = (error.name())
            .and_then(|file| file.strip_suffix(".j2"))
            .unwrap_or(name);
        PromptError::Template {
            name: name.to_string(),
            source_path: self.source_label(name),
            message,
        }
    }

    fn render(&self, name: &str, ctx: Value) -> Result<String, PromptError> {
        let env = self.environment();
        let template = match env.get_template(&format!("{name}.j2")) {
            Ok(template) => template,
            Err(e) if e.kind() == minijinja::ErrorKind::TemplateNotFound => {
                return Err(Self::unknown(name));
            }
            Err(e) => return Err(self.template_error(name, &e)),
        };
        let text = template
            .render(ctx)
            .map_err(|e| self.template_error(name, &e))?;
        Ok(squeeze_blank_lines(&text))
    }

    /// The system message and the task message for `task`.
    pub fn render_task(
        &self,
        task: &Task,
        context: &PromptContext,
    ) -> Result<(String, String), PromptError> {
        let system = self.render("system", context! {})?;
        let user = self.render(prompt_name(task), Self::task_values(task, context, false))?;
        Ok((system, user))
    }

    /// The task for an external agent, which edits files in its working directory instead of
    /// replying with them: the task's message without the reply format, then `agent`'s
    /// instructions. Agents bring their own system prompt.
    pub fn render_agent_task(
        &self,
        task: &Task,
        context: &PromptContext,
    ) -> Result<String, PromptError> {
        let user = self.render(prompt_name(task), Self::task_values(task, context, true))?;
        let how = self.render("agent", context! {})?;
        Ok(format!("{user}\n\n{how}"))
    }

    /// The message that sends a failed round's `findings` back to an external agent, which
    /// fixes them in place.
    pub fn render_agent_refinement(
        &self,
        findings: &[Finding],
        iteration: u32,
        max_iterations: u32,
    ) -> Result<String, PromptError> {
        self.render(
            "refine",
            context! {
                agent => true,
                findings => Self::shown(findings),
                iteration => iteration,
                max_iterations => max_iterations,
            },
        )
    }

    /// What a task template sees; `agent` when an external agent, which edits files in
    /// place, is told the task.
    fn task_values(task: &Task, context: &PromptContext, agent: bool) -> Value {
        context! {
            agent => agent,
            kind => task.kind.as_str(),
            description => &task.description,
            targets => Value::from(Serde(&task.targets)),
            files => Value::from(Serde(&context.files)),
            missing => Value::from(Serde(&context.missing)),
            related => Value::from(Serde(&context.related)),
            repo_map => &context.repo_map,
            conventions => Value::from(Serde(&context.conventions)),
            rules => Value::from(Serde(&context.rules)),
        }
    }

    fn shown(findings: &[Finding]) -> Vec<Value> {
        findings
            .iter()
            .map(|f| {
                // Continuation lines (a syntax error's excerpt) stay under their bullet.
                let message = f.message.replace('\n', "\n  ");
                context! { rule => &f.rule, location => f.location(), message => message }
            })
            .collect()
    }

    /// The message that sends a failed reply's `findings` back to the model.
    pub fn render_refinement(
        &self,
        findings: &[Finding],
        iteration: u32,
        max_iterations: u32,
    ) -> Result<String, PromptError> {
        self.render(
            "refine",
            context! {
                findings => Self::shown(findings),
                iteration => iteration,
                max_iterations => max_iterations,
            },
        )
    }
}

/// Templates with optional sections leave runs of blank lines; keep at most one.
fn squeeze_blank_lines(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank = 0;
    for line in text.trim().lines() {
        if line.trim().is_empty() {
            blank += 1;
            if blank > 1 {
                continue;
            }
        } else {
            blank = 0;
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pitcrew_core::{Priority, TaskId, TaskStatus};

    fn task(kind: TaskKind, metadata: serde_json::Value) -> Task {
        let now = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        Task {
            id: TaskId("01a20000-0000-7000-8000-000000000001".parse().unwrap()),
            seq: 1,
            kind,
            description: "Cover the branches of sign().".into(),
            targets: vec!["src/calc.py".into()],
            repo: "/repo".into(),
            repo_url: None,
            base_commit: "0".repeat(40),
            priority: Priority::Normal,
            model: None,
            max_attempts: 3,
            idempotency_key: None,
            metadata,
            status: TaskStatus::Queued,
            attempts: 0,
            run_at: now,
            created_at: now,
            updated_at: now,
            finished_at: None,
            lease_owner: None,
            lease_expires_at: None,
            error_kind: None,
            last_error: None,
            result_commit: None,
        }
    }

    fn context() -> PromptContext {
        PromptContext {
            files: vec![PromptFile::new(
                "src/calc.py",
                "def sign(x):\n    if x > 0:\n        return 1\n    return -1 if x < 0 else 0\n"
                    .into(),
            )],
            missing: vec![],
            related: vec![
                PromptFile::new("src/util.py", "ZERO = 0\n".into())
                    .because("imported by the target"),
            ],
            repo_map: "src/calc.py: sign(x)\nsrc/util.py: ZERO".into(),
            conventions: vec![Convention {
                path: "AGENTS.md".into(),
                content: "Use pytest. No mocks of our own code.".into(),
            }],
            rules: vec![
                "every file parses".into(),
                "the new tests pass three times in random order".into(),
            ],
        }
    }

    #[test]
    fn every_shipped_prompt_renders() {
        let library = PromptLibrary::new(None);
        let names: Vec<_> = library.list().into_iter().map(|p| p.name).collect();
        assert!(names.len() >= 10, "{names:?}");
        for info in library.list() {
            assert!(
                !info.description.is_empty(),
                "{} has no description",
                info.name
            );
            assert_eq!(info.source, PromptSource::Builtin);
            if matches!(info.name.as_str(), "system" | "refine" | "agent") {
                continue;
            }
            let (system, user) = library
                .render_task(
                    &task(TaskKind::Custom, serde_json::json!({"prompt": info.name})),
                    &context(),
                )
                .unwrap();
            insta::assert_snapshot!(info.name.clone(), user);
            assert!(system.contains("path="));
            assert!(user.contains("def sign(x):"), "{}", info.name);
            assert!(
                user.contains("Cover the branches of sign()."),
                "{}",
                info.name
            );
        }
    }

    #[test]
    fn an_agent_is_told_to_edit_files_never_to_reply_with_them() {
        let library = PromptLibrary::new(None);
        for info in library.list() {
            if matches!(info.name.as_str(), "system" | "refine" | "agent") {
                continue;
            }
            let prompt = library
                .render_agent_task(
                    &task(TaskKind::Custom, serde_json::json!({"prompt": info.name})),
                    &context(),
                )
                .unwrap();
            assert!(!prompt.contains("fenced block"), "{}: {prompt}", info.name);
            assert!(prompt.contains("Cover the branches of sign()."));
            assert!(
                prompt.contains("creating and editing files"),
                "{}",
                info.name
            );
        }
        let findings = vec![Finding::error("tests_pass", "test_sign failed")];
        let refine = library.render_agent_refinement(&findings, 1, 3).unwrap();
        assert!(
            refine.contains("- [tests_pass] test_sign failed"),
            "{refine}"
        );
        assert!(refine.contains("editing the files"), "{refine}");
        assert!(!refine.contains("fenced block"), "{refine}");
    }

    #[test]
    fn system_and_refinement_prompts() {
        let library = PromptLibrary::new(None);
        let (system, _) = library
            .render_task(&task(TaskKind::UnitTest, serde_json::json!({})), &context())
            .unwrap();
        insta::assert_snapshot!("system", system);
        let findings = vec![
            Finding::error("syntax", "syntax error at line 4, column 7: missing `)`")
                .in_file("tests/test_calc.py")
                .at_line(4),
            Finding::error("tests_pass", "test_sign failed: assert 1 == -1"),
        ];
        let refine = library.render_refinement(&findings, 1, 3).unwrap();
        insta::assert_snapshot!("refine", refine);
        assert!(refine.contains("[syntax] tests/test_calc.py:4: syntax error"));
    }

    #[test]
    fn the_kind_picks_the_template_and_metadata_can_override_it() {
        assert_eq!(
            prompt_name(&task(TaskKind::UnitTest, serde_json::json!({}))),
            "unit_test"
        );
        assert_eq!(
            prompt_name(&task(
                TaskKind::Refactor,
                serde_json::json!({"prompt": "type_hints"})
            )),
            "type_hints"
        );
        let err = PromptLibrary::new(None)
            .render_task(
                &task(TaskKind::Custom, serde_json::json!({"prompt": "nope"})),
                &context(),
            )
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("unknown prompt `nope`; valid values: system, unit_test"),
            "{err}"
        );
    }

    #[test]
    fn a_broken_included_override_is_named_itself() {
        let repo = tempfile::tempdir().unwrap();
        let dir = repo.path().join(".pitcrew/prompts");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("_context.j2"), "ok\n{% if %}").unwrap();
        let library = PromptLibrary::new(Some(&Repo::at(repo.path())));
        let err = library
            .render_task(&task(TaskKind::UnitTest, serde_json::json!({})), &context())
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("_context.j2") && text.contains("line 2"),
            "{text}"
        );
    }

    #[test]
    fn a_project_file_overrides_a_shipped_template() {
        let repo = tempfile::tempdir().unwrap();
        let dir = repo.path().join(".pitcrew/prompts");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("unit_test.j2"), "{# Ours. #}\nTests for {{ targets | join(\", \") }}, our way.\n{% include \"_context.j2\" %}").unwrap();
        let library = PromptLibrary::new(Some(&Repo::at(repo.path())));
        let info = library
            .list()
            .into_iter()
            .find(|p| p.name == "unit_test")
            .unwrap();
        assert_eq!(info.description, "Ours.");
        assert!(matches!(info.source, PromptSource::Project(_)));
        let (_, user) = library
            .render_task(&task(TaskKind::UnitTest, serde_json::json!({})), &context())
            .unwrap();
        assert!(
            user.starts_with("Tests for src/calc.py, our way."),
            "{user}"
        );
        assert!(user.contains("def sign(x):"));

        std::fs::write(dir.join("unit_test.j2"), "{% if %}").unwrap();
        let err = library
            .render_task(&task(TaskKind::UnitTest, serde_json::json!({})), &context())
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("unit_test.j2") && text.contains("line 1"),
            "{text}"
        );
    }
}
