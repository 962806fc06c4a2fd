//! The HTTP side: routes, the chat-completions handler, and binding a listener.

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::Value;
use tokio::net::TcpListener;

use crate::body::{Pace, body, json_body, stream_frames};
use crate::config::{Fault, SimConfig, Step};
use crate::model::{Answer, Asked, Model, Reply};
use crate::quota::{Exceeded, Refusal};
use crate::text::{estimate_tokens, prompt_text};
use crate::wire::{self, Meta};

/// The header on every reply, so nobody mistakes the simulator for a provider.
pub const SIMULATED_HEADER: &str = "x-pitcrew-simulated";

/// Why the simulator cannot listen where it was asked to.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error(
        "refusing to listen on {addr}: the simulator has no authentication and its replies are \
         fake, so it listens only on a loopback address (127.0.0.1 or ::1) unless remote \
         listening is allowed (`pitcrew sim --allow-remote`)"
    )]
    Remote { addr: SocketAddr },
    #[error("cannot listen on {addr}: {source}")]
    Io { addr: SocketAddr, source: io::Error },
}

/// Binds `addr`, which must be a loopback address unless `allow_remote`.
pub async fn bind(addr: SocketAddr, allow_remote: bool) -> Result<TcpListener, BindError> {
    if !addr.ip().is_loopback() && !allow_remote {
        return Err(BindError::Remote { addr });
    }
    TcpListener::bind(addr)
        .await
        .map_err(|source| BindError::Io { addr, source })
}

#[derive(Debug)]
struct Shared {
    models: BTreeMap<String, Model>,
    /// Steps any model takes once its own script is used up.
    script: Mutex<VecDeque<Step>>,
    next_id: AtomicU64,
}

/// A simulated OpenAI-compatible provider. Clones share one state (quotas, scripts, random
/// draws).
#[derive(Debug, Clone)]
pub struct Simulator {
    shared: Arc<Shared>,
}

impl Simulator {
    pub fn new(config: SimConfig) -> Simulator {
        // One seed per model, drawn in name order, so each model's draws are its own.
        let mut seeds = fastrand::Rng::with_seed(config.seed);
        let models = config
            .models
            .into_iter()
            .map(|model| (model.id.clone(), Model::new(model, seeds.u64(..))))
            .collect();
        Simulator {
            shared: Arc::new(Shared {
                models,
                script: Mutex::new(config.script.into()),
                next_id: AtomicU64::new(1),
            }),
        }
    }

    /// The ids of the models served, in name order.
    pub fn model_ids(&self) -> Vec<String> {
        self.shared.models.keys().cloned().collect()
    }

    /// The routes: `POST /v1/chat/completions` and `GET /v1/models`; anything else is 404.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/v1/chat/completions", post(chat))
            .route("/v1/models", get(models))
            .fallback(no_route)
            .layer(axum::middleware::map_response(mark_simulated))
            .with_state(Arc::clone(&self.shared))
    }

    /// Serves on `listener` until the listener fails; stop it by dropping the future.
    pub async fn serve(&self, listener: TcpListener) -> io::Result<()> {
        axum::serve(listener, self.router()).await
    }
}

async fn mark_simulated(mut response: Response) -> Response {
    response.headers_mut().insert(
        HeaderName::from_static(SIMULATED_HEADER),
        HeaderValue::from_static("true"),
    );
    response
}

async fn models(State(shared): State<Arc<Shared>>) -> Response {
    let list = wire::model_list(shared.models.values().map(|model| &model.config));
    json_response(StatusCode::OK, &list)
}

async fn no_route(request: axum::extract::Request) -> Response {
    let message = format!(
        "pitcrew-sim has no route {} {}; it serves POST /v1/chat/completions and GET /v1/models",
        request.method(),
        request.uri().path()
    );
    error_response(404, &message, None)
}

async fn chat(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let request: Value = match serde_json::from_slice(&body) {
        Ok(request @ Value::Object(_)) => request,
        _ => return error_response(400, "the request body is not a JSON object", None),
    };
    let Some(model_id) = request["model"].as_str() else {
        return error_response(400, "the request has no `model`", None);
    };
    let Some(model) = shared.models.get(model_id) else {
        let served: Vec<&str> = shared.models.keys().map(String::as_str).collect();
        let message = format!(
            "The model `{model_id}` does not exist on this simulator; it serves: {}",
            served.join(", ")
        );
        return error_response(404, &message, None);
    };
    if !request["messages"].is_array() {
        return error_response(400, "the request has no `messages` list", None);
    }
    let prompt_tokens = estimate_tokens(&prompt_text(&request));
    if prompt_tokens > model.config.context_length {
        let message = format!(
            "This model's maximum context length is {} tokens. However, your messages resulted \
             in {prompt_tokens} tokens (estimated as characters / 4).",
            model.config.context_length
        );
        return error_response(400, &message, None);
    }
    let asked = Asked {
        prompt_tokens,
        max_tokens: request["max_completion_tokens"]
            .as_u64()
            .or(request["max_tokens"].as_u64()),
        stream: request["stream"].as_bool() == Some(true),
    };
    let decision = model.decide(asked, &shared.script, Instant::now());
    let mut response = match decision.answer {
        Answer::Refused(refusal) => refused(model_id, refusal),
        Answer::Error {
            status,
            retry_after,
            message,
            latency,
        } => {
            tokio::time::sleep(latency).await;
            error_response(status, &message, retry_after)
        }
        Answer::Reply(reply) => {
            let meta = Meta {
                id: format!(
                    "chatcmpl-sim-{}",
                    shared.next_id.fetch_add(1, Ordering::Relaxed)
                ),
                model: model_id.to_string(),
                created: SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
            };
            let include_usage = request["stream_options"]["include_usage"].as_bool() == Some(true);
            answer(model, &meta, &reply, asked.stream, include_usage).await
        }
    };
    for (name, value) in decision.headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response
                .headers_mut()
                .insert(HeaderName::from_static(name), value);
        }
    }
    response
}

/// A reply: streamed at once (the first token after the latency), or as JSON once the
/// whole reply would have been written.
async fn answer(
    model: &Model,
    meta: &Meta,
    reply: &Reply,
    stream: bool,
    include_usage: bool,
) -> Response {
    let config = &model.config;
    let seconds_per_token = 1.0 / config.tokens_per_second;
    let usage = wire::usage(reply, config);
    if stream {
        let pace = Pace {
            between_chunks: seconds(f64::from(config.chunk_tokens) * seconds_per_token),
            stall: config.stall,
            chunk_tokens: config.chunk_tokens,
        };
        let frames = stream_frames(meta, reply, include_usage.then_some(usage), pace);
        let mut response = Response::new(body(frames));
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        return response;
    }
    let generation = seconds(reply.completion_tokens as f64 * seconds_per_token);
    let mut delay = reply.latency.saturating_add(generation);
    if reply.fault == Some(Fault::Stall) {
        delay = delay.saturating_add(config.stall);
    }
    tokio::time::sleep(delay).await;
    let completion = wire::completion(meta, reply, &usage);
    let mut response = Response::new(json_body(&completion, reply.fault));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A configured speed may be absurdly slow; a wait too long to represent is a wait forever.
fn seconds(seconds: f64) -> Duration {
    Duration::try_from_secs_f64(seconds).unwrap_or(Duration::MAX)
}

/// HTTP 429 for an exhausted quota, with `Retry-After` in whole seconds (at least 1).
fn refused(model_id: &str, refusal: Refusal) -> Response {
    let what = match refusal.exceeded {
        Exceeded::RequestsPerMinute => "requests per minute (RPM)",
        Exceeded::TokensPerMinute => "tokens per minute (TPM)",
        Exceeded::RequestsPerDay => "requests per day (RPD)",
    };
    let seconds = refusal.wait.as_secs_f64().ceil().max(1.0) as u64;
    let message = format!(
        "Rate limit reached for {what} on {model_id}: limit {}. Please try again in {seconds}s. \
         (simulated by pitcrew-sim)",
        refusal.limit
    );
    error_response(429, &message, Some(seconds))
}

fn error_response(status: u16, message: &str, retry_after: Option<u64>) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = json_response(code, &wire::error(status, message));
    if let Some(seconds) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

fn json_response(status: StatusCode, value: &Value) -> Response {
    let mut response = Response::new(Body::from(value.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
