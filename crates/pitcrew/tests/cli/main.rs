//! End-to-end tests of the `pitcrew` binary: a real temporary git repository, a real SQLite
//! queue, and a local HTTP server speaking the chat-completions API with scripted replies.
//! One test binary (modules below) keeps linking cheap.

mod support;

mod adversarial;
mod apply;
mod attempts;
mod config;
mod crash;
mod dashboard;
mod demo;
mod engine;
mod evidence;
mod first_day;
mod fleet;
mod help;
mod hostile;
mod interface;
mod metrics;
mod models;
mod plan;
mod repos;
mod results;
mod runtimes;
mod scale;
mod secrets;
mod serve;
mod signals;
mod sim;
mod submit;
mod webhooks;
mod worker;
