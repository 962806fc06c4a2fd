//! The git CLI, run with timeouts: repository discovery, worktrees for tasks, commits,
//! patches and result branches. Hooks, fsmonitor commands and the user's signing settings
//! never run in pitcrew's own git calls, GIT_* variables of the caller cannot redirect them,
//! and paths are always literal (`--literal-pathspecs`).
//!
//! A worktree is where generated code runs, so git never trusts anything in it: every command
//! about a worktree names its private git directory explicitly (a `.git` file rewritten by a
//! test cannot point git at a directory of the test's making), and results are committed with
//! plumbing from bytes that were checked against what validation saw, not with `git add`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use pitcrew_core::{VerifiedFile, sha256_hex};
use pitcrew_index::TreeFile;
use pitcrew_sandbox::{CommandSpec, EnvPolicy};

use crate::objects::{ObjectFormat, Tree, TreeEntry, parse_ls_tree};

const GIT_TIMEOUT: Duration = Duration::from_secs(120);
/// Patches are stored whole; a bigger one is an error, never a truncated patch.
const MAX_PATCH_BYTES: usize = 32 * 1024 * 1024;
/// A tree listing of ~500 000 files.
const MAX_TREE_LISTING_BYTES: usize = 64 * 1024 * 1024;
/// Variables that would make git act on another repository or index than the one named.
const GIT_REDIRECTS: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_CEILING_DIRECTORIES",
];

/// Adding and removing worktrees of one repository at the same time races inside git (the
/// shared `.git/worktrees` directory comes and goes); this process does them one at a time.
static WORKTREE_CHANGES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("`git {args}` in {dir} failed ({status}): {detail}")]
    Failed {
        args: String,
        dir: PathBuf,
        status: String,
        detail: String,
    },
    #[error("cannot run git: {0}")]
    Spawn(#[from] pitcrew_sandbox::SandboxError),
    #[error("{0} is not inside a git repository")]
    NotARepository(PathBuf),
    #[error("`{rev}` is not a commit in {repo}")]
    UnknownRevision { rev: String, repo: PathBuf },
    #[error("the patch of commit {commit} exceeds {MAX_PATCH_BYTES} bytes")]
    PatchTooLarge { commit: String },
    /// A file to commit is not what validation verified; nothing was committed.
    #[error("refusing to commit `{path}`: {reason}")]
    Unverified { path: String, reason: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Runs `git args…` in `dir`; returns stdout.
async fn git(dir: &Path, args: &[&str], output_limit: usize) -> Result<String, GitError> {
    git_with_input(dir, args, output_limit, None).await
}

/// [`git`] with `input` on stdin (a patch for `git apply`).
async fn git_with_input(
    dir: &Path,
    args: &[&str],
    output_limit: usize,
    input: Option<&str>,
) -> Result<String, GitError> {
    let mut spec = CommandSpec::new("git", dir)
        .args([
            "--literal-pathspecs",
            "-c",
            "core.hooksPath=/dev/null",
            "-c",
            "core.fsmonitor=false",
            "-c",
            "commit.gpgsign=false",
            "-c",
            "core.quotePath=false",
        ])
        .args(args.iter().copied())
        .env_policy(EnvPolicy::InheritScrubbed {
            remove: GIT_REDIRECTS.iter().map(|s| s.to_string()).collect(),
        })
        .timeout(GIT_TIMEOUT)
        .output_limit(output_limit);
    if let Some(input) = input {
        spec = spec.stdin(input.as_bytes().to_vec());
    }
    let out = pitcrew_sandbox::run(spec).await?;
    if !out.success() {
        return Err(GitError::Failed {
            args: args.join(" "),
            dir: dir.to_path_buf(),
            status: out.describe_status(),
            detail: out.combined_tail(20),
        });
    }
    if out.stdout_truncated {
        return Err(GitError::Failed {
            args: args.join(" "),
            dir: dir.to_path_buf(),
            status: "output too large".into(),
            detail: format!("more than {output_limit} bytes"),
        });
    }
    Ok(out.stdout)
}

/// Where [`Repo::checkout_worktree`] records the private git directory of the worktree at
/// `dir`: beside it, out of reach of what runs inside it.
pub(crate) fn git_dir_record(dir: &Path) -> PathBuf {
    let mut name = dir.as_os_str().to_owned();
    name.push(".gitdir");
    PathBuf::from(name)
}

async fn git_line(dir: &Path, args: &[&str]) -> Result<String, GitError> {
    Ok(git(dir, args, 1 << 20).await?.trim().to_string())
}

/// `url` without a user name or password (`https://user:token@host/x` → `https://host/x`):
/// what is stored and shown of a remote never carries a credential.
pub fn without_credentials(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let host_start = rest
                .find('/')
                .map_or(rest, |slash| &rest[..slash])
                .rfind('@')
                .map_or(0, |at| at + 1);
            format!("{scheme}://{}", &rest[host_start..])
        }
        // scp-like `git@host:path` names a user, not a secret.
        None => url.to_string(),
    }
}

/// A repository pitcrew works on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repo {
    root: PathBuf,
}

impl Repo {
    /// The repository containing `dir`.
    pub async fn discover(dir: &Path) -> Result<Repo, GitError> {
        match git_line(dir, &["rev-parse", "--show-toplevel"]).await {
            Ok(top) => Ok(Repo {
                root: PathBuf::from(top),
            }),
            Err(GitError::Failed { .. }) => Err(GitError::NotARepository(dir.to_path_buf())),
            Err(e) => Err(e),
        }
    }

    /// A repository at a known root (from a stored task).
    pub fn at(root: impl Into<PathBuf>) -> Repo {
        Repo { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The full id of the commit `rev` names.
    pub async fn resolve_commit(&self, rev: &str) -> Result<String, GitError> {
        let spec = format!("{rev}^{{commit}}");
        git_line(&self.root, &["rev-parse", "--verify", "--quiet", &spec])
            .await
            .map_err(|_| GitError::UnknownRevision {
                rev: rev.to_string(),
                repo: self.root.clone(),
            })
    }

    /// Where the repository can be cloned from: its `origin` remote's URL (else its only
    /// remote's), without credentials; `None` without a remote.
    pub async fn remote_url(&self) -> Result<Option<String>, GitError> {
        let remotes = git_line(&self.root, &["remote"]).await?;
        let remotes: Vec<&str> = remotes.lines().collect();
        let remote = match remotes[..] {
            [] => return Ok(None),
            [only] => only,
            _ if remotes.contains(&"origin") => "origin",
            _ => return Ok(None),
        };
        let url = git_line(&self.root, &["remote", "get-url", remote]).await?;
        Ok(Some(without_credentials(&url)))
    }

    /// Clones `url` into `dir`, which must not exist yet.
    pub async fn clone_from(url: &str, dir: &Path) -> Result<Repo, GitError> {
        let parent = dir.parent().unwrap_or(dir);
        std::fs::create_dir_all(parent)?;
        let dir_text = dir.to_string_lossy();
        git(parent, &["clone", "--quiet", "--", url, &dir_text], 1 << 20).await?;
        Ok(Repo::at(dir))
    }

    /// Fetches every branch and tag of `url` (new commits a task may start from).
    pub async fn fetch_from(&self, url: &str) -> Result<(), GitError> {
        git(
            &self.root,
            &[
                "fetch",
                "--quiet",
                "--tags",
                "--",
                url,
                "+refs/heads/*:refs/remotes/origin/*",
            ],
            1 << 20,
        )
        .await?;
        Ok(())
    }

    /// Whether `path` exists in `commit`.
    pub async fn has_path(&self, commit: &str, path: &str) -> Result<bool, GitError> {
        let object = format!("{commit}:{path}");
        match git(&self.root, &["cat-file", "-e", &object], 1024).await {
            Ok(_) => Ok(true),
            Err(GitError::Failed { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The regular files of `commit`'s tree with their blob ids (symbolic links and
    /// submodules left out), in one `git ls-tree`.
    pub async fn tree_files(&self, commit: &str) -> Result<Vec<TreeFile>, GitError> {
        let listing = git(
            &self.root,
            &["ls-tree", "-r", "-z", "--full-tree", commit],
            MAX_TREE_LISTING_BYTES,
        )
        .await?;
        // Each entry: `<mode> blob <id>\t<path>`, NUL-terminated; paths are not quoted.
        Ok(listing
            .split('\0')
            .filter_map(|entry| {
                let (meta, path) = entry.split_once('\t')?;
                let mut fields = meta.split(' ');
                let mode = fields.next()?;
                let blob = fields.nth(1)?;
                matches!(mode, "100644" | "100755").then(|| TreeFile {
                    path: path.to_string(),
                    blob: blob.to_string(),
                })
            })
            .collect())
    }

    /// Checks out `commit` into a new detached worktree at `dir`.
    pub async fn add_worktree(&self, dir: &Path, commit: &str) -> Result<Worktree, GitError> {
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let dir_text = dir.to_string_lossy();
        let mut tries = 0;
        loop {
            let added = {
                let _serialised = WORKTREE_CHANGES.lock().await;
                git_line(
                    &self.root,
                    &["worktree", "add", "--detach", "--quiet", &dir_text, commit],
                )
                .await
            };
            match added {
                Ok(_) => break,
                // Git deletes `.git/worktrees` when its last entry goes; another process doing
                // that while this one adds makes `add` fail once. Such races pass on a retry.
                Err(GitError::Failed { .. }) if tries < 2 && !dir.join(".git").exists() => {
                    tries += 1;
                    if dir.exists() {
                        std::fs::remove_dir_all(dir)?;
                    }
                    tokio::time::sleep(Duration::from_millis(50 * tries)).await;
                }
                Err(e) => return Err(e),
            }
        }
        // Read now, while only git has written the `.git` file; never again afterwards.
        let git_dir = git_line(dir, &["rev-parse", "--absolute-git-dir"]).await?;
        Ok(Worktree {
            repo: self.clone(),
            path: dir.to_path_buf(),
            git_dir: PathBuf::from(git_dir),
            base: commit.to_string(),
        })
    }

    /// A worktree at `dir` checked out at `commit`: the one already there put back to
    /// `commit` when it is a worktree this repository made (only the files that differ are
    /// written, and everything untracked is removed), otherwise a new one.
    pub async fn checkout_worktree(&self, dir: &Path, commit: &str) -> Result<Worktree, GitError> {
        if let Some(worktree) = self.reusable_worktree(dir, commit) {
            match worktree.reset().await {
                Ok(()) => return Ok(worktree),
                Err(e) => tracing::debug!(
                    "worktree {} cannot be reset ({e}); making a new one",
                    dir.display()
                ),
            }
        }
        let record = git_dir_record(dir);
        // Also when `dir` is gone: git may still have it registered, and would refuse to add it.
        self.remove_worktree(dir).await?;
        if record.exists() {
            std::fs::remove_file(&record)?;
        }
        let worktree = self.add_worktree(dir, commit).await?;
        std::fs::write(&record, worktree.git_dir.as_os_str().as_encoded_bytes())?;
        // A new checkout's index holds its commit: the next reset to it can restore.
        IndexRecord::written_now(commit).write(&worktree.index_base_record())?;
        Ok(worktree)
    }

    /// The worktree at `dir` as [`Repo::checkout_worktree`] recorded it, its `.git` file
    /// rewritten (whatever ran in it may have changed that file, never the record or git's
    /// own directory, which are outside it); `None` when there is no such worktree.
    fn reusable_worktree(&self, dir: &Path, commit: &str) -> Option<Worktree> {
        let git_dir = PathBuf::from(std::fs::read_to_string(git_dir_record(dir)).ok()?);
        // Git's own note of where the worktree is must name this one.
        let points_back = std::fs::read_to_string(git_dir.join("gitdir")).ok()?;
        if Path::new(points_back.trim()) != dir.join(".git") || !dir.is_dir() {
            return None;
        }
        let dot_git = dir.join(".git");
        let removed = match std::fs::symlink_metadata(&dot_git) {
            Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(&dot_git),
            Ok(_) => std::fs::remove_file(&dot_git),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        };
        removed.ok()?;
        std::fs::write(&dot_git, format!("gitdir: {}\n", git_dir.display())).ok()?;
        Some(Worktree {
            repo: self.clone(),
            path: dir.to_path_buf(),
            git_dir,
            base: commit.to_string(),
        })
    }

    /// Removes a worktree directory (whether or not git still knows it) and forgets it.
    pub async fn remove_worktree(&self, dir: &Path) -> Result<(), GitError> {
        let _serialised = WORKTREE_CHANGES.lock().await;
        let dir_text = dir.to_string_lossy();
        if git_line(&self.root, &["worktree", "remove", "--force", &dir_text])
            .await
            .is_ok()
        {
            return Ok(());
        }
        // Git no longer knows it (or never did): delete it and forget stale entries.
        if dir.exists() {
            std::fs::remove_dir_all(dir)?;
        }
        git_line(&self.root, &["worktree", "prune"]).await?;
        Ok(())
    }

    /// Creates `refs/heads/<branch>` at `commit`; fails if the branch already exists.
    pub async fn create_branch(&self, branch: &str, commit: &str) -> Result<(), GitError> {
        let reference = format!("refs/heads/{branch}");
        // The empty old value makes update-ref refuse to overwrite an existing branch.
        git_line(&self.root, &["update-ref", &reference, commit, ""]).await?;
        Ok(())
    }

    /// Points `refs/heads/<branch>` at `commit`, whatever it pointed at before.
    pub async fn set_branch(&self, branch: &str, commit: &str) -> Result<(), GitError> {
        let reference = format!("refs/heads/{branch}");
        git_line(&self.root, &["update-ref", &reference, commit]).await?;
        Ok(())
    }

    /// Moves `branch` from `from` to `to`, or deletes it when `to` is `None` — only while it
    /// still points at `from`, so a branch someone else moved since is left alone. Returns
    /// whether it was changed.
    pub async fn move_branch_from(
        &self,
        branch: &str,
        from: &str,
        to: Option<&str>,
    ) -> Result<bool, GitError> {
        let reference = format!("refs/heads/{branch}");
        let args: Vec<&str> = match to {
            Some(to) => vec!["update-ref", &reference, to, from],
            None => vec!["update-ref", "-d", &reference, from],
        };
        match git_line(&self.root, &args).await {
            Ok(_) => Ok(true),
            // update-ref refuses when the old value does not match (or the branch is gone).
            Err(GitError::Failed { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The names of the branches starting with `prefix` (e.g. `pitcrew/`).
    pub async fn branches_with_prefix(&self, prefix: &str) -> Result<Vec<String>, GitError> {
        let pattern = format!("refs/heads/{prefix}");
        let listed = git(
            &self.root,
            &["for-each-ref", "--format=%(refname:lstrip=2)", &pattern],
            MAX_PATCH_BYTES,
        )
        .await?;
        Ok(listed.lines().map(str::to_string).collect())
    }

    /// The commit a branch points at, if it exists.
    pub async fn branch_commit(&self, branch: &str) -> Result<Option<String>, GitError> {
        let reference = format!("refs/heads/{branch}");
        match git_line(
            &self.root,
            &["rev-parse", "--verify", "--quiet", &reference],
        )
        .await
        {
            Ok(sha) => Ok(Some(sha)),
            Err(GitError::Failed { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `git diff --binary from to`: a patch that `git apply` accepts on `from`.
    pub async fn diff(&self, from: &str, to: &str) -> Result<String, GitError> {
        git(
            &self.root,
            &["diff", "--binary", "--no-color", "--no-ext-diff", from, to],
            MAX_PATCH_BYTES,
        )
        .await
        .map_err(|e| match e {
            GitError::Failed { status, .. } if status == "output too large" => {
                GitError::PatchTooLarge {
                    commit: to.to_string(),
                }
            }
            other => other,
        })
    }
}

/// What applying a result onto the user's branch did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Committed on the current branch.
    Committed { commit: String },
    /// The branch already contains these changes.
    AlreadyPresent,
    /// The patch conflicts with the branch in these files; nothing was changed.
    Conflict {
        files: Vec<String>,
        /// Those of `files` that are untracked files in the working tree where the patch
        /// writes (git never overwrites them).
        untracked: Vec<String>,
        detail: String,
    },
}

/// Where `apply` records which task it applied as which commit: `<prefix><task id>`.
const APPLIED_REFS: &str = "refs/pitcrew/applied/";

impl Repo {
    /// The current branch's name, or `None` when HEAD is detached.
    pub async fn current_branch(&self) -> Result<Option<String>, GitError> {
        match git_line(&self.root, &["symbolic-ref", "--quiet", "--short", "HEAD"]).await {
            Ok(name) => Ok(Some(name)),
            Err(GitError::Failed { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Tracked paths whose content in the working tree differs from HEAD (staged or not,
    /// deleted included).
    pub async fn modified_paths(&self) -> Result<Vec<String>, GitError> {
        let listed = git(
            &self.root,
            &["diff", "--name-only", "-z", "--no-renames", "HEAD"],
            MAX_PATCH_BYTES,
        )
        .await?;
        Ok(listed
            .split('\0')
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect())
    }

    /// Whether tracked files have no uncommitted changes (untracked files do not count).
    pub async fn is_clean(&self) -> Result<bool, GitError> {
        Ok(git_line(
            &self.root,
            &["status", "--porcelain", "--untracked-files=no"],
        )
        .await?
        .is_empty())
    }

    /// Applies `patch` to the checked-out branch with a 3-way merge and commits it with
    /// `message`. Expects a clean tree ([`Repo::is_clean`]); on conflict the tree is put back
    /// as it was.
    pub async fn apply_and_commit(&self, patch: &str, message: &str) -> Result<Applied, GitError> {
        let limit = 1 << 20;
        if git_with_input(
            &self.root,
            &["apply", "--check", "--reverse", "-"],
            limit,
            Some(patch),
        )
        .await
        .is_ok()
        {
            return Ok(Applied::AlreadyPresent);
        }
        if let Err(e) = git_with_input(
            &self.root,
            &["apply", "--3way", "--index", "-"],
            limit,
            Some(patch),
        )
        .await
        {
            let conflicted = git_line(&self.root, &["diff", "--name-only", "--diff-filter=U"])
                .await
                .unwrap_or_default();
            // Undo the partial merge: the tree was clean before.
            git_line(&self.root, &["reset", "--hard", "--quiet", "HEAD"]).await?;
            let detail = match e {
                GitError::Failed { detail, .. } => detail,
                other => other.to_string(),
            };
            let mut files: Vec<String> = conflicted.lines().map(str::to_string).collect();
            let touched = self.patch_paths(patch).await.unwrap_or_default();
            let untracked = self.untracked_among(&touched).await.unwrap_or_default();
            for path in &untracked {
                if !files.contains(path) {
                    files.push(path.clone());
                }
            }
            if files.is_empty() {
                // Not a merge conflict and nothing in the way: the patch did not fit these.
                files = touched;
            }
            return Ok(Applied::Conflict {
                files,
                untracked,
                detail,
            });
        }
        git_line(
            &self.root,
            &["commit", "--quiet", "--no-verify", "-m", message],
        )
        .await?;
        Ok(Applied::Committed {
            commit: git_line(&self.root, &["rev-parse", "HEAD"]).await?,
        })
    }
}

impl Repo {
    /// The paths `patch` writes (the new path of a rename).
    async fn patch_paths(&self, patch: &str) -> Result<Vec<String>, GitError> {
        let listed = git_with_input(
            &self.root,
            &["apply", "--numstat", "-z", "-"],
            1 << 20,
            Some(patch),
        )
        .await?;
        // `added\tdeleted\tpath\0`, or for a rename `added\tdeleted\t\0old\0new\0`.
        let mut paths = Vec::new();
        let mut fields = listed.split('\0');
        while let Some(field) = fields.next() {
            match field.splitn(3, '\t').nth(2) {
                Some("") => {
                    let _old = fields.next();
                    paths.extend(fields.next().map(str::to_string));
                }
                Some(path) => paths.push(path.to_string()),
                None => {}
            }
        }
        Ok(paths)
    }

    /// Those of `paths` that exist in the working tree but are not tracked.
    async fn untracked_among(&self, paths: &[String]) -> Result<Vec<String>, GitError> {
        let present: Vec<&str> = paths
            .iter()
            .filter(|p| std::fs::symlink_metadata(self.root.join(p)).is_ok())
            .map(String::as_str)
            .collect();
        if present.is_empty() {
            return Ok(Vec::new());
        }
        let mut args = vec!["ls-files", "-z", "--"];
        args.extend(&present);
        let tracked = git(&self.root, &args, MAX_PATCH_BYTES).await?;
        let tracked: Vec<&str> = tracked.split('\0').collect();
        Ok(present
            .into_iter()
            .filter(|p| !tracked.contains(p))
            .map(str::to_string)
            .collect())
    }

    /// The full message of `commit`; `None` when the repository does not have it.
    pub async fn commit_message(&self, commit: &str) -> Result<Option<String>, GitError> {
        let object = format!("{commit}^{{commit}}");
        if git(&self.root, &["cat-file", "-e", &object], 1024)
            .await
            .is_err()
        {
            return Ok(None);
        }
        // The raw object (plumbing: no log configuration applies): headers, a blank line,
        // the message.
        let raw = git(
            &self.root,
            &["cat-file", "commit", &object],
            MAX_PATCH_BYTES,
        )
        .await?;
        let message = raw.split_once("\n\n").map_or("", |(_, m)| m);
        Ok(Some(message.trim_end().to_string() + "\n"))
    }

    /// Records that the result of task `task` was applied as `commit`
    /// (`refs/pitcrew/applied/<task>`).
    pub async fn mark_applied(&self, task: &str, commit: &str) -> Result<(), GitError> {
        let reference = format!("{APPLIED_REFS}{task}");
        git_line(&self.root, &["update-ref", &reference, commit]).await?;
        Ok(())
    }

    /// Every task whose result `apply` committed here, with the commit: one `for-each-ref`.
    pub async fn applied(&self) -> Result<BTreeMap<String, String>, GitError> {
        let listed = git(
            &self.root,
            &[
                "for-each-ref",
                "--format=%(objectname) %(refname:lstrip=3)",
                APPLIED_REFS,
            ],
            MAX_PATCH_BYTES,
        )
        .await?;
        Ok(listed
            .lines()
            .filter_map(|line| line.split_once(' '))
            .map(|(commit, task)| (task.to_string(), commit.to_string()))
            .collect())
    }
}

/// The files a worktree holds that differ from its base commit, relative to its root.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorktreeChanges {
    /// Added or modified.
    pub changed: Vec<String>,
    pub deleted: Vec<String>,
}

/// A task's private checkout.
#[derive(Debug, Clone)]
pub struct Worktree {
    repo: Repo,
    path: PathBuf,
    /// Its private directory under the repository's `.git/worktrees`, out of reach of
    /// anything that runs in the worktree.
    git_dir: PathBuf,
    base: String,
}

impl Worktree {
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn repo(&self) -> &Repo {
        &self.repo
    }

    /// `git args…` about this worktree, naming its git directory and work tree explicitly so
    /// that nothing written into the worktree can redirect git.
    async fn git(&self, args: &[&str]) -> Result<String, GitError> {
        self.git_input(args, None).await
    }

    /// [`Worktree::git`] with `input` on stdin.
    async fn git_input(&self, args: &[&str], input: Option<&str>) -> Result<String, GitError> {
        let git_dir = format!("--git-dir={}", self.git_dir.display());
        let work_tree = format!("--work-tree={}", self.path.display());
        let mut full = vec![git_dir.as_str(), work_tree.as_str()];
        full.extend_from_slice(args);
        git_with_input(&self.path, &full, MAX_PATCH_BYTES, input).await
    }

    /// Puts the worktree back to its base commit: tracked files restored, everything else
    /// (earlier iterations' files, caches, reports, nested repositories) removed.
    ///
    /// When the private index is known to hold the base commit already (the last reset was
    /// to it), only what differs from the index is put back: no tree is read and the index
    /// is not rewritten, which on a large repository is most of a `reset --hard`.
    pub async fn reset(&self) -> Result<(), GitError> {
        let record = self.index_base_record();
        let recorded = IndexRecord::read(&record);
        if recorded.as_ref().is_some_and(|r| r.base == self.base) {
            match self.restore_from_index(&record, recorded.as_ref()).await {
                Ok(()) => return Ok(()),
                Err(e) => tracing::debug!(
                    "worktree {} cannot be restored from its index ({e}); resetting it",
                    self.path.display()
                ),
            }
        }
        forget(&record)?;
        self.git(&[
            "-c",
            "core.trustctime=true",
            "-c",
            "core.checkStat=default",
            "reset",
            "--hard",
            "--quiet",
            &self.base,
        ])
        .await?;
        self.git(&["clean", "-ffdxq"]).await?;
        IndexRecord::written_now(&self.base).write(&record)?;
        Ok(())
    }

    /// Where the worktree's private git directory records the commit its index holds, while
    /// nothing but a reset has written the index since.
    fn index_base_record(&self) -> PathBuf {
        self.git_dir.join("pitcrew-index-base")
    }

    /// Removes everything untracked (ignored files and nested repositories too), then
    /// writes again from the index every tracked file that was changed, removed or replaced:
    /// one listing of the worktree instead of a `clean` and a `reset`.
    async fn restore_from_index(
        &self,
        record_path: &Path,
        record: Option<&IndexRecord>,
    ) -> Result<(), GitError> {
        // Git re-reads, at every look, each file written in the same second as its index
        // (it could have changed unseen): after a checkout that is every file, until the
        // index is written again in a later second than the checkout's. Once, then.
        if let Some(record) = record.filter(|r| !r.refreshed && r.written < unix_secs()) {
            self.git(&["update-index", "-q", "--refresh", "--force-write-index"])
                .await?;
            IndexRecord {
                refreshed: true,
                ..record.clone()
            }
            .write(record_path)?;
        }
        // Full stat checks, as in a full reset: a file changed in place with its size and
        // mtime put back still differs (its ctime cannot be set back). No exclude rules:
        // ignored files are listed with the rest of what is untracked.
        let listing = self
            .git(&[
                "-c",
                "core.trustctime=true",
                "-c",
                "core.checkStat=default",
                "ls-files",
                "-z",
                "-t",
                "--others",
                "--directory",
                "--modified",
                "--deleted",
            ])
            .await?;
        let mut differing = BTreeSet::new();
        for entry in listing.split_terminator('\0') {
            let (tag, path) = entry.split_at_checked(2).unwrap_or(("", entry));
            if tag == "? " {
                // Untracked first: a directory or symlink standing where a tracked file was
                // goes, and the file is then written again. Never followed: a symlink is
                // removed itself, a directory with what is in it.
                let full = self.path.join(path.trim_end_matches('/'));
                let removed = match std::fs::symlink_metadata(&full) {
                    Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(&full),
                    Ok(_) => std::fs::remove_file(&full),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(e),
                };
                removed?;
            } else {
                // A removed file is listed as modified too.
                differing.insert(path);
            }
        }
        if !differing.is_empty() {
            let paths: String = differing.iter().map(|p| format!("{p}\0")).collect();
            self.git_input(
                &["checkout-index", "--force", "--index", "-z", "--stdin"],
                Some(&paths),
            )
            .await?;
        }
        Ok(())
    }

    /// What a program working in the worktree changed since its base commit: files added
    /// (untracked ones included, ignored ones not), modified, and deleted. Read through the
    /// worktree's private git directory, so nothing written into the worktree can redirect
    /// git or answer for it.
    pub async fn changes(&self) -> Result<WorktreeChanges, GitError> {
        let listing = self
            .git(&[
                "-c",
                "core.quotePath=false",
                // As in `reset`: a file changed in place with its size and mtime put back
                // is still seen (ctime cannot be set back).
                "-c",
                "core.trustctime=true",
                "-c",
                "core.checkStat=default",
                "status",
                "--porcelain=v1",
                "-z",
                "--untracked-files=all",
                "--no-renames",
            ])
            .await?;
        let mut changes = WorktreeChanges::default();
        for entry in listing.split('\0').filter(|e| e.len() > 3) {
            let (status, path) = entry.split_at(3);
            let path = path.to_string();
            if status.contains('D') {
                changes.deleted.push(path);
            } else {
                changes.changed.push(path);
            }
        }
        changes.changed.sort();
        changes.deleted.sort();
        Ok(changes)
    }

    /// Commits exactly `files` on top of the base commit, with the bytes validation saw: each
    /// file is read once and checked against its SHA-256, its blob id is computed from those
    /// bytes, and git must store the same id (no filter applies). Anything else in the
    /// worktree (caches, reports, files a test run left) stays out. `None` when the files
    /// match the base.
    ///
    /// The new trees are made from the base commit's trees along the files' paths only
    /// (`mktree`), never in an index: the cost is what changed, not what the repository
    /// holds, and the worktree's index keeps holding the base for the next reset.
    pub async fn commit_files(
        &self,
        files: &[VerifiedFile],
        message: &str,
    ) -> Result<Option<String>, GitError> {
        let mut paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        paths.sort_unstable();
        if paths.windows(2).any(|w| w[0] == w[1]) {
            return Err(GitError::Unverified {
                path: paths.join(", "),
                reason: "a path is listed twice".into(),
            });
        }
        for file in files {
            match crate::paths::normalize(&file.path) {
                Ok(normal) if normal == file.path => {}
                Ok(normal) => {
                    return Err(GitError::Unverified {
                        path: file.path.clone(),
                        reason: format!("the path is not in its plain form (`{normal}`)"),
                    });
                }
                Err(refused) => {
                    return Err(GitError::Unverified {
                        path: file.path.clone(),
                        reason: refused.reason,
                    });
                }
            }
        }
        let mut trees = self.base_trees(&paths).await?;
        let format = ObjectFormat::of(&self.base);
        let mut changed: Vec<(&VerifiedFile, TreeEntry)> = Vec::new();
        for file in files {
            let (dir, name) = file.path.rsplit_once('/').unwrap_or(("", &file.path));
            let base = trees.get(dir).and_then(|tree| tree.0.get(name));
            if base.is_some_and(|entry| entry.kind == "tree") {
                return Err(GitError::Unverified {
                    path: file.path.clone(),
                    reason: "it is a directory at the base commit".into(),
                });
            }
            let bytes = std::fs::read(self.path.join(&file.path))?;
            let found = sha256_hex(&bytes);
            if found != file.sha256 {
                return Err(GitError::Unverified {
                    path: file.path.clone(),
                    reason: format!(
                        "its content changed after validation (SHA-256 {found}, verified {})",
                        file.sha256
                    ),
                });
            }
            // Keep the mode of a file that exists (an executable script stays one).
            let mode = base
                .map(|entry| entry.mode.as_str())
                .filter(|m| m.starts_with("100"))
                .unwrap_or("100644");
            let entry = TreeEntry {
                mode: mode.to_string(),
                kind: "blob".into(),
                id: format.blob_id(&bytes),
            };
            if base != Some(&entry) {
                changed.push((file, entry));
            }
        }
        if changed.is_empty() {
            return Ok(None);
        }
        // Git reads the files again to store them; what it stores must be what was verified.
        let stdin_paths: String = changed
            .iter()
            .map(|(file, _)| format!("{}\n", c_quoted(&file.path)))
            .collect();
        let stored = self
            .git_input(
                &["hash-object", "-w", "--no-filters", "--stdin-paths"],
                Some(&stdin_paths),
            )
            .await?;
        for ((file, entry), stored) in changed.iter().zip(stored.lines()) {
            if stored != entry.id {
                return Err(GitError::Unverified {
                    path: file.path.clone(),
                    reason: format!(
                        "its content changed while it was committed (blob {stored}, verified {})",
                        entry.id
                    ),
                });
            }
        }
        // Each changed file into its directory's tree, then each changed tree into its
        // parent's, deepest first, up to the root.
        let mut dirty: BTreeSet<String> = BTreeSet::new();
        for (file, entry) in changed {
            let (dir, name) = file.path.rsplit_once('/').unwrap_or(("", &file.path));
            trees
                .entry(dir.to_string())
                .or_default()
                .0
                .insert(name.to_string(), entry);
            let mut dir = dir;
            loop {
                dirty.insert(dir.to_string());
                match dir.rsplit_once('/') {
                    Some((parent, _)) => dir = parent,
                    None if dir.is_empty() => break,
                    None => dir = "",
                }
            }
        }
        let mut order: Vec<String> = dirty.into_iter().collect();
        order.sort_by_key(|dir| std::cmp::Reverse(depth(dir)));
        let mut batch = String::new();
        let mut expected = Vec::new();
        for dir in &order {
            let tree = trees.get(dir).cloned().unwrap_or_default();
            let Some(id) = format.tree_id(&tree) else {
                return Err(self.unreadable_tree(dir));
            };
            batch.push_str(&tree.mktree_input());
            batch.push('\0');
            expected.push(id.clone());
            if let Some((parent, name)) =
                (!dir.is_empty()).then(|| dir.rsplit_once('/').unwrap_or(("", dir)))
            {
                trees.entry(parent.to_string()).or_default().0.insert(
                    name.to_string(),
                    TreeEntry {
                        mode: "040000".into(),
                        kind: "tree".into(),
                        id,
                    },
                );
            }
        }
        let made = self
            .git_input(&["mktree", "-z", "--batch"], Some(&batch))
            .await?;
        let made: Vec<&str> = made.lines().collect();
        if made != expected {
            return Err(GitError::Failed {
                args: "mktree -z --batch".into(),
                dir: self.path.clone(),
                status: "unexpected trees".into(),
                detail: format!("git made {made:?}, expected {expected:?}"),
            });
        }
        let root = expected
            .last()
            .expect("the root is always among the changed trees");
        let commit = self
            .git(&[
                "-c",
                "user.name=pitcrew",
                "-c",
                "user.email=pitcrew@localhost",
                "commit-tree",
                root,
                "-p",
                &self.base,
                "-m",
                message,
            ])
            .await?;
        Ok(Some(commit.trim().to_string()))
    }

    /// The error for a listing of `dir` at the base that holds what git never writes.
    fn unreadable_tree(&self, dir: &str) -> GitError {
        GitError::Failed {
            args: "ls-tree".into(),
            dir: self.path.clone(),
            status: "unreadable listing".into(),
            detail: format!("the tree of `{dir}` at {} could not be read", self.base),
        }
    }

    /// The base commit's trees of the directories holding `paths` and of every directory
    /// above them, by directory (`""` for the root); a directory not there has no tree. A
    /// path that needs a directory where the base has a file is refused.
    ///
    /// One listing for all directories (`ls-tree` then shows a directory's contents in place
    /// of its own entry in its parent, which is rebuilt from them).
    async fn base_trees(&self, paths: &[&str]) -> Result<BTreeMap<String, Tree>, GitError> {
        let mut dirs: BTreeSet<&str> = BTreeSet::new();
        for path in paths {
            let mut rest = *path;
            while let Some((dir, _)) = rest.rsplit_once('/') {
                dirs.insert(dir);
                rest = dir;
            }
        }
        // `.` is the root (with `--full-tree`); `dir/` lists what is in `dir`.
        let specs: Vec<String> = dirs.iter().map(|d| format!("{d}/")).collect();
        let mut args = vec![
            "ls-tree",
            "-z",
            "--full-tree",
            self.base.as_str(),
            "--",
            ".",
        ];
        args.extend(specs.iter().map(String::as_str));
        let mut trees = BTreeMap::new();
        parse_ls_tree(&self.git(&args).await?, &mut trees);
        // A directory listed by contents has no entry in its parent: it is put back with the
        // id of those contents, deepest first (each is complete once its subdirectories are).
        let format = ObjectFormat::of(&self.base);
        let mut listed: Vec<&str> = dirs.iter().copied().collect();
        listed.sort_by_key(|dir| std::cmp::Reverse(depth(dir)));
        for dir in listed {
            let Some(tree) = trees.get(dir) else {
                continue; // not at the base commit
            };
            let Some(id) = format.tree_id(tree) else {
                return Err(self.unreadable_tree(dir));
            };
            let (parent, name) = dir.rsplit_once('/').unwrap_or(("", dir));
            (trees.entry(parent.to_string()).or_default().0)
                .entry(name.to_string())
                .or_insert(TreeEntry {
                    mode: "040000".into(),
                    kind: "tree".into(),
                    id,
                });
        }
        for dir in &dirs {
            let (parent, name) = dir.rsplit_once('/').unwrap_or(("", dir));
            if let Some(entry) = trees.get(parent).and_then(|tree| tree.0.get(name))
                && entry.kind != "tree"
            {
                return Err(GitError::Unverified {
                    path: (*dir).to_string(),
                    reason: "a file is written below it, and it is a file at the base commit"
                        .into(),
                });
            }
        }
        Ok(trees)
    }
}

/// What [`Worktree::index_base_record`] holds: the commit the index holds, when (Unix
/// seconds) that was recorded, and whether the index was written again since, later.
#[derive(Debug, Clone, PartialEq, Eq)]
struct IndexRecord {
    base: String,
    written: u64,
    refreshed: bool,
}

impl IndexRecord {
    fn written_now(base: &str) -> IndexRecord {
        IndexRecord {
            base: base.to_string(),
            written: unix_secs(),
            refreshed: false,
        }
    }

    fn read(path: &Path) -> Option<IndexRecord> {
        let text = std::fs::read_to_string(path).ok()?;
        let mut lines = text.lines();
        Some(IndexRecord {
            base: lines.next()?.to_string(),
            written: lines.next()?.parse().ok()?,
            refreshed: lines.next() == Some("refreshed"),
        })
    }

    fn write(&self, path: &Path) -> std::io::Result<()> {
        let refreshed = if self.refreshed { "refreshed\n" } else { "" };
        std::fs::write(
            path,
            format!("{}\n{}\n{refreshed}", self.base, self.written),
        )
    }
}

fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// How deep directory `dir` is: 0 for the root (`""`), 1 for `a`, 2 for `a/b`.
fn depth(dir: &str) -> usize {
    if dir.is_empty() {
        0
    } else {
        dir.matches('/').count() + 1
    }
}

/// Removes the file at `path` if there is one.
fn forget(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// `path` as git reads a path from a line of stdin: C-quoted when it starts with a quote or
/// holds a backslash (control characters never reach here: such paths are refused).
fn c_quoted(path: &str) -> String {
    if !path.starts_with('"') && !path.contains('\\') {
        return path.to_string();
    }
    let mut quoted = String::from("\"");
    for c in path.chars() {
        if matches!(c, '"' | '\\') {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;
    use pitcrew_testkit::TempRepo;

    /// `path` as it is now in `wt`, as validation would have verified it.
    fn verified(wt: &Worktree, path: &str) -> VerifiedFile {
        VerifiedFile::of(path, &std::fs::read(wt.path().join(path)).unwrap())
    }

    #[tokio::test]
    async fn changes_list_added_modified_and_deleted_files_whatever_the_worktree_claims() {
        let tmp = TempRepo::with_files(&[
            ("src/app.py", "A = 1\n"),
            ("src/gone.py", "G = 1\n"),
            (".gitignore", "*.log\n"),
        ]);
        let base = tmp.git(&["rev-parse", "HEAD"]).trim().to_string();
        let repo = Repo::at(tmp.path());
        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path().join("wt");
        let wt = repo.add_worktree(&dir, &base).await.unwrap();
        assert_eq!(wt.changes().await.unwrap(), WorktreeChanges::default());

        std::fs::write(dir.join("src/app.py"), "A = 2\n").unwrap();
        std::fs::remove_file(dir.join("src/gone.py")).unwrap();
        std::fs::create_dir_all(dir.join("tests/deep")).unwrap();
        std::fs::write(
            dir.join("tests/deep/test_new file.py"),
            "def test(): pass\n",
        )
        .unwrap();
        std::fs::write(dir.join("run.log"), "ignored\n").unwrap();
        // A program in the worktree points `.git` elsewhere: git is not redirected.
        std::fs::write(dir.join(".git"), "gitdir: /tmp/elsewhere\n").unwrap();

        let changes = wt.changes().await.unwrap();
        assert_eq!(
            changes.changed,
            vec![
                "src/app.py".to_string(),
                "tests/deep/test_new file.py".to_string()
            ]
        );
        assert_eq!(changes.deleted, vec!["src/gone.py".to_string()]);
    }

    #[tokio::test]
    async fn a_pooled_worktree_is_reset_to_the_next_base_whatever_ran_in_it() {
        use std::os::unix::fs::MetadataExt;
        let tmp = TempRepo::with_files(&[
            ("src/app.py", "A = 1\n"),
            ("src/same.py", "S = 1\n"),
            ("src/gone.py", "G = 1\n"),
            ("src/dir.py", "D = 1\n"),
            ("src/mode.py", "M = 1\n"),
            ("src/link.py", "L = 1\n"),
            ("pkg/mod.py", "P = 1\n"),
        ]);
        let first = tmp.git(&["rev-parse", "HEAD"]).trim().to_string();
        tmp.write("src/app.py", "A = 2\n");
        let second = tmp.commit("change app");
        let repo = Repo::at(tmp.path());
        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path().join("pool-0");

        let wt = repo.checkout_worktree(&dir, &first).await.unwrap();
        let untouched_inode = std::fs::metadata(dir.join("src/same.py")).unwrap().ino();
        // What a generated test might do: change a tracked file in place and put its mtime
        // back, add files (ignored ones too), and point `.git` elsewhere.
        let app = dir.join("src/app.py");
        let mtime = std::fs::metadata(&app).unwrap().modified().unwrap();
        std::fs::write(&app, "A = 9\n").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&app)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        std::fs::create_dir_all(dir.join("junk/__pycache__")).unwrap();
        std::fs::write(dir.join("junk/__pycache__/x.pyc"), "x").unwrap();
        std::fs::write(dir.join(".git"), "gitdir: /tmp/elsewhere\n").unwrap();
        // Remove a tracked file, put a directory and a symlink where others were, make one
        // executable.
        std::fs::remove_file(dir.join("src/gone.py")).unwrap();
        std::fs::remove_file(dir.join("src/dir.py")).unwrap();
        std::fs::create_dir_all(dir.join("src/dir.py/inner")).unwrap();
        std::fs::write(dir.join("src/dir.py/inner/x"), "x").unwrap();
        let outside = scratch.path().join("outside.txt");
        std::fs::write(&outside, "keep me\n").unwrap();
        std::fs::remove_file(dir.join("src/link.py")).unwrap();
        std::os::unix::fs::symlink(&outside, dir.join("src/link.py")).unwrap();
        // Untracked symlinks to a directory outside and a nested repository.
        let outside_dir = scratch.path().join("outside-dir");
        std::fs::create_dir_all(&outside_dir).unwrap();
        std::fs::write(outside_dir.join("kept"), "kept\n").unwrap();
        std::os::unix::fs::symlink(&outside_dir, dir.join("src/dir_link")).unwrap();
        // A tracked directory replaced by a symlink to a directory outside holding a file
        // of the same name: restoring must not write through it.
        let decoy = scratch.path().join("decoy");
        std::fs::create_dir_all(&decoy).unwrap();
        std::fs::write(decoy.join("mod.py"), "DECOY = 1\n").unwrap();
        std::fs::remove_dir_all(dir.join("pkg")).unwrap();
        std::os::unix::fs::symlink(&decoy, dir.join("pkg")).unwrap();
        std::fs::create_dir_all(dir.join("nested/.git/objects")).unwrap();
        std::fs::write(dir.join("nested/.git/HEAD"), "ref: refs/heads/main\n").unwrap();
        std::fs::write(dir.join("nested/file.py"), "N = 1\n").unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(
                dir.join("src/mode.py"),
                std::fs::Permissions::from_mode(0o755),
            )
            .unwrap();
        }
        drop(wt);

        let wt = repo.checkout_worktree(&dir, &first).await.unwrap();
        assert_eq!(std::fs::read_to_string(&app).unwrap(), "A = 1\n");
        assert!(!dir.join("junk").exists());
        for (path, content) in [
            ("src/gone.py", "G = 1\n"),
            ("src/dir.py", "D = 1\n"),
            ("src/link.py", "L = 1\n"),
        ] {
            let meta = std::fs::symlink_metadata(dir.join(path)).unwrap();
            assert!(meta.is_file(), "{path} is not a plain file again");
            assert_eq!(std::fs::read_to_string(dir.join(path)).unwrap(), content);
        }
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "keep me\n");
        assert!(std::fs::symlink_metadata(dir.join("src/dir_link")).is_err());
        assert_eq!(
            std::fs::read_to_string(outside_dir.join("kept")).unwrap(),
            "kept\n"
        );
        assert!(!dir.join("nested").exists());
        assert!(std::fs::symlink_metadata(dir.join("pkg")).unwrap().is_dir());
        assert_eq!(
            std::fs::read_to_string(dir.join("pkg/mod.py")).unwrap(),
            "P = 1\n"
        );
        assert_eq!(
            std::fs::read_to_string(decoy.join("mod.py")).unwrap(),
            "DECOY = 1\n"
        );
        assert_eq!(
            std::fs::metadata(dir.join("src/mode.py")).unwrap().mode() & 0o111,
            0,
            "the executable bit stayed"
        );
        assert_eq!(wt.changes().await.unwrap(), WorktreeChanges::default());
        assert_eq!(
            std::fs::metadata(dir.join("src/same.py")).unwrap().ino(),
            untouched_inode,
            "reused, not checked out again"
        );
        assert!(
            std::fs::read_to_string(dir.join(".git"))
                .unwrap()
                .contains(&wt.git_dir.display().to_string())
        );

        let wt = repo.checkout_worktree(&dir, &second).await.unwrap();
        assert_eq!(wt.base(), second);
        assert_eq!(std::fs::read_to_string(&app).unwrap(), "A = 2\n");
        let head = wt.git(&["rev-parse", "HEAD"]).await.unwrap();
        assert_eq!(head.trim(), second);

        // A directory that is not a worktree this repository recorded is replaced.
        let stray = scratch.path().join("pool-1");
        std::fs::create_dir_all(&stray).unwrap();
        std::fs::write(stray.join("leftover"), "x").unwrap();
        let wt = repo.checkout_worktree(&stray, &second).await.unwrap();
        assert!(!stray.join("leftover").exists());
        assert_eq!(
            std::fs::read_to_string(wt.path().join("src/app.py")).unwrap(),
            "A = 2\n"
        );
    }

    #[tokio::test]
    async fn worktree_commit_patch_and_branch() {
        let fixture = TempRepo::with_files(&[("src/a.py", "def f():\n    return 1\n")]);
        let repo = Repo::discover(&fixture.path().join("src")).await.unwrap();
        assert_eq!(repo.root(), fixture.path().canonicalize().unwrap());
        let base = repo.resolve_commit("HEAD").await.unwrap();
        assert_eq!(base.len(), 40);
        assert!(repo.has_path(&base, "src/a.py").await.unwrap());
        assert!(!repo.has_path(&base, "src/missing.py").await.unwrap());
        assert!(matches!(
            repo.resolve_commit("no-such-branch").await,
            Err(GitError::UnknownRevision { .. })
        ));

        let dir = repo.worktrees_dir().join("t1");
        let wt = repo.add_worktree(&dir, &base).await.unwrap();
        assert!(wt.path().join("src/a.py").is_file());
        let unchanged = [verified(&wt, "src/a.py")];
        assert_eq!(wt.commit_files(&unchanged, "nothing").await.unwrap(), None);
        std::fs::create_dir_all(wt.path().join("tests/__pycache__")).unwrap();
        std::fs::write(
            wt.path().join("tests/test_a.py"),
            "def test_f():\n    assert True\n",
        )
        .unwrap();
        std::fs::write(wt.path().join("tests/__pycache__/junk.pyc"), "junk").unwrap();
        let written = [verified(&wt, "tests/test_a.py")];
        let commit = wt
            .commit_files(&written, "add test")
            .await
            .unwrap()
            .unwrap();
        let patch = repo.diff(&base, &commit).await.unwrap();
        assert!(patch.contains("+++ b/tests/test_a.py"), "{patch}");
        assert!(
            !patch.contains("junk"),
            "a by-product was committed: {patch}"
        );

        repo.create_branch("pitcrew/t1", &commit).await.unwrap();
        assert_eq!(
            repo.branch_commit("pitcrew/t1").await.unwrap().as_deref(),
            Some(commit.as_str())
        );
        assert!(
            repo.create_branch("pitcrew/t1", &base).await.is_err(),
            "overwrote a branch"
        );
        assert_eq!(repo.branch_commit("pitcrew/none").await.unwrap(), None);

        // Moved or deleted only from the commit it is expected to hold.
        assert!(
            !repo
                .move_branch_from("pitcrew/t1", &base, None)
                .await
                .unwrap()
        );
        repo.set_branch("pitcrew/t1", &base).await.unwrap();
        assert!(
            !repo
                .move_branch_from("pitcrew/t1", &commit, None)
                .await
                .unwrap()
        );
        assert!(
            (repo.move_branch_from("pitcrew/t1", &base, Some(&commit)))
                .await
                .unwrap()
        );
        assert_eq!(
            repo.branch_commit("pitcrew/t1").await.unwrap().as_deref(),
            Some(commit.as_str())
        );
        repo.set_branch("pitcrew/gone", &commit).await.unwrap();
        assert!(
            repo.move_branch_from("pitcrew/gone", &commit, None)
                .await
                .unwrap()
        );
        assert_eq!(repo.branch_commit("pitcrew/gone").await.unwrap(), None);
        assert_eq!(
            repo.branches_with_prefix("pitcrew/").await.unwrap(),
            ["pitcrew/t1"]
        );

        repo.remove_worktree(&dir).await.unwrap();
        assert!(!dir.exists());
        // The user's checkout never changed.
        assert_eq!(fixture.git(&["status", "--porcelain"]), "");
        assert!(!fixture.path().join("tests").exists());
    }

    #[tokio::test]
    async fn a_commit_holds_exactly_the_verified_bytes_with_their_modes() {
        let fixture = TempRepo::with_files(&[
            ("run.sh", "echo one\n"),
            ("src/a.py", "A = 1\n"),
            ("src/b.py", "B = 1\n"),
        ]);
        {
            use std::os::unix::fs::PermissionsExt;
            let script = fixture.path().join("run.sh");
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        fixture.commit("executable");
        // A submodule and a deeper directory stay as they are beside what changes.
        fixture.write("docs/guide/intro.md", "intro\n");
        fixture.write("lib/pkg/mod.py", "M = 1\n");
        fixture.git(&["add", "docs", "lib"]);
        fixture.git(&[
            "update-index",
            "--add",
            "--cacheinfo",
            &format!("160000,{},vendor/sub", "1".repeat(40)),
        ]);
        fixture.git(&["commit", "--quiet", "-m", "submodule"]);
        let repo = Repo::discover(fixture.path()).await.unwrap();
        let base = repo.resolve_commit("HEAD").await.unwrap();
        let wt = repo
            .checkout_worktree(&repo.worktrees_dir().join("modes"), &base)
            .await
            .unwrap();
        let write = |path: &str, content: &str| {
            let full = wt.path().join(path);
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(full, content).unwrap();
        };
        write("run.sh", "echo two\n");
        write("tests/deep/test_a.py", "def test_a():\n    assert 1\n");
        write("\"quoted name.py", "Q = 1\n");
        write(
            "docs/guide/new/deep/test_d.py",
            "def test_d():\n    assert 1\n",
        );
        // Listed but unchanged: not part of the commit.
        let files = [
            verified(&wt, "run.sh"),
            verified(&wt, "src/b.py"),
            verified(&wt, "lib/pkg/mod.py"),
            verified(&wt, "tests/deep/test_a.py"),
            verified(&wt, "\"quoted name.py"),
            verified(&wt, "docs/guide/new/deep/test_d.py"),
        ];
        let commit = wt.commit_files(&files, "m").await.unwrap().unwrap();
        let changed = fixture.git(&["diff", "--name-only", "-z", &base, &commit]);
        assert_eq!(
            changed.split_terminator('\0').collect::<Vec<_>>(),
            [
                "\"quoted name.py",
                "docs/guide/new/deep/test_d.py",
                "run.sh",
                "tests/deep/test_a.py"
            ]
        );
        // Every tree git would have made: the same listing as a commit made by git itself.
        fixture.git(&["read-tree", &base]);
        fixture.git(&[
            "update-index",
            "--add",
            "--cacheinfo",
            &format!(
                "100755,{},run.sh",
                fixture.git(&["rev-parse", &format!("{commit}:run.sh")])
            ),
        ]);
        for path in [
            "\"quoted name.py",
            "tests/deep/test_a.py",
            "docs/guide/new/deep/test_d.py",
        ] {
            let blob = fixture.git(&["rev-parse", &format!("{commit}:{path}")]);
            fixture.git(&[
                "update-index",
                "--add",
                "--cacheinfo",
                &format!("100644,{blob},{path}"),
            ]);
        }
        assert_eq!(
            fixture.git(&["write-tree"]),
            fixture.git(&["rev-parse", &format!("{commit}^{{tree}}")])
        );
        fixture.git(&["read-tree", &base]);
        assert!(
            fixture
                .git(&["ls-tree", &commit, "run.sh"])
                .starts_with("100755 "),
            "the executable bit was lost"
        );
        assert_eq!(
            fixture.git(&["show", &format!("{commit}:run.sh")]),
            "echo two"
        );
        // The index is left holding the base (nothing staged), and a reset restores.
        let staged = wt
            .git(&["diff-index", "--cached", "--name-only", &base])
            .await;
        assert_eq!(staged.unwrap(), "");
        wt.reset().await.unwrap();
        assert_eq!(wt.changes().await.unwrap(), WorktreeChanges::default());
        assert_eq!(
            std::fs::read_to_string(wt.path().join("run.sh")).unwrap(),
            "echo one\n"
        );

        // Bytes other than those verified, and paths that are not plain, commit nothing.
        write("src/a.py", "A = 2\n");
        let before_change = verified(&wt, "src/a.py");
        write("src/a.py", "A = 3\n");
        let err = wt.commit_files(&[before_change], "m").await.unwrap_err();
        assert!(
            err.to_string().contains("changed after validation"),
            "{err}"
        );
        for path in ["./src/a.py", ".git/config", "src//a.py", "src/../run.sh"] {
            let file = VerifiedFile {
                path: path.to_string(),
                ..verified(&wt, "src/a.py")
            };
            let err = wt.commit_files(&[file], "m").await.unwrap_err();
            assert!(matches!(err, GitError::Unverified { .. }), "{path}: {err}");
        }
        // A file below a path that is a file at the base, or where a directory is.
        write("run.sh.d/x.py", "X = 1\n");
        for (path, source) in [("run.sh/x.py", "run.sh.d/x.py"), ("src", "src/a.py")] {
            let file = VerifiedFile {
                path: path.to_string(),
                ..verified(&wt, source)
            };
            let err = wt.commit_files(&[file], "m").await.unwrap_err();
            assert!(matches!(err, GitError::Unverified { .. }), "{path}: {err}");
        }
        let twice = [verified(&wt, "src/a.py"), verified(&wt, "src/a.py")];
        assert!(wt.commit_files(&twice, "m").await.is_err());
        assert_eq!(fixture.git(&["rev-parse", "HEAD"]), base);
    }

    #[tokio::test]
    async fn apply_commits_a_patch_skips_a_present_one_and_reports_conflicts() {
        let fixture = TempRepo::with_files(&[("src/a.py", "def f():\n    return 1\n")]);
        let repo = Repo::discover(fixture.path()).await.unwrap();
        let base = repo.resolve_commit("HEAD").await.unwrap();
        let wt = repo
            .add_worktree(&repo.worktrees_dir().join("x"), &base)
            .await
            .unwrap();
        std::fs::write(wt.path().join("src/a.py"), "def f():\n    return 2\n").unwrap();
        let commit = wt
            .commit_files(&[verified(&wt, "src/a.py")], "change")
            .await
            .unwrap()
            .unwrap();
        let patch = repo.diff(&base, &commit).await.unwrap();
        repo.remove_worktree(wt.path()).await.unwrap();

        assert_eq!(
            repo.current_branch().await.unwrap().as_deref(),
            Some("main")
        );
        assert!(repo.is_clean().await.unwrap());
        let applied = repo.apply_and_commit(&patch, "apply").await.unwrap();
        assert!(matches!(applied, Applied::Committed { .. }), "{applied:?}");
        assert_eq!(
            fixture.git(&["show", "HEAD:src/a.py"]),
            "def f():\n    return 2"
        );
        assert_eq!(
            repo.apply_and_commit(&patch, "again").await.unwrap(),
            Applied::AlreadyPresent
        );

        // A branch that changed the same line conflicts and stays as it was.
        fixture.git(&["checkout", "-q", "-b", "other", &base]);
        fixture.write("src/a.py", "def f():\n    return 3\n");
        let head = fixture.commit("diverge");
        match repo.apply_and_commit(&patch, "apply").await.unwrap() {
            Applied::Conflict {
                files, untracked, ..
            } => {
                assert_eq!(files, ["src/a.py"]);
                assert!(untracked.is_empty());
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
        assert_eq!(fixture.git(&["rev-parse", "HEAD"]), head);
        assert!(repo.is_clean().await.unwrap());
        assert_eq!(
            fixture.git(&["show", "HEAD:src/a.py"]),
            "def f():\n    return 3"
        );
    }

    #[tokio::test]
    async fn an_untracked_file_in_the_way_is_named_and_kept() {
        let fixture = TempRepo::with_files(&[("src/a.py", "def f():\n    return 1\n")]);
        let repo = Repo::discover(fixture.path()).await.unwrap();
        let base = repo.resolve_commit("HEAD").await.unwrap();
        let wt = repo
            .add_worktree(&repo.worktrees_dir().join("y"), &base)
            .await
            .unwrap();
        std::fs::create_dir_all(wt.path().join("tests")).unwrap();
        std::fs::write(
            wt.path().join("tests/test_a.py"),
            "def test_a():\n    pass\n",
        )
        .unwrap();
        let commit = wt
            .commit_files(
                &[verified(&wt, "tests/test_a.py")],
                "add test_a\n\nModel: m\n",
            )
            .await
            .unwrap()
            .unwrap();
        let patch = repo.diff(&base, &commit).await.unwrap();
        repo.remove_worktree(wt.path()).await.unwrap();
        assert_eq!(
            repo.commit_message(&commit).await.unwrap().as_deref(),
            Some("add test_a\n\nModel: m\n")
        );
        assert_eq!(repo.commit_message(&"0".repeat(40)).await.unwrap(), None);

        fixture.write("tests/test_a.py", "# mine\n");
        match repo.apply_and_commit(&patch, "apply").await.unwrap() {
            Applied::Conflict {
                files, untracked, ..
            } => {
                assert_eq!(files, ["tests/test_a.py"]);
                assert_eq!(untracked, ["tests/test_a.py"]);
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
        assert_eq!(
            std::fs::read_to_string(fixture.path().join("tests/test_a.py")).unwrap(),
            "# mine\n"
        );

        std::fs::remove_file(fixture.path().join("tests/test_a.py")).unwrap();
        let Applied::Committed { commit: applied } =
            repo.apply_and_commit(&patch, "apply").await.unwrap()
        else {
            panic!("not applied");
        };
        assert!(repo.applied().await.unwrap().is_empty());
        repo.mark_applied("task-1", &applied).await.unwrap();
        assert_eq!(
            repo.applied()
                .await
                .unwrap()
                .into_iter()
                .collect::<Vec<_>>(),
            [("task-1".to_string(), applied)]
        );
    }

    #[test]
    fn credentials_are_cut_from_remote_urls() {
        assert_eq!(
            without_credentials("https://x-access-token:ghp_abc@github.com/acme/calc.git"),
            "https://github.com/acme/calc.git"
        );
        assert_eq!(
            without_credentials("https://github.com/acme/calc.git"),
            "https://github.com/acme/calc.git"
        );
        assert_eq!(
            without_credentials("ssh://git@host/a@b.git"),
            "ssh://host/a@b.git"
        );
        assert_eq!(
            without_credentials("git@github.com:acme/calc.git"),
            "git@github.com:acme/calc.git"
        );
    }
}
