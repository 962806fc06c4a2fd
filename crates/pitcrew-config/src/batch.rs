//! Batch files of tasks, as users write them by hand: `.jsonl` (one JSON task per line;
//! blank lines and `#` or `//` comments skipped) or `.toml` (`[[task]]` tables). Every entry is
//! read on its own, so one bad line is reported with its number while the others are still
//! read; checking an entry against the repository is the caller's job.

use pitcrew_core::{Priority, TaskKind};
use pitcrew_llm::Complexity;
use serde::Deserialize;

/// One task as written by the user, before checks.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    pub kind: TaskKind,
    #[serde(default)]
    pub target: Option<String>,
    #[serde(default)]
    pub targets: Vec<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub priority: Option<Priority>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub idempotency_key: Option<String>,
    #[serde(default)]
    pub max_attempts: Option<u32>,
    #[serde(default)]
    pub base: Option<String>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub metadata: Option<serde_json::Value>,
    /// A prompt template other than the kind's own, e.g. `type_hints`.
    #[serde(default)]
    pub prompt: Option<String>,
    /// low, medium or high: steers model selection.
    #[serde(default)]
    pub complexity: Option<Complexity>,
    /// The runtime that works the task: `builtin` or a name under `[runtimes]`; `None`: the
    /// kind's, else the default (`[runtime]`).
    #[serde(default)]
    pub runtime: Option<String>,
}

/// The `[[task]]` tables of a TOML batch file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlBatch {
    #[serde(default)]
    task: Vec<toml::Spanned<TaskSpec>>,
}

/// How a batch file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchFormat {
    JsonLines,
    Toml,
}

impl BatchFormat {
    /// The format a file's extension names, or the message saying which ones exist.
    pub fn from_extension(name: &str, extension: &str) -> Result<Self, String> {
        match extension {
            "jsonl" | "ndjson" | "json" => Ok(BatchFormat::JsonLines),
            "toml" => Ok(BatchFormat::Toml),
            _ => Err(format!(
                "{name}: unknown batch format `.{extension}`; use .jsonl (one JSON task per line) or .toml ([[task]] tables)"
            )),
        }
    }
}

/// One entry of a batch file: its 1-based line and the task, or why it could not be read.
pub type BatchEntry = (usize, Result<TaskSpec, String>);

/// Reads the entries of a batch file's `text`; `name` is used in the message of a problem
/// that stops the whole file from being read (TOML that does not parse).
pub fn parse_batch(name: &str, text: &str, format: BatchFormat) -> Result<Vec<BatchEntry>, String> {
    match format {
        BatchFormat::JsonLines => Ok(text
            .lines()
            .enumerate()
            .filter(|(_, line)| {
                let t = line.trim();
                !(t.is_empty() || t.starts_with("//") || t.starts_with('#'))
            })
            .map(|(index, line)| {
                (
                    index + 1,
                    serde_json::from_str::<TaskSpec>(line.trim()).map_err(|e| json_problem(&e)),
                )
            })
            .collect()),
        BatchFormat::Toml => {
            let batch: TomlBatch = toml::from_str(text)
                .map_err(|e| format!("{name}: {}", e.to_string().trim_end()))?;
            Ok(batch
                .task
                .into_iter()
                .map(|spanned| {
                    let line = text[..spanned.span().start].matches('\n').count() + 1;
                    (line, Ok(spanned.into_inner()))
                })
                .collect())
        }
    }
}

/// serde_json ends messages with ` at line 1 column N`; on a one-line entry the column is
/// what helps.
fn json_problem(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let message = text
        .rsplit_once(" at line ")
        .map_or(text.as_str(), |(m, _)| m);
    format!("column {}: {message}", e.column())
}
