use std::process::ExitCode;

use pitcrew_config::{FILE_NAME, default_config_toml};
use pitcrew_runtime::{GitError, Repo};

use crate::cli::Cli;
use crate::output::{self, usage};

/// Writes the commented default configuration at the repository root.
pub async fn init(cli: &Cli, force: bool) -> anyhow::Result<ExitCode> {
    let cwd = std::env::current_dir()?;
    let start = cli
        .repo
        .as_ref()
        .map_or_else(|| cwd.clone(), |r| cwd.join(r));
    let repo = match Repo::discover(&start).await {
        Ok(repo) => repo,
        Err(GitError::NotARepository(dir)) => {
            return Err(usage(format!(
                "{} is not inside a git repository; run `git init` first",
                dir.display()
            )));
        }
        Err(e) => return Err(e.into()),
    };
    let path = repo.root().join(FILE_NAME);
    if path.exists() && !force {
        return Err(usage(format!(
            "{} already exists; pass --force to overwrite it",
            path.display()
        )));
    }
    std::fs::write(&path, default_config_toml())?;
    repo.state_dir()?;
    output::message(&format!(
        "wrote {}\nnext: set the API key variable of your provider (e.g. OPENROUTER_API_KEY) \
         or point a preset at a local server, then `pitcrew submit` and `pitcrew run`",
        path.display()
    ));
    Ok(ExitCode::SUCCESS)
}
