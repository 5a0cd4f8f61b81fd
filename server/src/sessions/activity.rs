//! What happens to tasks, as the dashboard follows it: submits, starts,
//! finishes and acknowledgements, broadcast by the [`super::SessionHub`]
//! (the scheduler reports them; nothing polls the store).
use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use uuid::Uuid;

use crate::model::TaskState;

/// One event in a task's or a session's life. `session` and `tool` are keys.
#[derive(Debug, Clone)]
pub struct Activity {
    pub kind: ActivityKind,
    /// Nil for [`ActivityKind::Acked`].
    pub task_id: Uuid,
    pub session: Arc<str>,
    /// Empty for [`ActivityKind::Acked`].
    pub tool: Arc<str>,
    pub at: SystemTime,
}

#[derive(Debug, Clone)]
pub enum ActivityKind {
    /// Stored and queued.
    Submitted,
    /// Attempt `attempt` went to a worker of this server.
    Started {
        attempt: u32,
        worker_id: u64,
        worker_name: String,
    },
    /// The completion was committed as `seq`; `run`: the last attempt's
    /// time from dispatch to finish (`None` when it never ran).
    Finished {
        state: TaskState,
        seq: u64,
        run: Option<Duration>,
    },
    /// The session's completions up to `up_to_seq` were acknowledged.
    Acked { up_to_seq: u64 },
}

impl Activity {
    /// The event's name on the dashboard's stream.
    pub fn name(&self) -> &'static str {
        match self.kind {
            ActivityKind::Submitted => "submitted",
            ActivityKind::Started { .. } => "started",
            ActivityKind::Finished { .. } => "finished",
            ActivityKind::Acked { .. } => "acked",
        }
    }
}
