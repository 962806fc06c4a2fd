//! The per-task model gateway: an OpenAI-compatible endpoint on loopback that external
//! agents (OpenHands, aider, any CLI agent) call instead of a provider while they work on a
//! task.
//!
//! The agent is given the gateway's URL (`OPENAI_BASE_URL`, `LLM_BASE_URL`) and a per-task
//! token in place of the provider's key, which never enters its environment. Every chat call
//! it makes becomes one [`pitcrew_llm::Router::complete`]: pitcrew chooses the model (the
//! agent's `model` is only logged), rotates on 429s, waits out cooldowns, and charges the
//! task's budget. One [`Gateway`] (one listener) serves every task of a process; each task
//! gets a [`Session`] from [`Gateway::open`], keyed by its token, with its limits in a
//! [`Grant`] and the record of its calls in a [`GatewayReport`].
//!
//! # HTTP
//!
//! - `POST /v1/chat/completions` (also `/chat/completions`), with `Authorization: Bearer
//!   TOKEN` or `api-key: TOKEN`. The router speaks text chat only; content parts other
//!   than text are refused by type; text parts are joined with newlines. `max_tokens` /
//!   `max_completion_tokens` are capped at the grant's `max_output_tokens`; `temperature`
//!   defaults to the grant's. `stop` is accepted and ignored: the router sends no stop
//!   sequences. Bodies over [`BODY_LIMIT`] get 413.
//! - `GET /v1/models` (also `/models`): one model, [`MODEL`].
//!
//! # Tool calling
//!
//! Agents that call tools natively (the OpenHands CLI has no switch to stop it) get tool
//! calls from models that have none, translated as OpenHands' own `fn_call_converter`
//! does:
//!
//! - `tools` (and legacy `functions`) are described at the end of the first system message
//!   (one is added when there is none), with the calling convention: `<function=NAME>`,
//!   one `<parameter=PARAM>value</parameter>` per argument, `</function>`, one call per
//!   reply. `tool_choice` `"required"` or a named function is said to be a must; `"none"`
//!   describes nothing and reads no call back. `parallel_tool_calls` is ignored. The
//!   provider gets no `tools` field.
//! - In the history, an assistant's `tool_calls` are written after its words in that
//!   convention, and a `tool` result becomes a user message `EXECUTION RESULT of
//!   [NAME]:\n…`, NAME found by its `tool_call_id`.
//! - The reply's first call becomes `message.tool_calls` (one call, id `call_…`, arguments
//!   a JSON object converted by each parameter's schema type), `content` the words before
//!   it (`null` when none), `finish_reason` `"tool_calls"`; in a stream, the call comes
//!   whole in the one content chunk's delta (`index` 0). A call to a function not offered,
//!   one lacking a required parameter (`security_risk` excepted: the agent checks it), or
//!   one cut off mid-value is not made up or completed: the reply goes back as plain
//!   content.
//!
//! A `stream: true` request is answered as server-sent events, but only once the router has
//! the whole reply (one content chunk, one chunk with the finish reason and usage,
//! `[DONE]`): the router may abandon a model mid-reply and rotate, and the agent must never
//! see text of an abandoned call.
//!
//! Statuses, all with an OpenAI-shaped body `{"error": {"message", "type", "code",
//! "param"}}`:
//!
//! | When | Status | `code` |
//! |---|---|---|
//! | missing, unknown or revoked token | 401 | `invalid_api_key` |
//! | malformed body or tool definitions, non-text parts | 400 | `invalid_request` |
//! | the prompt fits no model | 400 | `context_length_exceeded` (litellm: condense) |
//! | the task's (or run's) budget is spent | 402 | `insufficient_quota` |
//! | the grant's `max_calls` are used up | 403 | `call_limit` (not 429: agents retry those forever) |
//! | the grant's deadline has passed | 403 | `deadline_passed` (not 408: SDKs retry those) |
//! | body over [`BODY_LIMIT`] | 413 | `body_too_large` |
//! | rate limits, quotas, no model free within the deadline | 503 + `Retry-After` | the error kind |
//! | pitcrew's provider setup (auth, config, payment, bad request), anything else | 502 | the error kind |
//!
//! The token is never echoed in a response or logged; a token's session is found by the
//! token's SHA-256, so the lookup takes no longer for a near miss than for a far one.

mod reply;
mod request;
mod serve;
mod session;
mod tools;

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use pitcrew_core::Secret;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use serve::BODY_LIMIT;
pub use session::{GatewayReport, Grant, MODEL, Session};

use serve::Shared;
use session::SessionState;

/// How long [`Gateway::shutdown`] lets requests under way finish before it stops waiting.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Random bytes in a token: 192 bits.
const TOKEN_BYTES: usize = 24;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("the model gateway cannot listen on 127.0.0.1: {0}")]
    Bind(#[source] std::io::Error),
    #[error("the model gateway cannot mint tokens: the system's random source failed: {0}")]
    Randomness(String),
}

/// The running gateway. Clones share it; shutting it down ([`Gateway::shutdown`]) or
/// dropping the last clone stops the server.
#[derive(Clone)]
pub struct Gateway {
    handle: Arc<Handle>,
}

struct Handle {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: Mutex<Option<oneshot::Sender<()>>>,
    served: tokio::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        // The server task holds only the shared state, not this handle, so the last handle
        // going away is what stops it.
        if let Some(stop) = self
            .stop
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            let _ = stop.send(());
        }
    }
}

impl Gateway {
    /// Binds `127.0.0.1:0` (loopback only: agents run on this machine) and serves until
    /// shut down. Call it within a tokio runtime; the server runs as a task of it.
    pub async fn start(router: pitcrew_llm::Router) -> Result<Gateway, GatewayError> {
        // Checked once here, so that minting a token later can count on it.
        random_token().map_err(GatewayError::Randomness)?;
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .map_err(GatewayError::Bind)?;
        let addr = listener.local_addr().map_err(GatewayError::Bind)?;
        let shared = Arc::new(Shared::new(router));
        let app = serve::app(Arc::clone(&shared));
        let (stop, stopped) = oneshot::channel::<()>();
        let served = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    // A dropped sender stops the server as a sent signal does.
                    let _ = stopped.await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!("model gateway: serving failed: {e}");
            }
        });
        tracing::info!(port = addr.port(), "model gateway listening on 127.0.0.1");
        Ok(Gateway {
            handle: Arc::new(Handle {
                shared,
                addr,
                stop: Mutex::new(Some(stop)),
                served: tokio::sync::Mutex::new(Some(served)),
            }),
        })
    }

    pub fn port(&self) -> u16 {
        self.handle.addr.port()
    }

    /// The OpenAI-style base URL, e.g. `http://127.0.0.1:40123/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.handle.addr)
    }

    /// Opens a session for one task under a fresh random token (`pcgw-` and 48 hex digits,
    /// 192 bits), registered with [`pitcrew_core::register_secret`] so that it is redacted
    /// wherever pitcrew prints or stores text.
    ///
    /// # Panics
    ///
    /// If the system's random source, which worked when the gateway started, fails.
    pub fn open(&self, grant: Grant) -> Session {
        let token = random_token()
            .unwrap_or_else(|e| panic!("model gateway: the system's random source failed: {e}"));
        pitcrew_core::register_secret(&token);
        let digest = session::digest(&token);
        tracing::info!(task = %grant.task, "model gateway: session opened");
        let state = Arc::new(SessionState::new(grant));
        let sessions = Arc::clone(&self.handle.shared.sessions);
        sessions.insert(digest, Arc::clone(&state));
        Session {
            state,
            sessions,
            token: Secret::new(token),
            digest,
            base_url: self.base_url(),
        }
    }

    /// Stops accepting connections and lets requests under way finish, waiting for them at
    /// most a few seconds. Later calls return at once.
    pub async fn shutdown(&self) {
        let stop = self
            .handle
            .stop
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(stop) = stop {
            let _ = stop.send(());
        }
        let Some(mut served) = self.handle.served.lock().await.take() else {
            return;
        };
        if tokio::time::timeout(SHUTDOWN_GRACE, &mut served)
            .await
            .is_err()
        {
            tracing::warn!("model gateway: requests still under way at shutdown were cut off");
            served.abort();
        }
    }
}

impl fmt::Debug for Gateway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gateway")
            .field("addr", &self.handle.addr)
            .finish_non_exhaustive()
    }
}

/// `pcgw-` and [`TOKEN_BYTES`] bytes from the system's random source, in hex.
fn random_token() -> Result<String, String> {
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| e.to_string())?;
    let mut token = String::with_capacity(5 + 2 * TOKEN_BYTES);
    token.push_str("pcgw-");
    for byte in bytes {
        token.push(char::from(HEX[usize::from(byte >> 4)]));
        token.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    Ok(token)
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_distinct() {
        let a = random_token().unwrap();
        let b = random_token().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 5 + 48);
        assert!(a.starts_with("pcgw-"));
        assert!(a[5..].bytes().all(|c| c.is_ascii_hexdigit()));
    }
}
