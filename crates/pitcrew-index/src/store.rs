//! Indexes on disk: one file per commit in a directory per repository, written atomically.
//! The newest one seeds the next commit's index, so a new commit re-reads only what changed.
//! A file that cannot be read back (damaged, or from another format version) is ignored and
//! rebuilt: this is a cache.

use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::index::{BuildStats, FORMAT_VERSION, RepoIndex, Stored, TreeFile};

/// Commits kept per repository; older index files are deleted when a new one is written.
const KEPT: usize = 8;

/// The index files of one repository.
#[derive(Debug, Clone)]
pub struct IndexDir {
    dir: PathBuf,
}

impl IndexDir {
    pub fn new(dir: impl Into<PathBuf>) -> IndexDir {
        IndexDir { dir: dir.into() }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn file_of(&self, commit: &str) -> PathBuf {
        self.dir.join(format!("{commit}.json"))
    }

    fn read(path: &Path) -> Option<RepoIndex> {
        let bytes = std::fs::read(path).ok()?;
        let stored: Stored = serde_json::from_slice(&bytes).ok()?;
        (stored.version == FORMAT_VERSION)
            .then(|| RepoIndex::from_files(stored.commit, stored.files))
    }

    /// The stored index of `commit`, if there is a readable one.
    pub fn load(&self, commit: &str) -> Option<RepoIndex> {
        Self::read(&self.file_of(commit)).filter(|index| index.commit() == commit)
    }

    /// Index files, newest first.
    fn by_age(&self) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut files: Vec<(SystemTime, PathBuf)> = entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        files.sort_by_key(|(modified, _)| std::cmp::Reverse(*modified));
        files.into_iter().map(|(_, path)| path).collect()
    }

    /// The most recently written readable index, whatever its commit.
    pub fn newest(&self) -> Option<RepoIndex> {
        self.by_age().iter().find_map(|path| Self::read(path))
    }

    /// Writes `index` (to a temporary file renamed into place, so readers never see half of
    /// it) and deletes all but the newest few.
    pub fn save(&self, index: &RepoIndex) -> io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let bytes = serde_json::to_vec(&index.stored()).map_err(io::Error::other)?;
        let partial = self.dir.join(format!(
            ".{}.{}.partial",
            index.commit(),
            std::process::id()
        ));
        std::fs::write(&partial, bytes)?;
        std::fs::rename(&partial, self.file_of(index.commit()))?;
        for old in self.by_age().into_iter().skip(KEPT) {
            // Another process may have removed it already.
            let _ = std::fs::remove_file(old);
        }
        Ok(())
    }

    /// The index of `commit`: stored, or built (seeded by the newest stored one) and stored.
    /// `tree` lists the commit's files; `read` gives the bytes at a path of that commit.
    /// `stats` is `None` when the stored index was used as it was.
    pub fn load_or_build(
        &self,
        commit: &str,
        tree: impl FnOnce() -> io::Result<Vec<TreeFile>>,
        read: &(dyn Fn(&str) -> Option<Vec<u8>> + Sync),
    ) -> io::Result<(RepoIndex, Option<BuildStats>)> {
        if let Some(index) = self.load(commit) {
            return Ok((index, None));
        }
        let earlier = self.newest();
        let (index, stats) = RepoIndex::build(commit, &tree()?, earlier.as_ref(), read);
        self.save(&index)?;
        Ok((index, Some(stats)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, &str)]) -> Vec<TreeFile> {
        files
            .iter()
            .map(|(path, content)| TreeFile {
                path: path.to_string(),
                blob: format!("blob-of-{content}"),
            })
            .collect()
    }

    #[test]
    fn stored_indexes_are_reused_and_seed_the_next_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = IndexDir::new(dir.path().join("repo"));
        let files = [("a.py", "def a():\n    pass\n"), ("b.py", "import a\n")];
        let read = |path: &str| {
            files
                .iter()
                .find(|(p, _)| *p == path)
                .map(|(_, c)| c.as_bytes().to_vec())
        };
        let (first, stats) = store
            .load_or_build("c1", || Ok(tree(&files)), &read)
            .unwrap();
        assert_eq!(stats.unwrap().parsed, 2);
        let (again, stats) = store
            .load_or_build("c1", || panic!("a stored index needs no listing"), &read)
            .unwrap();
        assert_eq!(stats, None);
        assert_eq!(again.paths(), first.paths());
        assert_eq!(again.imports_of("b.py"), ["a.py"]);

        let (_, stats) = store
            .load_or_build("c2", || Ok(tree(&files)), &|_| panic!("nothing changed"))
            .unwrap();
        assert_eq!(stats.unwrap().reused, 2);
    }

    #[test]
    fn a_damaged_index_is_rebuilt_and_old_ones_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let store = IndexDir::new(dir.path());
        std::fs::write(dir.path().join("c1.json"), "{not json").unwrap();
        let files = [("a.py", "X = 1\n")];
        let read = |_: &str| Some(b"X = 1\n".to_vec());
        let (index, stats) = store
            .load_or_build("c1", || Ok(tree(&files)), &read)
            .unwrap();
        assert!(stats.is_some());
        assert_eq!(index.paths().len(), 1);
        for n in 0..KEPT + 3 {
            store
                .load_or_build(&format!("k{n}"), || Ok(tree(&files)), &read)
                .unwrap();
        }
        assert_eq!(store.by_age().len(), KEPT);
    }
}
