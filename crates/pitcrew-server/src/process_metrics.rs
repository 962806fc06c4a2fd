//! Figures of this server process, as they happen: HTTP requests by route and status, open
//! event streams, and the events of the engine working in this process. They are recorded
//! through the `metrics` facade (so any crate of the process may add its own) into the
//! Prometheus exporter's recorder, which `/metrics` renders after the store's figures.
//!
//! Every name starts with `pitcrew_server_`: the store's figures (pitcrew-metrics) use
//! `pitcrew_` followed by a figure or `model_`, `kind_` or `run_`, never `server_`, so the two
//! sets cannot collide.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::ApiEvent;

const HTTP_REQUESTS: &str = "pitcrew_server_http_requests_total";
const HTTP_REQUEST_DURATION: &str = "pitcrew_server_http_request_duration_seconds";
const EVENT_STREAM_CLIENTS: &str = "pitcrew_server_event_stream_clients";
const ENGINE_EVENTS: &str = "pitcrew_server_engine_events_total";
const FINISHED_TASKS: &str = "pitcrew_server_finished_tasks_total";

/// Bucket bounds of the request durations, in seconds: API reads take milliseconds, a batch
/// submit or a metrics scrape over a large store may take seconds.
const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How often histogram samples are folded into their buckets when nobody scrapes (the
/// exporter's own listener would do it; this server has none).
pub(crate) const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// The exporter's handle, once its recorder is the process's: the first server of the process
/// installs it, later ones (tests start many) share it. `None` when another recorder was
/// installed first: the figures then go to that one, and `/metrics` shows the store's only.
pub(crate) fn recorder() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE.get_or_init(install).clone()
}

fn install() -> Option<PrometheusHandle> {
    let installed = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(HTTP_REQUEST_DURATION.to_string()),
            DURATION_BUCKETS,
        )
        .and_then(PrometheusBuilder::install_recorder);
    match installed {
        Ok(handle) => {
            describe();
            Some(handle)
        }
        Err(e) => {
            tracing::warn!(
                "the process's own figures are not on /metrics: its metrics recorder could \
                 not be installed ({e})"
            );
            None
        }
    }
}

/// The HELP lines of every figure recorded here.
fn describe() {
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests this server answered, by method, route and status"
    );
    describe_histogram!(
        HTTP_REQUEST_DURATION,
        metrics::Unit::Seconds,
        "Time to answer an HTTP request, to the start of its body, by method and route"
    );
    describe_gauge!(EVENT_STREAM_CLIENTS, "Clients following /api/v1/events now");
    describe_counter!(
        ENGINE_EVENTS,
        "Events of the engine working in this process (serve --workers), by type"
    );
    describe_counter!(
        FINISHED_TASKS,
        "Tasks the engine in this process finished, by their status"
    );
}

/// Counts every request by its route's template (`/api/v1/tasks/{id}`, not the id: the label
/// stays bounded whatever clients send; `unmatched` for what no route serves) and times it.
pub(crate) async fn record_request(request: Request, next: Next) -> Response {
    let method = request.method().as_str().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |path| path.as_str().to_string());
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    histogram!(HTTP_REQUEST_DURATION, "method" => method.clone(), "route" => route.clone())
        .record(started.elapsed().as_secs_f64());
    counter!(HTTP_REQUESTS, "method" => method, "route" => route, "status" => status).increment(1);
    response
}

/// Counts an event of the engine working in this process.
pub(crate) fn record_engine_event(event: &ApiEvent) {
    counter!(ENGINE_EVENTS, "type" => event.type_name()).increment(1);
    if let ApiEvent::Finished { status, .. } = event {
        counter!(FINISHED_TASKS, "status" => status.as_str()).increment(1);
    }
}

/// One open event stream, counted while it lives.
#[derive(Debug)]
pub(crate) struct EventStreamClient(());

impl EventStreamClient {
    pub(crate) fn connect() -> Self {
        gauge!(EVENT_STREAM_CLIENTS).increment(1.0);
        EventStreamClient(())
    }
}

impl Drop for EventStreamClient {
    fn drop(&mut self) {
        gauge!(EVENT_STREAM_CLIENTS).decrement(1.0);
    }
}
