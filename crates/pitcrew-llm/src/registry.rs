//! The model registry: which models exist, at which provider, what they cost, how much
//! context they take, what they are good at, their rate limits and a prior for their quality.
//! A shipped TOML ([`BUILTIN_TOML`]) is the default; users override or add entries in the same
//! shape, and `models sync` folds in a provider's model list (see [`crate::sync`]).

use std::collections::{BTreeMap, HashSet};

use pitcrew_core::UnknownName;
use serde::{Deserialize, Serialize};

/// The registry shipped with pitcrew.
pub const BUILTIN_TOML: &str = include_str!("models.toml");

pitcrew_core::named_enum! {
    /// What a model is good at; selection prefers models whose strength matches the task.
    pub enum Specialization ("specialization") {
        /// Fast replies; fine for simple tasks.
        Speed = "speed",
        /// A generalist.
        Balanced = "balanced",
        /// The best results for hard tasks.
        Quality = "quality",
        /// Thinks before answering (slow, good at fixes and algorithms).
        Reasoning = "reasoning",
    }
}

/// One model of the registry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Unique registry name; health and cooldowns are kept under it. Defaults to `id`.
    #[serde(default)]
    pub name: String,
    /// The provider (a `[providers.NAME]` of pitcrew.toml) serving it.
    pub provider: String,
    /// The model id the provider expects in requests.
    pub id: String,
    /// Context window in tokens.
    pub context: u64,
    /// USD per prompt token.
    #[serde(default)]
    pub price_in: f64,
    /// USD per completion token.
    #[serde(default)]
    pub price_out: f64,
    #[serde(default)]
    pub free: bool,
    #[serde(default)]
    pub specializations: Vec<Specialization>,
    /// Prior for the quality of its results, 0–1.
    #[serde(default = "default_quality")]
    pub quality: f64,
    /// Prior for a call's latency, in milliseconds.
    #[serde(default = "default_latency_ms")]
    pub latency_ms: f64,
    /// Requests per minute pitcrew allows itself; `None`: no client-side limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u32>,
    /// Tokens per minute (prompt plus `max_tokens`, as OpenAI counts them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<u32>,
    /// Requests per day the provider allows (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpd: Option<u32>,
}

fn default_quality() -> f64 {
    0.5
}

fn default_latency_ms() -> f64 {
    15_000.0
}

impl ModelSpec {
    /// USD for a call of `tokens_in` prompt and `tokens_out` completion tokens.
    pub fn price(&self, tokens_in: u64, tokens_out: u64) -> f64 {
        tokens_in as f64 * self.price_in + tokens_out as f64 * self.price_out
    }
}

/// The TOML shape of a registry file (and of user overrides).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistryFile {
    #[serde(default)]
    fallback: Vec<String>,
    #[serde(default)]
    presets: BTreeMap<String, String>,
    #[serde(default)]
    models: Vec<ModelSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    quotas: Vec<QuotaSpec>,
}

/// Limits a provider's account puts on several of its models together (OpenRouter's free
/// tier: 20 requests a minute and 50 a day across every free model), so that rotating between
/// them does not escape it. Every model of `provider` (only its free ones with `free_only`)
/// shares them, on top of its own limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaSpec {
    /// Unique name, e.g. `openrouter-free`; an override with the same name changes its fields.
    pub name: String,
    pub provider: String,
    #[serde(default)]
    pub free_only: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<u32>,
    /// Requests per day; the day resets at 00:00 UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpd: Option<u32>,
}

impl QuotaSpec {
    /// Whether `model` counts against this quota.
    pub fn covers(&self, model: &ModelSpec) -> bool {
        model.provider == self.provider && (!self.free_only || model.free)
    }
}

/// A registry that cannot be used, with where it came from.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{origin}: {message}")]
    Parse { origin: String, message: String },
    #[error("{origin}: {message}")]
    Invalid { origin: String, message: String },
}

/// Models, presets and the fallback chain.
#[derive(Debug, Clone, PartialEq)]
pub struct Registry {
    file: RegistryFile,
}

impl Registry {
    /// The shipped registry.
    pub fn builtin() -> Registry {
        Registry::from_toml(BUILTIN_TOML, "built-in registry")
            .expect("the shipped registry is valid")
    }

    /// Reads a whole registry; `origin` names it in errors (a path, "built-in registry").
    pub fn from_toml(text: &str, origin: &str) -> Result<Registry, RegistryError> {
        let file: RegistryFile = toml::from_str(text).map_err(|e| RegistryError::Parse {
            origin: origin.to_string(),
            message: e.to_string().trim_end().to_string(),
        })?;
        Registry::checked(file, origin)
    }

    /// This registry with `overrides` (the same TOML shape) applied: `presets` entries are
    /// added or replaced, `fallback` replaces the chain when given, and a `[[models]]` entry
    /// whose `name` (or `id`) matches a known model changes only the fields it sets; other
    /// entries are new models and must be complete.
    pub fn with_overrides(
        &self,
        overrides: &toml::Table,
        origin: &str,
    ) -> Result<Registry, RegistryError> {
        let invalid = |message: String| RegistryError::Invalid {
            origin: origin.to_string(),
            message,
        };
        let mut merged = toml::Table::try_from(&self.file).expect("registry serializes");
        for (key, value) in overrides {
            match (key.as_str(), value) {
                ("fallback", toml::Value::Array(_)) => {
                    merged.insert(key.clone(), value.clone());
                }
                ("presets", toml::Value::Table(presets)) => {
                    let target = merged
                        .entry("presets")
                        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                    if let toml::Value::Table(target) = target {
                        target.extend(presets.clone());
                    }
                }
                (list @ ("models" | "quotas"), toml::Value::Array(entries)) => {
                    let target = merged
                        .entry(list)
                        .or_insert_with(|| toml::Value::Array(Vec::new()));
                    let toml::Value::Array(target) = target else {
                        unreachable!("the registry's {list} serialize as an array")
                    };
                    for entry in entries {
                        let toml::Value::Table(fields) = entry else {
                            return Err(invalid(format!("each `{list}` entry must be a table")));
                        };
                        merge_entry(target, fields);
                    }
                }
                (key, _) => {
                    return Err(invalid(format!(
                        "unknown or malformed key `{key}`; valid keys: fallback (array), presets (table), models (array of tables), quotas (array of tables)"
                    )));
                }
            }
        }
        let file: RegistryFile =
            merged
                .try_into()
                .map_err(|e: toml::de::Error| RegistryError::Parse {
                    origin: origin.to_string(),
                    message: e.message().to_string(),
                })?;
        Registry::checked(file, origin)
    }

    /// Every model, in file order.
    pub fn models(&self) -> &[ModelSpec] {
        &self.file.models
    }

    /// Every provider-level quota.
    pub fn quotas(&self) -> &[QuotaSpec] {
        &self.file.quotas
    }

    /// The model registered under `name`.
    pub fn get(&self, name: &str) -> Option<&ModelSpec> {
        self.file.models.iter().find(|m| m.name == name)
    }

    /// The routing pool, best first.
    pub fn fallback(&self) -> &[String] {
        &self.file.fallback
    }

    /// Preset names and the model names they stand for.
    pub fn presets(&self) -> &BTreeMap<String, String> {
        &self.file.presets
    }

    /// The model a preset (or a model name) stands for; the error lists the known presets.
    pub fn resolve(&self, name: &str) -> Result<&ModelSpec, UnknownName> {
        self.file
            .presets
            .get(name)
            .and_then(|model| self.get(model))
            .or_else(|| self.get(name))
            .ok_or_else(|| UnknownName {
                what: "model preset",
                given: name.to_string(),
                valid: self.file.presets.keys().cloned().collect(),
            })
    }

    /// The registry as TOML in the shipped shape (for `models sync` to write).
    pub fn to_toml(&self) -> String {
        toml::to_string(&self.file).expect("registry serializes")
    }

    /// Adds models a provider listed and refreshes the prices and context windows of those
    /// already known (their priors, specializations and limits are kept: a model list says
    /// nothing about them). New models join the registry, not the fallback chain. Returns the
    /// names added and updated.
    pub fn merge_synced(&self, synced: Vec<ModelSpec>) -> (Registry, SyncReport) {
        let mut file = self.file.clone();
        let mut report = SyncReport::default();
        for model in synced {
            match file.models.iter_mut().find(|m| m.name == model.name) {
                Some(known) => {
                    let before = (known.context, known.price_in, known.price_out, known.free);
                    known.context = model.context;
                    known.price_in = model.price_in;
                    known.price_out = model.price_out;
                    known.free = model.free;
                    if before != (known.context, known.price_in, known.price_out, known.free) {
                        report.updated.push(model.name);
                    }
                }
                None => {
                    report.added.push(model.name.clone());
                    file.models.push(model);
                }
            }
        }
        (Registry { file }, report)
    }

    fn checked(mut file: RegistryFile, origin: &str) -> Result<Registry, RegistryError> {
        let invalid = |message: String| RegistryError::Invalid {
            origin: origin.to_string(),
            message,
        };
        let mut quota_names = HashSet::new();
        for quota in &file.quotas {
            if !quota_names.insert(quota.name.clone()) {
                return Err(invalid(format!("quota `{}` is listed twice", quota.name)));
            }
            if [quota.rpm, quota.tpm, quota.rpd].contains(&Some(0)) {
                return Err(invalid(format!(
                    "quota `{}`: rpm, tpm and rpd must be at least 1 when given",
                    quota.name
                )));
            }
        }
        let mut names = HashSet::new();
        for model in &mut file.models {
            if model.name.is_empty() {
                model.name = model.id.clone();
            }
            let name = &model.name;
            if model.id.trim().is_empty() || model.provider.trim().is_empty() {
                return Err(invalid(format!(
                    "model `{name}`: `id` and `provider` must not be empty"
                )));
            }
            if !names.insert(name.clone()) {
                return Err(invalid(format!("model `{name}` is listed twice")));
            }
            if model.context == 0 {
                return Err(invalid(format!(
                    "model `{name}`: `context` must be at least 1"
                )));
            }
            if [model.price_in, model.price_out]
                .iter()
                .any(|p| p.is_nan() || *p < 0.0)
            {
                return Err(invalid(format!("model `{name}`: prices must be 0 or more")));
            }
            if !(0.0..=1.0).contains(&model.quality) {
                return Err(invalid(format!(
                    "model `{name}`: `quality` must be between 0 and 1"
                )));
            }
            if model.latency_ms.is_nan() || model.latency_ms <= 0.0 {
                return Err(invalid(format!(
                    "model `{name}`: `latency_ms` must be more than 0"
                )));
            }
            if model.rpm == Some(0) || model.tpm == Some(0) {
                return Err(invalid(format!(
                    "model `{name}`: `rpm` and `tpm` must be at least 1 (omit them for no limit)"
                )));
            }
        }
        let known = |what: &str, model: &str| {
            if names.contains(model) {
                Ok(())
            } else {
                let mut valid: Vec<&String> = names.iter().collect();
                valid.sort();
                Err(invalid(format!(
                    "{what} names unknown model `{model}`; known models: {}",
                    valid
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )))
            }
        };
        for (preset, model) in &file.presets {
            known(&format!("preset `{preset}`"), model)?;
        }
        for model in &file.fallback {
            known("the fallback chain", model)?;
        }
        Ok(Registry { file })
    }
}

/// What [`Registry::merge_synced`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SyncReport {
    pub added: Vec<String>,
    pub updated: Vec<String>,
}

/// Merges one override entry into the registry's models or quotas, matching by name (a model
/// also by id): a known entry takes the fields given, an unknown one is added.
fn merge_entry(entries: &mut Vec<toml::Value>, fields: &toml::Table) {
    let key = fields
        .get("name")
        .or_else(|| fields.get("id"))
        .and_then(toml::Value::as_str);
    let existing = entries.iter_mut().find_map(|m| match m {
        toml::Value::Table(t)
            if key.is_some() && t.get("name").and_then(toml::Value::as_str) == key =>
        {
            Some(t)
        }
        _ => None,
    });
    match existing {
        Some(target) => target.extend(fields.clone()),
        None => entries.push(toml::Value::Table(fields.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_registry_has_the_presets_users_have_and_a_long_free_chain() {
        let registry = Registry::builtin();
        for (preset, id) in [
            ("deepseek-v3", "deepseek/deepseek-chat-v3.1:free"),
            (
                "mistral-small",
                "mistralai/mistral-small-3.2-24b-instruct:free",
            ),
            ("gemini-flash", "google/gemini-2.0-flash-exp:free"),
            ("llama-scout", "meta-llama/llama-4-scout:free"),
            ("deepseek-r1", "deepseek/deepseek-r1-0528:free"),
        ] {
            let model = registry.resolve(preset).unwrap();
            assert_eq!(
                (model.id.as_str(), model.provider.as_str()),
                (id, "openrouter")
            );
        }
        let free_openrouter = registry
            .fallback()
            .iter()
            .filter_map(|name| registry.get(name))
            .filter(|m| m.free && m.provider == "openrouter" && m.price_in == 0.0)
            .count();
        assert!(free_openrouter >= 10, "{free_openrouter}");
    }

    #[test]
    fn unknown_presets_list_the_known_ones() {
        let err = Registry::builtin()
            .resolve("gpt-9")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("unknown model preset `gpt-9`; valid values: deepseek-r1, deepseek-v3"),
            "{err}"
        );
    }

    #[test]
    fn overrides_change_fields_add_models_and_presets() {
        let overrides: toml::Table = toml::from_str(
            r#"
            fallback = ["mine", "qwen/qwen3-coder:free"]
            [presets]
            local = "mine"
            [[models]]
            name = "qwen/qwen3-coder:free"
            quality = 0.9
            rpm = 5
            [[models]]
            name = "mine"
            provider = "vllm"
            id = "Qwen/Qwen2.5-Coder-32B-Instruct"
            context = 32768
            free = true
            "#,
        )
        .unwrap();
        let registry = Registry::builtin()
            .with_overrides(&overrides, "pitcrew.toml")
            .unwrap();
        let qwen = registry.get("qwen/qwen3-coder:free").unwrap();
        assert_eq!(
            (qwen.quality, qwen.rpm, qwen.context),
            (0.9, Some(5), 262144)
        );
        assert_eq!(
            registry.resolve("local").unwrap().id,
            "Qwen/Qwen2.5-Coder-32B-Instruct"
        );
        assert_eq!(registry.fallback(), ["mine", "qwen/qwen3-coder:free"]);
        assert!(registry.resolve("deepseek-v3").is_ok());

        let bad: toml::Table = toml::from_str("[presets]\nx = \"nowhere\"\n").unwrap();
        let err = Registry::builtin()
            .with_overrides(&bad, "pitcrew.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("pitcrew.toml: preset `x` names unknown model `nowhere`"),
            "{err}"
        );
        let bad: toml::Table = toml::from_str("[[models]]\nname = \"half\"\nid = \"x\"\n").unwrap();
        let err = Registry::builtin()
            .with_overrides(&bad, "pitcrew.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing field `provider`"), "{err}");
    }

    #[test]
    fn the_registry_round_trips_through_toml() {
        let registry = Registry::builtin();
        let again = Registry::from_toml(&registry.to_toml(), "round trip").unwrap();
        assert_eq!(again, registry);
    }
}
