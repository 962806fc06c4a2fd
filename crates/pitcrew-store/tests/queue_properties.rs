//! Property tests of the queue: random sequences of operations (submit, claim, heartbeat,
//! finish, release, cancel, requeue, rescue and the passing of time) run against a real store,
//! which after every step is checked against a model the test keeps and against its own
//! listing and stats. Each backend runs all its cases on one store, emptied between cases:
//! migrating a fresh store per case would cost more than the case.
//!
//! Time: neither backend can be given a clock (SQLite reads this process's wall clock,
//! PostgreSQL the server's `now()`). So every lease and retry delay is either [`LONG`], which
//! never runs out within a case, or [`SHORT`], and an [`Op::ClockJump`] waits until every
//! short one written so far has run out. Before that jump a short one may or may not have run
//! out, and the model accepts either.
//!
//! `PROPTEST_CASES` overrides the number of cases per backend. PostgreSQL runs when
//! `PITCREW_TEST_POSTGRES_URL` is set.

mod support;

use std::cell::Cell;
use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::time::{Duration, Instant};

use pitcrew_core::{
    Attempt, AttemptOutcome, ErrorKind, Lease, LimitDecision, NewTask, Priority, SharedLimit, Task,
    TaskFilter, TaskId, TaskStatus,
};
use pitcrew_store::{Disposition, Store, StoreError};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};
use support::{Fixture, PgFixture, SqliteFixture, open, report, task};

/// Cases per `cargo test` run on each backend; PostgreSQL's round trips cost more.
const SQLITE_CASES: u32 = 2000;
const POSTGRES_CASES: u32 = 1000;
/// The longest sequence of operations in one case: long enough to use up a task's attempts,
/// take its idempotency key and requeue it, short enough for thousands of cases.
const MAX_STEPS: usize = 30;

/// Outlives every case: a lease or delay this long never runs out during one.
const LONG: Duration = Duration::from_secs(3600);
/// Runs out by the next clock jump.
const SHORT: Duration = Duration::from_millis(1);
/// How long after writing a short lease or delay a clock jump waits: [`SHORT`], and a
/// millisecond more because SQLite keeps times truncated to the millisecond.
const JUMP: Duration = Duration::from_millis(2);

const WORKERS: [&str; 3] = ["w0", "w1", "w2"];
/// Few keys, so that submits and requeues run into each other's.
const KEYS: [&str; 2] = ["nightly", "weekly"];

/// What empties the store between cases; attempts first, for SQLite's foreign key.
const EMPTY: &str = "DELETE FROM attempts; DELETE FROM tasks";

/// One step of a case. A step picks its task or lease among those that exist when it runs
/// ([`Nth`]), so a shrunk sequence still means something; a step that finds nothing to pick
/// does nothing.
#[derive(Debug, Clone)]
enum Op {
    /// Submits one batch.
    Submit(Vec<NewSpec>),
    Claim {
        worker: usize,
        limit: u32,
        ttl: Ttl,
    },
    Heartbeat {
        lease: LeasePick,
        ttl: Ttl,
    },
    Finish {
        lease: LeasePick,
        disposition: Disposition,
    },
    Release {
        lease: LeasePick,
    },
    /// Cancels any task, whatever its state.
    Cancel(Nth),
    /// Requeues any task, whatever its state.
    Requeue(Nth),
    Rescue,
    /// Lets every short lease and delay written so far run out.
    ClockJump,
}

/// A task to submit.
#[derive(Debug, Clone)]
struct NewSpec {
    priority: Priority,
    key: Option<&'static str>,
    max_attempts: u32,
}

/// How long a claim or heartbeat makes a lease last.
#[derive(Debug, Clone, Copy)]
enum Ttl {
    Long,
    Short,
}

impl Ttl {
    fn duration(self) -> Duration {
        match self {
            Ttl::Long => LONG,
            Ttl::Short => SHORT,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum LeasePick {
    /// A lease that holds its task now.
    Live(Nth),
    /// A lease that was finished, released, rescued or cancelled: its writes must be refused.
    Stale(Nth),
}

/// The n-th of the things there are to pick from (in the order they came to be), counting
/// round when there are fewer. Shrinks towards the first.
#[derive(Debug, Clone, Copy)]
struct Nth(usize);

impl Nth {
    fn of(self, len: usize) -> Option<usize> {
        (len > 0).then(|| self.0 % len)
    }
}

fn operations() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(operation(), 1..=MAX_STEPS)
}

fn operation() -> impl Strategy<Value = Op> {
    let ttl = prop_oneof![Just(Ttl::Long), Just(Ttl::Short)];
    let nth = || (0..8usize).prop_map(Nth);
    let lease = prop_oneof![
        3 => nth().prop_map(LeasePick::Live),
        1 => nth().prop_map(LeasePick::Stale),
    ];
    prop_oneof![
        4 => prop::collection::vec(new_task(), 1..=2).prop_map(Op::Submit),
        4 => (0..WORKERS.len(), 1..=2u32, ttl.clone())
            .prop_map(|(worker, limit, ttl)| Op::Claim { worker, limit, ttl }),
        2 => (lease.clone(), ttl).prop_map(|(lease, ttl)| Op::Heartbeat { lease, ttl }),
        5 => (lease.clone(), disposition())
            .prop_map(|(lease, disposition)| Op::Finish { lease, disposition }),
        1 => lease.prop_map(|lease| Op::Release { lease }),
        1 => nth().prop_map(Op::Cancel),
        2 => nth().prop_map(Op::Requeue),
        2 => Just(Op::Rescue),
        1 => Just(Op::ClockJump),
    ]
}

fn new_task() -> impl Strategy<Value = NewSpec> {
    (
        prop::sample::select(Priority::ALL),
        prop::option::of(prop::sample::select(KEYS.to_vec())),
        1..=3u32,
    )
        .prop_map(|(priority, key, max_attempts)| NewSpec {
            priority,
            key,
            max_attempts,
        })
}

fn disposition() -> impl Strategy<Value = Disposition> {
    let delay = prop_oneof![Just(Duration::ZERO), Just(SHORT), Just(LONG)];
    prop_oneof![
        Just(Disposition::Complete),
        Just(Disposition::Fail),
        delay.clone().prop_map(|delay| Disposition::Retry { delay }),
        delay.prop_map(|delay| Disposition::Defer { delay }),
        Just(Disposition::PossibleBug),
    ]
}

/// When a queued task may be claimed.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Ready {
    /// Now, since the step numbered so: older than every task made claimable later.
    Since(usize),
    /// After a short delay: once the clock jumped (`jumped`), maybe before.
    Soon { jumped: bool },
    /// Not within the case.
    Later,
}

impl Ready {
    /// When a task delayed by `delay` at step `step` may be claimed.
    fn after(delay: Duration, step: usize) -> Self {
        if delay.is_zero() {
            Ready::Since(step)
        } else if delay <= SHORT {
            Ready::Soon { jumped: false }
        } else {
            Ready::Later
        }
    }
}

/// When a live lease expires.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expiry {
    Long,
    /// Once the clock jumped (`jumped`), maybe before.
    Short {
        jumped: bool,
    },
}

impl Expiry {
    fn of(ttl: Ttl) -> Self {
        match ttl {
            Ttl::Long => Expiry::Long,
            Ttl::Short => Expiry::Short { jumped: false },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Queued(Ready),
    /// Held by the lease numbered `lease` in [`Model::leases`].
    Running {
        lease: usize,
        expiry: Expiry,
    },
    /// Completed, failed, possible bug or cancelled.
    Ended(TaskStatus),
}

impl State {
    fn status(self) -> TaskStatus {
        match self {
            State::Queued(_) => TaskStatus::Queued,
            State::Running { .. } => TaskStatus::Running,
            State::Ended(status) => status,
        }
    }
}

/// What the test knows about a task it submitted.
#[derive(Debug)]
struct ModelTask {
    id: TaskId,
    seq: u64,
    priority: Priority,
    key: Option<&'static str>,
    attempts: u32,
    max_attempts: u32,
    state: State,
}

impl ModelTask {
    fn is_unfinished(&self) -> bool {
        matches!(self.state, State::Queued(_) | State::Running { .. })
    }
}

/// What the store should hold.
#[derive(Debug, Default)]
struct Model {
    /// In order of submission, which is the store's listing order.
    tasks: Vec<ModelTask>,
    /// Every lease handed out, live or stale.
    leases: Vec<Lease>,
    /// When a clock jump has let every short lease and delay written so far run out.
    jump_until: Option<Instant>,
}

impl Model {
    fn position(&self, id: TaskId) -> Option<usize> {
        self.tasks.iter().position(|t| t.id == id)
    }

    /// The task that `lease` holds now, if it is live.
    fn holder(&self, lease: usize) -> Option<usize> {
        self.tasks
            .iter()
            .position(|t| matches!(t.state, State::Running { lease: l, .. } if l == lease))
    }

    fn pick_lease(&self, pick: LeasePick) -> Option<usize> {
        let (want_live, nth) = match pick {
            LeasePick::Live(nth) => (true, nth),
            LeasePick::Stale(nth) => (false, nth),
        };
        let picked: Vec<usize> = (0..self.leases.len())
            .filter(|&l| self.holder(l).is_some() == want_live)
            .collect();
        nth.of(picked.len()).map(|n| picked[n])
    }

    fn unfinished_with_key(&self, key: &str) -> Option<usize> {
        self.tasks
            .iter()
            .position(|t| t.key == Some(key) && t.is_unfinished())
    }

    /// Notes that a short lease or delay was just written: the next jump waits it out.
    fn wrote_short(&mut self) {
        self.jump_until = Some(Instant::now() + JUMP);
    }
}

/// A store call that should have succeeded.
trait OrFail<T> {
    fn or_fail(self, what: &str) -> Result<T, TestCaseError>;
}

impl<T> OrFail<T> for Result<T, StoreError> {
    fn or_fail(self, what: &str) -> Result<T, TestCaseError> {
        self.map_err(|e| TestCaseError::fail(format!("{what} failed: {e}")))
    }
}

/// A rejected call must say why it was rejected.
fn expect_error<T: std::fmt::Debug>(
    result: Result<T, StoreError>,
    what: &str,
    expected: impl FnOnce(&StoreError) -> bool,
) -> Result<(), TestCaseError> {
    match result {
        Err(e) if expected(&e) => Ok(()),
        other => Err(TestCaseError::fail(format!(
            "{what} should have been refused, but gave {other:?}"
        ))),
    }
}

/// The order claims hand tasks out in: priority, then oldest `run_at`, then submission.
fn claim_order(t: &Task) -> (Priority, chrono::DateTime<chrono::Utc>, u64) {
    (t.priority, t.run_at, t.seq)
}

/// One case: the store, the model of what it should hold, and the store's listing as of the
/// last step.
struct Case<'s> {
    store: &'s dyn Store,
    model: Model,
    listing: Vec<Task>,
    step: usize,
}

impl<'s> Case<'s> {
    fn new(store: &'s dyn Store) -> Self {
        Case {
            store,
            model: Model::default(),
            listing: Vec::new(),
            step: 0,
        }
    }

    async fn run(mut self, ops: &[Op]) -> Result<(), TestCaseError> {
        for (step, op) in ops.iter().enumerate() {
            self.step = step;
            let requeued = self.apply(op).await.map_err(|e| at_step(step, op, &e))?;
            self.check(requeued)
                .await
                .map_err(|e| at_step(step, op, &e))?;
        }
        self.check_leases_and_attempts()
            .await
            .map_err(|e| TestCaseError::fail(format!("after the last step: {e}")))
    }

    /// Runs `op` on the store and the model, checking what the store answered. Returns the
    /// task it requeued, the one ended task whose row may change.
    async fn apply(&mut self, op: &Op) -> Result<Option<TaskId>, TestCaseError> {
        match op {
            Op::Submit(specs) => self.submit(specs).await?,
            Op::Claim { worker, limit, ttl } => self.claim(WORKERS[*worker], *limit, *ttl).await?,
            Op::Heartbeat { lease, ttl } => {
                if let Some(lease) = self.model.pick_lease(*lease) {
                    self.heartbeat(lease, *ttl).await?;
                }
            }
            Op::Finish { lease, disposition } => {
                if let Some(lease) = self.model.pick_lease(*lease) {
                    self.finish(lease, *disposition).await?;
                }
            }
            Op::Release { lease } => {
                if let Some(lease) = self.model.pick_lease(*lease) {
                    self.release(lease).await?;
                }
            }
            Op::Cancel(nth) => {
                if let Some(i) = nth.of(self.model.tasks.len()) {
                    self.cancel(i).await?;
                }
            }
            Op::Requeue(nth) => {
                if let Some(i) = nth.of(self.model.tasks.len()) {
                    return self.requeue(i).await;
                }
            }
            Op::Rescue => self.rescue().await?,
            Op::ClockJump => self.clock_jump().await,
        }
        Ok(None)
    }

    async fn submit(&mut self, specs: &[NewSpec]) -> Result<(), TestCaseError> {
        let batch: Vec<NewTask> = specs
            .iter()
            .enumerate()
            .map(|(n, spec)| {
                let mut t = task(&format!("src/t{}_{n}.py", self.step), spec.priority);
                t.max_attempts = spec.max_attempts;
                t.idempotency_key = spec.key.map(String::from);
                t
            })
            .collect();
        let submitted = self.store.submit(&batch).await.or_fail("submit")?;
        prop_assert_eq!(submitted.len(), specs.len());
        for (spec, s) in specs.iter().zip(&submitted) {
            // Earlier tasks of the same batch count: they are stored first.
            if let Some(holder) = spec.key.and_then(|k| self.model.unfinished_with_key(k)) {
                let holder = &self.model.tasks[holder];
                prop_assert!(
                    s.deduplicated && s.id == holder.id && s.seq == holder.seq,
                    "key {:?} is held by #{}, but submit answered {:?}",
                    spec.key,
                    holder.seq,
                    s
                );
                continue;
            }
            prop_assert!(!s.deduplicated, "{:?} deduplicated to nothing", s);
            prop_assert!(
                self.model
                    .tasks
                    .iter()
                    .all(|t| t.id != s.id && t.seq < s.seq),
                "a new task must get a new id and a higher number: {:?}",
                s
            );
            self.model.tasks.push(ModelTask {
                id: s.id,
                seq: s.seq,
                priority: spec.priority,
                key: spec.key,
                attempts: 0,
                max_attempts: spec.max_attempts,
                state: State::Queued(Ready::Since(self.step)),
            });
        }
        Ok(())
    }

    async fn claim(&mut self, worker: &str, limit: u32, ttl: Ttl) -> Result<(), TestCaseError> {
        // Tasks that must be claimable, and those whose short delay may have run out.
        let mut due = Vec::new();
        let mut maybe_due = Vec::new();
        for (i, t) in self.model.tasks.iter().enumerate() {
            match t.state {
                State::Queued(Ready::Since(_) | Ready::Soon { jumped: true }) => due.push(i),
                State::Queued(Ready::Soon { jumped: false }) => maybe_due.push(i),
                _ => {}
            }
        }
        let claimed = self
            .store
            .claim(worker, limit, ttl.duration())
            .await
            .or_fail("claim")?;
        if matches!(ttl, Ttl::Short) && !claimed.is_empty() {
            self.model.wrote_short();
        }
        prop_assert!(claimed.len() <= limit as usize);
        for (t, lease) in &claimed {
            let Some(i) = self.model.position(t.id) else {
                return Err(TestCaseError::fail(format!(
                    "claimed unknown task {}",
                    t.id
                )));
            };
            let m = &self.model.tasks[i];
            prop_assert!(
                due.contains(&i) || maybe_due.contains(&i),
                "claimed #{}, which is {:?}",
                m.seq,
                m.state
            );
            // Highest priority, then oldest: no task that was due ranks before it.
            let order = claim_order(&self.listing[i]);
            if let Some(&passed) = due
                .iter()
                .find(|&&d| d != i && claim_order(&self.listing[d]) < order)
            {
                return Err(TestCaseError::fail(format!(
                    "claimed #{} {:?} while #{} {:?} was due",
                    m.seq,
                    order,
                    self.model.tasks[passed].seq,
                    claim_order(&self.listing[passed])
                )));
            }
            due.retain(|&d| d != i);
            prop_assert_eq!(t.status, TaskStatus::Running);
            prop_assert_eq!(t.attempts, m.attempts + 1);
            prop_assert_eq!(t.lease_owner.as_deref(), Some(worker));
            prop_assert!(
                lease.task_id == t.id && lease.owner == worker && lease.attempt == t.attempts,
                "lease {:?} for #{} (attempt {})",
                lease,
                t.seq,
                t.attempts
            );
            prop_assert!(
                self.model.leases.iter().all(|l| l.token != lease.token),
                "a lease token was handed out twice"
            );
            let m = &mut self.model.tasks[i];
            m.attempts += 1;
            m.state = State::Running {
                lease: self.model.leases.len(),
                expiry: Expiry::of(ttl),
            };
            self.model.leases.push(lease.clone());
            let attempts = self.store.attempts(t.id).await.or_fail("attempts")?;
            prop_assert_eq!(attempts.len(), t.attempts as usize);
            let last = &attempts[attempts.len() - 1];
            prop_assert!(
                last.outcome == AttemptOutcome::Running && last.worker == worker,
                "the claim's attempt is {:?}",
                last
            );
        }
        if let Some(&left) = due.first()
            && claimed.len() < limit as usize
        {
            return Err(TestCaseError::fail(format!(
                "claim of {limit} gave {} while #{} was due",
                claimed.len(),
                self.model.tasks[left].seq
            )));
        }
        Ok(())
    }

    async fn heartbeat(&mut self, lease: usize, ttl: Ttl) -> Result<(), TestCaseError> {
        let held = self.model.leases[lease].clone();
        let Some(i) = self.model.holder(lease) else {
            let (i, attempts) = self.before_fenced_write(&held).await?;
            let result = self.store.heartbeat(&held, ttl.duration()).await;
            expect_lease_lost(result, &held)?;
            return self
                .expect_unchanged(i, &attempts, "a refused heartbeat")
                .await;
        };
        self.store
            .heartbeat(&held, ttl.duration())
            .await
            .or_fail("heartbeat of a live lease")?;
        if matches!(ttl, Ttl::Short) {
            self.model.wrote_short();
        }
        self.model.tasks[i].state = State::Running {
            lease,
            expiry: Expiry::of(ttl),
        };
        Ok(())
    }

    async fn finish(
        &mut self,
        lease: usize,
        disposition: Disposition,
    ) -> Result<(), TestCaseError> {
        let held = self.model.leases[lease].clone();
        let (i, attempts) = self.before_fenced_write(&held).await?;
        let done = match disposition {
            Disposition::Complete => report(None, None),
            _ => report(Some(ErrorKind::ServerError), Some("HTTP 503")),
        };
        let result = self.store.finish(&held, disposition, &done).await;
        if self.model.holder(lease).is_none() {
            expect_lease_lost(result, &held)?;
            return self
                .expect_unchanged(i, &attempts, "a refused finish")
                .await;
        }
        let status = result.or_fail("finish with a live lease")?;
        let m = &mut self.model.tasks[i];
        let (state, outcome) = match disposition {
            Disposition::Complete => (
                State::Ended(TaskStatus::Completed),
                AttemptOutcome::Completed,
            ),
            Disposition::Fail => (State::Ended(TaskStatus::Failed), AttemptOutcome::Failed),
            // A retry with no attempts left fails.
            Disposition::Retry { .. } if m.attempts >= m.max_attempts => {
                (State::Ended(TaskStatus::Failed), AttemptOutcome::Failed)
            }
            Disposition::Retry { delay } => (
                State::Queued(Ready::after(delay, self.step)),
                AttemptOutcome::Failed,
            ),
            // A deferral does not count against the task: one more attempt is allowed.
            Disposition::Defer { delay } => {
                m.max_attempts += 1;
                (
                    State::Queued(Ready::after(delay, self.step)),
                    AttemptOutcome::Failed,
                )
            }
            Disposition::PossibleBug => (
                State::Ended(TaskStatus::PossibleBug),
                AttemptOutcome::PossibleBug,
            ),
        };
        m.state = state;
        prop_assert_eq!(status, state.status());
        if state == State::Queued(Ready::Soon { jumped: false }) {
            self.model.wrote_short();
        }
        self.expect_attempt_ended(held.task_id, &attempts, outcome)
            .await
    }

    async fn release(&mut self, lease: usize) -> Result<(), TestCaseError> {
        let held = self.model.leases[lease].clone();
        let (i, attempts) = self.before_fenced_write(&held).await?;
        let result = self.store.release(&held, "the worker stopped").await;
        if self.model.holder(lease).is_none() {
            expect_lease_lost(result, &held)?;
            return self
                .expect_unchanged(i, &attempts, "a refused release")
                .await;
        }
        result.or_fail("release of a live lease")?;
        // The attempt given back does not count against the task.
        let m = &mut self.model.tasks[i];
        m.max_attempts += 1;
        m.state = State::Queued(Ready::Since(self.step));
        self.expect_attempt_ended(held.task_id, &attempts, AttemptOutcome::Abandoned)
            .await
    }

    async fn cancel(&mut self, i: usize) -> Result<(), TestCaseError> {
        let id = self.model.tasks[i].id;
        let attempts = self.store.attempts(id).await.or_fail("attempts")?;
        let result = self.store.cancel(id).await;
        match self.model.tasks[i].state {
            State::Ended(status) => {
                expect_error(result, "cancelling an ended task", |e| {
                    matches!(e, StoreError::InvalidState { task, status: s, .. }
                        if *task == id && *s == status)
                })?;
                self.expect_unchanged(i, &attempts, "a refused cancel")
                    .await
            }
            was => {
                let cancelled = result.or_fail("cancel")?;
                prop_assert_eq!(cancelled.status, TaskStatus::Cancelled);
                self.model.tasks[i].state = State::Ended(TaskStatus::Cancelled);
                if matches!(was, State::Running { .. }) {
                    self.expect_attempt_ended(id, &attempts, AttemptOutcome::Cancelled)
                        .await?;
                }
                Ok(())
            }
        }
    }

    async fn requeue(&mut self, i: usize) -> Result<Option<TaskId>, TestCaseError> {
        let m = &self.model.tasks[i];
        let id = m.id;
        let attempts = self.store.attempts(id).await.or_fail("attempts")?;
        let result = self.store.requeue(id).await;
        let State::Ended(status @ (TaskStatus::Failed | TaskStatus::Cancelled)) = m.state else {
            let status = m.state.status();
            expect_error(
                result,
                "requeueing a task neither failed nor cancelled",
                |e| {
                    matches!(e, StoreError::InvalidState { task, status: s, .. }
                    if *task == id && *s == status)
                },
            )?;
            self.expect_unchanged(i, &attempts, "a refused requeue")
                .await?;
            return Ok(None);
        };
        // Its idempotency key may have been taken by a task submitted since.
        if let Some(holder) = m.key.and_then(|k| self.model.unfinished_with_key(k)) {
            let holder = self.model.tasks[holder].id;
            expect_error(
                result,
                "requeueing onto a taken key",
                |e| matches!(e, StoreError::IdempotencyConflict { task, .. } if *task == holder),
            )?;
            self.expect_unchanged(i, &attempts, "a refused requeue")
                .await?;
            return Ok(None);
        }
        let requeued = result.or_fail(&format!("requeue of a {status} task"))?;
        let m = &mut self.model.tasks[i];
        // One more attempt, when its attempts were used up.
        m.max_attempts = m.max_attempts.max(m.attempts + 1);
        m.state = State::Queued(Ready::Since(self.step));
        prop_assert_eq!(requeued.status, TaskStatus::Queued);
        prop_assert_eq!(
            &self.store.attempts(id).await.or_fail("attempts")?,
            &attempts,
            "requeue changed the attempts"
        );
        Ok(Some(id))
    }

    async fn rescue(&mut self) -> Result<(), TestCaseError> {
        // Leases that must have expired, and those that may have.
        let mut expired = Vec::new();
        let mut maybe_expired = Vec::new();
        for (i, t) in self.model.tasks.iter().enumerate() {
            if let State::Running {
                expiry: Expiry::Short { jumped },
                ..
            } = t.state
            {
                let attempts = self.store.attempts(t.id).await.or_fail("attempts")?;
                if jumped {
                    expired.push((i, attempts));
                } else {
                    maybe_expired.push((i, attempts));
                }
            }
        }
        let rescued = self.store.rescue_expired().await.or_fail("rescue")?;
        let mut seen = HashSet::new();
        for r in &rescued {
            let i = self.model.position(r.id);
            let Some((i, attempts)) = expired
                .iter()
                .chain(&maybe_expired)
                .find(|(e, _)| Some(*e) == i)
            else {
                return Err(TestCaseError::fail(format!(
                    "rescued {r:?}, whose lease had not expired"
                )));
            };
            prop_assert!(seen.insert(*i), "rescued #{} twice", self.listing[*i].seq);
            let m = &mut self.model.tasks[*i];
            let State::Running { lease, .. } = m.state else {
                unreachable!("only running tasks were candidates")
            };
            prop_assert_eq!(&r.owner, &self.model.leases[lease].owner);
            // An expired attempt counts: with none left, the task fails.
            m.state = if m.attempts >= m.max_attempts {
                State::Ended(TaskStatus::Failed)
            } else {
                State::Queued(Ready::Since(self.step))
            };
            prop_assert_eq!(r.status, m.state.status());
            let id = m.id;
            self.expect_attempt_ended(id, attempts, AttemptOutcome::Abandoned)
                .await?;
        }
        if let Some((missed, _)) = expired.iter().find(|(i, _)| !seen.contains(i)) {
            return Err(TestCaseError::fail(format!(
                "#{}'s lease expired but was not rescued",
                self.listing[*missed].seq
            )));
        }
        Ok(())
    }

    async fn clock_jump(&mut self) {
        if let Some(until) = self.model.jump_until.take() {
            tokio::time::sleep_until(until.into()).await;
        }
        for t in &mut self.model.tasks {
            match &mut t.state {
                State::Queued(Ready::Soon { jumped })
                | State::Running {
                    expiry: Expiry::Short { jumped },
                    ..
                } => *jumped = true,
                _ => {}
            }
        }
    }

    /// The task a (possibly stale) lease was for, and its attempts before a fenced write.
    async fn before_fenced_write(
        &self,
        lease: &Lease,
    ) -> Result<(usize, Vec<Attempt>), TestCaseError> {
        let i = self
            .model
            .position(lease.task_id)
            .expect("leases are of submitted tasks");
        let attempts = self
            .store
            .attempts(lease.task_id)
            .await
            .or_fail("attempts")?;
        Ok((i, attempts))
    }

    /// A refused write changed nothing: the task's row and attempts are as they were.
    async fn expect_unchanged(
        &self,
        i: usize,
        attempts_before: &[Attempt],
        what: &str,
    ) -> Result<(), TestCaseError> {
        let before = &self.listing[i];
        let after = self
            .store
            .find(&before.id.to_string())
            .await
            .or_fail("find")?;
        prop_assert_eq!(&after, before, "{} changed the task", what);
        let attempts = self.store.attempts(before.id).await.or_fail("attempts")?;
        prop_assert_eq!(
            attempts.as_slice(),
            attempts_before,
            "{} changed the attempts",
            what
        );
        Ok(())
    }

    /// The task's running attempt, the last, ended with `outcome`; the others are untouched.
    async fn expect_attempt_ended(
        &self,
        id: TaskId,
        before: &[Attempt],
        outcome: AttemptOutcome,
    ) -> Result<(), TestCaseError> {
        let after = self.store.attempts(id).await.or_fail("attempts")?;
        let (Some((was, earlier)), Some((now, same))) = (before.split_last(), after.split_last())
        else {
            return Err(TestCaseError::fail(format!("task {id} has no attempt")));
        };
        prop_assert_eq!(same, earlier, "earlier attempts changed");
        prop_assert_eq!(was.outcome, AttemptOutcome::Running);
        prop_assert_eq!(now.outcome, outcome);
        prop_assert!(now.finished_at.is_some(), "{:?} has no end", now);
        Ok(())
    }

    /// The invariants that hold after every step, given the task the step requeued.
    async fn check(&mut self, requeued: Option<TaskId>) -> Result<(), TestCaseError> {
        let listing = self
            .store
            .list(&TaskFilter::default())
            .await
            .or_fail("list")?;
        let stats = self.store.stats().await.or_fail("stats")?;

        // Every submitted task is listed once, in one state: the model's.
        let listed: Vec<u64> = listing.iter().map(|t| t.seq).collect();
        let submitted: Vec<u64> = self.model.tasks.iter().map(|t| t.seq).collect();
        prop_assert_eq!(listed, submitted, "the listing is not the tasks submitted");
        for (t, m) in listing.iter().zip(&self.model.tasks) {
            prop_assert!(
                t.id == m.id
                    && t.status == m.state.status()
                    && t.attempts == m.attempts
                    && t.max_attempts == m.max_attempts
                    && t.priority == m.priority
                    && t.idempotency_key.as_deref() == m.key,
                "#{} is {:?}, the model says {:?}",
                t.seq,
                t,
                m
            );
            // A lease exactly while running: the one the model knows is live.
            let owner = match m.state {
                State::Running { lease, .. } => Some(self.model.leases[lease].owner.as_str()),
                _ => None,
            };
            prop_assert!(
                t.lease_owner.as_deref() == owner
                    && t.lease_expires_at.is_some() == owner.is_some(),
                "#{} is {} with lease owner {:?} until {:?}",
                t.seq,
                t.status,
                t.lease_owner,
                t.lease_expires_at
            );
        }

        // Ended tasks never change, except a failed or cancelled one through requeue; and no
        // task's attempt count ever drops.
        for (old, new) in self.listing.iter().zip(&listing) {
            prop_assert!(
                new.attempts >= old.attempts,
                "#{}'s attempts went from {} to {}",
                new.seq,
                old.attempts,
                new.attempts
            );
            if old.status.is_terminal() && new != old {
                prop_assert!(
                    requeued == Some(old.id)
                        && matches!(old.status, TaskStatus::Failed | TaskStatus::Cancelled),
                    "#{} changed after it ended: {:?} became {:?}",
                    old.seq,
                    old,
                    new
                );
            }
        }

        // "Oldest" is the order tasks became claimable in: their run_at follows it.
        let mut since: Vec<(usize, &Task)> = self
            .model
            .tasks
            .iter()
            .zip(&listing)
            .filter_map(|(m, t)| match m.state {
                State::Queued(Ready::Since(step)) => Some((step, t)),
                _ => None,
            })
            .collect();
        since.sort_by_key(|(step, t)| (*step, t.seq));
        for pair in since.windows(2) {
            let ((a_step, a), (b_step, b)) = (pair[0], pair[1]);
            prop_assert!(
                a_step == b_step || a.run_at <= b.run_at,
                "#{} was queued before #{} but runs later ({} > {})",
                a.seq,
                b.seq,
                a.run_at,
                b.run_at
            );
        }

        // The stats count what is listed, and add up to the number submitted.
        let mut counted: BTreeMap<(TaskStatus, Priority), u64> = BTreeMap::new();
        for t in &listing {
            *counted.entry((t.status, t.priority)).or_default() += 1;
        }
        let mut reported = BTreeMap::new();
        for &(status, priority, n) in &stats.counts {
            prop_assert!(
                n > 0 && reported.insert((status, priority), n).is_none(),
                "stats count ({}, {}) as {}, or twice",
                status,
                priority,
                n
            );
        }
        prop_assert_eq!(&reported, &counted, "stats disagree with the listing");
        prop_assert_eq!(
            reported.values().sum::<u64>(),
            self.model.tasks.len() as u64
        );
        let any = |status| listing.iter().any(|t| t.status == status);
        prop_assert_eq!(stats.next_run_at.is_some(), any(TaskStatus::Queued));
        prop_assert_eq!(stats.next_lease_expiry.is_some(), any(TaskStatus::Running));

        self.listing = listing;
        Ok(())
    }

    /// At the end of a case: every lease the store accepts a write with is one the model
    /// holds live, so no task is held by two; and every task's attempts are one per claim,
    /// the running one (if any) last.
    async fn check_leases_and_attempts(&self) -> Result<(), TestCaseError> {
        for (l, lease) in self.model.leases.iter().enumerate() {
            let accepted = self.store.heartbeat(lease, LONG).await;
            match self.model.holder(l) {
                Some(_) => accepted.or_fail("heartbeat of a live lease")?,
                None => expect_lease_lost(accepted, lease)?,
            }
        }
        for m in &self.model.tasks {
            let attempts = self.store.attempts(m.id).await.or_fail("attempts")?;
            let numbers: Vec<u32> = attempts.iter().map(|a| a.number).collect();
            let expected: Vec<u32> = (1..=m.attempts).collect();
            prop_assert_eq!(numbers, expected, "#{}'s attempts", m.seq);
            let running: Vec<u32> = attempts
                .iter()
                .filter(|a| a.outcome == AttemptOutcome::Running)
                .map(|a| a.number)
                .collect();
            let expected: Vec<u32> = match m.state {
                State::Running { .. } => vec![m.attempts],
                _ => vec![],
            };
            prop_assert_eq!(running, expected, "#{}'s running attempts", m.seq);
        }
        Ok(())
    }
}

fn expect_lease_lost<T: std::fmt::Debug>(
    result: Result<T, StoreError>,
    lease: &Lease,
) -> Result<(), TestCaseError> {
    expect_error(
        result,
        &format!("a write with stale lease {lease:?}"),
        |e| {
            matches!(e, StoreError::LeaseLost { task, attempt }
            if *task == lease.task_id && *attempt == lease.attempt)
        },
    )
}

fn at_step(step: usize, op: &Op, e: &TestCaseError) -> TestCaseError {
    TestCaseError::fail(format!("step {step}, {op:?}: {e}"))
}

/// `cases` cases, unless `PROPTEST_CASES` says otherwise.
fn config(cases: u32) -> Config {
    // Config::default() has read PROPTEST_CASES (and the other PROPTEST_ variables).
    let defaults = Config::default();
    Config {
        cases: if std::env::var_os("PROPTEST_CASES").is_some() {
            defaults.cases
        } else {
            cases
        },
        // A failure found here is kept as a regression test of its own (see the end of the
        // file), which reads without the strategy that generated it.
        failure_persistence: None,
        ..defaults
    }
}

/// A store in a fresh `F`, with the runtime it was opened on. Dropped in field order: the
/// store before the place it is in, and both before the runtime they ran on.
struct Harness<F> {
    store: std::sync::Arc<dyn Store>,
    fx: F,
    runtime: tokio::runtime::Runtime,
}

impl<F: Fixture> Harness<F> {
    /// `None` (having said why) when `F`'s backend cannot be tested here.
    fn new() -> Option<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let fx = runtime.block_on(F::new())?;
        let store = runtime.block_on(open(&fx));
        Some(Harness { store, fx, runtime })
    }

    /// Runs one case on the emptied store.
    fn run(&self, ops: &[Op]) -> Result<(), TestCaseError> {
        self.runtime.block_on(async {
            self.fx.execute(EMPTY).await;
            Case::new(&*self.store).run(ops).await
        })
    }
}

/// Runs the property cases on a store in `F`, one store for all of them.
fn check_backend<F: Fixture>(backend: &str, cases: u32) {
    let Some(harness) = Harness::<F>::new() else {
        return;
    };
    let config = config(cases);
    let steps = Cell::new(0);
    let started = Instant::now();
    let result = TestRunner::new(config.clone()).run(&operations(), |ops| {
        steps.set(steps.get() + ops.len());
        harness.run(&ops)
    });
    match result {
        Ok(()) => {
            // Straight to stderr, past the harness's capture: how much was checked is worth
            // seeing on a pass too.
            let _ = writeln!(
                std::io::stderr(),
                "queue properties held on {backend}: {} cases, {} steps in {:.1?}",
                config.cases,
                steps.get(),
                started.elapsed()
            );
        }
        Err(TestError::Fail(why, ops)) => {
            let ops: Vec<String> = ops.iter().map(|op| format!("    {op:?},")).collect();
            panic!(
                "{backend}: {why}\nminimal failing sequence:\n{}",
                ops.join("\n")
            )
        }
        Err(TestError::Abort(why)) => panic!("{backend}: aborted: {why}"),
    }
}

#[test]
fn sqlite_queue_keeps_its_invariants() {
    check_backend::<SqliteFixture>("sqlite", SQLITE_CASES);
}

#[test]
fn postgres_queue_keeps_its_invariants() {
    check_backend::<PgFixture>("postgres", POSTGRES_CASES);
}

/// Regression, found by the PostgreSQL case as "claimed #117 (Low) while #118 (Normal) was
/// due" after a refused requeue of #118: a refused cancel or requeue returned while its
/// transaction, which had locked the task's row, was still open. sqlx does not roll back a
/// dropped transaction; it queues the ROLLBACK, which goes out when the pool tests the
/// connection, in a task on the runtime that dropped it. Until then claims passed over the
/// task (they skip locked rows) and a requeue of it waited; a refused `take_limits` kept its
/// limit locked the same way. Here the refusing stores' runtimes are not driven again after
/// their refusals, so "until then" lasts. SQLite never had the problem (sqlx hands the
/// rollback to the connection's own thread at once); it runs the same test to stay alike.
fn a_refused_call_leaves_nothing_locked<F: Fixture>() {
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    let working = runtime();
    let Some(fx) = working.block_on(F::new()) else {
        return;
    };
    let store = working.block_on(open(&fx));
    let (normal, failed) = working.block_on(async {
        let submitted = store
            .submit(&[
                task("low.py", Priority::Low),
                task("normal.py", Priority::Normal),
                task("failed.py", Priority::Critical),
            ])
            .await
            .unwrap();
        let (claimed, lease) = store.claim("w", 1, LONG).await.unwrap().remove(0);
        assert_eq!(claimed.id, submitted[2].id);
        store
            .finish(&lease, Disposition::Fail, &report(None, None))
            .await
            .unwrap();
        (submitted[1].id, submitted[2].id)
    });

    let limit = [SharedLimit {
        key: "model:m".into(),
        rpm: Some(1),
        tpm: None,
        rpd: None,
    }];
    let granted = working.block_on(store.take_limits(&limit, 1)).unwrap();
    assert_eq!(granted, LimitDecision::Granted);

    // Each refusal by a store of its own, whose runtime is not driven after it.
    let refusing = [runtime(), runtime(), runtime()];
    let others: Vec<_> = refusing.iter().map(|r| r.block_on(open(&fx))).collect();
    let refused = refusing[0].block_on(others[0].requeue(normal));
    assert!(
        matches!(refused, Err(StoreError::InvalidState { .. })),
        "{refused:?}"
    );
    let refused = refusing[1].block_on(others[1].cancel(failed));
    assert!(
        matches!(refused, Err(StoreError::InvalidState { .. })),
        "{refused:?}"
    );
    let refused = refusing[2].block_on(others[2].take_limits(&limit, 1));
    assert!(
        matches!(refused, Ok(LimitDecision::NotBefore { .. })),
        "{refused:?}"
    );

    working.block_on(async {
        let claimed = store.claim("w", 1, LONG).await.unwrap();
        assert_eq!(
            claimed[0].0.id, normal,
            "the claim passed over the task a refused requeue had locked"
        );
        let within = Duration::from_secs(5);
        let requeued = tokio::time::timeout(within, store.requeue(failed))
            .await
            .expect("the requeue waited for the lock a refused cancel kept");
        assert_eq!(requeued.unwrap().status, TaskStatus::Queued);
        let refused = tokio::time::timeout(within, store.take_limits(&limit, 1))
            .await
            .expect("take_limits waited for the lock a refused one kept");
        assert!(
            matches!(refused, Ok(LimitDecision::NotBefore { .. })),
            "{refused:?}"
        );
    });
}

#[test]
fn sqlite_a_refused_call_leaves_nothing_locked() {
    a_refused_call_leaves_nothing_locked::<SqliteFixture>();
}

#[test]
fn postgres_a_refused_call_leaves_nothing_locked() {
    a_refused_call_leaves_nothing_locked::<PgFixture>();
}
