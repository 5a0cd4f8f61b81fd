//! Tasks and completions as the scheduler and the store see them, and what
//! workers and agents send it, in domain types (their wire form is
//! [`crate::grpc::convert`]'s business).
use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use uuid::Uuid;

pub mod call;
mod keys;
mod progress;
mod worker;

pub use call::{Answered, ArgsHash, CallOptions, Fallback, FallbackFor, FinishNotes, Primary};
pub use keys::{SessionKey, ToolKey};
pub use progress::{
    MAX_PROGRESS_DETAIL_BYTES, MAX_PROGRESS_MESSAGE_BYTES, ProgressRecord, ProgressReport,
};
pub use worker::{Assignment, Command, Registration, TaskResult, ToolDef, ToolPolicy};

/// Where a task is in its life. The last four are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    TimedOut,
}

impl TaskState {
    pub fn is_final(self) -> bool {
        !matches!(self, TaskState::Queued | TaskState::Running)
    }

    pub fn name(self) -> &'static str {
        match self {
            TaskState::Queued => "QUEUED",
            TaskState::Running => "RUNNING",
            TaskState::Succeeded => "SUCCEEDED",
            TaskState::Failed => "FAILED",
            TaskState::Cancelled => "CANCELLED",
            TaskState::TimedOut => "TIMED_OUT",
        }
    }
}

/// How a completion reaches the model; resolved at submit (the submit's,
/// else the tool's, else the server's default) and stamped on the task and
/// its completion. The SDKs obey it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Delivery {
    /// Between turns, coalesced with others that arrive close together.
    #[default]
    WhenIdle,
    /// At once: through the agent's interrupt hook when it is busy.
    Interrupt,
    /// Never starts a turn: leads the next user message.
    Silent,
}

impl Delivery {
    /// How the stores keep it (1, 2, 3 as on the wire).
    pub fn code(self) -> i16 {
        match self {
            Delivery::WhenIdle => 1,
            Delivery::Interrupt => 2,
            Delivery::Silent => 3,
        }
    }

    /// The policy a stored code stands for; `None` for an unknown one.
    pub fn from_code(code: i16) -> Option<Self> {
        Some(match code {
            1 => Delivery::WhenIdle,
            2 => Delivery::Interrupt,
            3 => Delivery::Silent,
            _ => return None,
        })
    }

    /// The name models and people read: `WHEN_IDLE`, `INTERRUPT`, `SILENT`.
    pub fn name(self) -> &'static str {
        match self {
            Delivery::WhenIdle => "WHEN_IDLE",
            Delivery::Interrupt => "INTERRUPT",
            Delivery::Silent => "SILENT",
        }
    }
}

/// Error codes the server itself puts in [`Outcome::Error`].
pub mod codes {
    pub const TOOL_ERROR: &str = "tool_error";
    pub const TIMEOUT: &str = "timeout";
    /// No worker took the task within its queue timeout.
    pub const QUEUE_TIMEOUT: &str = "queue_timeout";
    pub const CANCELLED: &str = "cancelled";
    pub const WORKER_LOST: &str = "worker_lost";
    pub const INVALID_RESULT: &str = "invalid_result";
    /// The store refused the task's outcome (a value it cannot hold).
    pub const STORE_REJECTED: &str = "store_rejected";
}

/// How a finished task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The tool's result, JSON text.
    Result(String),
    Error {
        code: String,
        message: String,
    },
}

impl Outcome {
    pub fn error(code: &str, message: impl Into<String>) -> Self {
        Outcome::Error {
            code: code.to_string(),
            message: message.into(),
        }
    }
}

/// A new task's id: a UUIDv7 (RFC 9562), which begins with the time in
/// milliseconds, so the store's id index grows at its end instead of
/// touching a random page per insert, and ids sort by submit time.
pub fn new_task_id() -> Uuid {
    Uuid::now_v7()
}

/// One tool call. Strings shared between the live state, the store and the
/// wire are `Arc<str>`, so a queued task costs one allocation per field.
/// `session` and `tool` hold keys ([`SessionKey`], [`ToolKey`]): on the
/// wire and in messages they go through [`crate::tenant::strip`].
#[derive(Debug, Clone)]
pub struct TaskRecord {
    pub id: Uuid,
    pub session: Arc<str>,
    pub tool: Arc<str>,
    pub arguments: Arc<str>,
    /// Timeout of one run, resolved at submit.
    pub timeout: Duration,
    /// When the task, still queued, times out (submit + queue timeout);
    /// `None` in rows stored before the deadline was (recover then counts
    /// the server's default from `created_at`).
    pub queue_deadline: Option<SystemTime>,
    pub idempotency_key: Option<Arc<str>>,
    pub created_at: SystemTime,
    pub state: TaskState,
    /// Dispatches so far.
    pub attempts: u32,
    pub started_at: Option<SystemTime>,
    pub finished_at: Option<SystemTime>,
    pub outcome: Option<Outcome>,
    /// Seq of the task's completion; 0 while unfinished.
    pub seq: u64,
    /// How its completion reaches the model, resolved at submit.
    pub delivery: Delivery,
    /// Budget, dedup and fallback, resolved at submit.
    pub call: CallOptions,
    /// What its finish recorded beside the outcome; default while unfinished.
    pub notes: FinishNotes,
    /// The task this one retries (`RetryTask`); `None` for a submitted one.
    pub retry_of: Option<Uuid>,
}

impl TaskRecord {
    /// The call's queue timeout: how long it may wait for a worker each
    /// time it is queued (`queue_deadline` − `created_at`); `default`, the
    /// server's `--default-queue-timeout-ms`, for rows stored before the
    /// deadline was.
    pub fn queue_timeout(&self, default: Duration) -> Duration {
        self.queue_deadline
            .and_then(|d| d.duration_since(self.created_at).ok())
            .unwrap_or(default)
    }

    /// When the wait for a worker that begins at `now` ends. Until a worker
    /// first takes the call it is the stored deadline (submit + queue
    /// timeout), so it holds across restarts. A call queued again after a
    /// run (its worker went away, or the server stopped while it ran) waits
    /// its queue timeout afresh from `now`: the queue timeout bounds each
    /// wait for a worker, as Temporal's schedule-to-start bounds each
    /// attempt, and never ends a call a worker took because the run
    /// outlasted it.
    pub fn queue_deadline_from(&self, now: SystemTime, default: Duration) -> SystemTime {
        match self.queue_deadline {
            Some(deadline) if self.attempts == 0 => deadline,
            None if self.attempts == 0 => self.created_at + default,
            _ => now + self.queue_timeout(default),
        }
    }
}

/// A tool call as an agent submits it.
#[derive(Debug, Clone)]
pub struct Submission {
    pub session: SessionKey,
    pub tool: ToolKey,
    /// JSON object text; empty means `{}`.
    pub arguments_json: String,
    /// Timeout of one run in milliseconds; 0: the tool's or the server's default.
    pub timeout_ms: u64,
    /// How long the call may wait for a worker, in milliseconds from submit;
    /// 0: the tool's or the server's default.
    pub queue_timeout_ms: u64,
    /// Empty: none.
    pub idempotency_key: String,
    /// `None`: the tool's policy, then the server's default.
    pub delivery: Option<Delivery>,
    /// Most bytes of result delivered inline; 0: the tool's, then the
    /// server's default.
    pub result_budget_bytes: u64,
    /// `Some(true)`: join an identical call in flight; `Some(false)`: never;
    /// `None`: the tool's policy.
    pub join_in_flight: Option<bool>,
    /// `None`: the tool's fallback. The tool is a key.
    pub fallback: Option<Fallback>,
    /// The task this one retries; `None` for an agent's own call.
    pub retry_of: Option<Uuid>,
}

/// What the store is told when a task ends.
#[derive(Debug, Clone)]
pub struct Finish {
    pub task_id: Uuid,
    pub state: TaskState,
    pub outcome: Outcome,
    pub attempts: u32,
    pub finished_at: SystemTime,
    /// The summary, the fallback that answered, a fallback run to drop.
    pub notes: FinishNotes,
}

/// One finished task in its session's completion log.
#[derive(Debug, Clone)]
pub struct CompletionRecord {
    pub seq: u64,
    pub task_id: Uuid,
    pub session: Arc<str>,
    pub tool: Arc<str>,
    pub arguments: Arc<str>,
    pub state: TaskState,
    pub outcome: Outcome,
    pub elapsed: Duration,
    pub attempts: u32,
    pub completed_at: SystemTime,
    /// The task's delivery policy.
    pub delivery: Delivery,
    /// The task's result budget (0: the server's default).
    pub result_budget: u64,
    /// The worker's summary; the fallback that answered.
    pub notes: FinishNotes,
}

impl CompletionRecord {
    /// The bytes of its texts: arguments, the result or the error's message,
    /// and the summary (what a read of completions is bounded by).
    pub fn bytes(&self) -> usize {
        let outcome = match &self.outcome {
            Outcome::Result(json) => json.len(),
            Outcome::Error { code, message } => code.len() + message.len(),
        };
        self.arguments.len() + outcome + self.notes.summary.as_deref().map_or(0, str::len)
    }
}

/// What a completion carries of its task: what a store reads back when it
/// finishes one (the SQLite store reads these columns, not the whole row).
#[derive(Debug, Clone)]
pub struct TaskHead {
    pub id: Uuid,
    pub session: Arc<str>,
    pub tool: Arc<str>,
    pub arguments: Arc<str>,
    pub created_at: SystemTime,
    pub delivery: Delivery,
    /// Bytes; 0: the server's default.
    pub result_budget: u64,
}

impl TaskHead {
    /// `task`'s head (its `Arc`s shared, not copied).
    pub fn of(task: &TaskRecord) -> Self {
        Self {
            id: task.id,
            session: task.session.clone(),
            tool: task.tool.clone(),
            arguments: task.arguments.clone(),
            created_at: task.created_at,
            delivery: task.delivery,
            result_budget: task.call.result_budget,
        }
    }
}

impl CompletionRecord {
    /// The completion of `task` as `finish` ends it, numbered `seq`.
    pub fn new(task: &TaskRecord, finish: &Finish, seq: u64) -> Self {
        Self::of_head(TaskHead::of(task), finish, seq)
    }

    /// The completion of the task `head` describes as `finish` ends it.
    pub fn of_head(head: TaskHead, finish: &Finish, seq: u64) -> Self {
        Self {
            seq,
            task_id: head.id,
            session: head.session,
            tool: head.tool,
            arguments: head.arguments,
            state: finish.state,
            outcome: finish.outcome.clone(),
            elapsed: finish
                .finished_at
                .duration_since(head.created_at)
                .unwrap_or_default(),
            attempts: finish.attempts,
            completed_at: finish.finished_at,
            delivery: head.delivery,
            result_budget: head.result_budget,
            notes: FinishNotes {
                drop_run: None,
                ..finish.notes.clone()
            },
        }
    }
}

pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
