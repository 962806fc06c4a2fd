//! Choosing what the model sees besides the task, within a token budget: the targets, the
//! project's conventions, the targets' existing tests, the files they import and the files
//! that import them (Python imports are resolved with tree-sitter), and a compact map of the
//! repository's symbols. What was included and what was cut is reported for the attempt.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::Serialize;
use tree_sitter::{Node, Parser};

use crate::prompt::{Convention, PromptContext, PromptFile};

/// Directories never looked into: version control, environments, build output, caches.
const SKIPPED_DIRS: &[&str] = &[
    ".git",
    ".pitcrew",
    ".venv",
    "venv",
    "env",
    "node_modules",
    "target",
    "build",
    "dist",
    "__pycache__",
    ".tox",
    ".mypy_cache",
    ".pytest_cache",
    "site-packages",
];
/// Repositories bigger than this are only partly scanned for importers and the map.
const MAX_SCANNED_FILES: usize = 5000;

#[derive(Debug, Clone, PartialEq)]
pub struct ContextSettings {
    /// Tokens (cl100k) available for everything besides the targets themselves.
    pub token_budget: usize,
    /// Files with project conventions, shown when present.
    pub conventions: Vec<String>,
}

impl Default for ContextSettings {
    fn default() -> Self {
        ContextSettings {
            token_budget: 12_000,
            conventions: vec![
                "AGENTS.md".into(),
                "CONVENTIONS.md".into(),
                "CONTRIBUTING.md".into(),
            ],
        }
    }
}

/// One candidate piece of context and what happened to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContextItem {
    pub path: String,
    /// target, convention, test, imported, importer, repo_map.
    pub role: &'static str,
    pub tokens: usize,
}

/// What went into the prompt and what did not fit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ContextReport {
    pub budget: usize,
    pub used: usize,
    pub included: Vec<ContextItem>,
    pub cut: Vec<ContextItem>,
}

/// Tokens in `text` as OpenAI's cl100k encoding counts them (a close estimate for most
/// models' tokenizers).
pub fn count_tokens(text: &str) -> usize {
    static ENCODING: OnceLock<tiktoken_rs::CoreBPE> = OnceLock::new();
    ENCODING
        .get_or_init(|| tiktoken_rs::cl100k_base().expect("the embedded cl100k vocabulary loads"))
        .encode_ordinary(text)
        .len()
}

fn read(root: &Path, path: &str) -> Option<String> {
    std::fs::read(root.join(path))
        .ok()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// Python files of the repository, relative paths, sorted (environments, build output and
/// hidden directories skipped).
pub fn python_files(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                if !SKIPPED_DIRS.contains(&name.as_str()) && !name.starts_with('.') {
                    stack.push(entry.path());
                }
            } else if kind.is_file()
                && name.ends_with(".py")
                && let Ok(rel) = entry.path().strip_prefix(root)
            {
                found.push(rel.to_string_lossy().into_owned());
            }
            if found.len() >= MAX_SCANNED_FILES {
                found.sort();
                return found;
            }
        }
    }
    found.sort();
    found
}

fn parse_python(source: &str) -> Option<tree_sitter::Tree> {
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
fn python_imports(source: &str) -> Vec<String> {
    let Some(tree) = parse_python(source) else {
        return Vec::new();
    };
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

/// The repository file a module name refers to, from `importer`'s location.
fn resolve_module(module: &str, importer: &str, files: &BTreeSet<String>) -> Option<String> {
    let dots = module.chars().take_while(|c| *c == '.').count();
    let rest = &module[dots..];
    let mut bases: Vec<PathBuf> = Vec::new();
    if dots > 0 {
        let mut base = Path::new(importer)
            .parent()
            .unwrap_or(Path::new(""))
            .to_path_buf();
        for _ in 1..dots {
            base.pop();
        }
        bases.push(base);
    } else {
        // Absolute imports: from the root, or from a `src/` layout.
        bases.push(PathBuf::new());
        bases.push(PathBuf::from("src"));
    }
    for base in bases {
        let mut path = base.clone();
        for part in rest.split('.').filter(|p| !p.is_empty()) {
            path.push(part);
        }
        let as_file = path.with_extension("py").to_string_lossy().into_owned();
        let as_package = path.join("__init__.py").to_string_lossy().into_owned();
        for candidate in [as_file, as_package] {
            if files.contains(&candidate) {
                return Some(candidate);
            }
        }
    }
    None
}

/// The repository files among `files` that the Python file `file` imports (resolved as for
/// the context: absolute, `src/` layout, relative).
pub fn imports_of(root: &Path, file: &str, files: &BTreeSet<String>) -> Vec<String> {
    let Some(source) = read(root, file) else {
        return Vec::new();
    };
    let mut found: Vec<String> = python_imports(&source)
        .iter()
        .filter_map(|m| resolve_module(m, file, files))
        .collect();
    found.sort();
    found.dedup();
    found
}

/// The module name a test file is named after, as the unit-test prompt asks for
/// (`tests/test_<module>.py`): a file's stem, or a package's name for its `__init__.py`.
fn module_name(target: &str) -> String {
    let path = Path::new(target);
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    match path.parent().and_then(Path::file_name) {
        Some(package) if stem == "__init__" => package.to_string_lossy().into_owned(),
        _ => stem,
    }
}

/// Existing test files for `target` among `files`, by the usual naming conventions
/// (`test_<module>.py`, `<module>_test.py`; for `pkg/__init__.py` the module is `pkg`).
pub fn tests_of(target: &str, files: &BTreeSet<String>) -> Vec<String> {
    let stem = module_name(target);
    let names = [format!("test_{stem}.py"), format!("{stem}_test.py")];
    files
        .iter()
        .filter(|f| {
            let name = Path::new(f)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            names.contains(&name) && f.as_str() != target
        })
        .cloned()
        .collect()
}

/// One line per top-level function and class (with its methods) of a Python file.
fn symbols(source: &str) -> Vec<String> {
    let Some(tree) = parse_python(source) else {
        return Vec::new();
    };
    let mut lines = Vec::new();
    let mut cursor = tree.root_node().walk();
    for node in tree.root_node().named_children(&mut cursor) {
        let node = if node.kind() == "decorated_definition" {
            node.child_by_field_name("definition").unwrap_or(node)
        } else {
            node
        };
        match node.kind() {
            "function_definition" => {
                let name = node
                    .child_by_field_name("name")
                    .map_or("", |n| text(n, source));
                let params = node
                    .child_by_field_name("parameters")
                    .map_or("()", |p| text(p, source));
                lines.push(format!(
                    "  def {name}{}",
                    params.split_whitespace().collect::<Vec<_>>().join(" ")
                ));
            }
            "class_definition" => {
                let name = node
                    .child_by_field_name("name")
                    .map_or("", |n| text(n, source));
                let mut methods = Vec::new();
                if let Some(body) = node.child_by_field_name("body") {
                    let mut c = body.walk();
                    for item in body.named_children(&mut c) {
                        let item = if item.kind() == "decorated_definition" {
                            item.child_by_field_name("definition").unwrap_or(item)
                        } else {
                            item
                        };
                        if item.kind() == "function_definition" {
                            methods.push(
                                item.child_by_field_name("name")
                                    .map_or("", |n| text(n, source))
                                    .to_string(),
                            );
                        }
                    }
                }
                lines.push(format!("  class {name}: {}", methods.join(", ")));
            }
            _ => {}
        }
    }
    lines
}

/// Builds the prompt context for `targets` in the checkout at `root`.
pub fn gather(
    root: &Path,
    targets: &[String],
    settings: &ContextSettings,
) -> (PromptContext, ContextReport) {
    let mut context = PromptContext::default();
    let mut report = ContextReport {
        budget: settings.token_budget,
        ..ContextReport::default()
    };
    for target in targets {
        match read(root, target) {
            Some(content) => {
                let file = PromptFile::new(target, content);
                report.included.push(ContextItem {
                    path: target.clone(),
                    role: "target",
                    tokens: count_tokens(&file.content),
                });
                context.files.push(file);
            }
            None => context.missing.push(target.clone()),
        }
    }

    let files: BTreeSet<String> = python_files(root).into_iter().collect();
    let mut candidates: Vec<(String, &'static str, String)> = Vec::new();
    for path in &settings.conventions {
        if let Some(content) = read(root, path) {
            candidates.push((path.clone(), "convention", content));
        }
    }
    let mut seen: BTreeSet<String> = targets.iter().cloned().collect();
    let add = |path: String,
               role: &'static str,
               seen: &mut BTreeSet<String>,
               candidates: &mut Vec<(String, &'static str, String)>| {
        if seen.insert(path.clone())
            && let Some(content) = read(root, &path)
        {
            candidates.push((path, role, content));
        }
    };
    let python_targets: Vec<&String> = targets.iter().filter(|t| t.ends_with(".py")).collect();
    for target in &python_targets {
        for test in tests_of(target, &files) {
            add(test, "test", &mut seen, &mut candidates);
        }
    }
    for target in &python_targets {
        if let Some(source) = read(root, target) {
            for module in python_imports(&source) {
                if let Some(path) = resolve_module(&module, target, &files) {
                    add(path, "imported", &mut seen, &mut candidates);
                }
            }
        }
    }
    if !python_targets.is_empty() {
        for file in &files {
            if seen.contains(file) {
                continue;
            }
            let Some(source) = read(root, file) else {
                continue;
            };
            let imports_target = python_imports(&source).iter().any(|m| {
                resolve_module(m, file, &files)
                    .is_some_and(|p| python_targets.iter().any(|t| **t == p))
            });
            if imports_target {
                add(file.clone(), "importer", &mut seen, &mut candidates);
            }
        }
    }

    // Highest value first: conventions, tests, imports, importers (the order pushed).
    for (path, role, content) in candidates {
        let tokens = count_tokens(&content);
        let item = ContextItem {
            path: path.clone(),
            role,
            tokens,
        };
        if report.used + tokens > settings.token_budget {
            report.cut.push(item);
            continue;
        }
        report.used += tokens;
        report.included.push(item);
        if role == "convention" {
            context.conventions.push(Convention {
                path,
                content: content.trim().to_string(),
            });
        } else {
            let reason = match role {
                "test" => "existing tests of the target",
                "imported" => "imported by the target",
                _ => "imports the target",
            };
            context
                .related
                .push(PromptFile::new(&path, content).because(reason));
        }
    }

    // The map takes what is left, nearest files first.
    let target_dirs: Vec<&Path> = targets
        .iter()
        .filter_map(|t| Path::new(t).parent())
        .collect();
    let mut ordered: Vec<&String> = files.iter().collect();
    ordered.sort_by_key(|f| {
        !target_dirs
            .iter()
            .any(|d| Path::new(f).parent() == Some(*d))
    });
    let mut map = String::new();
    let mut map_tokens = 0;
    let mut omitted = 0;
    for file in ordered {
        let Some(source) = read(root, file) else {
            continue;
        };
        let lines = symbols(&source);
        if lines.is_empty() {
            continue;
        }
        let entry = format!("{file}:\n{}\n", lines.join("\n"));
        let tokens = count_tokens(&entry);
        if report.used + map_tokens + tokens > settings.token_budget {
            omitted += 1;
            continue;
        }
        map_tokens += tokens;
        map.push_str(&entry);
    }
    if !map.is_empty() {
        report.used += map_tokens;
        report.included.push(ContextItem {
            path: "(repository map)".into(),
            role: "repo_map",
            tokens: map_tokens,
        });
    }
    if omitted > 0 {
        report.cut.push(ContextItem {
            path: format!("(repository map: {omitted} more files)"),
            role: "repo_map",
            tokens: 0,
        });
    }
    context.repo_map = map.trim_end().to_string();
    (context, report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, content) in files {
            let full = dir.path().join(path);
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(full, content).unwrap();
        }
        dir
    }

    #[test]
    fn tokens_are_counted_with_a_real_tokenizer() {
        assert_eq!(count_tokens(""), 0);
        assert_eq!(count_tokens("hello world"), 2);
        assert!(count_tokens("def f(x):\n    return x * 2\n") > 5);
    }

    #[test]
    fn imports_are_read_and_resolved() {
        let src = "import os\nimport pkg.util as u\nfrom . import sibling\nfrom .helpers import fmt\nfrom ..core import base\nfrom pkg.models import User\n";
        let imports = python_imports(src);
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
                imports.contains(&expected.to_string()),
                "{expected} not in {imports:?}"
            );
        }
        let files: BTreeSet<String> = [
            "pkg/__init__.py",
            "pkg/util.py",
            "pkg/sub/sibling.py",
            "pkg/sub/helpers.py",
            "pkg/core.py",
            "pkg/models.py",
            "src/lib/x.py",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let importer = "pkg/sub/mod.py";
        assert_eq!(
            resolve_module("pkg.util", importer, &files).as_deref(),
            Some("pkg/util.py")
        );
        assert_eq!(
            resolve_module("pkg", importer, &files).as_deref(),
            Some("pkg/__init__.py")
        );
        assert_eq!(
            resolve_module(".sibling", importer, &files).as_deref(),
            Some("pkg/sub/sibling.py")
        );
        assert_eq!(
            resolve_module("..core", importer, &files).as_deref(),
            Some("pkg/core.py")
        );
        assert_eq!(
            resolve_module("lib.x", importer, &files).as_deref(),
            Some("src/lib/x.py")
        );
        assert_eq!(resolve_module("os", importer, &files), None);
    }

    #[test]
    fn tests_are_found_by_module_name_and_imports_by_file() {
        let files: BTreeSet<String> = [
            "pkg/__init__.py",
            "pkg/calc.py",
            "tests/test_pkg.py",
            "tests/test___init__.py",
            "tests/calc_test.py",
            "tests/test_other.py",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(tests_of("pkg/__init__.py", &files), ["tests/test_pkg.py"]);
        assert_eq!(tests_of("pkg/calc.py", &files), ["tests/calc_test.py"]);

        let dir = repo(&[(
            "tests/test_other.py",
            "import os\nfrom pkg import calc\nfrom pkg.calc import double\n",
        )]);
        assert_eq!(
            imports_of(dir.path(), "tests/test_other.py", &files),
            ["pkg/__init__.py", "pkg/calc.py"]
        );
        assert!(imports_of(dir.path(), "tests/missing.py", &files).is_empty());
    }

    #[test]
    fn gathers_tests_imports_importers_conventions_and_a_map() {
        let dir = repo(&[
            ("AGENTS.md", "Always use pytest fixtures.\n"),
            ("app/__init__.py", ""),
            (
                "app/calc.py",
                "from app.util import clamp\n\ndef double(x):\n    return clamp(x) * 2\n",
            ),
            (
                "app/util.py",
                "def clamp(x, lo=0, hi=10):\n    return max(lo, min(hi, x))\n",
            ),
            (
                "app/api.py",
                "from .calc import double\n\nclass Handler:\n    def get(self):\n        return double(2)\n",
            ),
            (
                "tests/test_calc.py",
                "from app.calc import double\n\ndef test_double():\n    assert double(1) == 2\n",
            ),
            ("other/unrelated.py", "def nothing():\n    pass\n"),
        ]);
        let (context, report) = gather(
            dir.path(),
            &["app/calc.py".into()],
            &ContextSettings::default(),
        );
        assert_eq!(context.files[0].path, "app/calc.py");
        assert_eq!(context.conventions[0].path, "AGENTS.md");
        let related: Vec<(&str, &str)> = context
            .related
            .iter()
            .map(|f| (f.path.as_str(), f.reason.as_str()))
            .collect();
        assert_eq!(
            related,
            [
                ("tests/test_calc.py", "existing tests of the target"),
                ("app/util.py", "imported by the target"),
                ("app/api.py", "imports the target"),
            ]
        );
        assert!(
            context
                .repo_map
                .contains("app/api.py:\n  class Handler: get"),
            "{}",
            context.repo_map
        );
        assert!(
            context.repo_map.contains("def clamp(x, lo=0, hi=10)"),
            "{}",
            context.repo_map
        );
        assert!(report.cut.is_empty());
        assert!(report.used > 0 && report.used <= report.budget);
        let roles: Vec<_> = report.included.iter().map(|i| i.role).collect();
        assert_eq!(
            roles,
            [
                "target",
                "convention",
                "test",
                "imported",
                "importer",
                "repo_map"
            ]
        );
    }

    #[test]
    fn what_does_not_fit_the_budget_is_cut_and_reported() {
        let big = "def f():\n    return 1\n".repeat(400);
        let dir = repo(&[
            ("m/target.py", "import m.big\n\ndef g():\n    return 2\n"),
            ("m/big.py", &big),
            ("m/__init__.py", ""),
        ]);
        let settings = ContextSettings {
            token_budget: 200,
            conventions: vec![],
        };
        let (context, report) = gather(dir.path(), &["m/target.py".into()], &settings);
        assert!(context.related.is_empty());
        assert_eq!(report.cut[0].path, "m/big.py");
        assert_eq!(report.cut[0].role, "imported");
        assert!(report.used <= 200, "{report:?}");
    }
}
