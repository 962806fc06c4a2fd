//! All user-facing output goes through here: data on stdout (tables for people, JSON with
//! `--json`), messages on stderr, log lines ([`LogWriter`]). A closed pipe
//! (`pitcrew list | head`) is not an error. Every write is redacted: a secret registered with
//! [`pitcrew_core::register_secret`] is printed as `[REDACTED]`.

use std::io::{IsTerminal, Write};
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
    let is_usage = error.chain().any(|cause| {
        cause.is::<UsageError>()
            || cause.is::<pitcrew_config::ConfigError>()
            || matches!(
                cause.downcast_ref::<pitcrew_store::StoreError>(),
                Some(pitcrew_store::StoreError::UnsupportedUrl(_))
            )
    });
    ExitCode::from(if is_usage { 2 } else { 1 })
}

/// `error: …` and each cause on a line of its own; a cause whose text the lines above already
/// say (an OS error a message quotes) is not repeated.
pub fn error(error: &anyhow::Error) {
    let mut text = format!("error: {error}");
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(&format!("\n  caused by: {cause}"));
        }
    }
    message(&text);
}

/// Whether text for stderr may carry colours: stderr is a terminal and `NO_COLOR` is unset
/// (<https://no-color.org>).
pub fn stderr_colours() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

pub use pitcrew_core::handle;

/// `text` cut to at most `max` characters (its first line only), ending in `…` when cut.
pub fn truncate(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or("").trim_end();
    if line.chars().count() <= max && !text.trim_end().contains('\n') {
        return line.to_string();
    }
    let mut cut: String = line.chars().take(max.saturating_sub(1)).collect();
    cut.truncate(cut.trim_end().len());
    cut.push('…');
    cut
}

/// The width tables may take on stdout when it is not a terminal (a pipe, a file): `COLUMNS`
/// when set, else 100. On a terminal the table takes the terminal's width.
const PIPED_WIDTH: u16 = 100;

fn piped_width() -> u16 {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<u16>().ok())
        .filter(|c| *c >= 20)
        .unwrap_or(PIPED_WIDTH)
}

/// `text` as it may be shown: no registered secret, and no control character a model or a
/// generated test could use to drive the terminal.
pub fn shown(text: &str) -> String {
    pitcrew_core::printable(&pitcrew_core::redact(text)).into_owned()
}

/// A line on stdout.
pub fn line(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", shown(text));
}

/// A line on stderr (progress, notes, warnings).
pub fn message(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{}", shown(text));
}

/// Registers the secrets pitcrew was started with (see [`register_process_secrets`]) and
/// makes a panic's message redacted like every other output. Called first thing in `main`.
pub fn guard_secrets() {
    register_process_secrets();
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("<unnamed>");
        let backtrace = std::backtrace::Backtrace::capture();
        let mut text = format!("thread '{name}' {info}\n");
        if backtrace.status() == std::backtrace::BacktraceStatus::Captured {
            text.push_str(&format!("stack backtrace:\n{backtrace}\n"));
        } else {
            text.push_str(
                "note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n",
            );
        }
        let _ = std::io::stderr()
            .lock()
            .write_all(pitcrew_core::redact(&text).as_bytes());
    }));
}

/// Registers the secrets pitcrew was started with: the value of every environment variable
/// whose name looks secret, and the password of every URL in the environment or on the
/// command line (`--store postgres://user:PASSWORD@…`, `DATABASE_URL`, a proxy).
fn register_process_secrets() {
    let vars: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    pitcrew_core::register_env(vars.iter().map(|(k, v)| (k, v)));
    let args = std::env::args_os().map(|a| a.to_string_lossy().into_owned());
    for value in vars.into_iter().map(|(_, v)| v).chain(args) {
        if value.contains("://") {
            pitcrew_store::register_url_secrets(&value);
        }
    }
}

/// Prints what clap has to say about the command line (an error, `--help`, `--version`),
/// redacted, and returns its exit code.
pub fn usage_exit(error: &clap::Error) -> ExitCode {
    let rendered = error.render();
    let terminal = if error.use_stderr() {
        std::io::stderr().is_terminal()
    } else {
        std::io::stdout().is_terminal()
    };
    let text = if terminal && std::env::var_os("NO_COLOR").is_none() {
        rendered.ansi().to_string()
    } else {
        rendered.to_string()
    };
    let text = pitcrew_core::redact(&text);
    if error.use_stderr() {
        let _ = std::io::stderr().lock().write_all(text.as_bytes());
    } else {
        let _ = std::io::stdout().lock().write_all(text.as_bytes());
    }
    ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(2))
}

/// The log's writer: each formatted event is collected whole, redacted, then written to
/// stderr in one piece (so every line, at every level, is scrubbed).
#[derive(Debug, Clone, Copy, Default)]
pub struct LogWriter;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogEvent;

    fn make_writer(&'a self) -> Self::Writer {
        LogEvent(Vec::new())
    }
}

/// One log event being written; redacted and written out when dropped.
#[derive(Debug)]
pub struct LogEvent(Vec<u8>);

impl Write for LogEvent {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogEvent {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&self.0);
        // With colours, the log's own escape codes stay (tracing escapes those in values).
        let text = if stderr_colours() {
            pitcrew_core::redact(&text).into_owned()
        } else {
            shown(&text)
        };
        let _ = std::io::stderr().lock().write_all(text.as_bytes());
    }
}

pub fn json<T: Serialize + ?Sized>(value: &T) {
    line(&serde_json::to_string_pretty(value).expect("output serializes"));
}

/// A table with the given header, ready for rows; as wide as the terminal, or (piped)
/// `COLUMNS` or 100 columns at most.
pub fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_style(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.to_vec());
    if !std::io::stdout().is_terminal() {
        table.set_width(piped_width());
    }
    table
}

/// The narrowest a wrapping column gets: a table that cannot fit otherwise is wider than
/// asked rather than shredded into a letter per line.
const MIN_WRAPPING_WIDTH: u16 = 14;

/// Keeps the columns at `indexes` (handles, names, numbers) on one line; the others wrap, down
/// to a readable width, to make the table fit. Call it once the rows are in.
pub fn keep_whole(table: &mut Table, indexes: &[usize]) {
    let widths = table.column_max_content_widths();
    for (i, width) in widths.into_iter().enumerate() {
        let Some(column) = table.column_mut(i) else {
            continue;
        };
        column.set_constraint(if indexes.contains(&i) {
            comfy_table::ColumnConstraint::ContentWidth
        } else {
            comfy_table::ColumnConstraint::LowerBoundary(comfy_table::Width::Fixed(
                width.min(MIN_WRAPPING_WIDTH),
            ))
        });
    }
}

pub fn print_table(table: &Table) {
    line(&table.to_string());
}
