//! Live progress for `pitcrew run`: on a terminal, an overall bar (done, failed, running, cost,
//! ETA) and a spinner line per running task; otherwise one line per event plus a periodic
//! summary line, so logs stay readable. Tasks are named by their handles (`#42`). Every text
//! shown is redacted, as all output is.
//!
//! The ETA is the work left — the median attempt's duration for each task still waiting, and
//! what the median leaves of each running one — spread over the workers. A median does not
//! swing with one slow task, and nothing here grows while the run merely waits: the bar's
//! own estimate (a decaying rate of finished tasks) climbed from seconds to minutes during a
//! single long task.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use pitcrew_core::{TaskId, TaskStatus};
use pitcrew_engine::Event;

use crate::output;

/// How often the plain display prints a summary line.
const SUMMARY_EVERY: Duration = Duration::from_secs(30);

#[derive(Debug, Default)]
struct Tally {
    completed: u64,
    failed: u64,
    possible_bugs: u64,
    retried: u64,
    cost_usd: f64,
}

#[derive(Debug)]
pub struct Progress {
    tally: Tally,
    /// Tasks waiting or running when the run started (grows if more arrive).
    total: u64,
    /// Tasks processed at once.
    workers: u32,
    started: Instant,
    last_summary: Instant,
    /// Running tasks and when their attempt started.
    running: HashMap<TaskId, Instant>,
    /// How long each finished attempt took, for the ETA.
    durations: Vec<Duration>,
    /// Each task's number in the store, for its handle.
    handles: HashMap<TaskId, u64>,
    /// Generated text of followed tasks not yet printed (printed line by line).
    followed: HashMap<TaskId, String>,
    bars: Option<(MultiProgress, ProgressBar, HashMap<TaskId, ProgressBar>)>,
}

/// The task an event is about, if it is about one.
pub fn task_of(event: &Event) -> Option<TaskId> {
    match event {
        Event::Started { task, .. }
        | Event::Progress { task, .. }
        | Event::Output { task, .. }
        | Event::Finished { task, .. }
        | Event::LeaseLost { task, .. }
        | Event::Released { task, .. } => Some(*task),
        Event::Rescued(r) => Some(r.id),
        Event::BudgetSpent { .. } | Event::Warning(_) => None,
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

/// `45s`, `3m 05s` or `2h 03m`.
fn short_duration(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m {s:02}s"),
        (h, m, _) => format!("{h}h {m:02}m"),
    }
}

/// The middle of `samples` (the upper one of an even count).
fn median(samples: &[Duration]) -> Option<Duration> {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    sorted.get(sorted.len() / 2).copied()
}

/// The time the work left takes: `waiting` tasks of `typical` length each, plus what
/// `typical` leaves of each running task (`elapsed` so far), spread over `workers`.
fn estimate(typical: Duration, elapsed: &[Duration], waiting: u64, workers: u32) -> Duration {
    let running_left: Duration = elapsed.iter().map(|e| typical.saturating_sub(*e)).sum();
    let work = running_left + typical * u32::try_from(waiting).unwrap_or(u32::MAX);
    let tasks = waiting + elapsed.len() as u64;
    let lanes = u64::from(workers.max(1)).min(tasks.max(1));
    work / u32::try_from(lanes).unwrap_or(1)
}

impl Progress {
    /// A display for a run of `workers` expected to finish `total` tasks, whose numbers in the
    /// store `handles` gives; bars only on a terminal.
    pub fn new(total: u64, workers: u32, handles: HashMap<TaskId, u64>) -> Progress {
        let bars = std::io::stderr().is_terminal().then(|| {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let overall = multi.add(ProgressBar::new(total));
            overall.set_style(
                ProgressStyle::with_template("{bar:30} {pos}/{len} done {msg}")
                    .expect("the template is valid"),
            );
            overall.enable_steady_tick(Duration::from_millis(250));
            (multi, overall, HashMap::new())
        });
        let now = Instant::now();
        Progress {
            tally: Tally::default(),
            total,
            workers,
            started: now,
            last_summary: now,
            running: HashMap::new(),
            durations: Vec::new(),
            handles,
            followed: HashMap::new(),
            bars,
        }
    }

    fn running(&self) -> usize {
        self.running.len()
    }

    /// Whether the task's handle is known.
    pub fn knows(&self, task: &TaskId) -> bool {
        self.handles.contains_key(task)
    }

    /// Learns a task's number in the store (a task submitted while the run goes on).
    pub fn learn(&mut self, task: TaskId, seq: u64) {
        self.handles.insert(task, seq);
    }

    /// `#42`, or the start of the id of a task whose number is not known.
    fn name(&self, task: &TaskId) -> String {
        match self.handles.get(task) {
            Some(seq) => output::handle(*seq),
            None => task.to_string()[..8].to_string(),
        }
    }

    /// `ETA 1m 05s`, or `ETA unknown` before any attempt has finished.
    fn eta(&self) -> String {
        let Some(typical) = median(&self.durations) else {
            return "ETA unknown".into();
        };
        let elapsed: Vec<Duration> = self.running.values().map(Instant::elapsed).collect();
        let waiting = self
            .total
            .saturating_sub(self.done())
            .saturating_sub(elapsed.len() as u64);
        format!(
            "ETA {}",
            short_duration(estimate(typical, &elapsed, waiting, self.workers))
        )
    }

    fn done(&self) -> u64 {
        self.tally.completed + self.tally.failed + self.tally.possible_bugs
    }

    fn status_line(&self) -> String {
        format!(
            "· {} failed · {} possible bugs · {} running · {} retried · ${:.4}",
            self.tally.failed,
            self.tally.possible_bugs,
            self.running(),
            self.tally.retried,
            self.tally.cost_usd
        )
    }

    /// Prints a line above the bars (or plainly), redacted.
    fn say(&self, text: &str) {
        match &self.bars {
            Some((multi, _, _)) => {
                let _ = multi.println(output::shown(text));
            }
            None => output::message(text),
        }
    }

    pub fn event(&mut self, event: &Event) {
        match event {
            Event::Started {
                task,
                attempt,
                worker,
                what,
            } => {
                self.running.insert(*task, Instant::now());
                let name = self.name(task);
                if let Some((multi, _, tasks)) = &mut self.bars {
                    let spinner = multi.add(ProgressBar::new_spinner());
                    spinner.set_style(
                        ProgressStyle::with_template("  {spinner} {msg} ({elapsed})")
                            .expect("the template is valid"),
                    );
                    spinner.set_message(output::shown(&format!(
                        "{name}  {what}  (attempt {attempt})"
                    )));
                    spinner.enable_steady_tick(Duration::from_millis(120));
                    tasks.insert(*task, spinner);
                } else {
                    self.say(&format!(
                        "[started]    {name}  {what}  (attempt {attempt}, {worker})"
                    ));
                }
            }
            Event::Progress { task, message } => {
                if let Some((_, _, tasks)) = &self.bars {
                    if let Some(spinner) = tasks.get(task) {
                        let what = spinner.message();
                        let head = what.split("  · ").next().unwrap_or(&what).to_string();
                        spinner.set_message(output::shown(&format!(
                            "{head}  · {}",
                            first_line(message)
                        )));
                    }
                } else {
                    self.say(&format!(
                        "[progress]   {}  {}",
                        self.name(task),
                        first_line(message)
                    ));
                }
            }
            Event::Output { task, text } => {
                let buffer = self.followed.entry(*task).or_default();
                buffer.push_str(text);
                let complete: Vec<String> = match buffer.rfind('\n') {
                    Some(end) => {
                        let lines = buffer[..end].lines().map(str::to_string).collect();
                        buffer.drain(..=end);
                        lines
                    }
                    None => Vec::new(),
                };
                for line in complete {
                    self.say(&format!("  │ {line}"));
                }
            }
            Event::BudgetSpent { spent_usd } => self.say(&format!(
                "[budget]     the run's budget is spent (${spent_usd:.4}): no more tasks are claimed"
            )),
            Event::Finished {
                task,
                status,
                model,
                error,
                retry_in,
                branch,
                usage,
                iterations,
                ..
            } => {
                if let Some(rest) = self.followed.remove(task).filter(|r| !r.is_empty()) {
                    self.say(&format!("  │ {rest}"));
                }
                self.tally.cost_usd += usage.cost_usd.unwrap_or(0.0);
                if let Some(started) = self.running.get(task) {
                    self.durations.push(started.elapsed());
                }
                let name = self.name(task);
                let text = match (status, retry_in) {
                    (TaskStatus::Completed, _) => {
                        self.tally.completed += 1;
                        format!(
                            "[completed]  {name}  → {}  (model {}, {iterations} round(s))",
                            branch.as_deref().unwrap_or("branch pending"),
                            model.as_deref().unwrap_or("?")
                        )
                    }
                    (TaskStatus::Queued, Some(delay)) => {
                        self.tally.retried += 1;
                        format!(
                            "[retry]      {name}  in {:.0}s: {}",
                            delay.as_secs_f64().ceil(),
                            first_line(error.as_deref().unwrap_or(""))
                        )
                    }
                    _ => {
                        if *status == TaskStatus::PossibleBug {
                            self.tally.possible_bugs += 1;
                        } else {
                            self.tally.failed += 1;
                        }
                        let error = error.as_deref().unwrap_or("no reason recorded");
                        let mut text = format!("[{status}]     {name}  {}", first_line(error));
                        for rest in error.lines().skip(1).take(12) {
                            text.push_str(&format!("\n               {rest}"));
                        }
                        text
                    }
                };
                self.finish_spinner(task);
                self.say(&text);
            }
            Event::LeaseLost { task, attempt } => {
                self.finish_spinner(task);
                self.say(&format!(
                    "[lease lost] {}  attempt {attempt}: the task was rescued or cancelled elsewhere; this result is discarded",
                    self.name(task)
                ));
            }
            Event::Released { task, attempt } => {
                self.finish_spinner(task);
                self.say(&format!(
                    "[given back] {}  attempt {attempt}: the grace period ran out; the task is queued again",
                    self.name(task)
                ));
            }
            Event::Rescued(r) => {
                self.total = self.total.max(self.done() + 1);
                self.say(&format!(
                    "[rescued]    {}  from worker `{}` whose lease expired → {}",
                    self.name(&r.id),
                    r.owner,
                    r.status
                ));
            }
            Event::Warning(w) => self.say(&format!("[warning]    {w}")),
        }
        self.refresh();
    }

    fn finish_spinner(&mut self, task: &TaskId) {
        self.running.remove(task);
        if let Some((multi, _, tasks)) = &mut self.bars
            && let Some(spinner) = tasks.remove(task)
        {
            spinner.finish_and_clear();
            multi.remove(&spinner);
        }
    }

    /// Called periodically, so a quiet stretch (long tasks) still shows progress.
    pub fn tick(&mut self) {
        self.refresh();
    }

    fn refresh(&mut self) {
        let done = self.done();
        self.total = self.total.max(done + self.running() as u64);
        let line = self.status_line();
        let eta = self.eta();
        if let Some((_, overall, _)) = &self.bars {
            overall.set_length(self.total);
            overall.set_position(done);
            overall.set_message(format!("{line} · {eta}"));
        } else if self.last_summary.elapsed() >= SUMMARY_EVERY {
            self.last_summary = Instant::now();
            output::message(&format!(
                "[progress]   {done}/{} done {line} · {eta} ({} elapsed)",
                self.total,
                short_duration(self.started.elapsed())
            ));
        }
    }

    pub fn finish(self) {
        if let Some((multi, overall, tasks)) = self.bars {
            for spinner in tasks.values() {
                spinner.finish_and_clear();
            }
            overall.finish_and_clear();
            let _ = multi.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn the_eta_is_the_work_left_over_the_workers() {
        // One worker, one task 1 s into a typical 4 s, two waiting: 3 + 8.
        assert_eq!(estimate(S(4), &[S(1)], 2, 1), S(11));
        // A running task past the typical length adds nothing, and nothing grows with time.
        assert_eq!(estimate(S(4), &[S(30)], 1, 1), S(4));
        assert_eq!(estimate(S(4), &[S(60)], 1, 1), S(4));
        // Four workers share eight waiting tasks; more workers than tasks do not help more.
        assert_eq!(estimate(S(10), &[], 8, 4), S(20));
        assert_eq!(estimate(S(10), &[], 2, 8), S(10));
        assert_eq!(estimate(S(10), &[], 0, 2), S(0));
    }

    #[test]
    fn one_slow_task_does_not_move_the_median() {
        assert_eq!(median(&[S(3), S(4), S(600)]), Some(S(4)));
        assert_eq!(median(&[S(3), S(5)]), Some(S(5)));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn durations_are_short() {
        assert_eq!(short_duration(S(45)), "45s");
        assert_eq!(short_duration(S(185)), "3m 05s");
        assert_eq!(short_duration(S(7380)), "2h 03m");
    }
}
