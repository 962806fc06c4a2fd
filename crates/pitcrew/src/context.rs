//! What every command needs: the repository, the configuration and the store.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use pitcrew_config::{Environment, LoadedConfig};
use pitcrew_runtime::{GitError, Repo};
use pitcrew_store::Store;

use crate::cli::Cli;
use crate::output::usage;

#[derive(Debug)]
pub struct Context {
    pub repo: Repo,
    pub config: LoadedConfig,
    /// The directory the command was started in (targets may be given relative to it).
    pub cwd: PathBuf,
    store_url: String,
}

impl Context {
    /// Finds the repository and loads the configuration (not yet the store).
    pub async fn load(cli: &Cli) -> anyhow::Result<Self> {
        if let Some(url) = &cli.store
            && !["sqlite:", "postgres://", "postgresql://"]
                .iter()
                .any(|scheme| url.starts_with(scheme))
        {
            return Err(usage(format!(
                "--store: unsupported store URL `{}`; use sqlite://PATH or \
                 postgres://USER@HOST[:PORT]/DATABASE",
                pitcrew_store::redact_url(url)
            )));
        }
        let (repo, cwd) = discover(cli).await?;
        let env = Environment::from_process(Some(&repo.root().join(".env")))?;
        let config = LoadedConfig::load(repo.root(), cli.config.as_deref(), env)?;
        let store_url = cli
            .store
            .clone()
            .unwrap_or_else(|| config.config.store.url.clone());
        // The store's password is a secret from here on, in every form it is written; so is
        // one in a provider's URL (`https://user:PASSWORD@…`, `?api_key=…`).
        pitcrew_store::register_url_secrets(&store_url);
        for provider in config.config.providers.values() {
            pitcrew_store::register_url_secrets(&provider.base_url);
        }
        Ok(Context {
            store_url: absolute_store_url(&store_url, repo.root()),
            repo,
            config,
            cwd,
        })
    }

    /// The repository's remote URL (without credentials) for tasks to record; `None` when
    /// it has no remote, or git cannot say (a warning then).
    pub async fn repo_url(&self) -> Option<String> {
        match self.repo.remote_url().await {
            Ok(url) => url,
            Err(e) => {
                crate::output::message(&format!(
                    "warning: cannot read the repository's remote: {e}"
                ));
                None
            }
        }
    }

    pub fn store_url(&self) -> &str {
        &self.store_url
    }

    /// Whether the store wakes idle workers itself (Postgres LISTEN/NOTIFY), so polling can
    /// be rare.
    pub fn store_notifies(&self) -> bool {
        self.store_url.starts_with("postgres")
    }

    /// The store, enqueuing a delivery to every `[[webhooks]]` endpoint of the configuration
    /// whenever a task it is told of ends (whichever command ends it).
    pub async fn store(&self) -> anyhow::Result<Arc<dyn Store>> {
        if self.store_url.starts_with("sqlite:") {
            self.repo.state_dir()?;
        }
        let store = pitcrew_store::open(&self.store_url)
            .await
            .with_context(|| {
                format!(
                    "cannot open the store at {}",
                    pitcrew_store::redact_url(&self.store_url)
                )
            })?;
        let webhooks = &self.config.config.webhooks;
        store.subscribe_webhooks(webhooks.iter().map(|hook| hook.subscription()).collect());
        Ok(store)
    }
}

/// The repository `--repo` names, or the one containing the current directory; and that
/// directory.
pub async fn discover(cli: &Cli) -> anyhow::Result<(Repo, PathBuf)> {
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let start = cli
        .repo
        .as_ref()
        .map_or_else(|| cwd.clone(), |r| cwd.join(r));
    match Repo::discover(&start).await {
        Ok(repo) => Ok((repo, cwd)),
        Err(GitError::NotARepository(dir)) => Err(usage(format!(
            "{} is not inside a git repository; pitcrew works on git repositories \
             (run `git init` there, or pass --repo DIR)",
            dir.display()
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Makes a relative SQLite path relative to the repository root rather than the cwd.
fn absolute_store_url(url: &str, root: &Path) -> String {
    for prefix in ["sqlite://", "sqlite:"] {
        if let Some(path) = url.strip_prefix(prefix) {
            let path = Path::new(path);
            if path.is_relative() {
                return format!("sqlite://{}", root.join(path).display());
            }
            return format!("sqlite://{}", path.display());
        }
    }
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_sqlite_paths_are_under_the_repository() {
        let root = Path::new("/repo");
        assert_eq!(
            absolute_store_url("sqlite://.pitcrew/pitcrew.db", root),
            "sqlite:///repo/.pitcrew/pitcrew.db"
        );
        assert_eq!(
            absolute_store_url("sqlite:///abs/q.db", root),
            "sqlite:///abs/q.db"
        );
        assert_eq!(
            absolute_store_url("sqlite:q.db", root),
            "sqlite:///repo/q.db"
        );
        assert_eq!(
            absolute_store_url("postgres://h/db", root),
            "postgres://h/db"
        );
    }
}
