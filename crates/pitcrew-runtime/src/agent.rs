//! The built-in agent: one prompt, one model call, files read from the reply, checked, and
//! written into the task's worktree; then the project's validation command, if any. The agent
//! reports what it observed; it never claims success the checks did not show.

use std::time::Duration;

use pitcrew_core::config::ResolvedModel;
use pitcrew_core::{ErrorKind, Finding, Task, Usage};
use pitcrew_llm::{ChatClient, ChatRequest, Endpoint, Message};
use pitcrew_sandbox::{CommandSpec, EnvPolicy};

use crate::context::{ContextReport, ContextSettings, gather};
use crate::git::Worktree;
use crate::paths::resolve_inside;
use crate::prompt::PromptLibrary;
use crate::reply::extract_files;

/// Settings the agent takes from the configuration.
#[derive(Debug, Clone)]
pub struct AgentSettings {
    pub temperature: f64,
    pub max_tokens: u32,
    /// Shell command run in the worktree after writing; empty for none. `{files}` is
    /// replaced by the written files, shell-quoted.
    pub validation_command: String,
    pub validation_timeout: Duration,
    pub context: ContextSettings,
}

/// What one run of the agent produced and observed.
#[derive(Debug, Clone, Default)]
pub struct AgentRun {
    /// The model id called.
    pub model: String,
    pub usage: Usage,
    pub latency: Option<Duration>,
    pub findings: Vec<Finding>,
    /// Files written into the worktree, relative to its root.
    pub written: Vec<String>,
    /// Why the run produced no acceptable output; `None` only when files were written and
    /// every check passed.
    pub failure: Option<(ErrorKind, String)>,
    /// How long the provider asked to wait before calling again.
    pub retry_after: Option<Duration>,
    /// What the prompt included besides the task, and what did not fit.
    pub context: Option<ContextReport>,
}

impl AgentRun {
    fn fail(mut self, kind: ErrorKind, message: impl Into<String>) -> Self {
        self.failure = Some((kind, message.into()));
        self
    }
}

/// The error kind a rule's `error` finding stands for.
fn kind_of_rule(rule: &str) -> ErrorKind {
    match rule {
        "safe_path" => ErrorKind::UnsafePath,
        "syntax" => ErrorKind::SyntaxError,
        "validation_command" => ErrorKind::ValidationFailed,
        _ => ErrorKind::MalformedReply,
    }
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=:@".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[derive(Debug, Clone)]
pub struct BuiltinAgent {
    client: ChatClient,
    settings: AgentSettings,
}

impl BuiltinAgent {
    pub fn new(client: ChatClient, settings: AgentSettings) -> Self {
        BuiltinAgent { client, settings }
    }

    /// Works `task` in `worktree` with `model` at `endpoint`.
    pub async fn run(
        &self,
        task: &Task,
        worktree: &Worktree,
        model: &ResolvedModel,
        endpoint: &Endpoint,
    ) -> AgentRun {
        let mut run = AgentRun {
            model: model.model.clone(),
            ..AgentRun::default()
        };
        let (context, context_report) =
            gather(worktree.path(), &task.targets, &self.settings.context);
        run.context = Some(context_report);
        let library = PromptLibrary::new(Some(worktree.repo().root()));
        let (system, user) = match library.render_task(task, &context) {
            Ok(messages) => messages,
            Err(e) => return run.fail(ErrorKind::Config, e.to_string()),
        };
        let request = ChatRequest {
            model: model.model.clone(),
            messages: vec![Message::system(system), Message::user(user)],
            temperature: self.settings.temperature,
            max_tokens: self.settings.max_tokens,
        };
        let completion = match self.client.complete(endpoint, &request).await {
            Ok(c) => c,
            Err(e) => {
                run.retry_after = e.retry_after;
                return run.fail(e.kind, format!("model `{}`: {}", model.model, e.message));
            }
        };
        run.usage = completion.usage;
        run.latency = Some(completion.latency);
        if completion.text.trim().is_empty() {
            return run.fail(
                ErrorKind::EmptyReply,
                format!("model `{}` returned an empty reply", model.model),
            );
        }

        let extraction = extract_files(&completion.text);
        run.findings.extend(extraction.findings);
        if extraction.files.is_empty() && !run.findings.iter().any(Finding::is_error) {
            return run.fail(
                ErrorKind::NoFiles,
                "the reply contains no code block annotated with a file path \
                 (expected e.g. ```python path=tests/test_example.py)",
            );
        }
        let mut accepted = Vec::new();
        for file in extraction.files {
            let destination = match resolve_inside(worktree.path(), &file.path) {
                Ok(d) => d,
                Err(refused) => {
                    run.findings
                        .push(Finding::error("safe_path", refused.to_string()).in_file(file.path));
                    continue;
                }
            };
            let relative = destination
                .strip_prefix(worktree.path().canonicalize().unwrap_or_default())
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_else(|_| file.path.clone());
            if let Some(finding) =
                pitcrew_validate::check_syntax(&relative, &file.content).to_finding(&relative)
            {
                run.findings.push(finding);
            }
            accepted.push((relative, destination, file.content));
        }
        if let Some(first) = run.findings.iter().find(|f| f.is_error()) {
            let errors: Vec<String> = run
                .findings
                .iter()
                .filter(|f| f.is_error())
                .map(|f| f.to_string())
                .collect();
            let kind = kind_of_rule(&first.rule);
            return run.fail(kind, errors.join("\n"));
        }

        // Every check passed: only now does anything touch the worktree.
        for (relative, destination, content) in accepted {
            let written = destination
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| std::fs::write(&destination, content));
            if let Err(e) = written {
                return run.fail(
                    ErrorKind::Workspace,
                    format!("cannot write {relative}: {e}"),
                );
            }
            run.written.push(relative);
        }

        if !self.settings.validation_command.trim().is_empty() {
            if let Err(finding) = self.validate(worktree, &run.written).await {
                let message = finding.to_string();
                run.findings.push(finding);
                return run.fail(ErrorKind::ValidationFailed, message);
            }
            run.findings.push(Finding::info(
                "validation_command",
                format!("`{}` passed", self.settings.validation_command),
            ));
        }
        run
    }

    /// Runs the validation command in the worktree, with no secrets in its environment.
    async fn validate(&self, worktree: &Worktree, written: &[String]) -> Result<(), Finding> {
        let files: Vec<String> = written.iter().map(|f| shell_quote(f)).collect();
        let command = self
            .settings
            .validation_command
            .replace("{files}", &files.join(" "));
        let spec = CommandSpec::shell(&command, worktree.path())
            .env_policy(EnvPolicy::Allowlist {
                pass: Vec::new(),
                set: Vec::new(),
            })
            .timeout(self.settings.validation_timeout);
        let output = pitcrew_sandbox::run(spec).await.map_err(|e| {
            Finding::error(
                "validation_command",
                format!("`{command}` could not run: {e}"),
            )
        })?;
        if output.success() {
            return Ok(());
        }
        Err(Finding::error(
            "validation_command",
            format!(
                "`{command}` failed ({}):\n{}",
                output.describe_status(),
                output.combined_tail(40)
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting_keeps_plain_paths_and_quotes_the_rest() {
        assert_eq!(shell_quote("tests/test_a.py"), "tests/test_a.py");
        assert_eq!(shell_quote("a b.py"), "'a b.py'");
        assert_eq!(shell_quote("it's.py"), r"'it'\''s.py'");
    }
}
