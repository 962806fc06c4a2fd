//! A real server on a loopback port, over a real store (SQLite, and PostgreSQL when
//! `PITCREW_TEST_POSTGRES_URL` is set) and a real git repository, and a client for it.

use std::sync::Arc;

use pitcrew_config::{Environment, LoadedConfig};
use pitcrew_runtime::Repo;
use pitcrew_server::{ApiSettings, EventHub, Server};
use pitcrew_store::Store;
use pitcrew_testkit::{PgSchema, TempRepo};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::Value;
use tokio::sync::oneshot;

pub const TOKEN: &str = "api-test-token-5f2c9a71e0d4";

pub const CALC_PY: &str = "def double(x):\n    return x * 2\n";

/// Where a test's queue lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// SQLite always; PostgreSQL when the test server's URL is set (saying so when it is not).
pub fn backends(what: &str) -> Vec<Backend> {
    if std::env::var("PITCREW_TEST_POSTGRES_URL").is_ok() {
        vec![Backend::Sqlite, Backend::Postgres]
    } else {
        // Straight to stderr: the harness would swallow eprintln! of a passing test.
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            format!(
                "skipped: PITCREW_TEST_POSTGRES_URL is not set, so {what} did not run on PostgreSQL\n"
            )
            .as_bytes(),
        );
        vec![Backend::Sqlite]
    }
}

/// A served API and what it serves.
pub struct Api {
    pub url: String,
    pub client: reqwest::Client,
    pub repo: TempRepo,
    pub store: Arc<dyn Store>,
    pub server_openapi: Value,
    pub router_debug: String,
    /// Where the events of an engine in the server's process would go.
    pub events: EventHub,
    stop: Option<oneshot::Sender<()>>,
    schema: Option<PgSchema>,
    _scratch: tempfile::TempDir,
}

impl Api {
    /// A server with the token [`TOKEN`] over a repository holding `src/calc.py`.
    pub async fn start(backend: Backend) -> Api {
        Self::start_with(backend, &[("PITCREW_SERVER_TOKEN", TOKEN)]).await
    }

    /// A server whose configuration sees the variables `env` (and nothing of the process).
    pub async fn start_with(backend: Backend, env: &[(&str, &str)]) -> Api {
        let repo = TempRepo::with_files(&[
            ("src/__init__.py", ""),
            ("src/calc.py", CALC_PY),
            ("README.md", "# calc\n"),
        ]);
        let scratch = tempfile::tempdir().unwrap();
        let (store_url, schema) = match backend {
            Backend::Sqlite => (
                format!("sqlite://{}", scratch.path().join("queue.db").display()),
                None,
            ),
            Backend::Postgres => {
                let url = std::env::var("PITCREW_TEST_POSTGRES_URL").unwrap();
                let schema = PgSchema::create(&url, "api");
                (schema.store_url(), Some(schema))
            }
        };
        let store = pitcrew_store::open(&store_url).await.unwrap();
        let vars = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        let config = LoadedConfig::load(repo.path(), None, Environment::from_vars(vars)).unwrap();
        let server = Server::new(ApiSettings {
            store: Arc::clone(&store),
            config,
            repo: Repo::discover(repo.path()).await.unwrap(),
            repo_url: None,
        });
        let server_openapi = server.openapi().clone();
        let router_debug = format!("{:?}", server.router());
        let events = server.events().clone();
        let listener = pitcrew_server::bind("127.0.0.1:0".parse().unwrap(), true)
            .await
            .unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel();
        tokio::spawn(server.serve(listener, async {
            let _ = stopped.await;
        }));
        Api {
            url,
            client: reqwest::Client::new(),
            repo,
            store,
            server_openapi,
            router_debug,
            events,
            stop: Some(stop),
            schema,
            _scratch: scratch,
        }
    }

    /// A request with the token.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.without_token(method, path).bearer_auth(TOKEN)
    }

    /// A request with no `Authorization` header.
    pub fn without_token(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, format!("{}{path}", self.url))
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        answer(self.request(Method::GET, path).send().await.unwrap()).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        answer(
            self.request(Method::POST, path)
                .json(body)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// Every task in the store, oldest first.
    pub async fn stored(&self) -> Vec<pitcrew_core::Task> {
        self.store
            .list(&pitcrew_core::TaskFilter::default())
            .await
            .unwrap()
    }

    /// Drops the PostgreSQL schema the store works in, as if the database went away; false
    /// on SQLite.
    pub async fn lose_the_store(&mut self) -> bool {
        match self.schema.take() {
            Some(mut schema) => {
                schema.drop_now();
                true
            }
            None => false,
        }
    }

    /// Stops the server and drops the test's schema.
    pub async fn finish(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // Dropping the schema drops it on the server.
        self.schema.take();
    }
}

/// The status and JSON body of `response`.
pub async fn answer(response: Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("a {status} answer is not JSON ({e}): {text}"));
    (status, body)
}

/// Asserts an error answer: its status, its code, and that its message says `says`.
#[track_caller]
pub fn assert_error(answer: &(StatusCode, Value), status: StatusCode, code: &str, says: &str) {
    let (got, body) = answer;
    assert_eq!(*got, status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(says), "`{says}` not in: {message}");
}

/// POSTs a JSON body of `length` bytes to `path` over a raw connection and returns the
/// answer. The server may answer before reading it all (that is the point of a limit), so
/// the body is written on the side and a refusal to take the rest is no failure; `chunked`
/// sends it without declaring its length up front.
pub async fn post_large(
    api: &Api,
    path: &str,
    length: usize,
    chunked: bool,
) -> (StatusCode, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let address = api.url.trim_start_matches("http://");
    let stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let framing = if chunked {
        "Transfer-Encoding: chunked".to_string()
    } else {
        format!("Content-Length: {length}")
    };
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\n{framing}\r\nConnection: close\r\n\r\n"
    );
    writer.write_all(head.as_bytes()).await.unwrap();
    let writing = tokio::spawn(async move {
        // A JSON string of `length` bytes, in 64 KiB pieces.
        let piece = vec![b' '; 64 * 1024];
        let mut left = length;
        while left > 0 {
            let n = left.min(piece.len());
            let written = if chunked {
                let mut chunk = format!("{n:x}\r\n").into_bytes();
                chunk.extend_from_slice(&piece[..n]);
                chunk.extend_from_slice(b"\r\n");
                writer.write_all(&chunk).await
            } else {
                writer.write_all(&piece[..n]).await
            };
            if written.is_err() {
                return;
            }
            left -= n;
        }
        if chunked {
            let _ = writer.write_all(b"0\r\n\r\n").await;
        }
    });
    let mut raw = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(30),
        reader.read_to_end(&mut raw),
    )
    .await
    .expect("the server answers")
    .unwrap();
    writing.abort();
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let body = serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    (StatusCode::from_u16(status).unwrap(), body)
}

/// A run recorded through the store as workers record it: a unit test completed after a rate
/// limit on another model (with its validation's evidence), then a docs task failed on a
/// prose reply with a finding quoting the reply. Returns the two tasks' ids, in that order.
pub async fn record_a_run(api: &Api) -> (String, String) {
    use pitcrew_core::{AttemptReport, ErrorKind, Finding, Usage};
    use pitcrew_store::Disposition;

    let mut ids = Vec::new();
    for (kind, description) in [("unit_test", "test double"), ("docs", "document double")] {
        let task = serde_json::json!({
            "kind": kind, "target": "src/calc.py", "description": description,
        });
        let (status, submitted) = api.post("/api/v1/tasks", &task).await;
        assert_eq!(status, StatusCode::CREATED, "{submitted}");
        ids.push(submitted["id"].as_str().unwrap().to_string());
    }
    let call = |model: &str, error: Option<&str>, tokens: (u64, u64), cost: f64, ms: u64| {
        serde_json::json!({
            "model": model, "model_id": format!("vendor/{model}"), "error_kind": error,
            "usage": {"tokens_in": tokens.0, "tokens_out": tokens.1, "cost_usd": cost},
            "cost_usd": cost, "time_to_first_token_ms": error.is_none().then_some(150),
            "latency_ms": ms,
        })
    };
    let validation = serde_json::json!({
        "outcome": "accepted", "findings": [], "rules": [], "quality": 0.9,
        "coverage": [{"target": "src/calc.py", "covered_before": 0, "covered_after": 2,
                      "statements": 2, "newly_covered": [1, 2], "still_uncovered": []}],
        "verified": [], "confined": true,
        "evidence": {"tests_collected": 1, "tests_passed": 1, "reruns": ["reverse order"],
                     "mutation": [], "stages": []},
    });
    for id in &ids {
        let (task, lease) = api
            .store
            .claim("api-test/0", 1, std::time::Duration::from_secs(60))
            .await
            .unwrap()
            .remove(0);
        assert_eq!(&task.id.to_string(), id);
        let (disposition, report) = if task.kind == pitcrew_core::TaskKind::UnitTest {
            let calls = [
                call("a", Some("rate_limit"), (0, 0), 0.0, 40),
                call("b", None, (500, 120), 0.004, 800),
            ];
            let report = AttemptReport {
                model: Some("vendor/b".into()),
                usage: Usage {
                    tokens_in: 500,
                    tokens_out: 120,
                    cost_usd: Some(0.004),
                },
                latency_ms: Some(800),
                run_id: Some("r1".into()),
                quality: Some(0.9),
                commit: Some("0123456789abcdef0123456789abcdef01234567".into()),
                patch: Some("+def test_double(): assert double(2) == 4\n".into()),
                details: serde_json::json!({"validation": validation, "iterations": [
                    {"number": 1, "calls": calls, "outcome": "accepted", "rejected_as": null}
                ]}),
                ..AttemptReport::default()
            };
            (Disposition::Complete, report)
        } else {
            let calls = [call("b", Some("prose_only"), (300, 60), 0.002, 600)];
            let report = AttemptReport {
                error_kind: Some(ErrorKind::ProseOnly),
                error: Some("the reply is prose with no code block".into()),
                findings: vec![Finding::error(
                    "no_code",
                    "the reply began: <script>window.pwned = 1</script>",
                )],
                usage: Usage {
                    tokens_in: 300,
                    tokens_out: 60,
                    cost_usd: Some(0.002),
                },
                run_id: Some("r1".into()),
                details: serde_json::json!({"iterations": [
                    {"number": 1, "calls": calls, "outcome": "unusable_reply", "rejected_as": null}
                ]}),
                ..AttemptReport::default()
            };
            (Disposition::Fail, report)
        };
        api.store
            .finish(&lease, disposition, &report)
            .await
            .unwrap();
    }
    (ids[0].clone(), ids[1].clone())
}
