//! `models sync`: reading a provider's model list in OpenRouter's `/api/v1/models` format
//! (`{"data": [{"id", "context_length", "pricing": {"prompt", "completion"}, ...}]}`, prices as
//! USD-per-token strings) into registry entries.

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

/// Registry entries for every usable model in `json`, served by `provider`. Models without a
/// context length or with a variable price (OpenRouter marks those `-1`) are skipped: the
/// router cannot check that a prompt fits or count what a call costs.
pub fn parse_models(json: &str, provider: &str) -> Result<Vec<ModelSpec>, SyncError> {
    let list: ModelList =
        serde_json::from_str(json).map_err(|e| SyncError::Format(e.to_string()))?;
    Ok(list
        .data
        .into_iter()
        .filter_map(|m| {
            let context = m.context_length.or_else(|| {
                m.top_provider
                    .as_ref()
                    .and_then(|t| t.get("context_length"))
                    .and_then(Value::as_f64)
            })?;
            let pricing = m.pricing?;
            let price_in = price(pricing.prompt.as_ref())?;
            let price_out = price(pricing.completion.as_ref())?;
            let free = m.id.ends_with(":free") || (price_in == 0.0 && price_out == 0.0);
            let reasoning = m
                .supported_parameters
                .iter()
                .any(|p| p == "reasoning" || p == "include_reasoning");
            Some(ModelSpec {
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
        })
        .filter(|m| m.context > 0)
        .collect())
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
}
