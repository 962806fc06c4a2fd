//! The index of one commit: per Python file, facts read once per blob and reused for every
//! task and run on that commit, and by blob id for the next commit (only changed files are
//! read again).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::graph::{ImportGraph, resolve_module};
use crate::python::imports_and_symbols;
use crate::tokens::count_tokens;

/// Directories never indexed: version control, environments, build output, caches (and any
/// directory whose name starts with a dot).
const SKIPPED_DIRS: &[&str] = &[
    "venv",
    "env",
    "node_modules",
    "target",
    "build",
    "dist",
    "__pycache__",
    "site-packages",
];
/// Python files beyond this many (in path order) are left out of the index.
pub const MAX_INDEXED_FILES: usize = 100_000;
/// Files larger than this are listed but not parsed or tokenized.
pub const MAX_PARSED_BYTES: usize = 1 << 20;

/// Whether a directory of this name is left out: hidden, an environment, build output or a
/// cache.
pub fn is_skipped_dir(name: &str) -> bool {
    name.starts_with('.') || SKIPPED_DIRS.contains(&name)
}

/// Whether a repository path is one the index covers: a `.py` file outside skipped
/// directories.
pub fn is_indexed(path: &str) -> bool {
    let mut parts: Vec<&str> = path.split('/').collect();
    let Some(name) = parts.pop() else {
        return false;
    };
    name.ends_with(".py") && !parts.iter().any(|dir| is_skipped_dir(dir))
}

/// One file of a commit's tree: its path and blob id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeFile {
    pub path: String,
    pub blob: String,
}

/// What the index knows of one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileFacts {
    pub blob: String,
    /// cl100k tokens of the whole file; for a file over [`MAX_PARSED_BYTES`] or unreadable
    /// as text, its size in bytes, an upper bound (a token is at least one byte).
    pub tokens: usize,
    /// Imported modules as written (see [`crate::python::imports`]).
    pub imports: Vec<String>,
    /// Its repository-map lines (see [`crate::python::symbols`]).
    pub symbols: Vec<String>,
    /// Tokens of its repository-map entry (`path:` and the symbol lines); 0 without symbols.
    pub map_tokens: usize,
}

/// The on-disk form; `version` changes whenever what is read from a file changes.
#[derive(Serialize, Deserialize)]
pub(crate) struct Stored {
    pub version: u32,
    pub commit: String,
    pub files: BTreeMap<String, FileFacts>,
}

pub(crate) const FORMAT_VERSION: u32 = 1;

/// How an index came to be.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BuildStats {
    /// Files whose facts were taken from an earlier index by blob id.
    pub reused: usize,
    /// Files read and parsed.
    pub parsed: usize,
    /// Python files over [`MAX_INDEXED_FILES`], left out.
    pub skipped: usize,
}

/// The index of one commit.
#[derive(Debug, Clone)]
pub struct RepoIndex {
    commit: String,
    files: BTreeMap<String, FileFacts>,
    paths: BTreeSet<String>,
    /// `order[i]` is file number `i` of the graph, in path order.
    order: Vec<String>,
    number: HashMap<String, usize>,
    graph: ImportGraph,
}

fn map_entry_text(path: &str, symbols: &[String]) -> String {
    format!("{path}:\n{}\n", symbols.join("\n"))
}

/// One file's entry in the repository map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapEntry<'a> {
    path: &'a str,
    symbols: &'a [String],
    /// Tokens of [`MapEntry::text`].
    pub tokens: usize,
}

impl MapEntry<'_> {
    pub fn text(&self) -> String {
        map_entry_text(self.path, self.symbols)
    }
}

fn read_facts(path: &str, blob: &str, bytes: Option<Vec<u8>>) -> FileFacts {
    let bytes = bytes.unwrap_or_default();
    let text = (bytes.len() <= MAX_PARSED_BYTES)
        .then(|| std::str::from_utf8(&bytes).ok())
        .flatten();
    let (tokens, imports, symbols) = match text {
        Some(text) => {
            let (imports, symbols) = imports_and_symbols(text);
            (count_tokens(text), imports, symbols)
        }
        None => (bytes.len(), Vec::new(), Vec::new()),
    };
    let map_tokens = if symbols.is_empty() {
        0
    } else {
        count_tokens(&map_entry_text(path, &symbols))
    };
    FileFacts {
        blob: blob.to_string(),
        tokens,
        imports,
        symbols,
        map_tokens,
    }
}

impl RepoIndex {
    /// Indexes the Python files of `tree` (the files of `commit`), taking the facts of every
    /// blob `earlier` already read and calling `read` (the bytes at a path of that commit)
    /// for the rest, on all cores.
    pub fn build(
        commit: &str,
        tree: &[TreeFile],
        earlier: Option<&RepoIndex>,
        read: &(dyn Fn(&str) -> Option<Vec<u8>> + Sync),
    ) -> (RepoIndex, BuildStats) {
        let mut stats = BuildStats::default();
        let mut wanted: Vec<&TreeFile> = tree.iter().filter(|f| is_indexed(&f.path)).collect();
        wanted.sort_by(|a, b| a.path.cmp(&b.path));
        if wanted.len() > MAX_INDEXED_FILES {
            stats.skipped = wanted.len() - MAX_INDEXED_FILES;
            wanted.truncate(MAX_INDEXED_FILES);
        }
        let known: HashMap<&str, (&str, &FileFacts)> = earlier
            .map(|index| {
                (index.files.iter())
                    .map(|(path, facts)| (facts.blob.as_str(), (path.as_str(), facts)))
                    .collect()
            })
            .unwrap_or_default();
        let mut files = BTreeMap::new();
        let mut to_read = Vec::new();
        for file in wanted {
            match known.get(file.blob.as_str()) {
                Some((path, facts)) => {
                    let mut facts = (*facts).clone();
                    if *path != file.path && !facts.symbols.is_empty() {
                        facts.map_tokens =
                            count_tokens(&map_entry_text(&file.path, &facts.symbols));
                    }
                    files.insert(file.path.clone(), facts);
                    stats.reused += 1;
                }
                None => to_read.push(file),
            }
        }
        stats.parsed = to_read.len();
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let chunk = to_read.len().div_ceil(threads).max(1);
        let read_files: Vec<(String, FileFacts)> = std::thread::scope(|scope| {
            let workers: Vec<_> = to_read
                .chunks(chunk)
                .map(|part| {
                    scope.spawn(move || {
                        part.iter()
                            .map(|f| (f.path.clone(), read_facts(&f.path, &f.blob, read(&f.path))))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().expect("an index worker panicked"))
                .collect()
        });
        files.extend(read_files);
        (RepoIndex::from_files(commit.to_string(), files), stats)
    }

    pub(crate) fn from_files(commit: String, files: BTreeMap<String, FileFacts>) -> RepoIndex {
        let paths: BTreeSet<String> = files.keys().cloned().collect();
        let order: Vec<String> = files.keys().cloned().collect();
        let number: HashMap<String, usize> = (order.iter().enumerate())
            .map(|(i, path)| (path.clone(), i))
            .collect();
        let imports = order
            .iter()
            .map(|path| {
                let mut targets: Vec<usize> = files[path]
                    .imports
                    .iter()
                    .filter_map(|module| resolve_module(module, path, &paths))
                    .filter_map(|p| number.get(&p).copied())
                    .filter(|&to| order[to] != *path)
                    .collect();
                targets.sort_unstable();
                targets.dedup();
                targets
            })
            .collect();
        RepoIndex {
            commit,
            files,
            paths,
            order,
            number,
            graph: ImportGraph::new(imports),
        }
    }

    pub(crate) fn stored(&self) -> Stored {
        Stored {
            version: FORMAT_VERSION,
            commit: self.commit.clone(),
            files: self.files.clone(),
        }
    }

    pub fn commit(&self) -> &str {
        &self.commit
    }

    /// The indexed Python files, in path order.
    pub fn paths(&self) -> &BTreeSet<String> {
        &self.paths
    }

    pub fn facts(&self, path: &str) -> Option<&FileFacts> {
        self.files.get(path)
    }

    /// The repository files `path` imports, in path order.
    pub fn imports_of(&self, path: &str) -> Vec<&str> {
        self.number.get(path).map_or_else(Vec::new, |&i| {
            (self.graph.imports[i].iter())
                .map(|&j| self.order[j].as_str())
                .collect()
        })
    }

    /// The repository files importing `path`, in path order.
    pub fn importers_of(&self, path: &str) -> Vec<&str> {
        self.number.get(path).map_or_else(Vec::new, |&i| {
            let mut found: Vec<&str> = (self.graph.importers[i].iter())
                .map(|&j| self.order[j].as_str())
                .collect();
            found.sort_unstable();
            found
        })
    }

    /// Every indexed file, those nearest `targets` in the import graph first (a personalised
    /// PageRank; with no indexed target, the most imported first). Ties go to files in a
    /// target's directory, then to path order.
    pub fn ranked(&self, targets: &[String]) -> Vec<&str> {
        let seeds: Vec<usize> = (targets.iter())
            .filter_map(|t| self.number.get(t).copied())
            .collect();
        let rank = self.graph.rank(&seeds);
        let target_dirs: BTreeSet<&Path> = targets
            .iter()
            .filter_map(|t| Path::new(t).parent())
            .collect();
        let near: Vec<bool> = (self.order.iter())
            .map(|path| {
                Path::new(path)
                    .parent()
                    .is_some_and(|d| target_dirs.contains(d))
            })
            .collect();
        let mut numbers: Vec<usize> = (0..self.order.len()).collect();
        numbers.sort_unstable_by(|&a, &b| {
            rank[b]
                .total_cmp(&rank[a])
                .then_with(|| near[b].cmp(&near[a]))
                .then_with(|| a.cmp(&b))
        });
        numbers
            .into_iter()
            .map(|i| self.order[i].as_str())
            .collect()
    }

    /// A file's repository-map entry; `None` for a file without symbols. Its text is made
    /// only when asked for: most entries of a large repository do not fit a prompt.
    pub fn map_entry<'a>(&'a self, path: &'a str) -> Option<MapEntry<'a>> {
        let facts = self.files.get(path)?;
        (!facts.symbols.is_empty()).then_some(MapEntry {
            path,
            symbols: &facts.symbols,
            tokens: facts.map_tokens,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn tree(files: &[(&str, &str)]) -> Vec<TreeFile> {
        files
            .iter()
            .map(|(path, content)| TreeFile {
                path: path.to_string(),
                // Content stands in for the blob id: equal content, equal blob.
                blob: format!("blob-of-{content}"),
            })
            .collect()
    }

    fn reader<'a>(
        files: &'a [(&'a str, &'a str)],
        reads: &'a AtomicUsize,
    ) -> impl Fn(&str) -> Option<Vec<u8>> + Sync + 'a {
        move |path| {
            reads.fetch_add(1, Ordering::Relaxed);
            files
                .iter()
                .find(|(p, _)| *p == path)
                .map(|(_, c)| c.as_bytes().to_vec())
        }
    }

    #[test]
    fn only_python_outside_skipped_and_hidden_dirs_is_indexed() {
        assert!(is_indexed("a.py"));
        assert!(is_indexed("pkg/sub/mod.py"));
        assert!(!is_indexed("README.md"));
        assert!(!is_indexed(".venv/lib/x.py"));
        assert!(!is_indexed("pkg/__pycache__/x.py"));
        assert!(!is_indexed("node_modules/x.py"));
        assert!(!is_indexed("a/.hidden/x.py"));
    }

    #[test]
    fn facts_graph_and_ranking() {
        let files = [
            ("app/__init__.py", ""),
            (
                "app/calc.py",
                "from app.util import clamp\n\ndef double(x):\n    return clamp(x) * 2\n",
            ),
            (
                "app/util.py",
                "def clamp(x, lo=0, hi=10):\n    return max(lo, min(hi, x))\n",
            ),
            (
                "app/api.py",
                "from .calc import double\n\nclass Handler:\n    def get(self):\n        return double(2)\n",
            ),
            (
                "other/far.py",
                "import other.leaf\n\ndef far():\n    pass\n",
            ),
            ("other/leaf.py", "def leaf():\n    pass\n"),
            ("docs/notes.md", "not python"),
        ];
        let reads = AtomicUsize::new(0);
        let (index, stats) = RepoIndex::build("c1", &tree(&files), None, &reader(&files, &reads));
        assert_eq!(
            stats,
            BuildStats {
                reused: 0,
                parsed: 6,
                skipped: 0
            }
        );
        assert_eq!(reads.load(Ordering::Relaxed), 6);
        assert_eq!(index.imports_of("app/calc.py"), ["app/util.py"]);
        assert_eq!(index.importers_of("app/calc.py"), ["app/api.py"]);
        assert!(index.facts("app/util.py").unwrap().tokens > 5);
        let entry = index.map_entry("app/api.py").unwrap();
        assert_eq!(entry.text(), "app/api.py:\n  class Handler: get\n");
        assert_eq!(entry.tokens, count_tokens(&entry.text()));
        assert_eq!(index.map_entry("app/__init__.py"), None);

        let ranked = index.ranked(&["app/calc.py".into()]);
        assert_eq!(ranked[0], "app/calc.py");
        let pos = |p: &str| ranked.iter().position(|r| *r == p).unwrap();
        assert!(pos("app/util.py") < pos("other/far.py"), "{ranked:?}");
        assert!(pos("app/api.py") < pos("other/leaf.py"), "{ranked:?}");
    }

    #[test]
    fn a_new_commit_reads_only_changed_blobs() {
        let first = [("a.py", "def a():\n    pass\n"), ("b.py", "import a\n")];
        let reads = AtomicUsize::new(0);
        let (one, _) = RepoIndex::build("c1", &tree(&first), None, &reader(&first, &reads));
        let second = [
            ("a.py", "def a():\n    pass\n"),
            ("b.py", "import a\nimport c\n"),
            ("moved/a2.py", "def a():\n    pass\n"),
            ("c.py", "X = 1\n"),
        ];
        let reads = AtomicUsize::new(0);
        let (two, stats) =
            RepoIndex::build("c2", &tree(&second), Some(&one), &reader(&second, &reads));
        assert_eq!(
            stats,
            BuildStats {
                reused: 2,
                parsed: 2,
                skipped: 0
            }
        );
        assert_eq!(reads.load(Ordering::Relaxed), 2);
        assert_eq!(two.imports_of("b.py"), ["a.py", "c.py"]);
        // A blob reused under another path gets its own map entry.
        let entry = two.map_entry("moved/a2.py").unwrap();
        assert!(entry.text().starts_with("moved/a2.py:"));
        assert_eq!(entry.tokens, count_tokens(&entry.text()));
    }

    #[test]
    fn large_or_binary_files_get_an_upper_bound_and_no_facts() {
        let big = "x = 1\n".repeat(MAX_PARSED_BYTES / 6 + 10);
        let files = [("big.py", big.as_str()), ("bin.py", "\u{0}\u{1}")];
        let reads = AtomicUsize::new(0);
        let mut tree = tree(&files);
        tree.push(TreeFile {
            path: "bad.py".into(),
            blob: "x".into(),
        });
        let read = |path: &str| {
            if path == "bad.py" {
                Some(vec![0xff, 0xfe, b'x'])
            } else {
                reader(&files, &reads)(path)
            }
        };
        let (index, _) = RepoIndex::build("c", &tree, None, &read);
        assert_eq!(index.facts("big.py").unwrap().tokens, big.len());
        assert!(index.facts("big.py").unwrap().imports.is_empty());
        assert_eq!(index.facts("bad.py").unwrap().tokens, 3);
    }
}
