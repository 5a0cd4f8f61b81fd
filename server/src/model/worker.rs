//! What a worker tells the scheduler, and what the scheduler tells a worker.
use std::{sync::Arc, time::Duration};

use uuid::Uuid;

use super::{Delivery, Fallback, Outcome, ToolKey};

/// A tool as a worker declares it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolDef {
    pub name: ToolKey,
    pub description: String,
    /// JSON Schema of the arguments; empty: any object.
    pub input_schema_json: String,
    /// The tool's default timeout in milliseconds; 0: none.
    pub timeout_ms: u64,
    /// The tool's default queue timeout in milliseconds (counted from
    /// submit); 0: none.
    pub queue_timeout_ms: u64,
    /// What it declares about its calls' delivery (issue 17).
    pub policy: ToolPolicy,
}

/// What a tool declares about how its calls reach the model; each unset
/// field means the server's default. A submit's own values win.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolPolicy {
    /// `None`: `--default-delivery`.
    pub delivery: Option<Delivery>,
    /// `Some(true)`: identical calls in flight are joined; `None`: off.
    pub join_in_flight: Option<bool>,
    /// Most bytes of a result delivered inline; 0: `--result-budget-bytes`.
    pub result_budget_bytes: u64,
    /// What answers a failed or timed-out call; `None`: nothing.
    pub fallback: Option<Fallback>,
    /// Whether a model may cancel its calls itself (the SDKs' tool refuses
    /// otherwise); never limits CancelTask.
    pub cancellable_by_model: bool,
}

/// A worker's first message: what it serves and how much at once.
#[derive(Debug, Clone, Default)]
pub struct Registration {
    /// Shown in logs; empty: "worker".
    pub worker_name: String,
    pub tools: Vec<ToolDef>,
    /// Tasks at once; 0 counts as 1.
    pub max_concurrency: u32,
}

/// A worker's result for one attempt of a task.
#[derive(Debug, Clone)]
pub struct TaskResult {
    pub task_id: Uuid,
    /// The attempt it answers; 0: whichever attempt the worker holds.
    pub attempt: u32,
    /// `None`: the worker sent neither a result nor an error.
    pub outcome: Option<Outcome>,
    /// The worker's summary of a result for the model; empty: none.
    pub summary: String,
}

/// What the scheduler tells one worker, in order, on its command channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Run this task.
    Assign(Assignment),
    /// Stop running a task: `reason` is one of [`super::codes`], or
    /// "cancelled: " and the client's reason.
    Cancel { task_id: Uuid, reason: Arc<str> },
}

/// One attempt of a task, handed to a worker. `session` and `tool` are keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub task_id: Uuid,
    pub session: Arc<str>,
    pub tool: Arc<str>,
    pub arguments: Arc<str>,
    /// 1 for the first dispatch.
    pub attempt: u32,
    pub timeout: Duration,
    /// The last `detail_json` an earlier attempt reported; `None` on a
    /// first attempt or when none was reported.
    pub resume_detail: Option<Arc<str>>,
}
