//! The finish path: a task taken out of the live state is written to the
//! store (retried: it must not be lost), then its completion goes to the
//! session's streams through the hub.
//!
//! Results from workers are finished in the background, up to
//! [`MAX_FINISHING`] at once: past that, [`Scheduler::on_result`] waits, and
//! so the worker's stream is not read until some are written. Every ending
//! is counted from [`Scheduler::take`] until it is stored (or dropped), so a
//! drain can wait for the last ones before streams close.
use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::sync::{Notify, Semaphore};
use tracing::{debug, error};

use super::{Scheduler, state::Ended};
use crate::model::TaskRecord;

/// Worker results being written to the store at once, for the whole server.
const MAX_FINISHING: usize = 4096;

/// First and longest wait between attempts to store a completion.
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(5);

pub(super) struct Finisher {
    /// Endings taken from the live state and not yet in the store.
    finishing: AtomicUsize,
    /// Woken when a running task ends or an ending is stored.
    idle: Notify,
    slots: Arc<Semaphore>,
}

impl Default for Finisher {
    fn default() -> Self {
        Self {
            finishing: AtomicUsize::new(0),
            idle: Notify::new(),
            slots: Arc::new(Semaphore::new(MAX_FINISHING)),
        }
    }
}

impl Finisher {
    pub(super) fn started(&self) {
        self.finishing.fetch_add(1, Ordering::SeqCst);
    }

    /// Counts one ending off; true when none is left.
    fn done(&self) -> bool {
        self.finishing.fetch_sub(1, Ordering::SeqCst) == 1
    }

    pub(super) fn in_flight(&self) -> usize {
        self.finishing.load(Ordering::SeqCst)
    }

    pub(super) fn wake_drain(&self) {
        self.idle.notify_waiters();
    }

    pub(super) fn idle(&self) -> &Notify {
        &self.idle
    }
}

impl Scheduler {
    /// Finishes `ended` in the background; waits while [`MAX_FINISHING`]
    /// are in flight.
    pub(super) async fn finish_later(self: &Arc<Self>, ended: Ended) {
        let slots = self.finisher.slots.clone();
        // The semaphore is never closed.
        let Ok(slot) = slots.acquire_owned().await else {
            return;
        };
        let me = self.clone();
        self.tracker.spawn(async move {
            me.end(ended).await;
            drop(slot);
        });
    }

    /// Writes a finished task to the store and wakes its session's streams.
    /// Store errors are retried until the server stops (recovery at the next
    /// start runs the task again). Returns the task as finished.
    pub(super) async fn end(&self, ended: Ended) -> TaskRecord {
        let Ended { mut task, finish } = ended;
        let mut backoff = RETRY_FIRST;
        let completion = loop {
            match self.store.finish_task(&finish).await {
                Ok(c) => break c,
                Err(e) => {
                    error!(task_id = %finish.task_id, error = %e, "storing a completion failed; retrying");
                    if self.shutdown.is_cancelled() {
                        break None;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(RETRY_MAX);
                }
            }
        };
        task.state = finish.state;
        task.attempts = finish.attempts;
        task.finished_at = Some(finish.finished_at);
        task.outcome = Some(finish.outcome);
        if let Some(c) = completion {
            self.metrics.finished(&task.tool, task.state);
            task.seq = c.seq;
            debug!(task_id = %task.id, session_id = %crate::logs::field(&task.session), seq = c.seq, status = task.state.name(), "task completed");
            self.hub.completed(c);
        }
        self.ended_one();
        task
    }

    /// Counts off one ending taken by [`Scheduler::take`], stored or
    /// dropped. Takes the lock: never call it with the lock held.
    pub(super) fn ended_one(&self) {
        if self.finisher.done() && self.lock().is_draining() {
            self.finisher.wake_drain();
        }
    }
}
