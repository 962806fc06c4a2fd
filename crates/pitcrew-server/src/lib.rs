//! pitcrew's HTTP API, served by `pitcrew serve`: the queue of one repository over REST under
//! `/api/v1` — submit (one task, or a batch stored whole or not at all), list, read, cancel,
//! retry, a result's patch, the queue's counts, the models with their health and ranking, the
//! figures of `pitcrew metrics` — live events as Server-Sent Events, the OpenAPI document
//! generated from the routes, `/healthz` and `/readyz` for supervisors, `/metrics` for a
//! Prometheus scraper (the store's figures and this process's own), and a dashboard at `/`.
//!
//! Every operation is the CLI's own (the checks of [`pitcrew_engine::submission`], the reads of
//! [`pitcrew_engine::results`] and [`pitcrew_engine::models`]), so the two never disagree.
//! Every `/api/v1` route and `/metrics` need the configured bearer token (`[server] token`);
//! without one the server listens only on loopback ([`bind`]). The dashboard's page, script
//! and style hold no data and need none: the script asks for the token and calls the API with
//! it. Errors are JSON with a stable code ([`ApiError`]); every JSON answer and event is
//! redacted like the CLI's output.

mod auth;
mod body;
mod dashboard;
mod error;
mod events;
mod metrics;
mod openapi;
mod process_metrics;
mod status;
mod tasks;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use metrics_exporter_prometheus::PrometheusHandle;
use pitcrew_config::LoadedConfig;
use pitcrew_core::Secret;
use pitcrew_runtime::Repo;
use pitcrew_store::Store;
use tokio::net::TcpListener;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use body::{BATCH_BODY_LIMIT, TASK_BODY_LIMIT};
pub use error::{ApiError, EntryProblem};
pub use events::{ApiEvent, EventHub};

/// What the API serves.
#[derive(Debug)]
pub struct ApiSettings {
    pub store: Arc<dyn Store>,
    /// The configuration: the registry, the checks' defaults, and `[server] token`.
    pub config: LoadedConfig,
    /// The repository tasks are submitted against.
    pub repo: Repo,
    /// Its remote, recorded with each task so that workers elsewhere can find it.
    pub repo_url: Option<String>,
}

/// What every handler reads.
#[derive(Debug)]
pub(crate) struct ServerState {
    store: Arc<dyn Store>,
    config: LoadedConfig,
    repo: Repo,
    repo_url: Option<String>,
    token: Option<Secret>,
    events: EventHub,
    /// The OpenAPI document of the routes as served, known once they are all registered.
    openapi: OnceLock<serde_json::Value>,
    /// This process's own figures, for `/metrics`; `None` when they are recorded elsewhere.
    process_metrics: Option<PrometheusHandle>,
}

pub(crate) type AppState = Arc<ServerState>;

/// Why the server cannot listen.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error(
        "refusing to listen on {addr} without a token: anyone who can reach it could queue \
         work and read results. Set `[server] token` in pitcrew.toml or PITCREW_SERVER_TOKEN \
         (at least 16 characters, e.g. from `openssl rand -hex 32`), or listen on a loopback \
         address such as 127.0.0.1:{port}",
        port = addr.port()
    )]
    NoToken { addr: SocketAddr },
    #[error("cannot listen on {addr}: {source}")]
    Io {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Listens on `addr`; anything but a loopback address needs a token to be configured.
pub async fn bind(addr: SocketAddr, has_token: bool) -> Result<TcpListener, BindError> {
    if !addr.ip().is_loopback() && !has_token {
        return Err(BindError::NoToken { addr });
    }
    TcpListener::bind(addr)
        .await
        .map_err(|source| BindError::Io { addr, source })
}

/// The API: its routes, its document, and the hub its events go through.
#[derive(Debug)]
pub struct Server {
    router: Router,
    state: AppState,
}

impl Server {
    pub fn new(settings: ApiSettings) -> Server {
        let state = Arc::new(ServerState {
            token: settings.config.config.server.token.secret(),
            store: settings.store,
            config: settings.config,
            repo: settings.repo,
            repo_url: settings.repo_url,
            events: EventHub::default(),
            openapi: OnceLock::new(),
            process_metrics: process_metrics::recorder(),
        });
        let (router, document) = routes(&state).split_for_parts();
        let document = serde_json::to_value(&document).expect("the document serializes");
        state
            .openapi
            .set(document)
            .expect("the document is set once, here");
        // The dashboard's files are a page, not the API: they are not in its document.
        let router = router
            .merge(dashboard::page_routes())
            .fallback(no_route)
            .method_not_allowed_fallback(method_not_allowed)
            .layer(middleware::from_fn(process_metrics::record_request))
            .layer(middleware::from_fn(security_headers))
            .with_state(Arc::clone(&state));
        Server { router, state }
    }

    /// Where to send the events of an engine working in this process.
    pub fn events(&self) -> &EventHub {
        &self.state.events
    }

    /// The OpenAPI document of every route [`Server::router`] serves, as JSON.
    pub fn openapi(&self) -> &serde_json::Value {
        self.state.openapi.get().expect("set in Server::new")
    }

    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// Serves on `listener` until `shutdown` resolves; open event streams then end, and
    /// requests under way finish.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let events = self.state.events.clone();
        let upkeep = self.state.process_metrics.clone().map(|handle| {
            tokio::spawn(async move {
                let mut every = tokio::time::interval(process_metrics::UPKEEP_INTERVAL);
                loop {
                    every.tick().await;
                    handle.run_upkeep();
                }
            })
        });
        let served = axum::serve(listener, self.router)
            .with_graceful_shutdown(async move {
                shutdown.await;
                events.close();
            })
            .await;
        if let Some(upkeep) = upkeep {
            upkeep.abort();
        }
        served
    }
}

/// Every route of the API, each registered with its documentation (so the document cannot
/// miss one): `/api/v1` and `/metrics` behind the token, the health checks without it.
fn routes(state: &AppState) -> OpenApiRouter<AppState> {
    let api = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(tasks::list_tasks, tasks::submit_task))
        .routes(routes!(tasks::submit_batch))
        .routes(routes!(tasks::get_task))
        .routes(routes!(tasks::cancel_task))
        .routes(routes!(tasks::retry_task))
        .routes(routes!(tasks::task_diff))
        .routes(routes!(status::queue_stats))
        .routes(routes!(status::models))
        .routes(routes!(status::select_model))
        .routes(routes!(metrics::metrics))
        .routes(routes!(dashboard::dashboard))
        .routes(routes!(events::events))
        .routes(routes!(openapi::document))
        .routes(routes!(metrics::scrape))
        .layer(middleware::from_fn_with_state(
            Arc::clone(state),
            auth::require_token,
        ));
    let open = OpenApiRouter::new()
        .routes(routes!(status::healthz))
        .routes(routes!(status::readyz));
    api.merge(open)
}

/// What every answer carries: the dashboard's page may load scripts, styles, images and data
/// from this server only, and no script inline (so text that slipped into the page as markup
/// could still not run); no answer is sniffed into another type, nor names the page it was
/// asked from in a `Referer`.
async fn security_headers(request: Request, next: Next) -> Response {
    const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
        style-src 'self'; img-src 'self'; connect-src 'self'; object-src 'none'; \
        base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

async fn no_route() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such route; the API is described at /api/v1/openapi.json",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method; see its `Allow` header",
    )
}
