//! The scheduler: the one owner of errand's live state.
//!
//! Queued and running tasks, connected workers and per-session counts live in
//! one [`State`] behind a `Mutex` that is only held for short, synchronous
//! sections, never across an `.await`. Every transition that must outlive the
//! process is handed to the [`Store`](crate::store::Store) after the lock is
//! released; completions then wake the session's streams through the
//! [`SessionHub`].
//!
//! **Shared mode.** When the store offers a
//! [`SharedQueue`](crate::store::SharedQueue) (several servers on one
//! database), the queue lives in the store: a submit is only stored, and
//! [`crate::cluster`] claims queued tasks for this server's workers and hands
//! them to [`Core::adopt`]; from there they are dispatched, timed out,
//! retried and finished exactly as in single-server mode. Everything else
//! here is the same in both modes.
use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, SystemTime},
};

use errand_proto::v1 as pb;
use futures::future::join_all;
use tokio::{
    sync::{Notify, mpsc},
    task::AbortHandle,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tonic::Status;
use tracing::{debug, error, info, warn};
use uuid::Uuid;

use crate::{
    config::Config,
    error::Error,
    metrics::Metrics,
    model::{Finish, Outcome, TaskRecord, TaskState, codes},
    queue::FairQueue,
    sessions::SessionHub,
    store::{Inserted, SharedStore, StoreError, ToolAdvert},
    tenant,
    tools::ToolSpec,
};

/// Server-side ID of one worker connection.
pub type WorkerId = u64;

/// Commands to one worker's `Connect` response stream.
pub type CommandTx = mpsc::Sender<Result<pb::WorkerCommand, Status>>;

/// The scheduler. Shared as `Arc<Core>` by every handler.
pub struct Core {
    config: Config,
    store: SharedStore,
    state: Mutex<State>,
    sessions: SessionHub,
    shutdown: CancellationToken,
    metrics: Metrics,
    /// Worker streams in flight: a graceful stop waits for their last
    /// results to reach the store.
    tracker: TaskTracker,
    /// Woken when a running task ends while the server drains.
    idle: Notify,
    /// Endings taken from the live state and not yet in the store: a drain
    /// waits for them too, so streams can deliver them before they close.
    finishing: AtomicUsize,
    /// Shared mode: wakes the claimer (a worker has room, work was queued).
    claim_wake: Notify,
    /// Shared mode: wakes the publisher of this server's tools.
    tools_wake: Notify,
}

#[derive(Default)]
struct State {
    /// Unfinished tasks only; finished ones live in the store.
    tasks: HashMap<Uuid, Live>,
    tools: HashMap<Arc<str>, ToolEntry>,
    workers: HashMap<WorkerId, WorkerEntry>,
    /// Queued plus running tasks per session. The key is the one `Arc<str>`
    /// every task of the session shares.
    pending: HashMap<Arc<str>, usize>,
    /// Queued plus running tasks per tenant (see [`tenant`]; "" when auth is off).
    tenant_pending: HashMap<Box<str>, usize>,
    /// Shutting down: no new submits, registrations or dispatches.
    draining: bool,
    next_worker: WorkerId,
    /// Shared mode: tools other servers' workers serve, and how many.
    remote: HashMap<Arc<str>, (ToolSpec, u32)>,
}

/// What the live state holds, for metrics.
pub struct Load {
    /// Per tool key: queued and running tasks.
    pub tools: Vec<(Arc<str>, usize, usize)>,
    pub workers: usize,
}

struct Live {
    task: TaskRecord,
    worker: Option<WorkerId>,
    timer: Option<AbortHandle>,
}

#[derive(Default)]
struct ToolEntry {
    /// `None` while the tool is known only from tasks recovered at start.
    spec: Option<ToolSpec>,
    workers: Vec<WorkerId>,
    queue: FairQueue,
}

struct WorkerEntry {
    name: String,
    tools: Vec<Arc<str>>,
    max_concurrency: usize,
    running: HashSet<Uuid>,
    tx: CommandTx,
    /// Its stream is gone; cleanup is on the way. Gets no more tasks.
    closed: bool,
    /// Where the next round over its tools starts, so no tool starves another.
    next_tool: usize,
}

impl WorkerEntry {
    fn has_room(&self) -> bool {
        !self.closed && self.running.len() < self.max_concurrency
    }
}

/// A task removed from the live state, on its way to the store.
struct Ending {
    task: TaskRecord,
    finish: Finish,
}

impl Core {
    pub fn new(config: Config, store: SharedStore) -> Arc<Self> {
        Arc::new(Self {
            config,
            store,
            state: Mutex::new(State::default()),
            sessions: SessionHub::default(),
            shutdown: CancellationToken::new(),
            metrics: Metrics::default(),
            tracker: TaskTracker::new(),
            idle: Notify::new(),
            finishing: AtomicUsize::new(0),
            claim_wake: Notify::new(),
            tools_wake: Notify::new(),
        })
    }

    /// Whether the queue lives in a store shared with other servers.
    pub fn is_shared(&self) -> bool {
        self.store.shared().is_some()
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn store(&self) -> &SharedStore {
        &self.store
    }

    pub fn sessions(&self) -> &SessionHub {
        &self.sessions
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn tracker(&self) -> &TaskTracker {
        &self.tracker
    }

    /// Cancelled when the server stops: streams end and workers are let go.
    pub fn shutdown_token(&self) -> &CancellationToken {
        &self.shutdown
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes up the work a previous run left: queued tasks are queued again,
    /// running ones get a new attempt (or fail once attempts are used up).
    pub async fn recover(self: &Arc<Self>) -> Result<usize, StoreError> {
        if self.is_shared() {
            // The shared queue is the store's; expired leases are reclaimed
            // by whichever server reaps first.
            return Ok(0);
        }
        let tasks = self.store.unfinished_tasks().await?;
        let count = tasks.len();
        let mut exhausted = Vec::new();
        {
            let mut st = self.lock();
            let st = &mut *st;
            for mut task in tasks {
                if task.attempts >= self.config.max_attempts {
                    let message = format!(
                        "the server stopped while the task ran, on each of its {} attempts",
                        task.attempts
                    );
                    self.finishing.fetch_add(1, Ordering::SeqCst);
                    exhausted.push(Ending {
                        finish: finish(
                            &task,
                            TaskState::Failed,
                            Outcome::error(codes::WORKER_LOST, message),
                        ),
                        task,
                    });
                    continue;
                }
                task.state = TaskState::Queued;
                task.session = st.reserve(&task.session);
                let entry = st.tools.entry(task.tool.clone()).or_default();
                entry.queue.push_back(&task.session, task.id);
                st.tasks.insert(
                    task.id,
                    Live {
                        task,
                        worker: None,
                        timer: None,
                    },
                );
            }
        }
        join_all(exhausted.into_iter().map(|e| self.finalize(e))).await;
        if count > 0 {
            info!(tasks = count, "recovered unfinished tasks");
        }
        Ok(count)
    }

    /// Known tools, sorted by name, as `ListTools` shows them.
    /// Only `tenant`'s tools ("" when auth is off).
    pub fn list_tools(&self, tenant: &str) -> Vec<pb::Tool> {
        let st = self.lock();
        let mut tools: Vec<_> = st
            .tools
            .iter()
            .filter(|(name, _)| tenant::of(name) == tenant)
            .map(|(_, t)| t)
            .filter_map(|t| t.spec.as_ref().map(|s| s.to_proto(t.workers.len() as u32)))
            .collect();
        for (name, (spec, workers)) in st.remote.iter().filter(|(n, _)| tenant::of(n) == tenant) {
            let shown = tenant::strip(name);
            match tools.iter_mut().find(|t| t.name == shown) {
                Some(t) => t.workers += workers,
                None => tools.push(spec.to_proto(*workers)),
            }
        }
        tools.sort_by(|a, b| a.name.cmp(&b.name));
        tools
    }

    /// Accepts one tool call: checked, stored, queued, dispatched if a worker
    /// has room. Returns the task and whether it was an idempotent repeat.
    pub async fn submit(
        self: &Arc<Self>,
        req: pb::SubmitToolRequest,
    ) -> Result<(TaskRecord, bool), Error> {
        let limits = &self.config.limits;
        self.check_session(&req.session_id)?;
        if req.idempotency_key.len() > limits.max_idempotency_key_bytes {
            return Err(Error::invalid(format!(
                "idempotency_key is {} bytes, the limit is {}",
                req.idempotency_key.len(),
                limits.max_idempotency_key_bytes
            )));
        }
        crate::tools::check_timeout("timeout_ms", req.timeout_ms, limits)?;
        let spec = self.tool_spec(&req.tool)?;
        let arguments = spec.check_arguments(&req.arguments_json, limits)?;
        let timeout = if req.timeout_ms > 0 {
            Duration::from_millis(req.timeout_ms)
        } else {
            spec.timeout.unwrap_or(self.config.default_timeout)
        };
        let session = {
            let mut st = self.lock();
            if st.draining {
                return Err(Error::Unavailable(
                    "the server is shutting down: submit again once it is back".into(),
                ));
            }
            let owner = tenant::of(&req.session_id);
            let tenant_pending = st.tenant_pending.get(owner).copied().unwrap_or(0);
            if tenant_pending >= limits.max_pending_per_tenant {
                return Err(Error::ResourceExhausted(format!(
                    "your tenant has {tenant_pending} unfinished tasks, the limit is {}: wait for completions or cancel some",
                    limits.max_pending_per_tenant
                )));
            }
            let pending = st
                .pending
                .get(req.session_id.as_str())
                .copied()
                .unwrap_or(0);
            if pending >= limits.max_pending_per_session {
                return Err(Error::ResourceExhausted(format!(
                    "session {:?} has {pending} unfinished tasks, the limit is {}: wait for completions or cancel some",
                    tenant::strip(&req.session_id),
                    limits.max_pending_per_session
                )));
            }
            st.reserve(&req.session_id)
        };
        let task = TaskRecord {
            id: Uuid::new_v4(),
            session,
            tool: spec.name.clone(),
            arguments,
            timeout,
            idempotency_key: (!req.idempotency_key.is_empty())
                .then(|| req.idempotency_key.as_str().into()),
            created_at: SystemTime::now(),
            state: TaskState::Queued,
            attempts: 0,
            started_at: None,
            finished_at: None,
            outcome: None,
            seq: 0,
        };
        // Shared mode: a task a worker here can take at once is stored as
        // claimed by this server (`Running` at insert) and dispatched here,
        // with no trip through the shared queue.
        let claim_here = self.is_shared() && self.has_room_for(&task.tool);
        let stored = if claim_here {
            let mut claimed = task.clone();
            claimed.state = TaskState::Running;
            self.store.insert_task(&claimed).await
        } else {
            self.store.insert_task(&task).await
        };
        match stored {
            Ok(Inserted::New) => {}
            Ok(Inserted::Existing(earlier)) => {
                self.lock().release(&task.session);
                let current = self.live_task(earlier.id).unwrap_or(*earlier);
                return Ok((current, true));
            }
            Err(e) => {
                self.lock().release(&task.session);
                return Err(e.into());
            }
        }
        debug!(task_id = %task.id, session_id = %task.session, tool = %task.tool, "task queued");
        self.metrics.submitted(&task.tool);
        if self.is_shared() {
            self.lock().release(&task.session);
            if claim_here {
                self.adopt(vec![task.clone()]).await;
            } else {
                // Queued in the store: a claimer (this server's or
                // another's) takes it for a worker with room.
                self.claim_wake.notify_one();
            }
            return Ok((task, false));
        }
        let mut st = self.lock();
        let entry = st.tools.entry(task.tool.clone()).or_default();
        entry.queue.push_back(&task.session, task.id);
        st.tasks.insert(
            task.id,
            Live {
                task: task.clone(),
                worker: None,
                timer: None,
            },
        );
        self.dispatch_tool(&mut st, &task.tool);
        Ok((task, false))
    }

    /// One task, live or finished.
    pub async fn get_task(&self, task_id: &str) -> Result<TaskRecord, Error> {
        let id = parse_task_id(task_id)?;
        if let Some(task) = self.live_task(id) {
            return Ok(task);
        }
        self.store
            .get_task(id)
            .await?
            .ok_or_else(|| not_found(task_id))
    }

    /// Cancels a queued or running task.
    pub async fn cancel(self: &Arc<Self>, task_id: &str) -> Result<TaskRecord, Error> {
        let id = parse_task_id(task_id)?;
        let ending = {
            let mut st = self.lock();
            self.take(
                &mut st,
                id,
                TaskState::Cancelled,
                Outcome::error(codes::CANCELLED, "cancelled by the client"),
                Some(codes::CANCELLED),
            )
        };
        if let Some(ending) = ending {
            info!(task_id = %id, "task cancelled");
            return Ok(self.finalize(ending).await);
        }
        if let Some(shared) = self.store.shared()
            && let Some(c) = shared.cancel(id).await?
        {
            // Queued in the store or held by another server (told by a
            // notification, or at its next lease renewal).
            info!(task_id = %id, "task cancelled");
            self.sessions.notify(&c.session, c.seq);
        }
        let task = self
            .store
            .get_task(id)
            .await?
            .ok_or_else(|| not_found(task_id))?;
        match task.state {
            TaskState::Cancelled => Ok(task),
            state if state.is_final() => Err(Error::FailedPrecondition(format!(
                "task {id} already finished as {}: cancelling changes nothing",
                state.name()
            ))),
            _ => Err(Error::FailedPrecondition(format!(
                "task {id} is completing right now: read its outcome with GetTask"
            ))),
        }
    }

    /// Releases a session's completions up to `up_to_seq`.
    pub async fn ack_completions(&self, session: &str, up_to_seq: u64) -> Result<u64, Error> {
        self.check_session(session)?;
        Ok(self.store.ack_completions(session, up_to_seq).await?)
    }

    /// Adds a worker and its tools; sends `Registered`, then any queued work.
    pub fn register_worker(
        self: &Arc<Self>,
        reg: &pb::Register,
        tx: CommandTx,
    ) -> Result<WorkerId, Error> {
        let limits = &self.config.limits;
        if reg.tools.is_empty() {
            return Err(Error::invalid("Register must list at least one tool"));
        }
        if reg.tools.len() > limits.max_tools_per_worker {
            return Err(Error::invalid(format!(
                "Register lists {} tools, the limit is {}",
                reg.tools.len(),
                limits.max_tools_per_worker
            )));
        }
        if reg.max_concurrency > limits.max_worker_concurrency {
            return Err(Error::invalid(format!(
                "max_concurrency {} is above the limit of {}",
                reg.max_concurrency, limits.max_worker_concurrency
            )));
        }
        let specs = reg
            .tools
            .iter()
            .map(|t| ToolSpec::from_proto(t, limits))
            .collect::<Result<Vec<_>, _>>()?;
        let mut names = HashSet::new();
        if let Some(dup) = specs.iter().find(|s| !names.insert(s.name.clone())) {
            return Err(Error::invalid(format!(
                "Register lists tool `{}` twice",
                dup.name
            )));
        }
        let max_concurrency = reg.max_concurrency.max(1) as usize;
        let mut st = self.lock();
        if st.draining {
            return Err(Error::Unavailable(
                "the server is shutting down: connect again once it is back".into(),
            ));
        }
        let st_ref = &mut *st;
        st_ref.next_worker += 1;
        let id = st_ref.next_worker;
        let mut tools = Vec::with_capacity(specs.len());
        for spec in specs {
            let name = spec.name.clone();
            let entry = st_ref.tools.entry(name.clone()).or_default();
            entry.spec = Some(spec);
            entry.workers.push(id);
            tools.push(name);
        }
        let registered = pb::WorkerCommand {
            kind: Some(pb::worker_command::Kind::Registered(pb::Registered {
                worker_id: id.to_string(),
            })),
        };
        // The channel is new and empty: this cannot be full.
        let _ = tx.try_send(Ok(registered));
        let name = if reg.worker_name.is_empty() {
            "worker".to_string()
        } else {
            reg.worker_name.clone()
        };
        info!(worker_id = id, worker = %name, tools = ?tools, max_concurrency, "worker registered");
        st_ref.workers.insert(
            id,
            WorkerEntry {
                name,
                tools,
                max_concurrency,
                running: HashSet::new(),
                tx,
                closed: false,
                next_tool: 0,
            },
        );
        self.fill_worker(&mut st, id);
        self.tools_wake.notify_one();
        Ok(id)
    }

    /// Checks a worker's result and takes its task out of the live state.
    /// Results for tasks the worker does not hold (finished, cancelled, timed
    /// out, given to another attempt, or never its own) are logged and
    /// dropped: they never complete a task twice.
    fn accept_result(self: &Arc<Self>, worker: WorkerId, result: pb::TaskResult) -> Option<Ending> {
        let Ok(id) = Uuid::parse_str(&result.task_id) else {
            warn!(worker_id = worker, task_id = %result.task_id, "result with a malformed task_id ignored");
            return None;
        };
        let max_result = self.config.limits.max_result_bytes;
        let (state, outcome) = match result.outcome {
            Some(pb::task_result::Outcome::ResultJson(json)) if json.len() > max_result => (
                TaskState::Failed,
                Outcome::error(
                    codes::INVALID_RESULT,
                    format!(
                        "the tool's result is {} bytes, the limit is {max_result}",
                        json.len()
                    ),
                ),
            ),
            Some(pb::task_result::Outcome::ResultJson(json)) => {
                match serde_json::from_str::<serde::de::IgnoredAny>(&json) {
                    Ok(_) => (TaskState::Succeeded, Outcome::Result(json)),
                    Err(e) => (
                        TaskState::Failed,
                        Outcome::error(
                            codes::INVALID_RESULT,
                            format!("the worker sent a result that is not JSON: {e}"),
                        ),
                    ),
                }
            }
            Some(pb::task_result::Outcome::Error(e)) => {
                let code = if e.code.is_empty() {
                    codes::TOOL_ERROR.to_string()
                } else {
                    e.code
                };
                let mut message = e.message;
                truncate_utf8(&mut message, max_result);
                (TaskState::Failed, Outcome::Error { code, message })
            }
            None => (
                TaskState::Failed,
                Outcome::error(
                    codes::INVALID_RESULT,
                    "the worker sent a result with neither result_json nor error",
                ),
            ),
        };
        let mut st = self.lock();
        let held = st.tasks.get(&id).is_some_and(|live| {
            live.worker == Some(worker)
                && (result.attempt == 0 || result.attempt == live.task.attempts)
        });
        if !held {
            warn!(worker_id = worker, task_id = %id, attempt = result.attempt, "result for a task the worker does not hold ignored");
            return None;
        }
        self.take(&mut st, id, state, outcome, None)
    }

    /// A worker's stream ended: its running tasks go back to the queue with
    /// their place kept, or fail once their attempts are used up.
    pub async fn worker_gone(self: &Arc<Self>, worker: WorkerId) {
        let mut endings = Vec::new();
        let mut released = Vec::new();
        {
            let mut st = self.lock();
            let st = &mut *st;
            let Some(entry) = st.workers.remove(&worker) else {
                return;
            };
            for tool in &entry.tools {
                if let Some(t) = st.tools.get_mut(tool) {
                    t.workers.retain(|w| *w != worker);
                }
            }
            info!(worker_id = worker, worker = %entry.name, running = entry.running.len(), "worker disconnected");
            for id in &entry.running {
                let Some(live) = st.tasks.get_mut(id) else {
                    continue;
                };
                live.worker = None;
                if let Some(timer) = live.timer.take() {
                    timer.abort();
                }
                if live.task.attempts >= self.config.max_attempts {
                    let message = format!(
                        "the worker running the task went away, on each of its {} attempts",
                        live.task.attempts
                    );
                    endings.extend(self.take(
                        st,
                        *id,
                        TaskState::Failed,
                        Outcome::error(codes::WORKER_LOST, message),
                        None,
                    ));
                } else {
                    warn!(task_id = %id, attempt = live.task.attempts, "worker lost mid-task: task queued for another attempt");
                    live.task.state = TaskState::Queued;
                    let tool = st.tools.entry(live.task.tool.clone()).or_default();
                    tool.queue.push_front(&live.task.session, *id);
                }
            }
            for tool in &entry.tools {
                self.dispatch_tool(st, tool);
            }
            if st.draining {
                self.idle.notify_waiters();
            }
            if self.is_shared() {
                released = self.unservable(st, &entry.tools);
            }
        }
        self.tools_wake.notify_one();
        self.give_back(released).await;
        join_all(endings.into_iter().map(|e| self.finalize(e))).await;
    }

    /// Handles one message a worker sent after `Register`. Returns the ending
    /// to finalize, if the message finished a task.
    pub fn on_worker_message(
        self: &Arc<Self>,
        worker: WorkerId,
        msg: pb::WorkerMessage,
    ) -> Result<Option<impl Future<Output = TaskRecord> + use<>>, Error> {
        match msg.kind {
            Some(pb::worker_message::Kind::Result(result)) => {
                let ending = self.accept_result(worker, result);
                let core = self.clone();
                Ok(ending.map(|e| async move { core.finalize(e).await }))
            }
            Some(pb::worker_message::Kind::Heartbeat(_)) => Ok(None),
            Some(pb::worker_message::Kind::Register(_)) => Err(Error::invalid(
                "Register may only be sent once, as the first message",
            )),
            None => Err(Error::invalid("WorkerMessage has no kind set")),
        }
    }

    /// Removes a task from the live state and frees what it held.
    /// `tell_worker` sends the worker a `CancelAssignment` with that reason.
    fn take(
        self: &Arc<Self>,
        st: &mut State,
        id: Uuid,
        state: TaskState,
        outcome: Outcome,
        tell_worker: Option<&str>,
    ) -> Option<Ending> {
        let live = st.tasks.remove(&id)?;
        if let Some(timer) = live.timer {
            timer.abort();
        }
        match live.worker {
            None => {
                if let Some(tool) = st.tools.get_mut(&live.task.tool) {
                    tool.queue.remove(&live.task.session, id);
                }
            }
            Some(worker) => {
                if let Some(w) = st.workers.get_mut(&worker) {
                    w.running.remove(&id);
                    if let Some(reason) = tell_worker {
                        let cancel = pb::WorkerCommand {
                            kind: Some(pb::worker_command::Kind::Cancel(pb::CancelAssignment {
                                task_id: id.to_string(),
                                reason: reason.to_string(),
                            })),
                        };
                        if w.tx.try_send(Ok(cancel)).is_err() {
                            debug!(worker_id = worker, task_id = %id, "worker not reachable for CancelAssignment");
                        }
                    }
                }
                self.fill_worker(st, worker);
                if st.draining {
                    self.idle.notify_waiters();
                }
            }
        }
        st.release(&live.task.session);
        self.finishing.fetch_add(1, Ordering::SeqCst);
        let finish = finish(&live.task, state, outcome);
        Some(Ending {
            task: live.task,
            finish,
        })
    }

    /// Writes a finished task to the store and wakes its session's streams.
    /// Store errors are retried: the task has left the live state and must
    /// not be lost. Returns the task as finished.
    async fn finalize(&self, ending: Ending) -> TaskRecord {
        let Ending { mut task, finish } = ending;
        let mut backoff = Duration::from_millis(50);
        let completion = loop {
            match self.store.finish_task(&finish).await {
                Ok(c) => break c,
                Err(e) => {
                    error!(task_id = %finish.task_id, error = %e, "storing a completion failed; retrying");
                    if self.shutdown.is_cancelled() {
                        // Recovery at the next start runs the task again.
                        break None;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
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
            debug!(task_id = %task.id, session_id = %task.session, seq = c.seq, status = task.state.name(), "task completed");
            self.sessions.completed(c);
        }
        self.ended_one();
        task
    }

    /// Counts off one ending taken by [`Core::take`], finalized or dropped.
    /// Takes the lock: never call it with the lock held.
    fn ended_one(&self) {
        if self.finishing.fetch_sub(1, Ordering::SeqCst) == 1 && self.lock().draining {
            self.idle.notify_waiters();
        }
    }

    /// Gives queued tasks of `tool` to its workers with room, the least
    /// loaded first.
    fn dispatch_tool(self: &Arc<Self>, st: &mut State, tool: &str) {
        if st.draining {
            return;
        }
        loop {
            let Some(entry) = st.tools.get(tool) else {
                return;
            };
            if entry.queue.is_empty() {
                return;
            }
            let best = entry
                .workers
                .iter()
                .filter_map(|id| st.workers.get(id).map(|w| (*id, w)))
                .filter(|(_, w)| w.has_room())
                .max_by_key(|(_, w)| w.max_concurrency - w.running.len())
                .map(|(id, _)| id);
            let Some(worker) = best else { return };
            let Some((_, task)) = st.tools.get_mut(tool).and_then(|t| t.queue.pop()) else {
                return;
            };
            self.assign(st, worker, task);
        }
    }

    /// Fills a worker's free slots, taking its tools in turn.
    fn fill_worker(self: &Arc<Self>, st: &mut State, worker: WorkerId) {
        if st.draining {
            return;
        }
        loop {
            let State { workers, tools, .. } = &mut *st;
            let Some(w) = workers.get_mut(&worker) else {
                return;
            };
            if !w.has_room() {
                return;
            }
            let n = w.tools.len();
            let picked = (0..n).find_map(|i| {
                let idx = (w.next_tool + i) % n;
                tools.get_mut(&w.tools[idx])?.queue.pop()
            });
            let Some((_, task)) = picked else {
                // Room left and nothing queued here: the shared queue may
                // have some.
                self.claim_wake.notify_one();
                return;
            };
            self.assign(st, worker, task);
        }
    }

    fn assign(self: &Arc<Self>, st: &mut State, worker: WorkerId, id: Uuid) {
        let State { tasks, workers, .. } = &mut *st;
        let (Some(live), Some(w)) = (tasks.get_mut(&id), workers.get_mut(&worker)) else {
            return;
        };
        let now = SystemTime::now();
        live.task.state = TaskState::Running;
        live.task.attempts += 1;
        live.task.started_at = Some(now);
        live.worker = Some(worker);
        w.running.insert(id);
        if let Some(idx) = w.tools.iter().position(|t| *t == live.task.tool) {
            w.next_tool = (idx + 1) % w.tools.len();
        }
        let attempt = live.task.attempts;
        if attempt == 1 {
            self.metrics
                .dispatched_after(now.duration_since(live.task.created_at).unwrap_or_default());
        }
        let assignment = pb::WorkerCommand {
            kind: Some(pb::worker_command::Kind::Assignment(pb::Assignment {
                task_id: id.to_string(),
                session_id: tenant::strip(&live.task.session).to_string(),
                tool: tenant::strip(&live.task.tool).to_string(),
                arguments_json: live.task.arguments.to_string(),
                attempt,
                timeout_ms: crate::model::millis(live.task.timeout),
            })),
        };
        if w.tx.try_send(Ok(assignment)).is_err() {
            // The stream is gone or stuck; its cleanup gives the task back.
            w.closed = true;
        }
        self.store.record_dispatch(id, attempt, now);
        let core = self.clone();
        let timeout = live.task.timeout;
        let timer = tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            core.time_out(id, attempt).await;
        });
        live.timer = Some(timer.abort_handle());
        debug!(task_id = %id, worker_id = worker, attempt, "task dispatched");
    }

    async fn time_out(self: Arc<Self>, id: Uuid, attempt: u32) {
        let ending = {
            let mut st = self.lock();
            match st.tasks.get_mut(&id) {
                Some(live)
                    if live.task.state == TaskState::Running && live.task.attempts == attempt =>
                {
                    // This timer is the running task: dropping, not aborting, it.
                    live.timer = None;
                    let message = format!(
                        "no result within {} ms",
                        crate::model::millis(live.task.timeout)
                    );
                    self.take(
                        &mut st,
                        id,
                        TaskState::TimedOut,
                        Outcome::error(codes::TIMEOUT, message),
                        Some(codes::TIMEOUT),
                    )
                }
                _ => None,
            }
        };
        if let Some(ending) = ending {
            info!(task_id = %id, attempt, "task timed out");
            self.finalize(ending).await;
        }
    }

    /// Removes expired completions and finished tasks, periodically.
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
            self.sessions.prune();
        }
    }

    /// Queued and running tasks per tool, and workers connected.
    pub fn load(&self) -> Load {
        let st = self.lock();
        let mut running: HashMap<&Arc<str>, usize> = HashMap::new();
        for live in st.tasks.values().filter(|l| l.worker.is_some()) {
            *running.entry(&live.task.tool).or_default() += 1;
        }
        let tools = st
            .tools
            .iter()
            .map(|(name, t)| {
                let r = running.get(name).copied().unwrap_or(0);
                (name.clone(), t.queue.len(), r)
            })
            .collect();
        Load {
            tools,
            workers: st.workers.len(),
        }
    }

    /// Starts a graceful stop: no new submits, registrations or dispatches;
    /// waits until no task runs, or `grace` has passed. Returns how many
    /// tasks still run (they are taken up again at the next start).
    pub async fn drain(&self, grace: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + grace;
        self.lock().draining = true;
        loop {
            let idle = self.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            let running = self
                .lock()
                .tasks
                .values()
                .filter(|l| l.worker.is_some())
                .count();
            if running == 0 && self.finishing.load(Ordering::SeqCst) == 0 {
                return 0;
            }
            info!(running, "waiting for running tasks to finish");
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                return self
                    .lock()
                    .tasks
                    .values()
                    .filter(|l| l.worker.is_some())
                    .count();
            }
        }
    }

    fn live_task(&self, id: Uuid) -> Option<TaskRecord> {
        self.lock().tasks.get(&id).map(|l| l.task.clone())
    }

    fn tool_spec(&self, name: &str) -> Result<ToolSpec, Error> {
        let st = self.lock();
        if let Some(spec) = st.tools.get(name).and_then(|t| t.spec.clone()) {
            return Ok(spec);
        }
        if let Some((spec, _)) = st.remote.get(name) {
            return Ok(spec.clone());
        }
        // Only the caller's tenant's tools: another tenant's are not its business.
        let owner = tenant::of(name);
        let mut known: Vec<&str> = st
            .tools
            .iter()
            .filter(|(n, t)| t.spec.is_some() && tenant::of(n) == owner)
            .map(|(n, _)| tenant::strip(n))
            .chain(
                st.remote
                    .keys()
                    .filter(|n| tenant::of(n) == owner)
                    .map(|n| tenant::strip(n)),
            )
            .collect();
        known.sort_unstable();
        known.dedup();
        let known = if known.is_empty() {
            "none yet: start a worker that serves it".to_string()
        } else {
            known.join(", ")
        };
        Err(Error::NotFound(format!(
            "unknown tool {:?}; known tools: {known}",
            tenant::strip(name)
        )))
    }

    /// Checks a session name (or key: its tenant prefix does not count).
    pub fn check_session(&self, session: &str) -> Result<(), Error> {
        let max = self.config.limits.max_session_id_bytes;
        let session = tenant::strip(session);
        if session.is_empty() {
            return Err(Error::invalid(
                "session_id is required: name the agent conversation",
            ));
        }
        if session.len() > max {
            return Err(Error::invalid(format!(
                "session_id is {} bytes, the limit is {max}",
                session.len()
            )));
        }
        Ok(())
    }
}

impl State {
    /// Counts one more pending task for the session; returns the session's
    /// shared name.
    fn reserve(&mut self, session: &str) -> Arc<str> {
        *self
            .tenant_pending
            .entry(tenant::of(session).into())
            .or_default() += 1;
        if let Some((name, count)) = self.pending.get_key_value(session) {
            let name = name.clone();
            let count = *count;
            self.pending.insert(name.clone(), count + 1);
            return name;
        }
        let name: Arc<str> = session.into();
        self.pending.insert(name.clone(), 1);
        name
    }

    fn release(&mut self, session: &str) {
        if let Some(count) = self.tenant_pending.get_mut(tenant::of(session)) {
            *count -= 1;
            if *count == 0 {
                self.tenant_pending.remove(tenant::of(session));
            }
        }
        if let Some(count) = self.pending.get_mut(session) {
            *count -= 1;
            if *count == 0 {
                self.pending.remove(session);
            }
        }
    }
}

fn finish(task: &TaskRecord, state: TaskState, outcome: Outcome) -> Finish {
    Finish {
        task_id: task.id,
        state,
        outcome,
        attempts: task.attempts,
        finished_at: SystemTime::now(),
    }
}

fn parse_task_id(task_id: &str) -> Result<Uuid, Error> {
    if task_id.is_empty() {
        return Err(Error::invalid("task_id is required"));
    }
    Uuid::parse_str(task_id).map_err(|_| {
        Error::invalid(format!(
            "task_id {task_id:?} is not a UUID: pass the task_id SubmitTool returned"
        ))
    })
}

fn not_found(task_id: &str) -> Error {
    Error::NotFound(format!(
        "no task {task_id}: it never existed here or is no longer retained"
    ))
}

fn truncate_utf8(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

/// Shared mode: what [`crate::cluster`] asks of the live state. Each method
/// holds the lock for one short synchronous section, as everywhere here.
impl Core {
    pub(crate) fn claim_wake(&self) -> &Notify {
        &self.claim_wake
    }

    pub(crate) fn tools_wake(&self) -> &Notify {
        &self.tools_wake
    }

    /// Per tool served here: free worker slots not already covered by
    /// claimed tasks waiting here.
    pub(crate) fn wants(&self) -> Vec<(Arc<str>, usize)> {
        let st = self.lock();
        st.tools
            .iter()
            .filter_map(|(name, entry)| {
                let free: usize = entry
                    .workers
                    .iter()
                    .filter_map(|id| st.workers.get(id))
                    .filter(|w| w.has_room())
                    .map(|w| w.max_concurrency - w.running.len())
                    .sum();
                let want = free.saturating_sub(entry.queue.len());
                (want > 0).then(|| (name.clone(), want))
            })
            .collect()
    }

    /// Whether a worker here serving `tool` has a free slot and no claimed
    /// task of the tool is waiting here.
    fn has_room_for(&self, tool: &str) -> bool {
        let st = self.lock();
        st.tools.get(tool).is_some_and(|entry| {
            entry.queue.is_empty()
                && entry
                    .workers
                    .iter()
                    .filter_map(|id| st.workers.get(id))
                    .any(WorkerEntry::has_room)
        })
    }

    /// Whether a worker here serves `tool`.
    pub(crate) fn serves(&self, tool: &str) -> bool {
        self.lock()
            .tools
            .get(tool)
            .is_some_and(|t| !t.workers.is_empty())
    }

    /// Takes claimed tasks into the live state and dispatches them. Tasks no
    /// local worker serves any more go back to the store.
    pub(crate) async fn adopt(self: &Arc<Self>, tasks: Vec<TaskRecord>) {
        let mut released = Vec::new();
        {
            let mut st = self.lock();
            let st = &mut *st;
            let mut tools = HashSet::new();
            for mut task in tasks {
                if st.tasks.contains_key(&task.id) {
                    continue;
                }
                task.state = TaskState::Queued;
                task.session = st.reserve(&task.session);
                let entry = st.tools.entry(task.tool.clone()).or_default();
                entry.queue.push_back(&task.session, task.id);
                tools.insert(task.tool.clone());
                st.tasks.insert(
                    task.id,
                    Live {
                        task,
                        worker: None,
                        timer: None,
                    },
                );
            }
            let tools: Vec<_> = tools.into_iter().collect();
            for tool in &tools {
                self.dispatch_tool(st, tool);
            }
            released.extend(self.unservable(st, &tools));
        }
        self.give_back(released).await;
    }

    /// Takes out of the live state the queued tasks of `tools` that no
    /// worker here serves: they are to be released to the store.
    fn unservable(self: &Arc<Self>, st: &mut State, tools: &[Arc<str>]) -> Vec<Uuid> {
        let mut out = Vec::new();
        for tool in tools {
            let Some(entry) = st.tools.get_mut(tool) else {
                continue;
            };
            if !entry.workers.is_empty() {
                continue;
            }
            while let Some((session, id)) = entry.queue.pop() {
                st.tasks.remove(&id);
                out.push((session, id));
            }
        }
        out.into_iter()
            .map(|(session, id)| {
                st.release(&session);
                id
            })
            .collect()
    }

    async fn give_back(&self, ids: Vec<Uuid>) {
        let Some(shared) = self.store.shared() else {
            return;
        };
        if ids.is_empty() {
            return;
        }
        debug!(
            tasks = ids.len(),
            "claimed tasks given back to the shared queue"
        );
        if let Err(e) = shared.release(ids).await {
            // Their leases expire and the reaper queues them again.
            warn!(error = %e, "giving tasks back to the shared queue failed");
        }
    }

    /// Every task this server holds (claimed, queued here or running).
    pub(crate) fn held(&self) -> Vec<Uuid> {
        self.lock().tasks.keys().copied().collect()
    }

    /// Drops tasks this server no longer holds in the store (finished or
    /// cancelled through another server, or reclaimed after an expired
    /// lease): their workers are told to stop; nothing is stored.
    pub(crate) fn forget(self: &Arc<Self>, ids: &[Uuid]) {
        let dropped: Vec<Ending> = {
            let mut st = self.lock();
            ids.iter()
                .filter_map(|id| {
                    self.take(
                        &mut st,
                        *id,
                        TaskState::Cancelled,
                        Outcome::error(codes::CANCELLED, "no longer held by this server"),
                        Some(codes::CANCELLED),
                    )
                })
                .collect()
        };
        for ending in dropped {
            info!(task_id = %ending.task.id, "task no longer held here: its worker is told to stop");
            self.ended_one();
        }
    }

    /// The tools this server's workers serve, to publish.
    pub(crate) fn local_tools(&self) -> Vec<ToolAdvert> {
        let st = self.lock();
        st.tools
            .values()
            .filter(|t| !t.workers.is_empty())
            .filter_map(|t| {
                t.spec.as_ref().map(|s| ToolAdvert {
                    name: s.name.to_string(),
                    description: s.description.to_string(),
                    input_schema: s.input_schema_json.to_string(),
                    default_timeout_ms: s.timeout.map(crate::model::millis),
                    workers: t.workers.len() as u32,
                })
            })
            .collect()
    }

    /// Replaces what is known of other servers' tools.
    pub(crate) fn set_remote_tools(&self, tools: Vec<ToolAdvert>) {
        let remote: HashMap<Arc<str>, (ToolSpec, u32)> = tools
            .into_iter()
            // Validated as a worker's registration is (the conversion moves
            // to `grpc/convert.rs` with the scheduler split).
            .map(|t| pb::Tool {
                name: t.name,
                description: t.description,
                input_schema_json: t.input_schema,
                timeout_ms: t.default_timeout_ms.unwrap_or(0),
                workers: t.workers,
            })
            .filter_map(|t| match ToolSpec::from_proto(&t, &self.config.limits) {
                Ok(spec) => Some((spec.name.clone(), (spec, t.workers))),
                Err(e) => {
                    warn!(tool = %t.name, error = %e, "another server's tool is not usable here");
                    None
                }
            })
            .collect();
        self.lock().remote = remote;
    }
}

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;
