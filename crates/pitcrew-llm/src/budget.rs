//! Cost budgets. Every call is charged, failed ones included (a provider bills the prompt of
//! a call that failed midway), at the price the provider reported or, when it reported none,
//! the registry's price times the tokens counted or estimated.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// A spending limit shared by every call charged to it (one per task, one per run). Clones
/// share the same account.
#[derive(Debug, Clone)]
pub struct Budget {
    limit_usd: Option<f64>,
    spent_usd: Arc<Mutex<f64>>,
    /// Spent by others sharing it (the workers of a fleet), as the store said.
    spent_elsewhere: Arc<AtomicBool>,
}

impl Budget {
    /// A budget of `limit_usd`; `None` never runs out (but still counts).
    pub fn new(limit_usd: Option<f64>) -> Self {
        Budget {
            limit_usd,
            spent_usd: Arc::new(Mutex::new(0.0)),
            spent_elsewhere: Arc::new(AtomicBool::new(false)),
        }
    }

    pub fn limit_usd(&self) -> Option<f64> {
        self.limit_usd
    }

    pub fn spent_usd(&self) -> f64 {
        *self
            .spent_usd
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// What is left; `None` without a limit.
    pub fn remaining_usd(&self) -> Option<f64> {
        if self.spent_elsewhere.load(Ordering::Relaxed) {
            return self.limit_usd.map(|_| 0.0);
        }
        self.limit_usd
            .map(|limit| (limit - self.spent_usd()).max(0.0))
    }

    /// Whether no further call may be made. Calls running concurrently are each admitted
    /// while money is left, so the total can overshoot by what those calls cost.
    pub fn is_spent(&self) -> bool {
        self.remaining_usd().is_some_and(|left| left <= 0.0)
    }

    /// What is left of the budget is spent or reserved by others sharing it.
    pub(crate) fn spent_by_others(&self) {
        self.spent_elsewhere.store(true, Ordering::Relaxed);
    }

    pub(crate) fn charge(&self, usd: f64) {
        *self
            .spent_usd
            .lock()
            .unwrap_or_else(PoisonError::into_inner) += usd.max(0.0);
    }
}
