//! Where a task's repository is on this machine. A task records the submitter's path and the
//! repository's remote URL; a worker on another machine (or with its clone elsewhere) finds
//! it through `[repos]` in pitcrew.toml, else at the submitter's path, else in a clone of its
//! own in the cache, made on first use and fetched when the task's base commit is missing.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex, PoisonError};

use pitcrew_core::sha256_hex;

use crate::git::{GitError, Repo};
use crate::layout::cache_root;

/// Why a task's repository is not available here.
#[derive(Debug, thiserror::Error)]
pub enum LocateError {
    #[error(
        "the task's repository {path} is not on this machine and the task records no remote \
         to clone it from; map it in pitcrew.toml: [repos] \"{path}\" = \"/path/to/your/clone\""
    )]
    NotHere { path: String },
    #[error("[repos] maps {key} to {path}, which is not a git repository")]
    BadMapping { key: String, path: PathBuf },
    #[error("cannot clone {url} into {dir}: {source}")]
    Clone {
        url: String,
        dir: PathBuf,
        source: GitError,
    },
    #[error(
        "the task's base commit {commit} is not in {repo}{fetched}; push it to the remote, or \
         fetch it into that clone"
    )]
    MissingCommit {
        commit: String,
        repo: PathBuf,
        fetched: String,
    },
}

/// What a task says about its repository.
#[derive(Debug, Clone, Copy)]
pub struct RepoIdentity<'a> {
    /// The submitter's absolute path.
    pub path: &'a str,
    /// The remote URL, without credentials.
    pub url: Option<&'a str>,
    pub base_commit: &'a str,
}

/// The clone [`locate_repo`] would use for `identity`, if this machine has it already
/// (nothing is cloned or fetched).
pub fn existing_clone(
    identity: RepoIdentity<'_>,
    mapped: &BTreeMap<String, PathBuf>,
) -> Option<PathBuf> {
    let mapping = identity
        .url
        .and_then(|url| mapped.get(url))
        .or_else(|| mapped.get(identity.path));
    let candidate = match mapping {
        Some(path) => path.clone(),
        None if Path::new(identity.path).join(".git").exists() => PathBuf::from(identity.path),
        None => cache_dir_of(identity.url?),
    };
    candidate.join(".git").exists().then_some(candidate)
}

/// Where this machine's own clone of `url` goes.
fn cache_dir_of(url: &str) -> PathBuf {
    cache_root()
        .join("repos")
        .join(&sha256_hex(url.as_bytes())[..16])
}

/// The clone on this machine to run a task of `identity` in. `mapped` is `[repos]`: remote
/// URL or submitter's path → local clone.
pub async fn locate_repo(
    identity: RepoIdentity<'_>,
    mapped: &BTreeMap<String, PathBuf>,
) -> Result<Repo, LocateError> {
    let mapping = identity
        .url
        .and_then(|url| mapped.get_key_value(url))
        .or_else(|| mapped.get_key_value(identity.path));
    let repo = if let Some((key, path)) = mapping {
        if !path.join(".git").exists() {
            return Err(LocateError::BadMapping {
                key: key.clone(),
                path: path.clone(),
            });
        }
        Repo::at(path)
    } else if Path::new(identity.path).join(".git").exists() {
        Repo::at(identity.path)
    } else if let Some(url) = identity.url {
        cached_clone(url).await?
    } else {
        return Err(LocateError::NotHere {
            path: identity.path.to_string(),
        });
    };
    if has_commit(&repo, identity.base_commit).await {
        return Ok(repo);
    }
    let fetched = match identity.url {
        Some(url) => match repo.fetch_from(url).await {
            Ok(()) if has_commit(&repo, identity.base_commit).await => return Ok(repo),
            Ok(()) => format!(" (nor in {url} after a fetch)"),
            Err(e) => format!(" (fetching {url} failed: {e})"),
        },
        None => String::new(),
    };
    Err(LocateError::MissingCommit {
        commit: identity.base_commit.to_string(),
        repo: repo.root().to_path_buf(),
        fetched,
    })
}

/// Whether `repo` holds `commit`, asked of git once per process: a commit found stays
/// (a task's base commit is not rewritten under a run), and every task of a batch has one.
async fn has_commit(repo: &Repo, commit: &str) -> bool {
    static FOUND: LazyLock<Mutex<HashSet<(PathBuf, String)>>> = LazyLock::new(Mutex::default);
    const REMEMBERED: usize = 4096;
    let key = (repo.root().to_path_buf(), commit.to_string());
    if (FOUND.lock().unwrap_or_else(PoisonError::into_inner)).contains(&key) {
        return true;
    }
    if repo.resolve_commit(commit).await.is_err() {
        return false;
    }
    let mut found = FOUND.lock().unwrap_or_else(PoisonError::into_inner);
    if found.len() >= REMEMBERED {
        found.clear();
    }
    found.insert(key);
    true
}

/// This machine's clone of `url` in the cache, made on first use. A clone is made beside
/// its final place and renamed into it, so a process that dies mid-clone leaves no half
/// clone, and of two processes cloning at once one clone wins.
async fn cached_clone(url: &str) -> Result<Repo, LocateError> {
    let dir = cache_dir_of(url);
    if dir.join(".git").exists() {
        return Ok(Repo::at(dir));
    }
    let partial = dir.with_extension(format!("partial-{}", std::process::id()));
    let clone_error = |source: GitError| LocateError::Clone {
        url: url.to_string(),
        dir: dir.clone(),
        source,
    };
    if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(|e| clone_error(e.into()))?;
    }
    Repo::clone_from(url, &partial).await.map_err(clone_error)?;
    if std::fs::rename(&partial, &dir).is_err() {
        // Another process got there first: use its clone.
        let _ = std::fs::remove_dir_all(&partial);
        if !dir.join(".git").exists() {
            return Err(clone_error(GitError::NotARepository(dir.clone())));
        }
    }
    Ok(Repo::at(dir))
}
