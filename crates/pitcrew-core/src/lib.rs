//! pitcrew's domain types: what a task is, how it moves through the queue, what an attempt
//! records, what a finding says and what the router learns about a model. No I/O.

mod attempt;
mod finding;
mod health;
mod names;
mod secret;
mod task;

pub use attempt::{Attempt, AttemptOutcome, AttemptReport, Usage};
pub use finding::{Finding, Severity};
pub use health::ModelHealth;
pub use names::UnknownName;
pub use secret::Secret;
pub use task::{
    ErrorClass, ErrorKind, Lease, NewTask, Priority, Task, TaskFilter, TaskId, TaskKind, TaskStatus,
};
