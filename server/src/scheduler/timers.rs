//! Per-attempt timeouts: each dispatch arms a timer that ends the attempt
//! as TIMED_OUT unless a result, a cancel or a lost worker ends it first
//! (they abort the timer). Queue timeouts: each task queued here arms a
//! timer at its stored deadline that ends it as TIMED_OUT (`queue_timeout`)
//! if no worker has taken it by then.
use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use tokio::task::AbortHandle;
use tracing::{info, warn};
use uuid::Uuid;

use super::Scheduler;
use crate::{
    model::{Outcome, TaskRecord, TaskState, codes, millis},
    text,
};

impl Scheduler {
    /// Starts the timer of attempt `attempt` of task `id`.
    pub(super) fn arm_timer(
        self: &Arc<Self>,
        id: Uuid,
        attempt: u32,
        timeout: Duration,
    ) -> AbortHandle {
        let me = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            me.time_out(id, attempt).await;
        })
        .abort_handle()
    }

    /// Starts the queue timer of `task`, due at its deadline (at once if it
    /// has passed, as after a restart). It does nothing if the task is no
    /// longer queued then; a task queued in the shared store is timed out
    /// there.
    pub(super) fn arm_queue_timer(self: &Arc<Self>, task: &TaskRecord, deadline: SystemTime) {
        let wait = deadline
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        let (me, id, message) = (self.clone(), task.id, text::queue_timeout(task));
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(wait) => me.queue_time_out(id, message).await,
                _ = me.shutdown.cancelled() => {}
            }
        });
    }

    async fn queue_time_out(self: Arc<Self>, id: Uuid, message: String) {
        let outcome = Outcome::error(codes::QUEUE_TIMEOUT, message);
        let ended = {
            let mut st = self.lock();
            match st.task(id).map(|t| t.state) {
                Some(TaskState::Queued) => {
                    Ok(self.take(&mut st, id, TaskState::TimedOut, outcome, None))
                }
                // Running here, or ended: a worker took it, or it is over.
                Some(_) => return,
                None => Err(outcome),
            }
        };
        match ended {
            Ok(Some(ended)) => {
                info!(task_id = %id, "task timed out in the queue");
                self.end(ended).await;
            }
            Ok(None) => {}
            Err(outcome) => self.queue_time_out_elsewhere(id, outcome).await,
        }
    }

    /// A task queued in the shared store (or ended): times it out there if it
    /// is still queued.
    async fn queue_time_out_elsewhere(&self, id: Uuid, outcome: Outcome) {
        match self.backlog.time_out_queued(id, outcome).await {
            Ok(Some(c)) => {
                info!(task_id = %id, "task timed out in the queue");
                self.hub.notify(&c.session, c.seq);
            }
            Ok(None) => {}
            // The reaper times it out later from its stored deadline.
            Err(e) => warn!(task_id = %id, error = %e, "timing out a queued task failed"),
        }
    }

    async fn time_out(self: Arc<Self>, id: Uuid, attempt: u32) {
        let ended = {
            let mut st = self.lock();
            if !st.is_running(id, attempt) {
                return;
            }
            // This timer is the running attempt's: dropping, not aborting, it.
            st.clear_timer(id);
            let timeout = st.task(id).map(|t| t.timeout).unwrap_or_default();
            let message = format!("no result within {} ms", millis(timeout));
            self.take(
                &mut st,
                id,
                TaskState::TimedOut,
                Outcome::error(codes::TIMEOUT, message),
                Some(codes::TIMEOUT),
            )
        };
        if let Some(ended) = ended {
            info!(task_id = %id, attempt, "task timed out");
            self.end(ended).await;
        }
    }
}
