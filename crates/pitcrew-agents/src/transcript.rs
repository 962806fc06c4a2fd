//! The bounded, redacted record of what an agent did.

use std::collections::VecDeque;
use std::time::Instant;

use pitcrew_core::Redactor;
use serde::{Deserialize, Serialize};

use crate::events::cut;

/// The most entries a transcript keeps (the latest ones).
pub const MAX_ENTRIES: usize = 2000;
/// The most bytes one entry's text keeps.
pub const MAX_TEXT: usize = 8 * 1024;

/// One thing that happened in a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TranscriptEntry {
    /// `action`, `observation`, `error`, `condensation`, `finish`, `message`, `state`,
    /// `event` (an event of a shape not known here, kept whole), `text` (a line of output
    /// that is no event), `stderr` (the end of the agent's stderr), `cut` (how many earlier
    /// entries were dropped).
    pub kind: String,
    /// Redacted, and cut to [`MAX_TEXT`] bytes.
    pub text: String,
    /// Milliseconds since the run started.
    pub at_ms: u64,
}

/// Collects entries, redacting and bounding them, and reports each as it comes.
pub(crate) struct Transcript<'a> {
    started: Instant,
    entries: VecDeque<TranscriptEntry>,
    dropped: usize,
    redactor: Redactor,
    on_event: &'a mut (dyn FnMut(&TranscriptEntry) + Send),
}

impl<'a> Transcript<'a> {
    /// `secrets` are redacted besides those registered process-wide.
    pub(crate) fn new(
        started: Instant,
        secrets: &[&str],
        on_event: &'a mut (dyn FnMut(&TranscriptEntry) + Send),
    ) -> Self {
        let mut redactor = Redactor::new();
        redactor.add_all(secrets);
        Self {
            started,
            entries: VecDeque::new(),
            dropped: 0,
            redactor,
            on_event,
        }
    }

    /// `text` with every known secret replaced.
    pub(crate) fn redact(&self, text: &str) -> String {
        let global = pitcrew_core::redact(text);
        self.redactor.redact(&global).into_owned()
    }

    pub(crate) fn push(&mut self, kind: &str, text: &str) {
        let entry = TranscriptEntry {
            kind: kind.to_owned(),
            text: cut(&self.redact(&without_escapes(text)), MAX_TEXT),
            at_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
        };
        (self.on_event)(&entry);
        if self.entries.len() == MAX_ENTRIES {
            self.entries.pop_front();
            self.dropped += 1;
        }
        self.entries.push_back(entry);
    }

    pub(crate) fn finish(mut self) -> Vec<TranscriptEntry> {
        if self.dropped > 0 {
            self.entries.pop_front();
            self.entries.push_front(TranscriptEntry {
                kind: "cut".to_owned(),
                text: format!("{} earlier entries dropped", self.dropped + 1),
                at_ms: 0,
            });
        }
        self.entries.into()
    }
}

/// `text` without terminal escape sequences (colours, bold, cursor moves), which agents
/// print for a terminal even when told `NO_COLOR`: CSI (`ESC [ … final`), OSC
/// (`ESC ] … BEL` or `ESC \\`) and two-byte escapes are dropped.
fn without_escapes(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains('\x1b') {
        return text.into();
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('[') => {
                // Parameters and intermediates, up to the final byte @..~.
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            Some(']') => {
                while let Some(c) = chars.next() {
                    if c == '\x07' || (c == '\x1b' && chars.next_if_eq(&'\\').is_some()) {
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_escapes_are_dropped_and_text_kept() {
        assert_eq!(
            without_escapes("\x1b[1mSummary:\x1b[0m done \x1b[38;5;12mok\x1b[0m"),
            "Summary: done ok"
        );
        assert_eq!(
            without_escapes("\x1b]8;;http://x\x07link\x1b]8;;\x1b\\!"),
            "link!"
        );
        assert_eq!(without_escapes("a\x1bMb"), "ab");
        assert_eq!(without_escapes("plain"), "plain");
        assert_eq!(without_escapes("cut \x1b["), "cut ");
    }

    #[test]
    fn entries_are_redacted_cut_bounded_and_reported() {
        let mut seen = 0usize;
        let mut count = |_: &TranscriptEntry| seen += 1;
        let mut t = Transcript::new(Instant::now(), &["tok-5f1c-secret"], &mut count);
        t.push("text", "key tok-5f1c-secret here");
        t.push("text", &"x".repeat(MAX_TEXT + 10));
        for i in 0..MAX_ENTRIES {
            t.push("action", &i.to_string());
        }
        let entries = t.finish();
        assert_eq!(seen, MAX_ENTRIES + 2);
        assert_eq!(entries.len(), MAX_ENTRIES);
        assert_eq!(entries[0].kind, "cut");
        assert_eq!(entries[0].text, "3 earlier entries dropped");
        assert_eq!(entries[1].text, "1");
        assert_eq!(entries.last().unwrap().text, (MAX_ENTRIES - 1).to_string());

        let mut ignore = |_: &TranscriptEntry| {};
        let mut t = Transcript::new(Instant::now(), &["tok-5f1c-secret"], &mut ignore);
        t.push("text", "key tok-5f1c-secret here");
        t.push("text", &"x".repeat(MAX_TEXT + 10));
        let entries = t.finish();
        assert_eq!(entries[0].text, "key [REDACTED] here");
        assert!(entries[1].text.len() < MAX_TEXT + 40);
        assert!(entries[1].text.ends_with("[10 bytes cut]"));
    }
}
