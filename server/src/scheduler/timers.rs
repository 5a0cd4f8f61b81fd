//! Per-attempt timeouts: each dispatch arms a timer that ends the attempt
//! as TIMED_OUT unless a result, a cancel or a lost worker ends it first
//! (they abort the timer).
use std::{sync::Arc, time::Duration};

use tokio::task::AbortHandle;
use tracing::info;
use uuid::Uuid;

use super::Scheduler;
use crate::model::{Outcome, TaskState, codes, millis};

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
                Some(codes::TIMEOUT.into()),
            )
        };
        if let Some(ended) = ended {
            info!(task_id = %id, attempt, "task timed out");
            self.end(ended).await;
        }
    }
}
