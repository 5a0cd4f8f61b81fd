//! What a worker tells the scheduler, and what the scheduler tells a worker.
use std::{sync::Arc, time::Duration};

use uuid::Uuid;

use super::{Outcome, ToolKey};

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
}

/// What the scheduler tells one worker, in order, on its command channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Run this task.
    Assign(Assignment),
    /// Stop running a task: `reason` is one of [`super::codes`].
    Cancel { task_id: Uuid, reason: &'static str },
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
}
