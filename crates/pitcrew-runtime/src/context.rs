//! Choosing what the model sees besides the task, within a token budget: the targets, the
//! project's conventions, the targets' existing tests, the files they import and the files
//! that import them (Python imports are resolved with tree-sitter), and a compact map of the
//! repository's symbols. What was included and what was cut is reported for the attempt.

use std::collections::BTreeSet;
use std::path::Path;

use pitcrew_index::{RepoIndex, count_tokens, imports, is_skipped_dir, resolve_module};
use serde::Serialize;

use crate::prompt::{Convention, PromptContext, PromptFile};

/// Repositories bigger than this are only partly walked by [`python_files`].
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
                if !is_skipped_dir(&name) {
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

/// The repository files among `files` that the Python file `file` imports (resolved as for
/// the context: absolute, `src/` layout, relative).
pub fn imports_of(root: &Path, file: &str, files: &BTreeSet<String>) -> Vec<String> {
    let Some(source) = read(root, file) else {
        return Vec::new();
    };
    let mut found: Vec<String> = imports(&source)
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

/// Builds the prompt context for `targets` in the checkout at `root`, a fresh checkout of
/// the commit `index` describes: what to consider comes from the index (tests by name,
/// imports and importers from its graph, the map ranked around the targets); only the files
/// chosen are read.
pub fn gather(
    root: &Path,
    targets: &[String],
    settings: &ContextSettings,
    index: &RepoIndex,
) -> (PromptContext, ContextReport) {
    // Tokens as the index counted them for the base commit's content; counted here otherwise.
    let tokens_of = |path: &str, content: &str| {
        index
            .facts(path)
            .map_or_else(|| count_tokens(content), |facts| facts.tokens)
    };
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
                    tokens: tokens_of(target, &file.content),
                });
                context.files.push(file);
            }
            None => context.missing.push(target.clone()),
        }
    }

    let mut candidates: Vec<(String, &'static str, String)> = Vec::new();
    for path in &settings.conventions {
        if let Some(content) = read(root, path) {
            candidates.push((path.clone(), "convention", content));
        }
    }
    let mut seen: BTreeSet<String> = targets.iter().cloned().collect();
    let add = |path: &str,
               role: &'static str,
               seen: &mut BTreeSet<String>,
               candidates: &mut Vec<(String, &'static str, String)>| {
        if seen.insert(path.to_string())
            && let Some(content) = read(root, path)
        {
            candidates.push((path.to_string(), role, content));
        }
    };
    let python_targets: Vec<&String> = targets.iter().filter(|t| t.ends_with(".py")).collect();
    for target in &python_targets {
        for test in tests_of(target, index.paths()) {
            add(&test, "test", &mut seen, &mut candidates);
        }
    }
    for target in &python_targets {
        for path in index.imports_of(target) {
            add(path, "imported", &mut seen, &mut candidates);
        }
    }
    for target in &python_targets {
        for path in index.importers_of(target) {
            add(path, "importer", &mut seen, &mut candidates);
        }
    }

    // Highest value first: conventions, tests, imports, importers (the order pushed).
    for (path, role, content) in candidates {
        let item = ContextItem {
            tokens: tokens_of(&path, &content),
            path: path.clone(),
            role,
        };
        if report.used + item.tokens > settings.token_budget {
            report.cut.push(item);
            continue;
        }
        report.used += item.tokens;
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

    // The map takes what is left, the files nearest the targets in the import graph first.
    let mut map = String::new();
    let mut map_tokens = 0;
    let mut omitted = 0;
    for file in index.ranked(targets) {
        let Some(entry) = index.map_entry(file) else {
            continue;
        };
        if report.used + map_tokens + entry.tokens > settings.token_budget {
            omitted += 1;
            continue;
        }
        map_tokens += entry.tokens;
        map.push_str(&entry.text());
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

    /// The index of `files` as they are in `dir`.
    fn index(files: &[(&str, &str)], dir: &Path) -> RepoIndex {
        let tree: Vec<pitcrew_index::TreeFile> = files
            .iter()
            .map(|(path, content)| pitcrew_index::TreeFile {
                path: path.to_string(),
                blob: pitcrew_core::sha256_hex(content.as_bytes()),
            })
            .collect();
        RepoIndex::build("base", &tree, None, &|path| {
            std::fs::read(dir.join(path)).ok()
        })
        .0
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
        let files = [
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
        ];
        let dir = repo(&files);
        let (context, report) = gather(
            dir.path(),
            &["app/calc.py".into()],
            &ContextSettings::default(),
            &index(&files, dir.path()),
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
        let files = [
            ("m/target.py", "import m.big\n\ndef g():\n    return 2\n"),
            ("m/big.py", big.as_str()),
            ("m/__init__.py", ""),
        ];
        let dir = repo(&files);
        let settings = ContextSettings {
            token_budget: 200,
            conventions: vec![],
        };
        let (context, report) = gather(
            dir.path(),
            &["m/target.py".into()],
            &settings,
            &index(&files, dir.path()),
        );
        assert!(context.related.is_empty());
        assert_eq!(report.cut[0].path, "m/big.py");
        assert_eq!(report.cut[0].role, "imported");
        assert!(report.used <= 200, "{report:?}");
    }
}
