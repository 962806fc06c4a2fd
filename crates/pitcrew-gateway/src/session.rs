//! Sessions: one per task, keyed by a token, with the task's limits and the record of every
//! call it made.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use axum::http::StatusCode;
use pitcrew_core::{Secret, Usage};
use pitcrew_llm::{Budget, CallRecord, RouteError, Routed};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::reply::ErrorReply;

/// The model name agents are told to ask for; any name is accepted (pitcrew routes).
pub const MODEL: &str = "pitcrew";

/// What one task may do through the gateway.
#[derive(Debug, Clone)]
pub struct Grant {
    /// The task's id, for logs.
    pub task: String,
    /// Model preference, kind, free-only and the like; its `max_output_tokens` caps what a
    /// request may ask for.
    pub requirements: pitcrew_llm::Requirements,
    /// Used when the request gives none.
    pub temperature: f64,
    /// The task's budget, shared with the caller; calls stop once it is spent.
    pub budget: Budget,
    /// The most calls the session may make (an iteration limit).
    pub max_calls: Option<u32>,
    /// The router waits for a model at most until then; requests after it are refused.
    pub deadline: Option<Instant>,
}

/// Every call a session made, as the agent asked for them.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GatewayReport {
    /// Authenticated HTTP requests to `chat/completions`, refused ones included.
    pub requests: u32,
    /// Why requests were not answered, one entry per request, in order: a refusal before
    /// the router was asked (budget spent, call limit, deadline, bad request) or the router's
    /// failure, each as `"STATUS CODE: message"`.
    pub refused: Vec<String>,
    /// Every provider call the router made for this session, in order.
    pub calls: Vec<CallRecord>,
    /// Totals over `calls`, cost included.
    pub usage: Usage,
    /// The registry names that answered, in the order of the requests.
    pub models: Vec<String>,
}

/// The SHA-256 of a token: the key sessions are found by, so that looking one up takes no
/// longer for a near miss than for a far one.
pub(crate) type TokenDigest = [u8; 32];

pub(crate) fn digest(token: &str) -> TokenDigest {
    Sha256::digest(token.as_bytes()).into()
}

/// The sessions of one gateway.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    by_digest: Mutex<HashMap<TokenDigest, Arc<SessionState>>>,
}

impl Sessions {
    fn lock(&self) -> MutexGuard<'_, HashMap<TokenDigest, Arc<SessionState>>> {
        self.by_digest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn find(&self, token: &str) -> Option<Arc<SessionState>> {
        self.lock().get(&digest(token)).cloned()
    }

    pub(crate) fn insert(&self, digest: TokenDigest, state: Arc<SessionState>) {
        self.lock().insert(digest, state);
    }

    pub(crate) fn remove(&self, digest: &TokenDigest) {
        self.lock().remove(digest);
    }
}

/// A session's grant and record, shared by its handle and the requests under way.
#[derive(Debug)]
pub(crate) struct SessionState {
    pub grant: Grant,
    /// Calls admitted so far (for `max_calls`).
    admitted: AtomicU32,
    /// The report; receivers are told each time a request finishes.
    report: watch::Sender<GatewayReport>,
}

impl SessionState {
    pub(crate) fn new(grant: Grant) -> SessionState {
        SessionState {
            grant,
            admitted: AtomicU32::new(0),
            report: watch::Sender::new(GatewayReport::default()),
        }
    }

    /// Counts an authenticated request; receivers are told when it finishes, not now.
    pub(crate) fn count_request(&self) {
        self.report.send_if_modified(|report| {
            report.requests += 1;
            false
        });
    }

    /// Whether one more call may go to the router: before the deadline, with budget left
    /// and under the call limit. Checked in that order so that a request refused for time or
    /// money does not use up one of the calls.
    pub(crate) fn admit(&self) -> Result<(), ErrorReply> {
        let grant = &self.grant;
        if grant
            .deadline
            .is_some_and(|deadline| Instant::now() >= deadline)
        {
            // 403, not 408: SDKs retry a 408 as a timeout, and no retry can succeed.
            return Err(ErrorReply::new(
                StatusCode::FORBIDDEN,
                "permission_error",
                "deadline_passed",
                format!(
                    "task {}: its deadline has passed; no more calls",
                    grant.task
                ),
            ));
        }
        if grant.budget.is_spent() {
            return Err(ErrorReply::new(
                StatusCode::PAYMENT_REQUIRED,
                "insufficient_quota",
                "insufficient_quota",
                format!(
                    "the task's budget of ${:.4} is spent (${:.4} so far); no more calls",
                    grant.budget.limit_usd().unwrap_or_default(),
                    grant.budget.spent_usd()
                ),
            ));
        }
        if let Some(max) = grant.max_calls {
            let taken = self
                .admitted
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < max).then_some(n + 1)
                });
            if taken.is_err() {
                // 403, not 429: agents retry a 429 forever, and this limit never lifts.
                return Err(ErrorReply::new(
                    StatusCode::FORBIDDEN,
                    "permission_error",
                    "call_limit",
                    format!(
                        "task {}: its limit of {max} model calls is used up",
                        grant.task
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Records a request answered without the router.
    pub(crate) fn refused(&self, reply: &ErrorReply) {
        self.report
            .send_modify(|report| report.refused.push(reason(reply)));
    }

    /// Records what the router did for one request.
    pub(crate) fn routed(&self, result: &Result<Routed, RouteError>, reply: Option<&ErrorReply>) {
        self.report.send_modify(|report| {
            let calls = match result {
                Ok(routed) => {
                    report.models.push(routed.model.clone());
                    &routed.calls
                }
                Err(error) => &error.calls,
            };
            for call in calls {
                report.usage.tokens_in += call.usage.tokens_in;
                report.usage.tokens_out += call.usage.tokens_out;
                report.usage.cost_usd = Some(report.usage.cost_usd.unwrap_or(0.0) + call.cost_usd);
            }
            report.calls.extend_from_slice(calls);
            if let Some(reply) = reply {
                report.refused.push(reason(reply));
            }
        });
    }

    fn report(&self) -> GatewayReport {
        self.report.borrow().clone()
    }
}

fn reason(reply: &ErrorReply) -> String {
    let code = reply.code.as_deref().unwrap_or(reply.kind);
    let message = pitcrew_core::redact(&reply.message);
    format!("{} {code}: {message}", reply.status.as_u16())
}

/// One task's access to the gateway. Dropping it revokes the token.
///
/// A session does not keep the gateway running: once the [`crate::Gateway`] is shut down
/// (or its last handle dropped) its URL answers nothing.
pub struct Session {
    pub(crate) state: Arc<SessionState>,
    pub(crate) sessions: Arc<Sessions>,
    pub(crate) token: Secret,
    pub(crate) digest: TokenDigest,
    pub(crate) base_url: String,
}

impl Session {
    /// The token the agent sends (`Authorization: Bearer …`), in place of a provider key.
    /// Registered with [`pitcrew_core::register_secret`], so it is redacted wherever pitcrew
    /// prints or stores text.
    pub fn token(&self) -> &Secret {
        &self.token
    }

    /// The model name agents should ask for ([`MODEL`]); any name is accepted.
    pub fn model(&self) -> &str {
        MODEL
    }

    /// The gateway's base URL, e.g. `http://127.0.0.1:40123/v1`.
    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    /// The task's id, as granted.
    pub fn task(&self) -> &str {
        &self.state.grant.task
    }

    /// A snapshot: every request and call so far.
    pub fn report(&self) -> GatewayReport {
        self.state.report()
    }

    /// Waits until the next request to finish after this is called has finished (answered,
    /// failed or refused), then returns the report as of then: for live progress.
    pub async fn next_call(&self) -> GatewayReport {
        let mut updates = self.state.report.subscribe();
        // The sender lives in `self.state`, which `self` keeps alive: this cannot fail.
        let _ = updates.changed().await;
        updates.borrow_and_update().clone()
    }

    /// A receiver of the report, changed each time a request finishes; for a caller that
    /// would rather `select!` over it than await [`Session::next_call`].
    pub fn subscribe(&self) -> watch::Receiver<GatewayReport> {
        self.state.report.subscribe()
    }

    /// Revokes the token at once: later requests get 401. Calls under way finish.
    /// Idempotent; dropping the session does it too.
    pub fn revoke(&self) {
        self.sessions.remove(&self.digest);
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.revoke();
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The token is a `Secret`, whose Debug says only that it is one.
        f.debug_struct("Session")
            .field("task", &self.state.grant.task)
            .field("token", &self.token)
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}
