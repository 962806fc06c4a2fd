//! The repository indexes of this process: one per base commit, built once (from the
//! commit's tree and a fresh checkout of it, seeded by the newest index kept on disk) and
//! shared by every task on that commit; kept under pitcrew's cache for later runs.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;

use pitcrew_core::sha256_hex;
use pitcrew_index::{IndexDir, RepoIndex};

use crate::git::{GitError, Worktree};
use crate::layout::cache_root;

/// Indexes held in memory at once; the oldest is dropped past this.
const HELD: usize = 16;

#[derive(Debug, Default)]
struct Held {
    by_commit: HashMap<String, Arc<RepoIndex>>,
    /// Commits in the order their indexes were loaded.
    order: VecDeque<String>,
}

/// Indexes by base commit, shared by clones of this value.
#[derive(Debug, Clone)]
pub struct RepoIndexes {
    /// Where indexes are kept on disk: a directory per repository below it.
    dir: PathBuf,
    held: Arc<tokio::sync::Mutex<Held>>,
}

impl Default for RepoIndexes {
    /// Kept in `$XDG_CACHE_HOME/pitcrew/index`.
    fn default() -> Self {
        RepoIndexes::new(cache_root().join("index"))
    }
}

impl RepoIndexes {
    pub fn new(dir: impl Into<PathBuf>) -> RepoIndexes {
        RepoIndexes {
            dir: dir.into(),
            held: Arc::default(),
        }
    }

    /// The index of the worktree's base commit, which the worktree must still hold
    /// unchanged when the index has to be built (its files are read from there).
    pub async fn of(&self, worktree: &Worktree) -> Result<Arc<RepoIndex>, GitError> {
        let commit = worktree.base().to_string();
        // Held while building, so that tasks on one commit wait for one build.
        let mut held = self.held.lock().await;
        if let Some(index) = held.by_commit.get(&commit) {
            return Ok(Arc::clone(index));
        }
        let repo = worktree.repo();
        let name = (repo.root().file_name())
            .map_or_else(|| "repository".into(), |n| n.to_string_lossy().into_owned());
        let key = sha256_hex(repo.root().as_os_str().as_encoded_bytes());
        let store = IndexDir::new(self.dir.join(format!("{name}-{}", &key[..12])));
        let stored = {
            let (store, commit) = (store.clone(), commit.clone());
            blocking(move || store.load(&commit)).await?
        };
        let index = match stored {
            Some(index) => index,
            None => {
                let tree = repo.tree_files(&commit).await?;
                let checkout = worktree.path().to_path_buf();
                blocking(move || {
                    let earlier = store.newest();
                    let read = |path: &str| std::fs::read(checkout.join(path)).ok();
                    let (index, stats) = RepoIndex::build(&commit, &tree, earlier.as_ref(), &read);
                    tracing::debug!(
                        commit = %commit,
                        reused = stats.reused,
                        parsed = stats.parsed,
                        skipped = stats.skipped,
                        "repository index built"
                    );
                    if let Err(e) = store.save(&index) {
                        // The index still serves this process; later ones build their own.
                        tracing::warn!(
                            "cannot keep the repository index in {}: {e}",
                            store.path().display()
                        );
                    }
                    index
                })
                .await?
            }
        };
        let index = Arc::new(index);
        let commit = index.commit().to_string();
        held.by_commit.insert(commit.clone(), Arc::clone(&index));
        held.order.push_back(commit);
        while held.order.len() > HELD {
            if let Some(old) = held.order.pop_front() {
                held.by_commit.remove(&old);
            }
        }
        Ok(index)
    }
}

/// Runs disk reads and parsing off the async workers (which keep leases alive).
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, GitError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| GitError::Io(std::io::Error::other(e)))
}
