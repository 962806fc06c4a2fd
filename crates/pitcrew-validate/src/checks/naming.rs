//! `test_naming`: test files and tests are named so that their framework collects them.

use pitcrew_core::Finding;

use crate::Language;
use crate::ast::{descendants, line, named_children, text};
use crate::rules::Rule;
use crate::testfns::{Written, is_test_path, test_functions, undecorated};

const RULE: &str = Rule::TestNaming.as_str();

/// Findings for every test file in `files`; `expect_tests` (a test-writing task) also
/// requires that there is one.
pub(crate) fn test_naming(files: &[Written], expect_tests: bool) -> Vec<Finding> {
    let mut findings = Vec::new();
    let parsed: Vec<&Written> = files.iter().filter(|f| f.tree.is_some()).collect();
    let test_files: Vec<&Written> = parsed.iter().copied().filter(|f| f.is_test()).collect();
    if expect_tests && test_files.is_empty() && !parsed.is_empty() {
        let names: Vec<&str> = parsed.iter().map(|f| f.path.as_str()).collect();
        findings.push(Finding::error(
            RULE,
            format!(
                "none of the written files ({}) is a test file: write tests in a file the \
                 framework collects, e.g. `tests/test_<module>.py` with functions named \
                 `test_*` for pytest",
                names.join(", ")
            ),
        ));
    }
    for file in test_files {
        let tests = test_functions(file);
        if !is_test_path(&file.path) && file.language != Some(Language::Rust) {
            findings.push(Finding::error(RULE, misnamed_file(file)).in_file(&file.path));
        }
        if tests.is_empty() {
            findings.push(Finding::error(RULE, no_tests(file)).in_file(&file.path));
        }
        for test in &tests {
            if let Some(reason) = &test.not_run {
                findings.push(
                    Finding::error(
                        RULE,
                        format!(
                            "`{}` (line {}) will not run: {reason}",
                            test.name, test.line
                        ),
                    )
                    .in_file(&file.path)
                    .at_line(test.line),
                );
            }
        }
        if file.language == Some(Language::Python) {
            findings.extend(python_orphan_checks(file));
        }
    }
    findings
}

fn misnamed_file(file: &Written) -> String {
    let name = file.file_name();
    match file.language {
        Some(Language::Python) => format!(
            "pytest does not collect `{}`: test files must be named `test_*.py` or \
             `*_test.py` (e.g. `test_{name}`)",
            file.path
        ),
        Some(Language::Go) => format!(
            "`go test` only runs tests in files named `*_test.go`: rename `{}`",
            file.path
        ),
        _ => format!(
            "Jest and Vitest collect `*.test.*`, `*.spec.*` and files under `__tests__/`: \
             rename `{}` (e.g. `{}`)",
            file.path,
            name.rsplit_once('.')
                .map_or(name.to_string(), |(stem, ext)| format!("{stem}.test.{ext}"))
        ),
    }
}

fn no_tests(file: &Written) -> String {
    let how = match file.language {
        Some(Language::Python) => {
            "pytest runs functions named `test_*` at module level or in classes named `Test*`"
        }
        Some(Language::Rust) => "mark test functions with `#[test]`",
        Some(Language::Go) => "`go test` runs `func TestXxx(t *testing.T)`",
        _ => "Jest and Vitest run `test(name, fn)` and `it(name, fn)`",
    };
    format!("`{}` defines no test: {how}", file.path)
}

/// Module-level Python functions that assert but are neither collected (not `test*`) nor
/// called from anywhere in the file: their assertions never run.
fn python_orphan_checks(file: &Written) -> Vec<Finding> {
    let Some(tree) = &file.tree else {
        return Vec::new();
    };
    let root = tree.root_node();
    let source = file.source.as_str();
    let mut findings = Vec::new();
    for def in named_children(root)
        .into_iter()
        .map(undecorated)
        .filter(|n| n.kind() == "function_definition")
    {
        let Some(name_node) = def.child_by_field_name("name") else {
            continue;
        };
        let name = text(name_node, source);
        if name.starts_with("test") || name.starts_with('_') {
            continue;
        }
        let asserts = descendants(def).any(|n| n.kind() == "assert_statement");
        // Mentioned anywhere but its own name: called, passed, or requested as a fixture.
        let used = descendants(root)
            .any(|n| n.kind() == "identifier" && n != name_node && text(n, source) == name);
        if asserts && !used {
            findings.push(
                Finding::error(
                    RULE,
                    format!(
                        "`{name}` (line {}) asserts but never runs: pytest only collects \
                         functions named `test_*`, and nothing calls it; rename it `test_{name}`",
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
