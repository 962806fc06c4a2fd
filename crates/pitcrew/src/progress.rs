//! Live progress for `pitcrew run`: on a terminal, an overall bar (done, failed, running, cost,
//! ETA) and a spinner line per running task; otherwise one line per event plus a periodic
//! summary line, so logs stay readable. Every text shown is redacted, as all output is.

use std::collections::{HashMap, HashSet};
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
    started: Instant,
    last_summary: Instant,
    running: HashSet<TaskId>,
    /// Generated text of followed tasks not yet printed (printed line by line).
    followed: HashMap<TaskId, String>,
    bars: Option<(MultiProgress, ProgressBar, HashMap<TaskId, ProgressBar>)>,
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

impl Progress {
    /// A display for a run expected to finish `total` tasks; bars only on a terminal.
    pub fn new(total: u64) -> Progress {
        let bars = std::io::stderr().is_terminal().then(|| {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let overall = multi.add(ProgressBar::new(total));
            overall.set_style(
                ProgressStyle::with_template("{bar:30} {pos}/{len} done {msg} · ETA {eta}")
                    .expect("the template is valid"),
            );
            overall.enable_steady_tick(Duration::from_millis(250));
            (multi, overall, HashMap::new())
        });
        let now = Instant::now();
        Progress {
            tally: Tally::default(),
            total,
            started: now,
            last_summary: now,
            running: HashSet::new(),
            followed: HashMap::new(),
            bars,
        }
    }

    fn running(&self) -> usize {
        self.running.len()
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
                let _ = multi.println(pitcrew_core::redact(text));
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
                self.running.insert(*task);
                if let Some((multi, _, tasks)) = &mut self.bars {
                    let spinner = multi.add(ProgressBar::new_spinner());
                    spinner.set_style(
                        ProgressStyle::with_template("  {spinner} {msg} ({elapsed})")
                            .expect("the template is valid"),
                    );
                    spinner.set_message(
                        pitcrew_core::redact(&format!("{task}  {what}  (attempt {attempt})"))
                            .into_owned(),
                    );
                    spinner.enable_steady_tick(Duration::from_millis(120));
                    tasks.insert(*task, spinner);
                } else {
                    self.say(&format!(
                        "[started]    {task}  {what}  (attempt {attempt}, {worker})"
                    ));
                }
            }
            Event::Progress { task, message } => {
                if let Some((_, _, tasks)) = &self.bars {
                    if let Some(spinner) = tasks.get(task) {
                        let what = spinner.message();
                        let head = what.split("  · ").next().unwrap_or(&what).to_string();
                        spinner.set_message(
                            pitcrew_core::redact(&format!("{head}  · {}", first_line(message)))
                                .into_owned(),
                        );
                    }
                } else {
                    self.say(&format!("[progress]   {task}  {}", first_line(message)));
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
                let text = match (status, retry_in) {
                    (TaskStatus::Completed, _) => {
                        self.tally.completed += 1;
                        format!(
                            "[completed]  {task}  → {}  (model {}, {iterations} round(s))",
                            branch.as_deref().unwrap_or("branch pending"),
                            model.as_deref().unwrap_or("?")
                        )
                    }
                    (TaskStatus::Queued, Some(delay)) => {
                        self.tally.retried += 1;
                        format!(
                            "[retry]      {task}  in {:.0}s: {}",
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
                        let mut text = format!("[{status}]     {task}  {}", first_line(error));
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
                    "[lease lost] {task}  attempt {attempt}: the task was rescued or cancelled elsewhere; this result is discarded"
                ));
            }
            Event::Released { task, attempt } => {
                self.finish_spinner(task);
                self.say(&format!(
                    "[given back] {task}  attempt {attempt}: the grace period ran out; the task is queued again"
                ));
            }
            Event::Rescued(r) => {
                self.total = self.total.max(self.done() + 1);
                self.say(&format!(
                    "[rescued]    {}  from worker `{}` whose lease expired → {}",
                    r.id, r.owner, r.status
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
        if let Some((_, overall, _)) = &self.bars {
            overall.set_length(self.total);
            overall.set_position(done);
            overall.set_message(line);
        } else if self.last_summary.elapsed() >= SUMMARY_EVERY {
            self.last_summary = Instant::now();
            let elapsed = self.started.elapsed().as_secs_f64();
            let eta = if done > 0 {
                let remaining = self.total.saturating_sub(done) as f64;
                format!("{:.0}s", elapsed / done as f64 * remaining)
            } else {
                "unknown".into()
            };
            output::message(&format!(
                "[progress]   {done}/{} done {line} · ETA {eta}",
                self.total
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
