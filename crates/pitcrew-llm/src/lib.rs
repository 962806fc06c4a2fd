//! pitcrew's provider layer: calls to OpenAI-compatible `/chat/completions` endpoints
//! (OpenRouter, OpenAI, Ollama, vLLM, llama.cpp) and the router that decides which model
//! takes each call.
//!
//! - [`ChatClient`]: one call, one HTTP request, streamed ([`ChatClient::stream`]) or not
//!   ([`ChatClient::complete`]). Lenient about what servers send, strict about what it
//!   means: every failure is an [`LlmError`] classified into a [`pitcrew_core::ErrorKind`],
//!   with the wait the provider asked for. It never retries.
//! - [`content::check`]: empty, looping, prose-only and placeholder replies.
//! - [`Registry`]: models, presets and the fallback chain, shipped as TOML and overridable;
//!   [`sync`] reads a provider's model list.
//! - [`Router`]: selection ([`Router::select`]), rotation, cooldowns, circuit breakers,
//!   rate limits, adaptive concurrency, budgets; the only layer that retries.
//!
//! A worker drives it like this:
//!
//! ```no_run
//! # async fn demo(router: pitcrew_llm::Router) {
//! use pitcrew_llm::{Budget, Expect, Message, Requirements, RouteRequest};
//! let request = RouteRequest {
//!     messages: vec![Message::system("…"), Message::user("…")],
//!     temperature: 0.2,
//!     expect: Expect::Code,
//!     requirements: Requirements { prefer: Some("deepseek-v3".into()), ..Requirements::default() },
//!     task_budget: Some(Budget::new(Some(0.50))),
//!     wait_until: None,
//! };
//! match router.complete(&request, &mut |_event| {}).await {
//!     Ok(routed) => { /* routed.completion.text, routed.model, routed.usage() */ }
//!     Err(error) => { /* error.kind decides: requeue (retryable), refine (content), fail */ }
//! }
//! # }
//! ```

mod budget;
mod client;
pub mod content;
mod error;
mod fleet;
mod health;
mod limits;
mod registry;
mod router;
mod select;
mod sse;
pub mod sync;
mod wire;

pub use budget::Budget;
pub use client::{
    ChatClient, ChatRequest, Completion, DEFAULT_IDLE_TIMEOUT, Endpoint, MAX_REPLY_BYTES, Message,
    Role, StallDeadlines, StreamDecoder,
};
pub use content::{ContentFailure, Expect};
pub use error::LlmError;
pub use fleet::{FleetError, FleetLimits, LimitDecision, SharedLimit};
pub use health::{CIRCUIT_WINDOW, CircuitState, circuit_state};
pub use registry::{
    BUILTIN_TOML, ModelSpec, QuotaSpec, Registry, RegistryError, Specialization, SyncReport,
};
pub use router::{
    CallRecord, RouteError, RouteEvent, RouteRequest, Routed, Router, RouterSettings,
    estimate_tokens,
};
pub use select::{Candidate, Complexity, Components, Exclusion, Requirements};
