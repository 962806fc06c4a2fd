//! Why validation could not reach a verdict. These are problems of the machine or the
//! configuration, never of the output judged: that is what findings are for.

use std::io;

use crate::settings::SettingsError;

#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    /// A command could not be started at all.
    #[error("cannot run `{command}`: {source}")]
    Sandbox {
        command: String,
        #[source]
        source: pitcrew_sandbox::SandboxError,
    },
    /// A configured program is not installed: the shell could not find it (exit code 127),
    /// or Python has no `pytest` or `coverage` module.
    #[error("`{command}` needs a program that is not installed: {output}")]
    CommandNotFound { command: String, output: String },
    /// The existing suite could not be run at the base commit to measure the baseline.
    #[error("cannot run the existing tests at the base commit {commit}: {message}")]
    Baseline { commit: String, message: String },
    /// Generated code would have to run unconfined, and `validation.sandbox` requires
    /// confinement.
    #[error(
        "refusing to run generated code: this machine cannot confine it ({reason}). Fix that, \
         or set validation.sandbox = \"none\" to run it unconfined (every report then says so)"
    )]
    Unsandboxed { reason: String },
    /// The coverage report could not be produced or read.
    #[error("coverage report: {message}")]
    Coverage { message: String },
}
