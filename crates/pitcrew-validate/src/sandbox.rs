//! How validation runs commands: through `pitcrew-sandbox`, in a given directory, with the
//! allowlisted environment, limits, timeout and network isolation the settings ask for, and
//! (unless `validation.sandbox = "none"`) confined: PID, mount and network namespaces of
//! their own and Landlock, seeing the system's programs, the Python toolchain, the worktree
//! and the scratch directory only.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::Duration;

use pitcrew_sandbox::{CommandSpec, Confinement, EnvPolicy, Output, SandboxError};
use serde::Deserialize;

use crate::effects::Listing;
use crate::error::ValidateError;
use crate::settings::{SandboxMode, ValidationSettings};

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
    /// The directory generated code may write besides the scratch directory.
    worktree: &'a Path,
    /// What confined commands may read of the Python toolchain, and its `bin` directory.
    toolchain: Arc<Toolchain>,
    /// Set when a command ran without the network isolation asked for.
    exposed: AtomicBool,
    /// Set when a command that runs generated code ran unconfined.
    unconfined: AtomicBool,
    /// The worktree as it was before the first command ran (none ran while unset): every
    /// command may write it, and nothing else here does.
    worktree_before: tokio::sync::OnceCell<Listing>,
}

impl<'a> Sandbox<'a> {
    /// Finds the toolchain the commands need.
    pub(crate) async fn new(
        settings: &'a ValidationSettings,
        parent_env: Option<&'a [(OsString, OsString)]>,
        scratch: &'a Path,
        worktree: &'a Path,
    ) -> Result<Self, ValidateError> {
        let toolchain = if settings.sandbox == SandboxMode::Required {
            preflight(settings).await?;
            toolchain(settings, parent_env, scratch).await
        } else {
            Arc::new(Toolchain::default())
        };
        Ok(Sandbox {
            settings,
            parent_env,
            scratch,
            worktree,
            toolchain,
            exposed: AtomicBool::new(false),
            unconfined: AtomicBool::new(false),
            worktree_before: tokio::sync::OnceCell::new(),
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

    /// The worktree as it was before the first command ran; `None` while none has run (then
    /// nothing could have changed it).
    pub(crate) fn worktree_before_commands(&self) -> Option<&Listing> {
        self.worktree_before.get()
    }

    /// Whether some command ran unconfined (`validation.sandbox = "none"`).
    pub(crate) fn ran_unconfined(&self) -> bool {
        self.unconfined.load(Ordering::Relaxed)
    }

    /// The confinement of every command: the system, the toolchain and the configured paths
    /// to read; the worktree, the scratch directory and the configured paths to write.
    fn confinement(&self) -> Confinement {
        let mut confinement = Confinement::new();
        for path in &self.toolchain.read {
            confinement = confinement.read(path);
        }
        for path in &self.settings.sandbox_read {
            confinement = confinement.read(path);
        }
        confinement = confinement.write(self.worktree).write(self.scratch);
        for path in &self.settings.sandbox_write {
            confinement = confinement.write(path);
        }
        confinement
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
        let limit = Duration::from_secs(self.settings.timeout_secs);
        self.shell_within(cwd, command, extra_env, limit).await
    }

    /// [`Sandbox::shell`] with its own time limit instead of `validation.timeout_secs`.
    pub(crate) async fn shell_within(
        &self,
        cwd: &Path,
        command: &str,
        extra_env: &[(&str, String)],
        limit: Duration,
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
        if let Some(bin) = &self.toolchain.bin {
            // The interpreter the toolchain was probed from comes first, so `python3` is the
            // real one and not a version manager's shim that reads the user's home.
            let parent_path = match self.parent_env {
                Some(vars) => vars
                    .iter()
                    .find(|(k, _)| k == "PATH")
                    .map(|(_, v)| v.clone()),
                None => std::env::var_os("PATH"),
            };
            let mut dirs = vec![bin.clone()];
            dirs.extend(parent_path.iter().flat_map(std::env::split_paths));
            if let Ok(path) = std::env::join_paths(dirs) {
                set.push(("PATH".into(), path.to_string_lossy().into_owned()));
            }
        }
        let mut spec = CommandSpec::shell(command, cwd)
            .env_policy(EnvPolicy::Allowlist {
                pass: self.settings.pass_env.clone(),
                set,
            })
            .timeout(limit)
            .limits(self.settings.limits.to_sandbox())
            .isolate_network(!self.settings.allow_network);
        if let Some(parent) = self.parent_env {
            spec = spec.parent_env(parent.iter().cloned());
        }
        match self.settings.sandbox {
            SandboxMode::Required => spec = spec.confine(self.confinement()),
            SandboxMode::None => self.unconfined.store(true, Ordering::Relaxed),
        }
        // Listed here, before anything can write it, and only once some command is to run:
        // a validation of in-process rules alone never walks the repository (nor writes the
        // pytest plugin the commands find on `PYTHONPATH`).
        self.worktree_before
            .get_or_try_init(|| async {
                let plugins = self.scratch.join("plugins");
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
                Ok::<_, ValidateError>(Listing::of(self.worktree))
            })
            .await?;
        let output = pitcrew_sandbox::run(spec)
            .await
            .map_err(|source| match source {
                SandboxError::Unconfined { reason } => ValidateError::Unsandboxed { reason },
                source => ValidateError::Sandbox {
                    command: command.to_string(),
                    source,
                },
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

/// Checks that generated code can run as `settings` demand: with `validation.sandbox =
/// "required"` (the default), that this machine can confine it. `Err` names what is missing
/// and what to do.
pub async fn preflight(settings: &ValidationSettings) -> Result<(), ValidateError> {
    if settings.sandbox == SandboxMode::None {
        return Ok(());
    }
    pitcrew_sandbox::confinement_available()
        .await
        .map_err(|e| ValidateError::Unsandboxed {
            reason: e.to_string(),
        })
}

/// What confined commands need of the Python toolchain.
#[derive(Debug, Default)]
struct Toolchain {
    /// Read (and execute) beneath these: the interpreter's prefixes and `sys.path`.
    read: Vec<PathBuf>,
    /// The directory of the real interpreter, put first on the commands' `PATH`.
    bin: Option<PathBuf>,
}

/// What [`PROBE`] prints.
#[derive(Debug, Deserialize)]
struct Probed {
    executable: PathBuf,
    paths: Vec<PathBuf>,
}

/// Run by each interpreter the commands use (isolated mode: no user site, no environment
/// variables, no current directory on `sys.path`).
const PROBE: &str = "import json, os, sys, sysconfig\n\
paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}\n\
paths.update(p for p in sys.path if p)\n\
paths.update(sysconfig.get_paths().values())\n\
print(json.dumps({'executable': os.path.realpath(sys.executable), 'paths': sorted(paths)}))\n";

/// The toolchain of `settings`' commands, probed once per process for each set of
/// interpreters and `PATH`: every Python interpreter that starts one of the test, coverage or
/// toolchain commands, and `python3`.
async fn toolchain(
    settings: &ValidationSettings,
    parent_env: Option<&[(OsString, OsString)]>,
    scratch: &Path,
) -> Arc<Toolchain> {
    static PROBED: LazyLock<Mutex<HashMap<String, Arc<Toolchain>>>> = LazyLock::new(Mutex::default);
    let mut interpreters = vec!["python3".to_string()];
    for command in [
        &settings.test_command,
        &settings.coverage_command,
        &settings.toolchain.python,
    ] {
        let first = command.split_whitespace().next().unwrap_or("");
        let name = Path::new(first)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.starts_with("python") && !interpreters.iter().any(|i| i == first) {
            interpreters.push(first.to_string());
        }
    }
    let parent_path = match parent_env {
        Some(vars) => vars
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.clone()),
        None => std::env::var_os("PATH"),
    };
    let key = format!("{interpreters:?}{parent_path:?}");
    if let Some(found) = PROBED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&key)
    {
        return Arc::clone(found);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let mut found = Toolchain::default();
    for interpreter in &interpreters {
        let mut spec = CommandSpec::new(interpreter, scratch)
            .args(["-I", "-c", PROBE])
            .env_policy(EnvPolicy::Allowlist {
                pass: Vec::new(),
                set: Vec::new(),
            })
            .timeout(Duration::from_secs(30));
        if let Some(parent) = parent_env {
            spec = spec.parent_env(parent.iter().cloned());
        }
        let probed = match pitcrew_sandbox::run(spec).await {
            Ok(out) if out.success() => serde_json::from_str::<Probed>(out.stdout.trim()).ok(),
            _ => None,
        };
        // An interpreter that does not start is reported by the command that needs it.
        let Some(probed) = probed else { continue };
        if found.bin.is_none() {
            found.bin = probed.executable.parent().map(Path::to_path_buf);
        }
        for path in probed.paths {
            // Never a directory that holds the user's home (or all of the file system).
            let too_wide =
                path.parent().is_none() || home.as_ref().is_some_and(|h| h.starts_with(&path));
            if path.is_absolute() && path.exists() && !too_wide && !found.read.contains(&path) {
                found.read.push(path);
            }
        }
    }
    let found = Arc::new(found);
    PROBED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(key, Arc::clone(&found));
    found
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
