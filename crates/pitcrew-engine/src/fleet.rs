//! The store as the place a fleet of workers counts its calls and spending.

use std::sync::Arc;

use async_trait::async_trait;
use pitcrew_llm::{FleetError, FleetLimits, LimitDecision, SharedLimit};
use pitcrew_store::Store;

/// Rate limits, quotas and run budgets counted in the queue's store, so that every worker of
/// the store (any process, any machine) stays within them together.
#[derive(Debug)]
pub(crate) struct StoreLimits(pub(crate) Arc<dyn Store>);

#[async_trait]
impl FleetLimits for StoreLimits {
    async fn take(&self, limits: &[SharedLimit], tokens: u64) -> Result<LimitDecision, FleetError> {
        (self.0.take_limits(limits, tokens).await).map_err(|e| FleetError(e.to_string()))
    }

    async fn reserve(
        &self,
        key: &str,
        limit_usd: f64,
        amount_usd: f64,
    ) -> Result<bool, FleetError> {
        (self.0.reserve_budget(key, limit_usd, amount_usd).await)
            .map_err(|e| FleetError(e.to_string()))
    }

    async fn settle(&self, key: &str, reserved_usd: f64, cost_usd: f64) -> Result<(), FleetError> {
        (self.0.settle_budget(key, reserved_usd, cost_usd).await)
            .map_err(|e| FleetError(e.to_string()))
    }
}
