//! `pitcrew.toml`: built-in defaults, then the project's file, then `PITCREW_*` variables.
//! Every mistake is reported with where it came from (file and line, or variable), the
//! field, and the valid values.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::names::join;

/// The commented configuration `pitcrew init` writes; its values are the built-in defaults.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("default_config.toml");
/// The configuration file's name at the repository root.
pub const FILE_NAME: &str = "pitcrew.toml";
/// Environment variables with this prefix override configuration values.
pub const ENV_PREFIX: &str = "PITCREW_";
/// `PITCREW_*` variables that are not configuration values.
const ENV_NOT_CONFIG: &[&str] = &["PITCREW_CONFIG", "PITCREW_LOG"];
const ENV_NOT_CONFIG_PREFIXES: &[&str] = &["PITCREW_TEST_"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub workers: WorkersConfig,
    #[serde(default)]
    pub models: ModelsConfig,
    /// Merged over the built-in providers by name.
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderConfig>,
    /// Merged over the built-in presets by name.
    #[serde(default)]
    pub presets: BTreeMap<String, PresetConfig>,
    #[serde(default)]
    pub validation: ValidationConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    pub url: String,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: "sqlite://.pitcrew/pitcrew.db".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkersConfig {
    pub count: u32,
    pub lease_ttl_secs: u64,
    pub task_timeout_secs: u64,
    pub max_attempts: u32,
    pub retry_backoff_secs: f64,
}

impl Default for WorkersConfig {
    fn default() -> Self {
        WorkersConfig {
            count: 2,
            lease_ttl_secs: 60,
            task_timeout_secs: 900,
            max_attempts: 3,
            retry_backoff_secs: 10.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelsConfig {
    pub default: String,
    pub temperature: f64,
    pub max_tokens: u32,
    pub request_timeout_secs: u64,
}

impl Default for ModelsConfig {
    fn default() -> Self {
        ModelsConfig {
            default: "deepseek-v3".into(),
            temperature: 0.2,
            max_tokens: 8192,
            request_timeout_secs: 300,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    pub base_url: String,
    /// The variable holding the API key; empty for servers without keys.
    #[serde(default)]
    pub api_key_env: String,
    /// A variable that, when set, overrides `base_url`.
    #[serde(default)]
    pub base_url_env: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresetConfig {
    pub provider: String,
    /// The model id the provider expects, e.g. `deepseek/deepseek-chat-v3.1:free`.
    pub model: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ValidationConfig {
    pub command: String,
    pub timeout_secs: u64,
}

impl Default for ValidationConfig {
    fn default() -> Self {
        ValidationConfig {
            command: String::new(),
            timeout_secs: 300,
        }
    }
}

/// A configuration problem, with where it came from and what would be valid.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("{origin}: field `{field}`: {message}")]
    Invalid {
        origin: String,
        field: String,
        message: String,
    },
}

/// A value that must not be printed, logged or stored (an API key).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that must send it (an HTTP header).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The environment pitcrew reads configuration from: the process environment plus a `.env`
/// file. Values from `.env` are never put into the process environment, so child processes
/// cannot inherit them.
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
        Ok(Environment { vars })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

/// A preset resolved to what a provider call needs (the key is fetched separately).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResolvedModel {
    pub preset: String,
    pub provider: String,
    pub base_url: String,
    /// The provider's model id — what goes into the request, never the preset name.
    pub model: String,
    pub api_key_env: String,
}

/// The effective configuration and where it came from.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub config: Config,
    /// The file read, if any.
    pub path: Option<PathBuf>,
    pub env: Environment,
}

impl Config {
    /// The built-in configuration: the values of [`DEFAULT_CONFIG_TOML`].
    pub fn builtin() -> Config {
        toml::from_str(DEFAULT_CONFIG_TOML).expect("the shipped default configuration parses")
    }

    fn origin(path: Option<&Path>) -> String {
        path.map_or_else(
            || "built-in defaults".to_string(),
            |p| p.display().to_string(),
        )
    }

    /// Checks the references between sections and the ranges of numbers.
    fn check(
        &self,
        origin: &str,
        env_fields: &BTreeMap<String, String>,
    ) -> Result<(), ConfigError> {
        let invalid = |field: &str, message: String| ConfigError::Invalid {
            origin: env_fields.get(field).map_or_else(
                || origin.to_string(),
                |var| format!("environment variable {var}"),
            ),
            field: field.to_string(),
            message,
        };
        for (name, preset) in &self.presets {
            if !self.providers.contains_key(&preset.provider) {
                return Err(invalid(
                    &format!("presets.{name}.provider"),
                    format!(
                        "unknown provider `{}`; valid values: {}",
                        preset.provider,
                        join(self.providers.keys())
                    ),
                ));
            }
            if preset.model.trim().is_empty() {
                return Err(invalid(
                    &format!("presets.{name}.model"),
                    "must be the provider's model id, e.g. `deepseek/deepseek-chat-v3.1:free`"
                        .into(),
                ));
            }
        }
        for (name, provider) in &self.providers {
            if !(provider.base_url.starts_with("http://")
                || provider.base_url.starts_with("https://"))
            {
                return Err(invalid(
                    &format!("providers.{name}.base_url"),
                    format!("`{}` is not an http(s) URL", provider.base_url),
                ));
            }
        }
        if !self.presets.contains_key(&self.models.default) {
            return Err(invalid(
                "models.default",
                format!(
                    "unknown preset `{}`; valid values: {}",
                    self.models.default,
                    join(self.presets.keys())
                ),
            ));
        }
        let positive = [
            ("workers.count", self.workers.count as f64),
            ("workers.lease_ttl_secs", self.workers.lease_ttl_secs as f64),
            (
                "workers.task_timeout_secs",
                self.workers.task_timeout_secs as f64,
            ),
            ("workers.max_attempts", self.workers.max_attempts as f64),
            (
                "models.request_timeout_secs",
                self.models.request_timeout_secs as f64,
            ),
            ("models.max_tokens", self.models.max_tokens as f64),
            (
                "validation.timeout_secs",
                self.validation.timeout_secs as f64,
            ),
        ];
        for (field, value) in positive {
            if value < 1.0 {
                return Err(invalid(field, "must be at least 1".into()));
            }
        }
        if self.workers.retry_backoff_secs.is_nan() || self.workers.retry_backoff_secs < 0.0 {
            return Err(invalid(
                "workers.retry_backoff_secs",
                "must be 0 or more".into(),
            ));
        }
        if !(0.0..=2.0).contains(&self.models.temperature) {
            return Err(invalid(
                "models.temperature",
                "must be between 0 and 2".into(),
            ));
        }
        Ok(())
    }

    /// Checks that `name` is a known preset; the error lists the known ones.
    pub fn check_preset(&self, name: &str) -> Result<(), crate::UnknownName> {
        if self.presets.contains_key(name) {
            return Ok(());
        }
        Err(crate::UnknownName {
            what: "model preset",
            given: name.to_string(),
            valid: self.presets.keys().cloned().collect(),
        })
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

impl LoadedConfig {
    /// Loads the configuration for the repository at `repo_root`: `explicit` when given (it
    /// must exist), else `<repo_root>/pitcrew.toml` when present, else the defaults; then the
    /// `PITCREW_*` variables of `env`.
    pub fn load(
        repo_root: &Path,
        explicit: Option<&Path>,
        env: Environment,
    ) -> Result<Self, ConfigError> {
        let path = match explicit {
            Some(p) => Some(repo_root.join(p)),
            None => Some(repo_root.join(FILE_NAME)).filter(|p| p.is_file()),
        };
        let mut config = match &path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.clone(),
                    source,
                })?;
                toml::from_str::<Config>(&text).map_err(|e| ConfigError::Parse {
                    path: p.clone(),
                    message: e.to_string().trim_end().to_string(),
                })?
            }
            None => Config::builtin(),
        };
        let builtin = Config::builtin();
        for (name, provider) in builtin.providers {
            config.providers.entry(name).or_insert(provider);
        }
        for (name, preset) in builtin.presets {
            config.presets.entry(name).or_insert(preset);
        }

        let (mut config, env_fields) = apply_env(&config, &env)?;
        for provider in config.providers.values_mut() {
            if let Some(url) = (!provider.base_url_env.is_empty())
                .then(|| env.get(&provider.base_url_env))
                .flatten()
            {
                provider.base_url = url.to_string();
            }
        }
        config.check(&Config::origin(path.as_deref()), &env_fields)?;
        Ok(LoadedConfig { config, path, env })
    }

    /// What to call for `preset` (`None`: the default preset).
    pub fn resolve_model(&self, preset: Option<&str>) -> Result<ResolvedModel, ConfigError> {
        let name = preset.unwrap_or(&self.config.models.default);
        let found = self
            .config
            .presets
            .get(name)
            .ok_or_else(|| ConfigError::Invalid {
                origin: Config::origin(self.path.as_deref()),
                field: "presets".into(),
                message: format!(
                    "unknown preset `{name}`; valid values: {}",
                    join(self.config.presets.keys())
                ),
            })?;
        let provider = &self.config.providers[&found.provider];
        Ok(ResolvedModel {
            preset: name.to_string(),
            provider: found.provider.clone(),
            base_url: provider.base_url.clone(),
            model: found.model.clone(),
            api_key_env: provider.api_key_env.clone(),
        })
    }

    /// The API key for `model`'s provider: `None` when the provider needs none, an error
    /// naming the variable when it needs one that is not set.
    pub fn api_key(&self, model: &ResolvedModel) -> Result<Option<Secret>, ConfigError> {
        if model.api_key_env.is_empty() {
            return Ok(None);
        }
        match self.env.get(&model.api_key_env) {
            Some(key) => Ok(Some(Secret::new(key.trim()))),
            None => Err(ConfigError::Env {
                var: model.api_key_env.clone(),
                message: format!(
                    "not set; provider `{}` needs an API key (set it in the environment or in .env)",
                    model.provider
                ),
            }),
        }
    }
}

/// Applies `PITCREW_<SECTION>_<KEY>` overrides; returns which fields came from which variable.
fn apply_env(
    config: &Config,
    env: &Environment,
) -> Result<(Config, BTreeMap<String, String>), ConfigError> {
    let mut table = toml::Table::try_from(config).expect("configuration serializes");
    let mut known: BTreeMap<String, (String, String)> = BTreeMap::new();
    for (section, value) in &table {
        if let toml::Value::Table(fields) = value {
            if matches!(section.as_str(), "providers" | "presets") {
                continue;
            }
            for key in fields.keys() {
                known.insert(env_name(section, key), (section.clone(), key.clone()));
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
            return Err(ConfigError::Env {
                var: var.clone(),
                message: format!(
                    "not a pitcrew setting; valid names: {}, {}",
                    join(known.keys()),
                    join(ENV_NOT_CONFIG)
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
            var: join(env_fields.values()),
            message: e.message().to_string(),
        })?;
    Ok((config, env_fields))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Environment {
        Environment::from_vars(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    fn load(toml: &str, pairs: &[(&str, &str)]) -> Result<LoadedConfig, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), toml).unwrap();
        LoadedConfig::load(dir.path(), None, env(pairs))
    }

    #[test]
    fn the_shipped_file_states_the_built_in_defaults() {
        let builtin = Config::builtin();
        assert_eq!(builtin.store, StoreConfig::default());
        assert_eq!(builtin.workers, WorkersConfig::default());
        assert_eq!(builtin.models, ModelsConfig::default());
        assert_eq!(builtin.validation, ValidationConfig::default());
        assert!(builtin.presets.contains_key(&builtin.models.default));
        let empty = load("", &[]).unwrap();
        assert_eq!(empty.config, builtin);
    }

    #[test]
    fn the_project_file_merges_over_the_defaults() {
        let loaded = load(
            "[workers]\ncount = 7\n[providers.local]\nbase_url = \"http://127.0.0.1:9/v1\"\n\
             [presets.mine]\nprovider = \"local\"\nmodel = \"m/1\"\n[models]\ndefault = \"mine\"\n",
            &[],
        )
        .unwrap();
        let c = &loaded.config;
        assert_eq!(c.workers.count, 7);
        assert_eq!(c.workers.lease_ttl_secs, 60);
        assert!(c.presets.contains_key("deepseek-v3") && c.presets.contains_key("mine"));
        let model = loaded.resolve_model(None).unwrap();
        assert_eq!(
            (model.model.as_str(), model.base_url.as_str()),
            ("m/1", "http://127.0.0.1:9/v1")
        );
        assert_eq!(loaded.api_key(&model).unwrap(), None);
        let named = loaded.resolve_model(Some("deepseek-v3")).unwrap();
        assert_eq!(named.model, "deepseek/deepseek-chat-v3.1:free");
        let err = loaded.resolve_model(Some("gpt-9")).unwrap_err().to_string();
        assert!(
            err.contains("unknown preset `gpt-9`; valid values: deepseek-r1"),
            "{err}"
        );
    }

    #[test]
    fn environment_variables_override_single_values() {
        let loaded = load(
            "",
            &[
                ("PITCREW_WORKERS_COUNT", "5"),
                ("PITCREW_STORE_URL", "sqlite:///tmp/q.db"),
                ("PITCREW_MODELS_TEMPERATURE", "0.7"),
                ("PITCREW_TEST_POSTGRES_URL", "postgres://ignored"),
                ("PITCREW_LOG", "debug"),
                ("OPENAI_BASE_URL", "http://127.0.0.1:8000/v1"),
            ],
        )
        .unwrap();
        assert_eq!(loaded.config.workers.count, 5);
        assert_eq!(loaded.config.store.url, "sqlite:///tmp/q.db");
        assert_eq!(loaded.config.models.temperature, 0.7);
        assert_eq!(
            loaded.config.providers["openai"].base_url,
            "http://127.0.0.1:8000/v1"
        );

        let err = load("", &[("PITCREW_WORKERS_COUNT", "0")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("environment variable PITCREW_WORKERS_COUNT"),
            "{err}"
        );
        assert!(err.contains("workers.count"), "{err}");
        let err = load("", &[("PITCREW_WORKERZ", "1")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("PITCREW_WORKERZ: not a pitcrew setting"),
            "{err}"
        );
    }

    #[test]
    fn keys_come_from_the_environment_and_are_never_printed() {
        let loaded = load("", &[("OPENROUTER_API_KEY", "sk-or-secret")]).unwrap();
        let model = loaded.resolve_model(Some("deepseek-v3")).unwrap();
        let key = loaded.api_key(&model).unwrap().unwrap();
        assert_eq!(key.expose(), "sk-or-secret");
        assert!(!format!("{key:?} {loaded:?}").contains("sk-or-secret"));
        let missing = load("", &[]).unwrap();
        let err = missing.api_key(&model).unwrap_err().to_string();
        assert!(err.contains("OPENROUTER_API_KEY: not set"), "{err}");
    }

    #[test]
    fn dotenv_fills_in_what_the_process_lacks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        std::fs::write(
            &path,
            "PITCREW_UNIT_TEST_ONLY_VAR=\"from file\"\n# comment\n",
        )
        .unwrap();
        let env = Environment::from_process(Some(&path)).unwrap();
        assert_eq!(env.get("PITCREW_UNIT_TEST_ONLY_VAR"), Some("from file"));
        assert!(
            std::env::var("PITCREW_UNIT_TEST_ONLY_VAR").is_err(),
            ".env leaked into the process"
        );
        std::fs::write(&path, "not a valid line\n").unwrap();
        assert!(Environment::from_process(Some(&path)).is_err());
    }

    #[test]
    fn references_between_sections_are_checked() {
        let err = load("[presets.x]\nprovider = \"nowhere\"\nmodel = \"m\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("presets.x.provider"), "{err}");
        assert!(
            err.contains("unknown provider `nowhere`; valid values: ollama, openai, openrouter"),
            "{err}"
        );
        let err = load("[providers.bad]\nbase_url = \"ftp://x\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("providers.bad.base_url"), "{err}");
        let err = load("[store]\nurl = 5\n", &[]).unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
    }
}
