//! The dispatcher: a task of its own in every process that works the queue (and in `serve`),
//! which claims due deliveries from the store with a lease, POSTs them — a few at a time,
//! each within its endpoint's timeout — and records each outcome: delivered, tried again
//! later with backoff, or given up. Workers never wait for it; a process that dies mid-send
//! leaves a lease that expires, and the next dispatcher sends the delivery again (at least
//! once: receivers deduplicate by the event id).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use pitcrew_config::{ConfigError, LoadedConfig};
use pitcrew_core::{Secret, printable};
use pitcrew_store::{ClaimedDelivery, DeliveryOutcome, DeliveryState, Store, StoreError};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::backoff::retry_delay;
use crate::signature::{
    ATTEMPT_HEADER, EVENT_HEADER, EVENT_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign,
};

/// Deliveries one process sends at once: enough to keep a slow endpoint from holding up the
/// others, few enough to stay out of the workers' way.
pub const MAX_IN_FLIGHT: usize = 4;
/// How much of a receiver's answer is read (to say why it refused); the rest is not.
pub const MAX_ANSWER_BYTES: usize = 4096;
/// A lease outlasts its endpoint's timeout by this much: time to record the outcome.
const LEASE_MARGIN: Duration = Duration::from_secs(5);
/// The longest an idle dispatcher goes without looking for due deliveries (other processes
/// enqueue too, and nothing signals it).
const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// After a store error, the pause before trying again.
const STORE_ERROR_PAUSE: Duration = Duration::from_secs(2);
/// How far ahead of this machine's clock a delivery may be due and still be asked for (the
/// store's clock decides), and the pause after asking for nothing.
const CLOCK_SLACK: Duration = Duration::from_millis(200);
/// The shortest sleep before a delivery falls due.
const MIN_WAIT: Duration = Duration::from_millis(20);

/// One `[[webhooks]]` endpoint with the secret that signs its events.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub url: String,
    secret: Secret,
    /// How long one attempt may take, connecting to reading the answer.
    pub timeout: Duration,
    /// Attempts before a delivery is given up.
    pub max_attempts: u32,
}

impl Endpoint {
    pub fn new(url: String, secret: Secret, timeout: Duration, max_attempts: u32) -> Self {
        Endpoint {
            url,
            secret,
            timeout,
            max_attempts: max_attempts.max(1),
        }
    }

    /// Every endpoint `config` lists, with its secret; the first secret missing (or too
    /// short) is an error naming its variable.
    pub fn from_config(config: &LoadedConfig) -> Result<Vec<Endpoint>, ConfigError> {
        (config.config.webhooks.iter())
            .map(|hook| {
                Ok(Endpoint::new(
                    hook.url.clone(),
                    config.webhook_secret(hook)?,
                    hook.timeout(),
                    hook.max_attempts,
                ))
            })
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("cannot build the HTTP client for webhooks: {0}")]
    Client(#[from] reqwest::Error),
}

/// What the dispatcher is to do; changed through the `watch` channel [`Dispatcher::run`]
/// reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Deliver whatever falls due, until told otherwise.
    Deliver,
    /// Deliver what falls due before `until` (retries included), then stop once the
    /// attempts under way end. What falls due later waits for the next dispatcher.
    Drain { until: Instant },
    /// Stop now: attempts under way are dropped, their leases expire, and another dispatcher
    /// makes them again.
    Stop,
}

/// What a dispatcher's attempts came to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dispatched {
    pub delivered: u32,
    /// Attempts that failed with attempts left: their deliveries are due again later.
    pub retried: u32,
    /// Deliveries given up after their last attempt failed.
    pub failed: u32,
}

/// How one attempt went, for the tally.
enum Attempted {
    Recorded(DeliveryOutcome),
    /// Another dispatcher took the delivery over (this one's lease had expired).
    LeaseLost,
    /// The store could not record it: the lease expires and the attempt is made again.
    NotRecorded,
}

/// Delivers the store's webhook deliveries to the endpoints it knows (and only those: a
/// process without an endpoint's secret leaves its deliveries to one that has it).
#[derive(Debug)]
pub struct Dispatcher {
    store: Arc<dyn Store>,
    endpoints: HashMap<String, Endpoint>,
    urls: Vec<String>,
    http: reqwest::Client,
    /// Names this process in the leases it takes.
    owner: String,
    lease_ttl: Duration,
}

impl Dispatcher {
    pub fn new(
        store: Arc<dyn Store>,
        endpoints: Vec<Endpoint>,
        owner: impl Into<String>,
    ) -> Result<Self, WebhookError> {
        let http = reqwest::Client::builder()
            // A redirect would send the signed body somewhere not configured.
            .redirect(reqwest::redirect::Policy::none())
            // Retries are the dispatcher's, stored, with backoff; never the client's.
            .retry(reqwest::retry::never())
            .user_agent(concat!("pitcrew-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let longest = (endpoints.iter().map(|e| e.timeout))
            .max()
            .unwrap_or_default();
        let urls = endpoints.iter().map(|e| e.url.clone()).collect();
        Ok(Dispatcher {
            store,
            endpoints: (endpoints.into_iter())
                .map(|e| (e.url.clone(), e))
                .collect(),
            urls,
            http,
            owner: owner.into(),
            lease_ttl: longest + LEASE_MARGIN,
        })
    }

    /// The URLs this dispatcher delivers to.
    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    /// Deliveries to this dispatcher's endpoints still waiting to be sent (pending or to be
    /// retried).
    pub async fn waiting(&self) -> Result<u64, StoreError> {
        let counts = self.store.webhook_delivery_counts(None).await?;
        Ok((counts.iter())
            .filter(|c| matches!(c.state, DeliveryState::Pending | DeliveryState::Retrying))
            .filter(|c| self.endpoints.contains_key(&c.url))
            .map(|c| c.count)
            .sum())
    }

    /// Delivers as `mode` says until it says to stop (or a drain is done); returns what the
    /// attempts came to. Store errors are logged and waited out, never fatal: the deliveries
    /// stay in the store for the next try.
    pub async fn run(self: Arc<Self>, mut mode: watch::Receiver<Mode>) -> Dispatched {
        let mut tally = Dispatched::default();
        let mut in_flight: JoinSet<Attempted> = JoinSet::new();
        // Once the sender is gone the mode holds for good.
        let mut mode_open = true;
        loop {
            let drain_until = match *mode.borrow_and_update() {
                Mode::Stop => break,
                Mode::Deliver => None,
                Mode::Drain { until } => Some(until),
            };
            let past_deadline = drain_until.is_some_and(|until| Instant::now() >= until);
            // Read first: an idle dispatcher takes no write lock on the store.
            let next_due = match self.store.next_webhook_due(&self.urls).await {
                Ok(due) => Ok(due.map(|due| (due - Utc::now()).to_std().unwrap_or_default())),
                Err(e) => {
                    tracing::warn!("cannot look for due webhook deliveries: {e}");
                    Err(())
                }
            };
            let free = MAX_IN_FLIGHT.saturating_sub(in_flight.len());
            // The store's clock decides what is due (PostgreSQL's may differ from ours): ask
            // for anything due by ours within the slack.
            let worth_claiming = matches!(next_due, Ok(Some(due)) if due <= CLOCK_SLACK);
            let mut claimed_none = false;
            if worth_claiming && free > 0 && !past_deadline {
                match self.claim(free).await {
                    Ok(claimed) => {
                        claimed_none = claimed.is_empty();
                        for delivery in claimed {
                            in_flight.spawn(Arc::clone(&self).attempt(delivery));
                        }
                    }
                    Err(e) => tracing::warn!("cannot claim webhook deliveries: {e}"),
                }
            }
            if let Some(until) = drain_until
                && in_flight.is_empty()
            {
                // Drained once nothing more falls due before the deadline.
                let left = until.saturating_duration_since(Instant::now());
                let done = match next_due {
                    Ok(None) => true,
                    Ok(Some(due)) => past_deadline || due > left,
                    Err(()) => past_deadline,
                };
                if done {
                    break;
                }
            }
            let wait = match next_due {
                Err(()) => STORE_ERROR_PAUSE,
                // Another dispatcher took it first, or the clocks disagree: not a busy loop.
                Ok(Some(_)) if claimed_none => CLOCK_SLACK,
                Ok(Some(due)) => due.clamp(MIN_WAIT, POLL_INTERVAL),
                Ok(None) => POLL_INTERVAL,
            };
            tokio::select! {
                Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                    if let Ok(attempted) = done {
                        tally.add(&attempted);
                    }
                }
                changed = mode.changed(), if mode_open => mode_open = changed.is_ok(),
                () = tokio::time::sleep(wait) => {}
            }
        }
        if *mode.borrow() != Mode::Stop {
            // A drain lets the attempts under way end (each within its timeout).
            while let Some(done) = in_flight.join_next().await {
                if let Ok(attempted) = done {
                    tally.add(&attempted);
                }
            }
        }
        tally
    }

    async fn claim(&self, limit: usize) -> Result<Vec<ClaimedDelivery>, StoreError> {
        let limit = u32::try_from(limit).unwrap_or(u32::MAX);
        (self.store)
            .claim_webhook_deliveries(&self.owner, &self.urls, limit, self.lease_ttl)
            .await
    }

    /// Sends `delivery` once and records how it went.
    async fn attempt(self: Arc<Self>, delivery: ClaimedDelivery) -> Attempted {
        let Some(endpoint) = self.endpoints.get(&delivery.url) else {
            // Claimed by URL, so it is one of ours; nothing to record if it somehow is not.
            return Attempted::NotRecorded;
        };
        let outcome = self.send(endpoint, &delivery).await;
        match &outcome {
            DeliveryOutcome::Delivered { .. } => tracing::debug!(
                "webhook {} ({}) delivered to {}",
                delivery.event_id,
                delivery.event_type,
                delivery.url
            ),
            DeliveryOutcome::Retry { delay, error, .. } => tracing::info!(
                "webhook {} ({}) to {}: attempt {} of {} failed ({error}); next in {:.0?}",
                delivery.event_id,
                delivery.event_type,
                delivery.url,
                delivery.attempt,
                endpoint.max_attempts,
                delay
            ),
            DeliveryOutcome::Failed { error, .. } => tracing::warn!(
                "webhook {} ({}) to {}: gave up after {} attempt{}; the last: {error}",
                delivery.event_id,
                delivery.event_type,
                delivery.url,
                delivery.attempt,
                if delivery.attempt == 1 { "" } else { "s" }
            ),
        }
        match self.store.record_webhook_attempt(&delivery, &outcome).await {
            Ok(true) => Attempted::Recorded(outcome),
            Ok(false) => Attempted::LeaseLost,
            Err(e) => {
                tracing::warn!(
                    "cannot record webhook delivery #{} ({e}); it is sent again once its \
                     lease expires",
                    delivery.seq
                );
                Attempted::NotRecorded
            }
        }
    }

    /// POSTs `delivery` to `endpoint`, signed, and says how it went.
    async fn send(&self, endpoint: &Endpoint, delivery: &ClaimedDelivery) -> DeliveryOutcome {
        let timestamp = Utc::now().timestamp();
        let signature = sign(&endpoint.secret, timestamp, delivery.body.as_bytes());
        let sent = (self.http.post(&endpoint.url))
            .timeout(endpoint.timeout)
            .header(CONTENT_TYPE, "application/json")
            .header(EVENT_HEADER, delivery.event_type.as_str())
            .header(EVENT_ID_HEADER, delivery.event_id.to_string())
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(SIGNATURE_HEADER, signature)
            .header(ATTEMPT_HEADER, delivery.attempt.to_string())
            .body(delivery.body.clone())
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(e) => {
                return failed(
                    endpoint,
                    delivery,
                    None,
                    None,
                    transport_error(&e, endpoint),
                );
            }
        };
        let status = response.status();
        if status.is_success() {
            return DeliveryOutcome::Delivered {
                status_code: status.as_u16(),
            };
        }
        let retry_after = matches!(
            status,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
        )
        .then(|| asked_to_wait(response.headers()))
        .flatten();
        let location = (status.is_redirection())
            .then(|| response.headers().get(reqwest::header::LOCATION).cloned())
            .flatten();
        let answer = bounded_answer(response).await;
        let mut error = format!("HTTP {}", status.as_u16());
        if let Some(location) = location {
            error.push_str(&format!(
                ": redirects are not followed; configure the URL it points to ({})",
                String::from_utf8_lossy(location.as_bytes())
            ));
        } else if !answer.is_empty() {
            error.push_str(&format!(": {answer}"));
        }
        failed(
            endpoint,
            delivery,
            Some(status.as_u16()),
            retry_after,
            error,
        )
    }
}

impl Dispatched {
    fn add(&mut self, attempted: &Attempted) {
        match attempted {
            Attempted::Recorded(DeliveryOutcome::Delivered { .. }) => self.delivered += 1,
            Attempted::Recorded(DeliveryOutcome::Retry { .. }) => self.retried += 1,
            Attempted::Recorded(DeliveryOutcome::Failed { .. }) => self.failed += 1,
            Attempted::LeaseLost | Attempted::NotRecorded => {}
        }
    }
}

/// A failed attempt: tried again later, or given up when it was the last one allowed.
fn failed(
    endpoint: &Endpoint,
    delivery: &ClaimedDelivery,
    status_code: Option<u16>,
    retry_after: Option<Duration>,
    error: String,
) -> DeliveryOutcome {
    if delivery.attempt >= endpoint.max_attempts {
        DeliveryOutcome::Failed { status_code, error }
    } else {
        DeliveryOutcome::Retry {
            delay: retry_delay(delivery.attempt, retry_after),
            status_code,
            error,
        }
    }
}

/// How long a 429 or 503 asked to wait.
fn asked_to_wait(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    pitcrew_core::parse_retry_after(value, Utc::now())
}

/// Why no answer came, in words.
fn transport_error(error: &reqwest::Error, endpoint: &Endpoint) -> String {
    if error.is_timeout() {
        format!(
            "no answer within {} s (timeout_secs)",
            endpoint.timeout.as_secs()
        )
    } else if error.is_connect() {
        format!("cannot connect: {}", root_cause(error))
    } else {
        format!("{error}: {}", root_cause(error))
    }
}

/// The innermost cause of `error`: `Connection refused (os error 111)` rather than the
/// layers of client errors around it.
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    cause.to_string()
}

/// The start of a receiver's answer, as printable text: at most [`MAX_ANSWER_BYTES`] are
/// read, however much it sends.
async fn bounded_answer(mut response: reqwest::Response) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < MAX_ANSWER_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    bytes.truncate(MAX_ANSWER_BYTES);
    let text = String::from_utf8_lossy(&bytes);
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    printable(&one_line).into_owned()
}
