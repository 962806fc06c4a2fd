//! pitcrew's domain types: what a task is, how it moves through the queue, what an attempt
//! records and what a finding says. No I/O lives here except reading configuration files.

mod attempt;
pub mod config;
mod finding;
mod health;
mod names;
mod task;

pub use attempt::{Attempt, AttemptOutcome, AttemptReport, Usage};
pub use finding::{Finding, Severity};
pub use health::ModelHealth;
pub use names::UnknownName;
pub use task::{
    ErrorClass, ErrorKind, Lease, NewTask, Priority, Task, TaskFilter, TaskId, TaskKind, TaskStatus,
};
