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
    error::Error,
    model::{Outcome, TaskRecord, TaskState, codes},
    sessions::{Activity, ActivityKind},
    store::StoreError,
};

/// The rest of a finish whose store write is under way (see
/// [`Scheduler::start_finish`]).
pub type Finishing = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Worker results being written to the store at once, for the whole server.
const MAX_FINISHING: usize = 4096;

/// First and longest wait between attempts to store a completion (a store
/// that tracks its write health is waited on instead while it refuses
/// writes: see [`Scheduler::pause`]).
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// Longest wait for a store that says its writes fail to say they go
/// through again (its health is probed every second while they fail), in
/// case nothing probes it.
const HEALTH_WAIT_MAX: Duration = Duration::from_secs(30);
/// How long an error that may be this one finish's own (`Internal`: a
/// corrupt row, a bug) is retried before the store is asked whether it
/// takes other writes: if it does, the finish is given up (the task stays
/// unfinished in the store, and the next start takes it up again).
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
    /// `store_rejected` instead. While the store refuses writes for a
    /// reason of its own (out of space, unreachable, or any error its probe
    /// write meets too) the finish is kept and retried, with no time limit,
    /// until the store takes it or the server stops (counted in
    /// `errand_store_retries`): what the server accepted is not lost to an
    /// outage. An error only this finish meets is given up after
    /// [`RETRY_FOR`] (counted in `errand_store_failures`; recovery at the
    /// next start runs the task again). Returns the task as finished.
    ///
    /// Memory: a kept finish is one task taken out of the live state, so
    /// those kept are bounded by what was queued and running when the
    /// outage began (new tasks need a store write to be accepted), worker
    /// results among them by [`MAX_FINISHING`].
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
        // Since when the finish has met only errors that may be its own.
        let mut own_since = None;
        let mut replaced = false;
        let mut retries = 0u64;
        let completion = loop {
            match self.store.finish_held_task(&task, &finish).await {
                Ok(c) => {
                    if retries > 0 {
                        debug!(task_id = %finish.task_id, retries, "a completion the store refused is stored");
                    }
                    break c;
                }
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
                Err(e) => {
                    if !self.keeps_trying(&e, &mut own_since).await {
                        error!(task_id = %finish.task_id, error = %e, "storing a completion failed for good: the task stays unfinished until the next start");
                        self.metrics.store_failure("finish");
                        break None;
                    }
                    // One line per finish: an outage retries for as long
                    // as it lasts (the metric counts every retry).
                    if retries == 0 {
                        warn!(task_id = %finish.task_id, error = %e, "storing a completion failed; it is kept and retried until the store takes it");
                    }
                    retries += 1;
                    self.metrics.store_retry("finish");
                    if !self.pause(backoff).await {
                        break None;
                    }
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

    /// [`Self::end`] on a task of its own, for a caller that may go away
    /// (an RPC's handler, dropped when its client leaves): the ending,
    /// already out of the live state, is stored whether or not the caller
    /// still waits for it. Errors: INTERNAL if that task died (a bug).
    pub(super) async fn end_detached(self: &Arc<Self>, ended: Ended) -> Result<TaskRecord, Error> {
        let id = ended.finish.task_id;
        self.spawn_end(ended)
            .await
            .map_err(|e| Error::Internal(format!("ending task {id} failed: {e}")))
    }

    /// [`Self::end`] spawned on the tracker: it runs to its end whether or
    /// not the handle is awaited (see [`Self::end_detached`]).
    pub(super) fn spawn_end(self: &Arc<Self>, ended: Ended) -> tokio::task::JoinHandle<TaskRecord> {
        let me = self.clone();
        self.tracker.spawn(async move { me.end(ended).await })
    }

    /// Whether a finish that failed with `e` is tried again: always while
    /// the store refuses writes for a reason of its own (out of space,
    /// unreachable); for an error that may be the finish's own, for
    /// [`RETRY_FOR`] counted from the first such error in a row
    /// (`own_since`: an outage before it does not count), then while the
    /// store's probe write fails too (a read-only or failing disk is an
    /// outage as well). Never for an outcome refused again.
    async fn keeps_trying(
        &self,
        e: &StoreError,
        own_since: &mut Option<tokio::time::Instant>,
    ) -> bool {
        match e {
            StoreError::Full(_) | StoreError::Unavailable(_) => {
                *own_since = None;
                true
            }
            StoreError::Rejected(_) => false,
            StoreError::Internal(_) | StoreError::LimitReached(_) => {
                let since = *own_since.get_or_insert_with(tokio::time::Instant::now);
                since.elapsed() < RETRY_FOR || self.store.probe_write().await.is_err()
            }
        }
    }

    /// Waits before a finish is tried again: `backoff`, or, while a store
    /// that tracks its write health says its writes fail, until one goes
    /// through ([`HEALTH_WAIT_MAX`] at most), so that kept finishes neither
    /// hammer a full store nor wait long once it takes writes again. False
    /// once the server stops (the task stays unfinished in the store: the
    /// next start takes it up).
    async fn pause(&self, backoff: Duration) -> bool {
        let wait = async {
            match self.store.write_health() {
                Some(health) if *health.watch().borrow() => {
                    let mut failing = health.watch();
                    let _ = tokio::time::timeout(HEALTH_WAIT_MAX, failing.wait_for(|f| !*f)).await;
                }
                _ => tokio::time::sleep(backoff).await,
            }
        };
        tokio::select! {
            () = wait => !self.shutdown.is_cancelled(),
            () = self.shutdown.cancelled() => false,
        }
    }

    /// Counts off one ending taken by [`Scheduler::take`], stored or
    /// dropped. Takes the lock: never call it with the lock held.
    pub(super) fn ended_one(&self) {
        if self.finisher.done() && self.lock().is_draining() {
            self.finisher.wake_drain();
        }
    }
}
