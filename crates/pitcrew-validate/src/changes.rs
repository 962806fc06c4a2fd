//! `change_set`: a task changes only what its kind may change. Checked before anything runs,
//! so a refused file (a `conftest.py`, a `pytest.py`) is never executed:
//!
//! - no protected file (test-runner configuration and hooks, packaging, pitcrew's files);
//! - only files the kind allows (test files for test-writing kinds);
//! - no Python module that would shadow the standard library or the test tools where the
//!   test process imports it (pytest puts the first directory above a test file without an
//!   `__init__.py` on `sys.path`, and `python -m pytest` the working directory);
//! - existing tests stay as they are (`keep_existing_tests`): a test present at the base
//!   commit may not be changed or deleted;
//! - no file holds the value of a secret pitcrew knows (it would be committed).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use globset::GlobMatcher;
use pitcrew_core::{Finding, TaskKind};

use crate::Language;
use crate::ast::text;
use crate::rules::Rule;
use crate::settings::ChangeSettings;
use crate::syntax::parse;
use crate::testfns::{Written, is_test_path, test_functions};

const RULE: &str = Rule::ChangeSet.as_str();

/// A compiled pattern of `validation.changes`.
#[derive(Debug, Clone)]
pub(crate) struct Pattern {
    text: String,
    matcher: GlobMatcher,
    /// Without `/`, a pattern names files in any directory.
    by_name: bool,
}

impl Pattern {
    fn matches(&self, path: &str) -> bool {
        if self.by_name {
            let name = path.rsplit('/').next().unwrap_or(path);
            self.matcher.is_match(name) || self.matcher.is_match(path)
        } else {
            self.matcher.is_match(path)
        }
    }
}

/// Compiles one pattern; the error says what is wrong with it.
fn compile(pattern: &str) -> Result<Pattern, String> {
    let glob = globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|e| format!("`{pattern}` is not a valid pattern: {e}"))?;
    Ok(Pattern {
        text: pattern.to_string(),
        matcher: glob.compile_matcher(),
        by_name: !pattern.contains('/'),
    })
}

/// [`compile`], once per process for each pattern: building a glob's regex costs far more
/// than matching it, and every validation (which checks its settings first) uses the same
/// few patterns.
pub(crate) fn compiled(pattern: &str) -> Result<Pattern, String> {
    static COMPILED: Mutex<BTreeMap<String, Result<Pattern, String>>> = Mutex::new(BTreeMap::new());
    let mut compiled = COMPILED.lock().unwrap_or_else(PoisonError::into_inner);
    compiled
        .entry(pattern.to_string())
        .or_insert_with(|| compile(pattern))
        .clone()
}

fn compile_all(patterns: &[String]) -> Vec<Pattern> {
    // The settings were checked; a pattern that does not compile matches nothing.
    patterns.iter().filter_map(|p| compiled(p).ok()).collect()
}

fn first_match<'p>(patterns: &'p [Pattern], path: &str) -> Option<&'p Pattern> {
    patterns.iter().find(|p| p.matches(path))
}

/// One changed file: its path, the file as now written (when it could be read) and its text
/// at the base commit (when it existed there).
#[derive(Debug)]
pub(crate) struct Change<'a> {
    pub path: &'a str,
    pub now: Option<&'a Written>,
    pub base: Option<&'a str>,
}

/// The `change_set` findings for `changes` made by a task of `kind` in `worktree`.
pub(crate) fn judge(
    settings: &ChangeSettings,
    kind: TaskKind,
    worktree: &Path,
    changes: &[Change<'_>],
) -> Vec<Finding> {
    let protected = compile_all(&settings.protected);
    let allowed_patterns = settings.allowed(kind);
    let allowed = compile_all(&allowed_patterns);
    let tests = compile_all(&settings.tests);
    let mut findings = Vec::new();
    for change in changes {
        let path = change.path;
        if let Some(pattern) = first_match(&protected, path) {
            findings.push(
                Finding::error(
                    RULE,
                    format!(
                        "`{path}` is protected (`{}` in validation.changes.protected: test-runner \
                         configuration, hooks, packaging or pitcrew's own files); no task may \
                         create or change it. Leave it out",
                        pattern.text
                    ),
                )
                .in_file(path),
            );
            continue;
        }
        if let Some(module) = shadowed_module(worktree, path) {
            findings.push(
                Finding::error(
                    RULE,
                    format!(
                        "`{path}` would be imported as the top-level module `{module}`, hiding \
                         the real `{module}` (standard library or test tool) from the test \
                         process; choose another name"
                    ),
                )
                .in_file(path),
            );
            continue;
        }
        if first_match(&allowed, path).is_none() {
            let what = if matches!(kind, TaskKind::UnitTest | TaskKind::IntegrationTest) {
                format!(
                    "a {kind} task may only add or change test files ({}), never the code under \
                     test or other files",
                    allowed_patterns.join(", ")
                )
            } else {
                format!(
                    "a {kind} task may only change files matching {}",
                    allowed_patterns.join(", ")
                )
            };
            findings.push(
                Finding::error(RULE, format!("`{path}` may not be changed: {what}")).in_file(path),
            );
            continue;
        }
        if let Some(now) = change.now
            && matches!(
                pitcrew_core::redact(&now.source),
                std::borrow::Cow::Owned(_)
            )
        {
            findings.push(
                Finding::error(
                    RULE,
                    format!(
                        "`{path}` contains the value of a secret from pitcrew's environment (an \
                         API key, token or password), which would be committed; never write \
                         credentials into files"
                    ),
                )
                .in_file(path),
            );
            continue;
        }
        let was_test = change.base.is_some_and(|base| {
            is_test_path(path) || first_match(&tests, path).is_some() || {
                !base_tests(path, base).is_empty()
            }
        });
        if settings.keep_existing_tests && was_test {
            findings.extend(changed_tests(path, change.base.unwrap_or(""), change.now));
        }
    }
    findings
}

/// The tests of `path` as it was at the base commit: (class, name, text of the whole test).
fn base_tests(path: &str, source: &str) -> Vec<(Option<String>, String, String, u32)> {
    let Some(language) = Language::from_path(path) else {
        return Vec::new();
    };
    let file = Written {
        path: path.to_string(),
        language: Some(language),
        source: source.to_string(),
        tree: Some(parse(language, source)),
    };
    test_functions(&file)
        .into_iter()
        .map(|t| {
            (
                t.class.clone(),
                t.name.clone(),
                normalized(text(t.whole, &file.source)),
                t.line,
            )
        })
        .collect()
}

/// Text compared line by line without trailing whitespace.
fn normalized(text: &str) -> String {
    text.lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Errors for every test of the base version of `path` that the new version changes or
/// drops.
fn changed_tests(path: &str, base: &str, now: Option<&Written>) -> Vec<Finding> {
    let before = base_tests(path, base);
    if before.is_empty() {
        return Vec::new();
    }
    let Some(now) = now else {
        return vec![
            Finding::error(
                RULE,
                format!(
                    "`{path}` holds existing tests and was deleted or emptied; existing tests \
                     stay as they are (validation.changes.keep_existing_tests)"
                ),
            )
            .in_file(path),
        ];
    };
    let after: Vec<(Option<String>, String, String)> = match &now.tree {
        Some(_) => test_functions(now)
            .into_iter()
            .map(|t| {
                (
                    t.class.clone(),
                    t.name.clone(),
                    normalized(text(t.whole, &now.source)),
                )
            })
            .collect(),
        // A file that does not parse is judged by `syntax`; its tests cannot be compared.
        None => return Vec::new(),
    };
    let mut findings = Vec::new();
    for (class, name, whole, line) in before {
        let id = match &class {
            Some(class) => format!("{class}.{name}"),
            None => name.clone(),
        };
        let what = match after.iter().find(|(c, n, _)| *c == class && *n == name) {
            None => "removes",
            Some((_, _, new)) if *new != whole => "changes",
            Some(_) => continue,
        };
        findings.push(
            Finding::error(
                RULE,
                format!(
                    "`{path}` {what} the existing test `{id}` (line {line} at the base commit); \
                     existing tests stay exactly as they are — add new tests instead \
                     (validation.changes.keep_existing_tests)"
                ),
            )
            .in_file(path),
        );
    }
    findings
}

/// The name `path` would be imported under at the top level, when that name belongs to the
/// standard library or a test tool.
fn shadowed_module(worktree: &Path, path: &str) -> Option<String> {
    let parts: Vec<&str> = path.split('/').collect();
    let (file, dirs) = parts.split_last()?;
    let module = python_module_name(file)?;
    // pytest's default import mode puts the first directory above the file that is not a
    // package on sys.path; from there the first component is the top-level name.
    let mut depth = dirs.len();
    while depth > 0
        && worktree
            .join(dirs[..depth].join("/"))
            .join("__init__.py")
            .is_file()
    {
        depth -= 1;
    }
    let top = if depth == dirs.len() {
        module
    } else {
        dirs[depth]
    };
    is_reserved_module(top).then(|| top.to_string())
}

/// The module name of a file Python can import, e.g. `json` for `json.py` or
/// `json.cpython-311-x86_64-linux-gnu.so`.
fn python_module_name(file: &str) -> Option<&str> {
    let (stem, _) = file.split_once('.')?;
    let extension = file.rsplit('.').next()?;
    matches!(extension, "py" | "pyc" | "pyw" | "so" | "pyd").then_some(stem)
}

/// Test tools and their machinery, which the test process imports by name.
const TOOL_MODULES: &[&str] = &[
    "pytest",
    "_pytest",
    "py",
    "pluggy",
    "iniconfig",
    "packaging",
    "coverage",
    "hypothesis",
    "xdist",
    "exceptiongroup",
    "tomli",
    "typing_extensions",
    "setuptools",
    "pkg_resources",
    "_distutils_hack",
    "pip",
    "conftest",
    "sitecustomize",
    "usercustomize",
    "pitcrew_order",
];

/// `sys.stdlib_module_names` of Python 3.11 and 3.12, and the modules 3.12 removed.
const STDLIB_MODULES: &str = include_str!("changes/stdlib_modules.txt");

fn is_reserved_module(name: &str) -> bool {
    name.starts_with("pytest_")
        || TOOL_MODULES.contains(&name)
        || STDLIB_MODULES.split_whitespace().any(|m| m == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syntax::check_syntax;

    fn written(path: &str, source: &str) -> Written {
        let language = Language::from_path(path);
        let tree = match check_syntax(path, source) {
            crate::SyntaxCheck::Valid { language } => Some(parse(language, source)),
            _ => None,
        };
        Written {
            path: path.into(),
            language,
            source: source.into(),
            tree,
        }
    }

    fn judge_paths(kind: TaskKind, worktree: &Path, paths: &[&str]) -> Vec<Finding> {
        let files: Vec<Written> = paths.iter().map(|p| written(p, "x = 1\n")).collect();
        let changes: Vec<Change> = files
            .iter()
            .map(|f| Change {
                path: &f.path,
                now: Some(f),
                base: None,
            })
            .collect();
        judge(&ChangeSettings::default(), kind, worktree, &changes)
    }

    #[test]
    fn test_tasks_may_only_add_test_files_and_never_runner_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let ok = judge_paths(
            TaskKind::UnitTest,
            dir.path(),
            &[
                "tests/test_calc.py",
                "tests/unit/helpers.py",
                "test_top.py",
                "pkg/calc_test.py",
                "tests/__init__.py",
            ],
        );
        assert!(ok.is_empty(), "{ok:?}");
        for (path, expected) in [
            ("src/calc.py", "may only add or change test files"),
            ("conftest.py", "protected"),
            ("tests/conftest.py", "protected"),
            ("tests/pytest.ini", "protected"),
            ("pyproject.toml", "protected"),
            ("setup.cfg", "protected"),
            ("tox.ini", "protected"),
            ("tests/sitecustomize.py", "protected"),
            ("tests/evil.pth", "protected"),
            (".github/workflows/ci.yml", "protected"),
            (".pitcrew/prompts/unit_test.j2", "protected"),
            ("README.md", "may only add or change test files"),
        ] {
            let findings = judge_paths(TaskKind::UnitTest, dir.path(), &[path]);
            assert_eq!(findings.len(), 1, "{path}: {findings:?}");
            assert!(findings[0].is_error());
            assert!(
                findings[0].message.contains(expected),
                "{path}: {findings:?}"
            );
            assert_eq!(findings[0].file.as_deref(), Some(path));
        }
        // Other kinds may change source, but still not the protected files.
        assert!(judge_paths(TaskKind::Fix, dir.path(), &["src/calc.py"]).is_empty());
        assert_eq!(
            judge_paths(TaskKind::Implement, dir.path(), &["conftest.py"]).len(),
            1
        );
    }

    #[test]
    fn modules_that_shadow_the_standard_library_or_test_tools_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("tests/pkg")).unwrap();
        std::fs::write(dir.path().join("tests/pkg/__init__.py"), "").unwrap();
        std::fs::create_dir_all(dir.path().join("tests/unittest")).unwrap();
        std::fs::write(dir.path().join("tests/unittest/__init__.py"), "").unwrap();
        for (path, module) in [
            ("pytest.py", "pytest"),
            ("tests/pytest.py", "pytest"),
            ("tests/json.py", "json"),
            ("tests/_pytest.py", "_pytest"),
            ("tests/pytest_asyncio.py", "pytest_asyncio"),
            ("tests/unittest/__init__.py", "unittest"),
            ("tests/unittest/test_x.py", "unittest"),
            ("tests/coverage.cpython-311-x86_64-linux-gnu.so", "coverage"),
        ] {
            let findings = judge_paths(TaskKind::Custom, dir.path(), &[path]);
            assert_eq!(findings.len(), 1, "{path}: {findings:?}");
            assert!(
                findings[0].message.contains(&format!("module `{module}`")),
                "{path}: {findings:?}"
            );
        }
        // Inside a package the name is not top-level.
        assert!(judge_paths(TaskKind::Custom, dir.path(), &["tests/pkg/json.py"]).is_empty());
        assert!(judge_paths(TaskKind::Custom, dir.path(), &["tests/test_json.py"]).is_empty());
    }

    #[test]
    fn a_file_holding_a_known_secret_is_refused_without_quoting_it() {
        let dir = tempfile::tempdir().unwrap();
        let secret = "sk-changes-test-9d1c4e7a";
        pitcrew_core::register_secret(secret);
        let file = written("tests/test_k.py", &format!("KEY = '{secret}'\n"));
        let findings = judge(
            &ChangeSettings::default(),
            TaskKind::UnitTest,
            dir.path(),
            &[Change {
                path: "tests/test_k.py",
                now: Some(&file),
                base: None,
            }],
        );
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert!(findings[0].message.contains("value of a secret"));
        assert!(!findings[0].message.contains(secret));
    }

    #[test]
    fn existing_tests_may_not_be_changed_or_removed_but_new_ones_may_be_added() {
        let dir = tempfile::tempdir().unwrap();
        let base = "import pytest\n\n\ndef test_a():\n    assert 1 + 1 == 2\n\n\n\
                    class TestB:\n    def test_b(self):\n        assert 2 * 2 == 4\n";
        let judge_new = |source: &str| {
            let now = written("tests/test_m.py", source);
            judge(
                &ChangeSettings::default(),
                TaskKind::Fix,
                dir.path(),
                &[Change {
                    path: "tests/test_m.py",
                    now: Some(&now),
                    base: Some(base),
                }],
            )
        };
        let added = format!("{base}\n\ndef test_c():\n    assert 3 == 3\n");
        assert!(judge_new(&added).is_empty());
        // Trailing whitespace is not a change.
        assert!(judge_new(&base.replace("== 2\n", "== 2   \n")).is_empty());

        let weakened = base.replace("assert 1 + 1 == 2", "assert True");
        let findings = judge_new(&weakened);
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert!(
            findings[0]
                .message
                .contains("changes the existing test `test_a`")
        );

        let skipped = base.replace("    def test_b", "    @pytest.mark.skip\n    def test_b");
        let findings = judge_new(&skipped);
        assert!(
            findings[0].message.contains("`TestB.test_b`"),
            "{findings:?}"
        );

        let removed = "def test_a():\n    assert 1 + 1 == 2\n";
        let findings = judge_new(removed);
        assert!(
            findings[0]
                .message
                .contains("removes the existing test `TestB.test_b`")
        );

        let findings = judge(
            &ChangeSettings::default(),
            TaskKind::Fix,
            dir.path(),
            &[Change {
                path: "tests/test_m.py",
                now: None,
                base: Some(base),
            }],
        );
        assert!(
            findings[0].message.contains("deleted or emptied"),
            "{findings:?}"
        );

        let lenient = ChangeSettings {
            keep_existing_tests: false,
            ..ChangeSettings::default()
        };
        let now = written("tests/test_m.py", &weakened);
        let changes = [Change {
            path: "tests/test_m.py",
            now: Some(&now),
            base: Some(base),
        }];
        assert!(judge(&lenient, TaskKind::Fix, dir.path(), &changes).is_empty());
    }
}
