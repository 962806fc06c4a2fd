//! Deciding whether a path a model asked for may be written: only relative paths that stay
//! inside the task's worktree, never into `.git`, never through a symlink that leads out, and
//! never a name that a tool could read as a pattern (git pathspec magic, shell globs).

use std::path::{Component, Path, PathBuf};

/// Why a path was refused; the message is shown to the user and to the model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("refused to write `{path}`: {reason}")]
pub struct RefusedPath {
    pub path: String,
    pub reason: String,
}

fn refuse(path: &str, reason: impl Into<String>) -> RefusedPath {
    RefusedPath {
        path: path.to_string(),
        reason: reason.into(),
    }
}

/// Characters a file name must not contain: glob characters for git pathspecs and shells.
const GLOB_CHARACTERS: &str = "*?[]";

/// Checks the text of `path` and returns it normalised (`./a//b` → `a/b`).
pub fn normalize(path: &str) -> Result<String, RefusedPath> {
    if path.trim().is_empty() {
        return Err(refuse(path, "the path is empty"));
    }
    if path.chars().any(char::is_control) {
        return Err(refuse(path, "the path contains control characters"));
    }
    if path.contains('\\') {
        return Err(refuse(
            path,
            "the path contains a backslash; use `/` between directories",
        ));
    }
    if let Some(c) = path.chars().find(|c| GLOB_CHARACTERS.contains(*c)) {
        return Err(refuse(
            path,
            format!(
                "the path contains `{c}`, which git and shells read as a pattern; name the file \
                 with letters, digits, `.`, `_`, `-` and `/`"
            ),
        ));
    }
    if path.starts_with('/') || path.starts_with('~') || looks_like_a_drive(path) {
        return Err(refuse(
            path,
            "the path is absolute; give it relative to the repository root",
        ));
    }
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(refuse(path, "the path contains `..`")),
            p if p.eq_ignore_ascii_case(".git") => {
                return Err(refuse(path, "the path points into `.git`"));
            }
            p if p.starts_with(':') => {
                return Err(refuse(
                    path,
                    "a path component starts with `:`, which git reads as pathspec magic",
                ));
            }
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return Err(refuse(path, "the path names no file"));
    }
    let normal = parts.join("/");
    // Checked again once `./` is gone, so that checking the result gives the same answer.
    if normal.starts_with('~') || looks_like_a_drive(&normal) {
        return Err(refuse(
            path,
            "the path is absolute; give it relative to the repository root",
        ));
    }
    Ok(normal)
}

/// `C:…`: a Windows drive, which a model may write even on Linux.
fn looks_like_a_drive(path: &str) -> bool {
    path.as_bytes().get(1) == Some(&b':')
}

/// Checks `path` and resolves it inside `root`, refusing any path that would leave `root`
/// through a symlink, or that names an existing symlink or directory.
pub fn resolve_inside(root: &Path, path: &str) -> Result<PathBuf, RefusedPath> {
    let relative = normalize(path)?;
    let canonical_root = root
        .canonicalize()
        .map_err(|e| refuse(path, format!("the worktree cannot be resolved: {e}")))?;
    let mut current = canonical_root.clone();
    let components: Vec<Component> = Path::new(&relative).components().collect();
    for (i, component) in components.iter().enumerate() {
        current.push(component);
        let Ok(meta) = std::fs::symlink_metadata(&current) else {
            // Nothing exists from here on; it will be created inside `root`.
            break;
        };
        let last = i + 1 == components.len();
        if meta.file_type().is_symlink() {
            if last {
                return Err(refuse(path, "the path is a symlink"));
            }
            let target = current
                .canonicalize()
                .map_err(|_| refuse(path, "the path goes through a dangling symlink"))?;
            if !target.starts_with(&canonical_root) {
                return Err(refuse(
                    path,
                    "the path resolves outside the worktree through a symlink",
                ));
            }
            // A symlink the repository holds must not lead the write into `.git` either.
            let into_git = (target.strip_prefix(&canonical_root).ok())
                .and_then(|inside| inside.components().next())
                .is_some_and(|first| first.as_os_str().eq_ignore_ascii_case(".git"));
            if into_git {
                return Err(refuse(
                    path,
                    "the path resolves into `.git` through a symlink",
                ));
            }
            current = target;
        } else if last && meta.is_dir() {
            return Err(refuse(path, "the path is a directory"));
        }
    }
    Ok(canonical_root.join(relative))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_paths_that_leave_or_reach_into_git() {
        for (path, reason) in [
            ("../outside.py", "`..`"),
            ("tests/../../x.py", "`..`"),
            ("/etc/passwd", "absolute"),
            ("~/x.py", "absolute"),
            ("C:/x.py", "absolute"),
            (".git/hooks/pre-commit", "`.git`"),
            ("sub/.GIT/config", "`.git`"),
            ("a\\b.py", "backslash"),
            ("", "empty"),
            ("./", "names no file"),
            ("a\u{0}b", "control"),
            ("*", "pattern"),
            ("tests/test_[ab].py", "pattern"),
            ("tests/test_?.py", "pattern"),
            (":(top)src/calc.py", "pathspec magic"),
            ("tests/:!x.py", "pathspec magic"),
        ] {
            let err = normalize(path).unwrap_err();
            assert!(err.reason.contains(reason), "{path}: {err}");
        }
        assert_eq!(normalize("./tests//test_a.py").unwrap(), "tests/test_a.py");
        // Found by the `reply` fuzz target: `./n:.` passed, and its normal form did not.
        assert!(normalize("./n:.").is_err());
        assert!(normalize(".//~x/a.py").is_err());
    }

    #[test]
    fn refuses_symlinks_that_lead_out_of_the_root() {
        let outside = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("escape")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("f.py"), root.path().join("link.py"))
            .unwrap();
        std::fs::create_dir(root.path().join("inner")).unwrap();
        std::os::unix::fs::symlink(root.path().join("inner"), root.path().join("alias")).unwrap();

        let err = resolve_inside(root.path(), "escape/x.py").unwrap_err();
        assert!(err.reason.contains("outside the worktree"), "{err}");
        let err = resolve_inside(root.path(), "link.py").unwrap_err();
        assert!(err.reason.contains("symlink"), "{err}");
        let err = resolve_inside(root.path(), "inner").unwrap_err();
        assert!(err.reason.contains("directory"), "{err}");
        // A symlink that stays inside is fine.
        let ok = resolve_inside(root.path(), "alias/x.py").unwrap();
        assert!(ok.starts_with(root.path().canonicalize().unwrap()));
        let ok = resolve_inside(root.path(), "new/dir/x.py").unwrap();
        assert_eq!(ok, root.path().canonicalize().unwrap().join("new/dir/x.py"));
    }

    #[test]
    fn refuses_a_symlink_of_the_repository_that_leads_into_git() {
        // Found by the `reply` fuzz target: `git -> .git` let `git/config` be written.
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join(".git/hooks")).unwrap();
        std::os::unix::fs::symlink(".git", root.path().join("git")).unwrap();
        std::os::unix::fs::symlink(".git/hooks", root.path().join("hooks")).unwrap();
        for path in ["git/config", "hooks/pre-commit"] {
            let err = resolve_inside(root.path(), path).unwrap_err();
            assert!(err.reason.contains("into `.git`"), "{path}: {err}");
        }
    }
}
