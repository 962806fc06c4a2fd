//! What the index reads from a Python file: the modules it imports and one line per
//! top-level function and class (with its methods), parsed with tree-sitter.

use tree_sitter::{Node, Parser};

fn parse(source: &str) -> Option<tree_sitter::Tree> {
    let mut parser = Parser::new();
    parser
        .set_language(&tree_sitter_python::LANGUAGE.into())
        .ok()?;
    parser.parse(source, None)
}

fn text<'s>(node: Node, source: &'s str) -> &'s str {
    source.get(node.byte_range()).unwrap_or("")
}

/// The modules a Python file imports, as written: `a.b`, `.sibling`, `..pkg.mod`; for
/// `from m import x` both `m` and `m.x` (x may be a submodule).
pub fn imports(source: &str) -> Vec<String> {
    let Some(tree) = parse(source) else {
        return Vec::new();
    };
    imports_in(&tree, source)
}

fn imports_in(tree: &tree_sitter::Tree, source: &str) -> Vec<String> {
    let mut modules = Vec::new();
    let mut stack = vec![tree.root_node()];
    while let Some(node) = stack.pop() {
        match node.kind() {
            "import_statement" => {
                let mut cursor = node.walk();
                for name in node.children_by_field_name("name", &mut cursor) {
                    let dotted = name.child_by_field_name("name").unwrap_or(name);
                    modules.push(text(dotted, source).to_string());
                }
            }
            "import_from_statement" => {
                let module = node
                    .child_by_field_name("module_name")
                    .map_or("", |m| text(m, source));
                modules.push(module.to_string());
                let mut cursor = node.walk();
                for name in node.children_by_field_name("name", &mut cursor) {
                    let name = name.child_by_field_name("name").unwrap_or(name);
                    let separator = if module.ends_with('.') { "" } else { "." };
                    modules.push(format!("{module}{separator}{}", text(name, source)));
                }
            }
            _ => {
                let mut cursor = node.walk();
                stack.extend(node.named_children(&mut cursor));
            }
        }
    }
    modules
}

/// The definition inside a decorated one, or the node itself.
fn undecorated(node: Node) -> Node {
    if node.kind() == "decorated_definition" {
        node.child_by_field_name("definition").unwrap_or(node)
    } else {
        node
    }
}

fn symbols_in(tree: &tree_sitter::Tree, source: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut cursor = tree.root_node().walk();
    for node in tree.root_node().named_children(&mut cursor) {
        let node = undecorated(node);
        let name = || {
            node.child_by_field_name("name")
                .map_or("", |n| text(n, source))
        };
        match node.kind() {
            "function_definition" => {
                let params = node
                    .child_by_field_name("parameters")
                    .map_or("()", |p| text(p, source));
                lines.push(format!(
                    "  def {}{}",
                    name(),
                    params.split_whitespace().collect::<Vec<_>>().join(" ")
                ));
            }
            "class_definition" => {
                let mut methods = Vec::new();
                if let Some(body) = node.child_by_field_name("body") {
                    let mut c = body.walk();
                    for item in body.named_children(&mut c) {
                        let item = undecorated(item);
                        if item.kind() == "function_definition" {
                            methods.push(
                                item.child_by_field_name("name")
                                    .map_or("", |n| text(n, source))
                                    .to_string(),
                            );
                        }
                    }
                }
                lines.push(format!("  class {}: {}", name(), methods.join(", ")));
            }
            _ => {}
        }
    }
    lines
}

/// One line per top-level function and class (with its methods) of a Python file.
pub fn symbols(source: &str) -> Vec<String> {
    parse(source).map_or_else(Vec::new, |tree| symbols_in(&tree, source))
}

/// Imports and symbols from one parse.
pub(crate) fn imports_and_symbols(source: &str) -> (Vec<String>, Vec<String>) {
    match parse(source) {
        Some(tree) => (imports_in(&tree, source), symbols_in(&tree, source)),
        None => (Vec::new(), Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imports_are_read_as_written() {
        let src = "import os\nimport pkg.util as u\nfrom . import sibling\nfrom .helpers import fmt\nfrom ..core import base\nfrom pkg.models import User\n";
        let found = imports(src);
        for expected in [
            "os",
            "pkg.util",
            ".",
            ".sibling",
            ".helpers",
            ".helpers.fmt",
            "..core",
            "..core.base",
            "pkg.models",
            "pkg.models.User",
        ] {
            assert!(
                found.contains(&expected.to_string()),
                "{expected} not in {found:?}"
            );
        }
    }

    #[test]
    fn symbols_list_functions_classes_and_methods() {
        let src = "@cache\ndef f(a,\n      b=1):\n    pass\n\nclass C(Base):\n    @property\n    def x(self): ...\n    def y(self): ...\n";
        assert_eq!(symbols(src), ["  def f(a, b=1)", "  class C: x, y"]);
        assert_eq!(imports_and_symbols(src).1, symbols(src));
    }
}
