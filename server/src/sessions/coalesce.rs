//! How progress reports reach a reader without flooding it: per task, the
//! latest report waits, and at most one goes out per interval. Used by each
//! `SessionEvents` stream ([`super::Events`]) and each dashboard event stream.
use std::{collections::HashMap, sync::Arc, time::Duration};

use tokio::{sync::broadcast, time::Instant};
use uuid::Uuid;

use crate::model::ProgressRecord;

/// Per task: the report waiting to go out, and when and with which index
/// the last one went.
pub struct Coalescer {
    interval: Duration,
    tasks: HashMap<Uuid, Slot>,
}

#[derive(Default)]
struct Slot {
    waiting: Option<Arc<ProgressRecord>>,
    /// Index of the last report sent or waiting; only higher ones are taken.
    index: u64,
    sent_at: Option<Instant>,
}

impl Coalescer {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            tasks: HashMap::new(),
        }
    }

    /// A report: kept to go out if it is newer than what the task has.
    pub fn offer(&mut self, p: Arc<ProgressRecord>) {
        let slot = self.tasks.entry(p.task_id).or_default();
        if p.index > slot.index {
            slot.index = p.index;
            slot.waiting = Some(p);
        }
    }

    /// The task ended (or left): nothing more of it goes out.
    pub fn forget(&mut self, task: Uuid) {
        self.tasks.remove(&task);
    }

    /// How many tasks it tracks.
    pub fn tracked(&self) -> usize {
        self.tasks.len()
    }

    /// Keeps the tasks `keep` says are still running.
    pub fn retain(&mut self, mut keep: impl FnMut(Uuid) -> bool) {
        self.tasks.retain(|id, _| keep(*id));
    }

    /// When the next waiting report may go out.
    pub fn next_due(&self) -> Option<Instant> {
        self.tasks
            .values()
            .filter(|s| s.waiting.is_some())
            .map(|s| s.sent_at.map_or_else(Instant::now, |at| at + self.interval))
            .min()
    }

    /// The waiting reports that may go out at `now`, marked sent.
    pub fn ready(&mut self, now: Instant) -> Vec<Arc<ProgressRecord>> {
        let mut out = Vec::new();
        for slot in self.tasks.values_mut() {
            let free = slot.sent_at.is_none_or(|at| now >= at + self.interval);
            if free && let Some(p) = slot.waiting.take() {
                slot.sent_at = Some(now);
                out.push(p);
            }
        }
        out.sort_by_key(|p| p.elapsed);
        out
    }
}

/// The next report of `rx`; never returns for `None` (closed).
pub async fn recv(
    rx: &mut Option<broadcast::Receiver<Arc<ProgressRecord>>>,
) -> Result<Arc<ProgressRecord>, broadcast::error::RecvError> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Sleeps until `at`; never returns for `None`.
pub async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sessions::testing::report;

    #[test]
    fn the_coalescer_keeps_the_latest_and_spaces_them() {
        let mut c = Coalescer::new(Duration::from_secs(1));
        let task = Uuid::new_v4();
        let t0 = Instant::now();
        c.offer(report(task, 2));
        c.offer(report(task, 1));
        assert_eq!(c.ready(t0).iter().map(|p| p.index).collect::<Vec<_>>(), [2]);
        c.offer(report(task, 3));
        c.offer(report(task, 4));
        assert!(c.ready(t0 + Duration::from_millis(500)).is_empty());
        assert_eq!(c.next_due(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(c.ready(t0 + Duration::from_secs(1))[0].index, 4);
        c.offer(report(task, 4));
        assert!(c.next_due().is_none(), "an old index is not taken again");
        c.forget(task);
        assert_eq!(c.tracked(), 0);
    }
}
