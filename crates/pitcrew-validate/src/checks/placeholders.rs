//! `no_placeholders`: nothing left where code should be. Models elide code they were asked
//! to write (`# ... existing code ...`, `// rest of the tests`, `todo!()`); such a file
//! looks complete to a parser and is not.

use pitcrew_core::Finding;

use crate::Language;
use crate::ast::{descendants, line, named_children, text};
use crate::rules::Rule;
use crate::testfns::Written;

const RULE: &str = Rule::NoPlaceholders.as_str();

/// Phrases that, in a comment, stand for code that was left out.
const ELISIONS: &[&str] = &[
    "existing code",
    "rest of the",
    "rest of your",
    "your code here",
    "code goes here",
    "implement this",
    "implementation here",
    "add more tests",
    "more tests here",
    "omitted for brevity",
    "remains unchanged",
    "unchanged code",
    "same as before",
];

/// Code that stands for missing code, matched in code (not comments).
const STUBS: &[(Language, &str)] = &[
    (Language::Rust, "todo!("),
    (Language::Rust, "unimplemented!("),
    (Language::Python, "raise NotImplementedError"),
];

pub(crate) fn no_placeholders(files: &[Written]) -> Vec<Finding> {
    let mut findings = Vec::new();
    for file in files {
        for (i, raw) in file.source.lines().enumerate() {
            let number = u32::try_from(i + 1).unwrap_or(u32::MAX);
            let at = |f: Finding| f.in_file(&file.path).at_line(number);
            let (code, comment) = split_comment(raw, file.language);
            let comment_lower = comment.to_lowercase();
            let shown = raw.trim();
            if let Some(phrase) = ELISIONS.iter().find(|p| comment_lower.contains(*p)) {
                findings.push(at(Finding::error(
                    RULE,
                    format!(
                        "line {number} leaves code out (\"{phrase}\"): `{shown}`; write the \
                         complete code instead"
                    ),
                )));
            } else if has_word(&comment_lower, "todo") || has_word(&comment_lower, "fixme") {
                findings.push(at(Finding::warning(
                    RULE,
                    format!("line {number} leaves work undone: `{shown}`"),
                )));
            }
            if let Some((_, stub)) = STUBS
                .iter()
                .find(|(lang, stub)| file.language == Some(*lang) && code.contains(stub))
            {
                findings.push(at(Finding::error(
                    RULE,
                    format!("line {number} is a stub (`{stub}`): `{shown}`; implement it"),
                )));
            }
        }
        if file.language == Some(Language::Python) {
            findings.extend(python_ellipsis_bodies(file));
        }
    }
    findings
}

/// A line split into its code and its comment, by the comment syntax of `language`; a file
/// in no known language (Markdown, text) is all comment. A marker inside a string literal
/// is taken for a comment too, which can only add a finding to read, never hide one.
fn split_comment(line: &str, language: Option<Language>) -> (&str, &str) {
    let markers: &[&str] = match language {
        Some(Language::Python) => &["#"],
        Some(_) => &["//", "/*"],
        None => return ("", line),
    };
    let trimmed = line.trim_start();
    if language != Some(Language::Python) && trimmed.starts_with('*') {
        return ("", line); // inside a block comment
    }
    match markers.iter().filter_map(|m| line.find(m)).min() {
        Some(at) => (&line[..at], &line[at..]),
        None => (line, ""),
    }
}

fn has_word(haystack: &str, word: &str) -> bool {
    haystack
        .split(|c: char| !c.is_alphanumeric())
        .any(|w| w == word)
}

/// Python functions whose body is only `...` (or a docstring and `...`), outside the places
/// where that is the idiom: decorated definitions (`@overload`, `@abstractmethod`), methods
/// of Protocol/ABC classes, and `.pyi` stubs.
fn python_ellipsis_bodies(file: &Written) -> Vec<Finding> {
    let Some(tree) = &file.tree else {
        return Vec::new();
    };
    if file.path.ends_with(".pyi") {
        return Vec::new();
    }
    let source = file.source.as_str();
    let mut findings = Vec::new();
    for def in descendants(tree.root_node()).filter(|n| n.kind() == "function_definition") {
        if def
            .parent()
            .is_some_and(|p| p.kind() == "decorated_definition")
        {
            continue;
        }
        let in_interface = def
            .parent()
            .and_then(|block| block.parent())
            .filter(|class| class.kind() == "class_definition")
            .and_then(|class| class.child_by_field_name("superclasses"))
            .is_some_and(|s| {
                let bases = text(s, source);
                bases.contains("Protocol") || bases.contains("ABC")
            });
        let Some(body) = def.child_by_field_name("body") else {
            continue;
        };
        let statements: Vec<_> = named_children(body)
            .into_iter()
            .filter(|s| s.kind() != "comment")
            .collect();
        let is_docstring = |s: &tree_sitter::Node| {
            s.kind() == "expression_statement"
                && s.named_child(0).is_some_and(|c| c.kind() == "string")
        };
        let only_ellipsis = statements
            .iter()
            .filter(|s| !is_docstring(s))
            .map(|s| text(*s, source).trim())
            .eq(["..."]);
        if only_ellipsis && !in_interface {
            let name = def
                .child_by_field_name("name")
                .map_or("", |n| text(n, source));
            findings.push(
                Finding::error(
                    RULE,
                    format!(
                        "`{name}` (line {}) has no body but `...`: implement it",
                        line(def)
                    ),
                )
                .in_file(&file.path)
                .at_line(line(def)),
            );
        }
    }
    findings
}
