//! Running one attempt of an external agent: [`run`].

use std::ffi::OsString;
use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use pitcrew_core::Secret;
use pitcrew_sandbox::{CommandSpec, Confinement, EnvPolicy, Output, SandboxError};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::unbounded_channel;

use crate::events::{self, Item, State, StreamParser, Tracker, classify, cut};
use crate::spec::{
    CommandAgent, Common, Network, OpenhandsDocker, Piece, RuntimeSpec, parse_template,
};
use crate::transcript::{Transcript, TranscriptEntry};

/// How pitcrew's gateway is reached: an OpenAI-compatible endpoint on loopback that relays
/// to the configured provider and accepts only this run's session token.
#[derive(Debug, Clone)]
pub struct GatewayAccess {
    /// `http://127.0.0.1:PORT/v1`.
    pub base_url: String,
    pub port: u16,
    /// The session token; the only credential an agent gets.
    pub token: Secret,
    /// The model name the gateway serves, e.g. `pitcrew`.
    pub model: String,
}

/// One attempt to run.
pub struct Job<'a> {
    /// The runtime's name in the config, for messages.
    pub name: &'a str,
    /// Part of the Docker container's name, `pitcrew-<task_id>-<attempt>`.
    pub task_id: &'a str,
    pub attempt: u32,
    /// The agent's working directory; writable.
    pub worktree: &'a Path,
    /// A per-attempt directory pitcrew keeps: trajectories, the prompt file, the agent's
    /// `HOME` (`home/`); writable.
    pub scratch: &'a Path,
    /// The repository's `.git`, granted read-only so `git diff`/`git log` work inside.
    pub git_dir: Option<&'a Path>,
    /// The rendered task prompt.
    pub prompt: &'a str,
    pub targets: &'a [String],
    pub gateway: &'a GatewayAccess,
    /// Where `env` pass-through values (and `PATH`) come from; `None`: this process.
    pub parent_env: Option<Vec<(OsString, OsString)>>,
    /// Called with each transcript entry as it happens (already redacted).
    pub on_event: &'a mut (dyn FnMut(&TranscriptEntry) + Send),
}

impl fmt::Debug for Job<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Job")
            .field("name", &self.name)
            .field("task_id", &self.task_id)
            .field("attempt", &self.attempt)
            .field("worktree", &self.worktree)
            .field("scratch", &self.scratch)
            .field("git_dir", &self.git_dir)
            .field("prompt_bytes", &self.prompt.len())
            .field("targets", &self.targets)
            .field("gateway", &self.gateway)
            .finish_non_exhaustive()
    }
}

/// What one attempt came to.
#[derive(Debug, Clone)]
pub struct ExternalRun {
    /// Judged from what the agent produced (events, trajectory, outcome file), never from
    /// its exit code alone.
    pub outcome: Result<AgentFinish, RuntimeFailure>,
    /// The latest [`crate::MAX_ENTRIES`] entries, redacted.
    pub transcript: Vec<TranscriptEntry>,
    /// The command as run (the program resolved), secrets redacted.
    pub argv: Vec<String>,
    /// `None` when it was killed or never started.
    pub exit_code: Option<i32>,
    pub duration: Duration,
}

/// The agent said it finished. Whether it changed anything, and whether that is allowed,
/// the engine judges from git.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentFinish {
    /// The agent's own final message; informational only.
    pub summary: Option<String>,
}

/// Why an attempt produced no usable finish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{class}: {message}")]
pub struct RuntimeFailure {
    pub class: FailureClass,
    pub message: String,
}

/// The kinds of [`RuntimeFailure`]. "No changes" and "policy violation" are judged by the
/// engine from git, not here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureClass {
    /// The runtime cannot work on this machine as configured, whatever is retried: its
    /// program is missing or not executable, its settings are refused, the machine cannot
    /// confine it.
    Misconfigured,
    /// The agent started but ended without producing anything (no event, no trajectory):
    /// it may do better another time (a container that did not come up, say).
    Startup,
    /// Still running at the runtime's timeout; its processes (and container) were removed.
    Timeout,
    /// Looping: `stuck_after` identical actions or condensations in a row, or OpenHands'
    /// own loop detection. Stopped early.
    Stuck,
    /// The agent reported an error, or ended without finishing.
    AgentError,
}

impl FailureClass {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Misconfigured => "misconfigured",
            Self::Startup => "startup",
            Self::Timeout => "timeout",
            Self::Stuck => "stuck",
            Self::AgentError => "agent-error",
        }
    }
}

impl fmt::Display for FailureClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn failure(class: FailureClass, message: impl Into<String>) -> RuntimeFailure {
    RuntimeFailure {
        class,
        message: message.into(),
    }
}

/// Prompts longer than this go through a file: Linux limits one argument to 128 KiB.
pub const MAX_PROMPT_ARG: usize = 100 * 1024;
/// How much of each output stream the sandbox keeps.
const OUTPUT_LIMIT: usize = 256 * 1024;
/// How many lines of stderr end up in the transcript and in failure messages.
const STDERR_TAIL_LINES: usize = 40;
/// How long `docker rm -f` may take.
const DOCKER_RM_TIMEOUT: Duration = Duration::from_secs(60);
/// Where the Docker runtime's trajectory lands, inside and outside the container.
const CONTAINER_TRAJECTORIES: &str = "/trajectories";
const TRAJECTORY_FILE: &str = "trajectory.json";
/// Docker's own exit codes for "the container never ran" (`docker run` reference).
const DOCKER_OWN_FAILURES: std::ops::RangeInclusive<i32> = 125..=127;

/// Runs one attempt of `spec` and reports how it went. Never fails as such: every way an
/// attempt can go wrong is a [`RuntimeFailure`] in [`ExternalRun::outcome`].
///
/// The agent runs confined (see [`pitcrew_sandbox::Confinement`]): it may write only the
/// worktree and the scratch directory, read the system, the repository's `.git`, its own
/// program's prefix and the configured `read` paths; with `network = "gateway"` it may open
/// TCP connections to the gateway's port only. Its environment is exactly `PATH`, `LANG`
/// (and the locale, `TZ`, `TERM` where set), the configured `env` and `set`, and the
/// runtime's own variables, where the gateway's session token is the only credential.
pub async fn run(spec: &RuntimeSpec, job: Job<'_>) -> ExternalRun {
    let started = Instant::now();
    let Job {
        name,
        task_id,
        attempt,
        worktree,
        scratch,
        git_dir,
        prompt,
        targets,
        gateway,
        parent_env,
        on_event,
    } = job;
    let token = gateway.token.expose().to_owned();
    let mut transcript = Transcript::new(started, &[&token], on_event);
    let ctx = Context {
        name,
        worktree,
        scratch,
        git_dir,
        prompt,
        targets,
        gateway,
        parent_env: parent_env.unwrap_or_else(|| std::env::vars_os().collect()),
    };
    let prepared = match prepare(spec, &ctx, task_id, attempt) {
        Ok(prepared) => prepared,
        Err(failure) => {
            transcript.push("error", &failure.message);
            return ExternalRun {
                outcome: Err(failure),
                transcript: transcript.finish(),
                argv: Vec::new(),
                exit_code: None,
                duration: started.elapsed(),
            };
        }
    };
    let argv: Vec<String> = std::iter::once(prepared.program.display().to_string())
        .chain(prepared.args.iter().cloned())
        .map(|a| transcript.redact(&a))
        .collect();
    tracing::debug!(
        runtime = name,
        kind = spec.kind_name(),
        ?argv,
        "starting external agent"
    );

    let common = spec.common();
    let mut command = CommandSpec::new(prepared.program.as_os_str(), worktree)
        .args(&prepared.args)
        .env_policy(prepared.env.clone())
        .parent_env(ctx.parent_env.clone())
        .timeout(spec.timeout())
        .output_limit(OUTPUT_LIMIT)
        .isolate_network(false)
        // Agents run their shells in terminals (OpenHands' terminal tool drives tmux).
        .terminals(true)
        .confine(prepared.confinement.clone());
    if common.network == Network::Gateway {
        command = command.connect_only_to(vec![gateway.port]);
    }
    let events_on_stdout = matches!(spec, RuntimeSpec::OpenhandsCli(_));
    let ended = watch(command, events_on_stdout, common, &mut transcript).await;

    if let Some(guard) = prepared.container {
        let removal = guard.remove().await;
        transcript.push("text", &removal);
    }
    if let Some(Ok(output)) = &ended.result {
        let tail = stderr_tail(output);
        if !tail.is_empty() {
            transcript.push("stderr", &tail);
        }
    }
    let exit_code = ended
        .result
        .as_ref()
        .and_then(|r| r.as_ref().ok())
        .and_then(|o| o.code);
    let outcome = match spec {
        RuntimeSpec::OpenhandsCli(cli) => cli_outcome(&ctx, &cli.program, &ended),
        RuntimeSpec::OpenhandsDocker(docker) => {
            let stuck_after = common.stuck_after;
            docker_outcome(
                &ctx,
                docker,
                &ended,
                &prepared.trajectory,
                stuck_after,
                &mut transcript,
            )
        }
        RuntimeSpec::Command(command) => {
            command_outcome(&ctx, command, &ended, prepared.outcome_file.as_deref())
        }
    };
    let outcome = outcome.map_err(|f| RuntimeFailure {
        class: f.class,
        message: transcript.redact(&f.message),
    });
    let outcome = outcome.map(|finish| AgentFinish {
        summary: finish.summary.map(|s| transcript.redact(&s)),
    });
    if let Err(f) = &outcome {
        transcript.push("error", &format!("{}: {}", f.class, f.message));
    }
    ExternalRun {
        outcome,
        transcript: transcript.finish(),
        argv,
        exit_code,
        duration: started.elapsed(),
    }
}

/// What [`run`] needs of the job besides the callback.
struct Context<'a> {
    name: &'a str,
    worktree: &'a Path,
    scratch: &'a Path,
    git_dir: Option<&'a Path>,
    prompt: &'a str,
    targets: &'a [String],
    gateway: &'a GatewayAccess,
    parent_env: Vec<(OsString, OsString)>,
}

impl Context<'_> {
    fn field(&self, field: &str) -> String {
        format!("runtimes.{}.{field}", self.name)
    }

    fn parent_var(&self, name: &str) -> Option<&OsString> {
        self.parent_env
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }
}

/// Everything decided before the agent starts.
struct Prepared {
    /// Absolute: found on `PATH` here, so the error names the config field, and run by its
    /// real path, which the sandbox binds back even under a hidden directory.
    program: PathBuf,
    args: Vec<String>,
    env: EnvPolicy,
    confinement: Confinement,
    container: Option<ContainerGuard>,
    trajectory: PathBuf,
    outcome_file: Option<PathBuf>,
}

fn prepare(
    spec: &RuntimeSpec,
    ctx: &Context<'_>,
    task_id: &str,
    attempt: u32,
) -> Result<Prepared, RuntimeFailure> {
    let common = spec.common();
    spec.check(ctx.name)
        .map_err(|e| failure(FailureClass::Misconfigured, e.to_string()))?;
    let home = ctx.scratch.join("home");
    std::fs::create_dir_all(&home).map_err(|e| {
        failure(
            FailureClass::Startup,
            format!("cannot create the agent's HOME {}: {e}", home.display()),
        )
    })?;
    let gw = ctx.gateway;
    let litellm_model = format!("openai/{}", gw.model);
    let mut vars: Vec<(String, String)> = vec![("HOME".into(), home.display().to_string())];
    let mut container = None;
    let mut outcome_file = None;
    let trajectory = ctx.scratch.join("trajectories").join(TRAJECTORY_FILE);
    let (program_field, program, args) = match spec {
        RuntimeSpec::OpenhandsCli(cli) => {
            let mut args: Vec<String> = ["--headless", "--json", "--override-with-envs"]
                .map(String::from)
                .into();
            if ctx.prompt.len() > MAX_PROMPT_ARG {
                let file = write_prompt(ctx, &ctx.scratch.join("prompt.md"))?;
                args.extend(["-f".to_owned(), file.display().to_string()]);
            } else {
                args.extend(["-t".to_owned(), ctx.prompt.to_owned()]);
            }
            vars.extend([
                ("LLM_MODEL".into(), litellm_model),
                ("LLM_API_KEY".into(), gw.token.expose().to_owned()),
                ("LLM_BASE_URL".into(), gw.base_url.clone()),
                // Read by OpenHands V0; CLI 1.x always asks for native tool calls, which the
                // gateway translates to text for the model.
                ("LLM_NATIVE_TOOL_CALLING".into(), "false".into()),
                ("MAX_ITERATIONS".into(), common.max_iterations.to_string()),
                // litellm would otherwise fetch its price list from GitHub at start-up,
                // retrying for seconds against a network it may not reach.
                ("LITELLM_LOCAL_MODEL_COST_MAP".into(), "True".into()),
                ("OPENHANDS_SUPPRESS_BANNER".into(), "1".into()),
                // Its terminal tool runs a tmux server, whose socket directory defaults to
                // /tmp, which the sandbox does not let it write.
                ("TMUX_TMPDIR".into(), home.display().to_string()),
                // Plain text: what it prints is kept in the transcript.
                ("NO_COLOR".into(), "1".into()),
                // CLI 1.x takes its workspace from here, else from the working directory.
                (
                    "OPENHANDS_WORK_DIR".into(),
                    ctx.worktree.display().to_string(),
                ),
            ]);
            ("program", cli.program.clone(), args)
        }
        RuntimeSpec::OpenhandsDocker(docker) => {
            let args = docker_args(docker, ctx, common, task_id, attempt, &trajectory)?;
            // Read by `docker run -e LLM_API_KEY` from its own environment, so the token is
            // never in an argument, where `ps` would show it.
            vars.push(("LLM_API_KEY".into(), gw.token.expose().to_owned()));
            ("docker", docker.docker.clone(), args)
        }
        RuntimeSpec::Command(command) => {
            let prompt_file = write_prompt(ctx, &ctx.scratch.join("prompt.txt"))?;
            let mut argv = substitute(command, ctx, &prompt_file, common.max_iterations);
            let program = argv.remove(0);
            vars.extend([
                ("OPENAI_BASE_URL".into(), gw.base_url.clone()),
                ("OPENAI_API_BASE".into(), gw.base_url.clone()),
                ("OPENAI_API_KEY".into(), gw.token.expose().to_owned()),
                ("LLM_BASE_URL".into(), gw.base_url.clone()),
                ("LLM_API_KEY".into(), gw.token.expose().to_owned()),
                ("LLM_MODEL".into(), litellm_model),
            ]);
            if let Some(file) = &command.outcome_file {
                let path = ctx.scratch.join(file);
                // A file left by an earlier attempt must not speak for this one.
                let _ = std::fs::remove_file(&path);
                vars.push(("PITCREW_OUTCOME_FILE".into(), path.display().to_string()));
                outcome_file = Some(path);
            }
            ("argv", program, argv)
        }
    };
    let program = resolve_program(&program, ctx).map_err(|reason| {
        failure(
            FailureClass::Misconfigured,
            format!(
                "{}: cannot run `{program}`: {reason}",
                ctx.field(program_field)
            ),
        )
    })?;

    let mut confinement = Confinement::new().write(ctx.worktree).write(ctx.scratch);
    if let Some(git_dir) = ctx.git_dir {
        confinement = confinement.read(git_dir);
    }
    for path in common.read.iter().chain(&program_grants(&program)) {
        confinement = confinement.read(path);
    }
    if matches!(spec, RuntimeSpec::OpenhandsDocker(_)) {
        // The Docker CLI talks to the engine through its socket; the agent's real
        // confinement is then the container, not this sandbox.
        confinement = confinement
            .read("/var/run/docker.sock")
            .read("/run/docker.sock");
        container = Some(ContainerGuard {
            docker: program.clone(),
            name: container_name(task_id, attempt),
            env: housekeeping_env(ctx, common, &home),
            armed: true,
        });
        let dir = ctx.scratch.join("trajectories");
        std::fs::create_dir_all(&dir).map_err(|e| {
            failure(
                FailureClass::Startup,
                format!("cannot create {}: {e}", dir.display()),
            )
        })?;
        // A trajectory left by an earlier attempt must not speak for this one.
        let _ = std::fs::remove_file(&trajectory);
    }
    vars.extend(common.set.iter().map(|(k, v)| (k.clone(), v.clone())));
    Ok(Prepared {
        program,
        args,
        env: EnvPolicy::Allowlist {
            pass: common.env.clone(),
            set: vars,
        },
        confinement,
        container,
        trajectory,
        outcome_file,
    })
}

fn write_prompt(ctx: &Context<'_>, path: &Path) -> Result<PathBuf, RuntimeFailure> {
    std::fs::write(path, ctx.prompt).map_err(|e| {
        failure(
            FailureClass::Startup,
            format!("cannot write the prompt to {}: {e}", path.display()),
        )
    })?;
    Ok(path.to_owned())
}

/// `docker run ...` for OpenHands' headless mode (see the crate documentation).
fn docker_args(
    docker: &OpenhandsDocker,
    ctx: &Context<'_>,
    common: &Common,
    task_id: &str,
    attempt: u32,
    trajectory: &Path,
) -> Result<Vec<String>, RuntimeFailure> {
    let gw = ctx.gateway;
    let trajectories = trajectory.parent().unwrap_or(ctx.scratch);
    for (what, path) in [
        ("worktree", ctx.worktree),
        ("scratch directory", trajectories),
    ] {
        // Both end up in `host:container[:mode]` specifications.
        if path.to_str().is_none_or(|p| p.contains([':', ','])) {
            return Err(failure(
                FailureClass::Startup,
                format!(
                    "the {what} {} cannot be mounted into Docker (its path holds `:` or `,`, or is not UTF-8)",
                    path.display()
                ),
            ));
        }
    }
    let uid = nix::unistd::getuid();
    let mut env = vec![
        format!("SANDBOX_USER_ID={uid}"),
        format!("SANDBOX_VOLUMES={}:/workspace:rw", ctx.worktree.display()),
        format!("LLM_MODEL=openai/{}", gw.model),
        "LLM_API_KEY".to_owned(),
        format!("LLM_BASE_URL={}", gw.base_url),
        "LLM_NATIVE_TOOL_CALLING=false".to_owned(),
        format!("MAX_ITERATIONS={}", common.max_iterations),
        format!("SAVE_TRAJECTORY_PATH={CONTAINER_TRAJECTORIES}/{TRAJECTORY_FILE}"),
        "LOG_ALL_EVENTS=true".to_owned(),
    ];
    if let Some(image) = &docker.runtime_image {
        env.push(format!("SANDBOX_RUNTIME_CONTAINER_IMAGE={image}"));
    }
    // The container sees only what is passed: `env` by name (docker reads the value from
    // its own environment), `set` as given.
    env.extend(common.env.iter().cloned());
    env.extend(common.set.iter().map(|(k, v)| format!("{k}={v}")));

    let mut args: Vec<String> = vec![
        "run".into(),
        "--rm".into(),
        "--name".into(),
        container_name(task_id, attempt),
        // The gateway listens on the host's loopback.
        "--network".into(),
        "host".into(),
    ];
    for var in env {
        args.extend(["-e".to_owned(), var]);
    }
    args.extend([
        "-v".to_owned(),
        format!("{}:{CONTAINER_TRAJECTORIES}", trajectories.display()),
        "-v".to_owned(),
        "/var/run/docker.sock:/var/run/docker.sock".to_owned(),
        docker.image.clone(),
        "python".to_owned(),
        "-m".to_owned(),
        "openhands.core.main".to_owned(),
    ]);
    if ctx.prompt.len() > MAX_PROMPT_ARG {
        let name = "task.txt";
        write_prompt(ctx, &trajectories.join(name))?;
        args.extend(["-f".to_owned(), format!("{CONTAINER_TRAJECTORIES}/{name}")]);
    } else {
        args.extend(["-t".to_owned(), ctx.prompt.to_owned()]);
    }
    Ok(args)
}

/// `pitcrew-<task>-<attempt>`, with whatever Docker does not allow in a name replaced.
fn container_name(task_id: &str, attempt: u32) -> String {
    let task: String = task_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("pitcrew-{task}-{attempt}")
}

/// The command agent's argv with its placeholders filled in (see [`crate::PLACEHOLDERS`]).
fn substitute(
    command: &CommandAgent,
    ctx: &Context<'_>,
    prompt_file: &Path,
    max_iterations: u32,
) -> Vec<String> {
    let mut argv = Vec::new();
    for element in &command.argv {
        if element == "{targets}" {
            argv.extend(ctx.targets.iter().cloned());
            continue;
        }
        let mut arg = String::new();
        for piece in parse_template(element) {
            match piece {
                Piece::Text(text) => arg.push_str(text),
                Piece::Placeholder("prompt") => arg.push_str(ctx.prompt),
                Piece::Placeholder("prompt_file") => {
                    arg.push_str(&prompt_file.display().to_string())
                }
                Piece::Placeholder("targets") => arg.push_str(&ctx.targets.join(" ")),
                Piece::Placeholder("model") => arg.push_str(&ctx.gateway.model),
                Piece::Placeholder("base_url") => arg.push_str(&ctx.gateway.base_url),
                Piece::Placeholder("worktree") => arg.push_str(&ctx.worktree.display().to_string()),
                Piece::Placeholder("max_iterations") => arg.push_str(&max_iterations.to_string()),
                // `check` refused unknown placeholders already.
                Piece::Placeholder(other) => {
                    arg.push('{');
                    arg.push_str(other);
                    arg.push('}');
                }
            }
        }
        argv.push(arg);
    }
    argv
}

/// `program` as an absolute, symlink-free path: as given if it holds a `/`, else the first
/// match on the `PATH` the agent will have.
fn resolve_program(program: &str, ctx: &Context<'_>) -> Result<PathBuf, String> {
    let candidate = if program.contains('/') {
        let path = Path::new(program);
        if path.is_absolute() {
            path.to_owned()
        } else {
            ctx.worktree.join(path)
        }
    } else {
        let path = ctx.parent_var("PATH").cloned().unwrap_or_default();
        std::env::split_paths(&path)
            .filter(|dir| dir.is_absolute())
            .map(|dir| dir.join(program))
            .find(|c| c.is_file())
            .ok_or_else(|| {
                format!(
                    "not found on PATH ({}); install it or give its full path",
                    path.to_string_lossy()
                )
            })?
    };
    let real = candidate
        .canonicalize()
        .map_err(|e| format!("{}: {e}", candidate.display()))?;
    let meta = std::fs::metadata(&real).map_err(|e| format!("{}: {e}", real.display()))?;
    if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
        return Err(format!("{} is not an executable file", real.display()));
    }
    Ok(real)
}

/// What running `program` needs to read: its directory, or for a program in a `bin`
/// directory the prefix above it (a virtualenv keeps its packages beside `bin`); and for a
/// script, the same for its interpreter, symlinks followed (a virtualenv's `python` usually
/// links to an interpreter under the user's home, which agents do not see otherwise: pyenv,
/// uv, pipx).
fn program_grants(program: &Path) -> Vec<PathBuf> {
    let mut grants = vec![prefix_of(program)];
    if let Some(interpreter) = interpreter_of(program)
        && let Ok(real) = interpreter.canonicalize()
    {
        grants.push(prefix_of(&interpreter));
        grants.push(prefix_of(&real));
    }
    grants.retain(|g| g != Path::new("/") && !g.as_os_str().is_empty());
    grants.sort();
    grants.dedup();
    grants
}

/// `path`'s directory, or the prefix above it for a directory named `bin`.
fn prefix_of(path: &Path) -> PathBuf {
    let Some(dir) = path.parent() else {
        return PathBuf::new();
    };
    match dir.parent() {
        Some(prefix) if dir.file_name().is_some_and(|n| n == "bin") => prefix.to_owned(),
        _ => dir.to_owned(),
    }
}

/// The absolute interpreter a script's `#!` line names (`#!/usr/bin/env NAME` is left to
/// `PATH`).
fn interpreter_of(program: &Path) -> Option<PathBuf> {
    use std::io::Read;
    let mut head = [0u8; 256];
    let n = std::fs::File::open(program).ok()?.read(&mut head).ok()?;
    let line = head[..n].strip_prefix(b"#!")?;
    let line = &line[..line.iter().position(|&b| b == b'\n').unwrap_or(line.len())];
    let first = std::str::from_utf8(line).ok()?.split_whitespace().next()?;
    let path = PathBuf::from(first);
    (path.is_absolute() && !path.ends_with("env")).then_some(path)
}

/// The environment of our own `docker rm -f`: what the agent's Docker CLI had, minus the
/// token.
fn housekeeping_env(ctx: &Context<'_>, common: &Common, home: &Path) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = ["PATH", "LANG"]
        .iter()
        .map(|n| n.to_string())
        .chain(common.env.iter().cloned())
        .filter_map(|n| ctx.parent_var(&n).map(|v| (OsString::from(&n), v.clone())))
        .collect();
    env.extend(common.set.iter().map(|(k, v)| (k.into(), v.into())));
    env.push(("HOME".into(), home.into()));
    env
}

/// Removes the Docker container `docker run` started: after the run, and also when the
/// run is cancelled (the future dropped), since killing the `docker` client leaves its
/// container running.
struct ContainerGuard {
    docker: PathBuf,
    name: String,
    env: Vec<(OsString, OsString)>,
    armed: bool,
}

impl ContainerGuard {
    fn command(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(&self.docker);
        cmd.args(["rm", "-f", &self.name])
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Removes the container now; what happened, for the transcript.
    async fn remove(mut self) -> String {
        self.armed = false;
        let mut cmd = tokio::process::Command::from(self.command());
        cmd.kill_on_drop(true);
        match tokio::time::timeout(DOCKER_RM_TIMEOUT, cmd.output()).await {
            Ok(Ok(out)) if out.status.success() => format!("removed container {}", self.name),
            // `--rm` usually removed it already.
            Ok(Ok(out)) => format!(
                "docker rm -f {}: {} {}",
                self.name,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Ok(Err(e)) => format!("docker rm -f {}: {e}", self.name),
            Err(_) => format!(
                "docker rm -f {} did not end within {DOCKER_RM_TIMEOUT:?}",
                self.name
            ),
        }
    }
}

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        // A plain thread: a drop may happen while the async runtime shuts down.
        let mut cmd = self.command();
        let name = self.name.clone();
        let spawned = std::thread::Builder::new()
            .name("pitcrew-docker-rm".into())
            .spawn(move || {
                if let Err(e) = cmd.stdout(Stdio::null()).stderr(Stdio::null()).status() {
                    tracing::warn!(container = %name, error = %e, "cannot remove a cancelled run's container");
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(container = %self.name, error = %e, "cannot remove a cancelled run's container");
        }
    }
}

/// How the agent's process ended, and what its stdout held.
struct Ended {
    /// `None` when stopped early as stuck.
    result: Option<Result<Output, SandboxError>>,
    tracker: Tracker,
    /// Lines of stdout (events and text).
    lines: usize,
    last_text: Option<String>,
}

/// Runs `command`, turning its stdout into transcript entries as it comes, and stops it
/// (drops the run, which kills its process group) once the events show it stuck.
async fn watch(
    command: CommandSpec,
    events_on_stdout: bool,
    common: &Common,
    transcript: &mut Transcript<'_>,
) -> Ended {
    let (tx, mut rx) = unbounded_channel();
    let mut running = Box::pin(pitcrew_sandbox::run(command.stdout_lines(tx)));
    let mut parser = StreamParser::default();
    let mut ended = Ended {
        result: None,
        tracker: Tracker::new(common.stuck_after),
        lines: 0,
        last_text: None,
    };
    let mut take_line = |line: String, ended: &mut Ended, transcript: &mut Transcript<'_>| {
        ended.lines += 1;
        let items = if events_on_stdout {
            parser.push(&line)
        } else {
            vec![Item::Text(line)]
        };
        take_items(items, ended, transcript);
    };
    let result = loop {
        tokio::select! {
            biased;
            line = rx.recv() => match line {
                Some(line) => {
                    take_line(line, &mut ended, transcript);
                    if ended.tracker.stuck().is_some() {
                        break None;
                    }
                }
                None => break Some(running.as_mut().await),
            },
            result = running.as_mut() => break Some(result),
        }
    };
    // Stopping early: dropping the run kills the agent's whole process group now.
    drop(running);
    if result.is_some() {
        // Lines read before the process ended may still be queued.
        while let Ok(line) = rx.try_recv() {
            take_line(line, &mut ended, transcript);
        }
        let rest = parser.flush();
        take_items(rest, &mut ended, transcript);
    }
    ended.result = result;
    ended
}

fn take_items(items: Vec<Item>, ended: &mut Ended, transcript: &mut Transcript<'_>) {
    for item in items {
        match item {
            Item::Text(text) => {
                if !text.trim().is_empty() {
                    ended.last_text = Some(text.clone());
                }
                transcript.push("text", &text);
            }
            Item::Event(event) => {
                let classified = classify(&event);
                transcript.push(classified.kind, &classified.text);
                ended.tracker.observe(&classified.signal);
            }
        }
    }
}

fn stderr_tail(output: &Output) -> String {
    let lines: Vec<&str> = output.stderr.trim_end().lines().collect();
    lines[lines.len().saturating_sub(STDERR_TAIL_LINES)..].join("\n")
}

/// A short description of how the process ended, with the end of its output.
fn describe(output: &Output) -> String {
    let tail = output.combined_tail(10);
    if tail.is_empty() {
        output.describe_status()
    } else {
        format!("{}: {}", output.describe_status(), cut(&tail, 2000))
    }
}

/// The failures every runtime shares: could not start, stuck, timed out. `Ok(output)`
/// when the process ran to its end.
fn common_failures<'o>(
    ctx: &Context<'_>,
    field: &str,
    ended: &'o Ended,
) -> Result<&'o Output, RuntimeFailure> {
    let Some(result) = &ended.result else {
        let reason = ended.tracker.stuck().unwrap_or("looping");
        return Err(failure(
            FailureClass::Stuck,
            format!("stopped early, the agent is stuck: {reason}"),
        ));
    };
    let output = match result {
        Ok(output) => output,
        Err(SandboxError::Spawn {
            program, source, ..
        }) => {
            return Err(failure(
                FailureClass::Misconfigured,
                format!("{}: cannot start `{program}`: {source}", ctx.field(field)),
            ));
        }
        Err(e @ SandboxError::Unconfined { .. }) => {
            return Err(failure(
                FailureClass::Misconfigured,
                format!("{e}; external agents run only confined"),
            ));
        }
        Err(e) => return Err(failure(FailureClass::AgentError, e.to_string())),
    };
    if output.timed_out {
        return Err(failure(
            FailureClass::Timeout,
            format!(
                "no result within the timeout ({}); the agent's processes were killed",
                output.describe_status()
            ),
        ));
    }
    if let Some(reason) = ended.tracker.stuck() {
        return Err(failure(
            FailureClass::Stuck,
            format!("the agent is stuck: {reason}"),
        ));
    }
    Ok(output)
}

/// The outcome from the tracked events: a finish (and no error after it) is the only
/// success.
fn events_outcome(tracker: &Tracker, exit: &str) -> Result<AgentFinish, RuntimeFailure> {
    match tracker.state() {
        State::Finished => Ok(AgentFinish {
            summary: tracker.summary().map(str::to_owned),
        }),
        State::Errored(message) | State::Fatal(message) => Err(failure(
            FailureClass::AgentError,
            format!("the agent reported an error ({exit}): {message}"),
        )),
        State::Running => Err(failure(
            FailureClass::AgentError,
            format!("the agent ended without finishing ({exit})"),
        )),
    }
}

fn cli_outcome(
    ctx: &Context<'_>,
    program: &str,
    ended: &Ended,
) -> Result<AgentFinish, RuntimeFailure> {
    let events = ended.tracker.events;
    let output = common_failures(ctx, "program", ended)?;
    if events == 0 {
        return Err(failure(
            FailureClass::Startup,
            format!("`{program}` produced no events ({})", describe(output)),
        ));
    }
    events_outcome(&ended.tracker, &output.describe_status())
}

fn docker_outcome(
    ctx: &Context<'_>,
    docker: &OpenhandsDocker,
    ended: &Ended,
    trajectory: &Path,
    stuck_after: u32,
    transcript: &mut Transcript<'_>,
) -> Result<AgentFinish, RuntimeFailure> {
    let lines = ended.lines;
    let output = common_failures(ctx, "docker", ended)?;
    let status = output.describe_status();
    let text = match std::fs::read_to_string(trajectory) {
        Ok(text) => text,
        // Docker's own failure codes, or nothing at all on stdout: OpenHands never ran
        // (no image, no engine, bad flags). Otherwise it ran and ended without saving its
        // trajectory, which is its error.
        Err(_)
            if output
                .code
                .is_some_and(|c| DOCKER_OWN_FAILURES.contains(&c))
                || lines == 0 =>
        {
            return Err(failure(
                FailureClass::Startup,
                format!(
                    "OpenHands did not start in Docker (`{}`, image {}): {}",
                    docker.docker,
                    docker.image,
                    describe(output)
                ),
            ));
        }
        Err(e) => {
            return Err(failure(
                FailureClass::AgentError,
                format!(
                    "OpenHands ended ({status}) without its trajectory {}: {e}",
                    trajectory.display()
                ),
            ));
        }
    };
    let Some(events) = events::trajectory_events(&text) else {
        return Err(failure(
            FailureClass::AgentError,
            format!(
                "the trajectory {} is not a JSON list of events",
                trajectory.display()
            ),
        ));
    };
    let mut tracker = Tracker::new(stuck_after);
    for event in &events {
        let classified = classify(event);
        transcript.push(classified.kind, &classified.text);
        tracker.observe(&classified.signal);
    }
    if let Some(reason) = tracker.stuck() {
        return Err(failure(
            FailureClass::Stuck,
            format!("the agent was stuck: {reason}"),
        ));
    }
    events_outcome(&tracker, &status)
}

/// What a command agent may write to its outcome file.
#[derive(Debug, Deserialize)]
struct OutcomeFile {
    status: String,
    #[serde(default)]
    message: Option<String>,
}

fn command_outcome(
    ctx: &Context<'_>,
    command: &CommandAgent,
    ended: &Ended,
    outcome_file: Option<&Path>,
) -> Result<AgentFinish, RuntimeFailure> {
    let last_text = ended.last_text.clone();
    let output = common_failures(ctx, "argv", ended)?;
    if let Some(path) = outcome_file {
        let name = command.outcome_file.as_deref().unwrap_or_default();
        let text = std::fs::read_to_string(path).map_err(|e| {
            failure(
                FailureClass::AgentError,
                format!(
                    "the agent did not write its outcome file `{name}` ({e}); {}",
                    describe(output)
                ),
            )
        })?;
        let parsed: OutcomeFile = serde_json::from_str(&text).map_err(|e| {
            failure(
                FailureClass::AgentError,
                format!("the outcome file `{name}` is not {{\"status\": \"finished\" | \"error\", \"message\": ...}}: {e}"),
            )
        })?;
        return match parsed.status.as_str() {
            "finished" => Ok(AgentFinish {
                summary: parsed.message,
            }),
            "error" => Err(failure(
                FailureClass::AgentError,
                format!(
                    "the agent reported an error: {}",
                    parsed.message.unwrap_or_default()
                ),
            )),
            other => Err(failure(
                FailureClass::AgentError,
                format!("the outcome file `{name}` has status `{other}`; valid: finished, error"),
            )),
        };
    }
    if output.success() {
        Ok(AgentFinish { summary: last_text })
    } else {
        Err(failure(FailureClass::AgentError, describe(output)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_script_in_a_virtualenv_is_granted_its_prefix_and_its_real_interpreter() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        let python = root.join("pyenv/versions/3.12/bin/python3.12");
        std::fs::create_dir_all(python.parent().unwrap()).unwrap();
        std::fs::write(&python, "").unwrap();
        let venv_bin = root.join("venv/bin");
        std::fs::create_dir_all(&venv_bin).unwrap();
        std::os::unix::fs::symlink(&python, venv_bin.join("python")).unwrap();
        let tool = venv_bin.join("openhands");
        std::fs::write(
            &tool,
            format!("#!{}\nimport sys\n", venv_bin.join("python").display()),
        )
        .unwrap();
        assert_eq!(
            program_grants(&tool),
            vec![root.join("pyenv/versions/3.12"), root.join("venv")]
        );
        // `#!/usr/bin/env python3` is found on PATH; a binary has no `#!` line.
        std::fs::write(&tool, "#!/usr/bin/env python3\n").unwrap();
        assert_eq!(program_grants(&tool), vec![root.join("venv")]);
        std::fs::write(&tool, [0x7f, b'E', b'L', b'F']).unwrap();
        assert_eq!(program_grants(&tool), vec![root.join("venv")]);
    }
}
