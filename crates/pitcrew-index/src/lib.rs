//! A repository index per base commit: for every Python file, its imports, its symbols (the
//! repository map's lines) and its token count, read once per blob and kept under pitcrew's
//! cache, so that gathering a task's context costs what the task needs, not what the
//! repository holds. The import graph over those files ranks the map around a task's targets.

mod graph;
mod index;
mod python;
mod store;
mod tokens;

pub use graph::resolve_module;
pub use index::{
    BuildStats, FileFacts, MAX_INDEXED_FILES, MAX_PARSED_BYTES, MapEntry, RepoIndex, TreeFile,
    is_indexed, is_skipped_dir,
};
pub use python::{imports, symbols};
pub use store::IndexDir;
pub use tokens::count_tokens;
