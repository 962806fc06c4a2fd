//! A webhook receiver: what a user's endpoint does with pitcrew's deliveries, on `127.0.0.1`.
//! It verifies each signature the way docs/integrations.md tells receivers to — written here
//! from that description, not with pitcrew's own signing code — records every delivery, and
//! answers from a script.

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;
use tokio::sync::oneshot;

use crate::reply::Gate;

/// What the receiver answers one delivery with.
#[derive(Clone, Debug)]
pub struct Answer {
    status: StatusCode,
    body: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    gate: Option<Gate>,
}

impl Answer {
    /// `code` with a short text body. Panics on a code that is not an HTTP status.
    pub fn status(code: u16) -> Answer {
        let status = StatusCode::from_u16(code)
            .unwrap_or_else(|err| panic!("invalid HTTP status {code}: {err}"));
        Answer {
            status,
            body: format!("receiver says {code}"),
            headers: Vec::new(),
            gate: None,
        }
    }

    /// 200 OK.
    pub fn ok() -> Answer {
        Answer::status(200)
    }

    /// Replaces the body.
    pub fn body(mut self, body: &str) -> Answer {
        self.body = body.to_owned();
        self
    }

    /// Adds a response header. Panics on an invalid name or value.
    pub fn header(mut self, name: &str, value: &str) -> Answer {
        let name = HeaderName::from_bytes(name.as_bytes())
            .unwrap_or_else(|err| panic!("invalid header name {name:?}: {err}"));
        let value = HeaderValue::from_str(value)
            .unwrap_or_else(|err| panic!("invalid value for header {name}: {err}"));
        self.headers.push((name, value));
        self
    }

    /// Answers nothing until `gate` opens (the delivery is recorded on arrival regardless):
    /// an endpoint that hangs. Dropping the receiver closes the connection instead.
    pub fn hold(mut self, gate: &Gate) -> Answer {
        self.gate = Some(gate.clone());
        self
    }
}

/// A delivery as it arrived.
#[derive(Clone, Debug)]
pub struct ReceivedDelivery {
    /// Header names are lowercase.
    pub headers: Vec<(String, String)>,
    /// The body, byte for byte.
    pub body: Vec<u8>,
    /// Whether `X-Pitcrew-Signature` is the HMAC-SHA256 of `<X-Pitcrew-Timestamp>.<body>`
    /// under the receiver's secret.
    pub signature_valid: bool,
    pub received_at: Instant,
}

impl ReceivedDelivery {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The body parsed as JSON (`Value::Null` when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// `X-Pitcrew-Event-Id`.
    pub fn event_id(&self) -> Option<&str> {
        self.header("x-pitcrew-event-id")
    }
}

/// Chooses the answer to a delivery, given how many deliveries of the same event came
/// before it.
type Chooser = Arc<dyn Fn(&ReceivedDelivery, usize) -> Answer + Send + Sync>;

struct Script {
    deliveries: Vec<ReceivedDelivery>,
    answers: VecDeque<Answer>,
    then: Chooser,
}

struct Shared {
    secret: Vec<u8>,
    script: Mutex<Script>,
    arrived: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Script> {
        self.script.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A webhook endpoint on `127.0.0.1:PORT/hooks/pitcrew` that verifies every delivery's
/// signature with its secret, records it, and answers with the [`Answer`]s pushed (first in,
/// first out), then with the one [`WebhookReceiver::then_answer`] set (200 OK unless told).
/// It runs on its own thread and runtime, so it serves plain `#[test]`s and async ones alike.
pub struct WebhookReceiver {
    shared: Arc<Shared>,
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl WebhookReceiver {
    /// Starts a receiver whose signing secret is `secret`. Panics if it cannot listen.
    pub fn start(secret: &str) -> WebhookReceiver {
        let shared = Arc::new(Shared {
            secret: secret.as_bytes().to_vec(),
            script: Mutex::new(Script {
                deliveries: Vec::new(),
                answers: VecDeque::new(),
                then: Arc::new(|_, _| Answer::ok()),
            }),
            arrived: Condvar::new(),
        });
        let app = Router::new()
            .fallback(receive)
            .with_state(Arc::clone(&shared));
        let serving = crate::serving::serve("webhook receiver", app);
        WebhookReceiver {
            shared,
            addr: serving.addr,
            shutdown: Some(serving.shutdown),
            thread: Some(serving.thread),
        }
    }

    /// `http://127.0.0.1:PORT/hooks/pitcrew`, the URL to configure.
    pub fn url(&self) -> String {
        format!("http://{}/hooks/pitcrew", self.addr)
    }

    /// Answers the next delivery not answered by an earlier push with `answer`.
    pub fn push(&self, answer: Answer) {
        self.shared.lock().answers.push_back(answer);
    }

    /// Once the pushed answers are used up, answers every delivery with `answer`.
    pub fn then_answer(&self, answer: Answer) {
        self.shared.lock().then = Arc::new(move |_, _| answer.clone());
    }

    /// Once the pushed answers are used up, answers each delivery with what `choose` makes of
    /// it and of how many deliveries of the same event (`X-Pitcrew-Event-Id`) came before:
    /// for scripts per event, whatever order concurrent deliveries arrive in.
    pub fn answer_by(
        &self,
        choose: impl Fn(&ReceivedDelivery, usize) -> Answer + Send + Sync + 'static,
    ) {
        self.shared.lock().then = Arc::new(choose);
    }

    /// Every delivery received so far, in arrival order, answered or not.
    pub fn deliveries(&self) -> Vec<ReceivedDelivery> {
        self.shared.lock().deliveries.clone()
    }

    /// Blocks until at least `n` deliveries have arrived or `timeout` passes; says whether
    /// they did.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> bool {
        let script = self.shared.lock();
        let (script, _) = self
            .shared
            .arrived
            .wait_timeout_while(script, timeout, |script| script.deliveries.len() < n)
            .unwrap_or_else(PoisonError::into_inner);
        script.deliveries.len() >= n
    }
}

impl fmt::Debug for WebhookReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The secret is left out: tests check that it never shows.
        f.debug_struct("WebhookReceiver")
            .field("addr", &self.addr)
            .field("deliveries", &self.shared.lock().deliveries.len())
            .finish()
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
            && !std::thread::panicking()
        {
            panic!("webhook receiver: its thread panicked");
        }
    }
}

/// Whether `signature` (`sha256=<hex>`) is the HMAC-SHA256 under `secret` of
/// `<timestamp>.<body>`, compared in constant time.
pub fn signature_is_valid(secret: &[u8], timestamp: &str, body: &[u8], signature: &str) -> bool {
    let Some(digest) = signature.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(expected) = hex::decode(digest) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

async fn receive(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let received_at = Instant::now();
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default()
        .to_vec();
    let headers: Vec<(String, String)> = (parts.headers.iter())
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let header = |name: &str| {
        (headers.iter())
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    let signature_valid = match (header("x-pitcrew-timestamp"), header("x-pitcrew-signature")) {
        (Some(timestamp), Some(signature)) => {
            signature_is_valid(&shared.secret, timestamp, &body, signature)
        }
        _ => false,
    };
    let delivery = ReceivedDelivery {
        headers: headers.clone(),
        body,
        signature_valid,
        received_at,
    };
    let (pushed, choose, earlier) = {
        let mut script = shared.lock();
        let earlier = (script.deliveries.iter())
            .filter(|d| d.event_id().is_some() && d.event_id() == delivery.event_id())
            .count();
        script.deliveries.push(delivery.clone());
        shared.arrived.notify_all();
        let pushed = script.answers.pop_front();
        (pushed, Arc::clone(&script.then), earlier)
    };
    // Chosen outside the lock: a test reading the deliveries must not wait on it.
    let answer = pushed.unwrap_or_else(|| choose(&delivery, earlier));
    if let Some(gate) = &answer.gate {
        gate.wait().await;
    }
    let mut response = Response::new(Body::from(answer.body));
    *response.status_mut() = answer.status;
    for (name, value) in answer.headers {
        response.headers_mut().insert(name, value);
    }
    response
}
