//! Test fixtures for pitcrew's own tests; used only as a dev-dependency.
//!
//! - [`ScriptedServer`]: a real HTTP server on `127.0.0.1` speaking the OpenAI-compatible
//!   chat-completions API, answering from a script of [`Reply`]s (a FIFO, then an optional
//!   responder function) and recording every request it receives. Providers are quirky
//!   (comment lines in streams, errors in odd places, stalls), so replies can be arbitrary:
//!   any status, raw bodies, hand-written SSE streams, delays, and replies held behind a
//!   [`Gate`].
//! - [`TempRepo`]: a throwaway git repository with a hermetic, local-only git configuration.
//! - [`WebhookReceiver`]: a webhook endpoint on `127.0.0.1` that verifies each delivery's
//!   signature as a user's receiver would, records it, and answers from a script of
//!   [`Answer`]s (statuses, `Retry-After`, answers held behind a [`Gate`]).
//! - [`PgSchema`] and [`postgres_or_skip`]: a schema of its own on the test PostgreSQL server
//!   (`PITCREW_TEST_POSTGRES_URL`), or a printed skip without it.
//!
//! The server runs on its own thread with its own tokio runtime, so it works the same from
//! plain `#[test]` functions (e.g. driving the CLI with `assert_cmd`) and from
//! `#[tokio::test]` functions. Dropping the [`ScriptedServer`] stops it and closes any
//! connection still waiting for its reply.
//!
//! ```
//! use pitcrew_testkit::{Reply, ScriptedServer};
//! use serde_json::json;
//!
//! let server = ScriptedServer::start();
//! server.push(Reply::content("def test_add(): assert add(1, 2) == 3"));
//! let limited = json!({"error": {"message": "rate limited", "code": 429}});
//! server.push(Reply::status(429, limited).header("retry-after", "1"));
//! // Point the code under test at `server.base_url()`, then inspect `server.requests()`.
//! assert!(server.base_url().starts_with("http://127.0.0.1:"));
//! assert!(server.requests().is_empty());
//! ```

mod postgres;
mod receiver;
mod reply;
mod repo;
mod server;
mod serving;

pub use postgres::{PgSchema, postgres_or_skip};
pub use receiver::{Answer, ReceivedDelivery, WebhookReceiver, signature_is_valid};
pub use reply::{Gate, Reply, SseEvent, sse_text_chunks};
pub use repo::TempRepo;
pub use server::{RecordedRequest, ScriptedServer};
