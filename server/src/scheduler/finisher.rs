//! The finish path: a task taken out of the live state is written to the
//! store (retried: it must not be lost), then its completion goes to the
//! session's streams through the hub.
//!
//! Results from workers are finished beside the worker's stream, up to
//! [`MAX_FINISHING`] at once: past that, [`Scheduler::take_result`] waits,
//! and so the worker's stream is not read until some are written. The
//! stream drives the writes of its own results, which saves a spawned task
//! per result with a durable store. Every ending
//! is counted from [`Scheduler::take`] until it is stored (or dropped), so a
//! drain can wait for the last ones before streams close.
use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::sync::{Notify, Semaphore};
use tracing::{debug, error, warn};

use super::{Scheduler, fallback::Fallen, state::Ended};
use crate::{
    model::{Outcome, TaskRecord, TaskState, codes},
    sessions::{Activity, ActivityKind},
    store::StoreError,
};

/// The rest of a finish whose store write is under way (see
/// [`Scheduler::start_finish`]).
pub type Finishing = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Worker results being written to the store at once, for the whole server.
const MAX_FINISHING: usize = 4096;

/// First and longest wait between attempts to store a completion.
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// How long transient store errors are retried before a completion is
/// given up (the task stays unfinished in the store: the next start takes
/// it up again).
const RETRY_FOR: Duration = Duration::from_secs(120);

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
    /// Starts finishing `ended`; waits while [`MAX_FINISHING`] are in
    /// flight. Returns the rest of the finish when its store write did not
    /// complete at the first poll (with a durable store, always): the
    /// caller drives it to the end, holding its place among
    /// [`MAX_FINISHING`] until then.
    ///
    /// The write is started here, in the caller's task: the first poll
    /// hands the completion to the store's queue, so results reach the
    /// store (and take their seqs) in the order they arrived.
    pub(super) async fn start_finish(self: &Arc<Self>, ended: Ended) -> Option<Finishing> {
        let slots = self.finisher.slots.clone();
        // The semaphore is never closed.
        let slot = slots.acquire_owned().await.ok()?;
        let me = self.clone();
        let mut write: Finishing = Box::pin(async move {
            me.end(ended).await;
            drop(slot);
        });
        if futures::poll!(&mut write).is_ready() {
            return None;
        }
        Some(write)
    }

    /// Writes a finished task to the store and wakes its session's streams.
    /// A permanent store error ends that one task FAILED with code
    /// `store_rejected` instead; transient ones are retried for
    /// [`RETRY_FOR`] (counted in `errand_store_retries`), then given up
    /// (recovery at the next start runs the task again). Returns the task
    /// as finished.
    pub(super) async fn end(self: &Arc<Self>, ended: Ended) -> TaskRecord {
        let ended = match self.fall_back(ended).await {
            Fallen::Finish(ended) => *ended,
            Fallen::Parked(task) => {
                self.ended_one();
                return *task;
            }
        };
        let Ended {
            mut task,
            mut finish,
        } = ended;
        let mut backoff = RETRY_FIRST;
        let started = tokio::time::Instant::now();
        let mut replaced = false;
        let completion = loop {
            match self.store.finish_held_task(&task, &finish).await {
                Ok(c) => break c,
                Err(StoreError::Rejected(why)) if !replaced => {
                    error!(task_id = %finish.task_id, error = %why, "the store refused a task's outcome: the task fails with store_rejected");
                    self.metrics.store_failure("finish");
                    finish.state = TaskState::Failed;
                    finish.outcome = Outcome::error(
                        codes::STORE_REJECTED,
                        format!("the store could not keep the task's outcome ({why})"),
                    );
                    replaced = true;
                }
                Err(e) if replaced || started.elapsed() >= RETRY_FOR => {
                    error!(task_id = %finish.task_id, error = %e, "storing a completion failed for good: the task stays unfinished until the next start");
                    self.metrics.store_failure("finish");
                    break None;
                }
                Err(e) => {
                    warn!(task_id = %finish.task_id, error = %e, "storing a completion failed; retrying");
                    self.metrics.store_retry("finish");
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
            debug!(task_id = %task.id, tenant = %crate::logs::field(crate::tenant::of(&task.session)), session_id = %crate::logs::field(crate::tenant::strip(&task.session)), seq = c.seq, status = task.state.name(), "task completed");
            let run = task
                .started_at
                .and_then(|s| c.completed_at.duration_since(s).ok());
            self.hub.record(|| Activity {
                kind: ActivityKind::Finished {
                    state: task.state,
                    seq: c.seq,
                    run,
                },
                task_id: task.id,
                session: task.session.clone(),
                tool: task.tool.clone(),
                at: c.completed_at,
            });
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
