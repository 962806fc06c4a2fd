//! How validation runs commands: through `pitcrew-sandbox`, in a given directory, with the
//! allowlisted environment, limits, timeout and network isolation the settings ask for.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use pitcrew_sandbox::{CommandSpec, EnvPolicy, Output};

use crate::error::ValidateError;
use crate::settings::ValidationSettings;

/// pytest plugin ordering the collected tests by `PITCREW_TEST_ORDER`: `reverse`, or
/// `shuffle:<seed>`. Written into the scratch directory and loaded with `-p pitcrew_order`,
/// so reruns can expose order dependence without any plugin installed in the project.
const ORDER_PLUGIN: &str = r#""""pitcrew's test-order plugin: PITCREW_TEST_ORDER=reverse|shuffle:<seed>."""
import os
import random

import pytest


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session, config, items):
    order = os.environ.get("PITCREW_TEST_ORDER", "")
    if order == "reverse":
        items.reverse()
    elif order.startswith("shuffle:"):
        random.Random(order[len("shuffle:"):]).shuffle(items)
"#;

/// The module name of [`ORDER_PLUGIN`], for `-p`.
pub(crate) const ORDER_PLUGIN_MODULE: &str = "pitcrew_order";

/// Runs the commands of one validation. Owns nothing but paths; the scratch directory is
/// the pipeline's.
#[derive(Debug)]
pub(crate) struct Sandbox<'a> {
    settings: &'a ValidationSettings,
    parent_env: Option<&'a [(OsString, OsString)]>,
    scratch: &'a Path,
    /// Set when a command asked for network isolation and the machine could not give it.
    exposed: AtomicBool,
}

impl<'a> Sandbox<'a> {
    /// Prepares `scratch` (the pytest plugin).
    pub(crate) fn new(
        settings: &'a ValidationSettings,
        parent_env: Option<&'a [(OsString, OsString)]>,
        scratch: &'a Path,
    ) -> Result<Self, ValidateError> {
        let plugins = scratch.join("plugins");
        std::fs::create_dir_all(&plugins)
            .and_then(|()| {
                std::fs::write(
                    plugins.join(format!("{ORDER_PLUGIN_MODULE}.py")),
                    ORDER_PLUGIN,
                )
            })
            .map_err(|source| ValidateError::Io {
                context: format!("writing the pytest plugin into {}", plugins.display()),
                source,
            })?;
        Ok(Sandbox {
            settings,
            parent_env,
            scratch,
            exposed: AtomicBool::new(false),
        })
    }

    pub(crate) fn settings(&self) -> &'a ValidationSettings {
        self.settings
    }

    /// A fresh path in the scratch directory, for a report a command is to write.
    pub(crate) fn scratch_path(&self, name: &str) -> PathBuf {
        self.scratch.join(name)
    }

    /// Environment for commands that write bytecode whatever `PYTHONDONTWRITEBYTECODE` says
    /// (`py_compile`): a cache directory outside the worktree. Not for test runs: Python
    /// then ignores every existing `__pycache__`, and compiling pytest and the standard
    /// library from source triples each run's start-up.
    pub(crate) fn bytecode_elsewhere(&self) -> [(&'static str, String); 1] {
        let dir = self.scratch.join("pycache");
        [("PYTHONPYCACHEPREFIX", dir.to_string_lossy().into_owned())]
    }

    /// Whether some command ran with network access although isolation was asked for.
    pub(crate) fn network_exposed(&self) -> bool {
        self.exposed.load(Ordering::Relaxed)
    }

    /// Runs `command` with `sh -c` in `cwd`, with `extra_env` on top of the fixed variables.
    ///
    /// Exit code 127 is `sh` saying the program was not found: a configuration problem, so
    /// an error rather than an output to judge.
    pub(crate) async fn shell(
        &self,
        cwd: &Path,
        command: &str,
        extra_env: &[(&str, String)],
    ) -> Result<Output, ValidateError> {
        let path = |p: PathBuf| p.to_string_lossy().into_owned();
        let mut set = vec![
            // Keep the worktree free of bytecode: the result is a patch of it.
            ("PYTHONDONTWRITEBYTECODE".to_string(), "1".to_string()),
            // Unbuffered, so output up to a timeout's kill is not lost.
            ("PYTHONUNBUFFERED".into(), "1".into()),
            ("PYTHONPATH".into(), path(self.scratch.join("plugins"))),
        ];
        set.extend(extra_env.iter().map(|(k, v)| (k.to_string(), v.clone())));
        let mut spec = CommandSpec::shell(command, cwd)
            .env_policy(EnvPolicy::Allowlist {
                pass: self.settings.pass_env.clone(),
                set,
            })
            .timeout(Duration::from_secs(self.settings.timeout_secs))
            .limits(self.settings.limits.to_sandbox())
            .isolate_network(!self.settings.allow_network);
        if let Some(parent) = self.parent_env {
            spec = spec.parent_env(parent.iter().cloned());
        }
        let output = pitcrew_sandbox::run(spec)
            .await
            .map_err(|source| ValidateError::Sandbox {
                command: command.to_string(),
                source,
            })?;
        if !self.settings.allow_network && !output.network_isolated {
            self.exposed.store(true, Ordering::Relaxed);
        }
        if output.code == Some(127) {
            return Err(ValidateError::CommandNotFound {
                command: command.to_string(),
                output: output.combined_tail(5),
            });
        }
        Ok(output)
    }
}

/// `s` quoted for `sh` unless it is plainly safe.
pub(crate) fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=:@,".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// `paths` shell-quoted and joined with spaces.
pub(crate) fn quote_all<'p>(paths: impl IntoIterator<Item = &'p str>) -> String {
    paths
        .into_iter()
        .map(shell_quote)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting_keeps_plain_paths_and_quotes_the_rest() {
        assert_eq!(shell_quote("tests/test_a.py"), "tests/test_a.py");
        assert_eq!(shell_quote("a b.py"), "'a b.py'");
        assert_eq!(shell_quote("it's.py"), r"'it'\''s.py'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(quote_all(["a.py", "b c.py"]), "a.py 'b c.py'");
    }
}
