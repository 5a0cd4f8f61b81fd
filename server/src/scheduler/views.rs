//! What operators ask of the scheduler: listings of tasks (from the store,
//! with what the live state knows on top), workers and queue depth; bulk
//! cancel and retry.
use std::{collections::HashMap, sync::Arc, time::SystemTime};

use tracing::info;
use uuid::Uuid;

use super::{Scheduler, WorkerId};
use crate::{
    error::Error,
    model::{ProgressRecord, SessionKey, Submission, TaskRecord, TaskState, ToolKey, millis},
    store::{Cursor, TaskQuery},
    tools::ToolSpec,
};

pub use super::state::WorkerView;

/// A listed task, and the worker of this server running it, if any.
#[derive(Debug, Clone)]
pub struct TaskView {
    pub task: TaskRecord,
    pub runner: Option<(WorkerId, String)>,
    /// The latest progress of its current run here, if any.
    pub progress: Option<Arc<ProgressRecord>>,
}

/// Tasks one bulk cancel reads from the store at a time.
const CANCEL_PAGE: usize = 500;

/// A bulk cancel so far: how many ended at once, and the endings of those
/// taken out of the live state, spawned and not yet awaited.
#[derive(Default)]
struct Walk {
    cancelled: u64,
    ending: Vec<tokio::task::JoinHandle<TaskRecord>>,
}

impl Scheduler {
    /// One page of stored tasks matching `query`, each as the live state
    /// knows it now when it is queued or running here.
    pub async fn list_tasks(&self, query: &TaskQuery) -> Result<Vec<TaskView>, Error> {
        let stored = self.store.list_tasks(query).await?;
        let st = self.lock();
        Ok(stored
            .into_iter()
            .map(|task| {
                let task = st.task(task.id).cloned().unwrap_or(task);
                let runner = st.runner(task.id).map(|(w, n)| (w, n.to_string()));
                let progress = st.progress_of(task.id);
                TaskView {
                    task,
                    runner,
                    progress,
                }
            })
            .collect())
    }

    /// How many stored tasks pass `query`'s filter, on every page.
    pub async fn count_tasks(&self, query: &TaskQuery) -> Result<u64, Error> {
        Ok(self.store.count_tasks(query).await?)
    }

    /// A task with the worker of this server running it.
    pub async fn task_view(&self, id: Uuid) -> Result<TaskView, Error> {
        let task = self.get_task(id).await?;
        let st = self.lock();
        let runner = st.runner(id).map(|(w, n)| (w, n.to_string()));
        let progress = st.progress_of(id);
        Ok(TaskView {
            task,
            runner,
            progress,
        })
    }

    /// Connected workers serving a tool of `tenant` (all when `None`), only
    /// those serving the tool key `tool` when given.
    pub fn list_workers(&self, tenant: Option<&str>, tool: Option<&str>) -> Vec<WorkerView> {
        self.lock().workers(tenant, tool)
    }

    /// This server's name in a shared store; "" for a single server.
    pub fn server_id(&self) -> &str {
        self.store.shared().map(|s| s.server_id()).unwrap_or("")
    }

    /// Queued and running tasks per tool key of every tenant, here.
    pub fn depth_all(&self) -> HashMap<Arc<str>, (usize, usize)> {
        self.lock().depth_all()
    }

    /// Tasks waiting in a shared store's queue (no server holds them), per
    /// tool key of every tenant; empty for a single server's store.
    pub async fn shared_queued(&self) -> Result<HashMap<Arc<str>, usize>, Error> {
        let Some(shared) = self.store.shared() else {
            return Ok(HashMap::new());
        };
        Ok(shared
            .queued_by_tool()
            .await?
            .into_iter()
            .map(|(tool, n)| (Arc::from(tool), usize::try_from(n).unwrap_or(usize::MAX)))
            .collect())
    }

    /// Unfinished tasks of the session key `session`, here.
    pub fn pending(&self, session: &str) -> usize {
        self.lock().pending(session)
    }

    /// Known tools of every tenant (see [`Self::list_tools`]), sorted by
    /// tenant, then name.
    pub fn list_tools_all(&self) -> Vec<(ToolSpec, u32)> {
        let tenants = self.lock().tenants();
        tenants.iter().flat_map(|t| self.list_tools(t)).collect()
    }

    /// Queued and running tasks per tool key of `tenant`, here.
    pub fn depth(&self, tenant: &str) -> HashMap<Arc<str>, (usize, usize)> {
        self.lock().depth(tenant)
    }

    /// Cancels every queued or running task matching `query` (its states
    /// must be unfinished ones; its cursor and limit are the walk's own).
    /// Queued tasks go first, so slots that cancelled running tasks free
    /// are never given to a task about to be cancelled. Tasks that finish
    /// meanwhile are skipped. Every match live here is taken out of the
    /// live state before any ending is awaited, and their endings are
    /// awaited together: while the store refuses writes (endings are kept
    /// until it takes them) one wait covers them all, and a caller that
    /// leaves meanwhile leaves none running. Returns how many it cancelled.
    pub async fn cancel_matching(
        self: &Arc<Self>,
        query: TaskQuery,
        reason: &str,
    ) -> Result<u64, Error> {
        let mut walk = Walk::default();
        for state in [TaskState::Queued, TaskState::Running] {
            if query.states.is_empty() || query.states.contains(&state) {
                let pass = TaskQuery {
                    states: vec![state],
                    newest_first: false,
                    limit: CANCEL_PAGE,
                    after: None,
                    ..query.clone()
                };
                // On an error, those taken out end anyway (spawned).
                self.cancel_pass(pass, reason, &mut walk).await?;
            }
        }
        let mut cancelled = walk.cancelled;
        for ended in futures::future::join_all(walk.ending).await {
            match ended {
                Ok(t) if t.state == TaskState::Cancelled => cancelled += 1,
                Ok(_) => {}
                Err(e) => return Err(Error::Internal(format!("ending a task failed: {e}"))),
            }
        }
        info!(cancelled, reason = %crate::logs::field(reason), "tasks cancelled in bulk");
        Ok(cancelled)
    }

    async fn cancel_pass(
        self: &Arc<Self>,
        mut query: TaskQuery,
        reason: &str,
        walk: &mut Walk,
    ) -> Result<(), Error> {
        let (why, tell) = crate::text::cancelled(reason);
        loop {
            let page = self.store.list_tasks(&query).await?;
            let Some(last) = page.last() else { break };
            query.after = Some(Cursor::of(last));
            let full = page.len() == CANCEL_PAGE;
            for task in page {
                if let Some(ended) = self.take_cancelled(task.id, &why, &tell) {
                    walk.ending.push(self.spawn_end(ended));
                    continue;
                }
                // Not live here: in the store's queue, another server's, or
                // a parked call's fallback run.
                match self.cancel(task.id, reason).await {
                    Ok(t) if t.state == TaskState::Cancelled => walk.cancelled += 1,
                    Ok(_) | Err(Error::FailedPrecondition(_) | Error::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            if !full {
                break;
            }
        }
        Ok(())
    }

    /// Submits finished task `original` again: same session, tool,
    /// arguments and timeout. Only FAILED, TIMED_OUT and CANCELLED tasks.
    pub async fn retry(
        self: &Arc<Self>,
        original: &TaskRecord,
    ) -> Result<(TaskRecord, bool), Error> {
        match original.state {
            TaskState::Failed | TaskState::TimedOut | TaskState::Cancelled => {}
            state => {
                return Err(Error::FailedPrecondition(format!(
                    "task {} is {}: only FAILED, TIMED_OUT and CANCELLED tasks can be retried",
                    original.id,
                    state.name()
                )));
            }
        }
        let sub = Submission {
            session: SessionKey::from_key(original.session.clone()),
            tool: ToolKey::from_key(original.tool.clone()),
            arguments_json: original.arguments.to_string(),
            timeout_ms: millis(original.timeout),
            idempotency_key: String::new(),
            delivery: Some(original.delivery),
            result_budget_bytes: original.call.result_budget,
            join_in_flight: Some(original.call.joinable),
            fallback: original.call.fallback.clone(),
            retry_of: Some(original.id),
            // The tool's (or the server's) queue timeout, counted anew.
            queue_timeout_ms: 0,
        };
        let (task, dedup) = self.submit(sub).await?;
        info!(task_id = %task.id, retry_of = %original.id, "task retried");
        Ok((task, dedup))
    }

    /// Notes that `worker` was heard from.
    pub(super) fn touch(&self, worker: WorkerId) {
        self.lock().touch(worker, SystemTime::now());
    }
}
