//! `models sync`: reading a provider's model list in OpenRouter's `/api/v1/models` format
//! (`{"data": [{"id", "context_length", "pricing": {"prompt", "completion"}, ...}]}`, prices as
//! USD-per-token strings) into registry entries. Lists in the plain OpenAI shape (`{"data":
//! [{"id", "object": "model"}]}`, what Ollama, vLLM and llama.cpp serve) are read too: their
//! context window where the server states one (`max_model_len`, `context_window`,
//! `meta.n_ctx_train`), prices as [`SyncDefaults`] say.

use serde::Deserialize;
use serde_json::Value;

use crate::client::{ChatClient, Endpoint};
use crate::error::LlmError;
use crate::registry::{ModelSpec, Specialization};

/// OpenRouter's documented limit for free models, per model.
const OPENROUTER_FREE_RPM: u32 = 20;

/// A model list that could not be had or read.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("cannot fetch the model list: {0}")]
    Fetch(#[from] LlmError),
    #[error("the model list is not in OpenRouter's /models format: {0}")]
    Format(String),
}

#[derive(Deserialize)]
struct ModelList {
    data: Vec<ListedModel>,
}

#[derive(Deserialize)]
struct ListedModel {
    id: String,
    #[serde(default)]
    context_length: Option<f64>,
    /// vLLM's name for the context window.
    #[serde(default)]
    max_model_len: Option<f64>,
    /// Groq's and others'.
    #[serde(default)]
    context_window: Option<f64>,
    /// llama.cpp: `{"n_ctx_train": …}`.
    #[serde(default)]
    meta: Option<Value>,
    #[serde(default)]
    pricing: Option<Pricing>,
    #[serde(default)]
    top_provider: Option<Value>,
    #[serde(default)]
    supported_parameters: Vec<String>,
}

#[derive(Deserialize)]
struct Pricing {
    #[serde(default)]
    prompt: Option<Value>,
    #[serde(default)]
    completion: Option<Value>,
}

/// How to read what a list leaves out.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncDefaults {
    /// Models listed without a price cost nothing: the provider is a server of the user's own
    /// (it needs no key). Otherwise they are skipped.
    pub unpriced_are_free: bool,
    /// The context window of a model listed without one; `None`: such models are skipped.
    pub context: Option<u64>,
}

/// What a provider listed: every model, those the registry can use, and why the others
/// cannot be.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Listing {
    /// How many models the list held.
    pub listed: usize,
    pub models: Vec<ModelSpec>,
    /// `(id, why)` of each model left out.
    pub skipped: Vec<(String, String)>,
}

/// Registry entries for every usable model in `json`, served by `provider`. Models without a
/// context length or with a variable price (OpenRouter marks those `-1`) are skipped: the
/// router cannot check that a prompt fits or count what a call costs.
pub fn parse_models(json: &str, provider: &str) -> Result<Vec<ModelSpec>, SyncError> {
    read_listing(json, provider, &SyncDefaults::default()).map(|l| l.models)
}

/// Reads a model list ([`parse_models`]), filling in what it leaves out as `defaults` say,
/// and says which models were left out and why.
pub fn read_listing(
    json: &str,
    provider: &str,
    defaults: &SyncDefaults,
) -> Result<Listing, SyncError> {
    let list: ModelList =
        serde_json::from_str(json).map_err(|e| SyncError::Format(e.to_string()))?;
    let mut listing = Listing {
        listed: list.data.len(),
        ..Listing::default()
    };
    for m in list.data {
        match to_spec(m, provider, defaults) {
            Ok(spec) => listing.models.push(spec),
            Err((id, why)) => listing.skipped.push((id, why)),
        }
    }
    Ok(listing)
}

/// A listed model as a registry entry, or its id and why it cannot be one.
fn to_spec(
    m: ListedModel,
    provider: &str,
    defaults: &SyncDefaults,
) -> Result<ModelSpec, (String, String)> {
    let skip = |why: &str| (m.id.clone(), why.to_string());
    let context = m
        .context_length
        .or_else(|| {
            m.top_provider
                .as_ref()
                .and_then(|t| t.get("context_length"))
                .and_then(Value::as_f64)
        })
        .or(m.max_model_len)
        .or(m.context_window)
        .or_else(|| {
            m.meta
                .as_ref()
                .and_then(|t| t.get("n_ctx_train"))
                .and_then(Value::as_f64)
        })
        .or(defaults.context.map(|c| c as f64))
        .filter(|c| *c >= 1.0)
        .ok_or_else(|| skip("the list gives no context window"))?;
    let (price_in, price_out) = match &m.pricing {
        Some(pricing) => (
            price(pricing.prompt.as_ref()),
            price(pricing.completion.as_ref()),
        ),
        None if defaults.unpriced_are_free => (Some(0.0), Some(0.0)),
        None => (None, None),
    };
    let (Some(price_in), Some(price_out)) = (price_in, price_out) else {
        return Err(skip(if m.pricing.is_some() {
            "its price varies"
        } else {
            "the list gives no price"
        }));
    };
    let free = m.id.ends_with(":free") || (price_in == 0.0 && price_out == 0.0);
    let reasoning = m
        .supported_parameters
        .iter()
        .any(|p| p == "reasoning" || p == "include_reasoning");
    Ok(ModelSpec {
        name: m.id.clone(),
        provider: provider.to_string(),
        context: context as u64,
        price_in,
        price_out,
        free,
        specializations: vec![if reasoning {
            Specialization::Reasoning
        } else {
            Specialization::Balanced
        }],
        quality: 0.5,
        latency_ms: 15_000.0,
        rpm: (free && m.id.ends_with(":free")).then_some(OPENROUTER_FREE_RPM),
        tpm: None,
        rpd: None,
        id: m.id,
    })
}

/// Fetches `{base_url}/models` from `endpoint` and reads it with [`parse_models`].
pub async fn fetch_models(
    client: &ChatClient,
    endpoint: &Endpoint,
    provider: &str,
) -> Result<Vec<ModelSpec>, SyncError> {
    let json = client.models_json(endpoint).await?;
    parse_models(&json, provider)
}

/// Fetches `{base_url}/models` from `endpoint` and reads it with [`read_listing`].
pub async fn fetch_listing(
    client: &ChatClient,
    endpoint: &Endpoint,
    provider: &str,
    defaults: &SyncDefaults,
) -> Result<Listing, SyncError> {
    let json = client.models_json(endpoint).await?;
    read_listing(&json, provider, defaults)
}

/// A USD-per-token price given as a string (OpenRouter) or a number; negative means variable.
fn price(value: Option<&Value>) -> Option<f64> {
    let p = match value? {
        Value::String(s) => s.trim().parse::<f64>().ok()?,
        Value::Number(n) => n.as_f64()?,
        _ => return None,
    };
    (p.is_finite() && p >= 0.0).then_some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openrouter_format_is_read() {
        let json = r#"{"data": [
            {"id": "a/paid", "context_length": 128000, "pricing": {"prompt": "0.000001", "completion": "0.000002", "request": "0"}, "supported_parameters": ["tools"]},
            {"id": "a/free:free", "context_length": 32768, "pricing": {"prompt": "0", "completion": "0"}, "supported_parameters": ["include_reasoning"]},
            {"id": "openrouter/auto", "context_length": 2000000, "pricing": {"prompt": "-1", "completion": "-1"}},
            {"id": "no/context", "pricing": {"prompt": "0", "completion": "0"}, "top_provider": {"context_length": 8192}},
            {"id": "no/pricing", "context_length": 4096}
        ]}"#;
        let models = parse_models(json, "openrouter").unwrap();
        let ids: Vec<&str> = models.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["a/paid", "a/free:free", "no/context"]);
        assert_eq!(
            (models[0].price_in, models[0].price_out, models[0].free),
            (0.000001, 0.000002, false)
        );
        assert_eq!((models[1].free, models[1].rpm), (true, Some(20)));
        assert_eq!(models[1].specializations, [Specialization::Reasoning]);
        assert_eq!(models[2].context, 8192);
        assert!(matches!(parse_models("[]", "x"), Err(SyncError::Format(_))));
    }

    #[test]
    fn openai_shaped_lists_are_read_and_every_model_is_counted() {
        // Ollama, vLLM (max_model_len), llama.cpp (meta.n_ctx_train): ids, no prices.
        let json = r#"{"object": "list", "data": [
            {"id": "qwen2.5-coder:7b", "object": "model", "created": 1, "owned_by": "library"},
            {"id": "Qwen/Qwen2.5-Coder-32B", "object": "model", "max_model_len": 65536},
            {"id": "model.gguf", "object": "model", "meta": {"n_ctx_train": 16384}}
        ]}"#;
        // Read as OpenRouter's: nothing usable, but all three counted, each with its reason.
        let strict = read_listing(json, "local", &SyncDefaults::default()).unwrap();
        assert_eq!((strict.listed, strict.models.len()), (3, 0));
        assert_eq!(
            strict.skipped[0],
            (
                "qwen2.5-coder:7b".to_string(),
                "the list gives no context window".to_string()
            )
        );
        assert_eq!(strict.skipped[1].1, "the list gives no price");
        // A server of the user's own: free, with the window it states or the default.
        let local = SyncDefaults {
            unpriced_are_free: true,
            context: Some(32_768),
        };
        let listing = read_listing(json, "local", &local).unwrap();
        assert!(listing.skipped.is_empty(), "{:?}", listing.skipped);
        let windows: Vec<(u64, bool)> =
            listing.models.iter().map(|m| (m.context, m.free)).collect();
        assert_eq!(windows, [(32_768, true), (65_536, true), (16_384, true)]);
        assert_eq!(listing.models[0].provider, "local");
    }
}
