//! A temporary git repository fixture.

use std::fs;
use std::path::Path;
use std::process::Command;

use tempfile::TempDir;

const USER_NAME: &str = "Pitcrew Test";
const USER_EMAIL: &str = "test@pitcrew.invalid";

/// Variables that point git at another repository; set when tests run inside a git hook, and
/// would otherwise make every command act on the outer repository.
const REDIRECTING_VARS: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_COMMON_DIR",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_NAMESPACE",
];

/// A git repository in a temporary directory, deleted on drop.
///
/// Created with `git init -b main` and a local configuration (`user.name`, `user.email`,
/// `commit.gpgsign=false`), so programs under test that run git in it commit without any
/// global setup. Commands run through [`TempRepo::git`] ignore the global and system git
/// configuration entirely.
#[derive(Debug)]
pub struct TempRepo {
    dir: TempDir,
}

impl TempRepo {
    /// An empty repository on branch `main`, without commits.
    pub fn new() -> TempRepo {
        let dir = tempfile::Builder::new()
            .prefix("pitcrew-repo-")
            .tempdir()
            .expect("cannot create a temporary directory");
        let repo = TempRepo { dir };
        repo.git(&["init", "--quiet", "-b", "main"]);
        repo.git(&["config", "user.name", USER_NAME]);
        repo.git(&["config", "user.email", USER_EMAIL]);
        repo.git(&["config", "commit.gpgsign", "false"]);
        repo
    }

    /// A repository with `files` (relative path, content) committed as "initial".
    pub fn with_files(files: &[(&str, &str)]) -> TempRepo {
        let repo = TempRepo::new();
        for (rel, content) in files {
            repo.write(rel, content);
        }
        repo.commit("initial");
        repo
    }

    /// The work tree's root.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `content` to `rel` (relative to the root), creating parent directories.
    pub fn write(&self, rel: &str, content: &str) {
        assert!(
            Path::new(rel).is_relative(),
            "TempRepo::write wants a relative path, got {rel:?}"
        );
        let path = self.path().join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .unwrap_or_else(|err| panic!("cannot create {}: {err}", parent.display()));
        }
        fs::write(&path, content)
            .unwrap_or_else(|err| panic!("cannot write {}: {err}", path.display()));
    }

    /// Stages everything (`git add -A`), commits it (even if nothing changed) and returns the
    /// new commit's sha.
    pub fn commit(&self, message: &str) -> String {
        self.git(&["add", "-A"]);
        self.git(&[
            "commit",
            "--quiet",
            "--allow-empty",
            "--no-verify",
            "-m",
            message,
        ]);
        self.git(&["rev-parse", "HEAD"])
    }

    /// Runs `git args…` in the repository and returns its trimmed stdout; panics with git's
    /// stderr if it fails.
    pub fn git(&self, args: &[&str]) -> String {
        let mut command = Command::new("git");
        command
            .args(args)
            .current_dir(self.path())
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_NAME", USER_NAME)
            .env("GIT_AUTHOR_EMAIL", USER_EMAIL)
            .env("GIT_COMMITTER_NAME", USER_NAME)
            .env("GIT_COMMITTER_EMAIL", USER_EMAIL)
            .env("GIT_TERMINAL_PROMPT", "0");
        for var in REDIRECTING_VARS {
            command.env_remove(var);
        }
        let output = command
            .output()
            .unwrap_or_else(|err| panic!("cannot run git {}: {err}", args.join(" ")));
        assert!(
            output.status.success(),
            "git {} failed in {} ({}): {}",
            args.join(" "),
            self.path().display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }
}

impl Default for TempRepo {
    fn default() -> TempRepo {
        TempRepo::new()
    }
}
