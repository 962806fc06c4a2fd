//! Live events at `/api/v1/events` (Server-Sent Events): what the engine running in this
//! process reports — task state changes and streamed generation text — as JSON, one SSE event
//! per change, named by its `type`. Tasks worked by other processes (a `pitcrew worker`
//! elsewhere on the same store) are not seen here; poll `/api/v1/tasks` for those.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::response::sse::{self, KeepAlive, Sse};
use futures::Stream;
use pitcrew_core::{TaskId, TaskStatus, Usage};
use pitcrew_engine::Event;
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc, watch};
use utoipa::ToSchema;

use crate::AppState;
use crate::error::ErrorBody;
use crate::process_metrics::{self, EventStreamClient};

/// Events kept for a subscriber that reads slowly; one further behind is told how many it
/// missed.
const BACKLOG: usize = 1024;

/// One change, as streamed: the engine's [`Event`] as the API's stable contract — JSON
/// tagged by `type`, times in seconds, and a requeued attempt told apart from a finished one.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ApiEvent {
    /// A worker of this process claimed the task and started an attempt.
    Started {
        task: TaskId,
        attempt: u32,
        worker: String,
        /// The task's kind and targets.
        what: String,
    },
    /// A round of generation began, or a model call started, failed or waits.
    Progress {
        task: TaskId,
        message: String,
    },
    /// Generated text, as the model streams it.
    Output {
        task: TaskId,
        text: String,
    },
    /// The attempt ended and the task is `status` now: completed, failed, possible_bug or
    /// cancelled.
    Finished {
        task: TaskId,
        attempt: u32,
        status: TaskStatus,
        /// The provider's id of the model whose reply was used.
        model: Option<String>,
        error: Option<String>,
        /// The branch holding the result.
        branch: Option<String>,
        usage: Usage,
        iterations: usize,
    },
    /// The attempt failed for a reason worth retrying: the task is queued again.
    RetryScheduled {
        task: TaskId,
        attempt: u32,
        /// Seconds until the task may be claimed again.
        retry_in_secs: f64,
        error: Option<String>,
    },
    /// The task was rescued or cancelled while this worker held it; its result is discarded.
    LeaseLost {
        task: TaskId,
        attempt: u32,
    },
    /// The server stopped and the grace period ran out: the task is queued again.
    Released {
        task: TaskId,
        attempt: u32,
    },
    /// An expired lease of another worker was taken back.
    Rescued {
        task: TaskId,
        /// The worker whose lease expired.
        owner: String,
        /// `queued` again, or `failed` when its attempts are used up.
        status: TaskStatus,
    },
    /// The budget of this server's run is spent: no more tasks are claimed.
    BudgetSpent {
        spent_usd: f64,
    },
    Warning {
        message: String,
    },
    /// This subscriber read too slowly and missed `missed` events.
    Lagged {
        missed: u64,
    },
}

impl ApiEvent {
    /// The event's `type`, as it is named on the stream.
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            ApiEvent::Started { .. } => "started",
            ApiEvent::Progress { .. } => "progress",
            ApiEvent::Output { .. } => "output",
            ApiEvent::Finished { .. } => "finished",
            ApiEvent::RetryScheduled { .. } => "retry_scheduled",
            ApiEvent::LeaseLost { .. } => "lease_lost",
            ApiEvent::Released { .. } => "released",
            ApiEvent::Rescued { .. } => "rescued",
            ApiEvent::BudgetSpent { .. } => "budget_spent",
            ApiEvent::Warning { .. } => "warning",
            ApiEvent::Lagged { .. } => "lagged",
        }
    }
}

impl From<&Event> for ApiEvent {
    fn from(event: &Event) -> Self {
        match event.clone() {
            Event::Started {
                task,
                attempt,
                worker,
                what,
            } => ApiEvent::Started {
                task,
                attempt,
                worker,
                what,
            },
            Event::Progress { task, message } => ApiEvent::Progress { task, message },
            Event::Output { task, text } => ApiEvent::Output { task, text },
            Event::Finished {
                task,
                attempt,
                status: TaskStatus::Queued,
                error,
                retry_in: Some(delay),
                ..
            } => ApiEvent::RetryScheduled {
                task,
                attempt,
                retry_in_secs: delay.as_secs_f64(),
                error,
            },
            Event::Finished {
                task,
                attempt,
                status,
                model,
                error,
                branch,
                usage,
                iterations,
                ..
            } => ApiEvent::Finished {
                task,
                attempt,
                status,
                model,
                error,
                branch,
                usage,
                iterations,
            },
            Event::LeaseLost { task, attempt } => ApiEvent::LeaseLost { task, attempt },
            Event::Released { task, attempt } => ApiEvent::Released { task, attempt },
            Event::Rescued(rescued) => ApiEvent::Rescued {
                task: rescued.id,
                owner: rescued.owner,
                status: rescued.status,
            },
            Event::BudgetSpent { spent_usd } => ApiEvent::BudgetSpent { spent_usd },
            Event::Warning(message) => ApiEvent::Warning { message },
        }
    }
}

/// Where the engine's events go to reach every subscriber.
#[derive(Debug, Clone)]
pub struct EventHub {
    sender: broadcast::Sender<ApiEvent>,
    /// Set when the server stops: open streams end, so it can.
    closed: Arc<watch::Sender<bool>>,
}

impl Default for EventHub {
    fn default() -> Self {
        EventHub {
            sender: broadcast::channel(BACKLOG).0,
            closed: Arc::new(watch::channel(false).0),
        }
    }
}

impl EventHub {
    /// Sends `event` to every subscriber (none listening is fine), and counts it for
    /// `/metrics`.
    pub fn publish(&self, event: &Event) {
        let event = ApiEvent::from(event);
        process_metrics::record_engine_event(&event);
        let _ = self.sender.send(event);
    }

    /// Publishes the engine's events until it stops sending them; warnings are logged too.
    pub async fn forward(self, mut events: mpsc::UnboundedReceiver<Event>) {
        while let Some(event) = events.recv().await {
            match &event {
                Event::Warning(warning) => tracing::warn!("{warning}"),
                Event::Started { task, .. } => tracing::info!(%task, "started"),
                Event::Finished { task, status, .. } => tracing::info!(%task, %status, "finished"),
                _ => {}
            }
            self.publish(&event);
        }
    }

    /// Ends every open event stream.
    pub fn close(&self) {
        self.closed.send_replace(true);
    }

    fn subscribe(&self) -> (broadcast::Receiver<ApiEvent>, watch::Receiver<bool>) {
        (self.sender.subscribe(), self.closed.subscribe())
    }
}

/// `event` as an SSE event named by its type, its JSON redacted.
fn sse_event(event: &ApiEvent) -> sse::Event {
    let mut json = serde_json::to_value(event).unwrap_or_default();
    pitcrew_core::redact_json(&mut json);
    sse::Event::default()
        .event(event.type_name())
        .data(json.to_string())
}

/// Stream the changes of the tasks this server works.
///
/// Server-Sent Events; each event is named by its `type` and carries it as JSON. Only tasks
/// worked by this process (`pitcrew serve --workers N`) are seen: tasks of workers elsewhere
/// on the same store are not; poll `/api/v1/tasks` for those.
#[utoipa::path(
    get,
    path = "/api/v1/events",
    tag = "events",
    responses(
        (status = 200, description = "An endless stream of events", content_type = "text/event-stream", body = ApiEvent),
        (status = 401, description = "No token, or a wrong one", body = ErrorBody),
    )
)]
pub(crate) async fn events(
    State(state): State<AppState>,
) -> Sse<impl Stream<Item = Result<sse::Event, Infallible>>> {
    let (receiver, closed) = state.events.subscribe();
    // Counted as connected for as long as the stream (which owns it) lives.
    let client = EventStreamClient::connect();
    let stream = futures::stream::unfold(
        (receiver, closed, client),
        |(mut receiver, mut closed, client)| async move {
            loop {
                if *closed.borrow_and_update() {
                    return None;
                }
                let event = tokio::select! {
                    received = receiver.recv() => match received {
                        Ok(event) => event,
                        Err(RecvError::Lagged(missed)) => ApiEvent::Lagged { missed },
                        Err(RecvError::Closed) => return None,
                    },
                    changed = closed.changed() => {
                        if changed.is_err() {
                            return None;
                        }
                        continue;
                    }
                };
                return Some((Ok(sse_event(&event)), (receiver, closed, client)));
            }
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::default())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_requeued_attempt_is_a_scheduled_retry_and_an_ended_one_is_finished() {
        let task = TaskId::new();
        let finished = |status, retry_in| Event::Finished {
            task,
            attempt: 1,
            status,
            model: None,
            error: Some("rate limited".into()),
            retry_in,
            branch: None,
            usage: Usage::default(),
            iterations: 0,
        };
        let retry = ApiEvent::from(&finished(TaskStatus::Queued, Some(Duration::from_secs(3))));
        assert_eq!(
            retry,
            ApiEvent::RetryScheduled {
                task,
                attempt: 1,
                retry_in_secs: 3.0,
                error: Some("rate limited".into()),
            }
        );
        assert_eq!(retry.type_name(), "retry_scheduled");
        let failed = ApiEvent::from(&finished(TaskStatus::Failed, None));
        let json = serde_json::to_value(&failed).unwrap();
        assert_eq!(json["type"], "finished");
        assert_eq!(failed.type_name(), "finished");
        assert_eq!(json["status"], "failed");
        assert_eq!(json["task"], task.to_string());
    }

    #[test]
    fn each_event_is_named_on_the_stream_by_its_json_type() {
        let task = TaskId::new();
        let every = [
            ApiEvent::Started {
                task,
                attempt: 1,
                worker: "w".into(),
                what: "x".into(),
            },
            ApiEvent::Progress {
                task,
                message: "m".into(),
            },
            ApiEvent::Output {
                task,
                text: "t".into(),
            },
            ApiEvent::Finished {
                task,
                attempt: 1,
                status: TaskStatus::Completed,
                model: None,
                error: None,
                branch: None,
                usage: Usage::default(),
                iterations: 1,
            },
            ApiEvent::RetryScheduled {
                task,
                attempt: 1,
                retry_in_secs: 1.0,
                error: None,
            },
            ApiEvent::LeaseLost { task, attempt: 1 },
            ApiEvent::Released { task, attempt: 1 },
            ApiEvent::Rescued {
                task,
                owner: "w".into(),
                status: TaskStatus::Queued,
            },
            ApiEvent::BudgetSpent { spent_usd: 1.0 },
            ApiEvent::Warning {
                message: "w".into(),
            },
            ApiEvent::Lagged { missed: 1 },
        ];
        for event in every {
            let json = serde_json::to_value(&event).unwrap();
            assert_eq!(json["type"], event.type_name(), "{json}");
        }
    }
}
