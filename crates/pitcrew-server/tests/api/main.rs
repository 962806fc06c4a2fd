//! The HTTP API through a real server on a loopback port, a real store on both backends and a
//! real git repository; reqwest as the client. One test binary keeps linking cheap.

mod support;

mod auth;
mod dashboard;
mod document;
mod prometheus;
mod submit;
mod tasks;
