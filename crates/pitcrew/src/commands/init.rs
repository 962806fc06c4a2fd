use std::process::ExitCode;

use pitcrew_config::{FILE_NAME, default_config_toml};

use crate::cli::Cli;
use crate::context::discover;
use crate::output::{self, usage};

/// Writes the commented default configuration at the repository root.
pub async fn init(cli: &Cli, force: bool) -> anyhow::Result<ExitCode> {
    let (repo, _) = discover(cli).await?;
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
