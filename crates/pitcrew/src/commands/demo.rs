//! `pitcrew demo`: the newcomer's first command. An example Python project in a new
//! directory, pitcrew's simulator serving a fixed script in this process, and the real
//! pipeline on it (`submit --file`, `run`, `report`) with real git, pytest and coverage.
//! Only the model is simulated, and the output says so at its top and bottom.

mod project;
mod story;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use pitcrew_config::{Environment, LoadedConfig};
use pitcrew_core::TaskStatus;
use pitcrew_sim::{SimConfig, Simulator};
use serde::Serialize;

use super::{report, run, submit};
use crate::cli::{Cli, Command, DemoArgs, EngineFlags};
use crate::context::Context;
use crate::output::{self, usage};
use project::DemoFiles;

/// Said first: what is about to happen.
const WILL_BE_SIMULATED: &str = "the model is SIMULATED: pitcrew's simulator answers from a \
    fixed script, in this process; no real model is called and no API key is used";
/// Said last: what happened.
const WAS_SIMULATED: &str = "the model was SIMULATED: pitcrew's simulator answered from a \
    fixed script, in this process; no real model was called and no API key was used";

pub async fn demo(args: &DemoArgs) -> anyhow::Result<ExitCode> {
    require_python().await?;
    let root = project::directory(args.keep.as_deref())?;
    if !args.format.json {
        output::line(&format!("pitcrew demo: {WILL_BE_SIMULATED}.\n"));
    }
    let listener = pitcrew_sim::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), false).await?;
    let address = listener
        .local_addr()
        .context("the simulator's address is unknown")?;
    let files = project::create(&root, &format!("http://{address}/v1")).await?;
    let simulator = Simulator::new(
        SimConfig::load(&files.sim_config).context("the demo's simulator script is invalid")?,
    );
    if !args.format.json {
        output::line(&format!(
            "An example project (textstats: three modules, no tests) is committed in {}.\n\
             The simulator serves {} at http://{address}/v1.\n",
            root.display(),
            simulator.model_ids().join(", ")
        ));
    }
    let serving = tokio::spawn(async move { simulator.serve(listener).await });
    let shown = run_tasks(args, &files).await;
    serving.abort();
    shown.with_context(|| format!("pitcrew demo, in {}", root.display()))
}

/// Submits the demo's tasks and runs them as `pitcrew submit --file` and `pitcrew run` do,
/// then shows the report, each task's story and where to look next. The outcome is the same
/// every time although workers run the tasks at once: each task prefers its own simulated
/// model and the routing pool is empty (pitcrew.toml), so a model's script is taken by its
/// task alone, in order.
async fn run_tasks(args: &DemoArgs, files: &DemoFiles) -> anyhow::Result<ExitCode> {
    let json = args.format.json;
    let ctx = context(args, files).await?;
    let (tasks, submitted) = submit::submit_file(&ctx, &files.tasks).await?;
    if !json {
        submit::print_submitted(&tasks, &submitted);
        output::line("");
    }
    let flags = EngineFlags {
        cache: false,
        keep_worktrees: false,
        budget: None,
        run_name: None,
    };
    let driven = run::drive(&ctx, None, None, false, &flags, None).await?;
    let report = report::gather(&ctx, Some(&driven.run_id)).await?;
    let stories = story::tell(&*ctx.store().await?, &ctx.repo, &submitted).await?;
    project::remove_worktrees(&ctx.repo).await?;
    let finished = !driven.stopped && driven.queued == 0;
    if json {
        output::json(&serde_json::json!({
            "simulated": true,
            "note": WAS_SIMULATED,
            "dir": files.root,
            "run_id": driven.run_id,
            "summary": driven.summary,
            "report": report,
            "tasks": stories,
            "next": next_steps(&files.root, &stories),
        }));
    } else {
        output::line(&format!("\n{}\n", run::summary_line(&driven.summary)));
        report::print_markdown(&report);
        output::line("");
        story::print(&stories);
        output::line("\nLook at the results (the directory is kept):");
        print_steps(&next_steps(&files.root, &stories));
        output::line(&format!(
            "\nRemember: {WAS_SIMULATED}. To use a real model, follow the README's quickstart."
        ));
    }
    // The demo worked when every task finished, whatever it finished as: a possible bug is
    // one of the endings it shows.
    Ok(if finished {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// A command to run next, and what it shows.
#[derive(Debug, Serialize)]
struct Step {
    command: String,
    what: String,
}

impl Step {
    fn new(command: impl Into<String>, what: impl Into<String>) -> Step {
        Step {
            command: command.into(),
            what: what.into(),
        }
    }
}

/// How to run this pitcrew: `pitcrew` when that is the one on PATH, else its full path (a
/// newcomer who ran `cargo run -- demo` has none installed).
fn this_pitcrew() -> String {
    let Ok(this) = std::env::current_exe().and_then(|p| p.canonicalize()) else {
        return "pitcrew".into();
    };
    let on_path = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path)
            .any(|dir| dir.join("pitcrew").canonicalize().is_ok_and(|p| p == this))
    });
    if on_path {
        "pitcrew".into()
    } else {
        this.display().to_string()
    }
}

/// The commands that show the results, with the demo's own handles and branches.
fn next_steps(root: &Path, stories: &[story::Story]) -> Vec<Step> {
    let pitcrew = this_pitcrew();
    let mut steps = vec![
        Step::new(format!("cd {}", root.display()), "the demo's project"),
        Step::new(format!("{pitcrew} list"), "every task and its status"),
        Step::new(format!("{pitcrew} report"), "the report above"),
    ];
    for story in stories {
        steps.push(Step::new(
            format!("{pitcrew} show '{}' --diff", output::handle(story.seq)),
            format!("{}: every round, its findings, the patch", story.target),
        ));
    }
    if let Some(branch) = stories.iter().find_map(|s| s.branch.as_deref()) {
        steps.push(Step::new(
            format!("git log --stat {branch}"),
            "a result, as a commit",
        ));
    }
    if let Some(bug) = stories.iter().find(|s| s.status == TaskStatus::PossibleBug) {
        steps.push(Step::new(
            format!("{pitcrew} diff '{}'", output::handle(bug.seq)),
            "the tests that disagree with the code",
        ));
    }
    steps.push(Step::new(
        format!("{pitcrew} apply --all"),
        "commit the accepted tests onto main",
    ));
    steps.push(Step::new(
        format!("rm -rf {}", root.display()),
        "when you are done",
    ));
    steps
}

fn print_steps(steps: &[Step]) {
    let width = steps.iter().map(|s| s.command.len()).max().unwrap_or(0);
    for step in steps {
        output::line(&format!("  {:<width$}   # {}", step.command, step.what));
    }
}

/// The demo's context: its repository, pitcrew.toml and store, read with an empty
/// environment, so that no PITCREW_* variable of the user's shell can point it at their
/// store or a real provider, and no API key is read.
async fn context(args: &DemoArgs, files: &DemoFiles) -> anyhow::Result<Context> {
    let store = files.root.join(".pitcrew").join("pitcrew.db");
    let cli = Cli {
        repo: Some(files.root.clone()),
        config: Some(files.config.clone()),
        store: Some(format!("sqlite://{}", store.display())),
        command: Command::Demo(args.clone()),
    };
    let mut ctx = Context::load(&cli).await?;
    ctx.config = LoadedConfig::load(&files.root, Some(&files.config), Environment::default())?;
    // The tasks' targets are relative to the project, not to where the demo was started.
    ctx.cwd = files.root.clone();
    Ok(ctx)
}

/// The demo checks replies with real pytest and coverage: without them it cannot show
/// anything true, so it stops before making anything.
async fn require_python() -> anyhow::Result<()> {
    let probe = tokio::process::Command::new("python3")
        .args(["-c", "import pytest, coverage"])
        .output()
        .await;
    match probe {
        Ok(out) if out.status.success() => Ok(()),
        _ => Err(usage(
            "pitcrew demo checks the model's tests for real and needs python3 with pytest and \
             coverage: `pip install pytest coverage` (or python3 -m pip install …), then run \
             the demo again",
        )),
    }
}
