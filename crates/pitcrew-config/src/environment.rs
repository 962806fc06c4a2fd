//! The variables configuration is read from: the process environment plus `.env`, and the
//! `PITCREW_<SECTION>_<KEY>` overrides they carry.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use crate::{Config, ConfigError};

/// Environment variables with this prefix override configuration values.
pub const ENV_PREFIX: &str = "PITCREW_";
/// `PITCREW_*` variables that are not configuration values.
const ENV_NOT_CONFIG: &[&str] = &["PITCREW_CONFIG", "PITCREW_LOG"];
const ENV_NOT_CONFIG_PREFIXES: &[&str] = &["PITCREW_TEST_", "PITCREW_BENCH_"];

fn join<'a>(items: impl Iterator<Item = &'a str>) -> String {
    items.collect::<Vec<_>>().join(", ")
}

/// The environment pitcrew reads configuration from: the process environment plus a `.env`
/// file. Values from `.env` are never put into the process environment, so child processes
/// cannot inherit them. Reading it registers the value of every variable whose name looks
/// secret ([`pitcrew_core::is_secret_name`]) with the process-wide redactor.
#[derive(Clone, Default)]
pub struct Environment {
    vars: BTreeMap<String, String>,
}

impl fmt::Debug for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Values may be secrets: show names only.
        f.debug_struct("Environment")
            .field("names", &self.vars.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Environment {
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        Environment {
            vars: vars.into_iter().collect(),
        }
    }

    /// The process environment, plus `dotenv` when that file exists (the process wins).
    pub fn from_process(dotenv: Option<&Path>) -> Result<Self, ConfigError> {
        let mut vars: BTreeMap<String, String> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        if let Some(path) = dotenv.filter(|p| p.is_file()) {
            let entries = dotenvy::from_path_iter(path).map_err(|e| ConfigError::Parse {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
            for entry in entries {
                let (key, value) = entry.map_err(|e| ConfigError::Parse {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                })?;
                vars.entry(key).or_insert(value);
            }
        }
        // Before anything can print them: the process's secrets and those of `.env`.
        pitcrew_core::register_env(&vars);
        Ok(Environment { vars })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

/// The `PITCREW_*` variable for a section's scalar key: `workers.count` → `PITCREW_WORKERS_COUNT`.
fn env_name(section: &str, key: &str) -> String {
    format!(
        "{ENV_PREFIX}{}_{}",
        section.to_uppercase(),
        key.to_uppercase()
    )
}

/// Parses `raw` as the same TOML type as `current`.
fn env_value(current: &toml::Value, raw: &str) -> Result<toml::Value, String> {
    Ok(match current {
        toml::Value::String(_) => toml::Value::String(raw.to_string()),
        toml::Value::Integer(_) => toml::Value::Integer(
            raw.trim()
                .parse()
                .map_err(|_| format!("expected an integer, got `{raw}`"))?,
        ),
        toml::Value::Float(_) => toml::Value::Float(
            raw.trim()
                .parse()
                .map_err(|_| format!("expected a number, got `{raw}`"))?,
        ),
        toml::Value::Boolean(_) => toml::Value::Boolean(
            raw.trim()
                .parse()
                .map_err(|_| format!("expected true or false, got `{raw}`"))?,
        ),
        other => {
            return Err(format!(
                "cannot be set from the environment ({})",
                other.type_str()
            ));
        }
    })
}

/// Applies `PITCREW_<SECTION>_<KEY>` overrides; returns which fields came from which variable.
pub(crate) fn apply(
    config: &Config,
    env: &Environment,
) -> Result<(Config, BTreeMap<String, String>), ConfigError> {
    let mut table = toml::Table::try_from(config).expect("configuration serializes");
    let mut known: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut settable: Vec<String> = Vec::new();
    for (section, value) in &table {
        if let toml::Value::Table(fields) = value {
            if matches!(
                section.as_str(),
                "providers" | "presets" | "registry" | "runtimes"
            ) {
                continue;
            }
            for (key, value) in fields {
                known.insert(env_name(section, key), (section.clone(), key.clone()));
                // Arrays and tables cannot be set from a variable: not offered as names.
                if !matches!(value, toml::Value::Array(_) | toml::Value::Table(_)) {
                    settable.push(env_name(section, key));
                }
            }
        }
    }
    let mut env_fields = BTreeMap::new();
    for (var, raw) in &env.vars {
        if !var.starts_with(ENV_PREFIX)
            || ENV_NOT_CONFIG.contains(&var.as_str())
            || ENV_NOT_CONFIG_PREFIXES.iter().any(|p| var.starts_with(p))
        {
            continue;
        }
        let Some((section, key)) = known.get(var) else {
            settable.sort();
            let names: Vec<&str> = settable
                .iter()
                .map(String::as_str)
                .chain(ENV_NOT_CONFIG.iter().copied())
                .collect();
            let close = crate::suggest(var, names.iter().copied());
            let hint = match close.as_slice() {
                [] => String::new(),
                [one] => format!("did you mean {one}? "),
                [first, rest @ ..] => {
                    format!("did you mean {first}? (or {}) ", rest.join(", "))
                }
            };
            return Err(ConfigError::Env {
                var: var.clone(),
                message: format!(
                    "not a pitcrew setting; {hint}valid names: {}",
                    join(names.iter().copied())
                ),
            });
        };
        let slot = table
            .get_mut(section)
            .and_then(|s| s.as_table_mut())
            .and_then(|s| s.get_mut(key))
            .expect("known keys exist");
        *slot = env_value(slot, raw).map_err(|message| ConfigError::Env {
            var: var.clone(),
            message,
        })?;
        env_fields.insert(format!("{section}.{key}"), var.clone());
    }
    let config = table
        .try_into()
        .map_err(|e: toml::de::Error| ConfigError::Env {
            var: join(env_fields.values().map(String::as_str)),
            message: e.message().to_string(),
        })?;
    Ok((config, env_fields))
}
