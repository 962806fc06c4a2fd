//! Where pitcrew keeps what it makes for a repository, known here only: its state inside the
//! repository (`.pitcrew/`: the queue, caches, prompt overrides) and the task worktrees
//! outside it, under the user's cache directory, so that no path relative to a worktree leads
//! into the repository.

use std::path::{Path, PathBuf};

use pitcrew_core::sha256_hex;

use crate::git::{GitError, Repo};

/// pitcrew's directory in the user's cache: `$XDG_CACHE_HOME/pitcrew` (`~/.cache` when
/// `XDG_CACHE_HOME` is not set; the system's temporary directory when neither is).
pub fn cache_root() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| Path::new(d).is_absolute())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|d| Path::new(d).is_absolute())
                .map(|home| PathBuf::from(home).join(".cache"))
        })
        .unwrap_or_else(std::env::temp_dir)
        .join("pitcrew")
}

impl Repo {
    /// pitcrew's own directory in the repository, created on first use; it ignores itself
    /// in git except for prompt overrides.
    pub fn state_dir(&self) -> Result<PathBuf, GitError> {
        let dir = self.root().join(".pitcrew");
        std::fs::create_dir_all(&dir)?;
        let ignore = dir.join(".gitignore");
        if !ignore.exists() {
            std::fs::write(
                ignore,
                "# pitcrew's queue and caches are not part of the project; its prompt\n\
                 # overrides (prompts/NAME.j2) may be.\n*\n!prompts/\n!prompts/**\n",
            )?;
        }
        Ok(dir)
    }

    /// Baselines and cached replies (`.pitcrew/cache`), inside the state directory, which
    /// is created (ignoring itself in git) if need be.
    pub fn cache_dir(&self) -> Result<PathBuf, GitError> {
        Ok(self.state_dir()?.join("cache"))
    }

    /// Prompt template overrides (`.pitcrew/prompts/NAME.j2`).
    pub fn prompts_dir(&self) -> PathBuf {
        self.root().join(".pitcrew").join("prompts")
    }

    /// Where the worktrees of this repository's tasks go:
    /// `$XDG_CACHE_HOME/pitcrew/worktrees/<name>-<hash of the root>` (`~/.cache` when
    /// `XDG_CACHE_HOME` is not set; the system's temporary directory when neither is).
    pub fn worktrees_dir(&self) -> PathBuf {
        let name = self
            .root()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "repository".into());
        let hash = sha256_hex(self.root().as_os_str().as_encoded_bytes());
        cache_root()
            .join("worktrees")
            .join(format!("{name}-{}", &hash[..12]))
    }

    /// The worktrees left here by versions of pitcrew that kept them in the repository.
    pub fn legacy_worktrees_dir(&self) -> PathBuf {
        self.root().join(".pitcrew").join("worktrees")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worktrees_live_outside_the_repository_one_folder_per_repository() {
        let a = Repo::at("/src/app");
        let b = Repo::at("/other/app");
        let dir = a.worktrees_dir();
        assert!(!dir.starts_with(a.root()), "{}", dir.display());
        assert!(dir.to_string_lossy().contains("pitcrew/worktrees/app-"));
        assert_ne!(dir, b.worktrees_dir());
        assert_eq!(dir, Repo::at("/src/app").worktrees_dir());
    }
}
