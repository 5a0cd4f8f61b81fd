//! Tasks and completions as the core sees them, and their wire form.
use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use errand_proto::v1 as pb;
use uuid::Uuid;

use crate::{tenant, text};

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

    pub fn to_proto(self) -> pb::TaskStatus {
        match self {
            TaskState::Queued => pb::TaskStatus::Queued,
            TaskState::Running => pb::TaskStatus::Running,
            TaskState::Succeeded => pb::TaskStatus::Succeeded,
            TaskState::Failed => pb::TaskStatus::Failed,
            TaskState::Cancelled => pb::TaskStatus::Cancelled,
            TaskState::TimedOut => pb::TaskStatus::TimedOut,
        }
    }

    pub fn from_proto(status: pb::TaskStatus) -> Option<Self> {
        Some(match status {
            pb::TaskStatus::Unspecified => return None,
            pb::TaskStatus::Queued => TaskState::Queued,
            pb::TaskStatus::Running => TaskState::Running,
            pb::TaskStatus::Succeeded => TaskState::Succeeded,
            pb::TaskStatus::Failed => TaskState::Failed,
            pb::TaskStatus::Cancelled => TaskState::Cancelled,
            pb::TaskStatus::TimedOut => TaskState::TimedOut,
        })
    }
}

/// Error codes the server itself puts in [`Outcome::Error`].
pub mod codes {
    pub const TOOL_ERROR: &str = "tool_error";
    pub const TIMEOUT: &str = "timeout";
    pub const CANCELLED: &str = "cancelled";
    pub const WORKER_LOST: &str = "worker_lost";
    pub const INVALID_RESULT: &str = "invalid_result";
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

    fn task_outcome(&self) -> pb::task::Outcome {
        match self {
            Outcome::Result(json) => pb::task::Outcome::ResultJson(json.clone()),
            Outcome::Error { code, message } => pb::task::Outcome::Error(pb::ToolError {
                code: code.clone(),
                message: message.clone(),
            }),
        }
    }

    fn completion_outcome(&self) -> pb::completion::Outcome {
        match self {
            Outcome::Result(json) => pb::completion::Outcome::ResultJson(json.clone()),
            Outcome::Error { code, message } => pb::completion::Outcome::Error(pb::ToolError {
                code: code.clone(),
                message: message.clone(),
            }),
        }
    }
}

/// One tool call. Strings shared between the live state, the store and the
/// wire are `Arc<str>`, so a queued task costs one allocation per field.
#[derive(Debug, Clone)]
pub struct TaskRecord {
    pub id: Uuid,
    pub session: Arc<str>,
    pub tool: Arc<str>,
    pub arguments: Arc<str>,
    /// Timeout of one run, resolved at submit.
    pub timeout: Duration,
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
}

impl TaskRecord {
    pub fn to_proto(&self) -> pb::Task {
        let end = self.finished_at.unwrap_or_else(SystemTime::now);
        pb::Task {
            task_id: self.id.to_string(),
            session_id: tenant::strip(&self.session).to_string(),
            tool: tenant::strip(&self.tool).to_string(),
            arguments_json: self.arguments.to_string(),
            status: self.state.to_proto() as i32,
            outcome: self.outcome.as_ref().map(Outcome::task_outcome),
            attempts: self.attempts,
            created_at: Some(timestamp(self.created_at)),
            started_at: self.started_at.map(timestamp),
            finished_at: self.finished_at.map(timestamp),
            timeout_ms: millis(self.timeout),
            seq: self.seq,
            elapsed_ms: millis(end.duration_since(self.created_at).unwrap_or_default()),
            idempotency_key: self
                .idempotency_key
                .as_deref()
                .unwrap_or_default()
                .to_string(),
        }
    }
}

/// What the store is told when a task ends.
#[derive(Debug, Clone)]
pub struct Finish {
    pub task_id: Uuid,
    pub state: TaskState,
    pub outcome: Outcome,
    pub attempts: u32,
    pub finished_at: SystemTime,
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
}

impl CompletionRecord {
    /// The completion of `task` as `finish` ends it, numbered `seq`.
    pub fn new(task: &TaskRecord, finish: &Finish, seq: u64) -> Self {
        Self {
            seq,
            task_id: task.id,
            session: task.session.clone(),
            tool: task.tool.clone(),
            arguments: task.arguments.clone(),
            state: finish.state,
            outcome: finish.outcome.clone(),
            elapsed: finish
                .finished_at
                .duration_since(task.created_at)
                .unwrap_or_default(),
            attempts: finish.attempts,
            completed_at: finish.finished_at,
        }
    }

    pub fn to_proto(&self) -> pb::Completion {
        pb::Completion {
            seq: self.seq,
            task_id: self.task_id.to_string(),
            session_id: tenant::strip(&self.session).to_string(),
            tool: tenant::strip(&self.tool).to_string(),
            arguments_json: self.arguments.to_string(),
            status: self.state.to_proto() as i32,
            outcome: Some(self.outcome.completion_outcome()),
            elapsed_ms: millis(self.elapsed),
            attempts: self.attempts,
            message: text::completion_message(self),
            completed_at: Some(timestamp(self.completed_at)),
        }
    }
}

pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

pub fn timestamp(t: SystemTime) -> prost_types::Timestamp {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    prost_types::Timestamp {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}
