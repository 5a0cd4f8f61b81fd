//! Dispatches the store could not record: the Assignment is not sent, the
//! attempt is taken back, the worker stays, and dispatching waits a
//! backoff before the store is asked again (see `state/unrecorded.rs`).
//! A store that refuses writes is the server's fault: it must not use up a
//! task's attempts nor end a healthy worker's stream.
use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};

use tracing::{info, warn};
use uuid::Uuid;

use super::{Scheduler, WorkerId};
use crate::store::StoreError;

/// First and longest wait before dispatching again after a dispatch record
/// failed.
const HOLD_FIRST: Duration = Duration::from_millis(100);
const HOLD_MAX: Duration = Duration::from_secs(5);

/// The wait of the next hold, doubled by each hold, reset by a dispatch
/// record written.
#[derive(Default)]
pub(super) struct HoldBackoff {
    /// Milliseconds; 0: no hold since the last record written.
    next_ms: AtomicU64,
}

impl HoldBackoff {
    /// The wait for a new hold, doubling the next one's.
    fn next(&self) -> Duration {
        let first = HOLD_FIRST.as_millis() as u64;
        let max = HOLD_MAX.as_millis() as u64;
        let ms = self
            .next_ms
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |ms| {
                Some(if ms == 0 {
                    first * 2
                } else {
                    (ms * 2).min(max)
                })
            })
            .unwrap_or(0);
        Duration::from_millis(if ms == 0 { first } else { ms })
    }

    /// Whether a hold came before this reset.
    fn reset(&self) -> bool {
        self.next_ms.load(Ordering::Acquire) != 0 && self.next_ms.swap(0, Ordering::AcqRel) != 0
    }
}

impl Scheduler {
    /// The dispatch record of attempt `attempt` of task `id`, assigned to
    /// `worker`, is durable and its Assignment on its way: dispatches held
    /// before wait no longer, and the attempt is a run, shown on the
    /// dashboard and (the first) timed in `errand_dispatch_latency_seconds`.
    /// Nothing is shown when the attempt ended meanwhile (cancelled).
    pub fn dispatch_recorded(&self, worker: WorkerId, id: Uuid, attempt: u32) {
        if self.hold_backoff.reset() {
            info!("dispatch records are written again");
        }
        let st = self.lock();
        if !st.holds(worker, id, attempt) {
            return;
        }
        if attempt == 1
            && let Some(task) = st.task(id)
            && let Some(at) = task.started_at
        {
            let wait = at.duration_since(task.created_at).unwrap_or_default();
            self.metrics.dispatched_after(wait);
        }
        self.record_start(&st, id, attempt);
    }

    /// The dispatch record of attempt `attempt` of task `id`, assigned to
    /// `worker`, could not be written (`error`), so the Assignment was not
    /// sent: the task is queued again at the front with the attempt taken
    /// back, and no task is dispatched until a backoff (100 ms, doubling
    /// to 5 s while records keep failing) has passed.
    pub fn dispatch_unrecorded(
        self: &Arc<Self>,
        worker: WorkerId,
        id: Uuid,
        attempt: u32,
        error: &StoreError,
    ) {
        let now = SystemTime::now();
        let mut st = self.lock();
        if st.unassign(worker, id, attempt) {
            warn!(worker_id = worker, task_id = %id, attempt, error = %error, "a dispatch could not be recorded: the task stays queued, its attempt not spent");
            if let Some(task) = st.task(id) {
                let deadline = task.queue_deadline_from(now, self.config.default_queue_timeout);
                self.arm_queue_timer(task, deadline);
            }
            // A drain waiting on this run is woken.
            self.apply(&mut st);
        }
        if !st.hold_dispatch() {
            return;
        }
        let wait = self.hold_backoff.next();
        drop(st);
        let me = Arc::downgrade(self);
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = shutdown.cancelled() => return,
            }
            if let Some(me) = me.upgrade() {
                let mut st = me.lock();
                st.release_dispatch(SystemTime::now());
                me.apply(&mut st);
            }
        });
    }
}
