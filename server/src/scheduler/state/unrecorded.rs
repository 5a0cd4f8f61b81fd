//! Dispatches the store could not record (a full disk, a store gone): the
//! server's own fault, charged to neither the task nor the worker. The
//! Assignment never left, so the attempt is taken back and the task goes
//! to the front of its queue; dispatching is held until its owner releases
//! it (after a backoff), so a store that refuses writes is not asked again
//! at once for every free slot.
use std::time::SystemTime;

use uuid::Uuid;

use super::{Io, State, WorkerId};
use crate::model::TaskState;

impl<I: Io> State<I> {
    /// Takes back attempt `attempt` of task `id` from `worker`, whose
    /// dispatch record could not be written: the task is queued again at
    /// the front, its attempt count as before the dispatch. False when the
    /// worker no longer holds that attempt (it ended or left meanwhile).
    /// While draining, a run has ended (the drain waits for none).
    pub fn unassign(&mut self, worker: WorkerId, id: Uuid, attempt: u32) -> bool {
        if !self.holds(worker, id, attempt) || attempt == 0 {
            return false;
        }
        let Some(live) = self.tasks.get_mut(&id) else {
            return false;
        };
        live.worker = None;
        live.task.attempts -= 1;
        live.task.state = TaskState::Queued;
        if live.task.attempts == 0 {
            live.task.started_at = None;
        }
        if let Some(timer) = live.timer.take() {
            I::stop(timer);
        }
        let had_progress = live.progress.take().is_some();
        let (session, tool) = (live.task.session.clone(), live.task.tool.clone());
        if had_progress {
            self.forget_progress(&session, id);
        }
        if let Some(w) = self.workers.get_mut(&worker) {
            w.running.remove(&id);
        }
        if self.draining {
            self.effects.running_ended = true;
        }
        self.tools
            .entry(tool)
            .or_default()
            .queue
            .push_front(&session, id);
        true
    }

    /// Holds every dispatch until [`Self::release_dispatch`]. True when it
    /// was not held already.
    pub fn hold_dispatch(&mut self) -> bool {
        !std::mem::replace(&mut self.dispatch_held, true)
    }

    /// Ends a hold: every worker's free slots are filled again.
    pub fn release_dispatch(&mut self, now: SystemTime) {
        self.dispatch_held = false;
        let workers: Vec<WorkerId> = self.workers.keys().copied().collect();
        for worker in workers {
            self.fill_worker(worker, now);
        }
    }
}
