//! Progress of running tasks, as workers report it: kept in memory only,
//! for the task's live run, never stored.
use std::{sync::Arc, time::Duration};

use uuid::Uuid;

/// Most bytes of a report's `message` kept; longer ones are cut (on a
/// character boundary).
pub const MAX_PROGRESS_MESSAGE_BYTES: usize = 1024;
/// Most bytes of a report's `detail_json`; a longer one is refused (the
/// report is ignored and logged).
pub const MAX_PROGRESS_DETAIL_BYTES: usize = 64 * 1024;

/// One progress report from a worker, as it sent it.
#[derive(Debug, Clone, Default)]
pub struct ProgressReport {
    pub task_id: Uuid,
    /// The attempt it belongs to; 0: whichever attempt the worker holds.
    pub attempt: u32,
    /// Work done so far, in the tool's own unit (finite, else 0).
    pub progress: f64,
    /// Total work in the same unit; 0: unknown.
    pub total: f64,
    /// At most [`MAX_PROGRESS_MESSAGE_BYTES`].
    pub message: String,
    /// JSON text the tool can resume from; empty: none.
    pub detail_json: String,
}

/// A report the scheduler accepted, numbered and timed. `session` and
/// `tool` are keys.
#[derive(Debug, Clone, PartialEq)]
pub struct ProgressRecord {
    pub task_id: Uuid,
    pub session: Arc<str>,
    pub tool: Arc<str>,
    /// 1 for the task's first accepted report, then rising across attempts.
    pub index: u64,
    pub progress: f64,
    pub total: f64,
    pub message: String,
    /// Empty: none.
    pub detail_json: Arc<str>,
    /// From submit to the report.
    pub elapsed: Duration,
}
