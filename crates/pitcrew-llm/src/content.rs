//! Content failures detected on a reply's text: empty, degenerate repetition, prose where
//! code was asked for, lazy placeholders. The router rotates to another model on each; the
//! validator judges the rest (paths, syntax, tests).
//!
//! # The degeneracy metric
//!
//! A model stuck in a loop emits the same stretch of tokens again and again. The metric is
//! the **longest periodic run**: the most tokens covered by at least
//! [`MIN_COPIES`] consecutive exact copies of one block of 1 to [`MAX_PERIOD`] tokens
//! (tokens are identifiers/numbers and runs of one punctuation character, so a `=====`
//! rule is one token). Its **share** is that run over the reply's token count. A reply is
//! degenerate when the run is at least [`LOOP_TOKENS_WITH_SHARE`] tokens and covers at
//! least [`LOOP_SHARE`] of the reply, or is at least [`LOOP_TOKENS_ALONE`] tokens whatever
//! its share.
//!
//! Measured with the calibration test (`cargo test --release -p pitcrew-llm --test content
//! -- --ignored --nocapture`), over every file in 300-line windows of at least 100 tokens:
//!
//! | corpus | windows | longest run: p99 / p99.9 / max | share: p99.9 / max | flagged |
//! |---|---|---|---|---|
//! | CPython 3.11 standard library | 1 335 | 6 / 47 / 130 | 0.021 / 0.049 | 0 |
//! | CPython 3.12 test suite (many similar asserts) | 2 221 | 31 / 153 / 636 | 0.051 / 0.174 | 0 |
//! | Rust crates in the cargo registry (9 177 files) | 18 460 | 19 / 241 / 2 563 | 0.080 / 0.504 | 4 |
//! | pitcrew's own sources | 147 | 5 / 5 / 22 | 0.005 / 0.008 | 0 |
//!
//! The four Rust windows flagged are two files in two versions each: syn's regression test
//! that nests `fn foo(self: foo<{` 21 times on purpose, and unicode-ident's lookup table
//! repeating one byte value 1 281 times; both are loops by any textual measure and neither
//! is what a model writes when asked for tests. Generated test files with 120 near-identical test functions, 250
//! similar asserts or a 200-row parameter table score 0 (their lines differ in numbers), and
//! a reply looping one 10-token line 200 times scores 2 000 at a share near 1. The share
//! threshold (0.35) is twice the highest share ordinary code reached (0.174), the absolute
//! one (1 200) twice the longest run outside generated tables (636). Loops whose lines differ
//! (incrementing numbers) are not caught here: they are not exact repetition, and validation
//! judges them.

use std::collections::HashMap;

use pitcrew_core::ErrorKind;
use serde::Serialize;

/// What a call is expected to produce; decides which checks apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Source code (fenced blocks): prose-only replies and placeholders are failures.
    Code,
    /// Free text: only empty and degenerate replies are failures.
    Text,
}

/// A reply that is unusable as content.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ContentFailure {
    /// [`ErrorKind::EmptyReply`], [`ErrorKind::Degenerate`], [`ErrorKind::ProseOnly`] or
    /// [`ErrorKind::Placeholder`].
    pub kind: ErrorKind,
    pub message: String,
}

/// Checks `text` in order: empty, degenerate, then (for code) prose-only and placeholders.
pub fn check(text: &str, expect: Expect) -> Result<(), ContentFailure> {
    let fail = |kind, message: String| Err(ContentFailure { kind, message });
    if text.trim().is_empty() {
        return fail(
            ErrorKind::EmptyReply,
            "the model returned an empty reply".into(),
        );
    }
    let repetition = Repetition::measure(text);
    if repetition.is_degenerate() {
        return fail(
            ErrorKind::Degenerate,
            format!(
                "the reply loops: a block of {} tokens repeats {} times ({} of its {} tokens)",
                repetition.period,
                repetition.loop_tokens / repetition.period.max(1),
                repetition.loop_tokens,
                repetition.total_tokens
            ),
        );
    }
    if expect == Expect::Code {
        if is_prose_only(text) {
            return fail(
                ErrorKind::ProseOnly,
                "the reply is prose with no code block where code was asked for".into(),
            );
        }
        if let Some(line) = placeholder(text) {
            return fail(
                ErrorKind::Placeholder,
                format!("the reply leaves a placeholder instead of code: `{line}`"),
            );
        }
    }
    Ok(())
}

/// Copies a block must repeat, consecutively, to count as a loop. Three copies of a block
/// are ordinary copy-and-adapt code (the calibration test finds them in real tests); a model
/// stuck in a loop produces dozens.
pub const MIN_COPIES: usize = 5;
/// The longest block considered, in tokens (a long line of code is 30–60 tokens).
pub const MAX_PERIOD: usize = 256;
/// A run this long is degenerate when it is also [`LOOP_SHARE`] of the reply.
pub const LOOP_TOKENS_WITH_SHARE: usize = 100;
/// The share of the reply a run of [`LOOP_TOKENS_WITH_SHARE`] must cover.
pub const LOOP_SHARE: f64 = 0.35;
/// A run this long is degenerate whatever its share.
pub const LOOP_TOKENS_ALONE: usize = 1200;

/// The longest exact loop in a text (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Repetition {
    /// Tokens covered by the longest periodic run (0 when none repeats [`MIN_COPIES`] times).
    pub loop_tokens: usize,
    /// The length of the repeating block, in tokens.
    pub period: usize,
    pub total_tokens: usize,
}

impl Repetition {
    pub fn measure(text: &str) -> Self {
        let ids = token_ids(text);
        let n = ids.len();
        let mut best = Repetition {
            loop_tokens: 0,
            period: 0,
            total_tokens: n,
        };
        // For each period p, a run of r consecutive positions with ids[i] == ids[i + p]
        // means the r + p tokens starting there are p-periodic. O(n · MAX_PERIOD).
        for p in 1..=MAX_PERIOD.min(n / MIN_COPIES) {
            let mut run = 0;
            for i in 0..n - p {
                if ids[i] == ids[i + p] {
                    run += 1;
                    let covered = run + p;
                    if covered >= MIN_COPIES * p && covered > best.loop_tokens {
                        best.loop_tokens = covered;
                        best.period = p;
                    }
                } else {
                    run = 0;
                }
            }
        }
        best
    }

    /// The run's share of the text's tokens, 0–1.
    pub fn share(&self) -> f64 {
        if self.total_tokens == 0 {
            0.0
        } else {
            self.loop_tokens as f64 / self.total_tokens as f64
        }
    }

    pub fn is_degenerate(&self) -> bool {
        self.loop_tokens >= LOOP_TOKENS_ALONE
            || (self.loop_tokens >= LOOP_TOKENS_WITH_SHARE && self.share() >= LOOP_SHARE)
    }
}

/// Tokens as small integers: identifiers and numbers, and runs of one punctuation character.
fn token_ids(text: &str) -> Vec<u32> {
    let mut ids: HashMap<&str, u32> = HashMap::new();
    let mut out = Vec::new();
    let mut rest = text.trim_start();
    while let Some(first) = rest.chars().next() {
        let len = if first.is_alphanumeric() || first == '_' {
            rest.find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(rest.len())
        } else {
            rest.find(|c: char| c != first).unwrap_or(rest.len())
        };
        let next = ids.len() as u32;
        out.push(*ids.entry(&rest[..len]).or_insert(next));
        rest = rest[len..].trim_start();
    }
    out
}

/// No fenced block and hardly a line that looks like code.
fn is_prose_only(text: &str) -> bool {
    if text.contains("```") || text.contains("~~~") {
        return false;
    }
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let code = lines.iter().filter(|l| looks_like_code(l)).count();
    // Two code-looking lines are enough to be judged by the validator instead.
    code < 2 && (code as f64) < 0.2 * lines.len() as f64
}

fn looks_like_code(line: &str) -> bool {
    const STARTS: &[&str] = &[
        "def ",
        "class ",
        "import ",
        "from ",
        "fn ",
        "pub ",
        "use ",
        "let ",
        "const ",
        "return ",
        "assert",
        "#include",
        "package ",
        "func ",
        "@",
        "#[",
        "if ",
        "for ",
        "while ",
        "mod ",
        "impl ",
        "struct ",
        "function ",
        "export ",
        "var ",
        "}",
    ];
    const ENDS: &[&str] = &["{", "}", ";", "):", "{}", ")", "]", ","];
    STARTS.iter().any(|s| line.starts_with(s))
        || (ENDS.iter().any(|e| line.ends_with(e)) && !line.ends_with(".)"))
        || line.contains(" = ")
        || line.contains("==")
        || line.contains("->")
}

/// Words that, next to an ellipsis, stand in for code: `# ... existing code ...`,
/// `// ... rest of the file ...`, `# ... (unchanged)`.
const ELLIPSIS_WORDS: &[&str] = &[
    "existing",
    "unchanged",
    "rest of",
    "same as",
    "previous",
    "omitted",
    "remaining",
    "other methods",
    "other tests",
    "more tests",
];
/// Phrases that are placeholders when a comment starts with them (`# rest unchanged`, but
/// not "leaving the rest unchanged"). Looser forms ("remains
/// unchanged", "everything else unchanged", "for brevity", "more tests here", "TODO:
/// implement X when Y") occur in real comments (the calibration test finds them in CPython,
/// tokio, syn, chrono, bumpalo, regex), so they are left out or need the ellipsis.
const LAZY_PHRASES: &[&str] = &[
    "rest unchanged",
    "rest is unchanged",
    "rest of the code unchanged",
    "rest of the file unchanged",
    "rest of the code remains",
    "rest of the file remains",
    "your code here",
    "your implementation here",
    "implementation goes here",
    "code goes here",
    "add more tests here",
    "add more tests as needed",
];
/// What may follow "TODO: implement" in a stub; "TODO: implement X when Y" is a real note.
const TODO_STUB_ENDINGS: &[&str] = &[
    "",
    "this",
    "me",
    "here",
    "later",
    "it",
    "tests",
    "the test",
    "this test",
];
/// Without a leading ellipsis, a comment that starts with one of these and ends in one is a
/// placeholder when it is this short ("rest of the code ..."); "same as", "other methods"
/// and the like start real sentences too often ("Same as `%Y-%m-%d` (...)", "Other methods
/// delegate to `inner`...").
const TRAILING_ELLIPSIS_WORDS: &[&str] = &[
    "rest of the code",
    "rest of the file",
    "rest of the tests",
    "rest of the class",
    "rest of the function",
    "rest of the implementation",
    "existing code",
    "existing tests",
    "existing methods",
];
const SHORT_COMMENT_WORDS: usize = 5;

/// The first comment line holding a placeholder.
fn placeholder(text: &str) -> Option<&str> {
    const COMMENT: &[&str] = &["#", "//", "/*", "*", "--", "<!--", "\"\"\"", "'''"];
    text.lines().map(str::trim).find(|line| {
        let comment = COMMENT
            .iter()
            .filter_map(|marker| line.find(marker))
            .min()
            .map(|at| &line[at..])
            .or_else(|| line.starts_with("...").then_some(*line));
        comment.is_some_and(|c| is_placeholder_comment(&c.to_lowercase()))
    })
}

fn is_placeholder_comment(comment: &str) -> bool {
    let body = comment.trim_matches(|c: char| c.is_whitespace() || "#/*-<>!()[]{}\"'`".contains(c));
    let ellipsis = |s: &str| s.starts_with("...") || s.starts_with('\u{2026}');
    let ends_in_ellipsis = body.ends_with("...") || body.ends_with('\u{2026}');
    if ellipsis(body) && ELLIPSIS_WORDS.iter().any(|w| contains_word(body, w)) {
        return true;
    }
    if ends_in_ellipsis
        && body.split_whitespace().count() <= SHORT_COMMENT_WORDS
        && TRAILING_ELLIPSIS_WORDS.iter().any(|w| body.starts_with(w))
    {
        return true;
    }
    if LAZY_PHRASES.iter().any(|p| body.starts_with(p)) {
        return true;
    }
    comment.split("todo: implement").skip(1).any(|after| {
        let rest = after.trim_matches(|c: char| !c.is_alphanumeric() && c != ' ');
        TODO_STUB_ENDINGS.contains(&rest.trim())
    })
}

/// Whether `text` holds `word` not as part of a longer identifier.
fn contains_word(text: &str, word: &str) -> bool {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    text.match_indices(word).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_group_identifiers_and_punctuation_runs() {
        let ids = token_ids("x = 1 ==== foo_bar(x)");
        // x, =, 1, ====, foo_bar, (, x, )
        assert_eq!(ids.len(), 8);
        assert_eq!(ids[0], ids[6]);
    }

    #[test]
    fn a_loop_is_measured() {
        let text = format!("def f():\n{}", "    assert f() == 1\n".repeat(50));
        let r = Repetition::measure(&text);
        assert_eq!(r.period, 6, "assert f ( ) == 1");
        assert!(r.loop_tokens >= 49 * 6, "{r:?}");
        assert!(r.is_degenerate());
        let short = Repetition::measure("a a a a a");
        assert_eq!((short.loop_tokens, short.period), (5, 1));
        assert!(!short.is_degenerate());
        assert_eq!(
            Repetition::measure("x = 1\nx = 1\nx = 1\n").loop_tokens,
            0,
            "3 copies"
        );
        assert_eq!(Repetition::measure("").loop_tokens, 0);
    }

    #[test]
    fn placeholders_in_comments_only() {
        assert!(placeholder("x = 1\n    # ... existing code ...\n").is_some());
        assert!(placeholder("// rest unchanged").is_some());
        assert!(placeholder("// ... rest of the file ...").is_some());
        assert!(placeholder("# ... (unchanged)").is_some());
        assert!(placeholder("def f():\n    pass  # TODO: implement\n").is_some());
        assert!(placeholder("    # TODO: implement this test").is_some());
        assert!(placeholder("...existing code...").is_some());
        assert!(placeholder("<!-- ... existing code ... -->").is_some());
        assert!(placeholder("    # rest of the tests ...").is_some());
        assert!(placeholder("msg = 'see existing code'\n").is_none());
        // Real comments, found in CPython, tokio, syn and chrono.
        for real in [
            "# keep the cache unchanged",
            "# TODO: add more tests for deliver/answer challenge.",
            "# same as before but with a date before 1900",
            "# opts should remain unchanged",
            "// The rest of the code in this module needs to be careful that only a",
            "// TODO: Implement `TrustedLen` when stabilized",
            "// the actual `FromStr` implementation is in the `format` module to leverage the existing code",
            "# the same as base64MIME.decode() or not...",
            "# final NEWLINE are omitted for brevity.",
            "// Previous task parked, use a new task...",
            "...         print('pdb %d: %s' % (i, sess._previous_sigint_handler))",
            "// \"Same as `%Y-%m-%dT%H:%M:%S%.f%:z` (...)",
            "// so we increment `r` but leave everything else unchanged:",
            "// Arguably there should be more tests here, but in practice, this data",
            "// Other methods delegate to `inner`...",
            "/// N is `core::cmp::min(a.len(), b.len())`, leaving the rest unchanged.",
        ] {
            assert!(placeholder(real).is_none(), "{real}");
        }
    }

    #[test]
    fn prose_versus_code() {
        assert!(is_prose_only(
            "Sure! Here is how you could test this.\nYou should call the function and check the result."
        ));
        assert!(!is_prose_only("Here:\n```python\nx = 1\n```"));
        assert!(!is_prose_only(
            "import os\n\ndef test_x():\n    assert os.sep\n"
        ));
    }
}
