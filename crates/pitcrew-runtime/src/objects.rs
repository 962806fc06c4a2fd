//! Git objects computed in memory: the id git gives a blob, and the trees of a commit that
//! changes a few files, built from the base commit's trees along those files' paths only
//! (what git would store, so that what it reports back can be checked against them).

use std::collections::BTreeMap;

/// How a repository names its objects: SHA-1, or SHA-256 (`extensions.objectFormat`), told
/// apart by the length of a commit id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ObjectFormat {
    Sha1,
    Sha256,
}

impl ObjectFormat {
    pub(crate) fn of(commit: &str) -> ObjectFormat {
        if commit.len() == 64 {
            ObjectFormat::Sha256
        } else {
            ObjectFormat::Sha1
        }
    }

    /// The id of an object of `kind` (`blob`, `tree`) holding `body`.
    fn id(self, kind: &str, body: &[u8]) -> String {
        let header = format!("{kind} {}\0", body.len());
        let digest: Vec<u8> = match self {
            ObjectFormat::Sha1 => {
                use sha1::Digest as _;
                let mut hash = sha1::Sha1::new();
                hash.update(header.as_bytes());
                hash.update(body);
                hash.finalize().to_vec()
            }
            ObjectFormat::Sha256 => {
                use sha2::Digest as _;
                let mut hash = sha2::Sha256::new();
                hash.update(header.as_bytes());
                hash.update(body);
                hash.finalize().to_vec()
            }
        };
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The id git gives a blob holding `bytes`.
    pub(crate) fn blob_id(self, bytes: &[u8]) -> String {
        self.id("blob", bytes)
    }

    /// The id git gives `tree`; `None` when an entry's id or mode is not one git wrote.
    pub(crate) fn tree_id(self, tree: &Tree) -> Option<String> {
        let mut body = Vec::new();
        for (name, entry) in tree.in_git_order() {
            // Stored without leading zeros (`40000` for a tree, as ls-tree's `040000`).
            let mode = u32::from_str_radix(&entry.mode, 8).ok()?;
            body.extend_from_slice(format!("{mode:o} {name}\0").as_bytes());
            body.extend_from_slice(&hex::decode(&entry.id).ok()?);
        }
        Some(self.id("tree", &body))
    }
}

/// One entry of a tree, as `git ls-tree` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TreeEntry {
    /// `100644`, `100755`, `120000`, `040000`, `160000`.
    pub mode: String,
    /// `blob`, `tree`, `commit`.
    pub kind: String,
    pub id: String,
}

/// A tree's entries by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Tree(pub BTreeMap<String, TreeEntry>);

impl Tree {
    /// Entries in the order git stores them: by name, a tree's name compared as if it
    /// ended in `/`.
    fn in_git_order(&self) -> Vec<(&String, &TreeEntry)> {
        let mut entries: Vec<(&String, &TreeEntry)> = self.0.iter().collect();
        entries.sort_by_cached_key(|(name, entry)| {
            let mut key = name.as_bytes().to_vec();
            if entry.kind == "tree" {
                key.push(b'/');
            }
            key
        });
        entries
    }

    /// The tree as `git mktree -z` reads it.
    pub(crate) fn mktree_input(&self) -> String {
        self.0
            .iter()
            .map(|(name, e)| format!("{} {} {}\t{name}\0", e.mode, e.kind, e.id))
            .collect()
    }
}

/// The trees listed by `git ls-tree -z` output (non-recursive), by directory (`""` for the
/// root): each entry goes to the tree of the directory its path is in.
pub(crate) fn parse_ls_tree(listing: &str, trees: &mut BTreeMap<String, Tree>) {
    for record in listing.split_terminator('\0') {
        let Some((info, path)) = record.split_once('\t') else {
            continue;
        };
        let mut info = info.split(' ');
        let (Some(mode), Some(kind), Some(id)) = (info.next(), info.next(), info.next()) else {
            continue;
        };
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        trees.entry(dir.to_string()).or_default().0.insert(
            name.to_string(),
            TreeEntry {
                mode: mode.to_string(),
                kind: kind.to_string(),
                id: id.to_string(),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pitcrew_testkit::TempRepo;

    #[test]
    fn ids_are_the_ones_git_computes() {
        let repo = TempRepo::with_files(&[
            ("a.py", "A = 1\n"),
            ("a-b.py", "dash\n"),
            ("a/x.py", "X = 1\n"),
            ("b/c/d.py", "D = 1\n"),
        ]);
        let format = ObjectFormat::of(&repo.git(&["rev-parse", "HEAD"]));
        assert_eq!(format, ObjectFormat::Sha1);
        assert_eq!(
            format.blob_id(b"A = 1\n"),
            repo.git(&["rev-parse", "HEAD:a.py"])
        );
        // `a` (a tree) sorts after `a-b.py` and `a.py` in git's order, not before them.
        let mut trees = BTreeMap::new();
        parse_ls_tree(&repo.git(&["ls-tree", "-z", "HEAD"]), &mut trees);
        for dir in ["b/", "b/c/"] {
            let listing = repo.git(&["ls-tree", "-z", "--full-tree", "HEAD", "--", dir]);
            parse_ls_tree(&listing, &mut trees);
        }
        assert_eq!(trees.keys().collect::<Vec<_>>(), ["", "b", "b/c"]);
        for (dir, tree) in &trees {
            let rev = format!("HEAD:{dir}");
            assert_eq!(
                format.tree_id(tree).as_deref(),
                Some(repo.git(&["rev-parse", &rev]).as_str()),
                "{dir}"
            );
        }
    }

    #[test]
    fn ids_of_a_sha256_repository_too() {
        let dir = tempfile::tempdir().unwrap();
        let git = |args: &[&str]| {
            let out = std::process::Command::new("git")
                .args(["-c", "user.name=t", "-c", "user.email=t@localhost"])
                .args(args)
                .current_dir(dir.path())
                .env_remove("GIT_DIR")
                .env_remove("GIT_INDEX_FILE")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout)
                .unwrap()
                .trim_end()
                .to_string()
        };
        git(&["init", "--quiet", "--object-format=sha256"]);
        std::fs::create_dir_all(dir.path().join("a")).unwrap();
        std::fs::write(dir.path().join("a/x.py"), "X = 1\n").unwrap();
        std::fs::write(dir.path().join("a.py"), "A = 1\n").unwrap();
        git(&["add", "-A"]);
        git(&["commit", "--quiet", "-m", "sha256"]);
        let head = git(&["rev-parse", "HEAD"]);
        let format = ObjectFormat::of(&head);
        assert_eq!(format, ObjectFormat::Sha256);
        assert_eq!(format.blob_id(b"A = 1\n"), git(&["rev-parse", "HEAD:a.py"]));
        let mut trees = BTreeMap::new();
        parse_ls_tree(&git(&["ls-tree", "-z", "HEAD"]), &mut trees);
        assert_eq!(
            format.tree_id(&trees[""]),
            Some(git(&["rev-parse", "HEAD^{tree}"]))
        );
    }
}
