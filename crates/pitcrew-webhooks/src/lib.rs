//! Webhooks: a signed JSON POST to each `[[webhooks]]` endpoint when a task ends (completed,
//! failed, possible bug, cancelled) or `pitcrew run` ends.
//!
//! The store enqueues a delivery per endpoint in the transaction that ends the task
//! ([`pitcrew_store::Store::subscribe_webhooks`]); a [`Dispatcher`] in every process that
//! works the queue (and in `serve`) claims due deliveries with a lease, sends them with a
//! timeout, and retries failures with exponential backoff and jitter ([`retry_delay`],
//! honouring `Retry-After` on 429 and 503) until the endpoint's `max_attempts` are used, then
//! records the failure. Delivery is at least once: every attempt carries the same event id
//! (`X-Pitcrew-Event-Id`) for receivers to deduplicate by, and a signature over the attempt's
//! timestamp and the body ([`sign`]) for them to verify and to refuse replays.

mod backoff;
mod dispatcher;
mod signature;

pub use backoff::{FIRST_RETRY_DELAY, MAX_BACKOFF, MAX_RETRY_AFTER, retry_delay};
pub use dispatcher::{
    Dispatched, Dispatcher, Endpoint, MAX_ANSWER_BYTES, MAX_IN_FLIGHT, Mode, WebhookError,
};
pub use signature::{
    ATTEMPT_HEADER, EVENT_HEADER, EVENT_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign,
};
