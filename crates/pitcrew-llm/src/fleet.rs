//! Limits shared with the other workers of a store: a fleet of processes calling the same
//! provider account counts its requests, tokens and spending in one place, so that the
//! account's quota and the run's budget hold for the fleet, not for each process.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
pub use pitcrew_core::{LimitDecision, SharedLimit};

/// Where a fleet counts its calls and spending (the queue's store).
#[async_trait]
pub trait FleetLimits: Send + Sync + fmt::Debug {
    /// Counts one call of `tokens` under every one of `limits` if all have room, else none.
    async fn take(&self, limits: &[SharedLimit], tokens: u64) -> Result<LimitDecision, FleetError>;

    /// Reserves `amount_usd` of the budget `key`, which allows `limit_usd` in all; `false`
    /// (nothing reserved) when the reservation would pass the limit.
    async fn reserve(&self, key: &str, limit_usd: f64, amount_usd: f64)
    -> Result<bool, FleetError>;

    /// Replaces a reservation of `reserved_usd` by what the call cost.
    async fn settle(&self, key: &str, reserved_usd: f64, cost_usd: f64) -> Result<(), FleetError>;
}

/// The store could not be asked.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the fleet's shared limits in the store: {0}")]
pub struct FleetError(pub String);

/// A router's link to its fleet.
#[derive(Debug, Clone)]
pub(crate) struct Fleet {
    pub(crate) limits: Arc<dyn FleetLimits>,
    /// The budget the run shares with the other workers of the run, if any.
    pub(crate) budget_key: Option<String>,
}
