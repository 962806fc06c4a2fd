//! `assertions`: every test asserts something that can fail. A test with no assertion, or
//! whose only assertions are about constants (`assert True`, `self.assertTrue(True)`,
//! `assert 1 == 1`, `assert x == x`, `expect(true).toBe(true)`, `assert!(true)`), proves
//! nothing about the code under test.

use std::collections::HashSet;

use pitcrew_core::Finding;
use tree_sitter::Node;

use crate::Language;
use crate::ast::{descendants, line, named_children, text};
use crate::rules::Rule;
use crate::testfns::{Written, test_functions, undecorated};

const RULE: &str = Rule::Assertions.as_str();

/// The assertions found in one test.
#[derive(Debug, Default)]
struct Found {
    /// Assertions that can fail.
    real: usize,
    /// Assertions that cannot: (line, first line of their text).
    trivial: Vec<(u32, String)>,
}

pub(crate) fn assertions(files: &[Written]) -> Vec<Finding> {
    let mut findings = Vec::new();
    for file in files.iter().filter(|f| f.tree.is_some()) {
        let source = file.source.as_str();
        let helpers = match (&file.tree, file.language) {
            (Some(tree), Some(Language::Python)) => python_helpers(tree.root_node(), source),
            _ => HashSet::new(),
        };
        for test in test_functions(file) {
            let mut found = match file.language {
                Some(Language::Python) => python(test.body, source, &helpers),
                Some(Language::Rust) => rust(test.body, source),
                Some(Language::Go) => go(test.body, source),
                Some(Language::JavaScript | Language::TypeScript | Language::Tsx) => {
                    javascript(test.body, source)
                }
                None => continue,
            };
            if test.expects_panic {
                found.real += 1;
            }
            let at = |f: Finding| f.in_file(&file.path).at_line(test.line);
            let name = &test.name;
            if found.real > 0 {
                for (line, code) in &found.trivial {
                    findings.push(
                        Finding::warning(
                            RULE,
                            format!("`{code}` (line {line}) in `{name}` can never fail"),
                        )
                        .in_file(&file.path)
                        .at_line(*line),
                    );
                }
            } else if found.trivial.is_empty() {
                findings.push(at(Finding::error(
                    RULE,
                    format!(
                        "`{name}` (line {}) asserts nothing: assert on what the code under \
                         test returns or raises",
                        test.line
                    ),
                )));
            } else {
                let listed: Vec<String> = found
                    .trivial
                    .iter()
                    .map(|(line, code)| format!("`{code}` (line {line})"))
                    .collect();
                findings.push(at(Finding::error(
                    RULE,
                    format!(
                        "`{name}` (line {}) only asserts constants, which can never fail: {}; \
                         assert on what the code under test returns or raises",
                        test.line,
                        listed.join(", ")
                    ),
                )));
            }
        }
    }
    findings
}

fn first_line(node: Node, source: &str) -> String {
    text(node, source)
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_string()
}

fn tally(found: &mut Found, node: Node, source: &str, trivial: bool) {
    if trivial {
        found.trivial.push((line(node), first_line(node, source)));
    } else {
        found.real += 1;
    }
}

/// Module-level Python functions (not tests) that contain a real assertion: a test calling
/// one asserts through it.
fn python_helpers<'s>(root: Node, source: &'s str) -> HashSet<&'s str> {
    named_children(root)
        .into_iter()
        .map(undecorated)
        .filter(|n| n.kind() == "function_definition")
        .filter(|def| python(*def, source, &HashSet::new()).real > 0)
        .filter_map(|def| def.child_by_field_name("name").map(|n| text(n, source)))
        .filter(|name| !name.starts_with("test"))
        .collect()
}

fn python(body: Node, source: &str, helpers: &HashSet<&str>) -> Found {
    let mut found = Found::default();
    for node in descendants(body) {
        match node.kind() {
            "assert_statement" => {
                let Some(condition) = node.named_child(0) else {
                    continue;
                };
                let trivial = python_constant(condition) || tautology(condition, source);
                tally(&mut found, node, source, trivial);
            }
            "call" => {
                let Some(callee) = node.child_by_field_name("function") else {
                    continue;
                };
                let (object, name) = match callee.kind() {
                    "attribute" => (
                        callee
                            .child_by_field_name("object")
                            .map(|o| text(o, source)),
                        callee
                            .child_by_field_name("attribute")
                            .map_or("", |a| text(a, source)),
                    ),
                    "identifier" => (None, text(callee, source)),
                    _ => continue,
                };
                if name.starts_with("assert") {
                    // `self.assertTrue(True)`, `assert_equal(1, 1)`; but a mock's
                    // `assert_called_with(1)` asserts on the mock, not on its arguments.
                    let positional: Vec<Node> = node
                        .child_by_field_name("arguments")
                        .map(named_children)
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|a| a.kind() != "keyword_argument")
                        .collect();
                    let on_self_or_free = matches!(object, None | Some("self"));
                    let trivial = on_self_or_free
                        && !positional.is_empty()
                        && positional.iter().all(|a| python_constant(*a));
                    tally(&mut found, node, source, trivial);
                } else if matches!(name, "raises" | "warns" | "fail" | "deprecated_call")
                    || helpers.contains(name)
                {
                    found.real += 1;
                }
            }
            _ => {}
        }
    }
    found
}

/// A Python expression whose value is fixed when written: literals and operators over them.
fn python_constant(node: Node) -> bool {
    match node.kind() {
        "true" | "false" | "none" | "integer" | "float" | "ellipsis" => true,
        "string" => !descendants(node).any(|n| n.kind() == "interpolation"),
        "concatenated_string"
        | "parenthesized_expression"
        | "unary_operator"
        | "not_operator"
        | "binary_operator"
        | "boolean_operator"
        | "comparison_operator"
        | "tuple"
        | "list"
        | "set"
        | "dictionary"
        | "pair"
        | "expression_list" => named_children(node)
            .into_iter()
            .filter(|c| c.kind() != "comment")
            .all(python_constant),
        _ => false,
    }
}

/// `x == x`: a comparison of an expression with itself.
fn tautology(node: Node, source: &str) -> bool {
    let operands = named_children(node);
    node.kind() == "comparison_operator"
        && operands.len() == 2
        && text(operands[0], source) == text(operands[1], source)
}

/// `assert!`, `assert_eq!`, `assert_ne!`, `debug_assert!`, … and `panic!` (a conditional
/// failure); trivial when every token of the arguments is a literal.
fn rust(body: Node, source: &str) -> Found {
    let mut found = Found::default();
    for node in descendants(body).filter(|n| n.kind() == "macro_invocation") {
        let Some(name) = node.child_by_field_name("macro").map(|m| text(m, source)) else {
            continue;
        };
        let name = name.rsplit("::").next().unwrap_or(name);
        if !(name.starts_with("assert") || name.starts_with("debug_assert") || name == "panic") {
            continue;
        }
        let literal = |n: &Node| {
            matches!(
                n.kind(),
                "boolean_literal"
                    | "integer_literal"
                    | "float_literal"
                    | "string_literal"
                    | "char_literal"
                    | "string_content"
                    | "escape_sequence"
            )
        };
        let tokens: Vec<Node> = named_children(node)
            .into_iter()
            .filter(|n| n.kind() == "token_tree")
            .flat_map(|t| descendants(t).skip(1).collect::<Vec<_>>())
            .collect();
        let trivial = name != "panic" && !tokens.is_empty() && tokens.iter().all(literal);
        tally(&mut found, node, source, trivial);
    }
    found
}

/// `expect(…)` chains and `assert(…)`/`assert.*(…)`; trivial when what is examined is a
/// literal.
fn javascript(body: Node, source: &str) -> Found {
    let mut found = Found::default();
    for node in descendants(body).filter(|n| n.kind() == "call_expression") {
        let Some(callee) = node.child_by_field_name("function") else {
            continue;
        };
        let callee_text = text(callee, source);
        let is_expect = callee.kind() == "identifier" && callee_text == "expect";
        let is_assert = callee_text == "assert" || callee_text.starts_with("assert.");
        if !(is_expect || is_assert) {
            continue;
        }
        let args = node
            .child_by_field_name("arguments")
            .map(named_children)
            .unwrap_or_default();
        let trivial = !args.is_empty() && args.iter().all(|a| js_constant(*a));
        tally(&mut found, node, source, trivial);
    }
    found
}

fn js_constant(node: Node) -> bool {
    match node.kind() {
        "true" | "false" | "null" | "undefined" | "number" | "string" => true,
        "template_string" => !descendants(node).any(|n| n.kind() == "template_substitution"),
        "unary_expression" | "binary_expression" | "parenthesized_expression" | "array" => {
            named_children(node).into_iter().all(js_constant)
        }
        _ => false,
    }
}

/// `t.Error*`, `t.Fatal*`, `t.Fail*` and testify's `assert.*`/`require.*`. Go has no
/// assertion expressions to judge for constancy; the calls are counted.
fn go(body: Node, source: &str) -> Found {
    let mut found = Found::default();
    for node in descendants(body).filter(|n| n.kind() == "call_expression") {
        let Some(callee) = node
            .child_by_field_name("function")
            .filter(|c| c.kind() == "selector_expression")
        else {
            continue;
        };
        let operand = callee
            .child_by_field_name("operand")
            .map_or("", |o| text(o, source));
        let field = callee
            .child_by_field_name("field")
            .map_or("", |f| text(f, source));
        let reports_failure = ["Error", "Fatal", "Fail"]
            .iter()
            .any(|p| field.starts_with(p));
        if reports_failure || matches!(operand, "assert" | "require") {
            found.real += 1;
        }
    }
    found
}
