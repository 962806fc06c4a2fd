//! Runtimes turn a task into changed files in its own git worktree. This crate holds the git
//! plumbing for those worktrees, the built-in agent, and the parsing and path checks it
//! applies to a model's reply.

mod agent;
mod cache;
mod context;
mod git;
mod index;
mod layout;
mod locate;
mod objects;
mod paths;
mod pool;
mod prompt;
mod reply;

pub use agent::{
    AgentDetails, AgentEvent, AgentRun, AgentSettings, BuiltinAgent, IterationRecord,
    MAX_FILES_PER_REPLY, MAX_REPLY_FILE_BYTES, Verdict, summary,
};
pub use cache::{CachedReply, ReplyCache};
pub use context::{
    ContextItem, ContextReport, ContextSettings, gather, imports_of, python_files, tests_of,
};
pub use git::{Applied, GitError, Repo, Worktree, WorktreeChanges, without_credentials};
pub use index::RepoIndexes;
pub use layout::cache_root;
pub use locate::{LocateError, RepoIdentity, existing_clone, locate_repo};
pub use paths::{RefusedPath, normalize, resolve_inside};
pub use pitcrew_index::count_tokens;
pub use pool::{POOL_PREFIX, WorktreePool, WorktreeSlot};
pub use prompt::{
    Convention, PromptContext, PromptError, PromptFile, PromptInfo, PromptLibrary, PromptSource,
    default_prompt, prompt_name,
};
pub use reply::{Extraction, ReplyFile, extract_files};
