//! Workers' progress reports: checked, kept in the live state for the
//! running task (never stored), and handed to the session's event streams.
use std::{sync::Arc, time::SystemTime};

use uuid::Uuid;

use super::{Scheduler, WorkerId, admission};
use crate::{
    logs,
    model::{ProgressRecord, ProgressReport},
};

/// Ignored progress reports are logged at most this often: a worker can
/// send them at will.
static IGNORED_PROGRESS: logs::Throttle = logs::Throttle::new(std::time::Duration::from_secs(10));

impl Scheduler {
    /// A worker's progress report: kept (and sent to the session's event
    /// streams) when the worker holds the task's current attempt, else
    /// ignored and logged. Never ends the worker's stream.
    pub fn on_progress(self: &Arc<Self>, worker: WorkerId, report: ProgressReport) {
        let id = report.task_id;
        let report = match admission::check_progress(report) {
            Ok(report) => report,
            Err(why) => {
                if let Some(times) = IGNORED_PROGRESS.ready() {
                    tracing::warn!(worker_id = worker, task_id = %id, times, problem = %logs::field(&why), "progress report ignored");
                }
                return;
            }
        };
        let now = SystemTime::now();
        let record = {
            let mut st = self.lock();
            // A report is a sign of life, as a result is.
            st.touch(worker, now);
            st.record_progress(worker, report, now)
        };
        match record {
            Some(record) => self.hub.progress(record),
            None => {
                if let Some(times) = IGNORED_PROGRESS.ready() {
                    tracing::warn!(worker_id = worker, task_id = %id, times, "progress for a task the worker does not hold ignored");
                }
            }
        }
    }

    /// The latest progress of a live task's current run.
    pub fn progress_of(&self, id: Uuid) -> Option<Arc<ProgressRecord>> {
        self.lock().progress_of(id)
    }
}

impl crate::sessions::ProgressSource for Scheduler {
    fn session_progress(&self, session: &str) -> Vec<Arc<ProgressRecord>> {
        self.lock().session_progress(session)
    }

    fn progress_of(&self, task: Uuid) -> Option<Arc<ProgressRecord>> {
        self.lock().progress_of(task)
    }
}
