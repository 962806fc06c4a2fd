//! The scripted OpenAI-compatible HTTP server.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::reply::{Reply, ReplyBody, SseEvent, Usage, completion_json, text_chunks, word_count};

/// How many pieces [`Reply::content`] is split into when the request asks for a stream.
const CONTENT_STREAM_PIECES: usize = 3;

/// Model echoed when a request names none.
const DEFAULT_MODEL: &str = "scripted-model";

type Responder = Arc<dyn Fn(&RecordedRequest) -> Reply + Send + Sync>;

/// A request the server received, recorded on arrival (before its reply is chosen or held).
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// `GET`, `POST`, …
    pub method: String,
    /// The URI path without the query, e.g. `/v1/chat/completions`.
    pub path: String,
    /// Header names are lowercase; repeated headers appear once per value, in order.
    pub headers: Vec<(String, String)>,
    /// The body parsed as JSON; `Value::Null` when empty or not JSON.
    pub body: Value,
    pub received_at: Instant,
}

impl RecordedRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The body's `model`.
    pub fn model(&self) -> Option<&str> {
        self.body["model"].as_str()
    }

    /// Whether the body says `"stream": true`.
    pub fn stream(&self) -> bool {
        self.body["stream"].as_bool() == Some(true)
    }

    /// All message contents joined with `"\n"`, in order. Content given as an array of
    /// parts contributes its `text` parts; messages without text content are skipped.
    pub fn prompt_text(&self) -> String {
        pitcrew_sim::prompt_text(&self.body)
    }
}

struct Script {
    requests: Vec<RecordedRequest>,
    replies: VecDeque<Reply>,
    responder: Option<Responder>,
}

struct Shared {
    script: Mutex<Script>,
    /// Signalled on every recorded request, for [`ScriptedServer::wait_for_requests`].
    arrived: Condvar,
    next_id: AtomicU64,
}

impl Shared {
    /// A test that panicked while holding the lock must not hide its own failure behind
    /// poison errors from the server.
    fn lock(&self) -> MutexGuard<'_, Script> {
        self.script.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A local OpenAI-compatible server answering `POST /v1/chat/completions` from a script.
///
/// Each chat-completions request takes the next [`Reply`] pushed with
/// [`ScriptedServer::push`]; once none is left, the [`ScriptedServer::respond_with`] function
/// chooses; without one, the server answers HTTP 500 with a JSON error saying
/// `scripted server: no reply left for this request`, so an unscripted request fails
/// visibly. `GET /v1/models` answers a fixed two-model list in OpenRouter's format; any other
/// route answers 404. Every request, whatever its route, is recorded.
///
/// The server listens on `127.0.0.1` on a free port and runs on its own thread and tokio
/// runtime, so it works from synchronous and async tests alike. Dropping it stops the server
/// and closes connections whose replies are still held or delayed.
pub struct ScriptedServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ScriptedServer {
    /// Binds `127.0.0.1:0` and starts serving. Panics if the port or thread cannot be had.
    pub fn start() -> ScriptedServer {
        let shared = Arc::new(Shared {
            script: Mutex::new(Script {
                requests: Vec::new(),
                replies: VecDeque::new(),
                responder: None,
            }),
            arrived: Condvar::new(),
            next_id: AtomicU64::new(1),
        });
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        let serving = crate::serving::serve("scripted server", app);
        ScriptedServer {
            shared,
            addr: serving.addr,
            shutdown: Some(serving.shutdown),
            thread: Some(serving.thread),
        }
    }

    /// `http://127.0.0.1:PORT/v1`, the base URL an OpenAI-compatible client expects.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Appends `reply` to the script; chat-completions requests consume it first in, first out.
    pub fn push(&self, reply: Reply) {
        self.shared.lock().replies.push_back(reply);
    }

    /// Once the pushed replies are used up, every chat-completions request is answered by
    /// `f(request)`: for concurrent callers whose reply must depend on the prompt. Replaces
    /// any earlier function. `f` runs on the server thread; a panic in it is answered with
    /// HTTP 500 naming the panic.
    pub fn respond_with(&self, f: impl Fn(&RecordedRequest) -> Reply + Send + Sync + 'static) {
        self.shared.lock().responder = Some(Arc::new(f));
    }

    /// Every request received so far, in arrival order, including those still being answered.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().requests.clone()
    }

    /// Blocks until at least `n` requests have been received or `timeout` passes; returns
    /// whether `n` arrived. In a current-thread `#[tokio::test]` whose requests are sent by
    /// the same runtime, call it from `spawn_blocking` or use the multi-thread flavour.
    pub fn wait_for_requests(&self, n: usize, timeout: Duration) -> bool {
        let script = self.shared.lock();
        let (script, _) = self
            .shared
            .arrived
            .wait_timeout_while(script, timeout, |script| script.requests.len() < n)
            .unwrap_or_else(PoisonError::into_inner);
        script.requests.len() >= n
    }
}

impl fmt::Debug for ScriptedServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let script = self.shared.lock();
        f.debug_struct("ScriptedServer")
            .field("addr", &self.addr)
            .field("requests", &script.requests.len())
            .field("replies_left", &script.replies.len())
            .field("responder", &script.responder.is_some())
            .finish()
    }
}

impl Drop for ScriptedServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            // An error means the server thread already ended; joining reports why.
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
            && !std::thread::panicking()
        {
            panic!("scripted server: its thread panicked");
        }
    }
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let received_at = Instant::now();
    let (parts, body) = request.into_parts();
    // A body that cannot be read (client gone) is recorded as empty.
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let recorded = RecordedRequest {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        headers: parts
            .headers
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        received_at,
    };
    shared.lock().requests.push(recorded.clone());
    shared.arrived.notify_all();

    match (&parts.method, parts.uri.path()) {
        (&Method::POST, "/v1/chat/completions") => {
            let reply = next_reply(&shared, &recorded);
            let id = format!(
                "chatcmpl-scripted-{}",
                shared.next_id.fetch_add(1, Ordering::Relaxed)
            );
            answer(reply, &recorded, &id).await
        }
        (&Method::GET, "/v1/models") => json_response(StatusCode::OK, &models_list()),
        (method, path) => error_response(
            StatusCode::NOT_FOUND,
            &format!("scripted server: no route for {method} {path}"),
        ),
    }
}

/// The FIFO first, then the responder, else a visible 500.
fn next_reply(shared: &Shared, request: &RecordedRequest) -> Reply {
    let responder = {
        let mut script = shared.lock();
        if let Some(reply) = script.replies.pop_front() {
            return reply;
        }
        script.responder.clone()
    };
    // Called outside the lock so a slow responder does not block recording other requests.
    let Some(responder) = responder else {
        return error_reply(500, "scripted server: no reply left for this request");
    };
    catch_unwind(AssertUnwindSafe(|| responder(request))).unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        error_reply(500, &format!("scripted server: responder panicked: {why}"))
    })
}

async fn answer(reply: Reply, request: &RecordedRequest, id: &str) -> Response {
    if let Some(gate) = &reply.gate {
        gate.wait().await;
    }
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let (content_type, body) = match reply.body {
        ReplyBody::Content(text) => {
            let model = request.model().unwrap_or(DEFAULT_MODEL);
            let usage = reply.usage.unwrap_or_else(|| Usage {
                prompt_tokens: word_count(&request.prompt_text()),
                completion_tokens: word_count(&text),
                cost: None,
            });
            if request.stream() {
                let events = text_chunks(id, model, &text, CONTENT_STREAM_PIECES, usage);
                (
                    HeaderValue::from_static("text/event-stream"),
                    sse_body(events),
                )
            } else {
                let completion = completion_json(id, model, &text, usage);
                (
                    HeaderValue::from_static("application/json"),
                    Body::from(completion.to_string()),
                )
            }
        }
        ReplyBody::Json(value) => (
            HeaderValue::from_static("application/json"),
            Body::from(value.to_string()),
        ),
        ReplyBody::Raw { content_type, body } => (content_type, Body::from(body)),
        ReplyBody::Sse(events) => (
            HeaderValue::from_static("text/event-stream"),
            sse_body(events),
        ),
    };
    let mut response = Response::new(body);
    *response.status_mut() = reply.status;
    let headers = response.headers_mut();
    if content_type == "text/event-stream" {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    headers.insert(header::CONTENT_TYPE, content_type);
    for (name, value) in reply.headers {
        headers.insert(name, value);
    }
    response
}

/// A streamed body yielding each event as its own frame, so hyper writes it out before
/// sleeping through the next [`SseEvent::Delay`]. An [`SseEvent::Disconnect`] yields an
/// error once the frames before it are flushed: hyper then closes the connection without
/// finishing the chunked body.
fn sse_body(events: Vec<SseEvent>) -> Body {
    let frames = futures::stream::unfold(events.into_iter(), |mut events| async move {
        loop {
            let event = events.next()?;
            if let Some(frame) = event.frame() {
                return Some((Ok(frame), events));
            }
            match event {
                SseEvent::Delay(pause) => tokio::time::sleep(pause).await,
                SseEvent::Disconnect => {
                    // Pending once, so hyper flushes what it buffered before the break
                    // (an error found at once would drop the buffered frames with it).
                    tokio::task::yield_now().await;
                    let broken = io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "scripted server: disconnect mid-stream",
                    );
                    // Nothing is sent after the break.
                    return Some((Err(broken), Vec::new().into_iter()));
                }
                SseEvent::Forever { data, every } => {
                    tokio::time::sleep(every).await;
                    let frame = SseEvent::Data(data.clone()).frame();
                    // The same event again next time: it never runs out.
                    let again = vec![SseEvent::Forever { data, every }].into_iter();
                    return Some((Ok(frame.expect("data has a frame")), again));
                }
                _ => {}
            }
        }
    });
    Body::from_stream(frames)
}

fn error_reply(code: u16, message: &str) -> Reply {
    Reply::status(code, error_json(code, message))
}

fn error_json(code: u16, message: &str) -> Value {
    json!({"error": {"message": message, "code": code}})
}

fn error_response(status: StatusCode, message: &str) -> Response {
    json_response(status, &error_json(status.as_u16(), message))
}

fn json_response(status: StatusCode, value: &Value) -> Response {
    let mut response = Response::new(Body::from(value.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A small OpenRouter-style model list (string prices per token), one paid and one free model.
fn models_list() -> Value {
    json!({
        "data": [
            {
                "id": "scripted/coder",
                "name": "Scripted: Coder",
                "context_length": 128000,
                "pricing": {"prompt": "0.000001", "completion": "0.000002"},
                "top_provider": {"context_length": 128000, "max_completion_tokens": 8192},
                "supported_parameters": ["max_tokens", "temperature", "tools"],
            },
            {
                "id": "scripted/coder:free",
                "name": "Scripted: Coder (free)",
                "context_length": 32768,
                "pricing": {"prompt": "0", "completion": "0"},
                "top_provider": {"context_length": 32768, "max_completion_tokens": 4096},
                "supported_parameters": ["max_tokens", "temperature"],
            },
        ]
    })
}
