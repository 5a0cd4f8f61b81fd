//! Whether the store's writes go through: its writer notes each commit's
//! outcome here. The server reads it for the health service (NOT_SERVING
//! while writes fail) and the metrics (`errand_store_write_failures_total`,
//! `errand_store_writable`); while writes fail it probes the store
//! ([`super::Store::probe_write`]), so that it recovers without traffic.
use std::sync::{Arc, OnceLock};

use tokio::sync::watch;

use super::StoreError;
use crate::metrics::Metrics;

pub struct WriteHealth {
    /// True while the last write failed for a reason of the store's own
    /// (not one item's data).
    failing: watch::Sender<bool>,
    metrics: OnceLock<Arc<Metrics>>,
}

impl Default for WriteHealth {
    fn default() -> Self {
        Self {
            failing: watch::Sender::new(false),
            metrics: OnceLock::new(),
        }
    }
}

impl WriteHealth {
    /// Counts later failures in `metrics` too.
    pub fn attach(&self, metrics: Arc<Metrics>) {
        metrics.store_writable(!*self.failing.borrow());
        let _ = self.metrics.set(metrics);
    }

    /// A write committed.
    pub fn wrote(&self) {
        self.set_failing(false);
    }

    /// A write failed with `e`. An error about one item's data (refused,
    /// a limit) says nothing about the store and changes nothing: false.
    pub fn failed(&self, e: &StoreError) -> bool {
        let kind = match e {
            StoreError::Full(_) => "full",
            StoreError::Unavailable(_) => "unavailable",
            StoreError::Internal(_) => "internal",
            StoreError::Rejected(_) | StoreError::LimitReached(_) => return false,
        };
        if let Some(m) = self.metrics.get() {
            m.store_write_failed(kind);
        }
        self.set_failing(true);
        true
    }

    fn set_failing(&self, failing: bool) {
        let changed = self.failing.send_if_modified(|f| {
            let changed = *f != failing;
            *f = failing;
            changed
        });
        if changed && let Some(m) = self.metrics.get() {
            m.store_writable(!failing);
        }
    }

    /// Follows whether writes fail.
    pub fn watch(&self) -> watch::Receiver<bool> {
        self.failing.subscribe()
    }
}
