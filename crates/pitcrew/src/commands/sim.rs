//! `pitcrew sim`: serve the simulated provider of `pitcrew-sim` until stopped.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::CommandFactory;
use clap::parser::ValueSource;
use pitcrew_sim::{BindError, SimConfig, Simulator};

use crate::cli::{Cli, SimArgs};
use crate::{output, signals};

pub async fn sim(cli: &Cli, args: &SimArgs) -> anyhow::Result<ExitCode> {
    let config = match sim_config_path(cli) {
        Some(path) => SimConfig::load(&path).map_err(|e| output::usage(e.to_string()))?,
        None => SimConfig::default(),
    };
    let listener = pitcrew_sim::bind(args.bind, args.allow_remote)
        .await
        .map_err(|e| match e {
            BindError::Remote { .. } => output::usage(e.to_string()),
            BindError::Io { .. } => e.into(),
        })?;
    let addr = listener
        .local_addr()
        .context("the listening address is unknown")?;
    let simulator = Simulator::new(config);
    output::line(&format!(
        "pitcrew sim: SIMULATED provider (replies are fake) listening on http://{addr}/v1 \
         (models: {})",
        simulator.model_ids().join(", ")
    ));
    tokio::select! {
        served = simulator.serve(listener) => served.context("the simulator stopped serving")?,
        () = signals::first() => {}
    }
    Ok(ExitCode::SUCCESS)
}

/// `--config` when given on the command line. The flag is global and also read from
/// PITCREW_CONFIG, which names pitcrew's own configuration, not a sim.toml.
fn sim_config_path(cli: &Cli) -> Option<PathBuf> {
    let matches = Cli::command().try_get_matches().ok()?;
    let from_command_line = matches
        .subcommand_matches("sim")
        .and_then(|sim| sim.value_source("config"))
        == Some(ValueSource::CommandLine);
    cli.config.clone().filter(|_| from_command_line)
}
