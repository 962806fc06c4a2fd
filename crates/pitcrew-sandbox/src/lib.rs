//! Runs one command in a directory the way pitcrew runs everything it does not trust: in its
//! own process group under a timeout that kills the whole group, with a controlled
//! environment, optional resource limits, and captured, size-capped output.
//!
//! ```no_run
//! # async fn demo() -> Result<(), pitcrew_sandbox::SandboxError> {
//! use std::time::Duration;
//! use pitcrew_sandbox::{CommandSpec, run};
//!
//! let out = run(CommandSpec::new("git", "/tmp/repo").args(["status", "--short"])
//!     .timeout(Duration::from_secs(10)))
//!     .await?;
//! if !out.success() {
//!     eprintln!("git failed ({}): {}", out.describe_status(), out.combined_tail(20));
//! }
//! # Ok(()) }
//! ```
//!
//! Asked to, it also cuts the command off the network (a network namespace of its own, see
//! [`CommandSpec::isolate_network`]) where the machine allows that.
//!
//! For code nobody vouches for (tests a model wrote), [`CommandSpec::confine`] runs the
//! command confined: PID, mount and IPC namespaces of its own (a fresh `/proc` showing only
//! its own processes, a private `/dev/shm`), no capabilities, `no_new_privs`, and Landlock
//! allowing only the paths of its [`Confinement`]; everything it started dies with it. Where
//! the machine cannot do that ([`confinement_available`]) the run fails with
//! [`SandboxError::Unconfined`]; it never falls back to running unconfined.
//!
//! ```no_run
//! # async fn demo() -> Result<(), pitcrew_sandbox::SandboxError> {
//! use pitcrew_sandbox::{CommandSpec, Confinement, EnvPolicy, run};
//!
//! let worktree = "/tmp/worktree";
//! let out = run(CommandSpec::new("python3", worktree).args(["-m", "pytest", "-q"])
//!     .env_policy(EnvPolicy::Allowlist { pass: vec![], set: vec![] })
//!     .isolate_network(true)
//!     .confine(Confinement::new().read("/opt/python").write(worktree)))
//!     .await?;
//! assert!(out.confined);
//! # Ok(()) }
//! ```
//!
//! Linux only (confinement needs Landlock ABI 2 or later). What an
//! unconfined run cannot contain: a process that leaves the group (`setsid`) survives the
//! run, though the run still returns (output is drained for at most a short grace after the
//! group is gone), and there is no filesystem isolation beyond the working directory and a
//! private `HOME`.

mod confine;
mod helper;
mod net;
mod output;
mod policy;
mod run;
mod spec;

pub use confine::{
    Confinement, ConfinementUnavailable, DEFAULT_READ_PATHS, HIDDEN_DIRS, confinement_available,
};
pub use net::network_isolation_available;
pub use output::Output;
pub use run::{SandboxError, run};
pub use spec::{CommandSpec, EnvPolicy, Limits, MAX_STREAMED_LINE};
