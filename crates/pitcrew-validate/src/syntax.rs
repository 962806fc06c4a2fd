//! The in-process syntax gate: a tree-sitter parse that rejects broken files in microseconds,
//! before the real toolchains run. Its messages are written for the model that has to fix the
//! file: what is wrong, where, and the surrounding lines with a caret.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;

use pitcrew_core::Finding;
use tree_sitter::{Node, Parser, Point};

/// A language the syntax gate has a grammar for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Language {
    Python,
    Rust,
    JavaScript,
    TypeScript,
    /// TypeScript with JSX, a separate grammar because `<T>` means different things in each.
    Tsx,
    Go,
}

impl Language {
    /// The language a file is written in, judged by its extension (case-sensitive).
    pub fn from_path(path: &str) -> Option<Language> {
        let language = match Path::new(path).extension()?.to_str()? {
            "py" | "pyi" => Language::Python,
            "rs" => Language::Rust,
            "js" | "mjs" | "cjs" | "jsx" => Language::JavaScript,
            "ts" | "mts" | "cts" => Language::TypeScript,
            "tsx" => Language::Tsx,
            "go" => Language::Go,
            _ => return None,
        };
        Some(language)
    }

    /// Stable lowercase name, e.g. `python`, `tsx`.
    pub fn name(self) -> &'static str {
        match self {
            Language::Python => "python",
            Language::Rust => "rust",
            Language::JavaScript => "javascript",
            Language::TypeScript => "typescript",
            Language::Tsx => "tsx",
            Language::Go => "go",
        }
    }

    fn grammar(self) -> tree_sitter::Language {
        match self {
            Language::Python => tree_sitter_python::LANGUAGE,
            Language::Rust => tree_sitter_rust::LANGUAGE,
            Language::JavaScript => tree_sitter_javascript::LANGUAGE,
            Language::TypeScript => tree_sitter_typescript::LANGUAGE_TYPESCRIPT,
            Language::Tsx => tree_sitter_typescript::LANGUAGE_TSX,
            Language::Go => tree_sitter_go::LANGUAGE,
        }
        .into()
    }
}

/// The verdict of the syntax gate on one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyntaxCheck {
    Valid {
        language: Language,
    },
    /// The first syntax error; `line` and `column` are 1-based, `column` counts characters.
    /// `message` starts with the position and the problem, followed by the surrounding lines.
    Invalid {
        language: Language,
        line: u32,
        column: u32,
        message: String,
    },
    /// No grammar for this file's extension.
    Unsupported,
}

impl SyntaxCheck {
    /// The finding to record for this verdict; a valid file has nothing to report.
    pub fn to_finding(&self, path: &str) -> Option<Finding> {
        match self {
            SyntaxCheck::Valid { .. } => None,
            SyntaxCheck::Invalid { line, message, .. } => Some(
                Finding::error("syntax", message.as_str())
                    .in_file(path)
                    .at_line(*line),
            ),
            SyntaxCheck::Unsupported => {
                let what = match Path::new(path).extension() {
                    Some(ext) => format!("`.{}` files", ext.to_string_lossy()),
                    None => "files without an extension".to_string(),
                };
                let message = format!("no syntax checker for {what}; not checked");
                Some(Finding::info("syntax", message).in_file(path))
            }
        }
    }
}

/// Checks the syntax of `source`, choosing the grammar by the extension of `path`. Cheap
/// enough to call on every produced file; safe to call from many threads at once.
pub fn check_syntax(path: &str, source: &str) -> SyntaxCheck {
    let Some(language) = Language::from_path(path) else {
        return SyntaxCheck::Unsupported;
    };
    // Grammars tolerate NUL, but a generated source file containing one is always broken.
    if let Some(offset) = source.find('\0') {
        let before = &source[..offset];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let at = Point::new(before.matches('\n').count(), offset - line_start);
        return invalid(language, source, at, "NUL byte in source");
    }
    let tree = parse(language, source);
    let root = tree.root_node();
    if !root.has_error() {
        return SyntaxCheck::Valid { language };
    }
    let problem = first_problem(root, source);
    invalid(language, source, problem.at, &problem.description)
}

pub(crate) fn parse(language: Language, source: &str) -> tree_sitter::Tree {
    thread_local! {
        // One parser per language per thread: building a parser and loading its grammar costs
        // more than parsing a typical file.
        static PARSERS: RefCell<HashMap<Language, Parser>> = RefCell::new(HashMap::new());
    }
    PARSERS.with_borrow_mut(|parsers| {
        let parser = parsers.entry(language).or_insert_with(|| {
            let mut parser = Parser::new();
            parser
                .set_language(&language.grammar())
                .expect("the bundled grammars match the linked tree-sitter ABI");
            parser
        });
        parser
            .parse(source, None)
            .expect("tree-sitter only gives up on timeout or cancellation, and neither is set")
    })
}

struct Problem {
    at: Point,
    description: String,
}

/// The first ERROR or MISSING node in document order, described.
fn first_problem(root: Node, source: &str) -> Problem {
    let mut node = root;
    'descend: loop {
        if node.is_missing() {
            return Problem {
                at: node.start_position(),
                description: describe_missing(node, source),
            };
        }
        // An ERROR node often swallows complete constructs the parser had already built (a
        // whole class before the method missing its `:`), so point at its first loose token:
        // the start of the construct that failed. But when a nested error lies beyond the
        // excerpt, the ERROR is a wide recovery wrapper (typical of unclosed JSX elements) and
        // the nested error is where the parse actually broke.
        let mut loose: Option<Node> = None;
        let mut cursor = node.walk();
        for child in node.children(&mut cursor) {
            if child.has_error() {
                match loose {
                    Some(first)
                        if child.start_position().row
                            <= first.start_position().row + CONTEXT_LINES =>
                    {
                        break;
                    }
                    _ => {
                        node = child;
                        continue 'descend;
                    }
                }
            }
            let complete = child.is_named() && child.child_count() > 0;
            if node.is_error() && !complete && loose.is_none() {
                loose = Some(child);
            }
        }
        // Without a loose token: an ERROR leaf, an ERROR made only of complete constructs, or
        // (defensively) a node whose error flag no child explains.
        return unexpected(loose.unwrap_or(node), node, source);
    }
}

fn describe_missing(node: Node, source: &str) -> String {
    let what = if node.is_named() {
        node.kind().replace('_', " ")
    } else {
        code(node.kind())
    };
    let rest = source.get(node.start_byte()..).unwrap_or("");
    if rest.trim().is_empty() {
        format!("missing {what} at end of file")
    } else {
        format!("missing {what}")
    }
}

/// `unexpected `…``, quoting the text from `from` to the end of the ERROR node's first line.
fn unexpected(from: Node, error: Node, source: &str) -> Problem {
    const MAX_QUOTE: usize = 40;
    let rest = source.get(from.start_byte()..).unwrap_or("");
    let text = source
        .get(from.start_byte()..error.end_byte())
        .unwrap_or("");
    let first_line = text.lines().next().unwrap_or("").trim_end();
    let mut description = if !first_line.is_empty() {
        let quote: String = first_line.chars().take(MAX_QUOTE).collect();
        let ellipsis = if quote.len() < first_line.len() {
            "…"
        } else {
            ""
        };
        format!("unexpected {}", code(&format!("{quote}{ellipsis}")))
    } else if rest.trim().is_empty() {
        "unexpected end of file".to_string()
    } else {
        "unexpected end of line".to_string()
    };
    // A quote that the rest of its line never closes is most likely an unterminated string.
    let rest_of_line = rest.lines().next().unwrap_or("");
    if let Some(q) = rest_of_line
        .chars()
        .next()
        .filter(|c| matches!(c, '"' | '\'' | '`'))
        && !rest_of_line.trim_start_matches(q).contains(q)
    {
        description.push_str(" (unterminated string?)");
    }
    Problem {
        at: from.start_position(),
        description,
    }
}

/// Inline code for a message, fenced so that a backtick in it stays readable.
fn code(text: &str) -> String {
    if text.contains('`') {
        format!("`` {text} ``")
    } else {
        format!("`{text}`")
    }
}

fn invalid(language: Language, source: &str, at: Point, description: &str) -> SyntaxCheck {
    let line_text = source.split('\n').nth(at.row).unwrap_or("");
    // tree-sitter columns are bytes; people and models count characters.
    let column = line_text
        .char_indices()
        .take_while(|&(i, _)| i < at.column)
        .count();
    let line = at.row + 1;
    let message = format!(
        "syntax error at line {line}, column {}: {description}\n{}",
        column + 1,
        excerpt(source, at.row, column)
    );
    SyntaxCheck::Invalid {
        language,
        line: saturate(line),
        column: saturate(column + 1),
        message,
    }
}

fn saturate(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Lines shown either side of the error.
const CONTEXT_LINES: usize = 2;

/// [`CONTEXT_LINES`] either side of `row`, numbered, with a caret under `column` (0-based chars).
fn excerpt(source: &str, row: usize, column: usize) -> String {
    let mut lines: Vec<&str> = source.split('\n').collect();
    // The empty piece after a final newline is not a line, unless the error is there.
    if lines.len() > row + 1 && lines.last() == Some(&"") {
        lines.pop();
    }
    let first = row.saturating_sub(CONTEXT_LINES);
    let last = (row + CONTEXT_LINES).min(lines.len() - 1);
    let width = (last + 1).to_string().len();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate().take(last + 1).skip(first) {
        let (shown, caret) = clip(line.strip_suffix('\r').unwrap_or(line), column);
        out.push(
            format!("{:>width$} | {shown}", i + 1)
                .trim_end()
                .to_string(),
        );
        if i == row {
            // Copy tabs so the caret lines up however the reader renders them.
            let pad: String = shown
                .chars()
                .chain(std::iter::repeat(' '))
                .take(caret)
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            out.push(format!("{:>width$} | {pad}^", ""));
        }
    }
    out.join("\n")
}

/// A line as shown in an excerpt and where `column` falls in it. Long lines (minified code)
/// are cut to a window around `column`.
fn clip(line: &str, column: usize) -> (String, usize) {
    const WIDTH: usize = 120;
    let printable = |c: char| if c == '\0' { '␀' } else { c };
    let len = line.chars().count();
    if len <= WIDTH {
        return (line.chars().map(printable).collect(), column);
    }
    let start = column
        .saturating_sub(WIDTH / 2)
        .min(len.saturating_sub(WIDTH));
    let mut shown = String::new();
    if start > 0 {
        shown.push('…');
    }
    shown.extend(line.chars().skip(start).take(WIDTH).map(printable));
    if start + WIDTH < len {
        shown.push('…');
    }
    (shown, column - start + usize::from(start > 0))
}

#[cfg(test)]
mod tests;
