//! Webhook deliveries, counted: how many were delivered, wait to be retried, are pending or
//! were given up, in total and per endpoint.

use std::collections::BTreeMap;

use pitcrew_store::{DeliveryCount, DeliveryState};
use serde::Serialize;

/// The webhook deliveries of the events recorded in the window (`--since`; `--model` and
/// `--kind` do not narrow them), by state, in total and per endpoint. Every state is listed,
/// 0 included.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WebhookFigures {
    /// Deliveries by state: `pending` (not attempted yet, or its first attempt under way),
    /// `retrying` (an attempt failed, another is due), `delivered`, `failed` (given up).
    pub deliveries: BTreeMap<DeliveryState, u64>,
    /// Delivered over decided (delivered or failed); `None` while none is decided.
    pub delivered_ratio: Option<f64>,
    /// Per endpoint URL, in URL order.
    pub endpoints: Vec<EndpointFigures>,
}

/// One endpoint's deliveries by state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EndpointFigures {
    pub url: String,
    pub deliveries: BTreeMap<DeliveryState, u64>,
}

fn every_state() -> BTreeMap<DeliveryState, u64> {
    DeliveryState::ALL.iter().map(|state| (*state, 0)).collect()
}

/// The figures of deliveries counted by URL and state (as the store counts them).
pub fn webhook_figures(counts: &[DeliveryCount]) -> WebhookFigures {
    let mut deliveries = every_state();
    let mut endpoints: BTreeMap<&str, BTreeMap<DeliveryState, u64>> = BTreeMap::new();
    for count in counts {
        *deliveries.entry(count.state).or_default() += count.count;
        *(endpoints.entry(&count.url).or_insert_with(every_state))
            .entry(count.state)
            .or_default() += count.count;
    }
    let delivered = deliveries[&DeliveryState::Delivered];
    let decided = delivered + deliveries[&DeliveryState::Failed];
    WebhookFigures {
        delivered_ratio: (decided > 0).then(|| delivered as f64 / decided as f64),
        deliveries,
        endpoints: (endpoints.into_iter())
            .map(|(url, deliveries)| EndpointFigures {
                url: url.to_string(),
                deliveries,
            })
            .collect(),
    }
}
