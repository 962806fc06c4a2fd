//! Calls OpenAI-compatible `/chat/completions` endpoints (OpenRouter, OpenAI, Ollama, vLLM,
//! llama.cpp). Replies are read with lenient types because servers disagree on details, and
//! every failure is classified into a [`pitcrew_core::ErrorKind`] so the caller can decide
//! whether to retry, rotate or fail. This client never retries on its own.

mod client;
mod error;

pub use client::{ChatClient, ChatRequest, Completion, Endpoint, Message, Role};
pub use error::LlmError;
