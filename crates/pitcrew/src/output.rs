//! All user-facing output goes through here: data on stdout (tables for people, JSON with
//! `--json`), messages on stderr. A closed pipe (`pitcrew list | head`) is not an error.

use std::io::Write;
use std::process::ExitCode;

use comfy_table::{ContentArrangement, Table, presets};
use serde::Serialize;

/// A mistake in how pitcrew was called or configured: exit code 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Shorthand for returning a usage error.
pub fn usage(message: impl Into<String>) -> anyhow::Error {
    UsageError(message.into()).into()
}

/// Exit code for an error: 2 for usage and configuration mistakes, 1 otherwise.
pub fn exit_code_for(error: &anyhow::Error) -> ExitCode {
    let is_usage = error
        .chain()
        .any(|cause| cause.is::<UsageError>() || cause.is::<pitcrew_config::ConfigError>());
    ExitCode::from(if is_usage { 2 } else { 1 })
}

pub fn error(error: &anyhow::Error) {
    let mut text = format!("error: {error}");
    for cause in error.chain().skip(1) {
        text.push_str(&format!("\n  caused by: {cause}"));
    }
    message(&text);
}

/// A line on stdout.
pub fn line(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
}

/// A line on stderr (progress, notes, warnings).
pub fn message(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{text}");
}

pub fn json<T: Serialize + ?Sized>(value: &T) {
    line(&serde_json::to_string_pretty(value).expect("output serializes"));
}

/// A table with the given header, ready for rows.
pub fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_style(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.to_vec());
    table
}

pub fn print_table(table: &Table) {
    line(&table.to_string());
}
