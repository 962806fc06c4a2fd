//! Pooled worktrees: attempts reuse a repository's worktrees, each reset to the next task's
//! base commit (only the files that differ are written), instead of checking out and
//! deleting a whole tree per attempt.
//!
//! A worktree `pool-N` in the repository's worktrees directory is held through a lock on
//! `pool-N.lock` beside it, by one process at a time; a process that dies lets go of its
//! locks with it. Whoever removes a slot's worktree deletes its lock file too, while holding
//! it, so a taker checks that the file it locked is still the one at the path. A process keeps the slots it took for its whole run (reusing them task
//! after task) and removes their worktrees when it ends. Worktrees of slots nobody holds
//! were left by a process that died: they are removed when this process first works on the
//! repository and whenever it rescues a dead worker's lease.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use crate::git::{GitError, Repo};

/// The names of pooled worktrees (`pool-0`, `pool-1`, …) in a repository's worktrees
/// directory, each with its lock file (`pool-0.lock`) and git directory record beside it.
pub const POOL_PREFIX: &str = "pool-";
/// More attempts than this at once on one repository on one machine are refused.
const MAX_POOL_SLOTS: usize = 4096;

/// A pooled worktree directory held by this process.
#[derive(Debug)]
pub struct WorktreeSlot {
    dir: PathBuf,
    lock_path: PathBuf,
    /// Locked while held; the lock goes with the file.
    lock: std::fs::File,
}

impl WorktreeSlot {
    /// The worktree's directory (it may not exist yet).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Slot `number` in `dir` if no one holds it; `Ok(None)` if someone does.
    fn try_take(dir: &Path, number: usize) -> Result<Option<WorktreeSlot>, GitError> {
        let path = dir.join(format!("{POOL_PREFIX}{number}.lock"));
        // A lock file deleted between our open and our lock is not the slot's any more: the
        // next open finds (or makes) the current one.
        for _ in 0..3 {
            let lock = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)?;
            match lock.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
                Err(std::fs::TryLockError::Error(e)) => return Err(e.into()),
            }
            let slot = WorktreeSlot {
                dir: dir.join(format!("{POOL_PREFIX}{number}")),
                lock_path: path.clone(),
                lock,
            };
            if slot.still_held() {
                return Ok(Some(slot));
            }
        }
        Ok(None)
    }

    /// Whether the lock file at the slot's path is still the one this slot locked: someone
    /// deleting the worktrees directory under a run deletes it, and another process could
    /// then take the same slot.
    fn still_held(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        match (self.lock.metadata(), std::fs::metadata(&self.lock_path)) {
            (Ok(locked), Ok(current)) => {
                (locked.dev(), locked.ino()) == (current.dev(), current.ino())
            }
            _ => false,
        }
    }

    /// The first slot in `dir` that no one holds.
    fn acquire(dir: &Path) -> Result<WorktreeSlot, GitError> {
        std::fs::create_dir_all(dir)?;
        for number in 0..MAX_POOL_SLOTS {
            if let Some(slot) = Self::try_take(dir, number)? {
                return Ok(slot);
            }
        }
        Err(GitError::Io(std::io::Error::other(format!(
            "all {MAX_POOL_SLOTS} worktree slots in {} are in use",
            dir.display()
        ))))
    }
}

/// The slots of one repository's worktrees directory that this process holds and no
/// attempt uses.
#[derive(Debug)]
struct FreeSlots {
    repo: Repo,
    slots: Vec<WorktreeSlot>,
}

/// The slots this process holds, free ones by worktrees directory, shared by clones of this
/// value.
#[derive(Debug, Clone, Default)]
pub struct WorktreePool {
    free: Arc<Mutex<HashMap<PathBuf, FreeSlots>>>,
}

impl WorktreePool {
    /// A slot in `dir` (the repository's [`Repo::worktrees_dir`]) for an attempt: one this
    /// process holds and no attempt uses, or a new one. Give it back with
    /// [`WorktreePool::give_back`].
    pub fn take(&self, dir: &Path) -> Result<WorktreeSlot, GitError> {
        let reused = (self.free.lock().unwrap_or_else(PoisonError::into_inner))
            .get_mut(dir)
            .and_then(|free| free.slots.pop());
        match reused {
            Some(slot) if slot.still_held() => Ok(slot),
            _ => WorktreeSlot::acquire(dir),
        }
    }

    /// Keeps `slot` (still held) for the next attempt on `repo`.
    pub fn give_back(&self, repo: &Repo, slot: WorktreeSlot) {
        let dir = slot.dir.parent().unwrap_or(Path::new("")).to_path_buf();
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        free.entry(dir)
            .or_insert_with(|| FreeSlots {
                repo: repo.clone(),
                slots: Vec::new(),
            })
            .slots
            .push(slot);
    }

    /// Removes the worktrees of the slots given back and lets go of them: at the end of a
    /// run. Returns what could not be removed.
    pub async fn close(&self) -> Vec<String> {
        let held: Vec<FreeSlots> = {
            let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
            free.drain().map(|(_, held)| held).collect()
        };
        let mut problems = Vec::new();
        for FreeSlots { repo, slots } in held {
            for slot in slots {
                problems.extend(remove(&repo, &slot).await);
            }
        }
        problems
    }

    /// Removes the worktrees of `repo`'s slots in `dir` that no process holds (their process
    /// died), taking each slot while doing so. Returns what could not be removed.
    pub async fn sweep_abandoned(repo: &Repo, dir: &Path) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let numbers: Vec<usize> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.strip_prefix(POOL_PREFIX)?
                    .strip_suffix(".lock")?
                    .parse()
                    .ok()
            })
            .collect();
        let mut problems = Vec::new();
        for number in numbers {
            match WorktreeSlot::try_take(dir, number) {
                Ok(Some(slot)) => problems.extend(remove(repo, &slot).await),
                Ok(None) => {}
                Err(e) => problems.push(format!("{}: {e}", dir.display())),
            }
        }
        problems
    }
}

/// Removes the worktree of a held slot, if there is one, its record and its lock file.
async fn remove(repo: &Repo, slot: &WorktreeSlot) -> Option<String> {
    let dir = slot.dir();
    let record = crate::git::git_dir_record(dir);
    let removed = async {
        if dir.exists() {
            repo.remove_worktree(dir).await?;
        }
        for file in [&record, &slot.lock_path] {
            match std::fs::remove_file(file) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
        }
        Ok::<_, GitError>(())
    };
    removed
        .await
        .err()
        .map(|e| format!("could not remove worktree {}: {e}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pitcrew_testkit::TempRepo;

    #[test]
    fn slots_are_held_one_at_a_time_and_freed_on_drop() {
        let pool = tempfile::tempdir().unwrap();
        let first = WorktreeSlot::acquire(pool.path()).unwrap();
        let second = WorktreeSlot::acquire(pool.path()).unwrap();
        assert_ne!(first.dir(), second.dir());
        let first_dir = first.dir().to_path_buf();
        drop(first);
        // A process that another test is starting holds a copy of the lock's descriptor
        // until it executes its program: the slot is free again within moments.
        let again = (0..100)
            .find_map(|_| {
                let slot = WorktreeSlot::acquire(pool.path()).unwrap();
                if slot.dir() == first_dir {
                    return Some(slot);
                }
                drop(slot);
                std::thread::sleep(std::time::Duration::from_millis(10));
                None
            })
            .expect("the dropped slot is free again");
        drop((second, again));
    }

    #[tokio::test]
    async fn held_worktrees_are_reused_closed_and_abandoned_ones_swept() {
        let cache = tempfile::tempdir().unwrap();
        let tmp = TempRepo::with_files(&[("a.py", "A = 1\n")]);
        let head = tmp.git(&["rev-parse", "HEAD"]).trim().to_string();
        let repo = Repo::at(tmp.path());
        let wt = cache.path().join("wt");
        let pool = WorktreePool::default();

        let slot = pool.take(&wt).unwrap();
        repo.checkout_worktree(slot.dir(), &head).await.unwrap();
        let dir = slot.dir().to_path_buf();
        pool.give_back(&repo, slot);
        let slot = pool.take(&wt).unwrap();
        assert_eq!(slot.dir(), dir, "the free slot is taken again");
        pool.give_back(&repo, slot);
        // Held by this pool: another process's sweep leaves it alone.
        assert!(WorktreePool::sweep_abandoned(&repo, &wt).await.is_empty());
        assert!(dir.join("a.py").exists());
        assert!(pool.close().await.is_empty());
        assert!(!dir.exists());
        assert_eq!(std::fs::read_dir(&wt).unwrap().count(), 0, "nothing left");

        // A slot whose holder went away (dropped without closing, as in a crash).
        let orphan = WorktreeSlot::acquire(&wt).unwrap();
        repo.checkout_worktree(orphan.dir(), &head).await.unwrap();
        let orphan_dir = orphan.dir().to_path_buf();
        drop(orphan);
        assert!(WorktreePool::sweep_abandoned(&repo, &wt).await.is_empty());
        assert!(!orphan_dir.exists());
        assert_eq!(std::fs::read_dir(&wt).unwrap().count(), 0, "nothing left");
        assert_eq!(tmp.git(&["worktree", "list"]).lines().count(), 1);
    }
}
