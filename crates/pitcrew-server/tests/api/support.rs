//! A real server on a loopback port, over a real store (SQLite, and PostgreSQL when
//! `PITCREW_TEST_POSTGRES_URL` is set) and a real git repository, and a client for it.

use std::sync::Arc;

use pitcrew_config::{Environment, LoadedConfig};
use pitcrew_runtime::Repo;
use pitcrew_server::{ApiSettings, Server};
use pitcrew_store::Store;
use pitcrew_testkit::TempRepo;
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

/// A fresh schema on the PostgreSQL test server, dropped with the value.
struct Schema {
    base_url: String,
    name: String,
}

impl Schema {
    async fn create(base_url: &str) -> Schema {
        let name = format!("pitcrew_api_{}", pitcrew_core::TaskId::new().0.simple());
        let pool = sqlx::PgPool::connect(base_url).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}")))
            .execute(&pool)
            .await
            .unwrap();
        Schema {
            base_url: base_url.to_string(),
            name,
        }
    }

    fn store_url(&self) -> String {
        let separator = if self.base_url.contains('?') {
            '&'
        } else {
            '?'
        };
        format!(
            "{}{separator}options[search_path]={}",
            self.base_url, self.name
        )
    }

    async fn drop_schema(&self) {
        if let Ok(pool) = sqlx::PgPool::connect(&self.base_url).await {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP SCHEMA {} CASCADE",
                self.name
            )))
            .execute(&pool)
            .await;
        }
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
    stop: Option<oneshot::Sender<()>>,
    schema: Option<Schema>,
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
                let schema =
                    Schema::create(&std::env::var("PITCREW_TEST_POSTGRES_URL").unwrap()).await;
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
            Some(schema) => {
                schema.drop_schema().await;
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
        if let Some(schema) = self.schema.take() {
            schema.drop_schema().await;
        }
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
