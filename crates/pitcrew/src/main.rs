//! The `pitcrew` command line. Everything lives in `cli` and `commands`; this file only wires
//! secrets, logging and turns the outcome into an exit code.

mod cli;
mod commands;
mod context;
mod output;
mod progress;
mod signals;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Before the first line of output: every secret the process was handed.
    output::guard_secrets();
    let args = match cli::Cli::try_parse() {
        Ok(args) => args,
        Err(e) => return output::usage_exit(&e),
    };
    tracing_subscriber::fmt()
        .with_writer(output::LogWriter)
        .with_ansi(output::stderr_colours())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PITCREW_LOG")
                .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
                .unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let runtime = tokio::runtime::Runtime::new().expect("the tokio runtime starts");
    let outcome = runtime.block_on(commands::dispatch(args));
    // Workers may still hold blocking threads (process waits); do not wait for them.
    runtime.shutdown_background();
    match outcome {
        Ok(code) => code,
        Err(error) => {
            output::error(&error);
            output::exit_code_for(&error)
        }
    }
}
