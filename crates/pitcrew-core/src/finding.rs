use serde::{Deserialize, Serialize};

use crate::named_enum;

named_enum! {
    /// How much a finding matters: any `error` rejects the output.
    pub enum Severity ("severity") {
        Error = "error",
        Warning = "warning",
        Info = "info",
    }
}

/// One observation a check made about produced output, specific enough to act on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Finding {
    /// The check that made it, e.g. `syntax`, `safe_path`.
    pub rule: String,
    pub severity: Severity,
    pub file: Option<String>,
    pub line: Option<u32>,
    pub message: String,
}

/// Longest line of a finding's message, in bytes; a longer one is cut in the middle.
pub const MAX_FINDING_LINE: usize = 1000;
/// Longest finding message, in bytes; a longer one keeps its head and tail. Findings quote
/// output a generated test chose, so they are bounded before they are stored or sent.
pub const MAX_FINDING_MESSAGE: usize = 8 * 1024;

impl Finding {
    /// A finding; a message longer than [`MAX_FINDING_MESSAGE`] bytes, or with lines longer
    /// than [`MAX_FINDING_LINE`], is cut, saying how much was left out.
    pub fn new(rule: &str, severity: Severity, message: impl Into<String>) -> Self {
        Finding {
            rule: rule.to_string(),
            severity,
            file: None,
            line: None,
            message: bounded(message.into()),
        }
    }

    pub fn error(rule: &str, message: impl Into<String>) -> Self {
        Self::new(rule, Severity::Error, message)
    }

    pub fn warning(rule: &str, message: impl Into<String>) -> Self {
        Self::new(rule, Severity::Warning, message)
    }

    pub fn info(rule: &str, message: impl Into<String>) -> Self {
        Self::new(rule, Severity::Info, message)
    }

    pub fn in_file(mut self, file: impl Into<String>) -> Self {
        self.file = Some(file.into());
        self
    }

    pub fn at_line(mut self, line: u32) -> Self {
        self.line = Some(line);
        self
    }

    /// Replaces every registered secret ([`crate::redact`]) in the message and the file.
    pub fn redact_secrets(&mut self) {
        crate::redact_string(&mut self.message);
        if let Some(file) = &mut self.file {
            crate::redact_string(file);
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// `file:line: message`, as far as known.
    pub fn location(&self) -> String {
        match (&self.file, self.line) {
            (Some(f), Some(l)) => format!("{f}:{l}"),
            (Some(f), None) => f.clone(),
            _ => String::new(),
        }
    }
}

/// The largest index ≤ `at` on a character boundary of `s`.
fn floor_boundary(s: &str, at: usize) -> usize {
    let mut at = at.min(s.len());
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// `text` with its middle replaced by a note when it exceeds `max` bytes.
fn cut_middle(text: &str, max: usize, unit: &str) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let head = floor_boundary(text, max * 3 / 4);
    let tail = floor_boundary(text, text.len() - max / 4);
    format!(
        "{}[… {} {unit} cut …]{}",
        &text[..head],
        tail - head,
        &text[tail..]
    )
}

/// `message` cut to the bounds of a finding's message ([`MAX_FINDING_MESSAGE`],
/// [`MAX_FINDING_LINE`]), saying how much was left out: for any text quoting output that
/// generated code chose.
pub fn bounded(message: String) -> String {
    if message.len() <= MAX_FINDING_MESSAGE && message.lines().all(|l| l.len() <= MAX_FINDING_LINE)
    {
        return message;
    }
    let lines: Vec<String> = message
        .lines()
        .map(|l| cut_middle(l, MAX_FINDING_LINE, "bytes"))
        .collect();
    cut_middle(&lines.join("\n"), MAX_FINDING_MESSAGE, "bytes")
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let location = self.location();
        if location.is_empty() {
            write!(f, "[{}] {}", self.rule, self.message)
        } else {
            write!(f, "[{}] {location}: {}", self.rule, self.message)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_and_lines_are_cut_in_the_middle() {
        let short = Finding::error("r", "fine\nmessage");
        assert_eq!(short.message, "fine\nmessage");

        let line = format!("E   {}", "é".repeat(5000));
        let finding = Finding::error("r", format!("head\n{line}\ntail"));
        assert!(
            finding.message.len() < 2 * MAX_FINDING_LINE,
            "{}",
            finding.message.len()
        );
        assert!(finding.message.starts_with("head\nE   é"));
        assert!(finding.message.ends_with("é\ntail"));
        assert!(finding.message.contains("bytes cut"));

        let many = vec!["x".repeat(900); 100].join("\n");
        let finding = Finding::warning("r", many);
        assert!(finding.message.len() <= MAX_FINDING_MESSAGE + 64);
        assert!(finding.message.contains("bytes cut"));
    }
}
