//! Whether the store's writes go through: its writer notes each commit's
//! outcome here. The server reads it for the health service (NOT_SERVING
//! while the store cannot take writes: out of space or unreachable at the
//! first failure, any other store failure once [`INTERNAL_IN_A_ROW`] come
//! with no write through between them, so one rolled-back batch does not
//! flap it) and the metrics (`errand_store_write_failures_total`,
//! `errand_store_writable`); while writes fail it probes the store
//! ([`super::Store::probe_write`]), so that it recovers without traffic.
use std::sync::{
    Arc, OnceLock,
    atomic::{AtomicU32, Ordering},
};

use tokio::sync::watch;

use super::StoreError;
use crate::metrics::Metrics;

/// Other store failures (`Internal`) in a row, with no write through
/// between them, that say the store cannot take writes.
pub(crate) const INTERNAL_IN_A_ROW: u32 = 3;

pub struct WriteHealth {
    /// True while the store cannot take writes (see the module): its last
    /// write failed for a reason of the store's own, not one item's data.
    failing: watch::Sender<bool>,
    /// `Internal` failures since the last write through.
    internal: AtomicU32,
    metrics: OnceLock<Arc<Metrics>>,
}

impl Default for WriteHealth {
    fn default() -> Self {
        Self {
            failing: watch::Sender::new(false),
            internal: AtomicU32::new(0),
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
        self.internal.store(0, Ordering::Relaxed);
        self.set_failing(false);
    }

    /// A write failed with `e`: counted, and told failing as the module
    /// says. An error about one item's data (refused, a limit) says
    /// nothing about the store and changes nothing: false.
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
        let lasting = !matches!(e, StoreError::Internal(_))
            || self.internal.fetch_add(1, Ordering::Relaxed) + 1 >= INTERNAL_IN_A_ROW;
        if lasting {
            self.set_failing(true);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn internal() -> StoreError {
        StoreError::Internal("the store rolled a batch back: try again".into())
    }

    /// One failed write that says nothing lasting (a batch rolled back)
    /// leaves health alone: load balancers watching it would flap. A full
    /// or unreachable store says so at once; other store failures once
    /// they repeat with no write through between them.
    #[test]
    fn only_a_store_that_cannot_take_writes_is_told_failing() {
        let health = WriteHealth::default();
        let failing = health.watch();
        assert!(health.failed(&internal()));
        assert!(!*failing.borrow(), "one rolled-back batch");
        health.wrote();
        for _ in 1..INTERNAL_IN_A_ROW {
            health.failed(&internal());
        }
        health.wrote();
        health.failed(&internal());
        assert!(!*failing.borrow(), "a write went through between them");
        for _ in 1..INTERNAL_IN_A_ROW {
            health.failed(&internal());
        }
        assert!(*failing.borrow(), "{INTERNAL_IN_A_ROW} in a row");
        health.wrote();
        assert!(!*failing.borrow());
        health.failed(&StoreError::Full("the disk is full".into()));
        assert!(*failing.borrow(), "full: at once");
        health.wrote();
        health.failed(&StoreError::Unavailable("the database is busy".into()));
        assert!(*failing.borrow(), "unavailable: at once");
        health.wrote();
        assert!(!health.failed(&StoreError::Rejected("one row".into())));
        assert!(!*failing.borrow(), "one item's data");
    }
}
