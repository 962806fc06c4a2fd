//! `worktree_unchanged`: what the checks ran must leave the worktree as it found it, so that
//! the files judged are the files committed and no later run saw a file a test made. The
//! worktree is listed before the first command and after the last one; a file created,
//! changed (content, inode or status change time: a rewrite with the old timestamp still
//! changes `ctime`) or removed in between is a finding, and the judged files are read again
//! and must have the bytes they were judged with.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use pitcrew_core::{Finding, VerifiedFile, sha256_hex};

use crate::rules::Rule;

const RULE: &str = Rule::WorktreeUnchanged.as_str();

/// What identifies one version of a file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    kind: u32,
    len: u64,
    inode: u64,
    ctime: (i64, i64),
    mtime: (i64, i64),
}

/// Every non-directory entry under a root (symlinks not followed), by relative path.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Listing(BTreeMap<String, Stamp>);

impl Listing {
    /// Lists `root`. Entries that vanish while listing are left out.
    pub(crate) fn of(root: &Path) -> Listing {
        let mut entries = BTreeMap::new();
        let mut stack = vec![(root.to_path_buf(), String::new())];
        while let Some((dir, prefix)) = stack.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let relative = if prefix.is_empty() {
                    name
                } else {
                    format!("{prefix}/{name}")
                };
                let Ok(meta) = entry.path().symlink_metadata() else {
                    continue;
                };
                if meta.is_dir() {
                    stack.push((entry.path(), relative));
                    continue;
                }
                entries.insert(
                    relative,
                    Stamp {
                        kind: meta.mode() & 0o170000,
                        len: meta.len(),
                        inode: meta.ino(),
                        ctime: (meta.ctime(), meta.ctime_nsec()),
                        mtime: (meta.mtime(), meta.mtime_nsec()),
                    },
                );
            }
        }
        Listing(entries)
    }

    /// Paths present now that were not in `before`, and, as `dir/`, every top-level
    /// directory that did not exist before (a tool's cache such as `.hypothesis/`, whose file
    /// names differ from run to run).
    pub(crate) fn created_since(&self, before: &Listing) -> Vec<String> {
        let mut created: Vec<String> = self
            .0
            .keys()
            .filter(|p| !before.0.contains_key(*p))
            .cloned()
            .collect();
        let mut new_dirs: Vec<String> = created
            .iter()
            .filter_map(|p| p.split_once('/').map(|(top, _)| format!("{top}/")))
            .filter(|dir| !before.0.keys().any(|old| old.starts_with(dir.as_str())))
            .collect();
        new_dirs.dedup();
        created.extend(new_dirs);
        created
    }
}

/// Whether `path` is one of `expected`, or lies in a directory listed there as `dir/`.
fn is_expected(path: &str, expected: &[String]) -> bool {
    expected
        .iter()
        .any(|e| e == path || (e.ends_with('/') && path.starts_with(e.as_str())))
}

/// The findings for a worktree listed as `before` and `after` the commands, whose judged
/// files were `verified`; `expected` are paths the project's own suite is known to create
/// (measured at the base commit), which are listed but not judged.
pub(crate) fn judge(
    worktree: &Path,
    before: &Listing,
    after: &Listing,
    verified: &[VerifiedFile],
    expected: &[String],
) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut tolerated = Vec::new();
    for file in verified {
        let now = std::fs::read(worktree.join(&file.path)).map(|b| sha256_hex(&b));
        if now.as_deref().ok() != Some(file.sha256.as_str()) {
            findings.push(
                Finding::error(
                    RULE,
                    format!(
                        "`{}` changed while the checks ran, so what was judged is not what would \
                         be committed; a test must never write to the files under test",
                        file.path
                    ),
                )
                .in_file(&file.path),
            );
        }
    }
    let judged = |path: &str| verified.iter().any(|v| v.path == path);
    for path in after.created_since(before) {
        if path.ends_with('/') {
            continue; // the files in it are judged one by one
        }
        if is_expected(&path, expected) {
            tolerated.push(path);
            continue;
        }
        findings.push(
            Finding::error(
                RULE,
                format!(
                    "`{path}` was created while the tests ran; tests must write only to \
                     temporary directories (pytest's tmp_path), never into the repository. It is \
                     not committed"
                ),
            )
            .in_file(&path),
        );
    }
    for (path, stamp) in &before.0 {
        if judged(path) {
            continue; // judged by content above
        }
        let what = match after.0.get(path) {
            None => "was deleted",
            Some(now) if now != stamp => "was changed",
            Some(_) => continue,
        };
        if is_expected(path, expected) {
            tolerated.push(path.clone());
            continue;
        }
        findings.push(
            Finding::error(
                RULE,
                format!(
                    "`{path}` {what} while the tests ran; tests must leave the repository's \
                     files alone"
                ),
            )
            .in_file(path),
        );
    }
    if !tolerated.is_empty() {
        findings.push(Finding::info(
            RULE,
            format!(
                "the project's own suite also writes these at the base commit, so they were not \
                 judged: {}",
                tolerated.join(", ")
            ),
        ));
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_top_level_directories_are_listed_with_their_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("src")).unwrap();
        std::fs::write(dir.path().join("src/a.py"), "").unwrap();
        let before = Listing::of(dir.path());
        std::fs::write(dir.path().join("src/out.txt"), "").unwrap();
        std::fs::create_dir_all(dir.path().join(".hypothesis/x")).unwrap();
        std::fs::write(dir.path().join(".hypothesis/x/1"), "").unwrap();
        let created = Listing::of(dir.path()).created_since(&before);
        assert_eq!(created, [".hypothesis/x/1", "src/out.txt", ".hypothesis/"]);
    }

    #[test]
    fn files_created_changed_or_removed_by_a_run_are_findings() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("src")).unwrap();
        std::fs::write(root.join("src/calc.py"), "x = 1\n").unwrap();
        std::fs::write(root.join("src/keep.py"), "y = 1\n").unwrap();
        std::fs::write(root.join("src/gone.py"), "z = 1\n").unwrap();
        std::fs::write(root.join("tests.py"), "def test(): pass\n").unwrap();
        let verified = [VerifiedFile::of("tests.py", b"def test(): pass\n")];
        let before = Listing::of(root);
        assert!(judge(root, &before, &Listing::of(root), &verified, &[]).is_empty());

        // Rewritten with identical content and timestamp: still a change (ctime).
        let meta = std::fs::metadata(root.join("src/calc.py")).unwrap();
        std::fs::write(root.join("src/calc.py"), "x = 1\n").unwrap();
        let mtime = filetime_of(&meta);
        set_mtime(&root.join("src/calc.py"), mtime);
        std::fs::remove_file(root.join("src/gone.py")).unwrap();
        std::fs::write(root.join("conftest.py"), "").unwrap();
        std::fs::write(root.join("out.log"), "").unwrap();
        std::fs::write(root.join("tests.py"), "def test(): assert 1\n").unwrap();
        std::fs::create_dir_all(root.join(".hypothesis/examples")).unwrap();
        std::fs::write(root.join(".hypothesis/examples/3f2a"), "").unwrap();
        let findings = judge(
            root,
            &before,
            &Listing::of(root),
            &verified,
            &["out.log".to_string(), ".hypothesis/".to_string()],
        );
        let text: Vec<String> = findings.iter().map(|f| f.message.clone()).collect();
        assert!(
            text.iter().any(|m| m.starts_with("`tests.py` changed")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|m| m.starts_with("`src/calc.py` was changed")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|m| m.starts_with("`src/gone.py` was deleted")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|m| m.starts_with("`conftest.py` was created")),
            "{text:?}"
        );
        assert!(
            !text.iter().any(|m| m.starts_with("`src/keep.py`")),
            "{text:?}"
        );
        assert!(!text.iter().any(|m| m.starts_with("`out.log`")), "{text:?}");
        assert!(
            !text.iter().any(|m| m.starts_with("`.hypothesis")),
            "{text:?}"
        );
        assert!(
            text.iter().any(|m| m.contains("out.log")),
            "listed as tolerated: {text:?}"
        );
        assert_eq!(findings.iter().filter(|f| f.is_error()).count(), 4);
    }

    fn filetime_of(meta: &std::fs::Metadata) -> std::time::SystemTime {
        meta.modified().unwrap()
    }

    fn set_mtime(path: &Path, time: std::time::SystemTime) {
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(time)
            .unwrap();
    }
}
