//! From recorded attempts to [`Metrics`]: the selection, the window, and the figures of every
//! group.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use pitcrew_core::{TaskId, TaskKind, TaskStatus};
use pitcrew_store::TaskAttempt;
use serde::Serialize;

use crate::MetricsError;
use crate::figures::{Figures, Tally};
use crate::recorded::{RecordedCall, RecordedDetails};
use crate::webhooks::{WebhookFigures, webhook_figures};

/// Which attempts and calls the figures are about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// Only attempts started at or after this time; every attempt when `None`.
    pub since: Option<DateTime<Utc>>,
    /// Only this model (its id or its registry name): the attempts whose last reply it gave,
    /// and the calls made to it.
    pub model: Option<String>,
    /// Only attempts at tasks of this kind.
    pub kind: Option<TaskKind>,
}

/// The span the figures cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Window {
    /// `--since`, or else the start of the first attempt counted; `None` when there is
    /// neither.
    pub since: Option<DateTime<Utc>>,
    /// Now, with `--since` or while a counted attempt runs; else the end of the last one.
    pub until: Option<DateTime<Utc>>,
}

impl Window {
    /// The window's length in hours, when it has one longer than zero.
    pub fn hours(&self) -> Option<f64> {
        let span = self.until? - self.since?;
        let hours = span.num_milliseconds() as f64 / 3_600_000.0;
        (hours > 0.0).then_some(hours)
    }
}

/// The figures of everything selected, with what only totals have.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Totals {
    /// The tasks the counted attempts were made at, by their status now; every status is
    /// listed, 0 included.
    pub tasks: BTreeMap<TaskStatus, u64>,
    /// Completed attempts (each a task's accepted result) per hour of the window.
    pub throughput_per_hour: Option<f64>,
    /// Completed attempts per USD spent; `None` when nothing was spent or the cost is unknown.
    pub accepted_results_per_usd: Option<f64>,
    #[serde(flatten)]
    pub figures: Figures,
}

/// One model's figures: the attempts whose last reply it gave, and the calls made to it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelFigures {
    /// The provider's model id.
    pub model: String,
    #[serde(flatten)]
    pub figures: Figures,
}

/// The figures of the attempts at tasks of one kind.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KindFigures {
    pub kind: TaskKind,
    #[serde(flatten)]
    pub figures: Figures,
}

/// The figures of one run's attempts (attempts a run finished: an abandoned, cancelled or
/// running attempt names no run).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunFigures {
    pub run: String,
    /// When its first counted attempt started.
    pub started_at: DateTime<Utc>,
    #[serde(flatten)]
    pub figures: Figures,
}

/// Every figure of a selection. Its JSON is what `pitcrew metrics --json` prints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Metrics {
    pub window: Window,
    /// The `--model` asked for, if any.
    pub model: Option<String>,
    /// The `--kind` asked for, if any.
    pub kind: Option<TaskKind>,
    pub totals: Totals,
    /// By model id.
    pub models: Vec<ModelFigures>,
    /// In the order kinds are listed in (`unit_test` first).
    pub kinds: Vec<KindFigures>,
    /// Oldest first.
    pub runs: Vec<RunFigures>,
    /// The webhook deliveries of the window. [`compute`] sees attempts only and leaves
    /// them at none; [`crate::gather`] counts them in the store.
    pub webhooks: WebhookFigures,
}

/// The tallies being filled, one per group.
#[derive(Debug, Default)]
struct Groups {
    totals: Tally,
    models: BTreeMap<String, Tally>,
    kinds: BTreeMap<TaskKind, Tally>,
    runs: HashMap<String, (DateTime<Utc>, Tally)>,
}

impl Groups {
    /// The tallies something of an attempt counts in: the totals, its kind, its run (if it
    /// names one) and `model` (if given).
    fn of<'a>(
        &'a mut self,
        recorded: &TaskAttempt,
        model: Option<&str>,
    ) -> impl Iterator<Item = &'a mut Tally> {
        let attempt = &recorded.attempt;
        let run = attempt.run_id.as_ref().map(|run| {
            let (started, tally) = self
                .runs
                .entry(run.clone())
                .or_insert_with(|| (attempt.started_at, Tally::default()));
            *started = (*started).min(attempt.started_at);
            tally
        });
        let model = model.map(|model| self.models.entry(model.to_string()).or_default());
        [
            Some(&mut self.totals),
            Some(self.kinds.entry(recorded.kind).or_default()),
            run,
            model,
        ]
        .into_iter()
        .flatten()
    }
}

/// Where the counted attempts start and end.
#[derive(Debug, Default)]
struct Span {
    first_start: Option<DateTime<Utc>>,
    last_end: Option<DateTime<Utc>>,
    any_running: bool,
}

impl Span {
    fn add(&mut self, recorded: &TaskAttempt) {
        let attempt = &recorded.attempt;
        let start = attempt.started_at;
        self.first_start = Some(self.first_start.map_or(start, |first| first.min(start)));
        match attempt.finished_at {
            Some(end) => self.last_end = self.last_end.max(Some(end)),
            None => self.any_running = true,
        }
    }

    fn window(&self, since: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Window {
        match since {
            Some(since) => Window {
                since: Some(since),
                until: Some(now),
            },
            None => Window {
                since: self.first_start,
                until: if self.any_running {
                    Some(now)
                } else {
                    self.last_end
                },
            },
        }
    }
}

/// The figures of the attempts in `recorded` that `selection` selects, at `now`.
///
/// An attempt counts (in its task's kind, its run, the totals, and the model that gave its
/// last reply) when it started in the window, is of the kind, and its last reply came from
/// the model asked for. Each call it made counts in the same groups and its own model's when
/// that model is the one asked for (or none was). A reply the agent's checks refused counts
/// as a content failure of the model whose call brought it.
pub fn compute(
    recorded: &[TaskAttempt],
    selection: &Selection,
    now: DateTime<Utc>,
) -> Result<Metrics, MetricsError> {
    let mut groups = Groups::default();
    let mut tasks: HashMap<TaskId, TaskStatus> = HashMap::new();
    let mut span = Span::default();
    for one in recorded {
        let attempt = &one.attempt;
        if selection
            .since
            .is_some_and(|since| attempt.started_at < since)
            || selection.kind.is_some_and(|kind| kind != one.kind)
        {
            continue;
        }
        let details = RecordedDetails::of(attempt)?;
        // The model id is on the attempt, its registry name in the details.
        let answered_by_wanted = selection.model.as_deref().is_none_or(|asked| {
            attempt.model.as_deref() == Some(asked) || details.model.as_deref() == Some(asked)
        });
        let wanted_call = |call: &RecordedCall| {
            selection
                .model
                .as_deref()
                .is_none_or(|asked| call.is_of(asked))
        };
        let mut counted = false;
        if answered_by_wanted {
            for tally in groups.of(one, attempt.model.as_deref()) {
                tally.add_attempt(attempt);
            }
            tasks.insert(attempt.task_id, one.task_status);
            counted = true;
        }
        for round in &details.iterations {
            for call in round.calls.iter().filter(|call| wanted_call(call)) {
                for tally in groups.of(one, Some(&call.model_id)) {
                    tally.add_call(call);
                }
                counted = true;
            }
            if round.reply_refused_as_content() {
                let by = round.answering_call();
                // A refused reply from the cache is no model's; it counts only unfiltered.
                if by.map_or(selection.model.is_none(), wanted_call) {
                    for tally in groups.of(one, by.map(|call| call.model_id.as_str())) {
                        tally.add_refused_reply();
                    }
                    counted = true;
                }
            }
        }
        if counted {
            span.add(one);
        }
    }

    let window = span.window(selection.since, now);
    let figures = groups.totals.figures();
    let mut by_status: BTreeMap<TaskStatus, u64> =
        TaskStatus::ALL.iter().map(|status| (*status, 0)).collect();
    for status in tasks.values() {
        *by_status.entry(*status).or_default() += 1;
    }
    let totals = Totals {
        tasks: by_status,
        throughput_per_hour: window.hours().map(|hours| figures.completed as f64 / hours),
        accepted_results_per_usd: figures
            .cost_usd
            .filter(|cost| *cost > 0.0)
            .map(|cost| figures.completed as f64 / cost),
        figures,
    };
    let mut runs: Vec<RunFigures> = groups
        .runs
        .into_iter()
        .map(|(run, (started_at, tally))| RunFigures {
            run,
            started_at,
            figures: tally.figures(),
        })
        .collect();
    runs.sort_by(|a, b| (a.started_at, &a.run).cmp(&(b.started_at, &b.run)));
    Ok(Metrics {
        window,
        model: selection.model.clone(),
        kind: selection.kind,
        totals,
        models: groups
            .models
            .into_iter()
            .map(|(model, tally)| ModelFigures {
                model,
                figures: tally.figures(),
            })
            .collect(),
        kinds: groups
            .kinds
            .into_iter()
            .map(|(kind, tally)| KindFigures {
                kind,
                figures: tally.figures(),
            })
            .collect(),
        runs,
        webhooks: webhook_figures(&[]),
    })
}
