//! `imports_target`: the tests import the code under test and use it. For Python this is
//! exact (imports resolved against the target's module names, use checked inside tests);
//! for the other languages it is a heuristic on import paths and module names.

use std::path::Path;

use pitcrew_core::Finding;
use tree_sitter::Node;

use crate::Language;
use crate::ast::{descendants, mentions, named_children, text};
use crate::rules::Rule;
use crate::testfns::{Written, test_functions};

const RULE: &str = Rule::ImportsTarget.as_str();

pub(crate) fn imports_target(files: &[Written], targets: &[String]) -> Vec<Finding> {
    let tests: Vec<&Written> = files
        .iter()
        .filter(|f| f.tree.is_some() && f.is_test())
        .collect();
    let Some(first) = tests.first() else {
        return Vec::new();
    };
    let mut findings = Vec::new();
    for target in targets {
        match Language::from_path(target) {
            Some(Language::Python) => findings.extend(python(&tests, target)),
            Some(language)
                if !tests
                    .iter()
                    .any(|f| imports_heuristically(f, target, language)) =>
            {
                findings.push(
                    Finding::error(
                        RULE,
                        format!(
                            "no test file imports the target `{target}`: import the module \
                             under test and call it"
                        ),
                    )
                    .in_file(&first.path),
                );
            }
            _ => {}
        }
    }
    findings
}

/// The dotted names `target` may be imported as, shortest first: `src/pkg/calc.py` gives
/// `calc`, `pkg.calc`, `src.pkg.calc`; `pkg/__init__.py` gives `pkg`.
fn module_names(target: &str) -> Vec<String> {
    let path = Path::new(target).with_extension("");
    let mut parts: Vec<String> = path
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "__init__") {
        parts.pop();
    }
    (0..parts.len())
        .rev()
        .map(|start| parts[start..].join("."))
        .collect()
}

fn python(tests: &[&Written], target: &str) -> Vec<Finding> {
    let names = module_names(target);
    let mut importers = Vec::new();
    for file in tests
        .iter()
        .filter(|f| f.language == Some(Language::Python))
    {
        let tree = file.tree.as_ref().expect("filtered on parsed files");
        let bound = python_bindings(tree.root_node(), &file.source, &names);
        if bound.is_empty() {
            continue;
        }
        let used = bound.iter().any(|name| {
            name == "*"
                || test_functions(file)
                    .iter()
                    .any(|t| mentions(t.body, &file.source, name))
        });
        if used {
            return Vec::new();
        }
        importers.push((file, bound));
    }
    if importers.is_empty() {
        let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
        let file = tests.first().map_or(target, |f| f.path.as_str());
        return vec![
            Finding::error(
                RULE,
                format!(
                    "no test file imports the target `{target}` (as {}): import the module \
                     under test and call it",
                    quoted.join(" or ")
                ),
            )
            .in_file(file),
        ];
    }
    importers
        .into_iter()
        .map(|(file, bound)| {
            Finding::error(
                RULE,
                format!(
                    "`{}` imports `{}` from `{target}` but no test uses it: call the code under \
                     test in the tests",
                    file.path,
                    bound.join("`, `")
                ),
            )
            .in_file(&file.path)
        })
        .collect()
}

/// The local names that imports of one of `names` bind (`*` for a wildcard import).
fn python_bindings(root: Node, source: &str, names: &[String]) -> Vec<String> {
    let matches = |dotted: &str, relative: bool| {
        names
            .iter()
            .any(|n| n == dotted || (relative && n.ends_with(&format!(".{dotted}"))))
    };
    let imported = |name: Node| -> (String, Option<String>) {
        match name.kind() {
            "aliased_import" => (
                name.child_by_field_name("name")
                    .map_or("", |n| text(n, source))
                    .to_string(),
                name.child_by_field_name("alias")
                    .map(|a| text(a, source).to_string()),
            ),
            _ => (text(name, source).to_string(), None),
        }
    };
    let mut bound = Vec::new();
    for node in descendants(root) {
        match node.kind() {
            "import_statement" => {
                let mut cursor = node.walk();
                for name in node.children_by_field_name("name", &mut cursor) {
                    let (dotted, alias) = imported(name);
                    if matches(&dotted, false) {
                        // `import a.b` binds `a`.
                        let first = dotted.split('.').next().unwrap_or(&dotted).to_string();
                        bound.push(alias.unwrap_or(first));
                    }
                }
            }
            "import_from_statement" => {
                let module = node
                    .child_by_field_name("module_name")
                    .map_or("", |m| text(m, source));
                let relative = module.starts_with('.');
                let module = module.trim_start_matches('.');
                let module_matches = !module.is_empty() && matches(module, relative);
                if module_matches
                    && named_children(node)
                        .iter()
                        .any(|c| c.kind() == "wildcard_import")
                {
                    bound.push("*".to_string());
                }
                let mut cursor = node.walk();
                for name in node.children_by_field_name("name", &mut cursor) {
                    let (dotted, alias) = imported(name);
                    let full = if module.is_empty() {
                        dotted.clone()
                    } else {
                        format!("{module}.{dotted}")
                    };
                    if module_matches || matches(&full, relative) {
                        bound.push(alias.unwrap_or(dotted));
                    }
                }
            }
            _ => {}
        }
    }
    bound
}

/// JavaScript/TypeScript: an import or `require` path naming the target's module; Go: the
/// test is in the target's package directory or imports it; Rust: the tests are in the
/// target, or name its module (`calc::`), or (for a crate root) use the crate.
fn imports_heuristically(file: &Written, target: &str, language: Language) -> bool {
    let target_path = Path::new(target);
    let stem = target_path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("");
    let target_dir = target_path.parent().unwrap_or(Path::new(""));
    let file_dir = Path::new(&file.path).parent().unwrap_or(Path::new(""));
    let Some(tree) = &file.tree else {
        return false;
    };
    let root = tree.root_node();
    let source = file.source.as_str();
    match language {
        Language::JavaScript | Language::TypeScript | Language::Tsx => descendants(root).any(|n| {
            let specifier = match n.kind() {
                "import_statement" => n.child_by_field_name("source"),
                "call_expression"
                    if n.child_by_field_name("function")
                        .is_some_and(|f| matches!(text(f, source), "require" | "import")) =>
                {
                    n.child_by_field_name("arguments")
                        .and_then(|a| a.named_child(0))
                }
                _ => None,
            };
            specifier.is_some_and(|s| {
                let spec = text(s, source).trim_matches(['"', '\'', '`']);
                let last = Path::new(spec)
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or("");
                last == stem
                    || (stem == "index"
                        && target_dir.file_name().and_then(|d| d.to_str()) == Some(last))
            })
        }),
        Language::Go => {
            file_dir == target_dir
                || descendants(root)
                    .filter(|n| n.kind() == "import_spec")
                    .filter_map(|n| n.child_by_field_name("path"))
                    .any(|p| {
                        let path = text(p, source).trim_matches(['"', '`']);
                        !target_dir.as_os_str().is_empty() && Path::new(path).ends_with(target_dir)
                    })
        }
        Language::Rust => {
            file.path == target
                || source.contains(&format!("{stem}::"))
                || (matches!(stem, "lib" | "main") && source.contains("use "))
        }
        Language::Python => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_run_from_short_to_long() {
        assert_eq!(
            module_names("src/pkg/calc.py"),
            ["calc", "pkg.calc", "src.pkg.calc"]
        );
        assert_eq!(module_names("pkg/__init__.py"), ["pkg"]);
    }
}
