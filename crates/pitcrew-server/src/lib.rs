//! pitcrew's HTTP API, served by `pitcrew serve`: the queue of one repository over REST under
//! `/api/v1` — submit (one task, or a batch stored whole or not at all), list, read, cancel,
//! retry, a result's patch, the queue's counts, the models with their health and ranking, the
//! figures of `pitcrew metrics` — live events as Server-Sent Events, the OpenAPI document
//! generated from the routes, and `/healthz` and `/readyz` for supervisors.
//!
//! Every operation is the CLI's own (the checks of [`pitcrew_engine::submission`], the reads of
//! [`pitcrew_engine::results`] and [`pitcrew_engine::models`]), so the two never disagree.
//! Every `/api/v1` route needs the configured bearer token (`[server] token`); without one the
//! server listens only on loopback ([`bind`]). Errors are JSON with a stable code
//! ([`ApiError`]); every JSON answer and event is redacted like the CLI's output.

mod auth;
mod body;
mod error;
mod events;
mod metrics;
mod openapi;
mod status;
mod tasks;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::http::StatusCode;
use axum::middleware;
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
        });
        let (router, document) = routes(&state).split_for_parts();
        let document = serde_json::to_value(&document).expect("the document serializes");
        state
            .openapi
            .set(document)
            .expect("the document is set once, here");
        let router = router
            .fallback(no_route)
            .method_not_allowed_fallback(method_not_allowed)
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
        axum::serve(listener, self.router)
            .with_graceful_shutdown(async move {
                shutdown.await;
                events.close();
            })
            .await
    }
}

/// Every route, each registered with its documentation (so the document cannot miss one):
/// `/api/v1` behind the token, the health checks without it.
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
        .routes(routes!(events::events))
        .routes(routes!(openapi::document))
        .layer(middleware::from_fn_with_state(
            Arc::clone(state),
            auth::require_token,
        ));
    let open = OpenApiRouter::new()
        .routes(routes!(status::healthz))
        .routes(routes!(status::readyz));
    api.merge(open)
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
