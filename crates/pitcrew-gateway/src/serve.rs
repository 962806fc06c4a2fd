//! The HTTP side: routes, authentication, and one router call per chat request.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use pitcrew_core::printable;
use pitcrew_llm::{Expect, RouteRequest, Router};

use crate::reply::{self, Answer, ErrorReply};
use crate::request::{self, ChatCall};
use crate::session::{MODEL, SessionState, Sessions};

/// The largest request body: far above any context window's worth of text.
pub const BODY_LIMIT: usize = 8 * 1024 * 1024;

/// What every request handler shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub router: Router,
    pub sessions: Arc<Sessions>,
    /// For completion ids.
    next_id: AtomicU64,
}

impl Shared {
    pub(crate) fn new(router: Router) -> Shared {
        Shared {
            router,
            sessions: Arc::new(Sessions::default()),
            next_id: AtomicU64::new(1),
        }
    }
}

pub(crate) fn app(shared: Arc<Shared>) -> axum::Router {
    axum::Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/chat/completions", post(chat))
        .route("/v1/models", get(models))
        .route("/models", get(models))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(shared)
}

/// The token a request presents: `Authorization: Bearer TOKEN`, else `api-key: TOKEN`
/// (Azure-style clients).
fn presented_token(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    bearer
        .or_else(|| headers.get("api-key").and_then(|v| v.to_str().ok()))
        .filter(|token| !token.is_empty())
}

/// The session whose token the request presents, unless it is unknown or revoked.
fn authenticate(shared: &Shared, headers: &HeaderMap) -> Option<Arc<SessionState>> {
    shared.sessions.find(presented_token(headers)?)
}

fn unauthorized(path: &str) -> Response {
    // Neither the token presented nor a digest of it is logged: it may be a real key sent
    // here by mistake.
    tracing::warn!(path, "gateway: request without a valid token refused");
    ErrorReply::unauthorized().into_response()
}

async fn models(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    match authenticate(&shared, &headers) {
        Some(_) => reply::models(MODEL),
        None => unauthorized("models"),
    }
}

async fn not_found(request: Request) -> Response {
    let path = printable(request.uri().path()).into_owned();
    ErrorReply::new(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        "not_found",
        format!(
            "no route for {} {path}: this gateway serves POST /v1/chat/completions and GET /v1/models",
            request.method()
        ),
    )
    .into_response()
}

async fn chat(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    // Authenticated before the body is read: an unknown caller gets nothing read or parsed.
    let Some(state) = authenticate(&shared, request.headers()) else {
        return unauthorized("chat/completions");
    };
    state.count_request();
    let body = match Bytes::from_request(request, &()).await {
        Ok(body) => body,
        Err(rejection) => {
            let status = rejection.status();
            let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
                "body_too_large"
            } else {
                "unreadable_body"
            };
            let message = format!(
                "{} (the limit is {BODY_LIMIT} bytes)",
                rejection.body_text()
            );
            let reply = ErrorReply::new(status, "invalid_request_error", code, message);
            return refuse(&state, reply);
        }
    };
    let call = match request::parse(&body) {
        Ok(call) => call,
        Err(invalid) => {
            let reply = ErrorReply {
                param: invalid.param(),
                ..ErrorReply::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    "invalid_request",
                    invalid.to_string(),
                )
            };
            return refuse(&state, reply);
        }
    };
    if let Err(reply) = state.admit() {
        return refuse(&state, reply);
    }
    let id = format!(
        "chatcmpl-pcgw-{}",
        shared.next_id.fetch_add(1, Ordering::Relaxed)
    );
    relay(&shared.router, state, call, id).await
}

/// Logs and records a request answered without the router.
fn refuse(state: &SessionState, reply: ErrorReply) -> Response {
    tracing::info!(
        task = %state.grant.task,
        status = reply.status.as_u16(),
        "gateway: request refused: {}",
        pitcrew_core::redact(&reply.message)
    );
    state.refused(&reply);
    reply.into_response()
}

/// One router call for one request, answered as the agent asked (JSON or a stream).
async fn relay(router: &Router, state: Arc<SessionState>, call: ChatCall, id: String) -> Response {
    let grant = &state.grant;
    let mut requirements = grant.requirements.clone();
    // The grant's cap is the most a request may ask for.
    if let Some(asked) = call.max_tokens {
        requirements.max_output_tokens = requirements.max_output_tokens.min(asked);
    }
    let (tools, stream) = (call.tools, call.stream);
    let route = RouteRequest {
        messages: call.messages,
        temperature: call.temperature.unwrap_or(grant.temperature),
        expect: Expect::Text,
        requirements,
        task_budget: Some(grant.budget.clone()),
        wait_until: grant.deadline,
    };
    tracing::info!(
        task = %grant.task,
        asked_model = %printable(call.model.as_deref().unwrap_or("")),
        stream = call.stream,
        tools = tools.as_ref().map_or(0, |t| t.tools.len()),
        "gateway: routing a chat request"
    );
    // The call runs in a task of its own and records itself there, so that an agent hanging
    // up mid-call cannot cut a provider call short unrecorded: every call the router makes
    // is charged to the budget and must appear in the report too.
    let router = router.clone();
    let recorder = Arc::clone(&state);
    let routed = tokio::spawn(Box::pin(async move {
        let result = router.complete(&route, &mut |_| {}).await;
        let reply = result.as_ref().err().map(ErrorReply::from_route);
        recorder.routed(&result, reply.as_ref());
        (result, reply)
    }))
    .await;
    let task = &state.grant.task;
    match routed {
        Ok((Ok(routed), _)) => {
            // Registered secrets (the token, the provider's key) never reach the agent, even
            // if a model repeats one (in a call's arguments too: they are read from this).
            let text = pitcrew_core::redact(&routed.completion.text).into_owned();
            let called = tools.as_ref().and_then(|tools| tools.read_reply(&text));
            let finish_reason = match &called {
                Some(_) => "tool_calls".into(),
                None => (routed.completion.finish_reason.clone()).unwrap_or_else(|| "stop".into()),
            };
            let (text, call) = match called {
                Some(called) => (called.content.unwrap_or_default(), Some(called.call)),
                None => (text, None),
            };
            let answer = Answer {
                id,
                finish_reason,
                // The answering call's tokens: the router's estimate when the provider sent
                // none.
                usage: routed
                    .calls
                    .last()
                    .map_or(routed.completion.usage, |c| c.usage),
                cost_usd: routed.usage().cost_usd.unwrap_or_default(),
                text,
                call,
                model: routed.model,
            };
            tracing::info!(
                task = %task,
                model = %answer.model,
                tool_call = %answer.call.as_ref().map_or("", |c| c.name.as_str()),
                calls = routed.calls.len(),
                cost_usd = answer.cost_usd,
                "gateway: answered"
            );
            if stream {
                answer.stream()
            } else {
                answer.completion()
            }
        }
        Ok((Err(error), reply)) => {
            let reply = reply.unwrap_or_else(|| ErrorReply::from_route(&error));
            tracing::info!(
                task = %task,
                kind = %error.kind,
                status = reply.status.as_u16(),
                "gateway: the router could not serve the call: {}",
                error.message
            );
            reply.into_response()
        }
        Err(join) => {
            // The router panicked (or the runtime is shutting down): nothing was recorded.
            let reply = ErrorReply::new(
                StatusCode::BAD_GATEWAY,
                "upstream_error",
                "internal",
                format!("the gateway's call failed: {join}"),
            );
            state.refused(&reply);
            tracing::error!(task = %task, "gateway: the router call ended abnormally: {join}");
            reply.into_response()
        }
    }
}
