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
//! Unix only. What it cannot contain: a process that leaves the group (`setsid`) survives
//! the run, though the run still returns (output is drained for at most a short grace after
//! the group is gone), and there is no filesystem isolation beyond the working directory
//! and a private `HOME`.

mod net;
mod output;
mod run;
mod spec;

pub use net::network_isolation_available;
pub use output::Output;
pub use run::{SandboxError, run};
pub use spec::{CommandSpec, EnvPolicy, Limits, is_secret_name};
