//! The scheduler's life around its work: taking up a previous run's tasks at
//! start, draining at stop, and purging what is past retention meanwhile.
use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use futures::future::join_all;
use tracing::{error, info};

use super::{Scheduler, state::Ended};
use crate::{
    model::{Finish, Outcome, TaskState, codes},
    store::StoreError,
};

impl Scheduler {
    /// Takes up the work a previous run left: queued tasks are queued again,
    /// running ones get a new attempt (or fail once attempts are used up).
    /// Returns how many unfinished tasks the store held (0 with a shared
    /// backlog: expired leases are reclaimed by whichever server reaps first).
    pub async fn recover(self: &Arc<Self>) -> Result<usize, StoreError> {
        if !self.backlog.recovers() {
            return Ok(0);
        }
        let mut tasks = self.store.unfinished_tasks().await?;
        // A call whose fallback run is stored waits for that run to finish it.
        let parked: std::collections::HashSet<_> = tasks
            .iter()
            .filter_map(|t| t.call.fallback_for.as_ref().map(|f| f.parent))
            .collect();
        tasks.retain(|t| !parked.contains(&t.id));
        let count = tasks.len();
        let mut exhausted = Vec::new();
        let mut timers = Vec::new();
        {
            let mut st = self.lock();
            let now = SystemTime::now();
            for mut task in tasks {
                if task.attempts >= self.config.max_attempts {
                    let message = format!(
                        "the server stopped while the task ran, {}",
                        crate::text::on_attempts(task.attempts)
                    );
                    self.finisher.started();
                    exhausted.push(Ended {
                        finish: Finish {
                            task_id: task.id,
                            state: TaskState::Failed,
                            outcome: Outcome::error(codes::WORKER_LOST, message),
                            attempts: task.attempts,
                            finished_at: SystemTime::now(),
                            notes: Default::default(),
                        },
                        task,
                    });
                    continue;
                }
                task.session = st.reserve(&task.session);
                // A call that ran waits for a worker afresh (the run
                // outlasting its queue timeout must not end it).
                let deadline = task.queue_deadline_from(now, self.config.default_queue_timeout);
                timers.push((task.clone(), deadline));
                st.enqueue(task);
            }
        }
        for (task, deadline) in timers {
            self.arm_queue_timer(&task, deadline);
        }
        join_all(exhausted.into_iter().map(|e| self.end(e))).await;
        if count > 0 {
            info!(tasks = count, "recovered unfinished tasks");
        }
        Ok(count)
    }

    /// Refuses new submits, registrations and dispatches from now on
    /// (UNAVAILABLE); [`Self::drain`] does it too. Called before the health
    /// service says NOT_SERVING, so whoever sees that is refused.
    pub fn stop_taking_work(&self) {
        self.lock().start_draining();
    }

    /// Starts a graceful stop: no new submits, registrations or dispatches;
    /// waits until no task runs and every ending is stored, or `grace` has
    /// passed. Returns how many tasks still run (they are taken up again at
    /// the next start).
    pub async fn drain(&self, grace: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + grace;
        self.lock().start_draining();
        loop {
            let idle = self.finisher.idle().notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            let running = self.lock().running();
            if running == 0 && self.finisher.in_flight() == 0 {
                return 0;
            }
            info!(running, "waiting for running tasks to finish");
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                return self.lock().running();
            }
        }
    }

    /// Removes expired completions and finished tasks, and forgets tools
    /// unserved past `config.tool_retention`, every `config.purge_interval`,
    /// until the server stops.
    pub async fn purge_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.config.purge_interval);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.shutdown.cancelled() => return,
            }
            let cutoff = SystemTime::now() - self.config.retention;
            match self.store.purge_finished_before(cutoff).await {
                Ok(0) => {}
                Ok(n) => info!(completions = n, "purged expired completions"),
                Err(e) => error!(error = %e, "purging expired completions failed"),
            }
            self.hub.prune();
            self.registry_upkeep().await;
        }
    }
}
