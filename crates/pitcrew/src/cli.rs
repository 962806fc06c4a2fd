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
        /// Task handle (#42), id, or a unique prefix of the id.
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
        /// Task handle (#42), id, or a unique prefix of the id.
        id: String,
        #[command(flatten)]
        format: Format,
    },
    /// Put a failed or cancelled task back in the queue (with one more attempt).
    Retry {
        /// Task handle (#42), id, or a unique prefix of the id.
        id: String,
        #[command(flatten)]
        format: Format,
    },
    /// Show a task in full: its attempts, findings and result.
    Show {
        /// Task handle (#42), id, or a unique prefix of the id.
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
    /// Serve the HTTP API — tasks, results, models and live events under /api/v1, its
    /// OpenAPI document at /api/v1/openapi.json — until stopped; with --workers, work the
    /// queue in this process too.
    #[command(
        long_about = "Serve the HTTP API until Ctrl-C or SIGTERM: REST under /api/v1 (submit \
            one task or a batch, list, show, cancel, retry, diff, queue counts, models, \
            select-model), Server-Sent Events at /api/v1/events, the OpenAPI document at \
            /api/v1/openapi.json, and /healthz and /readyz (no token needed).\n\n\
            Every /api/v1 request needs `Authorization: Bearer TOKEN` when a token is \
            configured (`[server] token` in pitcrew.toml, or PITCREW_SERVER_TOKEN); without \
            one, only a loopback address may be bound.\n\n\
            With --workers N the queue is worked in this process, like `pitcrew worker`, and \
            the events of those tasks stream at /api/v1/events; tasks worked by other \
            processes are not streamed (poll /api/v1/tasks for them)."
    )]
    Serve(ServeArgs),
    /// Apply pending store migrations (workers also apply them on start; a store migrated by
    /// a newer pitcrew is refused).
    Migrate {
        #[command(flatten)]
        format: Format,
    },
    /// List the model registry with each model's live health (circuit, cooldown, success
    /// rate, latency, price).
    Models {
        #[command(subcommand)]
        action: Option<ModelsAction>,
        #[command(flatten)]
        format: Format,
    },
    /// Rank the models for a kind of task, with each score component and why models were
    /// left out.
    SelectModel {
        /// The task kind to select for.
        #[arg(long, default_value = "unit_test")]
        kind: TaskKind,
        /// low, medium or high.
        #[arg(long, default_value = "medium")]
        complexity: pitcrew_llm::Complexity,
        /// Leave out models whose learned quality is below this (0–1).
        #[arg(long, value_name = "Q")]
        min_quality: Option<f64>,
        /// Only models that cost nothing.
        #[arg(long)]
        free_only: bool,
        /// A preset or model to prefer.
        #[arg(long, value_name = "PRESET")]
        model: Option<String>,
        #[command(flatten)]
        format: Format,
    },
    /// Run the validation pipeline on files you already have (e.g. in a pre-commit hook).
    Validate {
        /// Files to validate (tests, or code), relative to the repository.
        #[arg(required = true)]
        paths: Vec<String>,
        /// The code under test (for imports and coverage); repeat for several.
        #[arg(long = "target", value_name = "SRC")]
        targets: Vec<String>,
        /// Which rules apply: those of this task kind.
        #[arg(long, default_value = "unit_test")]
        kind: TaskKind,
        #[command(flatten)]
        format: Format,
    },
    /// Summarise tasks: outcome, model, iterations, cost, quality, coverage gained.
    Report {
        /// Only attempts made by this run (its id is printed when `run` ends).
        #[arg(long, value_name = "RUN")]
        run: Option<String>,
        /// md (Markdown) or json.
        #[arg(long, default_value = "md")]
        format: ReportFormat,
        /// The same as `--format json`, as on every read command.
        #[arg(long, conflicts_with = "format")]
        json: bool,
    },
    /// Figures from the recorded attempts: per model, task kind and run, and in total.
    #[command(long_about = METRICS_HELP)]
    Metrics(MetricsArgs),
    /// List recent webhook deliveries, newest first: event, task, URL, state (pending,
    /// retrying, delivered, failed), attempts and the last answer.
    #[command(long_about = WEBHOOKS_HELP)]
    Webhooks {
        /// At most this many deliveries.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[command(flatten)]
        format: Format,
    },
    /// Plan a batch of tasks from what the repository lacks.
    Plan {
        #[command(subcommand)]
        action: PlanAction,
    },
    /// Print the patch of a task's accepted result.
    Diff {
        /// Task handle (#42), id, or a unique prefix of the id.
        id: String,
        #[command(flatten)]
        format: Format,
    },
    /// Apply accepted results onto the current branch, one commit per task, with a 3-way
    /// merge; a task whose patch conflicts is reported and left out.
    Apply {
        /// Task handles (#42), ids or unique prefixes of ids, to apply.
        #[arg(required_unless_present = "all")]
        ids: Vec<String>,
        /// Apply every completed task not applied yet, oldest first.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
        #[command(flatten)]
        format: Format,
    },
    /// Serve a SIMULATED OpenAI-compatible provider (fake replies, latency, quotas, errors
    /// and stream faults) for load tests and demos, until Ctrl-C or SIGTERM.
    #[command(
        long_about = "Serve a SIMULATED OpenAI-compatible provider for load tests and demos: \
            POST /v1/chat/completions (streamed or not) and GET /v1/models, with per-model \
            latency, quotas, error rates, stream faults and scripted replies. Its replies are \
            fake, and every one says so. pitcrew never uses it unless a provider's base_url \
            points at it.\n\n\
            --config names the simulator's sim.toml here (see docs/sim.md); PITCREW_CONFIG is \
            not read. Without it the simulator serves one model, sim/coder, with filler replies."
    )]
    Sim(SimArgs),
    /// Try pitcrew on an example project with a SIMULATED model (no real model is called, no
    /// key is needed): real git, real pytest and coverage checks, a report at the end.
    #[command(
        long_about = "Try pitcrew on an example project, with a SIMULATED model: no real model \
            is called and no API key is used. The demo writes a small Python package (textstats, \
            three modules, no tests) into a new directory, commits it with git, starts pitcrew's \
            simulator in this process with a fixed script, queues a unit_test task per module \
            and runs them as `pitcrew submit` and `pitcrew run` do: every reply is checked for \
            real with pytest and coverage (`pip install pytest coverage` first). The script \
            makes the tasks meet a rate limit, a cut stream, a prose reply and tests that \
            disagree with the code; the demo ends with the report, what each task ended as and \
            why, and the commands to look at the results.\n\n\
            The directory is kept, so that you can look around: DIR with --keep (new or \
            empty), else a new temporary directory whose path is printed (remove it when \
            done). Its queue, configuration and worktrees are its own: your repositories are \
            not touched, and neither --repo, --config, --store nor a PITCREW_* variable can \
            point it elsewhere or at a real provider. Like any run it \
            uses pitcrew's cache (~/.cache/pitcrew, or $XDG_CACHE_HOME/pitcrew) for the \
            repository index; the demo's worktrees there are removed when it ends."
    )]
    Demo(DemoArgs),
}

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Create the example project in DIR (a new or empty directory) instead of a new
    /// temporary one.
    #[arg(long, value_name = "DIR")]
    pub keep: Option<PathBuf>,

    #[command(flatten)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct SimArgs {
    /// Address to listen on, e.g. 127.0.0.1:8787 (port 0 picks a free one).
    #[arg(long, value_name = "IP:PORT")]
    pub bind: std::net::SocketAddr,

    /// Allow listening on a non-loopback address: the simulator has no authentication, so
    /// anyone who can reach it can use it.
    #[arg(long)]
    pub allow_remote: bool,
}

const METRICS_HELP: &str = "Figures from the recorded attempts: per model, per task kind, \
    per run, and in total. An attempt counts for the model that gave its last reply; every call \
    to a model (failed ones included, as the router records them) counts for that model. A \
    figure without data is shown as \"—\" (null in JSON), never as 0.\n\n\
    --json prints an object with stable fields: window {since, until} (RFC 3339; since is \
    --since, else the first counted attempt's start; until is now with --since or while an \
    attempt runs, else the last one's end), model and kind (the filters given, or null), \
    totals, models (each with model, the provider's id), kinds (each with kind) and runs \
    (each with run and started_at). Totals, models, kinds and runs all carry: attempts, \
    completed, success_rate (completed over completed + failed + possible bug), calls, \
    latency_p50_ms, latency_p95_ms and time_to_first_token_p50_ms (of the calls that brought a \
    usable reply), tokens_in, tokens_out, cost_usd, mean_quality (0-1), rate_limited (calls \
    refused for a rate limit or quota) and content_failures (replies refused as unusable by \
    the router or the agent's checks). Totals add tasks (the counted attempts' tasks by status \
    now), throughput_per_hour (completed attempts per hour of the window) and \
    accepted_results_per_usd. webhooks counts the webhook deliveries of the events recorded \
    in the window (--since only; --model and --kind do not narrow them): deliveries by state \
    (pending, retrying, delivered, failed), delivered_ratio (delivered over delivered + \
    failed) and endpoints (each with url and its deliveries by state).\n\n\
    --prometheus prints the same figures in the Prometheus text format, as gauges: \
    pitcrew_<figure> for the totals, pitcrew_model_<figure>{model}, pitcrew_kind_<figure>{kind} \
    and pitcrew_run_<figure>{run}, pitcrew_webhook_deliveries{state}, \
    pitcrew_webhook_delivered_ratio and pitcrew_webhook_endpoint_deliveries{url,state}; times \
    in seconds, a figure without data without a sample.";

const WEBHOOKS_HELP: &str = "List recent webhook deliveries, newest first. A delivery is made \
    for each [[webhooks]] endpoint of pitcrew.toml when a task ends (task.completed, task.failed, \
    task.possible_bug, task.cancelled) or `pitcrew run` ends (run.finished), in the same write \
    that records the end; the dispatcher of `run`, `worker` and `serve` POSTs it, signed, and \
    retries a failure with exponential backoff until the endpoint's max_attempts are used.\n\n\
    States: pending (not attempted yet, or under way), retrying (an attempt failed; another is \
    due), delivered (the endpoint answered 2xx), failed (given up). --json prints each with \
    seq, event_id, event_type, task_id, url, state, attempts, next_attempt_at, \
    last_status_code, last_error, created_at, updated_at and finished_at. How receivers verify \
    a delivery: docs/integrations.md.";

/// The flags of `pitcrew metrics`.
#[derive(Debug, Args)]
pub struct MetricsArgs {
    /// Only attempts started in this window: a duration back from now (30m, 24h, 7d) or an
    /// RFC 3339 timestamp.
    #[arg(long, value_name = "WHEN")]
    pub since: Option<pitcrew_metrics::Since>,

    /// Only this model (its id or registry name): the attempts whose last reply it gave and
    /// the calls made to it.
    #[arg(long, value_name = "MODEL")]
    pub model: Option<String>,

    /// Only attempts at tasks of this kind.
    #[arg(long)]
    pub kind: Option<TaskKind>,

    #[command(flatten)]
    pub format: Format,

    /// Print the Prometheus text exposition format instead of a table.
    #[arg(long, conflicts_with = "json")]
    pub prometheus: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Md,
    Json,
}

#[derive(Debug, Clone, Args)]
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

    /// low, medium or high: steers model selection (speed, balance, quality).
    #[arg(long, value_name = "LEVEL")]
    pub complexity: Option<pitcrew_llm::Complexity>,

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

    /// Runtime that works the task: builtin, or an external agent under [runtimes.NAME]
    /// (default: the kind's in [runtime.kinds], else runtime.default).
    #[arg(long, value_name = "NAME")]
    pub runtime: Option<String>,

    /// Submit every task in this file (.jsonl: one JSON object per line; .toml: [[task]]
    /// tables). If any entry is invalid, nothing is submitted.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["targets", "description", "model", "idempotency_key", "metadata", "prompt", "complexity", "runtime"])]
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

    /// Print the generation of this task (handle, id or prefix) live as it streams.
    #[arg(long, value_name = "ID")]
    pub follow: Option<String>,

    #[command(flatten)]
    pub engine: EngineFlags,

    #[command(flatten)]
    pub format: Format,
}

/// Flags shared by `run` and `worker`.
#[derive(Debug, Args)]
pub struct EngineFlags {
    /// Reuse the reply of an identical earlier call instead of paying for it again (kept in
    /// .pitcrew/cache/replies); hits are marked in attempts and reports.
    #[arg(long)]
    pub cache: bool,

    /// Leave each attempt's worktree for inspection (under ~/.cache/pitcrew/worktrees/, or
    /// $XDG_CACHE_HOME/pitcrew/worktrees/, in a folder per repository).
    #[arg(long)]
    pub keep_worktrees: bool,

    /// Stop claiming tasks once this run has spent this many USD (default: budget.per_run_usd).
    /// Every call reserves what it may cost in the store first, so workers sharing a run
    /// (`--run`) never spend more than this together.
    #[arg(long, value_name = "USD")]
    pub budget: Option<f64>,

    /// Join the run NAME: every `run` or `worker` given the same name, on any machine using
    /// the same store, shares one budget and one report (`pitcrew report --run NAME`). The
    /// budget counts everything the run ever spent, so give each new run a new name.
    #[arg(long = "run", value_name = "NAME")]
    pub run_name: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum PromptsAction {
    /// Print one template's source (the project's override if there is one).
    Show {
        /// Template name, e.g. unit_test.
        name: String,
        #[command(flatten)]
        format: Format,
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

    #[command(flatten)]
    pub engine: EngineFlags,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (default: server.bind, 127.0.0.1:8420); port 0 picks a free one.
    /// Anything but a loopback address needs a token.
    #[arg(long, value_name = "IP:PORT")]
    pub bind: Option<std::net::SocketAddr>,

    /// Work the queue in this process with N workers, streaming their events (default 0:
    /// serve the API only).
    #[arg(long, short = 'w', value_name = "N", default_value_t = 0)]
    pub workers: u32,

    /// Name of this worker process in leases (default: host:pid).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    #[command(flatten)]
    pub engine: EngineFlags,
}

#[derive(Debug, Subcommand)]
pub enum ModelsAction {
    /// Read a provider's model list (OpenRouter's /api/v1/models format) and keep its prices
    /// and context windows in .pitcrew/synced-models.toml.
    Sync {
        /// Read the list from this JSON file instead of the provider.
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
        /// The provider to fetch from (or whose models the file lists).
        #[arg(long, default_value = "openrouter")]
        provider: String,
        #[command(flatten)]
        format: Format,
    },
}

#[derive(Debug, Subcommand)]
pub enum PlanAction {
    /// Queue a unit_test task for every module with no tests (or low coverage).
    UnitTests {
        /// Directory (or file) to look for modules in.
        path: PathBuf,
        /// A coverage report (coverage.py JSON, Cobertura XML or lcov): modules below
        /// --below percent covered get a task.
        #[arg(long, value_name = "REPORT")]
        coverage: Option<PathBuf>,
        /// With --coverage: the line coverage (percent) under which a module gets a task.
        #[arg(long, default_value_t = 80.0, value_name = "PERCENT")]
        below: f64,
        /// critical, high, normal or low.
        #[arg(long, default_value = "normal")]
        priority: Priority,
        /// Print the batch instead of submitting it.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        format: Format,
    },
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
