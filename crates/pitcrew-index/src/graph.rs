//! The import graph of a repository's Python files and the ranking built on it: files near
//! the targets in that graph (what they import, what imports them, and so on outwards) come
//! first, as a personalised PageRank orders them — the idea of aider's repository map, over
//! imports rather than references.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The repository file a module name refers to, from `importer`'s location: absolute
/// imports from the root or a `src/` layout, relative ones from the importer's package.
pub fn resolve_module(module: &str, importer: &str, files: &BTreeSet<String>) -> Option<String> {
    let dots = module.chars().take_while(|c| *c == '.').count();
    let rest = &module[dots..];
    let mut bases: Vec<PathBuf> = Vec::new();
    if dots > 0 {
        let mut base = Path::new(importer)
            .parent()
            .unwrap_or(Path::new(""))
            .to_path_buf();
        for _ in 1..dots {
            base.pop();
        }
        bases.push(base);
    } else {
        bases.push(PathBuf::new());
        bases.push(PathBuf::from("src"));
    }
    for base in bases {
        let mut path = base;
        for part in rest.split('.').filter(|p| !p.is_empty()) {
            path.push(part);
        }
        let as_file = path.with_extension("py").to_string_lossy().into_owned();
        let as_package = path.join("__init__.py").to_string_lossy().into_owned();
        for candidate in [as_file, as_package] {
            if files.contains(&candidate) {
                return Some(candidate);
            }
        }
    }
    None
}

/// Files as numbers `0..n`; `imports[i]` are the files `i` imports, `importers[i]` the files
/// importing `i`, both sorted and without repeats.
#[derive(Debug, Clone, Default)]
pub(crate) struct ImportGraph {
    pub imports: Vec<Vec<usize>>,
    pub importers: Vec<Vec<usize>>,
}

/// How much of a file's rank flows along what it imports, and back to what imports it: a
/// module's dependencies explain it more than its users do, but both matter.
const FORWARD_WEIGHT: f64 = 1.0;
const BACKWARD_WEIGHT: f64 = 0.5;
const DAMPING: f64 = 0.85;
const ITERATIONS: usize = 30;

impl ImportGraph {
    pub fn new(imports: Vec<Vec<usize>>) -> ImportGraph {
        let mut importers = vec![Vec::new(); imports.len()];
        for (from, targets) in imports.iter().enumerate() {
            for &to in targets {
                importers[to].push(from);
            }
        }
        ImportGraph { imports, importers }
    }

    /// PageRank whose random walk restarts at `seeds` (every file alike when empty).
    pub fn rank(&self, seeds: &[usize]) -> Vec<f64> {
        let n = self.imports.len();
        if n == 0 {
            return Vec::new();
        }
        let mut restart = vec![0.0; n];
        if seeds.is_empty() {
            restart.fill(1.0 / n as f64);
        } else {
            for &seed in seeds {
                restart[seed] += 1.0 / seeds.len() as f64;
            }
        }
        let out_weight: Vec<f64> = (0..n)
            .map(|i| {
                FORWARD_WEIGHT * self.imports[i].len() as f64
                    + BACKWARD_WEIGHT * self.importers[i].len() as f64
            })
            .collect();
        let mut rank = restart.clone();
        let mut next = vec![0.0; n];
        for _ in 0..ITERATIONS {
            // Rank held by files with no edges goes back to the seeds.
            let mut stranded = 0.0;
            next.iter_mut()
                .zip(&restart)
                .for_each(|(x, r)| *x = (1.0 - DAMPING) * r);
            for i in 0..n {
                if out_weight[i] == 0.0 {
                    stranded += rank[i];
                    continue;
                }
                let share = DAMPING * rank[i] / out_weight[i];
                for &to in &self.imports[i] {
                    next[to] += share * FORWARD_WEIGHT;
                }
                for &from in &self.importers[i] {
                    next[from] += share * BACKWARD_WEIGHT;
                }
            }
            next.iter_mut()
                .zip(&restart)
                .for_each(|(x, r)| *x += DAMPING * stranded * r);
            std::mem::swap(&mut rank, &mut next);
        }
        rank
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(paths: &[&str]) -> BTreeSet<String> {
        paths.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn modules_resolve_absolute_src_layout_and_relative() {
        let files = files(&[
            "pkg/__init__.py",
            "pkg/util.py",
            "pkg/sub/sibling.py",
            "pkg/core.py",
            "src/lib/x.py",
        ]);
        let importer = "pkg/sub/mod.py";
        let resolve = |m: &str| resolve_module(m, importer, &files);
        assert_eq!(resolve("pkg.util").as_deref(), Some("pkg/util.py"));
        assert_eq!(resolve("pkg").as_deref(), Some("pkg/__init__.py"));
        assert_eq!(resolve(".sibling").as_deref(), Some("pkg/sub/sibling.py"));
        assert_eq!(resolve("..core").as_deref(), Some("pkg/core.py"));
        assert_eq!(resolve("lib.x").as_deref(), Some("src/lib/x.py"));
        assert_eq!(resolve("os"), None);
    }

    #[test]
    fn rank_flows_from_the_seeds_along_imports_and_back() {
        // 0 imports 1, 1 imports 2; 3 imports 0; 4 and 5 are elsewhere (5 imports 4).
        let graph = ImportGraph::new(vec![vec![1], vec![2], vec![], vec![0], vec![], vec![4]]);
        let rank = graph.rank(&[0]);
        // What the seed imports, then what that imports, and what imports the seed.
        assert!(rank[0] > rank[2] && rank[1] > rank[2], "{rank:?}");
        assert!(rank[3] > 0.0 && rank[1] > rank[3], "{rank:?}");
        assert_eq!(rank[4], 0.0);
        assert_eq!(rank[5], 0.0);
        let total: f64 = rank.iter().sum();
        assert!((total - 1.0).abs() < 1e-9, "{total}");
        // Without seeds, the most imported file leads.
        let global = ImportGraph::new(vec![vec![2], vec![2], vec![], vec![2]]).rank(&[]);
        assert!(global.iter().all(|r| *r <= global[2]), "{global:?}");
    }
}
