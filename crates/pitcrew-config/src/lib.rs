//! `pitcrew.toml`: built-in defaults, then the project's file, then `PITCREW_*` variables.
//! Loading also builds the model registry (the shipped one with the project's changes) and
//! checks the validation settings, so every mistake surfaces at load with where it came
//! from (file and line, or variable), the field, and the valid values.

pub mod batch;
mod environment;
mod locate;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use pitcrew_agents::RuntimeSpec;
use pitcrew_core::{Secret, TaskKind, WebhookEventType, WebhookSubscription};
use pitcrew_llm::{Endpoint, ModelSpec, Registry, RegistryError, RouterSettings};
use pitcrew_validate::ValidationSettings;
use serde::{Deserialize, Serialize};

pub use environment::Environment;
pub use locate::{did_you_mean, suggest, with_suggestion};

/// The configuration file's name at the repository root.
pub const FILE_NAME: &str = "pitcrew.toml";
/// Where `pitcrew models sync` keeps what a provider listed, relative to the repository root.
pub const SYNCED_MODELS: &str = ".pitcrew/synced-models.toml";

/// The file `pitcrew models sync` writes: the models a provider listed.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct SyncedModels {
    pub models: Vec<ModelSpec>,
}
const OWN_DEFAULTS_TOML: &str = include_str!("default_config.toml");

/// The commented configuration `pitcrew init` writes; its values are the built-in defaults.
pub fn default_config_toml() -> String {
    format!(
        "{OWN_DEFAULTS_TOML}\n{}",
        pitcrew_validate::DEFAULT_SETTINGS_TOML
    )
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub workers: WorkersConfig,
    #[serde(default)]
    pub models: ModelsConfig,
    #[serde(default)]
    pub budget: BudgetConfig,
    #[serde(default)]
    pub context: ContextConfig,
    /// Merged over the built-in providers by name.
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderConfig>,
    /// Shortcuts for models of the project's own: each becomes a registry model and preset.
    #[serde(default)]
    pub presets: BTreeMap<String, PresetConfig>,
    /// Changes to the shipped model registry, in its own shape.
    #[serde(default)]
    pub registry: toml::Table,
    #[serde(default)]
    pub validation: ValidationSettings,
    /// Where this machine keeps the repositories tasks name: a task's remote URL (or the
    /// submitter's path) → a local clone; relative paths are from the configuration file.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub repos: BTreeMap<String, PathBuf>,
    #[serde(default)]
    pub server: ServerConfig,
    /// `[[webhooks]]`: endpoints told when a task or a run ends.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webhooks: Vec<WebhookConfig>,
    /// `[runtime]`: which runtime works a task.
    #[serde(default)]
    pub runtime: RuntimeChoice,
    /// `[runtimes.NAME]`: external agents tasks can be given to.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub runtimes: BTreeMap<String, RuntimeSpec>,
}

/// The name of the runtime built into pitcrew (one generation per round, replies with files).
pub const BUILTIN_RUNTIME: &str = "builtin";

/// `[runtime]`: the runtime of a task is the one it was submitted with (`submit --runtime`),
/// else its kind's (`kinds`), else `default`. Each is `builtin` or a name under `[runtimes]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeChoice {
    pub default: String,
    /// Task kind (`unit_test`, `fix`, …) → runtime name.
    pub kinds: BTreeMap<String, String>,
}

impl Default for RuntimeChoice {
    fn default() -> Self {
        RuntimeChoice {
            default: BUILTIN_RUNTIME.to_string(),
            kinds: BTreeMap::new(),
        }
    }
}

/// One `[[webhooks]]` entry: where pitcrew POSTs a signed event when a task or a run ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// The http(s) URL events are POSTed to.
    pub url: String,
    /// The environment variable (or `.env` entry) holding the secret that signs the events;
    /// the secret itself never goes in the file.
    pub secret_env: String,
    /// The event types sent (`task.completed`, …); every type when not given.
    #[serde(default = "all_webhook_events")]
    pub events: Vec<String>,
    /// How long one attempt may take, connecting to reading the answer.
    #[serde(default = "default_webhook_timeout_secs")]
    pub timeout_secs: u64,
    /// Attempts before a delivery is given up (retried with exponential backoff between).
    #[serde(default = "default_webhook_max_attempts")]
    pub max_attempts: u32,
}

fn all_webhook_events() -> Vec<String> {
    WebhookEventType::ALL
        .iter()
        .map(|event| event.as_str().to_string())
        .collect()
}

fn default_webhook_timeout_secs() -> u64 {
    10
}

fn default_webhook_max_attempts() -> u32 {
    12
}

/// The longest a webhook attempt may be given.
pub const MAX_WEBHOOK_TIMEOUT_SECS: u64 = 300;
/// The most attempts a webhook delivery may be given.
pub const MAX_WEBHOOK_ATTEMPTS: u32 = 100;
/// The fewest characters a webhook secret may have, as a server token.
pub const MIN_WEBHOOK_SECRET_CHARS: usize = MIN_TOKEN_CHARS;

impl WebhookConfig {
    /// The event types sent (checked when the configuration was loaded).
    pub fn event_types(&self) -> Vec<WebhookEventType> {
        self.events
            .iter()
            .filter_map(|name| name.parse().ok())
            .collect()
    }

    /// What the store needs to enqueue this endpoint's deliveries.
    pub fn subscription(&self) -> WebhookSubscription {
        WebhookSubscription {
            url: self.url.clone(),
            events: self.event_types(),
        }
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }

    /// What is wrong with this entry, as `(field under webhooks[i], message)`.
    fn problem(&self) -> Option<(&'static str, String)> {
        if let Err(message) = check_webhook_url(&self.url) {
            return Some(("url", message));
        }
        let name = self.secret_env.trim();
        let valid_name = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_name {
            return Some((
                "secret_env",
                format!(
                    "`{}` is not an environment variable's name; name the variable that holds \
                     the signing secret, e.g. `WEBHOOK_SECRET` (the secret never goes in this \
                     file)",
                    self.secret_env
                ),
            ));
        }
        if name
            .to_ascii_uppercase()
            .starts_with(environment::ENV_PREFIX)
        {
            return Some((
                "secret_env",
                format!(
                    "`{name}`: PITCREW_* variables are settings; keep the secret in another, \
                     e.g. `WEBHOOK_SECRET`"
                ),
            ));
        }
        if self.events.is_empty() {
            return Some((
                "events",
                "names no event; leave it out to send every event".into(),
            ));
        }
        let valid = all_webhook_events();
        for event in &self.events {
            if event.parse::<WebhookEventType>().is_err() {
                return Some((
                    "events",
                    with_suggestion(
                        &format!(
                            "unknown event `{event}`; valid values: {}",
                            valid.join(", ")
                        ),
                        event,
                        &valid,
                    ),
                ));
            }
        }
        if !(1..=MAX_WEBHOOK_TIMEOUT_SECS).contains(&self.timeout_secs) {
            return Some((
                "timeout_secs",
                format!("must be between 1 and {MAX_WEBHOOK_TIMEOUT_SECS}"),
            ));
        }
        if !(1..=MAX_WEBHOOK_ATTEMPTS).contains(&self.max_attempts) {
            return Some((
                "max_attempts",
                format!("must be between 1 and {MAX_WEBHOOK_ATTEMPTS}"),
            ));
        }
        None
    }
}

/// Whether `url` is somewhere events can be POSTed: http or https, a host, and no password
/// (the URL is stored with every delivery and shown by `pitcrew webhooks`).
fn check_webhook_url(url: &str) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("`{url}` is not a URL ({e})"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!(
            "`{url}`: only http and https URLs can receive webhooks"
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{url}` names no host"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(format!(
            "`{}`: credentials do not belong in the URL (it is stored and shown); receivers \
             authenticate pitcrew by the signature",
            pitcrew_core::redact(url)
        ));
    }
    Ok(())
}

/// `pitcrew serve`: the HTTP API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Where the API listens when `--bind` is not given.
    pub bind: SocketAddr,
    /// The bearer token every `/api/v1` request must carry; empty for none, which only a
    /// loopback address may go without.
    pub token: ServerToken,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 8420)),
            token: ServerToken::default(),
        }
    }
}

/// The API's bearer token as configured: read like any setting (so `PITCREW_SERVER_TOKEN`
/// sets it), but never shown, and registered as a secret when the configuration is loaded.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ServerToken(String);

/// The fewest characters a token may have: shorter ones are guessable, and too short for
/// redaction to find everywhere.
pub const MIN_TOKEN_CHARS: usize = 16;

impl ServerToken {
    /// The token, or `None` when none is configured.
    pub fn secret(&self) -> Option<Secret> {
        let token = self.0.trim();
        (!token.is_empty()).then(|| Secret::new(token))
    }
}

impl std::fmt::Debug for ServerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.trim().is_empty() {
            "ServerToken(<none>)"
        } else {
            "ServerToken(<redacted>)"
        })
    }
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
    pub shutdown_grace_secs: u64,
    pub wait_deadline_secs: u64,
}

impl Default for WorkersConfig {
    fn default() -> Self {
        WorkersConfig {
            count: 2,
            lease_ttl_secs: 60,
            task_timeout_secs: 900,
            max_attempts: 3,
            retry_backoff_secs: 10.0,
            shutdown_grace_secs: 120,
            wait_deadline_secs: 3600,
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
    pub stream: bool,
    pub idle_timeout_secs: u64,
    pub free_only: bool,
    pub max_wait_secs: u64,
    pub failure_threshold: u32,
    pub circuit_cooldown_secs: u64,
    pub max_iterations: u32,
}

impl Default for ModelsConfig {
    fn default() -> Self {
        ModelsConfig {
            default: "deepseek-v3".into(),
            temperature: 0.2,
            max_tokens: 8192,
            request_timeout_secs: 300,
            stream: true,
            idle_timeout_secs: 60,
            free_only: false,
            max_wait_secs: 120,
            failure_threshold: 15,
            circuit_cooldown_secs: 5,
            max_iterations: 3,
        }
    }
}

/// Spending limits in USD; 0 means none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BudgetConfig {
    pub per_task_usd: f64,
    pub per_run_usd: f64,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        BudgetConfig {
            per_task_usd: 0.0,
            per_run_usd: 0.0,
        }
    }
}

impl BudgetConfig {
    fn limit(usd: f64) -> Option<f64> {
        (usd > 0.0).then_some(usd)
    }

    pub fn per_task(&self) -> Option<f64> {
        Self::limit(self.per_task_usd)
    }

    pub fn per_run(&self) -> Option<f64> {
        Self::limit(self.per_run_usd)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContextConfig {
    pub token_budget: u64,
    pub conventions: Vec<String>,
}

impl Default for ContextConfig {
    fn default() -> Self {
        ContextConfig {
            token_budget: 12_000,
            conventions: vec![
                "AGENTS.md".into(),
                "CONVENTIONS.md".into(),
                "CONTRIBUTING.md".into(),
            ],
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
    /// The model id the provider expects, e.g. `qwen2.5-coder:7b`.
    pub model: String,
    /// Context window in tokens.
    #[serde(default = "default_preset_context")]
    pub context: u64,
}

fn default_preset_context() -> u64 {
    32_768
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

/// The effective configuration, where it came from, and the registry it implies.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub config: Config,
    /// The file read, if any.
    pub path: Option<PathBuf>,
    pub env: Environment,
    pub registry: Registry,
}

impl Config {
    /// The built-in configuration: the values of [`default_config_toml`].
    pub fn builtin() -> Config {
        toml::from_str(&default_config_toml()).expect("the shipped default configuration parses")
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
        let providers = || {
            self.providers
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        };
        if let Some(scheme) = unsupported_store_scheme(&self.store.url) {
            return Err(invalid(
                "store.url",
                format!(
                    "`{scheme}` is not a store pitcrew knows; use sqlite://PATH or \
                     postgres://USER@HOST[:PORT]/DATABASE"
                ),
            ));
        }
        for (name, preset) in &self.presets {
            if !self.providers.contains_key(&preset.provider) {
                let names: Vec<&String> = self.providers.keys().collect();
                return Err(invalid(
                    &format!("presets.{name}.provider"),
                    with_suggestion(
                        &format!(
                            "unknown provider `{}`; valid values: {}",
                            preset.provider,
                            providers()
                        ),
                        &preset.provider,
                        &names,
                    ),
                ));
            }
            if preset.model.trim().is_empty() {
                return Err(invalid(
                    &format!("presets.{name}.model"),
                    "must be the provider's model id, e.g. `qwen2.5-coder:7b`".into(),
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
        let at_least_one = [
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
            (
                "models.idle_timeout_secs",
                self.models.idle_timeout_secs as f64,
            ),
            ("models.max_tokens", self.models.max_tokens as f64),
            (
                "models.failure_threshold",
                self.models.failure_threshold as f64,
            ),
            ("models.max_iterations", self.models.max_iterations as f64),
            (
                "workers.wait_deadline_secs",
                self.workers.wait_deadline_secs as f64,
            ),
        ];
        for (field, value) in at_least_one {
            if value < 1.0 {
                return Err(invalid(field, "must be at least 1".into()));
            }
        }
        if self.models.failure_threshold as usize > pitcrew_llm::CIRCUIT_WINDOW {
            return Err(invalid(
                "models.failure_threshold",
                format!(
                    "must be at most {} (the circuit judges a model's last {} calls)",
                    pitcrew_llm::CIRCUIT_WINDOW,
                    pitcrew_llm::CIRCUIT_WINDOW
                ),
            ));
        }
        let not_negative = [
            (
                "workers.retry_backoff_secs",
                self.workers.retry_backoff_secs,
            ),
            ("budget.per_task_usd", self.budget.per_task_usd),
            ("budget.per_run_usd", self.budget.per_run_usd),
        ];
        for (field, value) in not_negative {
            if value.is_nan() || value < 0.0 {
                return Err(invalid(field, "must be 0 or more".into()));
            }
        }
        if let Some(token) = self.server.token.secret()
            && token.expose().chars().count() < MIN_TOKEN_CHARS
        {
            return Err(invalid(
                "server.token",
                format!(
                    "must be at least {MIN_TOKEN_CHARS} characters (make one with \
                     `openssl rand -hex 32`)"
                ),
            ));
        }
        for (i, hook) in self.webhooks.iter().enumerate() {
            if let Some((field, message)) = hook.problem() {
                return Err(invalid(&format!("webhooks[{i}].{field}"), message));
            }
            if let Some(first) = self.webhooks[..i].iter().position(|h| h.url == hook.url) {
                return Err(invalid(
                    &format!("webhooks[{i}].url"),
                    format!(
                        "`{}` is configured twice (webhooks[{first}] too); give one entry \
                         every event it should get",
                        hook.url
                    ),
                ));
            }
        }
        self.check_runtimes(&invalid)?;
        if !(0.0..=2.0).contains(&self.models.temperature) {
            return Err(invalid(
                "models.temperature",
                "must be between 0 and 2".into(),
            ));
        }
        self.validation.check().map_err(|e| ConfigError::Invalid {
            origin: origin.to_string(),
            field: "validation".into(),
            message: e.to_string(),
        })
    }

    /// `[runtime]` names runtimes that exist, for kinds that exist; every `[runtimes.NAME]`
    /// is complete.
    fn check_runtimes(
        &self,
        invalid: &dyn Fn(&str, String) -> ConfigError,
    ) -> Result<(), ConfigError> {
        if self.runtimes.contains_key(BUILTIN_RUNTIME) {
            return Err(invalid(
                &format!("runtimes.{BUILTIN_RUNTIME}"),
                format!("`{BUILTIN_RUNTIME}` is pitcrew's own runtime; give yours another name"),
            ));
        }
        for (name, spec) in &self.runtimes {
            spec.check(name)
                .map_err(|e| invalid(&format!("runtimes.{name}"), e.to_string()))?;
        }
        let mut choices = vec![("runtime.default".to_string(), &self.runtime.default)];
        for (kind, name) in &self.runtime.kinds {
            if kind.parse::<TaskKind>().is_err() {
                let kinds: Vec<&str> = TaskKind::ALL.iter().map(|k| k.as_str()).collect();
                return Err(invalid(
                    &format!("runtime.kinds.{kind}"),
                    with_suggestion(
                        &format!(
                            "unknown task kind `{kind}`; valid values: {}",
                            kinds.join(", ")
                        ),
                        kind,
                        &kinds,
                    ),
                ));
            }
            choices.push((format!("runtime.kinds.{kind}"), name));
        }
        for (field, name) in choices {
            if let Err(message) = self.runtime_named(name) {
                return Err(invalid(&field, message));
            }
        }
        Ok(())
    }

    /// The runtime called `name`: `None` for the built-in one; an error listing the valid
    /// names when there is none.
    pub fn runtime_named(&self, name: &str) -> Result<Option<&RuntimeSpec>, String> {
        if name == BUILTIN_RUNTIME {
            return Ok(None);
        }
        self.runtimes.get(name).map(Some).ok_or_else(|| {
            let mut valid = vec![BUILTIN_RUNTIME.to_string()];
            valid.extend(self.runtimes.keys().cloned());
            with_suggestion(
                &format!(
                    "unknown runtime `{name}`; valid values: {} (external agents are configured \
                     under [runtimes.NAME])",
                    valid.join(", ")
                ),
                name,
                &valid,
            )
        })
    }

    /// The name of the runtime that works a task of `kind` with `metadata`: the one it was
    /// submitted with (`metadata.runtime`), else its kind's, else the default.
    pub fn runtime_of(&self, kind: TaskKind, metadata: &serde_json::Value) -> String {
        metadata
            .get("runtime")
            .and_then(|r| r.as_str())
            .map(str::to_string)
            .or_else(|| self.runtime.kinds.get(kind.as_str()).cloned())
            .unwrap_or_else(|| self.runtime.default.clone())
    }

    /// The registry this configuration implies: the shipped one, the `[registry]` changes,
    /// and a model plus preset for each `[presets.NAME]`.
    fn registry(
        &self,
        origin: &str,
        synced: Option<SyncedModels>,
    ) -> Result<Registry, ConfigError> {
        let invalid = |field: &str, message: String| ConfigError::Invalid {
            origin: origin.to_string(),
            field: field.to_string(),
            message,
        };
        let mut changes = self.registry.clone();
        if !self.presets.is_empty() {
            let mut models = match changes.remove("models") {
                Some(toml::Value::Array(models)) => models,
                Some(_) => {
                    return Err(invalid(
                        "registry.models",
                        "must be an array of tables ([[registry.models]])".into(),
                    ));
                }
                None => Vec::new(),
            };
            let mut presets = match changes.remove("presets") {
                Some(toml::Value::Table(presets)) => presets,
                Some(_) => {
                    return Err(invalid(
                        "registry.presets",
                        "must be a table of name = model".into(),
                    ));
                }
                None => toml::Table::new(),
            };
            for (name, preset) in &self.presets {
                let mut model = toml::Table::new();
                model.insert("name".into(), name.clone().into());
                model.insert("provider".into(), preset.provider.clone().into());
                model.insert("id".into(), preset.model.clone().into());
                model.insert(
                    "context".into(),
                    toml::Value::Integer(preset.context as i64),
                );
                models.push(toml::Value::Table(model));
                presets.insert(name.clone(), name.clone().into());
            }
            changes.insert("models".into(), toml::Value::Array(models));
            changes.insert("presets".into(), toml::Value::Table(presets));
        }
        let mut base = Registry::builtin();
        if let Some(synced) = synced {
            base = base.merge_synced(synced.models).0;
        }
        let registry = base.with_overrides(&changes, origin).map_err(|e| {
            let (RegistryError::Parse { message, .. } | RegistryError::Invalid { message, .. }) = e;
            // A reference to a model that does not exist: which entry, and the close names.
            let field = if message.starts_with("the fallback chain") {
                "registry.fallback"
            } else if message.starts_with("preset `") {
                "registry.presets"
            } else {
                "registry"
            };
            let message = match message.split_once("unknown model `") {
                Some((_, rest)) => {
                    let given = rest.split('`').next().unwrap_or_default();
                    let names: Vec<&str> = base
                        .models()
                        .iter()
                        .map(|m| m.name.as_str())
                        .chain(self.presets.keys().map(String::as_str))
                        .collect();
                    with_suggestion(&message, given, &names)
                }
                None => message,
            };
            invalid(field, message)
        })?;
        for model in registry.models() {
            if !self.providers.contains_key(&model.provider) {
                let names: Vec<&String> = self.providers.keys().collect();
                return Err(invalid(
                    "registry.models",
                    with_suggestion(
                        &format!(
                            "model `{}` names unknown provider `{}`; valid values: {}",
                            model.name,
                            model.provider,
                            self.providers
                                .keys()
                                .cloned()
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                        &model.provider,
                        &names,
                    ),
                ));
            }
        }
        registry.resolve(&self.models.default).map_err(|e| {
            invalid(
                "models.default",
                with_suggestion(&e.to_string(), &e.given, &e.valid),
            )
        })?;
        Ok(registry)
    }
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
        let text = match &path {
            Some(p) => Some(
                std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.clone(),
                    source,
                })?,
            ),
            None => None,
        };
        let mut config = match (&path, &text) {
            (Some(p), Some(text)) => {
                toml::from_str::<Config>(text).map_err(|e| ConfigError::Parse {
                    path: p.clone(),
                    message: e.to_string().trim_end().to_string(),
                })?
            }
            _ => Config::builtin(),
        };
        for (name, provider) in Config::builtin().providers {
            config.providers.entry(name).or_insert(provider);
        }
        let (mut config, env_fields) = environment::apply(&config, &env)?;
        // The API's token is a secret from here on, whichever way it was given.
        if let Some(token) = config.server.token.secret() {
            pitcrew_core::register_secret(token.expose());
        }
        for provider in config.providers.values_mut() {
            if let Some(url) = (!provider.base_url_env.is_empty())
                .then(|| env.get(&provider.base_url_env))
                .flatten()
            {
                provider.base_url = url.to_string();
            }
        }
        let origin = path.as_deref().map_or_else(
            || "built-in defaults".to_string(),
            |p| p.display().to_string(),
        );
        // A mistake is blamed on the variable that set the field, or on the file's line.
        let locate = |e: ConfigError| match e {
            ConfigError::Invalid {
                origin: _,
                field,
                message,
            } if env_fields.contains_key(&field) => ConfigError::Invalid {
                origin: format!("environment variable {}", env_fields[&field]),
                field,
                message,
            },
            ConfigError::Invalid {
                origin,
                field,
                message,
            } if text.is_some() && !origin.starts_with("environment variable") => {
                let line = text
                    .as_deref()
                    .and_then(|text| locate::line_of(text, &field, locate::quoted(&message)));
                ConfigError::Invalid {
                    origin: line.map_or(origin.clone(), |line| format!("{origin}:{line}")),
                    field,
                    message,
                }
            }
            other => other,
        };
        config.check(&origin, &env_fields).map_err(locate)?;
        let synced_path = repo_root.join(SYNCED_MODELS);
        let synced = match std::fs::read_to_string(&synced_path) {
            Ok(text) => {
                Some(
                    toml::from_str::<SyncedModels>(&text).map_err(|e| ConfigError::Parse {
                        path: synced_path.clone(),
                        message: format!(
                            "{} (run `pitcrew models sync` again)",
                            e.to_string().trim_end()
                        ),
                    })?,
                )
            }
            Err(_) => None,
        };
        let registry = config.registry(&origin, synced).map_err(locate)?;
        let loaded = LoadedConfig {
            config,
            path,
            env,
            registry,
        };
        // Every configured key is a secret, whatever its variable is called; so is every
        // webhook's signing secret.
        for name in loaded.config.providers.keys() {
            let _ = loaded.api_key(name);
        }
        for hook in &loaded.config.webhooks {
            let _ = loaded.webhook_secret(hook);
        }
        Ok(loaded)
    }

    /// The secret that signs `hook`'s events, read from its `secret_env`: an error naming
    /// the variable when it is not set or too short to be one. A secret found is registered
    /// with the process-wide redactor, which [`LoadedConfig::load`] does for every webhook.
    pub fn webhook_secret(&self, hook: &WebhookConfig) -> Result<Secret, ConfigError> {
        let var = hook.secret_env.trim();
        let Some(secret) = self.env.get(var) else {
            return Err(ConfigError::Env {
                var: var.to_string(),
                message: format!(
                    "not set; the webhook to {} signs its events with it (set it in the \
                     environment or in .env; make one with `openssl rand -hex 32`)",
                    hook.url
                ),
            });
        };
        pitcrew_core::register_secret(secret);
        let secret = secret.trim();
        if secret.chars().count() < MIN_WEBHOOK_SECRET_CHARS {
            return Err(ConfigError::Env {
                var: var.to_string(),
                message: format!(
                    "the webhook secret must be at least {MIN_WEBHOOK_SECRET_CHARS} characters \
                     (make one with `openssl rand -hex 32`)"
                ),
            });
        }
        Ok(Secret::new(secret))
    }

    /// `[repos]`, each clone's path made absolute (relative ones are from the configuration
    /// file's directory).
    pub fn repos(&self) -> BTreeMap<String, PathBuf> {
        let base = self.path.as_deref().and_then(Path::parent);
        (self.config.repos.iter())
            .map(|(key, path)| {
                let path = match base {
                    Some(base) if path.is_relative() => base.join(path),
                    _ => path.clone(),
                };
                (key.clone(), path)
            })
            .collect()
    }

    /// The model `name` (a preset or a model name; `None`: the default preset) names.
    pub fn resolve(&self, name: Option<&str>) -> Result<&ModelSpec, pitcrew_core::UnknownName> {
        self.registry
            .resolve(name.unwrap_or(&self.config.models.default))
    }

    /// The API key of `provider`: `None` when it needs none, an error naming the variable when
    /// it needs one that is not set. A key found is registered with the process-wide redactor
    /// ([`pitcrew_core::register_secret`]), which [`LoadedConfig::load`] does for every
    /// provider.
    pub fn api_key(&self, provider: &str) -> Result<Option<Secret>, ConfigError> {
        let Some(config) = self.config.providers.get(provider) else {
            return Ok(None);
        };
        if config.api_key_env.is_empty() {
            return Ok(None);
        }
        match self.env.get(&config.api_key_env) {
            Some(key) => {
                pitcrew_core::register_secret(key);
                Ok(Some(Secret::new(key.trim())))
            }
            None => Err(ConfigError::Env {
                var: config.api_key_env.clone(),
                message: format!(
                    "not set; provider `{provider}` needs an API key (set it in the environment or in .env)"
                ),
            }),
        }
    }

    /// Every provider as the router calls it; a provider whose key is missing is listed
    /// without one (the router excludes its models, naming the variable).
    pub fn endpoints(&self) -> Vec<(String, Endpoint)> {
        self.config
            .providers
            .iter()
            .map(|(name, provider)| {
                (
                    name.clone(),
                    Endpoint {
                        base_url: provider.base_url.clone(),
                        api_key: self.api_key(name).ok().flatten(),
                        api_key_env: provider.api_key_env.clone(),
                    },
                )
            })
            .collect()
    }

    /// How the router behaves, from `[models]` and `[budget]`.
    pub fn router_settings(&self) -> RouterSettings {
        let models = &self.config.models;
        RouterSettings {
            failure_threshold: models.failure_threshold,
            circuit_cooldown: Duration::from_secs(models.circuit_cooldown_secs),
            max_wait: Duration::from_secs(models.max_wait_secs),
            stream: models.stream,
            run_budget_usd: self.config.budget.per_run(),
            ..RouterSettings::default()
        }
    }
}

/// The scheme of `url` when it is not one of a store pitcrew has (`sqlite:`, `postgres://`,
/// `postgresql://`).
fn unsupported_store_scheme(url: &str) -> Option<&str> {
    let known = ["sqlite:", "postgres://", "postgresql://"];
    if known.iter().any(|k| url.starts_with(k)) {
        return None;
    }
    Some(url.split_once("://").map_or(url, |(scheme, _)| scheme))
}

#[cfg(test)]
mod tests;
