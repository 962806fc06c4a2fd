//! A simulated OpenAI-compatible provider, for load tests and demos: `POST
//! /v1/chat/completions` (streamed or not) and `GET /v1/models`, with per-model latency,
//! streaming speed, RPM/TPM/RPD quotas over sliding windows, error rates, stream faults, and
//! replies from files, filler text or a deterministic script. Every random draw comes from
//! a seeded generator, so a run can be repeated.
//!
//! Everything it sends says it is simulated (`system_fingerprint: "pitcrew-sim"` and the
//! [`SIMULATED_HEADER`] header). pitcrew never falls back to it: it is used only when a
//! provider's base URL points at it. See `docs/sim.md` for `sim.toml`.

mod body;
mod config;
mod locate;
mod model;
mod quota;
mod server;
mod text;
mod wire;

pub use config::{
    ConfigError, DEFAULT_MODEL, Fault, FaultRates, Latency, Limits, ModelConfig, SimConfig, Step,
};
pub use server::{BindError, SIMULATED_HEADER, Simulator, bind};
pub use text::prompt_text;
