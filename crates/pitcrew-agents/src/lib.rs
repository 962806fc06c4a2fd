//! External coding agents as pitcrew runtimes: the OpenHands CLI, OpenHands in Docker, and
//! any command-line agent, each configured as a [`RuntimeSpec`] under `[runtimes.NAME]` and
//! run for one attempt with [`run`].
//!
//! An agent is a program pitcrew does not trust. It runs confined by `pitcrew-sandbox`
//! (writes only to the worktree and a scratch directory, reads only the system, its own
//! prefix and what the config grants), with an environment built from an allowlist, and
//! with TCP to the gateway's port only (`network = "gateway"`, the default). It never sees a
//! provider key: its only credential is the gateway's session token, given as
//! `LLM_API_KEY`/`OPENAI_API_KEY`. Its outcome is judged from what it produced (its event
//! stream, trajectory or outcome file), never from its exit code alone; whether it changed
//! the right files is judged by the engine from git.
//!
//! # `openhands-cli`
//!
//! ```text
//! openhands --headless --json --override-with-envs -t PROMPT        (or -f FILE past 100 KiB)
//!   in the worktree, with LLM_MODEL=openai/<model> LLM_API_KEY=<token>
//!   LLM_BASE_URL=http://127.0.0.1:<port>/v1 LLM_NATIVE_TOOL_CALLING=false
//!   MAX_ITERATIONS=<n> OPENHANDS_WORK_DIR=<worktree> HOME=<scratch>/home
//! ```
//!
//! Its stdout is read as it comes (see the `events` module for the formats): events go to
//! the transcript, other lines as `text`. A run whose events show it looping is stopped at
//! once. `MAX_ITERATIONS` is OpenHands V0's variable; whether CLI 1.x honours it is not
//! confirmed, so the timeout is the limit that always holds.
//!
//! # `openhands-docker`
//!
//! The equivalent command line (the token is passed by name, `-e LLM_API_KEY`, from the
//! `docker` client's environment, so no process listing shows it):
//!
//! ```text
//! docker run --rm --name pitcrew-<task>-<attempt> --network host \
//!   -e SANDBOX_USER_ID=$(id -u) -e SANDBOX_VOLUMES=<worktree>:/workspace:rw \
//!   -e LLM_MODEL=openai/<model> -e LLM_API_KEY -e LLM_BASE_URL=http://127.0.0.1:<port>/v1 \
//!   -e LLM_NATIVE_TOOL_CALLING=false -e MAX_ITERATIONS=<n> \
//!   -e SAVE_TRAJECTORY_PATH=/trajectories/trajectory.json -e LOG_ALL_EVENTS=true \
//!   [-e SANDBOX_RUNTIME_CONTAINER_IMAGE=<runtime_image>] [-e NAME ... for `env`] [-e K=V ... for `set`] \
//!   -v <scratch>/trajectories:/trajectories -v /var/run/docker.sock:/var/run/docker.sock \
//!   <image> python -m openhands.core.main -t PROMPT                  (or -f /trajectories/task.txt)
//! ```
//!
//! The `docker` client runs confined like any agent (it needs only the engine's socket,
//! which is granted), but the agent itself runs in containers the engine starts, so *its*
//! confinement is Docker's: the worktree mounted read-write, the host's network. The
//! outcome comes from the trajectory (its finish, error and agent-state events) after the
//! container ends; `docker rm -f pitcrew-<task>-<attempt>` always runs afterwards, also
//! after a timeout, when stopped as stuck, or when the [`run`] future is dropped. No
//! trajectory: [`FailureClass::Startup`] when Docker itself failed (exit 125–127) or the
//! container printed nothing (OpenHands never ran), else [`FailureClass::AgentError`]
//! (OpenHands ran and ended without saving what it did).
//!
//! # `command`
//!
//! Any program, its argv a template (see [`PLACEHOLDERS`]), never run through a shell, with
//! `OPENAI_BASE_URL`, `OPENAI_API_BASE`, `OPENAI_API_KEY`, `LLM_BASE_URL`, `LLM_API_KEY` and
//! `LLM_MODEL` (`openai/<model>`) pointing at the gateway. Finished when it writes
//! `{"status": "finished"}` to its `outcome_file`, or, without one, when it exits 0.

mod events;
mod run;
mod spec;
mod transcript;

pub use run::{
    AgentFinish, ExternalRun, FailureClass, GatewayAccess, Job, MAX_PROMPT_ARG, RuntimeFailure, run,
};
pub use spec::{
    CommandAgent, Common, Network, OpenhandsCli, OpenhandsDocker, PLACEHOLDERS, RESERVED_VARS,
    RuntimeSpec, SpecError,
};
pub use transcript::{MAX_ENTRIES, MAX_TEXT, TranscriptEntry};
