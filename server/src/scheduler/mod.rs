//! The scheduler: the one owner of errand's live state.
//!
//! Queued and running tasks, connected workers and per-session counts live in
//! one `State` behind a `Mutex` that is only held for short, synchronous
//! sections, never across an `.await`. The [`Scheduler`] around it does the
//! side effects: it stores a new task before it is queued, and a finished
//! one after the lock is released (`finisher.rs`). Dispatch records go to
//! [`Store::record_dispatch`](crate::store::Store::record_dispatch), which
//! must not block, *under* the lock, so they reach the store before any
//! finish of the same attempt; so do requeue records
//! ([`Store::record_requeue`](crate::store::Store::record_requeue): a worker
//! left, a restart), so that listings filtering by state agree with the
//! live state; timers and worker commands are started and
//! queued under the lock too, without waiting.
//!
//! **Nothing leaves before its record is durable.** An Assignment is queued
//! with the [`Durable`](crate::store::Durable) of its dispatch record
//! ([`Outgoing`]) and the worker's stream sends it only once that record is
//! committed (group commit shares one commit between many). Acks (SubmitTool), completions
//! and CancelTask answers go out after their store writes return. The one
//! send ahead of its record is CancelAssignment (a cancel or timeout): it
//! only stops work, and if a crash forgets the ending, the task runs again
//! as a new attempt, never under an attempt number already handed out.
//!
//! The API takes and returns domain types ([`crate::model`]); a worker's
//! commands arrive on its channel as [`Command`]s.
//!
//! - `state/`: the live state and its synchronous transitions (`mod.rs`),
//!   and what it tells about tools and load (`registry.rs`).
//! - `submit.rs`: a call checked, stored, queued and dispatched.
//! - `worker_tx.rs`: a worker's command channel ([`WorkerTx`], [`Outgoing`]).
//! - `registry.rs`: registrations, and the tool registry's stored copy.
//! - `admission.rs`: submit, registration, result and progress checks; quotas.
//! - [`digest`]: what a session is waiting for (`PendingDigest`), and
//!   acknowledgement.
//! - `progress.rs`: workers' progress reports, kept for the running task.
//! - `finisher.rs`: store write with retry, then the session's streams.
//! - `fallback.rs`: what answers a call that failed or timed out.
//! - `timers.rs`: per-attempt timeouts, and the queue deadlines.
//! - `unrecorded.rs`: a dispatch the store could not record is taken back,
//!   charged to neither the task nor the worker.
//! - `lifecycle.rs`: recover at start, drain at stop, purge meanwhile.
//! - [`queue`]: the fair per-tool queue, and the [`queue::Backlog`] seam:
//!   whether queued work waits here or (shared mode) in the store.
//! - `shared.rs`: what [`crate::cluster`] asks of the scheduler.
mod admission;
pub mod digest;
mod fallback;
mod finisher;
mod lifecycle;
mod progress;
pub mod queue;
mod registry;
pub(crate) mod shared;
mod state;
mod submit;
mod timers;
mod unrecorded;
pub mod views;
mod worker_tx;

use std::{
    sync::{Arc, Mutex, MutexGuard},
    time::SystemTime,
};

use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{debug, info};
use uuid::Uuid;

pub use admission::{not_found, parse_task_id};
use finisher::Finisher;
pub use finisher::Finishing;
pub use lifecycle::LeftRunning;
use queue::{Backlog, LocalBacklog};
pub use state::WorkerId;
use state::{Ended, State};
pub use submit::Admitted;
use worker_tx::Tokio;
pub use worker_tx::{CommandTx, Outgoing, WorkerTx};

use crate::{
    config::Config,
    error::Error,
    logs,
    metrics::{Load, LoadSource, Metrics},
    model::{Outcome, TaskRecord, TaskResult, TaskState, codes},
    sessions::{Activity, ActivityKind, SessionHub},
    store::SharedStore,
    tools::{ToolSpec, ValidationPool},
};

/// What a scheduler is built from, besides its config and store.
pub struct Parts {
    pub hub: Arc<SessionHub>,
    pub metrics: Arc<Metrics>,
    /// Cancelled when the server stops: timers and retries give up.
    pub shutdown: CancellationToken,
    /// Where queued work waits; [`LocalBacklog`] for a single server.
    pub backlog: Arc<dyn Backlog>,
}

impl Default for Parts {
    fn default() -> Self {
        Self {
            hub: Arc::default(),
            metrics: Arc::default(),
            shutdown: CancellationToken::new(),
            backlog: Arc::new(LocalBacklog),
        }
    }
}

/// The scheduler. Shared as `Arc<Scheduler>` by the handlers.
pub struct Scheduler {
    config: Config,
    store: SharedStore,
    state: Mutex<State<Tokio>>,
    hub: Arc<SessionHub>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    backlog: Arc<dyn Backlog>,
    /// Worker streams and result writes in flight: a graceful stop waits
    /// for them to reach the store.
    tracker: TaskTracker,
    finisher: Finisher,
    /// Where submitted arguments are checked against their tool's schema.
    validation: ValidationPool,
    /// Queue deadlines of the tasks submitted or recovered here.
    deadlines: Arc<timers::QueueDeadlines>,
    /// Deadlines of the attempts running here.
    attempt_deadlines: Arc<timers::AttemptDeadlines>,
    /// Held while the tool registry changes and is written to the store,
    /// so the store's copy ends as the live one.
    registry_writes: tokio::sync::Mutex<()>,
    /// The wait before dispatching again after a dispatch record failed.
    hold_backoff: unrecorded::HoldBackoff,
}

impl Scheduler {
    pub fn new(config: Config, store: SharedStore, parts: Parts) -> Arc<Self> {
        Arc::new(Self {
            config,
            store,
            state: Mutex::new(State::default()),
            hub: parts.hub,
            metrics: parts.metrics,
            shutdown: parts.shutdown,
            backlog: parts.backlog,
            tracker: TaskTracker::new(),
            finisher: Finisher::default(),
            validation: ValidationPool::default(),
            deadlines: Arc::default(),
            attempt_deadlines: Arc::default(),
            registry_writes: tokio::sync::Mutex::new(()),
            hold_backoff: Default::default(),
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The session hub its completions and progress reports go to.
    pub fn hub(&self) -> &Arc<SessionHub> {
        &self.hub
    }

    /// Worker streams and result writes in flight.
    pub fn tracker(&self) -> &TaskTracker {
        &self.tracker
    }

    fn lock(&self) -> MutexGuard<'_, State<Tokio>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Does what the last transitions asked: times dispatches, asks for
    /// shared work, wakes a drain. Call with the lock held. A dispatch is
    /// shown and measured only once its record is durable
    /// ([`Self::dispatch_recorded`]): one the store refuses is taken back.
    fn apply(self: &Arc<Self>, st: &mut State<Tokio>) {
        let effects = st.take_effects();
        for d in effects.dispatched {
            // Taken by a worker: its wait in the queue is over.
            self.deadlines.disarm(d.id);
            let timer = self.arm_timer(d.id, d.attempt, d.timeout);
            st.set_timer(d.id, d.attempt, timer);
            debug!(task_id = %d.id, attempt = d.attempt, "task dispatched");
        }
        if effects.wants_work {
            self.backlog.wants_work();
        }
        if effects.running_ended {
            self.finisher.wake_drain();
        }
    }

    /// Tells the dashboard that attempt `attempt` of task `id` started.
    fn record_start(&self, st: &State<Tokio>, id: Uuid, attempt: u32) {
        let (Some(task), Some((worker_id, name))) = (st.task(id), st.runner(id)) else {
            return;
        };
        self.hub.record(|| Activity {
            kind: ActivityKind::Started {
                attempt,
                worker_id,
                worker_name: name.to_string(),
            },
            task_id: id,
            session: task.session.clone(),
            tool: task.tool.clone(),
            at: task.started_at.unwrap_or_else(SystemTime::now),
        });
    }

    /// Takes a task out of the live state (see [`State::take`]), counting it
    /// as finishing until [`Self::end`] or [`Self::ended_one`].
    fn take(
        self: &Arc<Self>,
        st: &mut State<Tokio>,
        id: Uuid,
        state: TaskState,
        outcome: Outcome,
        tell_worker: Option<Arc<str>>,
    ) -> Option<Ended> {
        let ended = st.take(id, state, outcome, tell_worker, SystemTime::now());
        if ended.is_some() {
            self.deadlines.disarm(id);
            self.finisher.started();
        }
        self.apply(st);
        ended
    }

    /// Known tools of `tenant` ("" when auth is off), sorted by name, with
    /// the workers serving each.
    pub fn list_tools(&self, tenant: &str) -> Vec<(ToolSpec, u32)> {
        self.lock().list_tools(tenant)
    }

    /// Whether a connected worker (here or, in shared mode, elsewhere) serves
    /// tool key `tool`.
    pub fn is_served(&self, tool: &str) -> bool {
        self.lock().is_served(tool)
    }

    /// One task, live or finished.
    pub async fn get_task(&self, id: Uuid) -> Result<TaskRecord, Error> {
        if let Some(task) = self.live_task(id) {
            return Ok(task);
        }
        self.store.get_task(id).await?.ok_or_else(|| not_found(id))
    }

    /// Cancels a queued or running task; a non-empty `reason` (checked by
    /// the caller) reaches the worker and the completion's message.
    pub async fn cancel(self: &Arc<Self>, id: Uuid, reason: &str) -> Result<TaskRecord, Error> {
        let (why, tell) = crate::text::cancelled(reason);
        if let Some(ended) = self.take_cancelled(id, &why, &tell) {
            return self.end_detached(ended).await;
        }
        if let Some(call) = self.cancel_fallback(id, &why, &tell).await? {
            return Ok(call);
        }
        if let Some(c) = self.backlog.cancel_elsewhere(id, reason).await? {
            // Queued in the store or held by another server (told by a
            // notification, or at its next lease renewal).
            info!(task_id = %id, "task cancelled");
            self.hub.notify(&c.session, c.seq);
        }
        let task = self
            .store
            .get_task(id)
            .await?
            .ok_or_else(|| not_found(id))?;
        match task.state {
            TaskState::Cancelled => Ok(task),
            state if state.is_final() => Err(Error::FailedPrecondition(format!(
                "task {id} already finished as {}: cancelling changes nothing",
                state.name()
            ))),
            _ => Err(Error::FailedPrecondition(format!(
                "task {id} is completing right now: {}",
                crate::error::phrases::READ_OUTCOME
            ))),
        }
    }

    /// Takes task `id`, queued or running here, out of the live state as
    /// cancelled (`why` for its completion, `tell` for its worker); `None`
    /// when it is not live here. Its ending is the caller's to store.
    fn take_cancelled(self: &Arc<Self>, id: Uuid, why: &str, tell: &Arc<str>) -> Option<Ended> {
        let ended = {
            let mut st = self.lock();
            self.take(
                &mut st,
                id,
                TaskState::Cancelled,
                Outcome::error(codes::CANCELLED, why),
                Some(tell.clone()),
            )
        };
        if ended.is_some() {
            info!(task_id = %id, "task cancelled");
        }
        ended
    }

    /// A worker's result. Results for tasks the worker does not hold
    /// (finished, cancelled, timed out, given to another attempt, or never
    /// its own) are logged and dropped: they never complete a task twice.
    /// Waits only while the finisher is full. Returns the rest of the
    /// finish when its store write, once started, did not complete at once
    /// (see [`Self::start_finish`]): the caller drives it (a worker's stream
    /// polls its own finishes instead of spawning a task for each).
    pub async fn take_result(
        self: &Arc<Self>,
        worker: WorkerId,
        result: TaskResult,
    ) -> Option<Finishing> {
        let (state, outcome) =
            admission::judge_result(result.outcome, self.config.limits.max_result_bytes);
        let id = result.task_id;
        self.touch(worker);
        let mut ended = {
            let mut st = self.lock();
            if !st.holds(worker, id, result.attempt) {
                tracing::warn!(worker_id = worker, task_id = %id, attempt = result.attempt, "result for a task the worker does not hold ignored");
                return None;
            }
            self.take(&mut st, id, state, outcome, None)?
        };
        ended.finish.notes.summary =
            admission::summary(result.summary, &ended, self.config.limits.max_result_bytes);
        admission::bound_error_message(
            &mut ended.finish.outcome,
            ended.task.call.result_budget,
            self.config.limits.result_budget_bytes,
        );
        self.start_finish(ended).await
    }

    /// [`Self::take_result`] with the rest of the finish spawned (tests).
    #[cfg(test)]
    pub async fn on_result(self: &Arc<Self>, worker: WorkerId, result: TaskResult) {
        if let Some(rest) = self.take_result(worker, result).await {
            self.tracker.spawn(rest);
        }
    }

    /// A worker's stream ended: its running tasks go back to the queue with
    /// their place kept, or fail once their attempts are used up.
    /// As this server stops (its drain over), the streams it ends leave
    /// their runs as stored, for the next start: that is what the drain's
    /// last line promises, and ending them here would blame the worker.
    pub async fn worker_gone(self: &Arc<Self>, worker: WorkerId) {
        if self.shutdown.is_cancelled() {
            let left = self.lock().remove_worker_at_stop(worker, SystemTime::now());
            if let Some((name, running)) = left {
                info!(worker_id = worker, worker = %logs::field(&name), running, "worker stream ended as the server stops");
            }
            return;
        }
        let max_attempts = self.config.max_attempts;
        let (ended, released, gone_tools, requeues) = {
            let mut st = self.lock();
            let lost = |attempts| {
                Outcome::error(
                    codes::WORKER_LOST,
                    format!(
                        "the worker running the task went away, {}",
                        crate::text::on_attempts(attempts)
                    ),
                )
            };
            let Some(gone) = st.remove_worker(worker, max_attempts, lost, SystemTime::now()) else {
                return;
            };
            info!(worker_id = worker, worker = %logs::field(&gone.name), running = gone.running, "worker disconnected");
            let now = SystemTime::now();
            let mut requeues = Vec::with_capacity(gone.requeued.len());
            for (id, attempt) in &gone.requeued {
                tracing::warn!(task_id = %id, attempt, "worker lost mid-task: task queued for another attempt");
                // The store too, so that listings and filters by status see
                // it queued. `remove_worker` may have dispatched it already
                // (attempt + 1, recorded first): this record of the older
                // attempt then changes nothing, as each store keeps the
                // later attempt (SQLite's and memory's `attempts` guard,
                // the merge in `store/sql/batch.rs`, PostgreSQL leaving the
                // row to its holder).
                requeues.push(self.store.record_requeue(*id, *attempt));
                // It waits for a worker again, for its queue timeout.
                if let Some(task) = st.task(*id) {
                    let deadline = task.queue_deadline_from(now, self.config.default_queue_timeout);
                    self.arm_queue_timer(task, deadline);
                }
            }
            for _ in &gone.ended {
                self.finisher.started();
            }
            self.apply(&mut st);
            let released = if self.backlog.hands_back() {
                st.unservable(&gone.tools)
            } else {
                Vec::new()
            };
            (gone.ended, released, gone.tools, requeues)
        };
        self.backlog.tools_changed();
        self.backlog.give_back(released).await;
        self.unserved_now(&gone_tools).await;
        futures::future::join_all(ended.into_iter().map(|e| self.end(e))).await;
        // Last, so nothing above waits on the store's commit: the worker's
        // stream ends once listings see its tasks queued. Failures are
        // logged by the store; the tasks run on regardless.
        futures::future::join_all(requeues.into_iter().map(crate::store::Durable::wait)).await;
    }

    fn live_task(&self, id: Uuid) -> Option<TaskRecord> {
        self.lock().task(id).cloned()
    }
}

impl LoadSource for Scheduler {
    fn load(&self) -> Load {
        let (tools, workers) = self.lock().load();
        Load { tools, workers }
    }
}

#[cfg(test)]
mod tests;
