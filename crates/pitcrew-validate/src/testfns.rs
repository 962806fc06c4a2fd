//! The written files and the tests in them, as each framework sees them: pytest/unittest,
//! Rust `#[test]`, Jest/Vitest `test()`/`it()`, Go `TestXxx`.

use std::path::Path;

use tree_sitter::{Node, Tree};

use crate::Language;
use crate::ast::{descendants, line, named_children, text};

/// A file the task wrote, read from the worktree.
#[derive(Debug)]
pub(crate) struct Written {
    /// Relative to the worktree, as the request named it.
    pub path: String,
    pub language: Option<Language>,
    pub source: String,
    /// Set once the file passed the syntax gate.
    pub tree: Option<Tree>,
}

impl Written {
    /// Whether this is a test file: named like one, or defining tests.
    pub fn is_test(&self) -> bool {
        is_test_path(&self.path) || !test_functions(self).is_empty()
    }

    pub fn file_name(&self) -> &str {
        Path::new(&self.path)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or(&self.path)
    }
}

/// Whether the framework of the file's language finds it by its name alone.
pub(crate) fn is_test_path(path: &str) -> bool {
    let p = Path::new(path);
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
    match Language::from_path(path) {
        Some(Language::Python) => {
            (name.starts_with("test_") && name.ends_with(".py")) || name.ends_with("_test.py")
        }
        Some(Language::JavaScript | Language::TypeScript | Language::Tsx) => {
            name.contains(".test.")
                || name.contains(".spec.")
                || p.components().any(|c| c.as_os_str() == "__tests__")
        }
        Some(Language::Go) => name.ends_with("_test.go"),
        Some(Language::Rust) | None => false,
    }
}

/// `source` (a Python test file at `path`) without the tests named by the pytest node ids
/// `tests` (parametrizations name their function; ids of other files are ignored). A class
/// left without members goes too. `None` when the file does not parse or no test would be
/// left.
pub fn without_tests(path: &str, source: &str, tests: &[String]) -> Option<String> {
    let language = Language::from_path(path)?;
    if language != Language::Python {
        return None;
    }
    let file = Written {
        path: path.to_string(),
        language: Some(language),
        source: source.to_string(),
        tree: Some(crate::syntax::parse(language, source)),
    };
    if file.tree.as_ref().is_none_or(|t| t.root_node().has_error()) {
        return None;
    }
    // `file::Class::name[param]` → (Some(Class), name)
    let wanted: Vec<(Option<&str>, &str)> = tests
        .iter()
        .filter_map(|id| {
            let rest = id.strip_prefix(path)?.strip_prefix("::")?;
            let rest = rest.split('[').next().unwrap_or(rest);
            Some(match rest.rsplit_once("::") {
                Some((class, name)) => (Some(class.rsplit("::").next().unwrap_or(class)), name),
                None => (None, rest),
            })
        })
        .collect();
    let all = test_functions(&file);
    let (removed, kept): (Vec<&TestFn>, Vec<&TestFn>) = all.iter().partition(|t| {
        wanted
            .iter()
            .any(|(class, name)| *name == t.name && *class == t.class.as_deref())
    });
    if removed.is_empty() || kept.iter().all(|t| t.not_run.is_some()) {
        return None;
    }
    // Whole classes whose every member goes, else the tests themselves.
    let mut ranges: Vec<std::ops::Range<usize>> = Vec::new();
    for test in &removed {
        let class = test.whole.parent().and_then(|body| {
            let class = body.parent()?;
            let outer = class
                .parent()
                .filter(|p| p.kind() == "decorated_definition")
                .unwrap_or(class);
            (class.kind() == "class_definition"
                && named_children(body).iter().all(|member| {
                    removed
                        .iter()
                        .any(|r| r.whole.byte_range() == member.byte_range())
                        || member.kind() == "comment"
                }))
            .then_some(outer)
        });
        let node = class.unwrap_or(test.whole);
        let range = node.byte_range();
        if !ranges.contains(&range) {
            ranges.push(range);
        }
    }
    ranges.sort_by_key(|r| std::cmp::Reverse(r.start));
    let mut out = source.to_string();
    for range in ranges {
        // From the start of the line, so no indentation is left behind.
        let start = source[..range.start].rfind('\n').map_or(0, |i| i + 1);
        let end = source[range.end..]
            .find('\n')
            .map_or(source.len(), |i| range.end + i + 1);
        out.replace_range(start..end, "");
    }
    Some(out)
}

/// A test (or something written as one) in a file.
#[derive(Debug)]
pub(crate) struct TestFn<'t> {
    /// The function's name, or for `test("adds", …)` the description.
    pub name: String,
    /// The enclosing class, for Python methods.
    pub class: Option<String>,
    pub line: u32,
    /// Where its assertions would be.
    pub body: Node<'t>,
    /// The whole test as written: decorators, signature and body (for Python), the call
    /// for `test(…)`.
    pub whole: Node<'t>,
    /// The framework itself asserts something (Rust `#[should_panic]`).
    pub expects_panic: bool,
    /// Why the framework will not run it, when it will not.
    pub not_run: Option<String>,
}

/// The tests of a parsed file; empty for a file that did not parse.
pub(crate) fn test_functions(file: &Written) -> Vec<TestFn<'_>> {
    let Some(tree) = &file.tree else {
        return Vec::new();
    };
    let root = tree.root_node();
    let source = file.source.as_str();
    match file.language {
        Some(Language::Python) => python_tests(root, source),
        Some(Language::Rust) => rust_tests(root, source),
        Some(Language::JavaScript | Language::TypeScript | Language::Tsx) => js_tests(root, source),
        Some(Language::Go) => go_tests(root, source),
        None => Vec::new(),
    }
}

/// The definition inside a `decorated_definition`, or the node itself.
pub(crate) fn undecorated(node: Node) -> Node {
    if node.kind() == "decorated_definition" {
        node.child_by_field_name("definition").unwrap_or(node)
    } else {
        node
    }
}

fn field_text<'s>(node: Node, field: &str, source: &'s str) -> &'s str {
    node.child_by_field_name(field)
        .map_or("", |n| text(n, source))
}

/// pytest's default collection: module-level `test*` functions; `test*` methods of classes
/// named `Test*` without `__init__`, or of `unittest.TestCase` subclasses.
fn python_tests<'t>(root: Node<'t>, source: &str) -> Vec<TestFn<'t>> {
    let mut tests = Vec::new();
    for item in named_children(root).into_iter().map(undecorated) {
        match item.kind() {
            "function_definition" => {
                let name = field_text(item, "name", source);
                if name.starts_with("test") {
                    tests.push(python_test(item, name, None, None));
                }
            }
            "class_definition" => {
                let class = field_text(item, "name", source);
                let is_test_case = field_text(item, "superclasses", source).contains("TestCase");
                let Some(body) = item.child_by_field_name("body") else {
                    continue;
                };
                let methods: Vec<Node> = named_children(body)
                    .into_iter()
                    .map(undecorated)
                    .filter(|n| n.kind() == "function_definition")
                    .collect();
                let has_init = methods
                    .iter()
                    .any(|m| field_text(*m, "name", source) == "__init__");
                let not_run = if is_test_case {
                    None
                } else if !class.starts_with("Test") {
                    Some(format!(
                        "class `{class}` is not collected: pytest collects classes named `Test…` \
                         (or subclasses of unittest.TestCase)"
                    ))
                } else if has_init {
                    Some(format!(
                        "class `{class}` defines `__init__`, so pytest does not collect it"
                    ))
                } else {
                    None
                };
                for method in methods {
                    let name = field_text(method, "name", source);
                    if name.starts_with("test") {
                        tests.push(python_test(method, name, Some(class), not_run.clone()));
                    }
                }
            }
            _ => {}
        }
    }
    tests
}

fn python_test<'t>(
    def: Node<'t>,
    name: &str,
    class: Option<&str>,
    not_run: Option<String>,
) -> TestFn<'t> {
    TestFn {
        name: name.to_string(),
        class: class.map(str::to_string),
        line: line(def),
        body: def.child_by_field_name("body").unwrap_or(def),
        whole: def
            .parent()
            .filter(|p| p.kind() == "decorated_definition")
            .unwrap_or(def),
        expects_panic: false,
        not_run,
    }
}

/// Functions carrying a `#[test]`-like attribute (`test`, `tokio::test`, `rstest`, …).
fn rust_tests<'t>(root: Node<'t>, source: &str) -> Vec<TestFn<'t>> {
    let mut tests = Vec::new();
    for function in descendants(root).filter(|n| n.kind() == "function_item") {
        let mut attributes = Vec::new();
        let mut previous = function.prev_named_sibling();
        while let Some(attribute) = previous.filter(|n| n.kind() == "attribute_item") {
            attributes.push(text(attribute, source));
            previous = attribute.prev_named_sibling();
        }
        let path = |a: &str| {
            let inner = a.trim_start_matches("#[").trim_end_matches(']');
            inner.split('(').next().unwrap_or("").trim().to_string()
        };
        if !attributes.iter().any(|a| path(a).ends_with("test")) {
            continue;
        }
        tests.push(TestFn {
            name: field_text(function, "name", source).to_string(),
            class: None,
            line: line(function),
            body: function.child_by_field_name("body").unwrap_or(function),
            whole: function,
            expects_panic: attributes.iter().any(|a| path(a) == "should_panic"),
            not_run: None,
        });
    }
    tests
}

/// `test(…)` and `it(…)` calls, with `.each`, `.only`, `.skip` and `.todo` variants.
fn js_tests<'t>(root: Node<'t>, source: &str) -> Vec<TestFn<'t>> {
    let mut tests = Vec::new();
    for call in descendants(root).filter(|n| n.kind() == "call_expression") {
        let Some(callee) = call.child_by_field_name("function") else {
            continue;
        };
        // `test.each(table)("name", fn)`: the callee is itself a call.
        let callee = if callee.kind() == "call_expression" {
            callee.child_by_field_name("function").unwrap_or(callee)
        } else {
            callee
        };
        let (base, modifier) = match callee.kind() {
            "identifier" => (text(callee, source), ""),
            "member_expression" => (
                field_text(callee, "object", source),
                field_text(callee, "property", source),
            ),
            _ => continue,
        };
        let skipped = matches!(base, "xit" | "xtest") || matches!(modifier, "skip" | "todo");
        if !matches!(base, "test" | "it" | "xit" | "xtest") {
            continue;
        }
        let Some(arguments) = call.child_by_field_name("arguments") else {
            continue;
        };
        let args = named_children(arguments);
        let name = args
            .first()
            .map(|a| text(*a, source).trim_matches(['"', '\'', '`']).to_string())
            .unwrap_or_default();
        let body = args
            .iter()
            .rev()
            .find(|a| matches!(a.kind(), "arrow_function" | "function_expression"))
            .copied();
        tests.push(TestFn {
            name,
            class: None,
            line: line(call),
            body: body.unwrap_or(call),
            whole: call,
            expects_panic: false,
            not_run: skipped.then(|| "it is skipped".to_string()),
        });
    }
    tests
}

/// `func TestXxx(t *testing.T)`; `TestMain` is setup, not a test.
fn go_tests<'t>(root: Node<'t>, source: &str) -> Vec<TestFn<'t>> {
    let mut tests = Vec::new();
    for function in named_children(root)
        .into_iter()
        .filter(|n| n.kind() == "function_declaration")
    {
        let name = field_text(function, "name", source);
        let Some(rest) = name.strip_prefix("Test") else {
            continue;
        };
        if rest == "Main" {
            continue;
        }
        let not_run = rest
            .chars()
            .next()
            .filter(|c| c.is_lowercase())
            .map(|first| {
                let fixed: String = first.to_uppercase().chain(rest.chars().skip(1)).collect();
                format!(
                    "`go test` runs only TestXxx functions where Xxx does not start with a \
                     lowercase letter: rename it `Test{fixed}`"
                )
            });
        tests.push(TestFn {
            name: name.to_string(),
            class: None,
            line: line(function),
            body: function.child_by_field_name("body").unwrap_or(function),
            whole: function,
            expects_panic: false,
            not_run,
        });
    }
    tests
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failing_tests_are_removed_with_their_decorators_and_emptied_classes() {
        let source = "\
import pytest
from calc import double


def test_good():
    assert double(2) == 4


@pytest.mark.parametrize('n', [1, 2])
def test_wrong(n):
    assert double(n) == n


class TestMore:
    def test_also_wrong(self):
        assert double(3) == 5


class TestMixed:
    def test_fine(self):
        assert double(0) == 0

    def test_bad(self):
        assert double(1) == 3
";
        let failing = [
            "tests/test_c.py::test_wrong[1]".to_string(),
            "tests/test_c.py::test_wrong[2]".to_string(),
            "tests/test_c.py::TestMore::test_also_wrong".to_string(),
            "tests/test_c.py::TestMixed::test_bad".to_string(),
            "tests/other.py::test_good".to_string(),
        ];
        let pruned = without_tests("tests/test_c.py", source, &failing).unwrap();
        assert!(pruned.contains("def test_good"), "{pruned}");
        assert!(pruned.contains("def test_fine"), "{pruned}");
        for gone in [
            "test_wrong",
            "parametrize",
            "TestMore",
            "test_also_wrong",
            "test_bad",
        ] {
            assert!(!pruned.contains(gone), "{gone} left in:\n{pruned}");
        }
        assert!(matches!(
            crate::check_syntax("tests/test_c.py", &pruned),
            crate::SyntaxCheck::Valid { .. }
        ));
        // Nothing would be left.
        let everything: Vec<String> = ["test_good", "test_wrong", "TestMore::test_also_wrong"]
            .iter()
            .chain(["TestMixed::test_fine", "TestMixed::test_bad"].iter())
            .map(|t| format!("tests/test_c.py::{t}"))
            .collect();
        assert_eq!(without_tests("tests/test_c.py", source, &everything), None);
        assert_eq!(without_tests("tests/test_c.py", source, &[]), None);
    }
}
