//! Progress of running tasks: accepted from the worker that holds the
//! current attempt only, numbered per task across attempts, kept for the
//! current run, and its last detail handed to the next attempt.
use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
    time::{Duration, SystemTime},
};

use uuid::Uuid;

use super::{Io, State, WorkerId};
use crate::model::{ProgressRecord, ProgressReport};

/// Most tasks handed back to a shared store whose report count and last
/// detail are remembered here, for when this server claims them again.
const MAX_PARKED: usize = 4096;

/// What a task's progress leaves for its next run here.
#[derive(Debug, Clone)]
struct Parked {
    reports: u64,
    detail: Option<Arc<str>>,
}

/// Progress of tasks that left the live state unfinished (shared mode gave
/// them back to the store's queue): bounded, the oldest forgotten first.
#[derive(Debug, Default)]
pub(super) struct ParkedProgress {
    tasks: HashMap<Uuid, Parked>,
    /// Insertion order; may hold IDs taken back already.
    order: VecDeque<Uuid>,
}

impl<I: Io> State<I> {
    /// Remembers the report count and detail of a task leaving the live
    /// state unfinished.
    pub(super) fn park_progress(&mut self, id: Uuid, reports: u64, detail: Option<Arc<str>>) {
        if reports == 0 {
            return;
        }
        let parked = &mut self.parked;
        while parked.tasks.len() >= MAX_PARKED {
            let Some(old) = parked.order.pop_front() else {
                break;
            };
            parked.tasks.remove(&old);
        }
        if parked.order.len() >= 2 * MAX_PARKED {
            let tasks = &parked.tasks;
            parked.order.retain(|id| tasks.contains_key(id));
        }
        parked.tasks.insert(id, Parked { reports, detail });
        parked.order.push_back(id);
    }

    /// The report count and detail a task left when it was handed back.
    pub(super) fn unpark_progress(&mut self, id: Uuid) -> (u64, Option<Arc<str>>) {
        match self.parked.tasks.remove(&id) {
            Some(p) => (p.reports, p.detail),
            None => (0, None),
        }
    }

    /// Takes a report from `worker`: `None` (nothing changes) unless the
    /// worker holds the task's current attempt (`report.attempt` 0: any).
    /// The report must be checked already (message cut, detail valid).
    pub fn record_progress(
        &mut self,
        worker: WorkerId,
        report: ProgressReport,
        now: SystemTime,
    ) -> Option<Arc<ProgressRecord>> {
        if !self.holds(worker, report.task_id, report.attempt) {
            return None;
        }
        let live = self.tasks.get_mut(&report.task_id)?;
        live.reports += 1;
        let detail: Arc<str> = report.detail_json.into();
        if !detail.is_empty() {
            live.detail = Some(detail.clone());
        }
        let record = Arc::new(ProgressRecord {
            task_id: report.task_id,
            session: live.task.session.clone(),
            tool: live.task.tool.clone(),
            index: live.reports,
            progress: report.progress,
            total: report.total,
            message: report.message,
            detail_json: detail,
            elapsed: now
                .duration_since(live.task.created_at)
                .unwrap_or(Duration::ZERO),
        });
        let first = live.progress.replace(record.clone()).is_none();
        if first {
            self.progressing
                .entry(live.task.session.clone())
                .or_default()
                .insert(report.task_id);
        }
        Some(record)
    }

    /// The latest progress of a live task's current run.
    pub fn progress_of(&self, id: Uuid) -> Option<Arc<ProgressRecord>> {
        self.tasks.get(&id)?.progress.clone()
    }

    /// The latest progress of each live task of a session key that has one.
    pub fn session_progress(&self, session: &str) -> Vec<Arc<ProgressRecord>> {
        let Some(ids) = self.progressing.get(session) else {
            return Vec::new();
        };
        let mut out: Vec<_> = ids.iter().filter_map(|id| self.progress_of(*id)).collect();
        out.sort_by_key(|p| p.elapsed);
        out
    }

    /// Drops a task from the session's progress index.
    pub(super) fn forget_progress(&mut self, session: &Arc<str>, id: Uuid) {
        if let Some(ids) = self.progressing.get_mut(session) {
            ids.remove(&id);
            if ids.is_empty() {
                self.progressing.remove(session);
            }
        }
    }
}
