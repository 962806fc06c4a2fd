//! The command-line interface: every command, flag and alias, with its help.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use pitcrew_core::{Priority, TaskKind, TaskStatus};

#[derive(Debug, Parser)]
#[command(
    name = "pitcrew",
    version,
    about = "Run fleets of LLM coding tasks against a git repository; accept only verified results.",
    long_about = "pitcrew keeps a durable queue of coding tasks (write unit tests for a module, \
        implement, fix, refactor, document), runs them with a pool of workers against \
        OpenAI-compatible models, checks every result, and keeps each accepted one as a commit \
        on the branch pitcrew/<task-id>. Your working tree is never touched.\n\n\
        Exit codes: 0 every task finished by the command completed; 1 a task failed or an \
        error occurred; 2 the command line or the configuration is wrong.",
    after_help = "Start with `pitcrew init`, then `pitcrew submit --kind unit_test --target src/x.py` \
        and `pitcrew run`."
)]
pub struct Cli {
    /// Repository to work in (default: the one containing the current directory).
    #[arg(short = 'C', long, global = true, value_name = "DIR")]
    pub repo: Option<PathBuf>,

    /// Configuration file (default: pitcrew.toml at the repository root, if present).
    #[arg(long, global = true, value_name = "FILE", env = "PITCREW_CONFIG")]
    pub config: Option<PathBuf>,

    /// Store URL, overriding the configuration, e.g. sqlite://.pitcrew/pitcrew.db.
    #[arg(long, global = true, value_name = "URL")]
    pub store: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a commented pitcrew.toml at the repository root.
    Init {
        /// Overwrite an existing pitcrew.toml.
        #[arg(long)]
        force: bool,
    },
    /// Add a task, or a batch of tasks from a file, to the queue.
    #[command(alias = "submit-task")]
    Submit(SubmitArgs),
    /// Show one task's status.
    #[command(alias = "get-status")]
    Status {
        /// Task id, or a unique prefix of it.
        id: String,
        #[command(flatten)]
        format: Format,
    },
    /// List tasks.
    List {
        /// Only tasks with this status (queued, running, completed, failed, cancelled).
        #[arg(long)]
        status: Option<TaskStatus>,
        /// Only tasks of this kind.
        #[arg(long)]
        kind: Option<TaskKind>,
        /// At most this many tasks, oldest first.
        #[arg(long)]
        limit: Option<u32>,
        #[command(flatten)]
        format: Format,
    },
    /// Count tasks by status and priority.
    #[command(alias = "queue-stats")]
    Queue {
        #[command(flatten)]
        format: Format,
    },
    /// Cancel a queued or running task.
    Cancel {
        /// Task id, or a unique prefix of it.
        id: String,
        #[command(flatten)]
        format: Format,
    },
    /// Put a failed or cancelled task back in the queue (with one more attempt).
    Retry {
        /// Task id, or a unique prefix of it.
        id: String,
        #[command(flatten)]
        format: Format,
    },
    /// Show a task in full: its attempts, findings and result.
    Show {
        /// Task id, or a unique prefix of it.
        id: String,
        /// Print the accepted result's patch.
        #[arg(long)]
        diff: bool,
        #[command(flatten)]
        format: Format,
    },
    /// Process the queue until it is empty, then print a summary.
    #[command(alias = "run-engine")]
    Run(RunArgs),
    /// List the prompt templates (shipped, or overridden in .pitcrew/prompts/NAME.j2).
    Prompts {
        #[command(subcommand)]
        action: Option<PromptsAction>,
        #[command(flatten)]
        format: Format,
    },
    /// Serve the queue until stopped (SIGTERM or Ctrl-C finish running tasks first); for
    /// long-running workers sharing a queue, e.g. on PostgreSQL.
    Worker(WorkerArgs),
    /// Apply pending store migrations (workers also apply them on start; a store migrated by
    /// a newer pitcrew is refused).
    Migrate {
        #[command(flatten)]
        format: Format,
    },
    /// Print the patch of a task's accepted result.
    Diff {
        /// Task id, or a unique prefix of it.
        id: String,
    },
    /// Apply accepted results onto the current branch, one commit per task, with a 3-way
    /// merge; a task whose patch conflicts is reported and left out.
    Apply {
        /// Task ids (or unique prefixes) to apply.
        #[arg(required_unless_present = "all")]
        ids: Vec<String>,
        /// Apply every completed task not applied yet, oldest first.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
        #[command(flatten)]
        format: Format,
    },
}

#[derive(Debug, Args)]
pub struct Format {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["kind", "file"])))]
pub struct SubmitArgs {
    /// What the task asks for: unit_test, integration_test, implement, fix, refactor, docs, custom.
    #[arg(long, conflicts_with = "file")]
    pub kind: Option<TaskKind>,

    /// A file the task works on, relative to the repository root or the current directory
    /// (repeat for several).
    #[arg(long = "target", value_name = "PATH")]
    pub targets: Vec<String>,

    /// What to do, in words (required for implement, fix, refactor and custom).
    #[arg(long, short = 'd')]
    pub description: Option<String>,

    /// critical, high, normal or low; critical tasks run first.
    #[arg(long, default_value = "normal")]
    pub priority: Priority,

    /// Model preset to use (default: models.default in the configuration).
    #[arg(long, value_name = "PRESET")]
    pub model: Option<String>,

    /// Submitting again with this key while the first task is unfinished returns the first.
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,

    /// Attempts before the task fails (default: workers.max_attempts).
    #[arg(long, value_name = "N")]
    pub max_attempts: Option<u32>,

    /// Commit the task starts from.
    #[arg(long, value_name = "REV", default_value = "HEAD")]
    pub base: String,

    /// Extra data kept with the task, as a JSON object.
    #[arg(long, value_name = "JSON")]
    pub metadata: Option<String>,

    /// Prompt template to use instead of the kind's own (see `pitcrew prompts`), e.g.
    /// type_hints, error_handling, retry_wrapper.
    #[arg(long, value_name = "NAME")]
    pub prompt: Option<String>,

    /// Submit every task in this file (.jsonl: one JSON object per line; .toml: [[task]]
    /// tables). If any entry is invalid, nothing is submitted.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["targets", "description", "model", "idempotency_key", "metadata", "prompt"])]
    pub file: Option<PathBuf>,

    #[command(flatten)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Tasks processed at once (default: workers.count).
    #[arg(long, short = 'w', value_name = "N")]
    pub workers: Option<u32>,

    /// Keep waiting for new tasks instead of stopping when the queue is empty.
    #[arg(long)]
    pub forever: bool,

    /// Name of this worker process in leases (default: host:pid).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    #[command(flatten)]
    pub format: Format,
}

#[derive(Debug, Subcommand)]
pub enum PromptsAction {
    /// Print one template's source (the project's override if there is one).
    Show {
        /// Template name, e.g. unit_test.
        name: String,
    },
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Tasks processed at once (default: workers.count).
    #[arg(long, short = 'w', value_name = "N")]
    pub workers: Option<u32>,

    /// Name of this worker process in leases (default: host:pid).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    #[test]
    fn the_cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_command_and_flag_has_help() {
        fn check(cmd: &clap::Command, path: &str) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                assert!(
                    arg.get_help().is_some(),
                    "`{path}` flag `{id}` has no help text"
                );
            }
            for sub in cmd.get_subcommands() {
                if sub.get_name() == "help" {
                    continue;
                }
                let sub_path = format!("{path} {}", sub.get_name());
                assert!(sub.get_about().is_some(), "`{sub_path}` has no description");
                check(sub, &sub_path);
            }
        }
        check(&Cli::command(), "pitcrew");
    }
}
