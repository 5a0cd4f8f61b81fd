//! The agent side of errand, in domain types: what every front end an agent
//! reaches calls. gRPC's `ToolService` ([`crate::grpc::tool_service`]) is a
//! translator over [`AgentApi`]; MCP and A2A render their JSON from what it
//! returns; `errand mcp --stdio` reaches a remote server through the same
//! [`Agent`] seam. Domain types only, no wire types: errors are
//! [`Error`]s, which each front end maps by their [`crate::error::Kind`].
//!
//! What it holds beyond the scheduler: every name a client gives (session,
//! tool) is keyed by the caller's tenant before it reaches the scheduler;
//! every task is checked to be the caller's before it is shown, cancelled,
//! retried or read (another tenant's task is NOT_FOUND, with the very
//! message an unknown ID gets); submits and retries are limited per token
//! per second; session streams are counted per tenant ([`streams`]).
//!
//! - [`agent`]: the [`Agent`] seam of the MCP front end and what it speaks
//!   ([`Call`], [`Submitted`], [`ToolListing`]).
//! - [`listing`]: task listings as store queries, and their page tokens.
//! - [`streams`]: a session's completions and events as streams that hold
//!   the tenant's stream slot.
use std::{sync::Arc, time::Instant};

use uuid::Uuid;

use crate::{
    Error,
    auth::Caller,
    config::Limits,
    metrics::Metrics,
    model::{SessionKey, Submission, TaskRecord, TaskState, ToolKey},
    quota::{RateLimiter, SlotCounter},
    scheduler::{
        self, Admitted, Scheduler,
        digest::Digest,
        views::{TaskView, WorkerView},
    },
    sessions::{Events, Feed},
    store::{Acked, Cursor, TaskQuery},
    tenant, text,
    tools::ToolSpec,
};

pub mod agent;
pub mod listing;
pub mod streams;

pub use agent::{Agent, Call, Submitted, ToolListing};
pub use streams::SessionStream;

/// `digest`'s `max_bytes` when the caller gives none (0).
pub const DEFAULT_DIGEST_BYTES: usize = 4096;

/// The agent API of one server: the scheduler as agents of every tenant
/// may use it.
pub struct AgentApi {
    sched: Arc<Scheduler>,
    feed: Feed,
    events: Events,
    metrics: Arc<Metrics>,
    streams: SlotCounter,
    submits: RateLimiter,
}

/// A tool of the caller's tenant with its workers and queue depth here.
#[derive(Debug, Clone)]
pub struct ToolView {
    pub spec: ToolSpec,
    /// Workers serving it (on every server, in shared mode).
    pub workers: u32,
    /// Its tasks queued and running on this server.
    pub queued: usize,
    pub running: usize,
}

/// One page of a task listing.
#[derive(Debug, Clone)]
pub struct TaskPage {
    pub tasks: Vec<TaskView>,
    /// Every task matching the query's filter, on all pages.
    pub total_size: u64,
    /// The token of the next page; "" on the last.
    pub next_page_token: String,
}

/// A session's pending work, and [`text::digest`]'s text of it.
#[derive(Debug, Clone)]
pub struct DigestView {
    pub digest: Digest,
    pub text: String,
}

impl From<TaskRecord> for TaskView {
    /// A task as stored, with nothing the live state adds.
    fn from(task: TaskRecord) -> Self {
        TaskView {
            task,
            runner: None,
            progress: None,
        }
    }
}

impl AgentApi {
    pub fn new(sched: Arc<Scheduler>, feed: Feed, metrics: Arc<Metrics>) -> Self {
        let rate = sched.config().limits.submits_per_second_per_token;
        let events = Events::new(
            feed.clone(),
            sched.hub().clone(),
            sched.clone(),
            sched.config().progress_interval,
        );
        Self {
            sched,
            feed,
            events,
            metrics,
            streams: SlotCounter::default(),
            submits: RateLimiter::new(rate),
        }
    }

    /// The server's limits.
    pub fn limits(&self) -> &Limits {
        &self.sched.config().limits
    }

    /// Least time between two progress events of one task on one stream
    /// (`--progress-interval`).
    pub fn progress_interval(&self) -> std::time::Duration {
        self.sched.config().progress_interval
    }

    /// This server's name in a shared store; "" for a single server.
    pub fn server_id(&self) -> &str {
        self.sched.server_id()
    }

    /// The key of a session the caller named. Errors: a bad session name
    /// ([`SessionKey::new`]).
    fn session_key(&self, caller: &Caller, session: &str) -> Result<SessionKey, Error> {
        SessionKey::new(&caller.tenant, session, self.limits())
    }

    /// A task of the caller's tenant. Errors: an ID that is not a UUID
    /// (INVALID_ARGUMENT); NOT_FOUND for an unknown task and for anyone
    /// else's, with the same message.
    async fn own_task(&self, caller: &Caller, task_id: &str) -> Result<(Uuid, TaskRecord), Error> {
        let id = scheduler::parse_task_id(task_id)?;
        let task = self.sched.get_task(id).await?;
        if tenant::of(&task.session) != &*caller.tenant {
            return Err(scheduler::not_found(id));
        }
        Ok((id, task))
    }

    /// Takes one of the caller's token's submits. Errors: RateLimited,
    /// with the wait, over `--submits-per-second-per-token` (never with
    /// auth off: there is no token to key a rate by).
    fn check_rate(&self, caller: &Caller) -> Result<(), Error> {
        if caller.role.is_none() {
            return Ok(());
        }
        self.submits
            .take(&caller.token_id, Instant::now())
            .map_err(|wait| Error::RateLimited {
                message: format!(
                    "this token submits faster than {} per second: retry in {} ms",
                    self.limits().submits_per_second_per_token,
                    wait.as_millis().max(1)
                ),
                retry_after: wait,
            })
    }

    /// The caller's tenant's tools, sorted by name; only those with a
    /// worker when `only_served`.
    pub fn tools(&self, caller: &Caller, only_served: bool) -> Vec<ToolView> {
        let mut tools = self.sched.list_tools(&caller.tenant);
        if only_served {
            tools.retain(|(_, workers)| *workers > 0);
        }
        let depth = self.sched.depth(&caller.tenant);
        tools
            .into_iter()
            .map(|(spec, workers)| {
                let (queued, running) = depth.get(spec.name.as_key()).copied().unwrap_or_default();
                ToolView {
                    spec,
                    workers,
                    queued,
                    running,
                }
            })
            .collect()
    }

    /// Submits the call `make` builds for the caller's tenant (given the
    /// tenant and the server's limits), once the token's rate allows it:
    /// the rate is checked first, so a caller over it hears that whatever
    /// it sent. The ack says what happened (joined, or the tool unserved).
    /// Errors: RateLimited; `make`'s; the scheduler's (unknown tool,
    /// arguments the schema refuses, quotas, the store).
    pub async fn submit_with(
        &self,
        caller: &Caller,
        make: impl FnOnce(&str, &Limits) -> Result<Submission, Error>,
    ) -> Result<Submitted, Error> {
        self.check_rate(caller)?;
        let sub = make(&caller.tenant, self.limits())?;
        let (task, admitted) = self.sched.submit_call(sub).await?;
        let mut ack = if admitted == Admitted::Joined {
            text::joined_ack(&task)
        } else {
            text::ack(&task)
        };
        if task.state == TaskState::Queued && !self.sched.is_served(&task.tool) {
            ack.push_str(&text::unserved_notice(&task));
        }
        Ok(Submitted {
            task: task.into(),
            ack,
            admitted,
        })
    }

    /// Submits the caller's finished (FAILED, TIMED_OUT, CANCELLED) task
    /// `task_id` again; rate-limited like a submit. Errors: RateLimited;
    /// [`Self::task`]'s; FAILED_PRECONDITION for a task in another state.
    pub async fn retry(&self, caller: &Caller, task_id: &str) -> Result<Submitted, Error> {
        self.check_rate(caller)?;
        let (_, original) = self.own_task(caller, task_id).await?;
        let (task, deduplicated) = self.sched.retry(&original).await?;
        Ok(Submitted {
            ack: text::ack(&task),
            task: task.into(),
            admitted: if deduplicated {
                Admitted::Repeat
            } else {
                Admitted::New
            },
        })
    }

    /// The caller's task `task_id`, with its runner and latest progress
    /// here. Errors: INVALID_ARGUMENT for an ID that is not a UUID;
    /// NOT_FOUND for an unknown task or another tenant's.
    pub async fn task(&self, caller: &Caller, task_id: &str) -> Result<TaskView, Error> {
        let (id, _) = self.own_task(caller, task_id).await?;
        self.sched.task_view(id).await
    }

    /// The caller's task `task_id` as stored (for reading its result).
    /// Errors: as [`Self::task`].
    pub async fn stored_task(&self, caller: &Caller, task_id: &str) -> Result<TaskRecord, Error> {
        Ok(self.own_task(caller, task_id).await?.1)
    }

    /// Cancels the caller's task `task_id` with `reason` (free text, "" for
    /// none). Errors: a reason over its limit (INVALID_ARGUMENT, checked
    /// first); [`Self::task`]'s; FAILED_PRECONDITION for a finished task.
    pub async fn cancel(
        &self,
        caller: &Caller,
        task_id: &str,
        reason: String,
    ) -> Result<TaskRecord, Error> {
        let reason = crate::fields::cancel_reason(reason)?;
        // A task's session never changes: checked once, it stays the caller's.
        let (id, _) = self.own_task(caller, task_id).await?;
        self.sched.cancel(id, &reason).await
    }

    /// Cancels every unfinished task matching `query` (built by
    /// [`listing::cancel_query`]) with `reason`; how many it cancelled.
    /// Errors: a reason over its limit; the store's.
    pub async fn cancel_tasks(&self, query: TaskQuery, reason: String) -> Result<u64, Error> {
        let reason = crate::fields::cancel_reason(reason)?;
        self.sched.cancel_matching(query, &reason).await
    }

    /// Acknowledges the caller's session's completions up to `up_to_seq`.
    /// Errors: a bad session name; OUT_OF_RANGE beyond its last seq.
    pub async fn ack(
        &self,
        caller: &Caller,
        session: &str,
        up_to_seq: u64,
    ) -> Result<Acked, Error> {
        let session = self.session_key(caller, session)?;
        self.sched.ack_completions(&session, up_to_seq).await
    }

    /// One page of the tasks `query` (built by [`listing::task_query`],
    /// which keeps it to the caller's tenant) lists.
    pub async fn list_tasks(&self, query: &TaskQuery) -> Result<TaskPage, Error> {
        let tasks = self.sched.list_tasks(query).await?;
        let total_size = self.sched.count_tasks(query).await?;
        let next_page_token = match tasks.last() {
            Some(last) if tasks.len() == query.limit => {
                listing::page_token(&Cursor::of(&last.task), query.newest_first)
            }
            _ => String::new(),
        };
        Ok(TaskPage {
            tasks,
            next_page_token,
            total_size,
        })
    }

    /// Connected workers serving a tool of the caller's tenant (every
    /// tenant's with auth off), only those serving `tool` when not "".
    /// Errors: a tool name no tool can have (INVALID_ARGUMENT).
    pub fn workers(&self, caller: &Caller, tool: &str) -> Result<Vec<WorkerView>, Error> {
        let tool = if tool.is_empty() {
            None
        } else {
            crate::tools::check_name(tool)?;
            Some(ToolKey::new(&caller.tenant, tool))
        };
        let tenant = (caller.role.is_some()).then_some(&*caller.tenant);
        Ok(self
            .sched
            .list_workers(tenant, tool.as_ref().map(|t| t.as_key())))
    }

    /// The caller's session's pending tasks and acknowledgement counters,
    /// with their text for the model within `max_bytes` (0:
    /// [`DEFAULT_DIGEST_BYTES`]). Errors: a bad session name; `max_bytes`
    /// over the message limit (INVALID_ARGUMENT); the store's.
    pub async fn digest(
        &self,
        caller: &Caller,
        session: &str,
        max_bytes: u64,
    ) -> Result<DigestView, Error> {
        let session = self.session_key(caller, session)?;
        let limit = self.limits().max_message_bytes;
        let max_bytes = match max_bytes {
            0 => DEFAULT_DIGEST_BYTES,
            n if n < text::MIN_DIGEST_BYTES as u64 => {
                return Err(Error::invalid(format!(
                    "max_bytes {n} is below {}, the least a digest needs to say what is pending \
                     in whole sentences: ask for at least that, or 0 for {DEFAULT_DIGEST_BYTES}",
                    text::MIN_DIGEST_BYTES
                )));
            }
            n if n > limit as u64 => {
                return Err(Error::invalid(format!(
                    "max_bytes {n} is over the server's message limit of {limit} (--max-message-bytes): ask for less, or 0 for {DEFAULT_DIGEST_BYTES}"
                )));
            }
            n => n as usize,
        };
        let digest = self.sched.digest(&session).await?;
        let text = text::digest(
            digest
                .pending
                .iter()
                .map(|v| (&v.task, v.progress.as_deref())),
            digest.pending_count,
            digest.seqs.unacknowledged,
            max_bytes,
            std::time::SystemTime::now(),
        );
        Ok(DigestView { digest, text })
    }

    /// `task` (the caller's) once it is final, or as it is at `until`: read
    /// again at each completion of its session. Errors: [`Self::task`]'s;
    /// UNAVAILABLE when the server shuts down first.
    pub async fn wait_final(
        &self,
        caller: &Caller,
        task: &TaskRecord,
        until: Instant,
    ) -> Result<TaskView, Error> {
        use tokio::sync::broadcast::error::RecvError;
        // Subscribed before each look, so a completion between the look and
        // the wait still wakes us.
        let mut wakes = self.sched.hub().subscribe(&task.session);
        let id = task.id.to_string();
        loop {
            let view = self.task(caller, &id).await?;
            if view.task.state.is_final() {
                return Ok(view);
            }
            match tokio::time::timeout_at(until.into(), wakes.recv()).await {
                Err(_) => return Ok(view),
                Ok(Ok(_) | Err(RecvError::Lagged(_))) => {}
                Ok(Err(RecvError::Closed)) => {
                    return Err(Error::Unavailable("the server is shutting down".into()));
                }
            }
        }
    }
}

impl AgentApi {
    /// `task` (the caller's) once it is final or has a report with an
    /// index above `after`, or as it is at `until`: read again at each
    /// completion of its session and at each new report of the task, as
    /// the session's event streams hear them (at once, not polled).
    /// Errors: [`Self::task`]'s; UNAVAILABLE when the server shuts down
    /// first.
    pub async fn wait_progress(
        &self,
        caller: &Caller,
        task: &TaskRecord,
        after: u64,
        until: Instant,
    ) -> Result<TaskView, Error> {
        use tokio::sync::broadcast::error::RecvError;
        // Subscribed before each look, so a report or a completion between
        // the look and the wait still wakes us.
        let hub = self.sched.hub();
        let mut wakes = hub.subscribe(&task.session);
        let mut reports = hub.subscribe_progress(&task.session);
        let id = task.id.to_string();
        loop {
            let view = self.task(caller, &id).await?;
            let newer = view.progress.as_ref().is_some_and(|p| p.index > after);
            if view.task.state.is_final() || newer || Instant::now() >= until {
                return Ok(view);
            }
            let woken = async {
                loop {
                    tokio::select! {
                        w = wakes.recv() => return w.map(drop),
                        r = reports.recv() => match r {
                            // Another task's, or one already sent.
                            Ok(p) if p.task_id != task.id || p.index <= after => {}
                            other => return other.map(drop),
                        },
                    }
                }
            };
            match tokio::time::timeout_at(until.into(), woken).await {
                // At `until`: the last look is at it.
                Err(_) | Ok(Ok(()) | Err(RecvError::Lagged(_))) => {}
                Ok(Err(RecvError::Closed)) => {
                    return Err(Error::Unavailable("the server is shutting down".into()));
                }
            }
        }
    }
}

#[cfg(test)]
mod api_tests;

/// Tasks as the front ends' rendering tests need them.
#[cfg(test)]
pub(crate) mod tests {
    use std::{
        sync::Arc,
        time::{Duration, SystemTime},
    };

    use crate::{
        model::{Outcome, ProgressRecord, TaskRecord, TaskState},
        scheduler::views::TaskView,
    };

    /// Task "t1" of tool `echo` (tenant "acme", session "s"): one attempt,
    /// seq 7, a 1 s timeout.
    pub fn task(state: TaskState, outcome: Option<Outcome>) -> TaskView {
        let created = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        TaskRecord {
            id: uuid::Uuid::from_u128(1),
            session: "acme\u{1f}s".into(),
            tool: "acme\u{1f}echo".into(),
            arguments: "{}".into(),
            timeout: Duration::from_millis(1000),
            retry_of: None,
            queue_deadline: None,
            idempotency_key: None,
            created_at: created,
            state,
            attempts: 1,
            started_at: None,
            finished_at: None,
            outcome,
            seq: 7,
            delivery: Default::default(),
            call: Default::default(),
            notes: Default::default(),
        }
        .into()
    }

    /// A progress report of [`task`].
    pub fn progress(progress: f64, total: f64, message: &str) -> Arc<ProgressRecord> {
        Arc::new(ProgressRecord {
            task_id: uuid::Uuid::from_u128(1),
            session: "acme\u{1f}s".into(),
            tool: "acme\u{1f}echo".into(),
            index: 1,
            progress,
            total,
            message: message.into(),
            detail_json: "".into(),
            elapsed: Duration::ZERO,
        })
    }
}
