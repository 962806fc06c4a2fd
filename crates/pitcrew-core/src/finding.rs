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
pub struct Finding {
    /// The check that made it, e.g. `syntax`, `safe_path`.
    pub rule: String,
    pub severity: Severity,
    pub file: Option<String>,
    pub line: Option<u32>,
    pub message: String,
}

impl Finding {
    pub fn new(rule: &str, severity: Severity, message: impl Into<String>) -> Self {
        Finding {
            rule: rule.to_string(),
            severity,
            file: None,
            line: None,
            message: message.into(),
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
